"""Tracks: a session's time series, one JSON Lines file per track, written by the logs' writer.

`track.append(**fields)` checks, stamps, snapshots and queues, like `log()`: the
writer thread numbers the points in file order (`index` 0, 1, 2, ... with no gaps,
across re-opens and processes, under the file's lock) and appends them in batches.
`metadata.json` beside the points is replaced whole when `track()` is given a new
description, tags or metadata, and again, with the totals, when the points are made
durable (flush, close, exit, SIGTERM), never per point.
"""

from __future__ import annotations

import functools
import inspect
import operator
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from . import _batcher
from ._batcher import Channel, State
from ._core import Appender
from ._encode import Metadata, iso_timestamp, metadata_bytes, snapshot, snapshot_steps
from ._files import locked_folder, replace_file, reworded
from ._read._tracks import (
    DATA_FILE,
    META_FILE,
    TRACKS,
    count_points,
    last_point,
    load_metadata,
    points_between,
)

if TYPE_CHECKING:
    from ._session import Session

_OPEN = (State.OPEN, State.EXITING)
_CHUNK = 4096  # points of a batch queued at once


NO_VALUE: Any = object()
"""Stands for `append()` called without a positional value."""


_PID_DIGITS = 10  # a temporary file's name holds the writer's pid: room for the largest


def check_path_fits(session: Path, name: str) -> None:
    """ValueError, before anything is created, if the longest file the track needs (its
    temporary metadata file) would be a path longer than the system takes."""
    longest = session / TRACKS / name / f".{META_FILE}.{'9' * _PID_DIGITS}.tmp"
    try:
        limit = os.pathconf(session, "PC_PATH_MAX")
    except (OSError, ValueError):  # no such folder yet, or no such setting: the usual one
        limit = 4096
    size = len(os.fsencode(longest))
    if size - len(os.fsencode(name)) + 1 >= limit:
        msg = (
            f"{session} is too long a path for any track: this system takes paths of fewer than {limit} bytes"
        )
        raise ValueError(msg)
    if size >= limit:
        msg = (
            f"track name {name[:40]!r}... ({len(os.fsencode(name))} bytes) makes paths of {size} bytes "
            f"under {session}; this system takes fewer than {limit}: use a shorter name"
        )
        raise ValueError(msg)


class Track:
    """One time series of a session: `append()`, `append_batch()`, `read()`, `stats()`, `list_all()`.

    Get it with `session.track(name)`; every call with that name returns this object.
    """

    def __init__(self, session: Session, name: str, log_channel: Channel) -> None:
        self.name = name
        self._session = session
        self.folder = session.path / TRACKS / name
        self._channel = Channel(
            str(self.folder / DATA_FILE),
            f"track {name!r} of {session!r}",
            log_channel.interval,
            log_channel.drop_when_full,
            log_channel,
            name,
        )
        self._channel.after_sync = self._write_metadata
        self._lock = threading.RLock()  # an index and its point's place in the queue go together
        self._next = [0]  # the index the next point gets, as far as this process knows
        self._created = time.time_ns()
        self._info: dict[str, Any] = {}  # description, tags, metadata given to track()
        self._described = -1  # the sink's write count when metadata.json was last written
        self._append = _bind_append(self)
        if type(self).append is Track.append:
            self.__dict__["append"] = self._append  # the hot path, one call less (as log())

    def __repr__(self) -> str:
        return f"<Track {self.name!r} of {self._session!r}>"

    @property
    def file(self) -> Path:
        """The JSON Lines file holding the points."""
        return self.folder / DATA_FILE

    def describe(self, info: dict[str, Any]) -> None:
        """Keep what track() was given (see `description_of`) and, if it changes anything,
        write metadata.json now: at exit only the totals are left to write. Durable with
        the points, at the next flush."""
        described = {**self._info, **info}
        if described != self._info:
            self._info = described
            self._described = -1
            self._write_metadata(durable=False)

    def open(self) -> None:
        """Open the file with the session; the indices go on from the file's last point."""
        channel = self._channel
        with self._lock:  # no append between opening and setting the count
            resuming = channel.registered  # a close failed: its points are still queued
            channel.open()
            if not resuming:
                self._next[0] = channel.sink.next_number

    def append(self, value: Any = NO_VALUE, /, **fields: Any) -> dict[str, int | None]:
        """Queue one point (the fields as given); returns `{"index": i}`, its index in the file
        (`{"index": None}` if it was dropped: when_full="drop", or a disk that refuses).

        `append(0.5, step=1)` is `append(value=0.5, step=1)`. Values follow the rules of log
        metadata. Raises RuntimeError if the session is not open, ValueError without any field,
        TypeError for a value given both ways.
        """
        return self._append(value, **fields)

    def append_batch(self, points: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        """Queue the points in order, with consecutive indices; returns startIndex, endIndex
        (inclusive) and count. Every point is checked before any is queued; count is less
        than the batch's length only when points were dropped (when_full="drop", a disk
        that refuses) or the session was closed meanwhile by another thread."""
        if isinstance(points, (str, bytes, Mapping)) or not isinstance(points, Iterable):
            msg = f"append_batch() takes a list of mappings (one per point), got {type(points).__name__}"
            raise TypeError(msg)
        texts = []
        for i, point in enumerate(points):
            if not isinstance(point, Mapping):
                msg = f"point {i} of the batch is a {type(point).__name__}, not a mapping of fields"
                raise TypeError(msg)
            if not point:
                msg = f"point {i} of the batch has no fields"
                raise ValueError(msg)
            texts.append(snapshot(point))
        ns = time.time_ns()
        channel, queue, counter = self._channel, self._channel.queue, self._next
        with self._lock:
            if channel.state not in _OPEN:
                channel.refuse()
            shift = channel.sink.shift[0]
            start, queued, end = -1, 0, counter[0] - 1
            for at in range(0, len(texts), _CHUNK):  # a wait for room, or a drop, at a time
                chunk = texts[at : at + _CHUNK]
                size = len(chunk)
                if len(queue) + size > channel.mark:
                    try:
                        room = channel.admit(size)
                    except RuntimeError:  # closed meanwhile: what came before is in the file
                        if start < 0:
                            raise
                        break
                    if not room:
                        channel.count_drops(len(texts) - at - size)  # the rest of the batch too
                        break
                first, serial = counter[0], queue.serial
                size = _push_all(channel, counter, ns, chunk)
                if start < 0 and size:
                    start = first
                queued, end = queued + size, first + size - 1
                if size < len(chunk):  # no room for the rest: dropped (counted)
                    channel.count_drops(len(texts) - at - size)
                    break
                if len(queue) >= channel.mark:
                    try:
                        taken = channel.settle(serial, size)
                    except RuntimeError:  # closed meanwhile: what came before is in the file
                        counter[0] = first
                        if first == start:
                            raise
                        queued, end = queued - size, first - 1
                        break
                    if taken:
                        counter[0] -= taken
                        queued, end = queued - taken, end - taken
                        break
            if start < 0:
                start = end + 1
        return {"startIndex": start + shift, "endIndex": end + shift, "count": queued}

    def read(self, start_index: int = 0, limit: int = 1000) -> dict[str, Any]:
        """Points `start_index` to `start_index + limit - 1`, after writing what is queued.

        Returns data (each point's index, data and createdAt), startIndex, endIndex
        (inclusive), total (points in the file, from every process) and hasMore.
        """
        start_index, limit = _count("start_index", start_index, 0), _count("limit", limit, 1)
        self._write()
        stop = start_index + limit
        data = points_between(self.file, start_index, stop)
        total = count_points(self.file)
        end = data[-1]["index"] if data else start_index - 1
        return {
            "data": data,
            "startIndex": start_index,
            "endIndex": end,
            "total": total,
            "hasMore": total > stop,
        }

    def stats(self) -> dict[str, Any]:
        """name, totalDataPoints (in the file, from every process, after writing what is queued),
        bufferedDataPoints and chunkedDataPoints (the remote tiers: locally every point is in
        the file, counted as buffered), description, tags, metadata."""
        self._write()
        total = count_points(self.file)
        described = {**load_metadata(self.folder / META_FILE), **self._info}
        return {
            "name": self.name,
            "totalDataPoints": total,
            "bufferedDataPoints": total,
            "chunkedDataPoints": 0,
            **{key: described.get(key) for key in ("description", "tags", "metadata")},
        }

    def list_all(self) -> list[dict[str, Any]]:
        """Every track of the session on disk (every open, every process): name and totalDataPoints."""
        return self._session._list_tracks()

    def _write(self) -> None:
        """Write what this process queued, without fsync, so that reading sees it."""
        if self._channel.state not in _OPEN and not self._channel.registered:
            return
        _batcher.write([self._channel])

    def _write_metadata(self, durable: bool) -> None:
        """metadata.json, replaced whole (fsynced if `durable`); run by the syncer once the
        points are durable, and by describe()."""
        writes, info = self._channel.sink.writes, self._info
        if writes == self._described:
            return
        file = self.folder / META_FILE
        try:
            with locked_folder(self.folder) as folder:
                stored = load_metadata(file)
                last = last_point(self.file)
                created = stored.get("createdAt") or iso_timestamp(self._created)
                meta = {
                    "name": self.name,
                    "description": stored.get("description"),
                    "tags": stored.get("tags"),
                    "metadata": stored.get("metadata"),
                    **info,
                    "totalDataPoints": 0 if last is None else last["index"] + 1,
                    "createdAt": created,
                    "updatedAt": created if last is None else last.get("createdAt", created),
                }
                data = orjson.dumps(meta, None, orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
                replace_file(file, data, folder, durable)
        except OSError as exc:
            raise reworded(exc, f"dreamlake could not write {file}: {exc.strerror or exc}") from exc
        if self._info is info:  # else track() described it anew meanwhile: write again next time
            self._described = writes


def description_of(description: object, tags: object, metadata: object) -> dict[str, Any]:
    """What track() was given to describe a track, checked and copied (None: left out)."""
    info: dict[str, Any] = {}
    if description is not None:
        if not isinstance(description, str):
            msg = f"description must be a str or None, got {type(description).__name__}"
            raise TypeError(msg)
        info["description"] = description
    if tags is not None:
        if isinstance(tags, (str, bytes)) or not isinstance(tags, Iterable):
            msg = f"tags must be a list of str or None, got {type(tags).__name__}"
            raise TypeError(msg)
        tags = list(tags)
        if not all(isinstance(tag, str) for tag in tags):
            msg = f"tags must be a list of str, got {tags!r}"
            raise TypeError(msg)
        info["tags"] = tags
    if metadata is not None:
        info["metadata"] = orjson.loads(metadata_bytes(snapshot(metadata)))
    return info


def _count(what: str, value: object, low: int) -> int:
    if isinstance(value, bool):
        value = str(value)  # not an index: refused below
    try:
        number = operator.index(value)  # type: ignore[arg-type]  # int, numpy integers
    except TypeError:
        msg = f"{what} must be an int, got {type(value).__name__}"
        raise TypeError(msg) from None
    if number < low:
        msg = f"{what} must be at least {low}, got {number}"
        raise ValueError(msg)
    return number


def _bind_append(track: Track) -> Callable[..., dict[str, int | None]]:
    """The hot path of one track (`_core.Appender`): snapshot, stamp, number and queue, in C
    while the track's lock is free and the queue far from its mark; else `slow`. No I/O."""
    channel = track._channel
    queue = channel.queue
    push = queue.push_point
    acquire, release = track._lock.acquire, track._lock.release
    counter = track._next
    shift = channel.sink.shift  # the file's numbering, as the writer last found it, against ours

    def slow(ns: int, data: Metadata) -> dict[str, int | None]:
        # Room is decided before the index is taken and the point queued: a dropped point
        # takes nothing back. The index is taken just before queueing, with no call in
        # between: a signal handler that appends at the end of add() comes after this point,
        # in the queue and in index. acquire() inside the try: an exception right after it
        # still releases the lock.
        try:
            acquire()
            if len(queue) >= queue.mark and not channel.admit(1):
                return {"index": None}
            index = counter[0]
            counter[0] = index + 1
            token = push(ns, data)
            if token < 0:  # no room for its bytes: wait for the writer, or drop it
                counter[0] = index
                if not _push_all(channel, counter, ns, [data]):
                    return {"index": None}
                index = counter[0] - 1
                token = len(queue) >= queue.mark
            if token:  # at the mark: woken, exiting, or closed meanwhile
                try:
                    channel.settle(queue.serial - 1, 1)
                except RuntimeError:  # closed meanwhile: taken back, and so is its index
                    counter[0] = index
                    raise
        finally:
            try:
                release()
            except RuntimeError:  # acquire() itself was interrupted: the lock is not ours
                pass
        return {"index": index + shift[0]}

    append: Callable[..., dict[str, int | None]] = Appender(
        ring=queue,
        counter=counter,
        shift=shift,
        lock=track._lock,
        slow=slow,
        **snapshot_steps(),
    )
    return dressed(append, Track.append)


def _push_all(channel: Channel, counter: list[int], ns: int, points: list[Any]) -> int:
    """Queue `points` of one track in order, each taking the next index from `counter` just
    before it is pushed (under the track's lock), waiting for room for their bytes when the
    queue has none; how many were queued before one had to be dropped (counted)."""
    push = channel.queue.push_point
    for done, data in enumerate(points):
        counter[0] += 1
        if push(ns, data) >= 0:
            continue
        counter[0] -= 1

        def again(data: Any = data) -> int:
            counter[0] += 1
            token = push(ns, data)
            if token < 0:
                counter[0] -= 1
            return token

        if channel.push_when_room(again) is None:
            return done
    return len(points)


def dressed(native: _Native, method: Callable[..., Any]) -> _Native:
    """`native`, a hot path made in C, shown as `method` is: by help(), inspect and tracebacks
    (its name, docstring and signature, without `self`)."""
    dressing: Any = native  # a C object with a __dict__: mypy does not know it takes these
    dressing.__name__, dressing.__qualname__ = method.__name__, method.__qualname__
    dressing.__module__, dressing.__doc__ = method.__module__, method.__doc__
    dressing.__signature__ = _unbound_signature(method)
    return native


_Native = TypeVar("_Native")


@functools.cache
def _unbound_signature(method: Callable[..., Any]) -> inspect.Signature:
    signature = inspect.signature(method)
    return signature.replace(parameters=list(signature.parameters.values())[1:])


def track_after_fork_in_child(track: Track) -> None:
    """The lock may have been held by a thread the child does not have; the child's file
    handle counts its writes from 0: a child that appends describes the track at its flush."""
    track._lock._at_fork_reinit()  # type: ignore[attr-defined]
    track._described = 0


def summary(session: Path, name: str, track: Track | None = None) -> dict[str, Any]:
    """What `list_all()` shows of one track: name, totalDataPoints, description, tags."""
    file = session / TRACKS / name / DATA_FILE
    described = {**load_metadata(file.with_name(META_FILE)), **(track._info if track is not None else {})}
    return {
        "name": name,
        "totalDataPoints": count_points(file),
        "description": described.get("description"),
        "tags": described.get("tags"),
    }
