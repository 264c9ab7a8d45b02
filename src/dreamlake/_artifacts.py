"""Files kept with a run (checkpoints, configs, results): `session.files()`.

Each upload gets an id and lives at `files/{id}/{filename}` in the session folder, with
its entry (filename, virtual path, size, SHA-256, description, tags, metadata) beside it
as `files/{id}.json`. The copy is streamed (never read whole), fsynced and renamed into
place before the entry is written: an entry always names a whole file. Ids are random,
so processes and hosts adding files to one session never collide.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from ._encode import iso_timestamp
from ._files import locked_folder, replace_file
from ._tracks import description_of

if TYPE_CHECKING:
    from ._session import Session

FILES = "files"
_BLOCK = 1 << 20


class Files:
    """The files of one session: `upload()`, `list()`, `download()`."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def __repr__(self) -> str:
        return f"Files({self._session!r})"

    def upload(
        self,
        local_file: str | os.PathLike[str],
        path: str = "/",
        description: str | None = None,
        tags: list[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Copy `local_file` into the session under the virtual folder `path` ("/models");
        returns its entry: id, filename, path, sizeBytes, checksum ("sha256:..."), createdAt,
        and description, tags, metadata as given. Raises RuntimeError if the session is not open."""
        if not self._session.is_open:
            msg = f"{self._session!r} is not open: upload files inside `with Session(...) as session:`"
            raise RuntimeError(msg)
        source = _source(local_file)
        folder = _virtual(path)
        remote = self._session._remote
        if remote is not None:  # a name no key can hold would never reach the bucket: said now
            try:
                remote[0].remote.key(self._session.workspace, self._session.name, FILES, "id", source.name)
            except ValueError as exc:
                msg = f"cannot upload {source.name!r} (the session ships to a bucket): {exc}"
                raise ValueError(msg) from None
        info = description_of(description, tags, metadata)
        entry_id = f"{time.time_ns():x}-{secrets.token_hex(4)}"
        root = self._session.path / FILES
        target = root / entry_id / source.name
        os.makedirs(target.parent, exist_ok=True)
        with source.open("rb") as reader:
            size, digest = _copy(reader, target)
        entry = {
            "id": entry_id,
            "filename": source.name,
            "path": folder,
            "sizeBytes": size,
            "checksum": f"sha256:{digest}",
            "createdAt": iso_timestamp(time.time_ns()),
            "description": info.get("description"),
            "tags": info.get("tags", []),
            "metadata": info.get("metadata"),
        }
        with locked_folder(root) as fd:
            replace_file(root / f"{entry_id}.json", orjson.dumps(entry, None, orjson.OPT_INDENT_2), fd)
        return entry

    def list(self, path: str | None = None) -> list[dict[str, Any]]:
        """The entries of the files uploaded, oldest first; with `path`, those in that virtual
        folder or below it."""
        return list_files(self._session.path, path)

    def download(self, id_or_name: str, dest: str | os.PathLike[str] | None = None) -> Path:
        """Copy a file out of the session (by id, by filename, or by "/path/filename": the
        newest such) to `dest` (a file, or a folder to put it in; default: the working
        directory), checking its SHA-256; returns where it went."""
        return download(self._session.path, id_or_name, dest)


def list_files(session: Path, path: str | None = None) -> list[dict[str, Any]]:
    """The file entries of the session folder `session` (see `Files.list`)."""
    under = None if path is None else _virtual(path)
    entries = []
    try:
        names = sorted(os.listdir(session / FILES))
    except FileNotFoundError:
        names = []
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            entry = orjson.loads((session / FILES / name).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue  # not one of ours, or unreadable: the others are still listed
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            continue
        if under is None or _inside(str(entry.get("path", "/")), under):
            entries.append(entry)
    entries.sort(key=lambda e: (str(e.get("createdAt", "")), e["id"]))
    return entries


def download(session: Path, id_or_name: str, dest: str | os.PathLike[str] | None = None) -> Path:
    if not isinstance(id_or_name, str) or not id_or_name:
        msg = f"name a file by its id, its filename or /path/filename; got {id_or_name!r}"
        raise TypeError(msg) if not isinstance(id_or_name, str) else ValueError(msg)
    entries = list_files(session)
    found = [e for e in entries if e["id"] == id_or_name] or [
        e
        for e in entries
        if id_or_name in (e.get("filename"), _joined(str(e.get("path", "/")), str(e.get("filename"))))
    ]
    if not found:
        known = (
            ", ".join(repr(_joined(str(e.get("path")), str(e.get("filename")))) for e in entries) or "none"
        )
        msg = f"{session} has no file {id_or_name!r} (files: {known})"
        raise FileNotFoundError(msg)
    entry = found[-1]
    stored = session / FILES / entry["id"] / str(entry["filename"])
    target = Path(os.getcwd() if dest is None else dest)
    if target.is_dir():
        target = target / str(entry["filename"])
    if not target.parent.is_dir():
        msg = f"cannot download to {target}: its folder {target.parent} does not exist"
        raise FileNotFoundError(msg)
    with stored.open("rb") as reader:
        _copy(reader, target, expected=str(entry.get("checksum", "")))
    return target


def _copy(reader: IO[bytes], target: Path, expected: str | None = None) -> tuple[int, str]:
    """Stream `reader` into `target` (a temporary file, fsync, rename); (size, sha256 hex).
    With `expected`, a copy whose checksum differs is removed and OSError raised."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    sha = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "wb") as writer:
            while block := reader.read(_BLOCK):
                sha.update(block)
                writer.write(block)
                size += len(block)
            writer.flush()
            os.fsync(writer.fileno())
        if expected is not None and expected != f"sha256:{sha.hexdigest()}":
            msg = f"the stored copy of {target.name} does not match its checksum {expected}: not downloaded"
            raise OSError(msg)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass  # a folder that cannot be opened for fsync (some filesystems): the file is whole anyway
    return size, sha.hexdigest()


def _source(local_file: object) -> Path:
    if not isinstance(local_file, (str, os.PathLike)):
        msg = f"local_file must be a str or os.PathLike naming a file, got {type(local_file).__name__}"
        raise TypeError(msg)
    source = Path(os.fspath(local_file))
    if not source.exists():
        msg = f"cannot upload {source}: no such file"
        raise FileNotFoundError(msg)
    if source.is_dir():
        msg = f"cannot upload {source}: it is a folder; upload its files one by one, or an archive of it"
        raise IsADirectoryError(msg)
    if not source.is_file():
        msg = f"cannot upload {source}: it is not a regular file"
        raise ValueError(msg)
    return source


def _virtual(path: object) -> str:
    """A virtual folder: "/" or "/a/b", each part a plain folder name."""
    if not isinstance(path, str):
        msg = f"path must be a str such as '/models', got {type(path).__name__}"
        raise TypeError(msg)
    parts = path.strip("/").split("/") if path.strip("/") else []
    if not path.startswith("/") or any(p in ("", ".", "..") or "\0" in p or "\\" in p for p in parts):
        msg = (
            "path must be a folder such as '/' or '/models/best', without '.', '..', "
            f"backslash or NUL; got {path!r}"
        )
        raise ValueError(msg)
    return "/" + "/".join(parts)


def _inside(path: str, under: str) -> bool:
    return under == "/" or path == under or path.startswith(under + "/")


def _joined(path: str, filename: str) -> str:
    return f"{path.rstrip('/')}/{filename}"
