"""Run identity: `session.json`, what a session is and each time it was opened.

One JSON object, replaced whole under the folder's lock (as `parameters.json`):
`name`, `workspace`, `createdAt`, and `attempts`, one per `open()`: its id, start and
end, status, host, pid, user, argv, working directory, Python, git commit and dirty
flag (when run inside a git repository) and rank/world size (when set).

Statuses: `running` until the attempt ends; `completed`; `failed` (with `error`, the
exception's type) when the `with` block raised, or the interpreter exited on an uncaught
exception; `interrupted` on Ctrl-C or SIGTERM. A process that died without closing
leaves `running` with no end: readers call it `crashed?` (see `shown_status`).

Only the process that opened an attempt ends it: a forked child's exit leaves its
parent's attempt alone. Nothing here may fail a run: an unreadable or unwritable
`session.json` is said once on stderr and the session logs on.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from ._encode import iso_timestamp
from ._files import locked_folder, replace_file
from ._remote import host_name, rank_info

SESSION_FILE = "session.json"
STATUSES = ("running", "completed", "failed", "interrupted")
STALE_AFTER = 600.0  # seconds without a change to its files before a `running` attempt is `crashed?`
GIT_TIMEOUT = 0.5  # seconds `git status` may take to say whether the tree is dirty


def load(folder: Path) -> dict[str, Any] | None:
    """The session folder's `session.json`, None when it has none or it is not an object."""
    try:
        found = orjson.loads((folder / SESSION_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return found if isinstance(found, dict) else None


def attempts(folder: Path) -> list[dict[str, Any]]:
    """The attempts of the session folder, oldest first (none without a readable session.json)."""
    found = (load(folder) or {}).get("attempts")
    return [a for a in found if isinstance(a, dict)] if isinstance(found, list) else []


class Attempt:
    """This process's open() of one session: begun in session.json, ended once."""

    def __init__(self, folder: Path, name: str, workspace: str) -> None:
        self.folder, self.name, self.workspace = folder, name, workspace
        self.id = secrets.token_hex(8)
        self.pid = os.getpid()
        self.ended = False

    def begin(self, refuse_existing: bool) -> None:
        """Add this attempt as `running`. With `refuse_existing`, FileExistsError when the
        folder already holds a run (checked under the lock: two such opens, one wins)."""
        record = {"id": self.id, "startedAt": _now(), "endedAt": None, "status": "running", **_context()}
        try:
            with locked_folder(self.folder) as fd:
                if refuse_existing and _holds_a_run(self.folder):
                    msg = (
                        f"session folder {self.folder} already holds a run, and resume='never' was "
                        "given: choose another name, remove the folder, or leave resume out to append"
                    )
                    raise _Refused(msg)
                self._add(record, fd)
        except _Refused as exc:
            raise FileExistsError(str(exc)) from None
        except OSError as exc:  # the log file's own open() says what is wrong with the folder
            _say(f"could not record the run in {self.folder / SESSION_FILE}: {exc}")

    def _add(self, record: dict[str, Any], fd: int) -> None:
        stored = load(self.folder) or {}
        stored.setdefault("name", self.name)
        stored.setdefault("workspace", self.workspace)
        stored.setdefault("createdAt", record["startedAt"])
        found = stored.get("attempts")
        stored["attempts"] = [*(found if isinstance(found, list) else []), record]
        _write(self.folder, stored, fd)

    def end(self, status: str, error: str | None = None) -> None:
        """Say how this attempt ended; once, and only in the process that began it."""
        if self.ended or os.getpid() != self.pid:
            return
        self.ended = True
        try:
            with locked_folder(self.folder) as fd:
                stored = load(self.folder) or {"name": self.name, "workspace": self.workspace}
                found = stored.get("attempts")
                listed = found if isinstance(found, list) else []
                mine = next((a for a in listed if isinstance(a, dict) and a.get("id") == self.id), None)
                if mine is None:  # removed or rewritten meanwhile: this attempt is said again
                    mine = {"id": self.id}
                    listed.append(mine)
                mine.update(endedAt=_now(), status=status)
                if error is not None:
                    mine["error"] = error
                stored["attempts"] = listed
                _write(self.folder, stored, fd)
        except OSError as exc:
            _say(f"could not record the end of the run in {self.folder / SESSION_FILE}: {exc}")


class _Refused(Exception):
    """resume='never' and the folder holds a run (an OSError would be taken for a disk's)."""


def outcome(exc_type: type[BaseException] | None) -> tuple[str, str | None]:
    """The status (and error) of an attempt that ends with `exc_type` raised (None: none)."""
    if exc_type is None or issubclass(exc_type, (GeneratorExit,)):
        return "completed", None
    if issubclass(exc_type, KeyboardInterrupt):
        return "interrupted", None
    if issubclass(exc_type, SystemExit):
        return "completed", None
    return "failed", exc_type.__name__


def at_exit_outcome(terminated: bool) -> tuple[str, str | None]:
    """How an attempt still open at interpreter exit ended: SIGTERM, an uncaught exception
    (the interpreter keeps it in sys.last_type), or a plain exit."""
    if terminated:
        return "interrupted", None
    return outcome(getattr(sys, "last_type", None))


def shown_status(attempt: dict[str, Any], folder: Path, now: float | None = None) -> str:
    """An attempt's status as `ls` and `runs` show it: `running` becomes `crashed?` when its
    process is gone (same host) or its files have not changed for STALE_AFTER seconds."""
    status = str(attempt.get("status", "?"))
    if status != "running":
        return status
    if attempt.get("host") == host_name() and isinstance(attempt.get("pid"), int):
        try:
            os.kill(attempt["pid"], 0)
        except ProcessLookupError:
            return "crashed?"
        except OSError:  # another user's process: alive
            pass
    now = time.time() if now is None else now
    return "crashed?" if now - last_change(folder) > STALE_AFTER else "running"


def last_change(folder: Path) -> float:
    """The newest mtime of the session's files (records, points, parameters)."""
    newest = 0.0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
            except OSError:
                pass
    return newest


def _holds_a_run(folder: Path) -> bool:
    from ._read._records import LOG_FILE
    from ._read._tracks import TRACKS

    if (folder / SESSION_FILE).exists() or (folder / "parameters.json").exists():
        return True
    try:
        if os.stat(folder / LOG_FILE).st_size > 0:
            return True
    except OSError:
        pass
    try:
        with os.scandir(folder / TRACKS) as entries:
            return any(entries)
    except OSError:
        return False


def _write(folder: Path, stored: dict[str, Any], fd: int) -> None:
    """Replaced whole, without fsync: a crashed process leaves it whole, and a hung disk must
    not hold open() or close() (the records' fsync is what makes a run durable)."""
    data = orjson.dumps(stored, None, orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    replace_file(folder / SESSION_FILE, data, fd, durable=False)


def _now() -> str:
    return iso_timestamp(time.time_ns())


_context_cache: dict[str, Any] = {}


def _context() -> dict[str, Any]:
    """Where and how this process runs; the git part is looked up once per process."""
    pid = os.getpid()
    if _context_cache.get("pid") != pid:  # a forked child is another process
        _context_cache.clear()
        _context_cache.update(
            host=host_name(),
            pid=pid,
            user=_user(),
            argv=list(sys.argv),
            cwd=_cwd(),
            python=sys.version.split()[0],
            **_git(),
            **rank_info(),
        )
    return dict(_context_cache)


def _user() -> str | None:
    try:
        import getpass

        return getpass.getuser()
    except (ImportError, KeyError, OSError):
        return None


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # deleted under us
        return None


def _git() -> dict[str, Any]:
    """{"git": {"commit", "dirty"}} of the repository the script (else the working
    directory) is in; {} outside one. Read from the files; `git status` only for dirty, and
    only GIT_TIMEOUT seconds of it (dirty None when it cannot tell)."""
    start = Path(sys.argv[0]).resolve().parent if sys.argv and os.path.isfile(sys.argv[0]) else _cwd()
    if start is None:
        return {}
    top = next((p for p in (Path(start), *Path(start).parents) if (p / ".git").exists()), None)
    if top is None:
        return {}
    commit = _head_commit(top / ".git")
    if commit is None:
        return {}
    try:
        done = subprocess.run(
            ["git", "-C", str(top), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        dirty: bool | None = bool(done.stdout.strip()) if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        dirty = None
    return {"git": {"commit": commit, "dirty": dirty}}


def _head_commit(git: Path) -> str | None:
    """The commit HEAD names, from the repository's files (a worktree's `.git` file followed)."""
    try:
        if git.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = git.read_text().strip()
            if not text.startswith("gitdir:"):
                return None
            git = (git.parent / text[len("gitdir:") :].strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head[len("ref:") :].strip()
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        for base in (git, common):
            if (base / ref).is_file():
                return (base / ref).read_text().strip() or None
        for line in (common / "packed-refs").read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == ref:
                return parts[0]
    except OSError:
        return None
    return None  # a new repository: no commit yet


_said: set[str] = set()


def _say(text: str) -> None:
    if text not in _said:
        _said.add(text)
        try:
            print(f"dreamlake: {text}", file=sys.stderr)
        except Exception:  # noqa: BLE001 - stderr may be closed
            pass
