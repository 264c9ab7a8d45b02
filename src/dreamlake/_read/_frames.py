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
_TIMES = ("timestamp", "createdAt")


def columns(rows: Iterable[dict[str, Any]]) -> dict[str, list[Any]]:
    """One list per column, None where a row lacks it; the columns in first-seen order."""
    flat = [_flat_row(row) for row in rows]
    names: dict[str, None] = {}
    for row in flat:
        names.update(dict.fromkeys(row))
    out = {name: [row.get(name) for row in flat] for name in names}
    for name, values in out.items():
        if _numeric_with_specials(values):
            out[name] = [SPECIAL[v] if isinstance(v, str) else v for v in values]
    return out


def to_pandas(rows: Iterable[dict[str, Any]]) -> Any:
    try:
        import pandas as pd
    except ImportError:
        msg = "to_pandas() needs pandas: pip install pandas (or use to_polars() with polars)"
        raise ImportError(msg) from None
    frame = pd.DataFrame(columns(rows))
    for name in _TIMES:
        if name in frame.columns:
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
    return frame


def to_polars(rows: Iterable[dict[str, Any]]) -> Any:
    try:
        import polars as pl
    except ImportError:
        msg = "to_polars() needs polars: pip install polars (or use to_pandas() with pandas)"
        raise ImportError(msg) from None
    data = columns(rows)
    for name, values in data.items():  # a column of mixed kinds (3 and "3") stays text, not an error
        kinds = {type(v) for v in values if v is not None}
        if len(kinds) > 1 and not kinds <= {int, float}:
            data[name] = [None if v is None else str(v) for v in values]
    frame = pl.DataFrame(data, strict=False)
    times = [pl.col(n).str.to_datetime(time_zone="UTC") for n in _TIMES if frame.schema.get(n) == pl.String]
    return frame.with_columns(times) if times else frame


def _flat_row(row: dict[str, Any]) -> dict[str, Any]:
    """A record (metadata) or a point (data) with its inner object spread into columns."""
    inner_key = "data" if "index" in row and isinstance(row.get("data"), dict) else "metadata"
    out = {k: v for k, v in row.items() if k != inner_key}
    inner = row.get(inner_key)
    if isinstance(inner, dict):
        spread: dict[str, Any] = {}
        _spread(inner, "", spread)
        for key, value in spread.items():
            out[f"{inner_key}.{key}" if key in out else key] = value
    elif inner is not None:
        out[inner_key] = inner
    return out


def _spread(mapping: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            _spread(value, f"{prefix}{key}.", out)
        else:
            out[f"{prefix}{key}"] = value


def _numeric_with_specials(values: list[Any]) -> bool:
    """Numbers and at least one of the stored NaN/infinity strings, nothing else but None."""
    special = False
    for value in values:
        if value is None or (type(value) in (int, float)):
            continue
        if isinstance(value, str) and value in SPECIAL:
            special = True
            continue
        return False
    return special and any(type(v) in (int, float) for v in values)
