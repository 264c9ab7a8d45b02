"""SIGTERM, SIGKILL, exits without close(), exit handlers and a disk that hangs."""

import signal
import time

from .conftest import Child


def wait_for_line(proc, expected: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == expected:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"child never printed {expected!r}: {proc.stderr.read()}")


def log_then_wait(count: int, write_interval: float, prelude: str = "") -> str:
    """A child that logs `count` entries, says "ready", then waits for a signal."""
    return (
        prelude
        + f"""
s = session(write_interval={write_interval}).open()
for i in range({count}):
    s.log("x", metadata={{"i": i}})
print("ready", flush=True)
while True:
    time.sleep(1)  # ok: the child idles until it is signalled
"""
    )


def test_sigterm_flushes_then_ends_the_process_as_sigterm_would(child: Child) -> None:
    with child.start(log_then_wait(10000, write_interval=3600)) as proc:
        wait_for_line(proc, "ready")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM
    records = child.records()
    assert [r["metadata"]["i"] for r in records] == list(range(10000))


def test_sigterm_keeps_and_calls_the_users_handler(child: Child) -> None:
    handler = """
def handler(signum, frame):
    print("user handler", flush=True)
    sys.exit(7)
signal.signal(signal.SIGTERM, handler)
"""
    with child.start(log_then_wait(1000, write_interval=3600, prelude=handler)) as proc:
        wait_for_line(proc, "ready")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 7
        assert "user handler" in proc.stdout.read()
    assert len(child.records()) == 1000


def test_sigkill_loses_nothing_logged_a_second_before(child: Child) -> None:
    with child.start(log_then_wait(3000, write_interval=0.05)) as proc:
        wait_for_line(proc, "ready")
        time.sleep(1.0)  # ok: the contract under test is "one second after the call, it is on disk"
        proc.kill()
        proc.wait(timeout=30)
    records = child.records()
    assert [r["metadata"]["i"] for r in records] == list(range(3000))


def test_log_from_an_exit_handler_that_runs_after_ours(child: Child) -> None:
    """An atexit handler registered before the session opened runs after dreamlake's own."""
    result = child.run(
        """
        import atexit
        def late():
            s.log("from a late exit handler")
            Session(name="late", workspace="ws", local_path=os.environ["DL_ROOT"]).open().log("new")
        atexit.register(late)
        s = session().open()
        s.log("main")
        """
    )
    assert result.returncode == 0, result.stderr
    assert [r["message"] for r in child.records()] == ["main", "from a late exit handler"]
    late = child.root / "ws" / "late" / "logs.jsonl"
    assert late.read_bytes().count(b'"message":"new"') == 1


def test_hung_fsync_does_not_hold_the_process(child: Child) -> None:
    """close(timeout) gives up in time; exit without close() waits at most EXIT_TIMEOUT."""
    started = time.monotonic()
    result = child.run(
        """
        import os as _os, time as _time
        _os.fsync = lambda fd: _time.sleep(3600)  # ok: a disk that hangs
        s = session().open()
        s.log("x")
        t = _time.monotonic()
        try:
            s.close(timeout=0.5)
        except TimeoutError as exc:
            print("timeout", round(_time.monotonic() - t, 1))
        s2 = session().open()   # a second session, never closed: the exit flush must give up
        s2.log("y")
        """,
        timeout=60,
    )
    elapsed = time.monotonic() - started
    assert result.stdout.split()[0] == "timeout", result.stderr
    assert float(result.stdout.split()[1]) < 2
    assert elapsed < 20, f"exit took {elapsed:.1f}s with a hung fsync"
    assert [r["message"] for r in child.records()] == ["x", "y"]
