"""What the integrations share: parameters flattened as `session.params()` takes them, metrics
as track points."""

from __future__ import annotations

import numbers
from argparse import Namespace
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .._encode import safe_str
from .._params import MAX_DEPTH

if TYPE_CHECKING:
    from .._session import Session


def _flatten(params: Mapping[Any, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`params` as `session.params()` stores them, made acceptable to it: nested mappings (and
    `argparse.Namespace`) as dotted keys, keys that are not str (`id2label`'s 0, 1) as their
    text. A nested mapping holding a key that cannot be part of a name (empty, with a NUL,
    with a dot at an end or two in a row, or the same text as another key) is kept whole,
    as its text. Returns the flat parameters, and the top-level entries that have no name."""
    flat: dict[str, Any] = {}
    unnamed: dict[str, Any] = {}  # by the key's repr: '' and 'a.' stay readable
    try:
        items = list(params.items())
    except Exception:  # noqa: BLE001 - a broken mapping must not stop training
        unnamed[f"<{type(params).__name__}>"] = safe_str(params)
        return flat, unnamed
    seen: set[str] = set()
    for key, value in items:
        name = key if isinstance(key, str) else safe_str(key)
        if _is_part(name) and name not in seen:
            seen.add(name)
            _add(name, value, flat, {id(params)})
        else:
            unnamed[safe_str(repr(key))] = safe_str(value)
    return flat, unnamed


def _add(name: str, value: Any, flat: dict[str, Any], active: set[int]) -> None:
    if isinstance(value, Namespace):
        value = vars(value)
    if not isinstance(value, Mapping) or not value:
        flat[name] = value  # an empty mapping is a value too, as in params()
        return
    if id(value) in active:
        flat[name] = "{...}"
        return
    entries = _entries(value)
    if entries is None or len(active) >= MAX_DEPTH or not all(_is_part(key) for key, _ in entries):
        flat[name] = safe_str(value)
        return
    if len({key for key, _ in entries}) < len(entries):  # 1 and "1": one name for two values
        flat[name] = safe_str(value)
        return
    active.add(id(value))
    for key, inner in entries:
        _add(f"{name}.{key}", inner, flat, active)
    active.discard(id(value))


def _entries(mapping: Mapping[Any, Any]) -> list[tuple[str, Any]] | None:
    """The items with their keys as text; None for a mapping that fails to give them."""
    try:
        return [(key if isinstance(key, str) else safe_str(key), value) for key, value in mapping.items()]
    except Exception:  # noqa: BLE001 - a broken mapping in a config must not stop training
        return None


def _is_part(key: str) -> bool:
    """Whether `key` can be one part of a dotted parameter name."""
    return bool(key) and "\0" not in key and "" not in key.split(".")


def _set_params(session: Session, params: Mapping[Any, Any], source: str) -> None:
    """Store `params` (flattened) in the session's parameters; entries that cannot be named go
    to a `warn` record instead, so that a configuration never stops a training run."""
    flat, unnamed = _flatten(params)
    if flat:
        session.params(flat)
    if unnamed:
        session.log(
            f"{source}: parameters without a usable name were not stored",
            level="warn",
            metadata={"parameters": unnamed},
        )


def _number(value: Any) -> int | float | None:
    """`value` as a track point's value: an int or float (a scalar tensor or numpy number by
    its `.item()`); None for anything else, flags (bool) included."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    item = getattr(value, "item", None)  # tensors, numpy arrays of one element
    if not callable(item):
        return None
    try:
        value = item()
    except Exception:  # noqa: BLE001 - more than one element, or unreadable: recorded as its text
        return None
    return None if hasattr(value, "item") else _number(value)


def _write_metrics(
    session: Session,
    metrics: Mapping[str, Any],
    step: int | None,
    epoch: float | None,
    message: str,
) -> None:
    """Each numeric value of `metrics` as a point of the track of its name (with `step` and
    `epoch` when not None); the rest, and values whose name cannot be a track's, in one
    `info` record with the step and epoch."""
    fields: dict[str, Any] = {}
    if step is not None:
        fields["step"] = step
    if epoch is not None:
        fields["epoch"] = epoch
    others: dict[str, Any] = {}
    for name, value in metrics.items():
        number = _number(value)
        if number is None:
            others[name] = value
            continue
        try:
            track = session.track(name)
        except (TypeError, ValueError):  # not a track name ("eval/", "a\\b"): kept in the record
            others[name] = value
            continue
        track.append(value=number, **fields)
    if others:
        session.log(message, metadata={**fields, **others})
