"""The background writer: one queue, one daemon thread and one file per session.

Callers only append to `Writer.queue`. The thread wakes every `WRITE_INTERVAL`
seconds, drains the queue in batches of at most `BATCH_SIZE` entries, encodes
each batch and writes it with one `os.write`. `flush()` does the same work in
the caller's thread and then fsyncs, so it needs no hand-shake with the thread
and still works when the thread is gone. One lock orders batches, so file order
and sequence numbers agree.
"""

import atexit
import os
import sys
import threading
from collections import deque
from pathlib import Path

import orjson

from ._encode import Encoder, Entry

WRITE_INTERVAL = 0.1  # seconds between the writer's rounds when nobody asks
BATCH_SIZE = 1024  # entries encoded and written per os.write
_TAIL_CHUNK = 64 * 1024


class Writer:
    """Owns one log file and the thread that appends the queue to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.queue: deque[Entry] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
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
            try:
                self._drain(None)
            except OSError as exc:
                if self._reported is None or exc.errno != self._reported.errno:
                    self._reported = exc
                    print(f"dreamlake: {exc} (will retry)", file=sys.stderr)

    def _drain(self, limit: int | None) -> None:
        """Write queued entries in batches: all of them, or about `limit` for a flush."""
        queue = self.queue
        popleft = queue.popleft
        written = 0
        while True:
            with self._lock:
                self._write_pending()
                available = len(queue)
                if not available or (limit is not None and written >= limit):
                    return
                batch = [popleft() for _ in range(min(available, BATCH_SIZE))]
                self._pending = self._encoder.encode(batch, self._next_sequence)
                self._next_sequence += len(batch)
                written += len(batch)
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
