"""The writer's control plane around os.fork(): what other threads are doing when a process forks."""

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest

from .conftest import Child

SLOW_SINK = """
        import threading
        from dreamlake import _sink
        _write = _sink.Sink.write
        def slow_write(self, batch):
            time.sleep(0.002)  # a slow disk: the logging thread fills the queue and waits for room
            return _write(self, batch)
        _sink.Sink.write = slow_write
        import dreamlake._batcher as _B; _B.NATIVE = False  # a fault of Python's write: Python's writer only
"""


@pytest.mark.parametrize("call", ["log", "append"])
def test_fork_while_a_thread_waits_for_room_wakes_it(child: Child, call: str) -> None:
    """A thread waiting for queue room when the process forks goes on once the parent only waitpid()s:
    nothing is dropped, and no drop notice blames the disk."""
    result = child.run(
        SLOW_SINK
        + f"""
        s = session().open()
        channel = s._channel if {call!r} == "log" else s.track("loss")._channel
        emit = (lambda i: s.log("e", metadata={{"i": i}})) if {call!r} == "log" else (
            lambda i: s.track("loss").append(i=i))
        N = 40000
        def produce():
            for i in range(N):
                emit(i)
        t = threading.Thread(target=produce)
        t.start()
        while not channel.waiters and t.is_alive():
            time.sleep(0.0005)
        waiting = bool(channel.waiters)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        t.join()  # no log() from this thread: only the writer can let the producer go on
        s.close()
        print("waited", waiting)
        """,
        timeout=120,
    )
    assert "waited True" == result.stdout.strip(), result.stderr[-3000:]
    assert "made no progress" not in result.stderr
    records = child.records() if child.log_file.stat().st_size else []  # a track's session may log nothing
    assert [] == [r["message"] for r in records if r["level"] == "warn"]
    if call == "log":
        assert list(range(40000)) == [r["metadata"]["i"] for r in records]
    else:
        data = (child.log_file.parent / "tracks" / "loss" / "data.jsonl").read_bytes()
        assert list(range(40000)) == [orjson.loads(line)["data"]["i"] for line in data.splitlines()]


def test_entries_logged_during_a_fork_are_written_without_another_log(child: Child) -> None:
    """Entries another thread logs while the process forks are written within the write interval,
    although nothing logs afterwards: a SIGKILL later loses none of them."""
    with child.start(
        """
        import threading
        forking = threading.Event()
        def hook():  # registered first, so it runs after dreamlake's: the writer has stopped
            forking.set()
            time.sleep(0.2)  # the fork takes a while: the other thread logs meanwhile
        os.register_at_fork(before=hook)
        s = session(write_interval=0.05).open()
        s.log("first")
        s.flush()
        def produce():
            forking.wait()
            for i in range(300):
                s.log("during", metadata={"i": i})
            print("logged", flush=True)
        t = threading.Thread(target=produce)
        t.start()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        t.join()
        print("forked", flush=True)
        time.sleep(3600)  # killed: nothing logs or flushes again
        """
    ) as proc:
        assert proc.stdout is not None
        assert "logged" == proc.stdout.readline().strip()
        assert "forked" == proc.stdout.readline().strip()
        # No event says "written": wait (bounded) for the file to hold them, as a reader would.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and child.log_file.read_bytes().count(b'"during"') < 300:
            time.sleep(0.05)
        proc.kill()
    assert 300 == [r["message"] for r in child.records()].count("during")


def test_sigterm_during_a_fork_flushes_and_ends_the_process(child: Child) -> None:
    """A SIGTERM that arrives while os.fork() runs its hooks flushes at once (no 5 s wait for a
    writer the fork stopped), writes what was logged during the fork, and ends the process."""
    result = child.run(
        """
        def hook():  # registered first, so it runs after dreamlake's: the writer has stopped
            for i in range(100):
                s.log("during", metadata={"i": i})
            os.kill(os.getpid(), signal.SIGTERM)  # its handler runs here, in the forking thread
        os.register_at_fork(before=hook)
        s = session(write_interval=3600).open()
        s.log("before")
        s.flush()
        os.fork()
        os._exit(0)  # the child, or a parent whose SIGTERM did not end it
        """,
        timeout=60,
    )
    assert -signal.SIGTERM == result.returncode, result.stderr[-3000:]
    assert "did not finish" not in result.stderr
    records = child.records()
    assert ["before"] + ["during"] * 100 == [r["message"] for r in records]


def test_forks_racing_open_and_close_stop_the_writer_each_time(child: Child) -> None:
    """Forks in a loop while another thread opens and closes sessions (starting and stopping the
    writer's threads): the before-fork hook never meets a thread still starting."""
    result = child.run(
        """
        import threading
        done = threading.Event()
        def churn():
            i = 0
            while not done.is_set():
                with session(write_interval=0.001) as s:
                    s.log("churn", metadata={"i": i})
                i += 1
        t = threading.Thread(target=churn)
        t.start()
        for _ in range(200):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
        done.set()
        t.join()
        print("ok")
        """,
        timeout=120,
    )
    assert "ok" == result.stdout.strip(), result.stderr[-3000:]
    assert "Exception ignored" not in result.stderr, result.stderr[-3000:]


def test_log_from_a_finalizer_at_interpreter_shutdown_is_written_at_once(child: Child) -> None:
    """A __del__ that logs while the interpreter shuts down (after the exit flush, when the writer
    thread is frozen) writes its entry in its own thread: no 5 s wait, nothing lost."""
    result = child.run(
        """
        class Late:
            def __init__(self, session):
                self.session = session
            def __del__(self):
                self.session.log("from __del__")
        s = session().open()
        s.log("before")
        late = Late(s)  # finalized when the interpreter clears this module, after atexit
        """,
        timeout=60,
    )
    assert 0 == result.returncode, result.stderr[-3000:]
    assert "" == result.stderr
    assert ["before", "from __del__"] == [r["message"] for r in child.records()]


def test_import_registers_no_hook_and_use_registers_one_fork_hook(tmp_path: Path) -> None:
    """Importing every dreamlake module registers no fork or exit hook; sessions, parameters and
    tracks in use register exactly one os.register_at_fork and one atexit between them."""
    script = tmp_path / "hooks.py"
    script.write_text(
        textwrap.dedent(
            """
            import atexit, os, pkgutil, importlib, sys, tempfile
            registered = []
            fork, exit = os.register_at_fork, atexit.register
            def ours(f):
                return f.__module__.startswith("dreamlake")
            def register_at_fork(**hooks):
                if any(ours(f) for f in hooks.values()):
                    registered.append("fork")
                fork(**hooks)
            def register(f, *args, **kwargs):
                if ours(f):
                    registered.append("atexit")
                return exit(f, *args, **kwargs)
            os.register_at_fork, atexit.register = register_at_fork, register
            import dreamlake
            for module in pkgutil.walk_packages(dreamlake.__path__, "dreamlake."):
                if not module.name.startswith(
                    ("dreamlake._bench", "dreamlake._plot", "dreamlake.__main__", "dreamlake.integrations")
                ):  # the integrations import their frameworks, whose hooks are theirs
                    importlib.import_module(module.name)
            print("import", registered)
            with dreamlake.Session(name="r", workspace="w", local_path=tempfile.mkdtemp()) as s:
                s.params(lr=0.1)
                s.track("loss", description="d").append(value=1.0)
                s.log("x")
                pid = os.fork()
                if pid == 0:
                    s.log("child")
                    s.params(lr=0.2)
                    s.close()
                    os._exit(0)
                os.waitpid(pid, 0)
            print("use", registered)
            """
        )
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert ["import []", "use ['fork', 'atexit']"] == result.stdout.splitlines(), result.stderr[-3000:]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="the multi-threaded fork warning exists since 3.12")
def test_single_threaded_fork_hook_that_logs_emits_no_multithreaded_fork_warning(child: Child) -> None:
    """A single-threaded process whose own fork hook logs: no thread starts during the fork (no
    "multi-threaded" warning), and the entry is written at close."""
    result = child.run(
        """
        import warnings
        def hook():  # registered first, so it runs after dreamlake's: the writer has stopped
            s.log("during")
        os.register_at_fork(before=hook)
        s = session().open()
        s.log("before")
        s.flush()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeprecationWarning)
            pid = os.fork()
            if pid == 0:
                os._exit(0)
        for w in caught:
            print("warning:", w.message, file=sys.stderr)
        os.waitpid(pid, 0)
        s.close()
        """,
        timeout=60,
    )
    assert "multi-threaded" not in result.stderr, result.stderr[-3000:]
    assert ["before", "during"] == [r["message"] for r in child.records()]
