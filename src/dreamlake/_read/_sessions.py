"""Which session folders a path names, the same for `dreamlake ls` and `dreamlake plot`.

A path is a session (a folder with a `logs.jsonl` or a `tracks/` folder), a workspace
(sessions directly inside), or a `local_path` (workspaces of sessions inside). A folder that
cannot be looked into is kept as a session, for the reader to name what it cannot read, so
one such folder never hides the others.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ._records import LOG_FILE
from ._tracks import TRACKS

RESERVED = frozenset({LOG_FILE, TRACKS, "parameters.json", "session.json", "files"})
"""Names a session folder uses for its own files: no workspace or session may take them."""


def is_session(path: Path) -> bool:
    """Whether `path` is a session folder; OSError when that cannot be told (no permission)."""
    try:
        os.lstat(path / LOG_FILE)  # of any kind: one that is not a file is a broken session, said by readers
        return True
    except (FileNotFoundError, NotADirectoryError):
        pass
    try:
        return stat.S_ISDIR(os.stat(path / TRACKS).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def sessions_in(path: Path) -> list[Path]:
    """The session folders `path` names, sorted; FileNotFoundError when there are none, and
    OSError when `path` itself cannot be read."""
    if is_session(path):
        return [path]
    if not path.exists():
        msg = f"no session folder at {path}: it does not exist"
        raise FileNotFoundError(msg)
    if not path.is_dir():
        msg = f"no session folder at {path}: it is not a folder"
        raise FileNotFoundError(msg)
    children = _folders(path)
    sessions, unknown = _split(children)
    if not sessions:  # a local_path: each child a workspace; one that cannot be listed is kept
        for workspace in children:
            try:
                inside, cannot = _split(_folders(workspace))
            except OSError:
                sessions.append(workspace)
                continue
            sessions += inside + cannot
    else:
        sessions += unknown
    if not sessions:
        msg = f"{path} holds no dreamlake session (a folder with {LOG_FILE} or {TRACKS}/)"
        raise FileNotFoundError(msg)
    return sorted(sessions)


def _folders(path: Path) -> list[Path]:
    return sorted(entry for entry in path.iterdir() if entry.is_dir() and entry.name not in RESERVED)


def _split(folders: list[Path]) -> tuple[list[Path], list[Path]]:
    """The sessions among `folders`, and those that could not be looked into."""
    sessions, unknown = [], []
    for folder in folders:
        try:
            if is_session(folder):
                sessions.append(folder)
        except OSError:
            unknown.append(folder)
    return sessions, unknown
