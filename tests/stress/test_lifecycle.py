"""Open, close, re-open, fork and change directory: log() works exactly while the session is open."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dreamlake import Session

from ..conftest import read_records
from .conftest import Child, assert_numbered_in_file_order

# -- a log function cached before close() --------------------------------------------------------


def test_cached_log_after_close_raises(tmp_path: Path) -> None:
    """`log = session.log` taken while open raises RuntimeError once the session is closed."""
    s = Session(name="n", workspace="w", local_path=tmp_path).open()
    log = s.log
    log("in")
    s.close()
    with pytest.raises(RuntimeError):
        log("out")
    assert ["in"] == [r["message"] for r in read_records(s.log_file)]


def test_cached_log_after_close_writes_nothing_and_starts_no_writer(child: Child) -> None:
    """5,000 calls of a cached log after close(): no record ever lands, no thread is started."""
    result = child.run(
        """
        import threading, json
        s = session().open()
        log = s.log
        log("in")
        s.close()
        # Count starts, not live threads: the closed session's idle threads may leave meanwhile.
        started = []
        real_start = threading.Thread.start
        def counting_start(self):
            started.append(self.name)
            real_start(self)
        threading.Thread.start = counting_start
        returned = 0
        for i in range(5000):
            try:
                log("after close", metadata={"i": i})
                returned += 1
            except RuntimeError:
                pass
        threading.Thread.start = real_start
        extra_threads = started
        other = Session(name="other", workspace="ws", local_path=os.environ["DL_ROOT"]).open()
        other.log("other")
        other.flush()
        with open(s.log_file, "rb") as f:
            after_other_flush = f.read().count(b"\\n")
        other.close()
        print(json.dumps({"returned": returned, "extra_threads": extra_threads,
                          "lines_after_other_flush": after_other_flush}))
        """
    )
    out = json.loads(result.stdout)
    assert 0 == out["returned"], "a cached log() after close() returned normally"
    assert [] == out["extra_threads"], "a cached log() after close() started a thread"
    assert 1 == out["lines_after_other_flush"]
    assert ["in"] == [r["message"] for r in child.records()], "records appeared after close()"


# -- log() racing close() ---------------------------------------------------------------------------


def test_log_racing_close_either_raises_or_is_in_the_file_when_close_returns(child: Child) -> None:
    """8 threads log while close() runs: each call raised (entry absent) or its entry is on disk at return."""
    result = child.run(
        """
        import threading, json
        sys.setswitchinterval(1e-5)  # switch threads often: more interleavings per round
        ROUNDS, THREADS = 100, 8
        report = {"returned_missing": [], "raised_present": [], "other_errors": [], "raised": 0, "returned": 0}
        for rnd in range(ROUNDS):
            s = Session(name=f"r{rnd}", workspace="ws", local_path=os.environ["DL_ROOT"]).open()
            start = threading.Barrier(THREADS + 1)
            enough = threading.Event()
            returned = [[] for _ in range(THREADS)]
            raised = [[] for _ in range(THREADS)]
            def work(t):
                start.wait()
                for i in range(200_000):
                    message = f"{rnd}-{t}-{i}"
                    try:
                        s.log(message)
                    except RuntimeError:
                        raised[t].append(message)
                        return
                    except BaseException as exc:
                        report["other_errors"].append(repr(exc))
                        return
                    returned[t].append(message)
                    if i == 50 * (rnd % 20):
                        enough.set()
            threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
            for t in threads:
                t.start()
            start.wait()
            enough.wait(30)
            s.close()
            with open(s.log_file, "rb") as f:
                at_close = {json.loads(line)["message"] for line in f.read().splitlines()}
            for t in threads:
                t.join()
            with open(s.log_file, "rb") as f:
                at_end = {json.loads(line)["message"] for line in f.read().splitlines()}
            for t in range(THREADS):
                report["returned"] += len(returned[t])
                report["raised"] += len(raised[t])
                report["returned_missing"] += [m for m in returned[t] if m not in at_close]
                report["raised_present"] += [m for m in raised[t] if m in at_end]
        for key in ("returned_missing", "raised_present", "other_errors"):
            report[key] = report[key][:20]
        print(json.dumps(report))
        """,
        timeout=120,
    )
    report = json.loads(result.stdout)
    assert [] == report["other_errors"]
    assert [] == report["returned_missing"], (
        "log() returned but its entry was not on disk when close() returned"
    )
    assert [] == report["raised_present"], "log() raised but its entry was written"
    assert 100 * 8 == report["raised"], "every thread ends on a RuntimeError from the closed session"


def test_log_still_copying_its_metadata_when_close_returns_raises_or_was_written(child: Child) -> None:
    """A log() that is inside the call while close() runs and returns: it raises, or its entry is on disk."""
    result = child.run(
        """
        import threading, json
        from collections.abc import Mapping
        inside, closed = threading.Event(), threading.Event()
        class Slow(Mapping):
            '''Copying it takes until close() has returned (or 2 s, should close() wait for the call).'''
            def __getitem__(self, key):
                return 1
            def __iter__(self):
                inside.set()
                closed.wait(2)
                return iter(["k"])
            def __len__(self):
                return 1
        s = session().open()
        s.log("first")
        outcome = []
        def work():
            try:
                s.log("racing", metadata=Slow())
                outcome.append("returned")
            except RuntimeError:
                outcome.append("raised")
        t = threading.Thread(target=work)
        t.start()
        inside.wait(30)
        s.close()
        with open(s.log_file, "rb") as f:
            at_close = [json.loads(line)["message"] for line in f.read().splitlines()]
        closed.set()
        t.join(30)
        print(json.dumps({"outcome": outcome, "at_close": at_close}))
        """
    )
    out = json.loads(result.stdout)
    records = [r["message"] for r in child.records()]
    assert out["outcome"] in (["raised"], ["returned"]), result.stderr[-3000:]
    if out["outcome"] == ["raised"]:
        assert ["first"] == records
    else:
        assert ["first", "racing"] == out["at_close"], (
            "log() returned, yet its entry was not written by close()"
        )
        assert ["first", "racing"] == records


# -- re-open after a close() that raised -------------------------------------------------------------


def test_reopen_after_a_close_that_raised_logs_and_every_entry_lands_once(child: Child) -> None:
    """close() fails on a full disk; after the cause is gone, open() again works and nothing is lost."""
    result = child.run(
        """
        import resource
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))
        s = session().open()
        for i in range(2000):
            s.log("x", metadata={"i": i})
        try:
            s.close()
            print("close returned")
        except OSError:
            print("close raised")
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        s.open()
        for i in range(2000, 2500):
            s.log("x", metadata={"i": i})
        s.close()
        print("closed")
        """
    )
    assert ["close raised", "closed"] == result.stdout.split("\n")[:2], result.stderr[-3000:]
    records = child.records()
    assert list(range(2500)) == [r["metadata"]["i"] for r in records]
    assert_numbered_in_file_order(records)


# -- a relative local_path and os.chdir() -------------------------------------------------------------


def test_relative_local_path_gives_an_absolute_session_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Session(local_path="data").path is absolute, under the directory current at construction."""
    monkeypatch.chdir(tmp_path)
    s = Session(name="n", workspace="w", local_path="data")
    assert s.path.is_absolute()
    assert tmp_path / "data" / "w" / "n" == s.path


def test_records_land_under_the_original_folder_after_chdir(child: Child) -> None:
    """local_path="data", then chdir elsewhere: logging, closing and re-opening still use the original folder."""
    (child.tmp_path / "elsewhere").mkdir()
    result = child.run(
        """
        s = Session(name="run", workspace="ws", local_path="data").open()
        s.log("before chdir")
        os.chdir("elsewhere")
        s.log("after chdir")
        s.flush()
        s.close()
        s.open()
        s.log("reopened")
        s.close()
        print("done")
        """,
        cwd=child.tmp_path,
    )
    assert "done" == result.stdout.strip(), result.stderr[-3000:]
    assert ["before chdir", "after chdir", "reopened"] == [r["message"] for r in child.records()]
    assert not (child.tmp_path / "elsewhere" / "data").exists()


def test_forked_child_that_changes_directory_logs_under_the_original_folder(child: Child) -> None:
    """A forked child that chdirs before its first log writes to the parent's file, not a new one."""
    (child.tmp_path / "elsewhere").mkdir()
    result = child.run(
        """
        s = Session(name="run", workspace="ws", local_path="data").open()
        s.log("parent")
        s.flush()
        pid = os.fork()
        if pid == 0:
            os.chdir("elsewhere")
            s.log("child")
            s.close()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        s.close()
        print(status)
        """,
        cwd=child.tmp_path,
    )
    assert "0" == result.stdout.strip(), result.stderr[-3000:]
    assert ["parent", "child"] == [r["message"] for r in child.records()]
    assert not (child.tmp_path / "elsewhere" / "data").exists()


# -- fork -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("leave", ["sys.exit(0)", "pass"], ids=["sys-exit", "end-of-script"])
def test_forked_child_that_logged_nothing_does_not_fsync_at_exit(child: Child, leave: str) -> None:
    """A fork child that never logged leaves without touching the disk: no os.fsync at its exit
    (nor a track's metadata.json, replaced with an fsync)."""
    result = child.run(
        f"""
        import atexit
        calls = []
        def report():   # registered before dreamlake's exit hook, so it runs after it
            if os.getpid() != parent:
                os.write(1, f"child fsync calls: {{len(calls)}}\\n".encode())
        parent = os.getpid()
        atexit.register(report)
        s = session().open()
        s.log("parent")
        s.track("loss").append(v=1)
        s.flush()
        pid = os.fork()
        if pid == 0:
            real_fsync = os.fsync
            def counting_fsync(fd):
                calls.append(fd)
                real_fsync(fd)
            os.fsync = counting_fsync
            {leave}
        else:
            _, status = os.waitpid(pid, 0)
            s.close()
            print("child status", status)
        """
    )
    assert "child status 0" in result.stdout, result.stderr[-3000:]
    assert "child fsync calls: 0" in result.stdout.splitlines()
    assert ["parent"] == [r["message"] for r in child.records()]


def test_fork_while_a_write_hangs_returns_promptly(child: Child) -> None:
    """os.fork() while the writer is stuck in a hung os.write returns within about 2 s."""
    result = child.run(
        """
        import threading
        s = session().open()
        target = os.path.realpath(s.log_file)
        real_write = os.write
        stuck, release = threading.Event(), threading.Event()
        def hung_write(fd, data):
            try:
                name = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                name = ""
            if name == target and os.getpid() == parent and not stuck.is_set():
                stuck.set()   # the first write to the session's file hangs
                release.wait(10)
            return real_write(fd, data)
        import dreamlake._batcher as _B; _B.NATIVE = False  # a fault of Python's write: Python's writer only
        parent = os.getpid()
        s.flush()  # taken back from the native writer
        os.write = hung_write
        for i in range(2000):
            s.log("x", metadata={"i": i})
        print("stuck" if stuck.wait(30) else "never stuck", flush=True)
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        elapsed = time.monotonic() - started
        release.set()
        os.waitpid(pid, 0)
        os.write = real_write
        s.close()
        print(elapsed)
        """
    )
    lines = result.stdout.split()
    assert "stuck" == lines[0], result.stderr[-3000:]
    assert float(lines[1]) < 2.5, f"os.fork() took {lines[1]}s while a write hung"
    assert list(range(2000)) == [r["metadata"]["i"] for r in child.records()]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="the multi-threaded fork warning exists since 3.12")
def test_fork_after_open_emits_no_multithreaded_fork_warning(child: Child) -> None:
    """os.fork() after open() emits no "multi-threaded" DeprecationWarning: the writer's threads are stopped first."""
    script = child.script(
        """
        import warnings
        s = session().open()
        s.log("parent before")
        s.flush()
        # -W error turns the warning into an exception that os.fork() swallows: record it instead
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeprecationWarning)
            pid = os.fork()
            if pid == 0:
                s.log("child")
                s.close()
                os._exit(0)
        for w in caught:
            print("warning:", w.message, file=sys.stderr)
        _, status = os.waitpid(pid, 0)
        s.log("parent after")
        s.close()
        print("status", status)
        """
    )
    env = {**child.env(), "PYTHONWARNINGS": "error::DeprecationWarning"}
    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "status 0" == result.stdout.strip(), result.stderr[-3000:]
    assert "multi-threaded" not in result.stderr
    assert ["child", "parent after", "parent before"] == sorted(r["message"] for r in child.records())


# -- a subclass that overrides log() ----------------------------------------------------------------------


class Tagged(Session):
    """Adds a key to every record, then defers to Session.log."""

    def log(self, message: object, level: str = "info", metadata: Any = None) -> None:
        super().log(message, level, {**(metadata or {}), "run": "tagged"})


def test_subclass_log_override_is_called_while_open(tmp_path: Path) -> None:
    """An open session of a subclass runs the overriding log(), whose super().log() writes."""
    with Tagged(name="n", workspace="w", local_path=tmp_path) as s:
        s.log("a", metadata={"k": 1})
        s.log("b")
    expected = [("a", {"k": 1, "run": "tagged"}), ("b", {"run": "tagged"})]
    assert expected == [(r["message"], r["metadata"]) for r in read_records(s.log_file)]
