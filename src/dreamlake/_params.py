"""Parameters: a session's hyperparameters as one flat JSON object, `parameters.json`.

Nested mappings are flattened with dots (`{"model": {"lr": 0.1}}` is `"model.lr"`);
every other value, lists included, is kept as a value, converted by the rules of log
metadata (NaN as "NaN", numpy as numbers, any object as its text). A key set again
takes the new value; a key that replaces a subtree (`model` after `model.lr`, or the
reverse) removes the keys it overrides, so no key is ever a prefix of another.

Each `set()` merges into the file under an exclusive lock on the session folder
(several processes merge, none lost) and replaces it whole: a temporary file,
fsync, rename, fsync of the folder. A crash leaves the old file or the new one.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ._encode import metadata_bytes, snapshot

if TYPE_CHECKING:
    from ._session import Session

PARAMS_FILE = "parameters.json"


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
        not a str, ValueError for an empty key or one holding a NUL.
        """
        if not self._session.is_open:
            msg = f"{self._session!r} is not open: set parameters inside `with Session(...) as session:`"
            raise RuntimeError(msg)
        if mapping is not None and not isinstance(mapping, Mapping):
            msg = f"parameters must be a mapping (such as a dict), got {type(mapping).__name__}"
            raise TypeError(msg)
        flat: dict[str, Any] = {}
        if mapping is not None:
            _flatten(mapping, "", flat)
        _flatten(values, "", flat)
        if flat:
            _merge_into(self.file, _plain(flat))

    def get(self, flatten: bool = True) -> dict[str, Any]:
        """The parameters as stored (every open, every process): flat, or nested by the dots."""
        flat = _load(self.file)
        return flat if flatten else unflatten(flat)


def read_params(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parameters of the session folder `path`, as stored: a flat dict."""
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
            if not isinstance(child, dict):  # a value and a subtree under one name: keep both
                child = node[part] = {"": child}
            node = child
        node[leaf] = value
    return nested


def _flatten(mapping: Mapping[Any, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in mapping.items():
        if not isinstance(key, str):
            msg = f"parameter names must be str, got {type(key).__name__} {key!r}"
            raise TypeError(msg)
        if not key or "\0" in key:
            msg = f"parameter names must be non-empty and without NUL, got {prefix + key!r}"
            raise ValueError(msg)
        name = prefix + key
        if isinstance(value, Mapping) and value:
            _flatten(value, name + ".", out)
        else:
            out.pop(name, None)  # a later duplicate keeps its own place, as in a dict
            out[name] = value


def _plain(flat: dict[str, Any]) -> dict[str, Any]:
    """The values by the rules of log metadata, as JSON-ready Python values."""
    encoded = snapshot(flat)
    data = encoded if isinstance(encoded, str) else metadata_bytes(encoded)
    result: dict[str, Any] = orjson.loads(data)
    return result


def _merge_into(file: Path, new: dict[str, Any]) -> None:
    os.makedirs(file.parent, exist_ok=True)  # deleted under an open session: made again, as logs are
    folder = os.open(file.parent, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)  # other processes setting this session's parameters
        stored = _load(file)
        for key, value in new.items():
            for old in [k for k in stored if k.startswith(key + ".") or key.startswith(k + ".")]:
                del stored[old]  # overridden by `key`: the subtree it replaces, or the value above it
            stored[key] = value
        _replace(file, orjson.dumps(stored, None, orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE), folder)
    finally:
        os.close(folder)  # releases the lock


def _replace(file: Path, data: bytes, folder: int) -> None:
    """Write `data` as `file` whole: a temporary file, fsync, rename, fsync of the folder."""
    tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, file)
    os.fsync(folder)


def _load(file: Path) -> dict[str, Any]:
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return {}
    loaded = orjson.loads(data)
    if not isinstance(loaded, dict):
        msg = f"{file} does not hold a JSON object"
        raise ValueError(msg)
    return loaded
