"""Small JSON files replaced whole, under a lock on their folder: parameters.json, a track's metadata.json.

A writer locks the folder (`flock`, so other processes wait), writes a temporary
file, fsyncs it, renames it over the old one and fsyncs the folder: a crash leaves
the old file or the new one, never half of one. A process forked while one of its
threads holds such a lock closes its copy of the folder's descriptor, which would
otherwise keep the lock held for as long as the child lives.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._process import on_fork

_held: dict[int, str] = {}  # descriptors locked (or being locked) by this process, and their paths
_guard = threading.RLock()  # opening a descriptor and adding it, removing and closing it: a fork
# waits for either, so a child never has a copy of one that is not in `_held` (its copy would
# keep the lock held after the parent let go). Re-entrant: a signal handler may lock a folder.


@contextmanager
def locked_folder(folder: Path, timeout: float | None = None) -> Iterator[int]:
    """The folder (made if missing) opened and locked for this process; yields its descriptor.
    With `timeout` (seconds), TimeoutError when another holder keeps it longer."""
    _watch_forks()
    os.makedirs(folder, exist_ok=True)  # deleted under an open session: made again, as logs are
    with _holding(_open_held(os.fspath(folder), os.O_RDONLY | os.O_CLOEXEC), timeout=timeout) as fd:
        yield fd


@contextmanager
def locked_file(file: Path, waiting: Callable[[], None] | None = None) -> Iterator[int]:
    """`file` (made if missing) opened read-write and locked for this process; yields its
    descriptor, or -1 when it cannot be opened (a read-only folder). `waiting()` is called
    first if another holder must let go."""
    _watch_forks()
    try:
        fd = _open_held(os.fspath(file), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
    except OSError:
        yield -1
        return
    with _holding(fd, waiting) as fd:
        yield fd


def held_here(path: Path) -> bool:
    """Whether this process holds (or is taking) the lock of `path`: in a signal handler, the
    thread it interrupted may be the holder, and waiting for it would wait forever."""
    return os.fspath(path) in _held.values()


def _open_held(path: str, flags: int) -> int:
    """`path` opened and listed in `_held` in one step a fork waits for."""
    with _guard:
        fd = os.open(path, flags, 0o644)
        _held[fd] = path
    return fd


@contextmanager
def _holding(
    fd: int, waiting: Callable[[], None] | None = None, timeout: float | None = None
) -> Iterator[int]:
    """`fd` (from `_open_held`) flocked, then closed (which releases the lock) and unlisted, so
    that a forked child meanwhile closes its copy."""
    try:
        if waiting is None and timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            _flock_waiting(fd, waiting, timeout, _held[fd])
        yield fd
    finally:
        with _guard:
            del _held[fd]
            os.close(fd)  # releases the lock


def _flock_waiting(fd: int, waiting: Callable[[], None] | None, timeout: float | None, path: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        if waiting is not None:
            waiting()
    if timeout is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                msg = f"{path} stayed locked by another writer for {timeout:g} s"
                raise TimeoutError(msg) from None
            pause.wait(0.01)


def _watch_forks() -> None:
    on_fork("folders", before=_take_guard, after_in_parent=_give_guard, after_in_child=_new_guard)


def _take_guard() -> None:
    _guard.acquire()


def _give_guard() -> None:
    _guard.release()


def replace_file(file: Path, data: bytes, folder: int, durable: bool = True) -> None:
    """Write `data` as `file` whole: a temporary file, fsync, rename, fsync of the folder
    (without `durable`, no fsync: the caller makes many files durable at once, see `sync_files`).

    Called under `locked_folder`: every writer holds the lock while its temporary
    file exists, so any other one found was left by a killed process, and is removed."""
    for stale in file.parent.glob(f".{file.name}.*.tmp"):
        if stale.is_file():
            stale.unlink(missing_ok=True)
    tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    try:
        mode = os.stat(file).st_mode & 0o777
    except OSError:
        mode = 0o644
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, file)
        if durable:
            os.fsync(folder)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sync_files(paths: Iterable[str]) -> None:
    """Make what was written to the files at `paths` (and their names) durable at once: one
    `syncfs` per filesystem that holds them, or one `os.sync()` where libc has no `syncfs`.

    For many files this costs a fraction of an fsync each. Raises OSError (naming no
    file) if a filesystem reports a write error: the caller fsyncs one by one to learn which."""
    devices: dict[int, str] = {}
    for path in paths:
        try:
            devices.setdefault(os.stat(os.path.dirname(path)).st_dev, path)
        except FileNotFoundError:  # deleted since: nothing of it left to make durable
            pass
    syncfs = _syncfs()
    if syncfs is None:
        if devices:
            os.sync()
        return
    for path in devices.values():
        try:
            fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            if syncfs(fd) != 0:
                import ctypes

                errno = ctypes.get_errno()
                raise OSError(errno, os.strerror(errno))
        finally:
            os.close(fd)


_libc_syncfs: list[Callable[[int], int] | None] = []  # looked up at the first use, not at import


def _syncfs() -> Callable[[int], int] | None:
    if not _libc_syncfs:
        found: Any = None
        try:
            import ctypes

            found = ctypes.CDLL(None, use_errno=True).syncfs
            found.argtypes, found.restype = [ctypes.c_int], ctypes.c_int
        except (ImportError, OSError, AttributeError):  # no ctypes, or a libc without syncfs
            found = None
        _libc_syncfs.append(found)
    return _libc_syncfs[0]


def reworded(exc: OSError, message: str) -> OSError:
    """An OSError with `message` and the errno of `exc`, so callers can still tell ENOSPC from EIO."""
    return OSError(exc.errno, message) if exc.errno is not None else OSError(message)


def _new_guard() -> None:
    """In a forked child: close the copies of the descriptors the parent held locked, and take
    a guard of its own (the parent's was held across the fork)."""
    global _guard
    for fd in list(_held):
        try:
            os.close(fd)
        except OSError:
            pass
    _held.clear()
    _guard = threading.RLock()
