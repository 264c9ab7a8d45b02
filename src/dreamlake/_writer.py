"""The background writer: one bounded queue, one daemon thread and one file per session.

Callers append to `Writer.queue` and compare its length with `wake_at`; only
when it reaches that mark do they call `pressure()`, which wakes the thread or,
when the queue is full, writes a share of it in the caller's thread (nothing is
dropped, and memory stays bounded). The thread wakes
every `WRITE_INTERVAL` seconds or when woken, and drains the queue in slices of
`BATCH_SIZE` entries: encode, then one `os.write`, which also hands the GIL
back to the caller, so the writer never holds it for long. `flush()` does the
same work in the caller's thread and then fsyncs, so it needs no hand-shake
with the thread and still works when the thread is gone. One lock orders the
slices, so file order and sequence numbers agree.
"""

import atexit
import os
import sys
import threading
import time
from collections import deque
from pathlib import Path

import orjson

from ._encode import Encoder, Entry

WRITE_INTERVAL = 0.1  # seconds between the writer's rounds when nobody wakes it
BATCH_SIZE = 128  # entries per slice of the thread (~0.1 ms of GIL): encoded, then one os.write
WAKE_AT = 1024  # queued entries that wake the thread before its interval is up
CALLER_BATCH_SIZE = 512  # entries per slice when flush() or a full queue has the caller write
QUEUE_LIMIT = 8192  # entries queued at most; log() then waits for the writer
ROOM = CALLER_BATCH_SIZE  # entries a caller writes itself when it finds the queue full
_TAIL_CHUNK = 64 * 1024


class Writer:
    """Owns one log file and the thread that appends the queue to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.queue: deque[Entry] = deque()
        self.wake_at = WAKE_AT  # queue length at which log() calls pressure()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._helping = False  # a caller is making room: the thread stands aside
        self._stopping = False
        self._encoder = Encoder()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._next_sequence, partial_line = _resume_point(path)
        # A crash may have left a line without its newline: end it before ours.
        self._pending = bytearray(b"\n" if partial_line else b"")
        self._reported: OSError | None = None
        _register(self)
        self._thread = threading.Thread(
            target=self._run, name=f"dreamlake-writer {path}", daemon=True
        )
        self._thread.start()

    def pressure(self) -> None:
        """The queue reached `wake_at`: wake the thread; if the queue is full, make room."""
        self.wake_at = QUEUE_LIMIT  # the thread is on its way; until it idles, only "full" matters
        self._wake.set()
        while len(self.queue) >= QUEUE_LIMIT:
            # Write a share here, in the caller's thread: waiting for the writer
            # thread instead costs GIL hand-offs of up to 5 ms each way.
            self._helping = True
            try:
                self._drain(ROOM)
            except OSError:
                time.sleep(WRITE_INTERVAL)  # the file refuses: wait for it, drop nothing
            finally:
                self._helping = False

    def flush(self) -> None:
        """Write and fsync everything queued before this call; raise if the file refuses."""
        with self._lock:
            fd = self._fd
        if fd < 0:
            return
        self._drain(len(self.queue))
        try:
            os.fsync(fd)
        except OSError as exc:
            raise self._error(exc) from exc

    def close(self) -> None:
        """Stop the thread, flush, and close the file. Safe to call again after a failure."""
        self._stopping = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self.flush()
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        _live.discard(self)

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(WRITE_INTERVAL)
            self._wake.clear()
            try:
                self._drain(None)
            except OSError as exc:
                if self._reported is None or exc.errno != self._reported.errno:
                    self._reported = exc
                    print(f"dreamlake: {exc} (will retry)", file=sys.stderr)
            else:
                self.wake_at = WAKE_AT  # idle: let log() wake us again

    def _drain(self, limit: int | None) -> None:
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
            with self._lock:
                self._write_pending()
                count = min(len(queue), size)
                if not count:
                    break
                self._pending = self._encoder.encode(queue, count, self._next_sequence)
                self._next_sequence += count
                written += count
                self._write_pending()

    def _write_pending(self) -> None:
        """Hand the encoded bytes to the OS; on failure keep what is left for the next try."""
        pending = self._pending
        while pending:
            try:
                done = os.write(self._fd, pending)
            except OSError as exc:
                raise self._error(exc) from exc
            del pending[:done]

    def _error(self, exc: OSError) -> OSError:
        kept = len(self.queue) + self._pending.count(b"\n")
        msg = (
            f"dreamlake could not write {self.path}: {exc.strerror or exc}. "
            f"{kept} entries are kept in memory; fix the cause and call flush() or close() again"
        )
        return OSError(exc.errno, msg) if exc.errno is not None else OSError(msg)


def _resume_point(path: Path) -> tuple[int, bool]:
    """Next sequence number after the last valid record, and whether the file ends mid-line."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return 0, False
        f.seek(end - 1)
        partial = f.read(1) != b"\n"
        carry = b""  # start of a line whose beginning lies in an earlier chunk
        pos = end
        while pos > 0:
            start = max(0, pos - _TAIL_CHUNK)
            f.seek(start)
            lines = (f.read(pos - start) + carry).split(b"\n")
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


_live: set[Writer] = set()
_atexit_registered = False


def _register(writer: Writer) -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_close_all)
        _atexit_registered = True
    _live.add(writer)


def _close_all() -> None:
    """At interpreter exit, write what sessions never closed still hold."""
    for writer in list(_live):
        try:
            writer.close()
        except Exception as exc:
            print(f"dreamlake: at exit: {exc}", file=sys.stderr)
