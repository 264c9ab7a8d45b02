"""`Session`: where records go, and the hot path that queues them."""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from time import time_ns
from types import TracebackType
from typing import Any, Literal

from ._encode import safe_str
from ._bridge import LoggingHandler
from ._format import echo as echo_record
from ._levels import CANONICAL, normalize_level
from ._reader import LOG_FILE, Records, read_logs
from ._writer import WRITE_INTERVAL, Writer

class Session:
    """A named run whose records go to `{local_path}/{workspace}/{name}/logs.jsonl`.

    Use it as a context manager, or call `open()` and `close()` yourself.
    """

    def __init__(
        self,
        name: str,
        workspace: str,
        local_path: str | os.PathLike[str] = ".dreamlake",
        *,
        write_interval: float = WRITE_INTERVAL,
        when_full: Literal["wait", "drop"] = "wait",
        echo: bool = False,
    ) -> None:
        self.name = _path_component("name", name)
        self.workspace = _path_component("workspace", workspace)
        if not isinstance(local_path, (str, os.PathLike)):
            msg = f"local_path must be a str or os.PathLike, got {type(local_path).__name__}"
            raise TypeError(msg)
        self.local_path = Path(local_path)
        if type(write_interval) not in (int, float) or not 0 < write_interval < math.inf:
            msg = f"write_interval must be a positive number of seconds, got {write_interval!r}"
            raise ValueError(msg)
        if when_full not in ("wait", "drop"):
            msg = f"when_full must be 'wait' or 'drop', got {when_full!r}"
            raise ValueError(msg)
        self.echo = bool(echo)
        self._write_interval = float(write_interval)
        self._drop_when_full = when_full == "drop"
        self._file: Writer | None = None  # from open() until a close() that succeeded
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"Session(name={self.name!r}, workspace={self.workspace!r}, "
            f"local_path={str(self.local_path)!r})"
        )

    @property
    def path(self) -> Path:
        """The session folder."""
        return self.local_path / self.workspace / self.name

    @property
    def log_file(self) -> Path:
        """The JSON Lines file the records are appended to."""
        return self.path / LOG_FILE

    def open(self) -> Session:
        """Create the folders and start the writer; re-opening appends. Returns the session."""
        if self._file is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._file = Writer(self.log_file, self._write_interval, self._drop_when_full)
            # The hot path: an instance attribute shadowing the `log` method below,
            # which only runs while the session is not open.
            self.__dict__["log"] = _bind_log(self._file, self.echo)
            open_sessions.append(self)
        return self

    def close(self, timeout: float | None = None) -> None:
        """Flush, fsync and close the file. Idempotent; raises if the file cannot be written.

        With a `timeout` (seconds), raise TimeoutError instead of waiting longer
        for a slow disk; a later close() tries again.
        """
        if self._file is not None:
            self.__dict__.pop("log", None)
            self._closed = True
            if self in open_sessions:
                open_sessions.remove(self)
            self._file.close(timeout)  # if this raises, a later close() tries again
            self._file = None

    def flush(self, timeout: float | None = None) -> None:
        """Block until every entry logged before the call, from any thread, is on disk.

        With a `timeout` (seconds), raise TimeoutError instead of waiting longer.
        """
        if self._file is not None:
            self._file.flush(timeout)

    def logging_handler(self, level: int = logging.NOTSET) -> LoggingHandler:
        """A `logging.Handler` that sends stdlib log records into this session.

        `logging.getLogger().addHandler(session.logging_handler())` brings in the
        logs of every library; WARNING is stored as warn and CRITICAL as fatal.
        """
        return LoggingHandler(self, level)

    def read_logs(self, level: str | None = None) -> Records:
        """Flush, then read this session's records back (see `dreamlake.read_logs`)."""
        self.flush()
        return read_logs(self.path, level)

    def __enter__(self) -> Session:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def log(
        self, message: object, level: str = "info", metadata: Mapping[Any, Any] | None = None
    ) -> None:
        """Queue one record; returns at once. The writer thread encodes and writes it.

        `message` is stored as text, `level` is one of debug, info, warn, error,
        fatal, and `metadata` (a mapping) is copied now, so later changes to it do
        not reach the record. (An open session replaces this method with the
        function `_bind_log` makes; what runs here is the not-open case.)
        """
        if self._closed:
            msg = f"{self!r} is closed: log() after close() is not recorded; open() it again to go on"
        else:
            msg = f"{self!r} is not open: use `with Session(...) as session:` or call .open() first"
        raise RuntimeError(msg)


open_sessions: list[Session] = []
"""Open sessions, oldest first: the module-level `dreamlake.log` uses the last."""


def _bind_log(writer: Writer, echo: bool = False) -> Callable[..., None]:
    """The hot path for one open session: check, stamp, copy, append. No lock, no I/O."""
    queue = writer.queue
    append = queue.append
    canonical = CANONICAL
    modules = sys.modules

    def log(
        message: object, level: str = "info", metadata: Mapping[Any, Any] | None = None
    ) -> None:
        try:
            level = canonical[level]
        except (KeyError, TypeError):
            level = normalize_level(level)
        if message.__class__ is not str:
            message = safe_str(message)
        if metadata is not None:
            if metadata.__class__ is dict:
                metadata = metadata.copy()
            else:
                metadata = _copy_mapping(metadata)
            if "torch" in modules:
                _detach_tensors(metadata)
        append((time_ns(), level, message, metadata))
        if len(queue) >= writer.wake_at:
            writer.pressure()

    log.__doc__ = Session.log.__doc__
    return _echoing(log) if echo else log


def _echoing(log: Callable[..., None]) -> Callable[..., None]:
    """The hot path, then the same record as a readable line on stderr: print() with a file."""

    def echoing_log(
        message: object, level: str = "info", metadata: Mapping[Any, Any] | None = None
    ) -> None:
        log(message, level, metadata)  # checks the arguments first: a bad call echoes nothing
        record = {
            "timestamp": _now(),
            "level": normalize_level(level),
            "message": message if isinstance(message, str) else safe_str(message),
            "metadata": dict(metadata) if metadata is not None else None,
        }
        echo_record(record)

    echoing_log.__doc__ = log.__doc__
    return echoing_log


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_PLAIN = frozenset({float, int, str, bool, type(None)})


def _detach_tensors(metadata: dict[Any, Any]) -> None:
    """Swap tensors for detached views, so a queued entry never keeps an autograd graph alive.

    Converting them to numbers is left to the writer: `.item()` here would wait
    for the GPU. Only runs once torch is imported.
    """
    for key, value in metadata.items():
        if value.__class__ not in _PLAIN:
            detach = getattr(value, "detach", None)
            if callable(detach):
                metadata[key] = detach()


def _copy_mapping(metadata: object) -> dict[Any, Any]:
    if isinstance(metadata, Mapping):
        return dict(metadata)
    msg = f"metadata must be a mapping (such as a dict) or None, got {type(metadata).__name__}"
    raise TypeError(msg)


def _path_component(what: str, value: object) -> str:
    """Check that `value` names exactly one folder."""
    if not isinstance(value, str):
        msg = f"{what} must be a str, got {type(value).__name__}"
        raise TypeError(msg)
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    if value in ("", ".", "..") or any(s in value for s in seps) or "\0" in value:
        msg = (
            f"{what} must be a single folder name: not empty, not '.' or '..', "
            f"without '/' or NUL; got {value!r}"
        )
        raise ValueError(msg)
    return value
