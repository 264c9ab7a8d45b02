"""Runs side by side: `dreamlake.runs()` and `dreamlake runs`.

One row per session folder: its status (the last attempt's, see `_identity.shown_status`),
when it started, how long its attempts ran, the parameters that differ between the runs
(a key one run lacks differs), and for each metric asked for, the last, smallest and
largest value of a track's field (`NAME` reads its `value`, `NAME:FIELD` another field).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import _identity
from .._params import read_params
from ._frames import SPECIAL
from ._sessions import sessions_in
from ._tracks import iter_track, track_names

FIXED = ("run", "status", "attempts", "start", "duration")
STATS = ("last", "min", "max")


def runs(
    *paths: str | os.PathLike[str],
    metrics: Iterable[str] = (),
    sort: str | None = None,
    descending: bool = False,
) -> list[dict[str, Any]]:
    """One dict per run under `paths` (session, workspace or local_path folders): run, status,
    attempts, start, duration (seconds), the parameters that differ, then `{metric} last`,
    `{metric} min`, `{metric} max` for each of `metrics`. Sorted by `sort` (a column; runs
    without a value last), else by run. ValueError for a metric no run has, or an unknown column."""
    if not paths:
        msg = "runs() needs at least one folder: a workspace, a session or a local_path"
        raise TypeError(msg)
    folders = sorted({Path(os.path.abspath(f)) for p in paths for f in sessions_in(Path(p))})
    metrics = list(metrics)
    wanted = [_metric(m) for m in metrics]
    params = {folder: _params(folder) for folder in folders}
    differing = _differing(list(params.values()))
    rows = []
    for folder in folders:
        row = identity_columns(folder)
        for key in differing:
            row[f"params.{key}" if key in FIXED else key] = params[folder].get(key)
        rows.append(row)
    for (name, field), text in zip(wanted, metrics, strict=True):
        found = [_stats(folder, name, field) for folder in folders]
        if all(stats is None for stats in found):
            known = sorted({t for folder in folders for t in track_names(folder)})
            msg = (
                f"no run has a metric {text!r} (a track {name!r} with numbers in {field!r}); "
                f"tracks there: {', '.join(known) or 'none'}"
            )
            raise ValueError(msg)
        for row, stats in zip(rows, found, strict=True):
            for stat, value in zip(STATS, stats or (None, None, None), strict=True):
                row[f"{text} {stat}"] = value
    return sort_rows(rows, sort, descending)


def sort_rows(rows: list[dict[str, Any]], column: str | None, descending: bool) -> list[dict[str, Any]]:
    column = column or "run"
    if rows and not any(column in row for row in rows):
        msg = f"cannot sort by {column!r}: the columns are {', '.join(rows[0])}"
        raise ValueError(msg)
    present = [r for r in rows if _sortable(r.get(column))]
    absent = [r for r in rows if not _sortable(r.get(column))]
    present.sort(key=lambda r: _key(r[column]), reverse=descending)
    return present + absent


def _sortable(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _key(value: Any) -> tuple[int, Any]:
    """Numbers before text, each in its own order (a column may mix them)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


def _metric(text: str) -> tuple[str, str]:
    if not isinstance(text, str) or not text.strip(":"):
        msg = f"a metric is a track name, or NAME:FIELD, such as 'val/loss' or 'train:acc'; got {text!r}"
        raise ValueError(msg)
    name, _, field = text.partition(":")
    return name, field or "value"


def identity_columns(folder: Path) -> dict[str, Any]:
    """run, status, attempts, start and duration of one session folder."""
    tried = _identity.attempts(folder)
    now = time.time()
    row: dict[str, Any] = {"run": "/".join(folder.parts[-2:])}
    if not tried:  # a run from before session.json, or one that could not write it
        row.update(status="-", attempts=0, start=None, duration=None)
        return row
    row["status"] = _identity.shown_status(tried[-1], folder, now)
    row["attempts"] = len(tried)
    row["start"] = tried[0].get("startedAt")
    total = 0.0
    for attempt in tried:
        start = _seconds(attempt.get("startedAt"))
        end = _seconds(attempt.get("endedAt"))
        if end is None and start is not None:  # still going, or died: up to now, or its files' last change
            shown = _identity.shown_status(attempt, folder, now)
            end = now if shown == "running" else max(start, _identity.last_change(folder))
        if start is not None and end is not None:
            total += max(0.0, end - start)
    row["duration"] = round(total, 3)
    return row


def _seconds(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _params(folder: Path) -> dict[str, Any]:
    try:
        return read_params(folder)
    except (OSError, ValueError):
        return {}


def _differing(all_params: Sequence[dict[str, Any]]) -> list[str]:
    """The keys whose values are not the same in every run, in the order first seen."""
    keys: dict[str, None] = {}
    for params in all_params:
        keys.update(dict.fromkeys(params))
    missing = object()
    return [
        key
        for key in keys
        if len({_hashable(params.get(key, missing)) for params in all_params}) > 1 or len(all_params) == 1
    ]


def _hashable(value: Any) -> Any:
    """1, 1.0 and True are different parameters; lists compare by their text."""
    return (type(value).__name__, repr(value))


def _stats(folder: Path, name: str, field: str) -> tuple[float, float, float] | None:
    """(last, min, max) of the numbers in `field` of the track's points; None without any."""
    if name not in track_names(folder):
        return None
    last = low = high = None
    for point in iter_track(folder, name):
        value = point.get("data", {}).get(field)
        if isinstance(value, str):
            value = SPECIAL.get(value)
        if type(value) not in (int, float):
            continue
        last = value
        if not math.isnan(value):
            low = value if low is None or value < low else low
            high = value if high is None or value > high else high
    if last is None:
        return None
    nan = math.nan
    return last, nan if low is None else low, nan if high is None else high
