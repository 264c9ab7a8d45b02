"""Hard cases: a close retried after a failed fsync, starving flushes, truncation, exit handlers, forks mid-close."""

import errno
import os
import threading
from collections import Counter
from pathlib import Path

import orjson
import pytest

from dreamlake import Session, _batcher

from ..conftest import read_records
from .conftest import Child, assert_numbered_in_file_order


def test_close_after_a_close_that_failed_raises_until_the_file_is_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second close() must not report success while fsync still fails."""
    s = Session(name="n", workspace="w", local_path=tmp_path).open()
    s.log("x")

    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    for _ in range(3):
        with pytest.raises(OSError, match=r"could not write .*logs\.jsonl: Input/output error"):
            s.close()
    monkeypatch.undo()
    s.close()
    with pytest.raises(RuntimeError, match="closed"):
        s.log("y")
    assert ["x"] == [r["message"] for r in read_records(s.log_file)]
    assert not s._channel.sink.is_open
    assert s._channel not in _batcher._worker.channels


def test_flush_is_not_starved_by_threads_that_keep_logging(tmp_path: Path) -> None:
    """flush() waits for what was logged before it, not for the queue to run dry."""
    stop = threading.Event()
    with Session(name="n", workspace="w", local_path=tmp_path) as s:

        def chatter() -> None:
            while not stop.is_set():
                s.log("chatter")

        threads = [threading.Thread(target=chatter) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            s.log("mine")
            s.flush(timeout=30)  # a bound on a timeout, not a speed claim: starved, it never returned
        finally:
            stop.set()
            for t in threads:
                t.join()
    assert "mine" in {r["message"] for r in read_records(s.log_file)}


def test_truncated_file_numbers_from_zero_again(tmp_path: Path) -> None:
    """logrotate's copytruncate: the file starts over, so does the numbering."""
    with Session(name="n", workspace="w", local_path=tmp_path) as s:
        for i in range(3):
            s.log(f"a{i}")
        s.flush()
        os.truncate(s.log_file, 0)
        s.log("b")
        s.flush()
    assert [("b", 0)] == [(r["message"], r["sequenceNumber"]) for r in read_records(s.log_file)]


def test_non_str_keys_are_named_at_the_call(session: Session) -> None:
    """A key's text is taken when log() is called, like every value."""

    class Epoch:
        def __init__(self) -> None:
            self.n = 1

        def __str__(self) -> str:
            return f"epoch-{self.n}"

    key = Epoch()
    session.log("x", metadata={key: 0.5})
    key.n = 2
    session.flush()
    assert {"epoch-1": 0.5} == read_records(session.log_file)[0]["metadata"]


def test_session_first_opened_in_an_exit_handler_writes_its_entries(child: Child) -> None:
    """Our exit hook cannot be registered any more; each entry is written at once instead."""
    result = child.run(
        """
        import atexit
        def late():
            s = session().open()
            for i in range(10):
                s.log("late", metadata={"i": i})
        atexit.register(late)
        """
    )
    assert 0 == result.returncode, result.stderr
    records = child.records()
    assert list(range(10)) == [r["metadata"]["i"] for r in records]
    assert_numbered_in_file_order(records)


def test_fork_while_another_thread_closes_leaves_the_child_free_to_close(child: Child) -> None:
    """The child gets its own open()/close() locks: one held at the fork does not hang it."""
    result = child.run(
        """
        import threading
        s = session().open()
        stop = threading.Event()
        def churn():
            while not stop.is_set():
                s.close()
                s.open()
        t = threading.Thread(target=churn)
        t.start()
        for _ in range(20):
            pid = os.fork()
            if pid == 0:
                s.open()
                s.log("child")
                s.close()
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            assert status == 0, status
        stop.set()
        t.join()
        s.close()
        print("ok")
        """,
        timeout=60,
    )
    assert "ok" == result.stdout.strip(), result.stderr[-3000:]
    assert 20 == sum(r["message"] == "child" for r in child.records())


def test_a_nan_set_by_another_thread_during_log_is_never_written_as_null(child: Child) -> None:
    """orjson reads the dict, then the NaN check reads it again: a value flipped in between by
    another thread must come out as "NaN" or as the new value, never as null."""
    result = child.run(
        """
import random, sys, threading
sys.setswitchinterval(1e-6)  # the test's own process: switch threads as often as possible
md = {f"k{i}": None for i in range(50)}
md["a"] = float("nan")
stop = threading.Event()
def flip():
    while not stop.is_set():
        md["a"] = float("nan") if random.random() < 0.5 else 1.0
t = threading.Thread(target=flip)
t.start()
with session() as s:
    for i in range(30_000):
        s.log("m", metadata=md)
stop.set()
t.join()
""",
        timeout=120,
    )
    assert 0 == result.returncode, result.stderr[-3000:]
    values = Counter(
        repr(orjson.loads(line)["metadata"]["a"]) for line in child.log_file.read_bytes().splitlines()
    )
    assert set(values) <= {"'NaN'", "1.0"}, values


def test_deep_metadata_logged_from_deep_in_the_stack_does_not_raise(child: Child) -> None:
    result = child.run(
        """
value = None
for _ in range(150):
    value = [value]
def at_depth(n, s):
    if n:
        return at_depth(n - 1, s)
    s.log("deep", metadata={"deep": value})
with session() as s:
    for depth in (100, 500, 700, 850):
        at_depth(depth, s)
print("logged")
""",
        timeout=60,
    )
    assert 0 == result.returncode, result.stderr[-3000:]
    assert 4 == len(child.log_file.read_bytes().splitlines())


def test_values_that_crash_orjson_itself_are_written_as_text(child: Child) -> None:
    """orjson 3.13 crashes the process on a tzinfo whose utcoffset() raises and on a slots
    dataclass missing a field: dreamlake converts datetimes and dataclasses itself."""
    result = child.run(
        """
import dataclasses, datetime
@dataclasses.dataclass(slots=True)
class Point:
    x: int
    y: float = 0.5
class BadZone(datetime.tzinfo):
    def utcoffset(self, dt):
        raise RuntimeError("no offset")
hollow = Point(1)
del hollow.x
with session() as s:
    s.log("m", metadata={"p": hollow, "when": datetime.datetime(2020, 1, 1, tzinfo=BadZone())})
    s.log("m", metadata={"p": Point(2), "when": datetime.datetime(2020, 1, 1, 0, 0, 0, 7, tzinfo=datetime.timezone.utc)})
""",
        timeout=60,
    )
    assert 0 == result.returncode, result.stderr[-3000:]
    first, second = (orjson.loads(line)["metadata"] for line in child.log_file.read_bytes().splitlines())
    assert first["p"] == {"x": None, "y": 0.5}
    assert first["when"].startswith("datetime.datetime(2020, 1, 1")
    assert second == {"p": {"x": 2, "y": 0.5}, "when": "2020-01-01T00:00:00.000007+00:00"}
