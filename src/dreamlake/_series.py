"""Series to plot: numeric fields of tracks and of log metadata, read and thinned for a screen.

A series is one field of one run: `train/loss.value` of a track, `logs.loss` of the
logs' metadata. Each point is read with the readers of `read_track` and `read_logs`.
Thinning keeps, per pixel column, the first, lowest, highest and last point, so a
spike in one batch out of ten million still shows; NaN and infinities (stored as
"NaN", "Infinity", "-Infinity") are counted and their places kept as marks.
"""

from __future__ import annotations

import calendar
import fnmatch
import functools
import math
import multiprocessing
import os
import time
from array import array
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._params import PARAMS_FILE, read_params
from ._reader import LOG_FILE, iter_logs
from ._tracks import TRACKS, iter_track, track_names

_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_X_FIELDS = ("step", "epoch")  # the x of a track's point, when present: else its index


@dataclass
class Run:
    """A session folder, shown under `name`."""

    path: Path
    name: str
    params: dict[str, Any]


@dataclass
class Series:
    """One field of one run: x and y as read (y NaN for NaN and infinities), in file order."""

    run: Run
    name: str
    x_label: str
    xs: array[float] = field(default_factory=lambda: array("d"))
    ys: array[float] = field(default_factory=lambda: array("d"))
    nonfinite: int = 0
    points: int = 0  # as read: xs and ys may have been thinned since
    stats: tuple[float, float, float] = (math.nan, math.nan, math.nan)  # min, last, max as read

    @property
    def finite(self) -> list[float]:
        return [y for y in self.ys if y == y]

    def summary(self) -> tuple[float, float, float]:
        """min, last, max of the finite values as read (NaN when there are none)."""
        return self.stats

    def settle(self, buckets: int | None) -> None:
        """Count and summarize the points as read; then, with `buckets`, keep only the thinned
        ones (the NaN marks kept as NaN points), so that less travels between processes."""
        self.points = len(self.xs)
        values = self.finite
        if values:
            self.stats = (min(values), values[-1], max(values))
        if buckets is not None:
            thinned = thin(self, buckets)
            self.xs = array("d", thinned.xs + thinned.marks)
            self.ys = array("d", thinned.ys + [math.nan] * len(thinned.marks))


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


def collect(
    runs: list[Run], tracks: str | None, fields: str | None, by_time: bool, buckets: int | None = None
) -> dict[str, list[Series]]:
    """Every series of every run, by name: track fields matching `tracks` and log metadata fields
    matching `fields` (glob patterns; both None: all of both), thinned to `buckets` columns if
    given. Big runs are read (and thinned) in parallel, one process a run, as many at once as
    there are cores."""
    read = functools.partial(_collect_run, tracks=tracks, fields=fields, by_time=by_time, buckets=buckets)
    size = sum(_bytes(run.path) for run in runs)
    workers = min(len(runs), os.cpu_count() or 1)
    if workers > 1 and size > _PARALLEL_BYTES and "fork" in multiprocessing.get_all_start_methods():
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            per_run = list(pool.map(read, runs))
    else:
        per_run = [read(run) for run in runs]
    out: dict[str, list[Series]] = {}
    for run, found in zip(runs, per_run, strict=True):
        for series in found.values():
            series.run = run  # the same object for every series of a run, whichever process read it
            out.setdefault(series.name, []).append(series)
    return dict(sorted(out.items()))


_PARALLEL_BYTES = 50 << 20  # below this, starting processes costs more than it saves


def _bytes(folder: Path) -> int:
    files = [folder / LOG_FILE, *(folder / TRACKS).rglob("data.jsonl")]
    return sum(file.stat().st_size for file in files if file.is_file())


def _collect_run(
    run: Run, tracks: str | None, fields: str | None, by_time: bool, buckets: int | None
) -> dict[str, Series]:
    found: dict[str, Series] = {}
    everything = tracks is None and fields is None
    if everything or tracks is not None:
        for name in track_names(run.path):
            if everything or fnmatch.fnmatchcase(name, tracks or "*"):
                _read_track(run, name, by_time, found)
    if (everything or fields is not None) and (run.path / LOG_FILE).is_file():
        _read_logs(run, fields or "*", by_time, found)
    for series in found.values():
        series.settle(buckets)
    return found


def _read_track(run: Run, name: str, by_time: bool, found: dict[str, Series]) -> None:
    """Every numeric field of the track's points: the loop that big runs spend their time in."""
    columns: dict[str, Series] = {}
    label: str | None = "time" if by_time else None
    nonfinite = _NONFINITE
    for point in iter_track(run.path, name):
        data = point["data"]
        if type(data) is not dict:
            continue
        if by_time:
            x = _seconds(point.get("createdAt"))
            if x is None:
                continue
        else:
            step = data.get("step")
            if type(step) is int or type(step) is float:
                x, axis = step, "step"
            else:
                epoch = data.get("epoch")
                if type(epoch) is int or type(epoch) is float:
                    x, axis = epoch, "epoch"
                else:
                    x, axis = point["index"], "index"
            if label is None:
                label = axis
        for key, value in data.items():
            cls = type(value)
            if cls is float or cls is int:
                y = value
            elif cls is str and value in nonfinite:
                y = math.nan
            else:
                continue  # not a number: not plotted
            if not by_time and (key == "step" or key == "epoch"):
                continue
            series = columns.get(key)
            if series is None:
                series = columns[key] = Series(run, f"{name}.{key}", "")
            series.xs.append(x)
            series.ys.append(y)
            if y != y:
                series.nonfinite += 1
    for series in columns.values():
        series.x_label = label or "index"
        found[series.name] = series


def _read_logs(run: Run, pattern: str, by_time: bool, found: dict[str, Series]) -> None:
    label = "time" if by_time else "sequenceNumber"
    for record in iter_logs(run.path):
        metadata = record.get("metadata")
        if not isinstance(metadata, dict):
            continue
        x = _seconds(record.get("timestamp")) if by_time else _number(record.get("sequenceNumber"))
        if x is None:
            continue
        for key, value in metadata.items():
            if fnmatch.fnmatchcase(key, pattern):
                _add(found, run, f"logs.{key}", label, x, value)


def _add(found: dict[str, Series], run: Run, name: str, label: str, x: float, value: Any) -> None:
    y = _number(value)
    if y is None:
        y = _NONFINITE.get(value) if isinstance(value, str) else None
        if y is None:
            return  # not a number: not plotted
    series = found.get(name)
    if series is None:
        series = found[name] = Series(run, name, label)
    series.xs.append(x)
    if math.isfinite(y):
        series.ys.append(y)
    else:
        series.ys.append(math.nan)
        series.nonfinite += 1


def _number(value: Any) -> float | None:
    cls = type(value)
    if cls is float or cls is int:
        return float(value)
    return None


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
    order, and the x of each column that held a NaN or an infinity."""

    xs: list[float]
    ys: list[float]
    marks: list[float]


def thin(series: Series, buckets: int) -> Thinned:
    """Per pixel column of the x range: the first, lowest, highest and last point (in file order)."""
    xs, ys = series.xs, series.ys
    if not xs:
        return Thinned([], [], [])
    low, high = min(xs), max(xs)
    scale = buckets / ((high - low) or 1.0)
    last_column = buckets - 1
    first: dict[int, int] = {}  # column -> position of its first point
    lowest: dict[int, int] = {}
    highest: dict[int, int] = {}
    final: dict[int, int] = {}
    marks: dict[int, float] = {}
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        column = int((x - low) * scale)
        if column > last_column:
            column = last_column
        if y != y:
            if column not in marks:
                marks[column] = x
            continue
        if column not in first:
            first[column] = lowest[column] = highest[column] = final[column] = i
            continue
        if y < ys[lowest[column]]:
            lowest[column] = i
        elif y > ys[highest[column]]:
            highest[column] = i
        final[column] = i
    chosen = sorted({*first.values(), *lowest.values(), *highest.values(), *final.values()})
    return Thinned([xs[i] for i in chosen], [ys[i] for i in chosen], sorted(marks.values()))
