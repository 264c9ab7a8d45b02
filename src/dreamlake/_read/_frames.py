"""Records and points as table columns, for `Records.to_pandas()` and `.to_polars()`.

A log record's metadata and a point's data become columns of their own (nested keys
joined by dots), beside the record's fields; a key that would take one of those names
keeps its `metadata.`/`data.` prefix. JSON cannot hold NaN or infinities, so they are
stored as the strings "NaN", "Infinity", "-Infinity": in a column whose other values
are all numbers they are floats again, so `.mean()` works.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def columns(rows: Iterable[dict[str, Any]]) -> tuple[dict[str, list[Any]], str | None]:
    """One list per column, None where a row lacks it, the columns in first-seen order; and the
    record's own time column (`timestamp` of a log record, `createdAt` of a point), if any."""
    flat = []
    times = None
    for row in rows:
        spread, time_column = _flat_row(row)
        flat.append(spread)
        times = times or time_column
    names: dict[str, None] = {}
    for spread in flat:
        names.update(dict.fromkeys(spread))
    out = {name: [spread.get(name) for spread in flat] for name in names}
    for name, values in out.items():
        if _numeric_with_specials(values):
            out[name] = [SPECIAL[v] if isinstance(v, str) else v for v in values]
    return out, times


def to_pandas(rows: Iterable[dict[str, Any]]) -> Any:
    try:
        import pandas as pd
    except ImportError:
        msg = "to_pandas() needs pandas: pip install pandas (or use to_polars() with polars)"
        raise ImportError(msg) from None
    data, times = columns(rows)
    frame = pd.DataFrame(data)
    if times is not None:
        frame[times] = pd.to_datetime(frame[times], utc=True, format="ISO8601")
    return frame


def to_polars(rows: Iterable[dict[str, Any]]) -> Any:
    try:
        import polars as pl
    except ImportError:
        msg = "to_polars() needs polars: pip install polars (or use to_pandas() with pandas)"
        raise ImportError(msg) from None
    data, times = columns(rows)
    for name, values in data.items():  # a column of mixed kinds (3 and "3") stays text, not an error
        kinds = {type(v) for v in values if v is not None}
        if len(kinds) > 1 and not kinds <= {int, float}:
            data[name] = [None if v is None else str(v) for v in values]
    frame = pl.DataFrame(data, strict=False)
    if times is not None and frame.schema.get(times) == pl.String:
        frame = frame.with_columns(pl.col(times).str.to_datetime(time_zone="UTC"))
    return frame


def _flat_row(row: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A record (metadata) or a point (data) with its inner object spread into columns; and
    which of its fields is its time. A key taken already keeps its prefix (`metadata.level`),
    then gets a number (`a.b~2`): no value is lost."""
    point = "index" in row and isinstance(row.get("data"), dict)
    inner_key = "data" if point else "metadata"
    out = {k: v for k, v in row.items() if k != inner_key}
    inner = row.get(inner_key)
    if isinstance(inner, dict):
        spread: list[tuple[str, Any]] = []
        _spread(inner, "", spread)
        fields = set(out)
        for key, value in spread:
            name = f"{inner_key}.{key}" if key in fields else key
            number = 1
            while name in out:
                number += 1
                name = f"{key}~{number}"
            out[name] = value
    elif inner is not None:
        out[inner_key] = inner
    return out, ("createdAt" if point else "timestamp" if "timestamp" in row else None)


def _spread(mapping: dict[str, Any], prefix: str, out: list[tuple[str, Any]]) -> None:
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            _spread(value, f"{prefix}{key}.", out)
        else:
            out.append((f"{prefix}{key}", value))


def _numeric_with_specials(values: list[Any]) -> bool:
    """Numbers (or none) and at least one of the stored NaN/infinity strings, nothing else
    but None: a column of numbers as JSON had to store them (a run that diverged at once too)."""
    special = False
    for value in values:
        if value is None or type(value) in (int, float):
            continue
        if isinstance(value, str) and value in SPECIAL:
            special = True
            continue
        return False
    return special
