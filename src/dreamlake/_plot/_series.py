"""Series to plot: numeric fields of tracks and of log metadata, read and thinned for a screen.

A series is one field of one run: `train/loss.value` of a track, `logs.loss` of the
logs' metadata. The files are read with the reader of `read_track` and `read_logs`,
a run of lines at a time, and each field of a run is taken as a column. Thinning
keeps, per pixel column, the first, lowest, highest and last point, so a spike in
one batch out of ten million still shows; NaN and infinities (stored as "NaN",
"Infinity", "-Infinity") are counted and their places kept as marks. Big files are
read in parts, side by side, one process a core.
"""

from __future__ import annotations

import bisect
import calendar
import collections
import contextlib
import dataclasses
import fnmatch
import functools
import itertools
import math
import multiprocessing
import operator
import os
import stat
import time
from array import array
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._params import read_params
from .._read._follow import Follower
from .._read._records import LOG_FILE, Parse, each_batch, log_records
from .._read._sessions import sessions_in
from .._read._tracks import TRACKS, track_file, track_names, track_points

_NONFINITE = frozenset({"NaN", "Infinity", "-Infinity"})
_NUMBERS = frozenset({int, float, bool})  # a flag is drawn as 0 and 1
_DICTS = frozenset({dict})
_PLAIN = frozenset({str, type(None)})  # hashable: looked up among the names of NaN and infinities
_AXES = ("step", "epoch")  # the x of a track's points, when its first point has one: else the index
_X_FIELDS = frozenset(_AXES)  # drawn as x, not as series (but with --x time)


def _floats() -> array[float]:
    return array("d")


@dataclass
class Run:
    """A session folder, shown under `name`."""

    path: Path
    name: str
    params: dict[str, Any]


@dataclass
class Series:
    """One field of one run: its finite points in file order (`xs`, `ys`), and the x of each NaN
    or infinite value (`marks`)."""

    run: Run
    name: str
    x_label: str
    track: str | None = None  # with `key`, which series this is: a track's (None: the logs') field
    key: str = ""
    xs: array[float] = field(default_factory=_floats)
    ys: array[float] = field(default_factory=_floats)
    marks: array[float] = field(default_factory=_floats)
    ascending: bool = True  # xs never decrease: thinning cuts the columns by bisection
    nonfinite: int = 0
    unplaced: int = 0  # values of points without a number on the x axis: not drawn
    points: int = 0  # as read: xs and ys may have been thinned since
    stats: tuple[float, float, float] = (float("nan"),) * 3  # min, last, max of the finite values

    def summary(self) -> tuple[float, float, float]:
        """min, last, max of the finite values as read (NaN when there are none)."""
        return self.stats

    def extend(self, xs: array[float], ys: array[float], ascending: bool) -> None:
        """Points that follow those held, all finite; `ascending` if `xs` never decrease."""
        if self.ascending and not (ascending and (not self.xs or not xs or self.xs[-1] <= xs[0])):
            self.ascending = False
        self.xs.extend(xs)
        self.ys.extend(ys)

    def add(self, x: Any, y: Any) -> None:
        """One value as read: a number is drawn, NaN and infinities marked, anything else left out."""
        kind = type(y)
        if kind not in _NUMBERS and not (kind is str and y in _NONFINITE):
            return
        if type(x) not in _NUMBERS:
            self.unplaced += 1
        elif kind is str:
            self.marks.append(x)
            self.nonfinite += 1
        else:
            if self.xs and x < self.xs[-1]:
                self.ascending = False
            self.xs.append(x)
            self.ys.append(y)

    def join(self, later: Series) -> None:
        """The points of the part of the file that follows."""
        self.extend(later.xs, later.ys, later.ascending)
        self.marks.extend(later.marks)
        self.nonfinite += later.nonfinite
        self.unplaced += later.unplaced

    def settle(self, buckets: int | None) -> None:
        """Count and summarize the points as read; then, with `buckets`, keep only the thinned
        ones, so that less travels between processes."""
        self.points = len(self.xs) + self.nonfinite
        if buckets is not None:
            thinned = thin(self, buckets)
            self.xs, self.ys = array("d", thinned.xs), array("d", thinned.ys)
            self.marks = array("d", thinned.marks)
        if self.ys:  # thinning keeps the lowest, the highest and the last
            self.stats = (min(self.ys), self.ys[-1], max(self.ys))


def runs_of(paths: list[str | os.PathLike[str]]) -> list[Run]:
    """Session folders named by `paths`: each a session, a workspace, or a folder of workspaces."""
    runs: list[Run] = []
    for path in map(Path, paths):
        folders = sessions_in(path)
        runs.extend(Run(folder, _readable(_parts(folder)[-1]), _params(folder)) for folder in folders)
    names = [run.name for run in runs]
    for run in runs:  # the same session name in two workspaces: say which
        if names.count(run.name) > 1:
            run.name = _readable("/".join(_parts(run.path)[-2:]))
    seen: dict[str, int] = {}
    for run in runs:  # still the same (two roots, or a path given twice): number them
        seen[run.name] = seen.get(run.name, 0) + 1
        if seen[run.name] > 1:
            run.name = f"{run.name} ({seen[run.name]})"
    return runs


def _parts(folder: Path) -> tuple[str, ...]:
    """The names of the folders down to `folder`, also for a relative path such as `.` or `..`."""
    return Path(os.path.abspath(folder)).parts


def _readable(name: str) -> str:
    """A file name as text to show: bytes that are not UTF-8 become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _params(folder: Path) -> dict[str, Any]:
    try:
        return read_params(folder)
    except (OSError, ValueError):  # none, or one that cannot be read: the run is drawn all the same
        return {}


@dataclass(frozen=True)
class _Part:
    """The lines of one file of a run that start in bytes `start` to `end` (None: its end)."""

    run: Run
    file: Path
    track: str | None  # None: the logs
    axis: str | None = None  # a track's x: step, epoch or index (None: as the first point read says)
    start: int = 0
    end: int | None = None


@dataclass
class _Read:
    series: list[Series]
    skipped: int = 0
    error: str | None = None


def collect(
    runs: list[Run],
    tracks: str | None,
    fields: str | None,
    by_time: bool,
    buckets: int | None = None,
    notes: list[str] | None = None,
) -> dict[str, list[Series]]:
    """Every series of every run, by name: track fields matching `tracks` and log metadata fields
    matching `fields` (glob patterns; both None: all of both), thinned to `buckets` columns if
    given. Lines that are not records, and files that cannot be read, are told in `notes`.

    Big files are read in parallel, in parts of about equal size, as many at once as there
    are cores; a file read whole is thinned where it was read, so little travels back.
    """
    files = [_Part(*found) for found in _files(runs, tracks, fields, notes)]
    sizes = [_size(part.file) for part in files]
    workers = os.cpu_count() or 1
    forks = "fork" in multiprocessing.get_all_start_methods()
    parallel = workers > 1 and sum(sizes) > _PARALLEL_BYTES and forks
    parts = _split(files, sizes, max(sum(sizes) // (2 * workers), _PART_BYTES)) if parallel else files
    whole = frozenset(part.file for part in parts if part.start == 0 and part.end is None)
    read = functools.partial(_read_part, pattern=fields or "*", by_time=by_time, buckets=buckets, whole=whole)
    joined: dict[tuple[int, Path, str], Series] = {}  # by run, file and name: parts of a file join
    skipped: dict[tuple[int, Path], int] = {}
    with contextlib.ExitStack() as stack:
        done: Iterable[_Read] = map(read, parts)
        if parallel and len(parts) > 1:
            fork = multiprocessing.get_context("fork")
            pool = stack.enter_context(ProcessPoolExecutor(min(workers, len(parts)), mp_context=fork))
            done = pool.map(read, parts)
        for part, result in zip(parts, done, strict=True):  # each part joined as it comes, then let go
            if result.error is not None and notes is not None:
                notes.append(result.error)
            skipped[id(part.run), part.file] = skipped.get((id(part.run), part.file), 0) + result.skipped
            for series in result.series:
                series.run = part.run  # the same object for every series of a run, whichever process read it
                first = joined.setdefault((id(part.run), part.file, series.name), series)
                if first is not series:
                    first.join(series)
    if notes is not None:
        notes.extend(_skipped(file, count) for (_, file), count in skipped.items() if count)
    for (_, file, _), series in joined.items():
        if file not in whole:
            series.settle(buckets)
    return _by_name(joined.values())


class Watch:
    """`collect` again and again as the files grow (`--follow`): each call reads only the lines
    written since the last. A file replaced, cut short or rewritten is read anew."""

    def __init__(self, runs: list[Run], tracks: str | None, fields: str | None, by_time: bool) -> None:
        self.runs, self.tracks, self.fields, self.by_time = runs, tracks, fields, by_time
        self._files: dict[tuple[int, Path], _Followed] = {}

    def collect(self, buckets: int | None, notes: list[str] | None = None) -> dict[str, list[Series]]:
        """What `collect` would give now."""
        found: list[Series] = []
        gone = set(self._files)
        for run, file, track in _files(self.runs, self.tracks, self.fields, notes):
            gone.discard((id(run), file))
            followed = self._files.get((id(run), file))
            if followed is None:
                part = _Part(run, file, track)
                followed = self._files[id(run), file] = _Followed(part, self.fields or "*", self.by_time)
            try:
                followed.read()
            except OSError as exc:
                if notes is not None:
                    notes.append(_unreadable(file, exc))
                continue
            if followed.bad[0] and notes is not None:
                notes.append(_skipped(file, followed.bad[0]))
            found.extend(followed.shown(buckets))
        for key in gone:  # a track deleted
            del self._files[key]
        return _by_name(found)


class _Followed:
    """A file of a run and its series as read so far. A file cut short is read afresh: the
    series show what the file holds (see `Follower`)."""

    def __init__(self, part: _Part, pattern: str, by_time: bool) -> None:
        self.part, self.pattern, self.by_time = part, pattern, by_time
        self._shown: dict[str, tuple[tuple[int | None, int, int, int], Series]] = {}
        self._start()
        self.follower = Follower(part.file, self._start, reread_cut=True)

    def _start(self) -> None:
        self.columns = _Columns(self.part, self.pattern, self.by_time)
        self.bad = [0]
        self._shown.clear()

    def read(self) -> None:
        for text in self.follower.poll():
            self.columns.feed(self.columns.parse(text, self.bad))

    def shown(self, buckets: int | None) -> list[Series]:
        """Each series settled (thinned) for `buckets`: again only if it grew since."""
        out = []
        for name, series in self.columns.series.items():
            state = (buckets, len(series.xs), len(series.marks), series.unplaced)
            last = self._shown.get(name)
            if last is None or last[0] != state:
                shown = dataclasses.replace(series)  # the same arrays: settling gives it its own
                shown.settle(buckets)
                last = self._shown[name] = (state, shown)
            out.append(last[1])
        return out


def _by_name(found: Iterable[Series]) -> dict[str, list[Series]]:
    """The series by name, names sorted; fields that never held a number left out.

    A name is the track's and the field's joined by a dot, so two different series can
    share one (track `a` field `b.c` and track `a.b` field `c`; a track named `logs` and
    the logs' metadata): those, and only those, are told apart by what they are."""
    same: dict[tuple[str | None, str], list[Series]] = {}
    for series in found:
        if series.points or series.unplaced:
            same.setdefault((series.track, series.key), []).append(series)
    names = collections.Counter(members[0].name for members in same.values())
    out: dict[str, list[Series]] = {}
    for (track, key), members in same.items():
        name = members[0].name
        if names[name] > 1:
            where = "logs" if track is None else f"track {_readable(track)}"
            name = f"{name} ({where}, field {key})"
        while name in out:  # a field whose own name reads like that: keep them apart still
            name += "'"
        out[name] = members
    return dict(sorted(out.items()))


def _skipped(file: Path, count: int) -> str:
    what = ("record", "records") if file.name == LOG_FILE else ("point", "points")
    return f"{file}: {count} {'line is not a' if count == 1 else 'lines are not'} {what[count != 1]}, skipped"


def _unreadable(file: Path, exc: OSError) -> str:
    return f"cannot read {file}: {exc.strerror or exc}"


_PARALLEL_BYTES = 50 << 20  # below this, starting processes costs more than it saves
_PART_BYTES = 16 << 20


def _files(
    runs: list[Run], tracks: str | None, fields: str | None, notes: list[str] | None
) -> Iterable[tuple[Run, Path, str | None]]:
    """Each file to read: run, path, and the track's name (None for the logs). A folder or file
    that cannot be looked at is told in `notes`, and the others are read."""
    everything = tracks is None and fields is None
    for run in runs:
        if everything or tracks is not None:
            try:
                names = track_names(run.path)
            except OSError as exc:
                names = []
                if notes is not None:
                    notes.append(_unreadable(Path(exc.filename or run.path / TRACKS), exc))
            for name in names:
                if everything or fnmatch.fnmatchcase(name, tracks or "*"):
                    yield run, track_file(run.path, name), name
        if everything or fields is not None:
            log = run.path / LOG_FILE
            try:
                regular = stat.S_ISREG(os.stat(log).st_mode)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                if notes is not None:
                    notes.append(_unreadable(log, exc))
                continue
            if regular:
                yield run, log, None
            elif notes is not None:
                notes.append(f"cannot read {log}: not a file")


def _axis(file: Path) -> str:
    """A track's x: `step` if its first point has a number there, else `epoch`, else `index`."""
    try:
        with open(file, "rb") as f:
            for line in f:  # the first point, not the first megabyte
                for point in track_points(line.rstrip(b"\n"), [0]):
                    data = point.get("data")
                    if type(data) is dict:
                        return _axis_of(data)
    except OSError:
        pass  # told when it is read
    return "index"


def _axis_of(data: dict[str, Any]) -> str:
    return next((axis for axis in _AXES if type(data.get(axis)) in _NUMBERS), "index")


def _size(file: Path) -> int:
    try:
        return file.stat().st_size
    except OSError:
        return 0


def _split(files: list[_Part], sizes: list[int], part_bytes: int) -> list[_Part]:
    """Each file cut into parts of about `part_bytes`, in file order."""
    parts = []
    for part, size in zip(files, sizes, strict=True):
        count = max(1, -(-size // part_bytes))
        if count == 1:
            parts.append(part)  # read whole: its x is decided by the first point it reads
            continue
        axis = None if part.track is None else _axis(part.file)  # each part must use the file's
        cuts = [size * i // count for i in range(count)]
        for start, end in zip(cuts, [*cuts[1:], None], strict=True):
            parts.append(_Part(part.run, part.file, part.track, axis, start, end))
    return parts


def _read_part(
    part: _Part, pattern: str, by_time: bool, buckets: int | None, whole: frozenset[Path]
) -> _Read:
    skipped = [0]
    columns = _Columns(part, pattern, by_time)
    try:
        for records in each_batch(part.file, columns.parse, skipped, part.start, part.end, unfinished=False):
            columns.feed(records)
    except OSError as exc:
        return _Read([], 0, _unreadable(part.file, exc))
    if part.file in whole:
        for series in columns.series.values():
            series.settle(buckets)
    return _Read(list(columns.series.values()), skipped[0])


class _Columns:
    """The series of one file, fed a batch of its records at a time: each field of a batch is
    taken as a column."""

    def __init__(self, part: _Part, pattern: str, by_time: bool) -> None:
        self.part, self.pattern, self.by_time = part, pattern, by_time
        self.axis = "sequenceNumber" if part.track is None else part.axis
        self.series: dict[str, Series] = {}
        self.parse: Parse = log_records if part.track is None else track_points
        self._wanted: dict[str, bool] = {}  # log metadata keys: whether they match `pattern`

    def feed(self, records: list[dict[str, Any]]) -> None:
        """The loop that big runs spend their time in."""
        track = self.part.track
        inner = "metadata" if track is None else "data"
        rows = _column(records, inner)
        if not _DICTS.issuperset(map(type, rows)):
            records = [record for record, row in zip(records, rows, strict=True) if type(row) is dict]
            rows = [record[inner] for record in records]
        if not rows:
            return
        axis = self.axis
        if axis is None:
            axis = self.axis = _axis_of(rows[0])
        if self.by_time:
            stamp = "timestamp" if track is None else "createdAt"
            xs = [_seconds(record.get(stamp)) for record in records]
        else:
            xs = _column(rows if axis in _AXES else records, axis)
        union = set().union(*rows)
        keys = union
        if track is None:
            for key in keys - self._wanted.keys():
                self._wanted[key] = fnmatch.fnmatchcase(key, self.pattern)
            keys = {key for key in keys if self._wanted[key]}
        elif not self.by_time:
            keys = keys - _X_FIELDS
        if sum(map(len, rows)) == len(union) * len(rows):  # every row has every key: the usual batch
            self._full(xs, rows, keys)
            return
        counts = collections.Counter(itertools.chain.from_iterable(rows))
        full = {key for key in keys if counts[key] == len(rows)}
        self._full(xs, rows, full)
        self._sparse(xs, rows, keys - full)

    def _full(self, xs: list[Any], rows: list[dict[str, Any]], keys: Iterable[str]) -> None:
        """Fields that every one of `rows` has, against `xs` (an x a row), onto their series.

        Numbers everywhere go through C loops only; a field with other values goes
        through `Series.add`, a point at a time, unless none of them can be drawn."""
        try:
            placed: array[float] | None = array("d", xs)
        except TypeError:
            placed = None
        ascending = placed is not None and xs == sorted(xs)
        for key in keys:
            if placed is not None:
                try:
                    values = array("d", map(operator.itemgetter(key), rows))
                except TypeError:  # not a number in some row
                    pass
                else:
                    self._series(key).extend(placed, values, ascending)
                    continue
            ys = _column(rows, key)
            kinds = set(map(type, ys))
            if kinds.isdisjoint(_NUMBERS) and kinds <= _PLAIN and _NONFINITE.isdisjoint(ys):
                continue  # text, nulls: nothing to draw
            series = self._series(key)
            for x, y in zip(xs, ys, strict=True):
                series.add(x, y)

    def _sparse(self, xs: list[Any], rows: list[dict[str, Any]], keys: set[str]) -> None:
        """Fields that only some of `rows` have: one pass over the rows for all of them."""
        if keys:
            for x, row in zip(xs, rows, strict=True):
                for key in keys.intersection(row):
                    self._series(key).add(x, row[key])

    def _series(self, key: str) -> Series:
        series = self.series.get(key)
        if series is None:
            track = self.part.track
            name = f"logs.{key}" if track is None else f"{_readable(track)}.{key}"
            label = "time" if self.by_time else self.axis or "index"
            series = self.series[key] = Series(self.part.run, name, label, track, key)
        return series


def _column(rows: list[dict[str, Any]], key: str) -> list[Any]:
    """`row[key]` of each row (None where a row has none), by a C loop when every row has one."""
    try:
        return list(map(operator.itemgetter(key), rows))
    except KeyError:
        return [row.get(key) for row in rows]


_SECONDS: dict[str, int] = {}


def _seconds(stamp: object) -> float | None:
    """`2025-10-25T12:40:58.106153Z` as seconds since the epoch."""
    if not isinstance(stamp, str) or len(stamp) < 20:
        return None
    whole = _SECONDS.get(stamp[:19])
    if whole is None:
        try:
            whole = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            return None
        if len(_SECONDS) > 100_000:
            _SECONDS.clear()
        _SECONDS[stamp[:19]] = whole
    try:
        fraction = float("0" + stamp[19:].rstrip("Z"))
    except ValueError:
        return float(whole)
    return whole + fraction if 0.0 <= fraction < 1.0 else None


@dataclass
class Thinned:
    """A series thinned for `buckets` pixel columns: at most four points a column, in file
    order, and the x of the first NaN or infinity of each column that held one."""

    xs: list[float]
    ys: list[float]
    marks: list[float]


def thin(series: Series, buckets: int) -> Thinned:
    """Per pixel column of the x range: the first, lowest, highest and last point (in file order).
    A series of no more points than columns is kept whole."""
    xs, ys, marks = series.xs, series.ys, series.marks
    if len(xs) <= buckets and len(marks) <= buckets:
        return Thinned(list(xs), list(ys), sorted(marks))
    ends: list[float] = []
    if xs:
        ends += (xs[0], xs[-1]) if series.ascending else (min(xs), max(xs))
    if marks:
        ends += (min(marks), max(marks))
    # In halves: a range wider than the largest float (-1e308 to 1e308) still has a width.
    origin = min(ends) * 0.5
    scale = buckets / ((max(ends) * 0.5 - origin) or 1.0)
    if not math.isfinite(scale):  # a range narrower than the smallest float: one column
        scale = 0.0
    pick = _pick_ascending if series.ascending else _pick
    chosen = pick(xs, ys, origin, scale, buckets)
    first_marks: dict[int, float] = {}
    for x in marks:
        first_marks.setdefault(min(int((x * 0.5 - origin) * scale), buckets - 1), x)
    return Thinned([xs[i] for i in chosen], [ys[i] for i in chosen], sorted(first_marks.values()))


def _pick_ascending(
    xs: array[float], ys: array[float], origin: float, scale: float, buckets: int
) -> list[int]:
    """`_pick` for xs that never decrease: each column that holds points is a slice, its end
    found by bisection, its lowest and highest by C loops."""
    position = functools.partial(_position, origin=origin, scale=scale)
    chosen: list[int] = []
    start, count, last_column = 0, len(xs), buckets - 1
    while start < count:
        column = int(position(xs[start]))
        end = count
        if column < last_column:
            end = bisect.bisect_left(xs, column + 1.0, start, count, key=position)
        values = ys[start:end]
        lowest, highest = start + values.index(min(values)), start + values.index(max(values))
        chosen.extend(sorted({start, lowest, highest, end - 1}))
        start = end
    return chosen


def _position(x: float, origin: float, scale: float) -> float:
    return (x * 0.5 - origin) * scale


def _pick(xs: array[float], ys: array[float], origin: float, scale: float, buckets: int) -> list[int]:
    """Positions of the first, lowest, highest and last point of each column, in file order."""
    last_column = buckets - 1
    first: dict[int, int] = {}  # column -> position of its first point
    lowest: dict[int, int] = {}
    highest: dict[int, int] = {}
    final: dict[int, int] = {}
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        column = int((x * 0.5 - origin) * scale)
        if column > last_column:
            column = last_column
        if column not in first:
            first[column] = lowest[column] = highest[column] = final[column] = i
            continue
        if y < ys[lowest[column]]:
            lowest[column] = i
        elif y > ys[highest[column]]:
            highest[column] = i
        final[column] = i
    return sorted({*first.values(), *lowest.values(), *highest.values(), *final.values()})
