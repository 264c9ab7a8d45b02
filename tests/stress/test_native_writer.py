"""The native writer: writes without the GIL, hands every fault back to Python's writer."""

import itertools
import signal
import textwrap
import time

import orjson
import pytest

from .conftest import Child, assert_numbered_in_file_order
from .test_signals import wait_for_line

HOLDS_THE_GIL = "sum(range(10**11))  # one C call that never lets the GIL go (minutes)"


@pytest.mark.parametrize("what", ["log", "track"])
def test_sigkill_while_the_main_thread_holds_the_gil_keeps_what_was_logged_1s_before(
    child: Child, what: str
) -> None:
    """A main thread stuck in one long C call holding the GIL cannot stop the native writer:
    what it logged 1 s before a SIGKILL (10 write intervals) is in the file."""
    body = f"""
        s = session(write_interval=0.1).open()
        track = s.track("loss")
        for i in range(100):
            s.log("x", metadata={{"i": i}}) if {what!r} == "log" else track.append(i=i)
        print("ready", flush=True)
        {HOLDS_THE_GIL}
        """
    with child.start(body) as proc:
        wait_for_line(proc, "ready")
        time.sleep(1.0)  # the promise under test: logged more than write_interval before the kill
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    if what == "log":
        records = child.records()
        assert [r["metadata"]["i"] for r in records] == list(range(100))
        assert_numbered_in_file_order(records)
    else:
        import orjson

        data = (child.root / "ws" / "run" / "tracks" / "loss" / "data.jsonl").read_bytes()
        points = [orjson.loads(line) for line in data.splitlines()]
        assert [p["data"]["i"] for p in points] == list(range(100))
        assert [p["index"] for p in points] == list(range(100))


def test_a_native_write_that_fails_halfway_is_truncated_and_written_once_by_python(child: Child) -> None:
    """The native writer's write fails after half its bytes: the file is cut back, the loan
    ends, and Python's writer writes the batch, each entry exactly once, numbered in order."""
    result = child.run(
        """
        import errno
        from dreamlake import _core
        s = session(write_interval=0.05).open()
        for i in range(500):
            s.log("x", metadata={"i": i})
        s.flush()  # lent again after Python's write
        assert s._channel.queue.lent
        _core.fail_writes(errno.EIO, 1)
        for i in range(500, 1000):
            s.log("x", metadata={"i": i})
        deadline = time.monotonic() + 20
        while _core.faults_left() and time.monotonic() < deadline:
            time.sleep(0.01)  # the native writer's next round hits the fault; nothing to join
        print("hit", _core.faults_left() == 0, flush=True)
        s.close()
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["hit", "True"]
    records = child.records()
    assert [r["metadata"]["i"] for r in records] == list(range(1000))
    assert_numbered_in_file_order(records)


def test_a_full_disk_met_by_the_native_writer_is_reported_and_kept_by_python(child: Child) -> None:
    """ENOSPC in a native write: Python's writer takes over, says so once, keeps the entries,
    and writes them exactly once when the disk has room again."""
    result = child.run(
        """
        import errno, os
        from dreamlake import _core
        s = session(write_interval=0.05).open()
        s.log("first")
        s.flush()
        real_write = os.write
        full = True
        def write(fd, data):
            if full:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(fd, data)
        os.write = write  # Python's own retries meet the same full disk
        _core.fail_writes(errno.ENOSPC, 1)
        for i in range(300):
            s.log("x", metadata={"i": i})
        try:
            s.flush(timeout=10)
        except OSError as exc:
            print("flush", exc.errno == errno.ENOSPC, flush=True)
        full = False
        s.close()
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["flush", "True"]
    assert result.stderr.count("No space left on device") == 1, result.stderr
    records = child.records()
    assert [r["message"] for r in records] == ["first"] + ["x"] * 300
    assert [r["metadata"]["i"] for r in records[1:]] == list(range(300))
    assert_numbered_in_file_order(records)


def test_the_native_thread_stops_with_the_last_session_and_starts_with_the_next(child: Child) -> None:
    result = child.run(
        """
        from dreamlake import _core
        def os_threads():
            return len(os.listdir("/proc/self/task"))
        print(_core.running(), os_threads())
        s = session().open()
        s.log("a")
        print(_core.running(), os_threads())  # the native writer, Python's writer and its fsync thread
        s.close()
        deadline = time.monotonic() + 20
        while os_threads() > 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # the threads leave on their own once idle: nothing to join
        print(_core.running(), os_threads())
        s.open()
        s.log("b")
        print(_core.running())
        s.close()
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "1", "True", "4", "False", "1", "True"], result.stderr
    assert [r["message"] for r in child.records()] == ["a", "b"]


def test_flush_close_open_cycles_under_four_logging_threads_lose_nothing(child: Child) -> None:
    """Four threads log flat out while the main thread flushes, closes and reopens the session
    every few ms: open() never races the writer's loan, and every entry whose log() returned is
    in the file once, numbered in file order."""
    result = child.run(
        """
        import threading
        s = session(write_interval=0.001).open()
        logged, stop = [[] for _ in range(4)], False
        def work(t):
            i = 0
            while not stop:
                try:
                    s.log("m", metadata={"t": t, "i": i})
                except RuntimeError:  # closed: refused, so not logged
                    pass
                else:
                    logged[t].append(i)
                i += 1
        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for k in range(12):
            (s.flush, s.close, s.open)[k % 3]()
            time.sleep(0.002)
        stop = True
        for th in threads:
            th.join()
        s.close()
        print(sum(map(len, logged)), flush=True)
        import orjson
        with open(os.environ["DL_ROOT"] + "/expected.json", "wb") as f:
            f.write(orjson.dumps(logged))
        """,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    import orjson

    expected = orjson.loads((child.root / "expected.json").read_bytes())
    records = child.records()
    assert_numbered_in_file_order(records)
    for t, numbers in enumerate(expected):
        assert [r["metadata"]["i"] for r in records if r["metadata"]["t"] == t] == numbers
    assert len(records) == int(result.stdout)


LENT = textwrap.dedent(
    """
    import fcntl, threading
    def until(ready, what):  # a state of another thread that no event announces: look at it
        deadline = time.monotonic() + 30
        while not ready():
            assert time.monotonic() < deadline, what
            time.sleep(0.005)
    s = session(write_interval=0.01).open()
    s.log("first")
    s.flush()  # the file exists, and the ring is lent again
    """
)


WAIT_AT_A_FULL_QUEUE = LENT + textwrap.dedent(
    """
    from collections import deque
    from dreamlake import _batcher
    class Watched(deque):
        def append(self, latch):
            print("python-latch", flush=True)
            super().append(latch)
    s._channel.waiters = Watched()
    lock = open(s.log_file, "rb")
    fcntl.flock(lock, fcntl.LOCK_EX)  # the native writer waits at the file's lock
    main = threading.main_thread().ident
    def waiting():
        frame = sys._current_frames().get(main)
        while frame is not None:
            if frame.f_code.co_name == "_wait_for_progress":
                return True
            frame = frame.f_back
        return False
    def then(act):
        until(waiting, "no caller waited for room")  # seen on the caller's stack
        act()
    """
)


def test_a_caller_at_a_full_queue_waits_for_the_native_writer_without_pythons(child: Child) -> None:
    """A caller whose queue is full waits for the native writer to make room, with the GIL
    released, and never for Python's writer (no latch); every entry is written once."""
    result = child.run(
        WAIT_AT_A_FULL_QUEUE
        + textwrap.dedent(
            """
        threading.Thread(target=then, args=(lambda: fcntl.flock(lock, fcntl.LOCK_UN),)).start()
        n = 3 * _batcher.QUEUE_LIMIT
        for i in range(n):
            s.log("x", metadata={"i": i})
        s.close()
        print("logged", n, flush=True)
        """
        )
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.split() == ["logged", str(3 * 8192)]
    records = child.records()[1:]
    assert [r["metadata"]["i"] for r in records] == list(range(3 * 8192))
    assert_numbered_in_file_order(child.records())


def test_ctrl_c_while_waiting_for_the_native_writer_raises_and_loses_nothing_logged(child: Child) -> None:
    """Ctrl-C reaches a caller waiting for room from the native writer: log() raises
    KeyboardInterrupt, that entry is not recorded, and every one before it is written once."""
    result = child.run(
        WAIT_AT_A_FULL_QUEUE
        + textwrap.dedent(
            """
        threading.Thread(target=then, args=(lambda: os.kill(os.getpid(), signal.SIGINT),)).start()
        logged = 0
        try:
            while True:
                s.log("x", metadata={"i": logged})
                logged += 1
        except KeyboardInterrupt:
            pass
        fcntl.flock(lock, fcntl.LOCK_UN)
        s.close()
        print("logged", logged, flush=True)
        """
        )
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    words = result.stdout.split()
    assert words[0] == "logged" and int(words[1]) >= 8192
    records = child.records()[1:]
    assert [r["metadata"]["i"] for r in records] == list(range(int(words[1])))
    assert_numbered_in_file_order(child.records())


HELD_AT_THE_FILES_LOCK = LENT + textwrap.dedent(
    """
    lock = open(s.log_file, "rb")
    fcntl.flock(lock, fcntl.LOCK_EX)  # another holder of the file's lock: the native write waits
    for i in range(100):
        s.log("x", metadata={"i": i})
    until(lambda: s._channel.queue.pending == 100, "the native writer took nothing")  # its write is under way
    """
)


def expect_first_and_100(child: Child) -> None:
    records = child.records()
    assert [r["message"] for r in records[:1]] == ["first"]
    assert [r["metadata"]["i"] for r in records[1:]] == list(range(100))
    assert_numbered_in_file_order(records)


@pytest.mark.parametrize("call", ["flush", "close"])
def test_a_native_write_held_at_the_files_lock_times_out_and_keeps_every_entry(
    child: Child, call: str
) -> None:
    """flush(timeout) and close(timeout) raise TimeoutError when the native writer cannot get
    the file's lock in time; the entries are kept, and written once the lock is free."""
    result = child.run(
        HELD_AT_THE_FILES_LOCK
        + textwrap.dedent(
            f"""
        try:
            s.{call}(timeout=0.3)
        except TimeoutError as exc:
            print("TimeoutError", flush=True)
        fcntl.flock(lock, fcntl.LOCK_UN)
        s.{call}()
        s.close()
        """
        )
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["TimeoutError"]
    expect_first_and_100(child)


def test_exit_without_close_waits_for_a_native_write_held_at_the_files_lock(child: Child) -> None:
    """The interpreter exits without close() while the native writer waits for the file's
    lock, freed 1 s later: exit waits for the write, and every entry is in the file."""
    result = child.run(
        HELD_AT_THE_FILES_LOCK
        + textwrap.dedent(
            """
        def free_later():
            time.sleep(1.0)  # how long the other holder keeps the lock
            fcntl.flock(lock, fcntl.LOCK_UN)
        threading.Thread(target=free_later, daemon=True).start()
        """
        )
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    expect_first_and_100(child)


def test_fork_while_a_native_write_waits_for_the_files_lock(child: Child) -> None:
    """A child forked while the parent's native writer is stuck mid-write logs and closes in
    its own right; the parent's entries and the child's are each in the file once."""
    result = child.run(
        HELD_AT_THE_FILES_LOCK
        + textwrap.dedent(
            """
        pid = os.fork()
        if pid == 0:
            for i in range(10):
                s.log("child", metadata={"i": i})
            s.close()  # waits for the lock too, freed by the parent
            os._exit(0)
        fcntl.flock(lock, fcntl.LOCK_UN)
        _, status = os.waitpid(pid, 0)
        s.close()
        print("child", os.waitstatus_to_exitcode(status), flush=True)
        """
        ),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["child", "0"]
    records = child.records()
    parent = [r for r in records if r["message"] != "child"]
    assert [r["metadata"]["i"] for r in parent[1:]] == list(range(100))
    assert [r["metadata"]["i"] for r in records if r["message"] == "child"] == list(range(10))
    assert sorted(r["sequenceNumber"] for r in records) == list(range(len(records)))


OTHER_RECORDS = b'{"timestamp":"2026-01-01T00:00:00.000000Z","level":"info","message":"other","metadata":null,"sequenceNumber":%d}'


@pytest.mark.parametrize(
    ("appended", "native", "numbers"),
    [
        # Whole records of another process: the native writer numbers its batch after them.
        (OTHER_RECORDS % 1 + b"\n" + OTHER_RECORDS % 2 + b"\n", True, [0, 1, 2, *range(3, 103)]),
        # A record torn before its newline (a writer killed mid-line): Python's writer ends
        # the line and counts it.
        (OTHER_RECORDS % 1, False, [0, 1, *range(2, 102)]),
        # Lines that are no record, or end like one with a number JSON refuses: Python's writer
        # looks at them, finds no record, and keeps the numbering.
        (b"not a record\n", False, [0, *range(1, 101)]),
        (b'{"sequenceNumber":007}\n', False, [0, *range(1, 101)]),
        (b'garbage,"sequenceNumber":3}\n', False, [0, *range(1, 101)]),
        # A long record (10 KB, read back in blocks to find where it begins): the native writer;
        # longer than it reads back (64 KiB): Python's writer.
        (
            OTHER_RECORDS.replace(b'"other"', b'"' + b"o" * 10_000 + b'"') % 1 + b"\n",
            True,
            [0, 1, *range(2, 102)],
        ),
        (
            OTHER_RECORDS.replace(b'"other"', b'"' + b"o" * 70_000 + b'"') % 1 + b"\n",
            False,
            [0, 1, *range(2, 102)],
        ),
    ],
    ids=[
        "records",
        "torn-record",
        "text",
        "leading-zero",
        "ends-like-a-record",
        "10-KB-record",
        "70-KB-record",
    ],
)
def test_lines_another_process_appends_during_a_native_write(
    child: Child, appended: bytes, native: bool, numbers: list[int]
) -> None:
    """Another process appends to the file while the native writer, its batch already
    formatted, waits for the file's lock. Whole records: the native writer numbers the batch
    after them, formatted again, and keeps the file; anything else goes to Python's writer.
    Either way every entry is written once, numbered as the file says."""
    result = child.run(
        "from dreamlake import _sink\n"
        "python_writes = []\n"
        "real_write = _sink.Sink.write\n"
        "_sink.Sink.write = lambda self, batch: (python_writes.append(1), real_write(self, batch))[1]\n"
        + HELD_AT_THE_FILES_LOCK
        + textwrap.dedent(
            f"""
        written, before = s._channel.queue.written, len(python_writes)
        with open(s.log_file, "ab") as other:
            other.write({appended!r})
        fcntl.flock(lock, fcntl.LOCK_UN)
        until(lambda: s._channel.queue.written > written or not s._channel.queue.lent, "no write")
        print("native", s._channel.queue.written > written and len(python_writes) == before, flush=True)
        s.close()
        """
        )
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.split() == ["native", str(native)]
    lines = child.log_file.read_bytes().split(b"\n")
    assert lines[-1] == b""
    ours = [orjson.loads(line) for line in lines[:-1] if b'"message":"x",' in line]
    assert [r["metadata"]["i"] for r in ours] == list(range(100))
    records = [orjson.loads(line) for line in lines[:-1] if line.startswith(b'{"timestamp"')]
    assert [r["sequenceNumber"] for r in records] == numbers


FULL_OF_BYTES = (
    textwrap.dedent(
        """
    import orjson
    from dreamlake import _batcher
    _batcher.QUEUE_BYTES = 1 << 20  # a queue full by its bytes long before its 8,192 entries
    _batcher.STALL_TIMEOUT = 1.0
    """
    )
    + LENT
)


def test_a_queue_full_of_bytes_behind_a_stuck_native_write_stalls_and_counts_its_drops(child: Child) -> None:
    """The native writer has taken every queued record and waits at the file's lock: no record
    is queued, yet no byte is free. A caller must wait for a batch to be written, not find the
    queue empty and try again at once (a spin that never stalls): after STALL_TIMEOUT it says
    so, new entries are dropped and counted, and every entry log() kept is written once."""
    result = child.run(
        FULL_OF_BYTES
        + textwrap.dedent(
            """
        lock = open(s.log_file, "rb")
        fcntl.flock(lock, fcntl.LOCK_EX)
        big, n = "x" * 200_000, 0
        deadline = time.monotonic() + 20
        while not s._channel.stalled and time.monotonic() < deadline:
            s.log(big, metadata={"i": n})
            n += 1
        fcntl.flock(lock, fcntl.LOCK_UN)
        s.log("after", metadata={"i": n})
        s.close()
        print(n + 1, flush=True)
        """
        )
    )
    assert result.returncode == 0, result.stderr
    assert "made no progress for 1 s; new entries are dropped" in result.stderr
    records = child.records()
    assert_numbered_in_file_order(records)
    kept = [r["metadata"]["i"] for r in records if r["level"] == "info" and r["message"] != "first"]
    dropped = sum(r["metadata"]["dropped"] for r in records if r["level"] == "warn")
    assert kept == sorted(set(kept)) and kept[-1] == int(result.stdout) - 1  # in order, once, "after" last
    assert dropped > 0 and len(kept) + dropped == int(result.stdout)


def test_callers_that_refill_a_queue_full_of_bytes_never_see_a_false_stall(child: Child) -> None:
    """A record bigger than the queue's byte bound waits while other threads keep the queue
    full: the writer makes progress all along, so there is no stall and no drop, however long
    the queue stays full (here 3x STALL_TIMEOUT), and every record is written once."""
    result = child.run(
        FULL_OF_BYTES
        + textwrap.dedent(
            """
        stop, counts = threading.Event(), {}
        def small(t):
            i = 0
            while not stop.is_set():
                s.log("x" * 10_000, metadata={"t": t, "i": i})
                i += 1
            counts[str(t)] = i
        threads = [threading.Thread(target=small, args=(t,)) for t in range(3)]
        for thread in threads:
            thread.start()
        timer = threading.Timer(3.0, stop.set)
        timer.start()
        s.log("y" * (2 << 20), metadata={"t": "big"})
        for thread in threads:
            thread.join()
        s.close()
        print(orjson.dumps(counts).decode())
        """
        )
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    records = child.records()
    assert_numbered_in_file_order(records)
    assert [r["level"] for r in records if r["level"] != "info"] == []
    records = records[1:]  # after "first"
    assert [r["metadata"]["t"] for r in records].count("big") == 1
    counts = orjson.loads(result.stdout)
    assert sorted(counts) == ["0", "1", "2"]
    for t, count in counts.items():
        assert [r["metadata"]["i"] for r in records if r["metadata"]["t"] == int(t)] == list(range(count))


def test_a_close_while_a_caller_waits_for_bytes_refuses_that_entry_and_keeps_the_rest(child: Child) -> None:
    """A caller waits for room in a queue full of bytes, behind a native write held at the
    file's lock, when another thread closes the session. Once the write goes through, the
    waiting log() raises RuntimeError (the session closed before its entry went in) and
    records nothing; every entry whose log() returned is in the file once."""
    result = child.run(
        FULL_OF_BYTES
        + textwrap.dedent(
            """
        from dreamlake._batcher import State
        lock = open(s.log_file, "rb")
        fcntl.flock(lock, fcntl.LOCK_EX)
        big, logged, outcome = "x" * 200_000, [], []
        def work():
            try:
                while True:
                    s.log(big, metadata={"i": len(logged)})
                    logged.append(len(logged))
            except RuntimeError as exc:
                outcome.append(str(exc))
        worker = threading.Thread(target=work)
        worker.start()
        def waiting():
            frame = sys._current_frames().get(worker.ident)
            while frame is not None and frame.f_code.co_name != "push_when_room":
                frame = frame.f_back
            return frame is not None
        until(waiting, "the caller never waited for room")
        closer = threading.Thread(target=s.close)
        closer.start()
        until(lambda: s._channel.state is State.CLOSED, "close() never began")
        fcntl.flock(lock, fcntl.LOCK_UN)
        worker.join(30)
        closer.join(30)
        print(len(logged), outcome[0].split(":")[0].endswith("is closed"), flush=True)
        """
        )
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    count, refused = result.stdout.split()
    assert refused == "True"
    records = child.records()
    assert_numbered_in_file_order(records)
    assert [r["metadata"]["i"] for r in records[1:]] == list(range(int(count)))


def test_no_object_made_by_a_call_outlives_it(child: Child) -> None:
    """Logging and appending, round after round (plain, None and NaN metadata, a str subclass,
    a level spelled another way, a track's points), each round flushed: the memory Python
    traces stops growing (but where a queue grows). A leak of one small object a call (a
    reference to the metadata's bytes, a message kept) would add megabytes a round."""
    result = child.run(
        """
        import math, tracemalloc
        class Text(str):
            pass
        s = session().open()
        track = s.track("loss")
        def one_round():
            for i in range(20_000):
                s.log("step", metadata={"loss": 0.5, "i": i})
                s.log(Text("sub"), level="WARNING", metadata={"none": None, "nan": math.nan})
                s.log("plain")
                track.append(value=i * 0.5, step=i)
            s.flush()
        one_round()  # the queues and caches grow to their size
        tracemalloc.start()
        sizes = []
        for _ in range(5):
            one_round()
            sizes.append(tracemalloc.get_traced_memory()[0])
        s.close()
        print(*sizes)
        """,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    sizes = [int(size) for size in result.stdout.split()]
    growth = [after - before for before, after in itertools.pairwise(sizes)]
    # A queue that grows (the writer fell behind for a moment) adds its new buffer once; a leak
    # adds to every round.
    assert sorted(growth)[1] < 128 << 10, f"traced memory grew by {growth} bytes a round of 80,000 calls"
    assert len(child.records()) == 6 * 60_000
