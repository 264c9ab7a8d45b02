"""Turning queued entries into JSON Lines.

The fast path is one `orjson.dumps` per record. A record takes the careful path
only when orjson rejects it (huge ints, lone surrogates, cycles, non-str keys)
or when its output holds a `null` that may stand for a NaN or an infinity,
which orjson writes as `null` and we write as a string a user can see.
"""

import math
import time
from collections.abc import Mapping
from datetime import date, datetime
from datetime import time as dt_time
from enum import Enum
from typing import Any

import orjson

Entry = tuple[int, str, str, dict[Any, Any] | None]
"""What `Session.log` queues: (time.time_ns(), level, message, metadata copy)."""

_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY
_MAX_DEPTH = 200  # orjson refuses to nest deeper than 254 levels
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # the range orjson writes as numbers
_MS_TEXT = [f".{i:03d}" for i in range(1000)]
_US_TEXT = [f"{i:03d}Z" for i in range(1000)]


class Encoder:
    """Encodes batches of entries; keeps a small clock cache, so one per writer."""

    __slots__ = ("_ms_start", "_ms_prefix", "_sec", "_sec_prefix")

    def __init__(self) -> None:
        self._ms_start = self._sec = -(2**63)
        self._sec_prefix = self._ms_prefix = ""

    def timestamp(self, ns: int) -> str:
        """ISO 8601 UTC with microseconds and a trailing Z, e.g. 2025-10-25T10:30:00.000123Z."""
        offset = ns - self._ms_start  # small-int arithmetic while within the cached millisecond
        if not 0 <= offset < 1_000_000:
            self._enter_millisecond(ns)
            offset = ns - self._ms_start
        return self._ms_prefix + _US_TEXT[offset // 1000]

    def _enter_millisecond(self, ns: int) -> None:
        ms = ns // 1_000_000
        self._ms_start = ms * 1_000_000
        sec, frac = divmod(ms, 1000)
        if sec != self._sec:
            self._sec = sec
            self._sec_prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        self._ms_prefix = self._sec_prefix + _MS_TEXT[frac]

    def encode(self, entries: list[Entry], first_sequence: int) -> bytearray:
        """Return the JSON Lines for `entries`, numbered from `first_sequence`.

        One `orjson.dumps` per record, so no record dict outlives its line (a
        list of them would be promoted by the garbage collector and make its
        full passes longer). If the batch holds more `null`s than records
        without metadata, some may be NaNs or infinities: it is encoded again
        with a check per line.
        """
        out, no_metadata = self._lines(entries, first_sequence, check=False)
        if out.count(b"null") != no_metadata:
            out, _ = self._lines(entries, first_sequence, check=True)
        return out

    def _lines(self, entries: list[Entry], first: int, check: bool) -> tuple[bytearray, int]:
        out = bytearray()
        no_metadata = 0
        stamp = self.timestamp
        for seq, (ns, level, message, metadata) in enumerate(entries, first):
            record = {
                "timestamp": stamp(ns),
                "level": level,
                "message": message,
                "metadata": metadata,
                "sequenceNumber": seq,
            }
            try:
                line = orjson.dumps(record, default=_default, option=_OPTIONS)
            except TypeError:  # orjson.JSONEncodeError
                line = encode_careful(record)
            else:
                if metadata is None:
                    no_metadata += 1
                elif check and b"null" in line:
                    line = encode_careful(record)
            out += line
        return out, no_metadata


def _default(obj: Any) -> Any:
    """orjson's hook for types it does not know: containers become lists, the rest text."""
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    tolist = getattr(obj, "tolist", None)  # numpy arrays orjson declines, array-likes
    if callable(tolist):
        return tolist()
    return str(obj)


def encode_careful(record: dict[str, Any]) -> bytes:
    """Encode a record orjson alone cannot write faithfully. Never raises."""
    try:
        return orjson.dumps(_clean(record, set(), 0), option=_OPTIONS)
    except Exception as exc:  # a bug in _clean must not cost the entry
        fallback = {
            **record,
            "message": safe_str(record["message"]),
            "metadata": {"unserializable": safe_str(record["metadata"]), "error": safe_str(exc)},
        }
        return orjson.dumps(fallback, option=_OPTIONS)


def _clean(value: Any, active: set[int], depth: int) -> Any:
    """Rebuild `value` from JSON-safe parts; `active` holds the containers being visited."""
    if isinstance(value, str):
        return _clean_str(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value) if _INT_MIN <= value <= _INT_MAX else str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (datetime, date, dt_time)):
        return value
    if isinstance(value, Enum):
        return _clean(value.value, active, depth)
    is_mapping = isinstance(value, Mapping)
    if is_mapping or isinstance(value, (list, tuple, set, frozenset)):
        if id(value) in active:
            return "{...}" if is_mapping else "[...]"
        if depth >= _MAX_DEPTH:
            return safe_str(value)
        active.add(id(value))
        try:
            if is_mapping:
                return {
                    _clean_str(k) if isinstance(k, str) else safe_str(k): _clean(v, active, depth + 1)
                    for k, v in value.items()
                }
            return [_clean(v, active, depth + 1) for v in value]
        finally:
            active.discard(id(value))
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays, tensors
    if callable(tolist):
        try:
            return _clean(tolist(), active, depth + 1)
        except Exception:
            pass
    return safe_str(value)


def _clean_str(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: keep them visible as \udXXX
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return str(text)


def safe_str(obj: object) -> str:
    """`str(obj)`, or failing that `repr(obj)`, or a placeholder naming the type."""
    for convert in (str, repr):
        try:
            return _clean_str(convert(obj))
        except Exception:
            pass
    return f"<unprintable {type(obj).__qualname__} object>"
