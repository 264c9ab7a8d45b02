"""Parameters: a session's hyperparameters as one flat JSON object, `parameters.json`.

Nested mappings are flattened with dots (`{"model": {"lr": 0.1}}` is `"model.lr"`);
every other value, lists included, is kept as a value, converted by the rules of log
metadata (NaN as "NaN", numpy as numbers, any object as its text). A key set again
takes the new value; a key that replaces a subtree (`model` after `model.lr`, or the
reverse) removes the keys it overrides, so no key is ever a dotted prefix of another.

Each `set()` merges into the file under an exclusive lock on the session folder
(several processes merge, none lost) and replaces it whole: a temporary file,
fsync, rename, fsync of the folder. A crash leaves the old file or the new one.
Within a process one `set()` runs at a time, and a fork waits for it: a child must
not inherit the folder's descriptor while it holds the lock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ._encode import Deferred, metadata_bytes, safe_str, snapshot
from ._files import locked_folder, replace_file, reworded
from ._process import on_fork

if TYPE_CHECKING:
    from ._session import Session

PARAMS_FILE = "parameters.json"
MAX_DEPTH = 100  # deeper mappings are kept as one value
FORK_TIMEOUT = 1.0  # seconds a fork waits for a set() in progress


class Parameters:
    """The parameters of one session: `set()` merges and writes, `get()` reads back."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def __repr__(self) -> str:
        return f"Parameters({self._session!r})"

    @property
    def file(self) -> Path:
        """The JSON file holding the parameters."""
        return self._session.path / PARAMS_FILE

    def set(self, mapping: Mapping[str, Any] | None = None, /, **values: Any) -> None:
        """Merge `mapping` and the keyword arguments into the parameters, on disk when it returns.

        Raises RuntimeError if the session is not open, TypeError for a key that is
        not a str, ValueError for an empty key, one holding a NUL, or one that starts or
        ends with a dot or holds two in a row. Nothing is written when it raises.
        """
        if not self._session.is_open:
            msg = f"{self._session!r} is not open: set parameters inside `with Session(...) as session:`"
            raise RuntimeError(msg)
        if mapping is not None and not isinstance(mapping, Mapping):
            msg = f"parameters must be a mapping (such as a dict), got {type(mapping).__name__}"
            raise TypeError(msg)
        flat: dict[str, Any] = {}
        if mapping is not None:
            _flatten(mapping, "", flat, set())
        _flatten(values, "", flat, set())
        if flat:
            _merge_into(self.file, _plain(flat))

    def get(self, flatten: bool = True) -> dict[str, Any]:
        """The parameters as stored (every open, every process): flat, or nested by the dots."""
        flat = _load(self.file)
        return flat if flatten else unflatten(flat)


def read_params(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parameters of the session folder `path` (or s3:// URL), as stored: a flat dict."""
    if isinstance(path, str) and path.startswith("s3://"):
        from ._read._bucket import read_bucket_params

        return read_bucket_params(path)
    folder = Path(path)
    if not folder.is_dir():
        msg = f"no session folder at {folder}"
        raise FileNotFoundError(msg)
    file = folder / PARAMS_FILE
    if not file.exists():
        msg = f"{folder} has no parameters ({PARAMS_FILE})"
        raise FileNotFoundError(msg)
    return _load(file)


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """`{"model.lr": 0.1}` as `{"model": {"lr": 0.1}}`."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # a file not written by set(): a value and a subtree
                child = node[part] = {"": child}
            node = child
        node[leaf] = value
    return nested


def _flatten(mapping: Mapping[Any, Any], prefix: str, out: dict[str, Any], active: set[int]) -> None:
    active.add(id(mapping))
    for key, value in mapping.items():
        if not isinstance(key, str):
            msg = f"parameter names must be str, got {type(key).__name__} {key!r}"
            raise TypeError(msg)
        if not key or "\0" in key:
            msg = f"parameter names must be non-empty and without NUL, got {prefix + key!r}"
            raise ValueError(msg)
        name = prefix + key
        if "" in key.split("."):
            msg = (
                f"parameter names cannot start or end with '.' or hold '..', got {name!r}: "
                "the dots nest names, so get(flatten=False) could not give it back"
            )
            raise ValueError(msg)
        if isinstance(value, Mapping) and value and id(value) not in active and len(active) < MAX_DEPTH:
            _flatten(value, name + ".", out, active)
        else:
            out.pop(name, None)  # a later duplicate keeps its own place, as in a dict
            out[name] = "{...}" if id(value) in active else value
    active.discard(id(mapping))


def _plain(flat: dict[str, Any]) -> dict[str, Any]:
    """The values by the rules of log metadata, as JSON-ready Python values."""
    encoded = snapshot(flat)
    if not isinstance(encoded, Deferred):
        result: dict[str, Any] = orjson.loads(encoded)
        return result
    # Tensors: converted value by value, so that one that fails costs only itself.
    out = {}
    for key, value in flat.items():
        one = orjson.loads(metadata_bytes(snapshot({"v": value})))
        out[key] = one["v"] if "v" in one else safe_str(value)
    return out


_setting = threading.Lock()  # one set() at a time in this process; a fork waits for it
_local = threading.local()


def _merge_into(file: Path, new: dict[str, Any]) -> None:
    if getattr(_local, "active", False):
        msg = "parameters().set() was called inside another set() (from a signal handler?)"
        raise RuntimeError(msg)
    on_fork(
        "parameters", before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_new_lock
    )
    with _setting:
        _local.active = True
        try:
            _locked_merge(file, new)
        finally:
            _local.active = False


def _locked_merge(file: Path, new: dict[str, Any]) -> None:
    try:
        with locked_folder(file.parent) as folder:  # other processes setting this session's parameters
            stored = _load(file)
            _merge(stored, new)
            replace_file(
                file, orjson.dumps(stored, None, orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE), folder
            )
    except OSError as exc:
        raise _named(exc, file) from exc


def _merge(stored: dict[str, Any], new: dict[str, Any]) -> None:
    """Set each new key, removing the stored keys it overrides: the values above it, the subtree below."""
    below: dict[str, list[str]] = {}  # a dotted prefix -> the keys under it (some gone since)
    for key in stored:
        for prefix in _prefixes(key):
            below.setdefault(prefix, []).append(key)
    for key, value in new.items():
        for prefix in _prefixes(key):
            stored.pop(prefix, None)
        for under in below.pop(key, ()):
            stored.pop(under, None)
        stored[key] = value
        for prefix in _prefixes(key):
            below.setdefault(prefix, []).append(key)


def _prefixes(key: str) -> Iterator[str]:
    """`a`, `a.b` for `a.b.c`."""
    end = key.find(".")
    while end >= 0:
        yield key[:end]
        end = key.find(".", end + 1)


def _named(exc: OSError, file: Path) -> OSError:
    """`exc`, saying which file, and that what was stored before is kept."""
    return reworded(exc, f"{file}: {exc.strerror or exc}; the parameters stored before are kept")


def _load(file: Path) -> dict[str, Any]:
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        loaded = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        msg = f"{file} is not valid JSON ({exc}); fix it or remove it"
        raise ValueError(msg) from None
    if not isinstance(loaded, dict):
        msg = f"{file} must hold one JSON object, not {type(loaded).__name__}; fix it or remove it"
        raise ValueError(msg)
    return loaded


def _before_fork() -> None:
    _local.forking = _setting.acquire(timeout=FORK_TIMEOUT)


def _after_fork_in_parent() -> None:
    if getattr(_local, "forking", False):
        _local.forking = False
        _setting.release()


def _new_lock() -> None:
    """In a child forked while a set() ran (the fork waited FORK_TIMEOUT for it): a lock of
    its own (`_files` closes its copy of the folder's descriptor)."""
    global _setting
    _setting = threading.Lock()
    _local.active = False
