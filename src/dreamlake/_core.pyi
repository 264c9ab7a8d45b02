"""The native queue of one log or track, and the native writer (see docs/core.md for who owns what)."""

from collections.abc import Callable
from typing import Any

class Ring:
    """The entries of one session's log (or, with `points`, one track), as bytes.

    Its offsets change under its own mutex; `format` reads the taken entries with the GIL
    released. While lent, the native writer writes its file without the GIL. `limit` is the
    most bytes it grows to.
    """

    mark: int
    """The queued length at which a push returns the entry's serial + 1 instead of 0."""

    def __init__(self, points: bool = False, limit: int = ...) -> None: ...
    def __len__(self) -> int:
        """Entries queued, not yet taken by the writer."""
    @property
    def pending(self) -> int:
        """Entries taken by the writer, not yet committed."""
    @property
    def written(self) -> int:
        """Batches written (committed) so far: what a caller waiting for room watches."""
    @property
    def serial(self) -> int:
        """The serial number the next entry gets."""
    @property
    def size(self) -> int:
        """Bytes the queued and taken entries hold."""
    @property
    def capacity(self) -> int:
        """Bytes allocated."""
    @property
    def lent(self) -> bool:
        """Whether the native writer may write its file."""
    def push(self, ns: int, level: int, message: str, metadata: bytes | str | object | None, /) -> int:
        """Queue a log entry: 0, the serial + 1 at the mark, or -1 when its bytes find no room."""
    def push_point(self, ns: int, data: bytes | str | object | None, /) -> int:
        """Queue a track's point: as `push`."""
    def take(self, most: int, /) -> int:
        """The writer takes up to `most` queued entries; how many."""
    def format(
        self,
        first: int,
        notices: list[tuple[int, str, str, str]],
        resolve: Callable[[Any], bytes],
        /,
    ) -> bytes:
        """The notices, then the taken entries, as JSON Lines numbered from `first`; metadata
        given as an object is `resolve(object)`."""
    def commit(self) -> None:
        """The taken entries are written: forget them."""
    def remove(self, serial: int, /) -> bool:
        """Take back a queued entry; False if the writer took it (or it is gone)."""
    def pop(self, since: int, end: int, /) -> bool:
        """Take back the newest entry, if its serial is in [since, end) and the writer has not
        taken it."""
    def clear(self) -> None:
        """Forget every entry, taken ones too (a forked child). RuntimeError while lent."""
    def lend(self, fd: int, path: str, size: int, next: int, wake_at: int, interval: float, /) -> None:
        """The native writer may append the plain entries to the file of `size` bytes whose next
        line is numbered `next`, through `fd` (or, if -1, opening `path` for each write), every
        `interval` seconds, the mark back at `wake_at` after each write."""
    def reclaim(self) -> tuple[int, int, int] | None:
        """End the loan, once a write under way is done: (size, next, batches written), or None
        if it was not lent."""
    def unlend(self) -> None:
        """End the loan without waiting (Python's writer reclaims it)."""
    def wake(self) -> bool:
        """Have the native writer write it now; False if it is not lent to a running writer."""
    def wait_written(self, seen: int, timeout: float, /) -> int:
        """Wait, without the GIL, until the native writer has written a batch since `written`
        was `seen`: 1, or 0 after `timeout` seconds without, or -1 if the ring is not (or no
        longer) lent to a running native writer. Signal handlers run every 50 ms meanwhile."""

class Logger:
    """A session's `log(message, level="info", metadata=None)`: checks, stamps, encodes the
    metadata with `dumps(metadata, default, option)` and pushes onto `ring`, all in C; the rare
    paths call the Python functions it was made with."""

    def __init__(
        self,
        *,
        ring: Ring,
        channel: Any,
        index: dict[object, int],
        rank: Callable[[object], int],
        safe_str: Callable[[object], str],
        dumps: Callable[..., bytes],
        default: Callable[[Any], Any],
        option: int,
        careful: Callable[[Any], Any],
        checked: Callable[[Any, bytes], Any],
        snapshot: Callable[[object], Any],
        echo: Callable[[tuple[int, str, str, Any]], None] | None,
        levels: tuple[str, ...],
    ) -> None: ...
    def __call__(self, message: object, level: str = "info", metadata: Any = None) -> None: ...

class Appender:
    """A track's `append(value=NO_VALUE, /, **fields)`: builds and encodes the fields, then, while
    the track's `lock` is free and the queue far from its mark, takes the next index from
    `counter` and pushes in one step; otherwise calls `slow(ns, data)`."""

    def __init__(
        self,
        *,
        ring: Ring,
        counter: list[int],
        shift: list[int],
        lock: Any,
        slow: Callable[[int, Any], dict[str, int | None]],
        dumps: Callable[..., bytes],
        default: Callable[[Any], Any],
        option: int,
        careful: Callable[[Any], Any],
        checked: Callable[[Any, bytes], Any],
        snapshot: Callable[[object], Any],
    ) -> None: ...
    def __call__(self, value: Any = ..., /, **fields: Any) -> dict[str, int | None]: ...

def start() -> bool:
    """Start the native writer's thread unless it runs; False if it cannot."""

def stop(timeout: float, /) -> bool:
    """Stop it after its current write and wait, up to `timeout` seconds, for its thread to
    leave the OS; False if it is still writing."""

def running() -> bool:
    """Whether the native writer's thread runs."""

def fail_writes(errno: int, count: int, /) -> None:
    """Tests only: the native writer's next `count` writes write half their bytes, then fail
    with `errno`."""

def faults_left() -> int:
    """Tests only: how many faults asked for by `fail_writes` are still to come."""

def flat(metadata: dict[Any, Any], /) -> bytes | None:
    """Tests only: the text `Logger` writes for a flat dict itself, byte for byte orjson's, or
    None where it leaves the dict to orjson."""
