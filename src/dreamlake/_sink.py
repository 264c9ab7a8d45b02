"""One JSON Lines file, appended to in whole batches: synchronous, no threads.

Every batch is one `os.write` under an exclusive `flock`, numbered after the last
valid record in the file, so several processes (and several sessions on one path)
can share it. A crash may leave the file ending without its newline: a last line
that parses as a record (the crash cut only the newline) counts as one, and the
batch that follows begins by ending it, in the same write; any other torn line is
ended and skipped. Readers skip a last line without its newline (it may still be
being written), so they never see a number that the writer reuses.

The numbering is predicted and the lines encoded before the lock is taken; only
when another writer appended in between are they encoded again. A batch is all or
nothing: a write that fails, or is interrupted, is truncated away and the batch
stays with the caller to retry.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from typing import Any, Protocol

import orjson

from ._core import Ring
from ._files import reworded

_CHUNK = 1 << 16  # bytes read at a time when looking back for the last record
_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


class Batch(Protocol):
    """Lines taken to be written: `pending` of them until `commit()`."""

    @property
    def pending(self) -> int: ...

    def format(self, first: int) -> bytes:
        """The lines, numbered from `first`."""
        ...

    def commit(self) -> None:
        """They are in the file."""
        ...


class Sink:
    """An append-only log file at an absolute path."""

    def __init__(self, path: str, key: str = "sequenceNumber", keep_open: bool = True) -> None:
        self.path = path
        self.key = key  # the field that numbers the lines: 0, 1, 2, ... in file order
        # Without keep_open the file is opened for each write and fsync: a session with
        # thousands of tracks must not hold thousands of descriptors.
        self.keep_open = keep_open
        self.writes = 0  # batches written; fsync() is needed while `synced` is behind
        self.synced = 0  # the value `writes` had when the last fsync began
        self._fd = -1
        self._size = -1  # file size after our last write; -1: unknown, look before writing
        self._next = 0  # sequence number of our next record, valid while _size holds
        self._newline = False  # the file ends mid-line: start our batch on a new one
        self._new_folder = False  # fsync the folder too, so the new file's name is durable
        # How far the file's numbering moved from what this sink predicted, since open():
        # another writer appended, or the file was deleted or cut. A track adds it to the
        # index it returns, so that appends after such a write get their index in the file.
        self.shift = [0]

    def open(self) -> None:
        """Open (creating folders and file) and find where numbering resumes, without the lock.

        A file torn by a crash may end in a long partial line: it is read once,
        here, rather than under the lock that other processes wait on.
        """
        self.close()
        folder = os.path.dirname(self.path)
        self._new_folder = not os.path.exists(self.path)
        os.makedirs(folder, exist_ok=True)
        self._fd = os.open(self.path, _FLAGS, 0o644)
        size = os.fstat(self._fd).st_size
        self._next = next_number(self._fd, size, 0, self.key) or 0
        self.shift[0] = 0
        self._newline = size > 0 and os.pread(self._fd, 1, size - 1) != b"\n"
        self._size = size
        if not self.keep_open:
            self._release()

    def reopen(self) -> None:
        """A fresh handle on the same path (after a fork: the inherited one shares the lock)."""
        self.close()
        self.writes = self.synced = 0

    @property
    def next_number(self) -> int:
        """The number the next line gets, as of the last open() or write()."""
        return self._next

    @property
    def is_open(self) -> bool:
        return self._fd >= 0

    def close(self) -> None:
        if self._fd >= 0:
            self._release()
        self._size = -1

    def write(self, batch: Batch) -> None:
        """Append `batch.format(first_number)` whole, then `batch.commit()`; raise OSError naming
        the file.

        If anything interrupts the write before the commit, what was written is truncated
        away and the batch stays pending: retrying writes each record exactly once.
        """
        try:
            if self._fd < 0:
                self._open_quietly()
            predicted = self._next
            data = batch.format(predicted) if self._size >= 0 else b""
            fd = self._lock()
        except OSError as exc:
            raise self.error(exc) from exc
        start = -1
        try:
            start = os.fstat(fd).st_size
            if start != self._size:  # first write, or another writer appended since
                if start < self._size:  # truncated under us: look at all of it
                    self._size = -1
                found = next_number(fd, start, max(self._size, 0), self.key)
                if found is not None or self._size < 0:
                    self._next = found or 0
                    self.shift[0] += self._next - predicted
                self._newline = start > 0 and os.pread(fd, 1, start - 1) != b"\n"
                if self._next != predicted or not data:
                    data = batch.format(self._next)
            if self._newline:
                data = b"\n" + data
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            self._size = start + len(data)
            self._next += batch.pending
            self._newline = False
            self.writes += 1
            batch.commit()
            if not self.keep_open:
                self._release()
        except BaseException as exc:
            if start >= 0 and batch.pending:  # not committed: leave no part of it in the file
                try:
                    os.ftruncate(fd, start)
                except OSError:
                    self._size = -1
            if isinstance(exc, OSError):
                raise self.error(exc) from exc
            raise
        finally:
            if self._fd == fd:
                fcntl.flock(fd, fcntl.LOCK_UN)

    @property
    def lendable(self) -> bool:
        """The native writer can take over: the file's end is known, needs no newline first,
        and a kept-open file is open."""
        return self._size >= 0 and not self._newline and (self._fd >= 0 or not self.keep_open)

    def lend(self, ring: Ring, wake_at: int, interval: float) -> None:
        """Let the native writer append `ring`'s plain records while the file is as this sink
        knows it (see docs/core.md); only when `lendable`."""
        ring.lend(self._fd if self.keep_open else -1, self.path, self._size, self._next, wake_at, interval)

    def reclaim(self, ring: Ring) -> None:
        """End the loan (waiting for a write under way) and take over what the native writer
        knew of the file."""
        got = ring.reclaim()
        if got is not None:
            self._size, self._next, writes = got
            self.writes += writes

    def fsync(self) -> None:
        """Make what was written durable; raise OSError naming the file.

        May run in another thread than write(): what that writes meanwhile stays
        counted as not yet synced.
        """
        target = self.writes
        if self.synced >= target:
            return
        try:
            if self._fd >= 0:
                os.fsync(self._fd)
            else:  # written and closed: the data is the file's, whichever descriptor syncs it
                try:
                    fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:  # deleted since: nothing of ours left to make durable
                    self.synced = target
                    return
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            if self._new_folder:
                folder = os.open(os.path.dirname(self.path), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(folder)
                finally:
                    os.close(folder)
                self._new_folder = False
        except OSError as exc:
            raise self.error(exc) from exc
        self.synced = target

    @property
    def unsynced(self) -> bool:
        """Whether something written (or a new file's name) is not yet durable."""
        return self.synced < self.writes or self._new_folder

    def synced_by_others(self, target: int) -> None:
        """What was written up to `target` (a value `writes` had) was made durable by a sync
        of the whole filesystem."""
        self.synced = max(self.synced, target)
        self._new_folder = False

    def error(self, exc: OSError) -> OSError:
        """`exc`, reworded to name the file."""
        if exc.strerror and self.path in exc.strerror:
            return exc
        return reworded(exc, f"dreamlake could not write {self.path}: {exc.strerror or exc}")

    def _open_quietly(self) -> None:
        self._new_folder = self._new_folder or not os.path.exists(self.path)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._fd = os.open(self.path, _FLAGS, 0o644)
        if self.keep_open:
            self._size = -1
        # else the size after our last write stands: write() compares it with the file's

    def _release(self) -> None:
        """Close the descriptor between writes, keeping what is known of the file (see write())."""
        fd, self._fd = self._fd, -1  # forgotten first: a failed close must not leave its number here
        try:
            os.close(fd)  # releases the lock too
        except OSError:
            pass  # Linux frees the descriptor anyway; what was written is in the file

    def _lock(self) -> int:
        """Take the file lock; a file deleted under us is replaced by a new one first."""
        fd = self._fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink == 0:  # deleted: write a new file, not into the void
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            self._fd = -1
            self._open_quietly()
            self._new_folder = True
            fd = self._fd
            fcntl.flock(fd, fcntl.LOCK_EX)
        return fd


def next_number(fd: int, end: int, floor: int, key: str) -> int | None:
    """The number after the last record's `key` among lines that end past `floor`, if any,
    a last line without its newline included: the next write ends that line."""
    record = last_record(fd, end, floor, key, unfinished=True)
    return None if record is None else int(record[key]) + 1


def last_record(fd: int, end: int, floor: int, key: str, unfinished: bool = False) -> dict[str, Any] | None:
    """The last JSON object with an int `key` among the lines that end past `floor`, if any.

    A last line without its newline is left out (what readers do), unless `unfinished`
    (what the writer does, as it ends that line before writing after it). No part of a
    record parses as a record: such a line is a whole record that lacks only its newline.
    """
    for line in _lines_backward(fd, end, floor, unfinished):
        if line[:1] == b"{" and line[-1:] == b"}":
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(record, dict) and type(record.get(key)) is int:
                return record
    return None


def _lines_backward(fd: int, end: int, floor: int, unfinished: bool = False) -> Iterator[bytes]:
    """Whole lines of the file's first `end` bytes, last first, stopping at `floor`.

    Each byte is read once and each line joined once, so a long torn line costs
    time in proportion to its length. Bytes after the last newline are a line
    still being written (or torn): yielded first only if `unfinished` and they end
    past `floor` with the `}` that ends every record (else they are not even joined).
    """
    pieces: list[bytes] = []  # the current line's bytes, last piece first
    line_end = -1  # offset of the newline that ends the current line; -1 before the first
    keep = unfinished and end > floor and os.pread(fd, 1, end - 1) == b"}"  # keep the current line
    pos = end
    while pos > 0:
        start = max(0, pos - _CHUNK)
        block = os.pread(fd, pos - start, start)
        high = len(block)
        while (newline := block.rfind(b"\n", 0, high)) >= 0:
            if keep:
                pieces.append(block[newline + 1 : high])
                yield b"".join(reversed(pieces))
            pieces, keep = [], True
            line_end = start + newline
            if line_end < floor:
                return
            high = newline
        if keep:
            pieces.append(block[:high])
        pos = start
    if keep:
        yield b"".join(reversed(pieces))  # the file's first line (or, without a newline, its only one)
