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
import fnmatch
import functools
import itertools
import multiprocessing
import operator
import os
import time
from array import array
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._params import PARAMS_FILE, read_params
from ._reader import LOG_FILE, each_batch, each_record, log_records
from ._tracks import TRACKS, track_file, track_names, track_points

_NONFINITE = frozenset({"NaN", "Infinity", "-Infinity"})
_NUMBERS = frozenset({int, float, bool})  # a flag is drawn as 0 and 1
_DICTS = frozenset({dict})
_AXES = ("step", "epoch")  # the x of a track's points, when its first point has one: else the index


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
    """Session folders named by `paths`: each a session, or a workspace holding sessions."""
    runs: list[Run] = []
    for path in map(Path, paths):
        if _is_session(path):
            folders = [path]
        elif path.is_dir():
            folders = sorted(p for p in path.iterdir() if _is_session(p))
            if not folders:
                msg = f"{path} holds no dreamlake session (a folder with {LOG_FILE} or {TRACKS}/)"
                raise FileNotFoundError(msg)
        else:
            msg = f"no session folder at {path}"
            raise FileNotFoundError(msg)
        runs.extend(Run(folder, folder.name, _params(folder)) for folder in folders)
    names = [run.name for run in runs]
    for run in runs:  # the same session name in two workspaces: say which
        if names.count(run.name) > 1:
            run.name = f"{run.path.parent.name}/{run.path.name}"
    seen: dict[str, int] = {}
    for run in runs:  # still the same (two roots, or a path given twice): number them
        seen[run.name] = seen.get(run.name, 0) + 1
        if seen[run.name] > 1:
            run.name = f"{run.name} ({seen[run.name]})"
    return runs


def _is_session(path: Path) -> bool:
    return (path / LOG_FILE).is_file() or (path / TRACKS).is_dir()


def _params(folder: Path) -> dict[str, Any]:
    if not (folder / PARAMS_FILE).exists():
        return {}
    try:
        return read_params(folder)
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True)
class _Part:
    """The lines of one file of a run that start in bytes `start` to `end` (None: its end)."""

    run: Run
    file: Path
    track: str | None  # None: the logs
    axis: str  # a track's x: step, epoch or index
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
    files = list(_files(runs, tracks, fields))
    sizes = [_size(part.file) for part in files]
    workers = os.cpu_count() or 1
    forks = "fork" in multiprocessing.get_all_start_methods()
    parallel = workers > 1 and sum(sizes) > _PARALLEL_BYTES and forks
    parts = _split(files, sizes, max(sum(sizes) // (2 * workers), _PART_BYTES)) if parallel else files
    whole = {part.file: part for part in parts if part.start == 0 and part.end is None}
    read = functools.partial(_read_part, pattern=fields or "*", by_time=by_time, buckets=buckets, whole=whole)
    if parallel and len(parts) > 1:
        fork = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(min(workers, len(parts)), mp_context=fork) as pool:
            done = list(pool.map(read, parts))
    else:
        done = [read(part) for part in parts]
    joined: dict[tuple[int, Path, str], Series] = {}  # by run, file and name: parts of a file join
    skipped: dict[Path, int] = {}
    for part, result in zip(parts, done, strict=True):
        if result.error is not None and notes is not None:
            notes.append(result.error)
        skipped[part.file] = skipped.get(part.file, 0) + result.skipped
        for series in result.series:
            series.run = part.run  # the same object for every series of a run, whichever process read it
            first = joined.setdefault((id(part.run), part.file, series.name), series)
            if first is not series:
                first.join(series)
    if notes is not None:
        what = {True: "not points", False: "not records"}
        notes.extend(
            f"{file}: {count} lines are {what[file.name != LOG_FILE]}, skipped"
            for file, count in skipped.items()
            if count
        )
    out: dict[str, list[Series]] = {}
    for (_, file, _), series in joined.items():
        if file not in whole:
            series.settle(buckets)
        if series.points or series.unplaced:  # else a field that never held a number
            out.setdefault(series.name, []).append(series)
    return dict(sorted(out.items()))


_PARALLEL_BYTES = 50 << 20  # below this, starting processes costs more than it saves
_PART_BYTES = 16 << 20


def _files(runs: list[Run], tracks: str | None, fields: str | None) -> Iterable[_Part]:
    everything = tracks is None and fields is None
    for run in runs:
        if everything or tracks is not None:
            for name in track_names(run.path):
                if everything or fnmatch.fnmatchcase(name, tracks or "*"):
                    file = track_file(run.path, name)
                    yield _Part(run, file, name, _axis(file))
        if (everything or fields is not None) and (run.path / LOG_FILE).is_file():
            yield _Part(run, run.path / LOG_FILE, None, "sequenceNumber")


def _axis(file: Path) -> str:
    """A track's x: `step` if its first point has a number there, else `epoch`, else `index`."""
    try:
        for point in each_record(file, track_points, None):
            data = point.get("data")
            if type(data) is dict:
                return next((axis for axis in _AXES if type(data.get(axis)) in _NUMBERS), "index")
    except OSError:
        pass  # told when it is read
    return "index"


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
        cuts = [size * i // count for i in range(count)]
        for start, end in zip(cuts, [*cuts[1:], None], strict=True):
            parts.append(_Part(part.run, part.file, part.track, part.axis, start, end))
    return parts


def _read_part(
    part: _Part, pattern: str, by_time: bool, buckets: int | None, whole: dict[Path, _Part]
) -> _Read:
    skipped = [0]
    columns: dict[str, Series] = {}
    try:
        if part.track is not None:
            _read_track(part, by_time, columns, skipped)
        else:
            _read_logs(part, pattern, by_time, columns, skipped)
    except OSError as exc:
        return _Read([], 0, f"cannot read {part.file}: {exc.strerror or exc}")
    if part.file in whole:
        for series in columns.values():
            series.settle(buckets)
    return _Read(list(columns.values()), skipped[0])


def _read_track(part: _Part, by_time: bool, columns: dict[str, Series], skipped: list[int]) -> None:
    """Every numeric field of the track's points: the loop that big runs spend their time in."""
    label = "time" if by_time else part.axis
    left_out: frozenset[str] = frozenset() if by_time else frozenset(_AXES)

    def make(key: str) -> Series:
        return Series(part.run, f"{part.track}.{key}", label)

    for points in each_batch(part.file, track_points, skipped, part.start, part.end):
        rows = _column(points, "data")
        if not _DICTS.issuperset(map(type, rows)):
            points = [point for point, row in zip(points, rows, strict=True) if type(row) is dict]
            rows = [point["data"] for point in points]
        if by_time:
            xs = [_seconds(point.get("createdAt")) for point in points]
        elif part.axis == "index":
            xs = _column(points, "index")
        else:
            xs = _column(rows, part.axis)
        _add_columns(columns, make, xs, rows, set().union(*rows) - left_out)


def _read_logs(
    part: _Part, pattern: str, by_time: bool, columns: dict[str, Series], skipped: list[int]
) -> None:
    label = "time" if by_time else "sequenceNumber"
    wanted: dict[str, bool] = {}

    def make(key: str) -> Series:
        return Series(part.run, f"logs.{key}", label)

    for records in each_batch(part.file, log_records, skipped, part.start, part.end):
        rows = _column(records, "metadata")
        if not _DICTS.issuperset(map(type, rows)):
            records = [record for record, row in zip(records, rows, strict=True) if type(row) is dict]
            rows = [record["metadata"] for record in records]
        if by_time:
            xs = [_seconds(record.get("timestamp")) for record in records]
        else:
            xs = _column(records, "sequenceNumber")
        keys = set().union(*rows)
        for key in keys - wanted.keys():
            wanted[key] = fnmatch.fnmatchcase(key, pattern)
        _add_columns(columns, make, xs, rows, [key for key in keys if wanted[key]])


def _add_columns(
    columns: dict[str, Series],
    make: Callable[[str], Series],
    xs: list[Any],
    rows: list[dict[str, Any]],
    keys: Iterable[str],
) -> None:
    """Field `key` of each of `rows`, against `xs` (an x a row), onto the series `columns[key]`.

    The usual batch, a number in every row, goes through C loops only; any other
    value sends that field of that batch through `Series.add`, a point at a time."""
    try:
        placed: array[float] | None = array("d", xs)
    except TypeError:
        placed = None
    ascending = placed is not None and xs == sorted(xs)
    for key in keys:
        series = columns.get(key)
        if series is None:
            series = columns[key] = make(key)
        if placed is not None:
            try:
                series.extend(placed, array("d", map(operator.itemgetter(key), rows)), ascending)
                continue
            except (KeyError, TypeError):  # a row without it, or not a number there
                pass
        for x, y in zip(xs, _column(rows, key), strict=True):
            series.add(x, y)


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
        return whole + float("0" + stamp[19:].rstrip("Z"))
    except ValueError:
        return float(whole)


@dataclass
class Thinned:
    """A series thinned for `buckets` pixel columns: at most four points a column, in file
    order, and the x of the first NaN or infinity of each column that held one."""

    xs: list[float]
    ys: list[float]
    marks: list[float]


def thin(series: Series, buckets: int) -> Thinned:
    """Per pixel column of the x range: the first, lowest, highest and last point (in file order)."""
    xs, ys, marks = series.xs, series.ys, series.marks
    ends: list[float] = []
    if xs:
        ends += (xs[0], xs[-1]) if series.ascending else (min(xs), max(xs))
    if marks:
        ends += (min(marks), max(marks))
    if not ends:
        return Thinned([], [], [])
    low = min(ends)
    scale = buckets / ((max(ends) - low) or 1.0)
    pick = _pick_ascending if series.ascending else _pick
    chosen = pick(xs, ys, low, scale, buckets)
    first_marks: dict[int, float] = {}
    for x in marks:
        first_marks.setdefault(min(int((x - low) * scale), buckets - 1), x)
    return Thinned([xs[i] for i in chosen], [ys[i] for i in chosen], sorted(first_marks.values()))


def _pick_ascending(xs: array[float], ys: array[float], low: float, scale: float, buckets: int) -> list[int]:
    """`_pick` for xs that never decrease: each column is a slice, found by bisection, and its
    lowest and highest are found by C loops."""
    position = functools.partial(_position, low=low, scale=scale)
    starts = (bisect.bisect_left(xs, float(column), key=position) for column in range(1, buckets))
    cuts = [0, *starts, len(xs)]
    chosen: list[int] = []
    for start, end in itertools.pairwise(cuts):
        if start == end:
            continue
        column = ys[start:end]
        lowest, highest = start + column.index(min(column)), start + column.index(max(column))
        chosen.extend(sorted({start, lowest, highest, end - 1}))
    return chosen


def _position(x: float, low: float, scale: float) -> float:
    return (x - low) * scale


def _pick(xs: array[float], ys: array[float], low: float, scale: float, buckets: int) -> list[int]:
    """Positions of the first, lowest, highest and last point of each column, in file order."""
    last_column = buckets - 1
    first: dict[int, int] = {}  # column -> position of its first point
    lowest: dict[int, int] = {}
    highest: dict[int, int] = {}
    final: dict[int, int] = {}
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        column = int((x - low) * scale)
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
