"""The writer thread: flush means on disk, many threads lose nothing, I/O errors keep entries."""

import errno
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from dreamlake import Session, _batcher

from .conftest import python_writer_only, read_records, wait_until


def test_flush_writes_and_fsyncs_everything_logged_before_it(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    for i in range(3000):
        session.log(str(i))
    session.flush()
    assert synced, "flush() must fsync"
    assert len(read_records(session.log_file)) == 3000


def test_close_fsyncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    with Session(name="n", workspace="w", local_path=tmp_path) as s:
        s.log("x")
    assert synced
    assert len(read_records(s.log_file)) == 1


def test_writer_writes_without_flush(session: Session) -> None:
    """The thread writes on its own; waiting on the file is bounded, not a bare sleep."""
    session.log("background")
    assert wait_until(lambda: session.log_file.stat().st_size > 0), "nothing written in 10 s"


def test_eight_threads_lose_nothing_and_keep_their_order(session: Session) -> None:
    threads, per_thread = 8, 10_000
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            session.log("tick", metadata={"t": t, "i": i})

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    session.flush()
    got = read_records(session.log_file)
    assert [r["sequenceNumber"] for r in got] == list(range(threads * per_thread))
    for t in range(threads):
        assert [r["metadata"]["i"] for r in got if r["metadata"]["t"] == t] == list(range(per_thread))


def test_flush_from_several_threads_while_logging(session: Session) -> None:
    """Each thread's flush covers its own earlier entries, whatever the others do."""
    errors: list[str] = []

    def work(t: int) -> None:
        for i in range(500):
            session.log("x", metadata={"t": t, "i": i})
            if i % 50 == 49:
                session.flush()
                # Other threads may be mid-write: count whole lines only.
                whole = session.log_file.read_bytes().rpartition(b"\n")[0].split(b"\n")
                on_disk = sum(orjson.loads(line)["metadata"]["t"] == t for line in whole)
                if on_disk < i + 1:
                    errors.append(f"thread {t}: {on_disk} on disk after flush at {i}")

    workers = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []


def failing_write(path_fd: Callable[[], int], err: int) -> Callable[[int, Any], int]:
    real_write = os.write

    def write(fd: int, data: Any) -> int:
        if fd == path_fd():
            raise OSError(err, os.strerror(err))
        return real_write(fd, data)

    return write


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO, errno.EACCES])
def test_write_errors_surface_on_flush_and_keep_entries(
    session: Session, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str], err: int
) -> None:
    sink = session._channel.sink
    session.log("landed")
    python_writer_only(monkeypatch, session)
    monkeypatch.setattr(os, "write", failing_write(lambda: sink._fd, err))
    for i in range(10):
        session.log(f"kept {i}")
    with pytest.raises(OSError) as info:
        session.flush()
    assert info.value.errno == err
    assert str(session.log_file) in str(info.value)
    assert "10 entries are kept" in str(info.value)
    session.log("while failing")
    with pytest.raises(OSError):
        session.flush()
    assert [r["message"] for r in read_records(session.log_file)] == ["landed"]

    monkeypatch.undo()  # the fault clears
    session.flush()
    got = read_records(session.log_file)
    assert [r["message"] for r in got] == ["landed"] + [f"kept {i}" for i in range(10)] + ["while failing"]
    assert [r["sequenceNumber"] for r in got] == list(range(12))


def test_partial_os_write_is_completed(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """A short write (as on a nearly full disk) is continued, not repeated or dropped."""
    real_write = os.write

    def short_write(fd: int, data: Any) -> int:
        return real_write(fd, bytes(data[:7]))

    python_writer_only(monkeypatch, session)
    monkeypatch.setattr(os, "write", short_write)
    for i in range(50):
        session.log(f"e{i}")
    session.flush()
    monkeypatch.undo()
    got = read_records(session.log_file)
    assert [r["message"] for r in got] == [f"e{i}" for i in range(50)]


@pytest.mark.parametrize(
    "ending",
    [
        "pass",
        "sys.exit(3)",
        "raise SystemExit('bye')",
        "raise RuntimeError('uncaught')",
        "del s",
    ],
)
def test_session_never_closed_is_flushed_at_exit(
    run_python: Callable[..., Any], tmp_path: Path, ending: str
) -> None:
    result = run_python(
        f"""
        import sys
        from dreamlake import Session
        s = Session(name="n", workspace="w", local_path="data").open()
        for i in range(20000):
            s.log("e", metadata={{"i": i}})
        {ending}
        """
    )
    assert "Traceback" not in result.stderr or "uncaught" in ending
    got = read_records(tmp_path / "data" / "w" / "n" / "logs.jsonl")
    assert [r["metadata"]["i"] for r in got] == list(range(20000))


def test_import_starts_no_thread_and_writes_nothing(run_python: Callable[..., Any], tmp_path: Path) -> None:
    result = run_python(
        """
        import threading, atexit
        import dreamlake
        print(threading.active_count())
        """
    )
    assert result.stdout.split() == ["1"], result.stderr
    assert list(tmp_path.iterdir()) == []


def test_queue_stays_bounded_in_a_tight_loop(session: Session) -> None:
    """However fast the caller, the queue never holds more than QUEUE_LIMIT entries (+1 in flight)."""
    queue = session._channel.queue
    longest = 0
    total = 6 * _batcher.QUEUE_LIMIT
    for i in range(total):
        session.log("tight", metadata={"i": i})
        longest = max(longest, len(queue))
    session.flush()
    assert longest <= _batcher.QUEUE_LIMIT + 1
    got = read_records(session.log_file)
    assert [r["metadata"]["i"] for r in got] == list(range(total))


def test_a_writer_thread_that_stopped_is_started_again(session: Session) -> None:
    """Checked lazily, the way a full queue or a flush finds it: nothing waits for a gone thread."""
    writer = _batcher._worker._writer
    session.log("x", metadata={"i": -1})
    session.flush()
    writer.join(10)  # as if it had died
    assert not writer.running.locked()
    writer.stop = False
    total = 3 * _batcher.QUEUE_LIMIT
    burst = threading.Thread(target=lambda: [session.log("x", metadata={"i": i}) for i in range(total)])
    burst.start()
    burst.join(timeout=60)
    assert not burst.is_alive(), "log() hung on a full queue"
    session.flush()
    assert [r["metadata"]["i"] for r in read_records(session.log_file)] == list(range(-1, total))
    assert writer.running.locked(), "a writer runs again"


def test_queue_past_wake_mark_wakes_the_writer_before_its_interval(tmp_path: Path) -> None:
    """A burst of WAKE_AT entries is written without waiting for the interval or a flush."""
    with Session(name="n", workspace="w", local_path=tmp_path, write_interval=3600) as s:
        for _ in range(_batcher.WAKE_AT):
            s.log("x")
        assert wait_until(lambda: s.log_file.stat().st_size > 0), "the writer was not woken"


def test_one_writer_thread_serves_many_sessions(tmp_path: Path) -> None:
    """Threads (the OS's: the native writer's too) stay bounded however many sessions are
    open, and go away with the last one."""

    def os_threads() -> int:
        return len(os.listdir("/proc/self/task"))

    before = os_threads()
    sessions = [Session(name=f"s{i}", workspace="w", local_path=tmp_path).open() for i in range(50)]
    for i in range(3):
        for s in sessions:
            s.log("x", metadata={"i": i})
    assert os_threads() <= before + 3
    for s in sessions:
        s.close()
    for s in sessions:
        assert [r["metadata"]["i"] for r in read_records(s.log_file)] == [0, 1, 2]
    # <=: a thread of an earlier test may have been counted in `before` and ended since
    assert wait_until(lambda: os_threads() <= before), "threads outlive the sessions"


def test_flushes_that_time_out_leave_nothing_queued(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hung disk and a caller that keeps retrying flush(timeout=0): the requests do not pile up."""
    gate = threading.Event()
    real_write = os.write
    fd = session._channel.sink._fd

    def stuck_write(target: int, data: Any) -> int:
        if target == fd:
            gate.wait(30)
        return real_write(target, data)

    python_writer_only(monkeypatch, session)
    monkeypatch.setattr(os, "write", stuck_write)
    session.log("stuck")
    for _ in range(1000):
        with pytest.raises(TimeoutError):
            session.flush(timeout=0)
    assert len(_batcher._worker._requests) + len(_batcher._worker._syncs) <= 2
    gate.set()
    session.flush()
    assert ["stuck"] == [r["message"] for r in read_records(session.log_file)]


def test_a_session_flushed_over_and_over_does_not_starve_the_others(tmp_path: Path) -> None:
    """Rounds that only serve flushes skip idle sessions, but every session is still written
    within its interval, the interval of the sessions open now."""
    with Session(name="slow", workspace="w", local_path=tmp_path, write_interval=3600) as slow:
        slow.log("a round while only an hourly session is open")
        slow.flush()
    with (
        Session(name="quiet", workspace="w", local_path=tmp_path, write_interval=0.05) as quiet,
        Session(name="busy", workspace="w", local_path=tmp_path, write_interval=0.05) as busy,
    ):
        quiet.log("waits for the periodic round")

        def flush_busy_then_look() -> bool:
            busy.log("x")
            busy.flush()
            return quiet.log_file.stat().st_size > 0

        assert wait_until(flush_busy_then_look), "flushing one session kept the other from being written"


def test_flushing_each_of_many_sessions_looks_at_each_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flushing 200 sessions in turn drains each once, not all of them 200 times."""
    drained: list[str] = []
    real_drain = _batcher.Worker._drain

    def counting_drain(self: _batcher.Worker, channel: _batcher.Channel, *args: Any, **kw: Any) -> bool:
        drained.append(channel.name)
        return real_drain(self, channel, *args, **kw)

    monkeypatch.setattr(_batcher.Worker, "_drain", counting_drain)
    sessions = [
        Session(name=f"s{i}", workspace="w", local_path=tmp_path, write_interval=3600).open()
        for i in range(200)
    ]
    for s in sessions:
        s.log("x")
    try:
        drained.clear()
        for s in sessions:
            s.flush()
        assert len(drained) <= 3 * len(sessions)  # its own request, plus a round or two that wrote all
    finally:
        for s in sessions:
            s.close()
    assert all(len(read_records(s.log_file)) == 1 for s in sessions)


def test_flushing_one_session_does_not_delay_the_writing_of_another(tmp_path: Path) -> None:
    """While another session flushes every 0.9 interval, an entry is still written within about
    one interval (not two): what SIGKILL would spare depends on it."""
    interval = 0.2
    with (
        Session(name="flushed", workspace="w", local_path=tmp_path, write_interval=interval) as flushed,
        Session(name="waiting", workspace="w", local_path=tmp_path, write_interval=interval) as waiting,
    ):
        stop = threading.Event()

        def flush_often() -> None:
            while not stop.wait(0.9 * interval):
                flushed.log("x")
                flushed.flush()

        flusher = threading.Thread(target=flush_often)
        flusher.start()
        delays = []
        try:
            for i in range(5):
                size = waiting.log_file.stat().st_size
                started = time.monotonic()
                waiting.log("y", metadata={"i": i})
                assert wait_until(lambda: waiting.log_file.stat().st_size > size, timeout=5)  # noqa: B023
                delays.append(time.monotonic() - started)
        finally:
            stop.set()
            flusher.join()
    assert max(delays) < 1.5 * interval, f"written after {max(delays):.3f} s, interval {interval} s"


def test_an_idle_channel_not_lent_is_lent_to_the_native_writer_at_the_next_look(tmp_path: Path) -> None:
    """A session whose loan ended with nothing left to write (a reopened one, a fault that
    passed) goes back to the native writer when the writer next looks at every channel,
    not only after Python's writer has written a batch of its own."""
    a = Session(name="a", workspace="w", local_path=str(tmp_path), write_interval=0.001).open()
    b = Session(name="b", workspace="w", local_path=str(tmp_path), write_interval=0.001).open()
    try:
        a.log("before")
        a.flush()
        channel = a._channel
        assert channel.queue.lent
        channel.sink.reclaim(channel.queue)  # as Python's writer does before writing it
        assert not channel.queue.lent
        time.sleep(0.01)  # the write interval passes: b's flush makes the writer look at every channel
        b.flush()
        assert channel.queue.lent
        a.log("after")
        a.flush()
    finally:
        a.close()
        b.close()
    assert [r["message"] for r in read_records(a.log_file)] == ["before", "after"]
