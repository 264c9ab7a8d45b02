"""`Session`: where records go, and the hot path that queues them."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import orjson

from . import _batcher, _identity, _process
from ._artifacts import Files
from ._batcher import WRITE_INTERVAL, Channel, State
from ._bridge import LoggingHandler
from ._core import Logger
from ._encode import (
    Entry,
    clean_str,
    iso_timestamp,
    preview_bytes,
    safe_str,
    snapshot_steps,
)
from ._format import echo as echo_record
from ._levels import INDEX, LEVELS, RANK, normalize_level
from ._params import Parameters
from ._process import after_exit, on_fork
from ._read._records import LOG_FILE, Records, read_logs
from ._read._sessions import RESERVED
from ._read._tracks import check_name, track_names
from ._remote import Remote, Syncer, client_installed
from ._tracks import Track, check_path_fits, description_of, dressed, summary, track_after_fork_in_child
from ._upload import uploader

LOCAL_PATH_VARIABLE = "DREAMLAKE_LOCAL_PATH"
REMOTE_VARIABLE = "DREAMLAKE_REMOTE"


def default_local_path() -> str:
    """Where sessions go, and where `dreamlake ls` looks, when no folder is given:
    $DREAMLAKE_LOCAL_PATH if set and not empty, else `.dreamlake`."""
    return os.environ.get(LOCAL_PATH_VARIABLE) or ".dreamlake"


class Session:
    """A named run whose records go to `{local_path}/{workspace}/{name}/logs.jsonl`.

    `local_path` defaults to `default_local_path()`: $DREAMLAKE_LOCAL_PATH, else `.dreamlake`.

    With `remote="s3://bucket/prefix"` (default: $DREAMLAKE_REMOTE) a background uploader
    ships what is written to that bucket every `remote_interval` seconds and at flush();
    close() waits for it at most `remote_timeout` seconds. log() never waits for it.

    Use it as a context manager, or call `open()` and `close()` yourself.
    """

    def __init__(
        self,
        name: str,
        workspace: str,
        local_path: str | os.PathLike[str] | None = None,
        *,
        write_interval: float = WRITE_INTERVAL,
        when_full: Literal["wait", "drop"] = "wait",
        echo: bool = False,
        remote: str | None = None,
        remote_interval: float = 10.0,
        remote_timeout: float = 30.0,
        resume: Literal["allow", "never"] = "allow",
    ) -> None:
        self.name = _path_component("name", name)
        self.workspace = _path_component("workspace", workspace)
        if local_path is None:
            local_path = default_local_path()
        if not isinstance(local_path, (str, os.PathLike)):
            msg = f"local_path must be a str or os.PathLike, got {type(local_path).__name__}"
            raise TypeError(msg)
        if os.fspath(local_path) in ("", b""):
            msg = "local_path must name a folder, got '' (leave it out for the default)"
            raise ValueError(msg)
        self.local_path = Path(os.path.abspath(local_path))  # fixed now: a later chdir changes nothing
        interval = _seconds("write_interval", write_interval)
        if when_full not in ("wait", "drop"):
            msg = f"when_full must be 'wait' or 'drop', got {when_full!r}"
            raise ValueError(msg)
        if resume not in ("allow", "never"):
            msg = (
                f"resume must be 'allow' (re-opening appends) or 'never' (one run per folder), got {resume!r}"
            )
            raise ValueError(msg)
        self._resume = resume
        self._attempt: _identity.Attempt | None = None  # this process's open(), in session.json
        self._outcome: tuple[str, str | None] = ("completed", None)  # what close() records
        self._echo = bool(echo)
        self._remote = _remote_of(self, remote, remote_interval, remote_timeout)
        self._lifecycle = threading.RLock()  # open() and close(); made anew in a forked child
        _track_for_fork(self)
        self._channel = Channel(str(self.log_file), repr(self), interval, when_full == "drop")
        self._emit = _bind_log(self._channel, self._echo)
        self._parameters = Parameters(self)
        self._tracks: dict[str, Track] = {}
        self._find = _bind_track(self)
        # The hot paths: instance attributes shadowing the methods, one call less.
        # A subclass that overrides one keeps its override.
        if type(self).log is Session.log:
            self.__dict__["log"] = self._emit
        if type(self).track is Session.track:
            self.__dict__["track"] = self._find

    def __repr__(self) -> str:
        return (
            f"Session(name={self.name!r}, workspace={self.workspace!r}, local_path={str(self.local_path)!r})"
        )

    @property
    def path(self) -> Path:
        """The session folder."""
        return self.local_path / self.workspace / self.name

    @property
    def log_file(self) -> Path:
        """The JSON Lines file the records are appended to."""
        return self.path / LOG_FILE

    @property
    def was_opened(self) -> bool:
        """True once open() has been called, even if the session is closed since."""
        return self._channel.state is not State.NEW

    @property
    def is_open(self) -> bool:
        """Whether log() records (between open() and close())."""
        return self._channel.state in (State.OPEN, State.EXITING)

    @property
    def echo(self) -> bool:
        """Whether each record is also printed to stderr as a readable line."""
        return self._echo

    def open(self) -> Session:
        """Create the folders and the file, ready to log; re-opening appends (each open() is an
        attempt in session.json). With resume='never', the first open() of this object raises
        FileExistsError if the folder holds a run already. Returns the session."""
        with self._lifecycle:
            if not self.is_open:
                attempt = self._attempt  # one a close() that raised left live goes on
                if attempt is not None:
                    attempt.failure = None
                if attempt is None or attempt.ended:
                    attempt = _identity.Attempt(self.path, self.name, self.workspace)
                    attempt.begin(refuse_existing=self._resume == "never" and not self.was_opened)
                    _end_attempts_at_exit()
                opened: list[Channel] = []
                try:
                    self._channel.open()
                    opened.append(self._channel)
                    for track in list(self._tracks.values()):
                        track.open()
                        opened.insert(0, track._channel)
                except BaseException as exc:  # all or nothing: a later open() starts again
                    try:
                        _batcher.close(opened, None)
                    except OSError:
                        pass  # the error that matters is the one being raised
                    attempt.end(*_identity.outcome(type(exc)))
                    self._attempt = None
                    raise
                self._attempt, self._outcome = attempt, ("completed", None)
                open_sessions.append(self)
                if self._remote is not None:
                    uploader().add(self, *self._remote)
        return self

    def close(self, timeout: float | None = None) -> None:
        """Write, fsync and close the file. Idempotent; raises OSError if the file cannot be written.

        With a `timeout` (seconds) for the whole call, raise TimeoutError instead
        of waiting longer for a slow disk. After either error the entries are kept:
        a later close() (or open()) goes on from there.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._lifecycle.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            msg = (
                f"dreamlake: close() of {self!r} did not start within {timeout:g} s: "
                f"another open() or close() of it is running"
            )
            raise TimeoutError(msg)
        try:
            for at, session in enumerate(open_sessions):
                if session is self:  # by identity: a subclass's __eq__ may call another one equal
                    del open_sessions[at]
                    break
            try:
                _batcher.close(
                    self._channels(), None if deadline is None else max(0.0, deadline - time.monotonic())
                )
            except BaseException as exc:  # a disk error leaves the attempt live: a later close()
                # or open() goes on with it (else it ends at exit); Ctrl-C or SIGTERM ends it now
                if isinstance(exc, KeyboardInterrupt) or _process.terminating:
                    self._end_attempt(("interrupted", None))
                elif self._attempt is not None:
                    self._attempt.failure = type(exc).__name__
                raise
            self._end_attempt(self._outcome)
            if self._remote is not None:  # after the writer: the files are whole and fsynced
                uploader().finish(self, None if deadline is None else max(0.0, deadline - time.monotonic()))
        finally:
            self._lifecycle.release()

    def flush(self, timeout: float | None = None) -> None:
        """Block until every entry logged before the call, from any thread, is on disk.

        With a `timeout` (seconds), raise TimeoutError instead of waiting longer.
        """
        _batcher.flush(self._channels(), timeout)
        if self._remote is not None:
            uploader().nudge(self)  # shipped soon; the network is never waited for here

    def _channels(self) -> list[Channel]:
        """The tracks' channels, then the log's: a track's drop notice goes to the log."""
        return [*(track._channel for track in list(self._tracks.values())), self._channel]

    def parameters(self) -> Parameters:
        """This session's parameters (hyperparameters, configuration): `.set(...)`, `.get()`."""
        return self._parameters

    def files(self) -> Files:
        """This session's files (checkpoints, configs, results): `.upload(...)`, `.list()`,
        `.download(...)`."""
        return Files(self)

    def params(self, mapping: Mapping[str, Any] | None = None, /, **values: Any) -> None:
        """Same as `parameters().set(...)`."""
        self.parameters().set(mapping, **values)

    def track(
        self,
        name: str,
        description: str | None = None,
        tags: list[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Track:
        """This session's track `name` (made on first use): the same object on every call.

        `/` in the name makes folders (`"train/loss"`). `description`, `tags` and
        `metadata` describe the track in its metadata.json; None leaves them as they are.
        Raises RuntimeError if the session is not open.
        """
        return self._find(name, description, tags, metadata)

    def _track(self, name: str, description: object, tags: object, metadata: object) -> Track:
        check_name(name)
        with self._lifecycle:
            if not self.is_open:
                self._channel.refuse("track()")
            info = description_of(description, tags, metadata)  # checked before anything is made
            track = self._tracks.get(name)
            if track is None:
                check_path_fits(self.path, name)
                track = Track(self, name, self._channel)
                track.open()
                self._tracks[name] = track
            if info:
                track.describe(info)
        return track

    def _list_tracks(self) -> list[dict[str, Any]]:
        """Every track of this session on disk (every open, every process): name,
        totalDataPoints, description and tags, after writing what this process queued."""
        tracks = dict(self._tracks)
        _batcher.write([track._channel for track in tracks.values()])
        return [summary(self.path, name, tracks.get(name)) for name in track_names(self.path)]

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
        self._outcome = _identity.outcome(exc_type, _process.terminating)
        self.close()

    def _end_attempt(self, outcome: tuple[str, str | None]) -> None:
        attempt, self._attempt = self._attempt, None
        if attempt is not None:  # written and closed: the run ended as the `with` block said
            attempt.end(*outcome)

    def _end(self, status: str, error: str | None = None) -> None:
        """Close, recording in session.json that the run ended as `status` (one of
        completed, failed, interrupted; `error` names what failed). For integrations."""
        if status not in _identity.STATUSES[1:]:
            msg = f"status must be one of {', '.join(_identity.STATUSES[1:])}, got {status!r}"
            raise ValueError(msg)
        self._outcome = (status, error)
        self.close()

    def log(self, message: object, level: str = "info", metadata: Mapping[Any, Any] | None = None) -> None:
        """Queue one record; returns at once. The writer thread writes it.

        `message` is stored as text, `level` is one of debug, info, warn, error,
        fatal, and `metadata` (a mapping) is copied now, deeply, so later changes to
        it do not reach the record. Raises RuntimeError if the session is not open.
        """
        self._emit(message, level, metadata)


_OPEN = (State.OPEN, State.EXITING)

open_sessions: list[Session] = []
"""Open sessions, oldest first: the module-level `dreamlake.log` uses the last."""

_all_sessions: weakref.WeakValueDictionary[int, Session] = weakref.WeakValueDictionary()  # by id():
# a subclass that defines __eq__ is unhashable


def _remote_of(
    session: Session, remote: object, interval: object, timeout: object
) -> tuple[Syncer, float, float] | None:
    """The uploader's job for `session` (remote, else $DREAMLAKE_REMOTE), checked now: a bad
    URL, a missing client or a name that cannot be a key fails here, never in the uploader."""
    if remote is None:
        remote = os.environ.get(REMOTE_VARIABLE) or None
        if remote is None:
            if (interval, timeout) != (10.0, 30.0):
                msg = (
                    "remote_interval and remote_timeout need a remote: give remote= or set $DREAMLAKE_REMOTE"
                )
                raise ValueError(msg)
            return None
    every, wait = _seconds("remote_interval", interval), _seconds("remote_timeout", timeout)
    parsed = Remote.parse(remote)  # type: ignore[arg-type]
    client_installed()
    return Syncer(session.path, parsed, session.workspace, session.name), every, wait


_ending_at_exit = False


def _end_attempts_at_exit() -> None:
    """Once: at exit (and before SIGTERM ends the process), the attempts still live record how
    the run ended; the files are written and closed by then."""
    global _ending_at_exit
    if not _ending_at_exit:
        _ending_at_exit = True
        after_exit(lambda: _identity.end_live_at_exit(_process.terminating))


def _seconds(what: str, value: object) -> float:
    """`value` as a positive, finite number of seconds; ValueError naming `what` otherwise."""
    if type(value) not in (int, float) or not 0 < value < math.inf:  # type: ignore[operator]
        msg = f"{what} must be a positive number of seconds, got {value!r}"
        raise ValueError(msg)
    return float(value)  # type: ignore[arg-type]


def _track_for_fork(session: Session) -> None:
    """A fork while another thread is inside open() or close() copies its lock held: the child
    gets new ones."""
    on_fork("sessions", after_in_child=_new_locks_in_child)
    _all_sessions[id(session)] = session


def _new_locks_in_child() -> None:
    for session in list(_all_sessions.values()):
        session._lifecycle = threading.RLock()
        for track in session._tracks.values():
            track_after_fork_in_child(track)


def _bind_log(channel: Channel, echo: bool) -> Callable[..., None]:
    """The hot path of one session (`_core.Logger`): check, stamp, snapshot, push. No lock, no I/O.
    The rare paths call back into Python: see `_core.c`."""
    logger: Callable[..., None] = Logger(
        ring=channel.queue,
        channel=channel,
        index=INDEX,
        rank=_rank,
        safe_str=safe_str,
        echo=_echo if echo else None,
        levels=LEVELS,
        **snapshot_steps(),
    )
    return dressed(logger, Session.log)


def _rank(level: object) -> int:
    return RANK[_level(level)]


def _level(level: object) -> str:
    """The canonical name of a level spelled in another case; else ValueError, not chained onto the
    lookup that missed, saying that log()'s second argument is the level."""
    try:
        return normalize_level(level)
    except ValueError:
        pass
    allowed = ", ".join(repr(name) for name in LEVELS)
    msg = (
        f"level (log()'s second argument, or level=) must be one of {allowed}, any case, or 'warning', "
        "'critical'; "
        f"got {level!r} ({type(level).__name__}). "
        "To log several values, pass metadata={...} or one f-string"
    )
    raise ValueError(msg) from None


def _bind_track(session: Session) -> Callable[..., Track]:
    """session.track(): a dict lookup for a track already made (the call inside a loop)."""
    get = session._tracks.get
    channel = session._channel
    opened = _OPEN
    owner = weakref.ref(session)  # not the session itself: its own attribute would keep it alive

    def track(name: str, description: object = None, tags: object = None, metadata: object = None) -> Track:
        try:
            found = get(name)
        except TypeError:  # unhashable: _track() says what a name must be
            found = None
        if found is None or description is not None or tags is not None or metadata is not None:
            return owner()._track(name, description, tags, metadata)  # type: ignore[union-attr]
        if channel.state not in opened:
            channel.refuse("track()")
        return found

    track.__doc__ = Session.track.__doc__
    return track


def _echo(entry: Entry) -> None:
    """The record as the file will hold it, as a readable line on stderr. Never raises."""
    ns, level, message, metadata = entry
    try:
        record = {
            "timestamp": iso_timestamp(ns),
            "level": level,
            "message": clean_str(message),
            "metadata": None if metadata is None else orjson.loads(preview_bytes(metadata)),
        }
        echo_record(record)
    except Exception:  # noqa: BLE001 - stderr closed or busy: the record is in the file anyway
        pass


def _path_component(what: str, value: object) -> str:
    """Check that `value` names exactly one folder."""
    if not isinstance(value, str):
        msg = f"{what} must be a str, got {type(value).__name__}"
        raise TypeError(msg)
    seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    if value in RESERVED:
        msg = (
            f"{what} cannot be {value!r}: a session folder keeps its own files under that name "
            f"({', '.join(sorted(RESERVED))}); choose another"
        )
        raise ValueError(msg)
    if value in ("", ".", "..") or any(s in value for s in seps) or "\0" in value:
        msg = (
            f"{what} must be a single folder name: not empty, not '.' or '..', "
            f"without '/' or NUL; got {value!r}"
        )
        raise ValueError(msg)
    return value
