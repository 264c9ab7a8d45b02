"""Which session folders a path names, the same for `dreamlake ls` and `dreamlake plot`.

A path is a session (a folder with `logs.jsonl` or `tracks/`), a workspace (sessions
directly inside), or a `local_path` (workspaces of sessions inside).
"""

from __future__ import annotations

from pathlib import Path

from ._records import LOG_FILE
from ._tracks import TRACKS


def is_session(path: Path) -> bool:
    """Whether `path` is a session folder (its log file may be broken: readers say so)."""
    return (path / LOG_FILE).exists() or (path / TRACKS).is_dir()


def sessions_in(path: Path) -> list[Path]:
    """The session folders `path` names, sorted; FileNotFoundError when there are none."""
    if is_session(path):
        return [path]
    if not path.exists():
        msg = f"no session folder at {path}: it does not exist"
        raise FileNotFoundError(msg)
    if not path.is_dir():
        msg = f"no session folder at {path}: it is not a folder"
        raise FileNotFoundError(msg)
    children = sorted(p for p in path.iterdir() if p.is_dir())
    found = [p for p in children if is_session(p)]
    if not found:  # a local_path: workspaces of sessions
        found = [s for child in children for s in sorted(child.iterdir()) if s.is_dir() and is_session(s)]
    if not found:
        msg = f"{path} holds no dreamlake session (a folder with {LOG_FILE} or {TRACKS}/)"
        raise FileNotFoundError(msg)
    return found
