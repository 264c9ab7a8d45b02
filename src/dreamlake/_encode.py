"""Values to JSON: the metadata snapshot taken at the call, and the lines the writer assembles.

In the caller, metadata becomes JSON bytes at once: one `orjson.dumps` (or, for a
flat dict of plain values, `_core`'s own encoder, byte for byte the same), which is
also a deep copy, so a value changed after `log()` returns never reaches the record,
and the writer only assembles text (its cost per record is the same whatever the
metadata holds). The bytes are copied into the queue and freed by the call that made
them. Only what orjson cannot write
faithfully takes the careful path: non-str keys, integers beyond 64 bits, lone
surrogates, cycles, unknown types, and NaN or infinities (orjson writes those as
`null`; we write a string a user can see). Tensors are copied on their device at the
call and turned into numbers by the writer thread, so the caller never waits for
the device.

The writer (`_core.Ring.format`) wraps the already-encoded metadata into records.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from datetime import date, datetime
from datetime import time as dt_time
from enum import Enum
from typing import Any

import orjson

NATIVE = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
"""orjson writes numpy itself; datetimes and dataclasses go through `native()` (orjson 3.13
crashes on a tzinfo whose utcoffset() raises, and on a slots dataclass missing a field)."""
_MAX_DEPTH = 200  # orjson refuses to nest deeper than 254 levels
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # the range orjson writes as numbers
_ESCAPING = (KeyboardInterrupt,)  # never swallowed: the user wants out


class Deferred:
    """Metadata holding tensor copies: encoded by the writer thread, not the caller."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Tensor:
    __slots__ = ("copy",)

    def __init__(self, copy: Any) -> None:
        self.copy = copy


Metadata = bytes | str | Deferred | None
Entry = tuple[int, str, str, Metadata]
"""What `Session.log` queues: (time.time_ns(), level, message, metadata as JSON text, or
tensors to convert, or None)."""
Point = tuple[int, Metadata]
"""What `Track.append` queues: (time.time_ns(), the fields as JSON text or tensors to convert)."""

_NONE = type(None)


# -- in the caller ----------------------------------------------------------------------


def snapshot(metadata: object) -> bytes | Deferred:
    """The metadata as JSON bytes (or a Deferred holding tensor copies), as it is now."""
    if not isinstance(metadata, Mapping):
        msg = f"metadata must be a mapping (such as a dict) or None, got {type(metadata).__name__}"
        raise TypeError(msg)
    return snapshot_dict(metadata if isinstance(metadata, dict) else dict(metadata))


def snapshot_dict(metadata: dict[Any, Any]) -> bytes | Deferred:
    """A dict as JSON bytes now (a deep copy), the one path of `append()` and `snapshot()`;
    `log()` takes the same steps in `_core.Logger`.

    orjson writes what it can as it is; only what it refuses (non-str keys, big ints, unknown
    types) or writes as null (a None, or a NaN) takes the careful path. The call costs about
    20 ns more than this body written inline (measured with timeit, 178 -> 199 ns)."""
    try:
        data = _dumps(metadata, native, NATIVE)
    except TypeError:  # orjson.JSONEncodeError: a value it cannot write as it is
        return careful(metadata)
    return checked(metadata, data) if b"null" in data else data


_dumps = orjson.dumps


def native(value: Any) -> Any:
    """orjson's `default` for what it passes through: datetimes as ISO text, dataclasses as
    their fields; anything that raises here sends the metadata down the careful path."""
    if isinstance(value, (datetime, date, dt_time)):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    msg = f"Type is not JSON serializable: {type(value).__name__}"
    raise TypeError(msg)


def checked(metadata: dict[Any, Any], data: bytes) -> bytes | Deferred:
    """`data`, orjson's text of `metadata`, holding "null": unless one may stand for a NaN.

    Each None value at the top wrote one null, each NaN or infinity one more, and text
    may hold more: as many nulls as None values at the top means no NaN anywhere. The
    values are read again here, after orjson read them: if another thread changed the
    dict meanwhile, the counts differ and the careful path, which reads them once,
    decides."""
    nones = 0
    deep = False
    for value in metadata.values():
        cls = type(value)
        if cls is float:
            if value - value != 0.0:  # NaN for NaN and the infinities, 0.0 for the rest
                return careful(metadata)
        elif value is None:
            nones += 1
        elif cls is not str and cls is not int and cls is not bool:
            deep = True
    if data.count(b"null") == nones:
        return data
    try:
        hides = not deep or _has_nonfinite(metadata, 0)
    except RecursionError:  # deep metadata, logged from deep in a call stack
        hides = True
    return careful(metadata) if hides else data


def careful(metadata: Mapping[Any, Any]) -> bytes | Deferred:
    """Rebuild the metadata from JSON-safe parts, value by value. Never raises (but Ctrl-C)."""
    tensors: list[int] = []
    value = _clean(metadata, set(), 0, tensors)
    if tensors:
        return Deferred(value)
    return orjson.dumps(value)


def _has_nonfinite(value: Any, depth: int) -> bool:
    """Whether orjson wrote a NaN or an infinity in `value` as null (or might have).

    Looks at exact types only, so it runs no code of the values' own."""
    cls = type(value)
    if cls is float:
        return bool(value - value != 0.0)  # NaN for NaN and the infinities, 0.0 for the rest
    if cls is dict or cls is list or cls is tuple:
        if depth >= _MAX_DEPTH:
            return True
        items = value.values() if cls is dict else value
        return any(_has_nonfinite(item, depth + 1) for item in items)
    if value is None or cls is str or cls is int or cls is bool:
        return False
    return True  # numpy, subclasses, dataclasses: let the careful path look


def _clean(value: Any, active: set[int], depth: int, tensors: list[int]) -> Any:
    """`value` as plain JSON parts, or its text if anything about it raises: a bad value never
    costs its neighbours. `active` holds the containers being visited."""
    try:
        return _convert(value, active, depth, tensors)
    except _ESCAPING:
        raise
    except BaseException:  # noqa: BLE001 - a value may throw anything; it is written as text
        return safe_str(value)


def _convert(value: Any, active: set[int], depth: int, tensors: list[int]) -> Any:
    if isinstance(value, str):
        return clean_str(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value) if _INT_MIN <= value <= _INT_MAX else str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (datetime, date, dt_time)):
        return _guarded(value.isoformat, value)
    if isinstance(value, Enum):
        return _clean(value.value, active, depth + 1, tensors)
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
                    key: _clean(item, active, depth + 1, tensors)
                    for key, item in zip(_keys(value), value.values(), strict=True)
                }
            return [_clean(item, active, depth + 1, tensors) for item in value]
        finally:
            active.discard(id(value))
    if _is_tensor(value):
        copy = _guarded(lambda: value.detach().clone(), None)  # on its device: no sync here
        if copy is None:
            return safe_str(value)
        tensors.append(1)
        return _Tensor(copy)
    if is_dataclass(value) and not isinstance(value, type):
        fields_ = {f.name: getattr(value, f.name, None) for f in fields(value)}
        return _clean(fields_, active, depth + 1, tensors)
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays, array-likes
    if callable(tolist):
        listed = _guarded(tolist, None)
        if listed is not None:
            return _clean(listed, active, depth + 1, tensors)
    try:
        return orjson.Fragment(orjson.dumps(value, native, NATIVE))  # UUID and other native types
    except TypeError:
        return safe_str(value)


def _is_tensor(value: object) -> bool:
    """A real torch.Tensor (only once torch is imported): not anything with a detach()."""
    tensor = getattr(sys.modules.get("torch"), "Tensor", None)
    return isinstance(tensor, type) and isinstance(value, tensor)


def _keys(mapping: Mapping[Any, Any]) -> list[str]:
    """The keys as distinct strings: str keys keep their names, others get theirs plus a type."""
    taken = {clean_str(key) for key in mapping if isinstance(key, str)}
    keys = []
    for key in mapping:
        if isinstance(key, str):
            keys.append(clean_str(key))
            continue
        name = text = safe_str(key)
        if name in taken:
            name = text = f"{text} ({type(key).__name__})"
        n = 2
        while name in taken:
            name = f"{text} {n}"
            n += 1
        taken.add(name)
        keys.append(name)
    return keys


def _guarded(call: Callable[[], Any], fallback: object) -> Any:
    """`call()`, or the text of `fallback` if it raises anything but Ctrl-C or exit."""
    try:
        return call()
    except _ESCAPING:
        raise
    except BaseException:  # noqa: BLE001 - a value may throw anything; it is written as text
        return None if fallback is None else safe_str(fallback)


def clean_str(text: str) -> str:
    """`text` as a plain str that UTF-8 can hold: lone surrogates kept visible as \\udXXX."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return str(text)


def safe_str(obj: object) -> str:
    """`str(obj)`, or failing that `repr(obj)`, or a placeholder naming the type. Never raises
    (but Ctrl-C), whatever `__str__` throws."""
    for convert in (str, repr):
        try:
            return clean_str(convert(obj))
        except _ESCAPING:
            raise
        except BaseException:  # noqa: BLE001 - asyncio.CancelledError and the like, too
            pass
    return f"<unprintable {type(obj).__qualname__} object>"


def snapshot_steps() -> dict[str, Any]:
    """What the native hot paths (`_core.Logger`, `_core.Appender`) call to take a snapshot:
    the steps of `snapshot_dict`, with the careful path for what orjson refuses."""
    return {
        "dumps": orjson.dumps,
        "default": native,
        "option": NATIVE,
        "careful": careful,
        "checked": checked,
        "snapshot": snapshot,
    }


# -- in the writer ------------------------------------------------------------------------


def metadata_bytes(metadata: Metadata) -> bytes:
    """The JSON of a queued entry's metadata; tensors become numbers here. Never raises."""
    if metadata is None:
        return b"null"
    if isinstance(metadata, bytes):
        return metadata
    if isinstance(metadata, str):
        return metadata.encode()
    try:
        return orjson.dumps(metadata.value, _tensor_values)
    except BaseException as exc:  # noqa: BLE001 - the writer thread must survive any value
        return orjson.dumps({"unserializable": safe_str(metadata), "error": safe_str(exc)})


def _tensor_values(obj: Any) -> Any:
    if isinstance(obj, _Tensor):
        listed = _guarded(obj.copy.tolist, None)
        return _clean(listed, set(), 0, []) if listed is not None else safe_str(obj.copy)
    return safe_str(obj)


def preview_bytes(metadata: Metadata) -> bytes:
    """The metadata for an echo line in the caller's thread: a tensor on a device is shown by
    its device and shape, never read (reading it would wait for the device). Never raises."""
    if not isinstance(metadata, Deferred):
        return metadata_bytes(metadata)
    try:
        return orjson.dumps(metadata.value, _tensor_preview)
    except BaseException:  # noqa: BLE001 - an echo line must never break log()
        return orjson.dumps(safe_str(metadata.value))


def _tensor_preview(obj: Any) -> Any:
    if isinstance(obj, _Tensor):
        device = _guarded(lambda: obj.copy.device, None)
        if _guarded(lambda: device.type, None) == "cpu":
            return _tensor_values(obj)
        shape = _guarded(lambda: list(obj.copy.shape), "?")
        return f"<tensor on {safe_str(device)}, shape {shape}>"
    return safe_str(obj)


def iso_timestamp(ns: int) -> str:
    """ISO 8601 UTC with microseconds and a trailing Z, e.g. 2025-10-25T10:30:00.000123Z."""
    sec, frac = divmod(ns // 1000, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:06d}Z"
