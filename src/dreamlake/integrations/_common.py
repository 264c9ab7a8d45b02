"""What the integrations share: parameters flattened as `session.params()` takes them, metrics
as track points."""

from __future__ import annotations

import dataclasses
import numbers
from argparse import Namespace
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._encode import safe_str
from .._params import MAX_DEPTH

if TYPE_CHECKING:
    from .._session import Session


def _flatten(params: Mapping[Any, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`params` as `session.params()` stores them, made acceptable to it: nested mappings (and
    `argparse.Namespace`) as dotted keys, keys that are not str (`id2label`'s 0, 1) as their
    text, dataclasses as mappings, other sequences (OmegaConf's) as lists. A nested mapping
    holding a key that cannot be part of a name (empty, with a NUL, with a dot at an end or two
    in a row, the same text as another key, or one whose dotted name another key's would take:
    `v1` beside `v1.0`) is kept whole, as its text. Returns the flat parameters, and the
    top-level entries that have no name of their own (such clashes too: never dropped)."""
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
        if _is_part(name) and not _clashes(name, seen):
            seen.add(name)
            _add(name, value, flat, {id(params)})
        else:
            unnamed[safe_str(repr(key))] = safe_str(value)
    return flat, unnamed


def _clashes(name: str, names: set[str]) -> bool:
    """Whether `name` and one of `names` would be one parameter, or one the other's subtree."""
    if name in names or any(prefix in names for prefix in _prefixes(name)):
        return True
    return any(other.startswith(name + ".") for other in names)


def _prefixes(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts))]


def _plain(value: Any, depth: int = 0) -> Any:
    """A leaf value with its containers as JSON's: a dataclass or another mapping as a dict, a
    sequence that is not a list (OmegaConf's ListConfig, a tuple) as a list."""
    if depth > MAX_DEPTH:
        return safe_str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else safe_str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray)):
        return [_plain(v, depth + 1) for v in value]
    return value


def _add(name: str, value: Any, flat: dict[str, Any], active: set[int]) -> None:
    if isinstance(value, Namespace):
        value = vars(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if not isinstance(value, Mapping) or not value:
        try:
            flat[name] = _plain(value)  # an empty mapping is a value too, as in params()
        except Exception:  # noqa: BLE001 - a sequence that fails to iterate: its text
            flat[name] = safe_str(value)
        return
    if id(value) in active:
        flat[name] = "{...}"
        return
    entries = _entries(value)
    if entries is None or len(active) >= MAX_DEPTH or not all(_is_part(key) for key, _ in entries):
        flat[name] = safe_str(value)
        return
    keys: set[str] = set()
    for key, _ in entries:  # 1 and "1", or v1 and v1.0: one name for two values
        if _clashes(key, keys):
            flat[name] = safe_str(value)
            return
        keys.add(key)
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
