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
    for path in paths:
        if not isinstance(path, (str, os.PathLike)):
            msg = f"runs() takes folders as separate arguments, runs(a, b), each a str or path; got {path!r}"
            raise TypeError(msg)
    if isinstance(metrics, str):
        msg = f"metrics must be a list of track names, such as [{metrics!r}]; got the str {metrics!r}"
        raise TypeError(msg)
    metrics = list(metrics)
    if not all(isinstance(m, str) for m in metrics):
        msg = f"metrics must be a list of track names, such as ['val/loss']; got {metrics!r}"
        raise TypeError(msg)
    if not isinstance(descending, bool):
        msg = f"descending must be True or False, got {descending!r}"
        raise TypeError(msg)
    folders = sorted({Path(os.path.abspath(f)) for p in paths for f in sessions_in(Path(p))})
    wanted = [_metric(m) for m in metrics]
    params = {folder: _params(folder) for folder in folders}
    differing = _differing(list(params.values()))
    taken = {*FIXED, *(f"{m} {stat}" for m in metrics for stat in STATS)}
    labels = _labels(folders)
    rows = []
    for folder in folders:
        row = {"run": labels[folder], **identity_columns(folder)}
        for key in differing:
            row[f"params.{key}" if key in taken else key] = params[folder].get(key)
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
    name, colon, field = text.partition(":")
    if not name or (colon and not field):
        msg = f"a metric is a track name, or NAME:FIELD, such as 'val/loss' or 'train:acc'; got {text!r}"
        raise ValueError(msg)
    return name, field or "value"


def _labels(folders: list[Path]) -> dict[Path, str]:
    """`workspace/session` of each folder; more of its path where two would read the same."""
    labels = {folder: "/".join(folder.parts[-2:]) for folder in folders}
    depth = 2
    while len(set(labels.values())) < len(labels) and depth < max(len(f.parts) for f in folders):
        depth += 1
        clash = {label for label in labels.values() if list(labels.values()).count(label) > 1}
        labels = {f: "/".join(f.parts[-depth:]) if label in clash else label for f, label in labels.items()}
    return labels


SEVERITY = ("running", "crashed?", "failed", "interrupted", "completed")
"""Of the attempts that overlap the last one (ranks of one launch), the run shows the first of
these any of them has: one rank still going, else one that died, failed..."""


def identity_columns(folder: Path) -> dict[str, Any]:
    """status, attempts, start and duration of one session folder. The duration is the time
    covered by its attempts: ranks that ran at once count once."""
    tried = _identity.attempts(folder)
    now = time.time()
    if not tried:  # a run from before session.json, or one that could not write it
        return {"status": "-", "attempts": 0, "start": None, "duration": None}
    # The files' last change, looked up once (a walk of the folder), and only for a run not ended
    open_ended = any(a.get("status") == "running" or a.get("endedAt") is None for a in tried)
    changed = _identity.last_change(folder) if open_ended else None
    spans = []
    for attempt in tried:
        start = _identity.epoch(attempt.get("startedAt"))
        end = _identity.epoch(attempt.get("endedAt"))
        shown = _identity.shown_status(attempt, folder, now, changed)
        if end is None and start is not None and changed is not None:  # still going, or died: up to
            end = now if shown == "running" else max(start, changed)  # now, or its files' last change
        if start is not None and end is not None:
            spans.append((start, max(start, end), shown))
    last = max(spans, default=None)
    together = {shown for start, end, shown in spans if last is not None and end >= last[0]}
    status = next((s for s in SEVERITY if s in together), None)
    if status is None:  # no attempt with a time: the last one's word
        status = _identity.shown_status(tried[-1], folder, now, changed)
    start = tried[0].get("startedAt")
    return {"status": status, "attempts": len(tried), "start": start, "duration": _covered(spans)}


def _covered(spans: list[tuple[float, float, str]]) -> float:
    """Seconds covered by the union of the spans."""
    total, reach = 0.0, -math.inf
    for start, end, _ in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return round(total, 3)


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
