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

import math
import os
import secrets
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from ._encode import iso_timestamp
from ._files import held_here, locked_folder, replace_file
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
    """This process's open() of one session: begun in session.json, ended once (by close(),
    or at exit for one still live then: see `end_live_at_exit`)."""

    def __init__(self, folder: Path, name: str, workspace: str) -> None:
        self.folder, self.name, self.workspace = folder, name, workspace
        self.id = secrets.token_hex(8)
        self.pid = os.getpid()
        self.ended = False
        self.failure: str | None = None  # the error of a close() that raised: the exit says failed

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
                stored = self._stored()
                stored.setdefault("createdAt", record["startedAt"])
                stored["attempts"].append(record)
                _write(self.folder, stored, fd)
        except _Refused as exc:
            raise FileExistsError(str(exc)) from None
        except OSError as exc:  # the log file's own open() says what is wrong with the folder
            _cannot_write(self.folder, exc)
        _live.append(self)

    def end(self, status: str, error: str | None = None, at_exit: bool = False) -> None:
        """Say how this attempt ended; once, and only in the process that began it. `at_exit`:
        from an exit or SIGTERM hook, which must not wait long, nor for the thread it
        interrupted (which may hold the folder's lock: then it writes without it)."""
        if self.ended or os.getpid() != self.pid:
            return
        self.ended = True
        if self in _live:
            _live.remove(self)
        try:
            if at_exit and held_here(self.folder):
                self._end(status, error, -1)
                return
            with locked_folder(self.folder, timeout=EXIT_LOCK_TIMEOUT if at_exit else None) as fd:
                self._end(status, error, fd)
        except (OSError, TimeoutError) as exc:
            _cannot_write(self.folder, exc)

    def _end(self, status: str, error: str | None, fd: int) -> None:
        stored = self._stored()
        mine = next((a for a in stored["attempts"] if a.get("id") == self.id), None)
        if mine is None:  # removed or rewritten meanwhile: this attempt is said again
            mine = {"id": self.id}
            stored["attempts"].append(mine)
        mine.update(endedAt=_now(), status=status)
        if error is not None:
            mine["error"] = error
        _write(self.folder, stored, fd)

    def _stored(self) -> dict[str, Any]:
        """What session.json holds, its attempts a list of objects. One that is not such a
        file is set aside as `session.json.unreadable` (said once), never lost."""
        file = self.folder / SESSION_FILE
        try:
            data: bytes | None = file.read_bytes()
        except FileNotFoundError:
            data = None
        stored: Any = None
        if data is not None:
            try:
                stored = orjson.loads(data)
            except orjson.JSONDecodeError:
                stored = None
            if not isinstance(stored, dict) or not isinstance(stored.get("attempts", []), list):
                aside = file.with_name(SESSION_FILE + ".unreadable")
                os.replace(file, aside)
                _say(f"{file} was not a session.json dreamlake can read; it is kept as {aside}")
                stored = None
        if stored is None:
            stored = {"name": self.name, "workspace": self.workspace}
        stored["attempts"] = [a for a in stored.get("attempts", []) if isinstance(a, dict)]
        return stored  # type: ignore[no-any-return]


EXIT_LOCK_TIMEOUT = 2.0  # seconds an exit or SIGTERM hook waits for another process's lock

_live: list[Attempt] = []
"""Attempts begun and not ended: those of this process (pid) end at its exit."""


def end_live_at_exit(terminated: bool) -> None:
    """The exit (or SIGTERM) hook: each attempt still live ends as the process does."""
    status = at_exit_outcome(terminated)
    for attempt in list(_live):
        failed = attempt.failure is not None and status[0] == "completed"
        attempt.end(*(("failed", attempt.failure) if failed else status), at_exit=True)


class _Refused(Exception):
    """resume='never' and the folder holds a run (an OSError would be taken for a disk's)."""


def outcome(exc_type: type[BaseException] | None, terminated: bool = False) -> tuple[str, str | None]:
    """The status (and error) of an attempt that ends with `exc_type` raised (None: none);
    `terminated`: while SIGTERM ends the process (a handler's sys.exit() included)."""
    if terminated or (exc_type is not None and issubclass(exc_type, KeyboardInterrupt)):
        return "interrupted", None
    if exc_type is None or issubclass(exc_type, (SystemExit, GeneratorExit)):
        return "completed", None
    return "failed", exc_type.__name__


def at_exit_outcome(terminated: bool) -> tuple[str, str | None]:
    """How an attempt still open at interpreter exit ended: SIGTERM, an uncaught exception
    (the interpreter keeps it in sys.last_type; not in an interactive session, where it is
    the last error shown at the prompt), or a plain exit."""
    interactive = hasattr(sys, "ps1") or bool(sys.flags.interactive) or "IPython" in sys.modules
    return outcome(None if interactive else getattr(sys, "last_type", None), terminated)


def shown_status(
    attempt: dict[str, Any], folder: Path | None, now: float | None = None, changed: float | None = None
) -> str:
    """An attempt's status as `ls` and `runs` show it: `running` becomes `crashed?` when its
    process is gone (same host: a live process that started before the attempt is it, however
    quiet), or, elsewhere, when the session's files (`folder`, or `changed`, a time) have not
    changed for STALE_AFTER seconds."""
    status = str(attempt.get("status", "?"))
    if status != "running":
        return status
    pid = attempt.get("pid")
    if attempt.get("host") == host_name() and type(pid) is int and pid > 0:
        alive = _alive_since(pid)
        if alive is not None:
            started = epoch(attempt.get("startedAt"))
            if alive is math.inf or started is None or alive <= started + 1:
                return "running"
        return "crashed?"  # gone, or its pid taken by a later process
    now = time.time() if now is None else now
    if changed is None:
        changed = last_change(folder) if folder is not None else now
    return "crashed?" if now - changed > STALE_AFTER else "running"


def _alive_since(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch; inf where that cannot be read);
    None when there is no such process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:  # another user's: alive
        pass
    try:  # Linux: the 22nd field of /proc/PID/stat, in clock ticks after boot
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return int(line.split()[1]) + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    return math.inf


def epoch(text: Any) -> float | None:
    """Seconds since the epoch of an ISO 8601 time as the records hold it; None if it is none."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


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


def _cannot_write(folder: Path, exc: BaseException) -> None:
    _say(f"cannot write {folder / SESSION_FILE} ({exc}); the run goes on without it", once=str(folder))


def _write(folder: Path, stored: dict[str, Any], fd: int) -> None:
    """Replaced whole, without fsync: a crashed process leaves it whole, and a hung disk must
    not hold open() or close() (the records' fsync is what makes a run durable)."""
    options = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
    try:
        data = orjson.dumps(stored, None, options)
    except TypeError:  # a str that is not UTF-8: escaped, then written
        data = orjson.dumps(_utf8(stored), None, options)
    replace_file(folder / SESSION_FILE, data, fd, durable=False)


def _utf8(value: Any) -> Any:
    """`value` with every str as UTF-8 can hold it: a folder name or argument that is not UTF-8
    keeps its bytes as \\x escapes, a lone surrogate as \\u."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            try:
                return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            except UnicodeEncodeError:
                return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, list):
        return [_utf8(v) for v in value]
    if isinstance(value, dict):
        return {_utf8(k): _utf8(v) for k, v in value.items()}
    return value


def _now() -> str:
    return iso_timestamp(time.time_ns())


_context_cache: dict[str, Any] = {}


def _context() -> dict[str, Any]:
    """Where and how this process runs; the git part is looked up once per process."""
    if not _context_cache:
        _context_cache.update(user=_user(), python=sys.version.split()[0], **_git())
    return {  # what a forked child may change; the tree it runs from it shares
        "host": host_name(),
        "pid": os.getpid(),
        **_context_cache,
        "argv": list(sys.argv),
        "cwd": _cwd(),
        **rank_info(),
    }


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
    places = [Path(sys.argv[0]).resolve().parent] if sys.argv and os.path.isfile(sys.argv[0]) else []
    here = _cwd()
    if here is not None:  # a console script in a venv's bin/: its working directory's repository
        places.append(Path(here))
    top = next((p for place in places for p in (place, *place.parents) if (p / ".git").exists()), None)
    if top is None:
        return {}
    commit = _head_commit(top / ".git")
    if commit is None:
        return {}
    try:
        done = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(top), "status", "--porcelain", "--untracked-files=no"],
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


def _say(text: str, once: str | None = None) -> None:
    """`text` on stderr, once for each `once` (by default, the text itself)."""
    key = text if once is None else once
    if key not in _said:
        _said.add(key)
        try:
            print(f"dreamlake: {text}", file=sys.stderr)
        except Exception:  # noqa: BLE001 - stderr may be closed
            pass
