"""The background writer: one bounded queue, one daemon thread and one file per session.

Callers append to `Writer.queue` and compare its length with `wake_at`; only
when it reaches that mark do they call `pressure()`, which wakes the thread or,
when the queue is full, writes a share of it in the caller's thread (or drops
the entry, if the session asked for that), so memory stays bounded. The thread
wakes every `interval` seconds or when woken and drains the queue in slices of
`BATCH_SIZE` entries: encode, then one `os.write`, which also hands the GIL back
to the caller. `flush()` does the same work in the caller's thread, then fsyncs.

Each slice is written under an exclusive `flock` on the file. If the file grew
since our last write, another process wrote to it: the writer reads the tail to
continue its sequence numbers, so several processes can share one session. A
slice is all or nothing: a failed write is truncated away and its entries are
kept and retried, in order, until they land.
"""

import fcntl
import os
import queue
import sys
import threading
import time
from collections import deque
from pathlib import Path

import orjson

from . import _process
from ._encode import Encoder, Entry

WRITE_INTERVAL = 0.1  # default seconds between the thread's rounds when nobody wakes it
BATCH_SIZE = 128  # entries per slice of the thread (~0.1 ms of GIL): encoded, then one os.write
WAKE_AT = 1024  # queued entries that wake the thread before its interval is up
CALLER_BATCH_SIZE = 512  # entries per slice when flush() or a full queue has the caller write
QUEUE_LIMIT = 8192  # entries queued at most; then log() writes (or drops, if asked) to make room
_TAIL_CHUNK = 64 * 1024


class Writer:
    """Owns one log file and the thread that appends the queue to it."""

    def __init__(self, path: Path, interval: float = WRITE_INTERVAL, drop: bool = False) -> None:
        self.path = path
        self.queue: deque[Entry] = deque()
        self.wake_at = WAKE_AT  # queue length at which log() calls pressure()
        self._interval = interval
        self._drop = drop
        self._dropped = 0
        self._drop_lock = threading.Lock()
        self._lock = threading.Lock()  # orders slices; guards the fields below
        self._owner = 0  # thread id holding _lock, so a signal handler never waits on itself
        self._wake = threading.Event()
        self._helping = False  # a caller is making room: the thread stands aside
        self._stopping = False
        self._exiting = False  # after exit_flush: write each entry at once
        self._encoder = Encoder()
        self._fd = -1
        self._size = -1  # file size after our last write; -1: read the tail before writing
        self._next_sequence = 0
        self._retry: list[Entry] = []  # a slice whose write failed, first in line
        self._reported = 0  # errno last reported on stderr
        self._thread: threading.Thread | None = None
        self._open_file()
        _syncer.running()
        _process.track(self)
        if _process.exiting:  # opened by an exit handler after ours ran: no thread would finish
            self._exiting = True
            self.wake_at = 1
        else:
            self._start_thread()

    # -- called by Session ------------------------------------------------------

    def pressure(self) -> None:
        """The queue reached `wake_at`: wake the thread; if the queue is full, make room."""
        if self._owner == threading.get_ident():
            return  # logged from inside our own slice (a str() that logs): never wait on ourselves
        if self._exiting or (self._thread is None and not self._start_thread()):
            self._write_now()  # the process is ending: no thread to hand the work to
            return
        self.wake_at = QUEUE_LIMIT  # the thread is on its way; until it idles, only "full" matters
        self._wake.set()
        queue = self.queue
        if self._drop:
            with self._drop_lock:
                while len(queue) > QUEUE_LIMIT:
                    queue.pop()  # the newest entry: the ones before it keep their place
                    self._dropped += 1
            return
        while len(queue) >= QUEUE_LIMIT:
            # Write a share here, in the caller's thread: waiting for the writer
            # thread instead costs GIL hand-offs of up to 5 ms each way.
            self._helping = True
            try:
                self._drain(CALLER_BATCH_SIZE)
            except OSError:
                time.sleep(self._interval)  # the file refuses: wait for it, drop nothing
            finally:
                self._helping = False

    def flush(self, timeout: float | None = None) -> None:
        """Write and fsync everything queued before this call; raise if the file refuses.

        With a `timeout`, raise TimeoutError rather than wait longer for the disk.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self._drain(len(self.queue) + len(self._retry), deadline)
        self._fsync(deadline)

    def close(self, timeout: float | None = None) -> None:
        """Stop the thread, flush, and close the file. Safe to call again after a failure."""
        self._stop_thread(timeout)
        self.flush(timeout)
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        _process.untrack(self)

    # -- process events (see _process) ---------------------------------------------

    def before_fork(self) -> None:
        self._lock.acquire()  # no slice is half written when the process is copied

    def after_fork_in_parent(self) -> None:
        self._lock.release()

    def after_fork_in_child(self) -> None:
        """The parent writes what it had queued; the child starts clean, with its own file handle."""
        self.queue.clear()
        self._retry = []
        self._dropped = 0
        self._lock = threading.Lock()
        self._drop_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None  # started again by the child's first log()
        self.wake_at = 0
        self._helping = self._stopping = False
        try:
            self._open_file()  # the inherited handle shares the parent's flock
        except OSError:
            self._fd = -1  # the next write tries again

    def exit_flush(self, timeout: float) -> None:
        """At interpreter exit or on SIGTERM: write everything, within `timeout`, never raise.

        The file stays open and later log() calls are written at once, so a log
        from a later exit handler still lands.
        """
        deadline = time.monotonic() + timeout
        try:
            self._exiting = True
            self._stop_thread(timeout)
            self.wake_at = 1
            self._drain(len(self.queue) + len(self._retry), deadline)
            self._fsync(deadline)
        except Exception as exc:
            print(f"dreamlake: at exit: {exc}", file=sys.stderr)

    # -- the thread -----------------------------------------------------------------

    def _start_thread(self) -> bool:
        self._stopping = False
        thread = threading.Thread(target=self._run, name=f"dreamlake {self.path}", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # "can't create new thread at interpreter shutdown"
            self.wake_at = 1
            return False
        self._thread = thread
        self.wake_at = WAKE_AT
        return True

    def _stop_thread(self, timeout: float | None) -> None:
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self._drain(None)
            except Exception as exc:  # the thread must survive anything: report, retry
                errno = getattr(exc, "errno", None) or -1
                if errno != self._reported:
                    self._reported = errno
                    print(f"dreamlake: {exc} (will retry)", file=sys.stderr)
            else:
                self._reported = 0
                if not self._stopping:
                    self.wake_at = WAKE_AT  # idle: let log() wake us again

    def _write_now(self) -> None:
        try:
            self._drain(len(self.queue) + len(self._retry))
        except OSError as exc:
            print(f"dreamlake: {exc}", file=sys.stderr)

    # -- writing ------------------------------------------------------------------------

    def _drain(self, limit: int | None, deadline: float | None = None) -> None:
        """Write queued entries slice by slice: all of them, or at least `limit`.

        The thread (no limit) writes short slices to hand the GIL back often; a
        caller draining in its own thread writes longer ones, with fewer syscalls.
        """
        queue = self.queue
        size = BATCH_SIZE if limit is None else CALLER_BATCH_SIZE
        written = 0
        while limit is None or written < limit:
            if limit is None and self._helping:
                break
            if not self._acquire(deadline):
                raise TimeoutError(f"dreamlake: {self.path} is busy; gave up waiting")
            try:
                batch = self._retry or [queue.popleft() for _ in range(min(len(queue), size))]
                if self._dropped:
                    batch.insert(0, self._drop_notice())
                if not batch:
                    break
                self._retry = batch  # until it is written
                self._write(batch)
                self._retry = []
                written += len(batch)
            finally:
                self._owner = 0
                self._lock.release()

    def _acquire(self, deadline: float | None) -> bool:
        if deadline is None:
            self._lock.acquire()
        elif self._owner == threading.get_ident():
            return False  # a signal handler interrupted this thread's own slice
        elif not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return False
        self._owner = threading.get_ident()
        return True

    def _drop_notice(self) -> Entry:
        with self._drop_lock:
            count, self._dropped = self._dropped, 0
        message = f"dreamlake dropped {count} entries: the queue was full (when_full='drop')"
        return (time.time_ns(), "warn", message, {"dropped": count})

    def _write(self, batch: list[Entry]) -> None:
        """Append `batch` as one write under the file lock, numbered after the file's last record."""
        try:
            if self._fd < 0:
                self._open_file()
            fd = self._fd
            fcntl.flock(fd, fcntl.LOCK_EX)
            stat = os.fstat(fd)
            if stat.st_nlink == 0:  # deleted under us: start a new file rather than write into the void
                self._open_file()
                fd = self._fd
                fcntl.flock(fd, fcntl.LOCK_EX)
                stat = os.fstat(fd)
        except OSError as exc:
            raise self._error(exc) from exc
        start = stat.st_size
        try:
            prefix = b""
            if start != self._size:  # first write, or another process wrote since
                self._next_sequence, partial = _resume_point(fd, start)
                prefix = b"\n" if partial else b""
            data = prefix + self._encoder.encode(batch, self._next_sequence)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as exc:
            try:
                os.ftruncate(fd, start)  # all or nothing: the entries are retried
            except OSError:
                pass
            raise self._error(exc) from exc
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        self._next_sequence += len(batch)
        self._size = start + len(data)

    def _open_file(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._size = -1

    def _fsync(self, deadline: float | None) -> None:
        fd = self._fd
        if fd < 0:
            return
        try:
            if deadline is None or not _syncer.running():
                os.fsync(fd)
            elif not _syncer.fsync(fd, deadline):
                msg = (
                    f"dreamlake: fsync of {self.path} did not finish in time; the entries are "
                    f"written to the OS but may not be on disk yet"
                )
                raise TimeoutError(msg)
        except TimeoutError:
            raise
        except OSError as exc:
            raise self._error(exc) from exc

    def _error(self, exc: OSError) -> OSError:
        if exc.strerror and str(self.path) in exc.strerror:
            return exc
        kept = len(self.queue) + len(self._retry)
        msg = (
            f"dreamlake could not write {self.path}: {exc.strerror or exc}. "
            f"{kept} entries are kept in memory; fix the cause and call flush() or close() again"
        )
        return OSError(exc.errno, msg) if exc.errno is not None else OSError(msg)


class _Syncer:
    """One daemon thread per process that runs fsyncs, so a caller can stop waiting for one.

    Started with the first writer, not when needed: at interpreter exit (where
    a bounded fsync matters most) Python 3.12 refuses to start threads.
    """

    def __init__(self) -> None:
        self._pid = 0
        self._requests: queue.SimpleQueue[tuple[int, threading.Event, list[OSError]]]

    def running(self) -> bool:
        if self._pid == os.getpid():
            return True
        self._requests = queue.SimpleQueue()
        try:
            threading.Thread(
                target=self._run, args=(self._requests,), name="dreamlake fsync", daemon=True
            ).start()
        except RuntimeError:
            return False
        self._pid = os.getpid()
        return True

    def fsync(self, fd: int, deadline: float) -> bool:
        """fsync `fd` by the deadline: False if it has not finished by then; raises its error."""
        done, errors = threading.Event(), list[OSError]()
        self._requests.put((fd, done, errors))
        if not done.wait(max(0.0, deadline - time.monotonic())):
            return False
        if errors:
            raise errors[0]
        return True

    @staticmethod
    def _run(requests: queue.SimpleQueue[tuple[int, threading.Event, list[OSError]]]) -> None:
        while True:
            fd, done, errors = requests.get()
            try:
                os.fsync(fd)
            except OSError as exc:
                errors.append(exc)
            finally:
                done.set()


_syncer = _Syncer()


def _resume_point(fd: int, end: int) -> tuple[int, bool]:
    """Next sequence number after the last valid record, and whether the file ends mid-line."""
    if end == 0:
        return 0, False
    partial = os.pread(fd, 1, end - 1) != b"\n"
    carry = b""  # start of a line whose beginning lies in an earlier chunk
    pos = end
    while pos > 0:
        start = max(0, pos - _TAIL_CHUNK)
        lines = (os.pread(fd, pos - start, start) + carry).split(b"\n")
        carry = lines.pop(0) if start > 0 else b""
        for line in reversed(lines):
            sequence = _sequence_of(line)
            if sequence is not None:
                return sequence + 1, partial
        pos = start
    return 0, partial


def _sequence_of(line: bytes) -> int | None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    sequence = record.get("sequenceNumber") if isinstance(record, dict) else None
    return sequence if type(sequence) is int else None
