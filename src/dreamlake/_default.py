"""`dreamlake.log`: log with no setup, the way one would print()."""

import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._session import Session, open_sessions

_default: Session | None = None
_lock = threading.Lock()


def log(message: object, level: str = "info", metadata: Mapping[Any, Any] | None = None) -> None:
    """Log to the most recently opened session that is still open.

    With none open, the first call opens a default session under $DREAMLAKE_LOCAL_PATH
    (else `.dreamlake/`), workspace `default`, named after the script and the time,
    that echoes every record to stderr:
    `from dreamlake import log` then `log("x", metadata={"x": x})` replaces a print.
    """
    session = open_sessions[-1] if open_sessions else _default_session()
    session.log(message, level, metadata)


def _default_session() -> Session:
    global _default
    with _lock:
        if _default is None or not any(session is _default for session in open_sessions):
            name = f"{_script()}-{time.strftime('%Y%m%d-%H%M%S')}"
            _default = Session(name=name, workspace="default", echo=True).open()
            where = os.path.relpath(_default.log_file)  # as the user would type it
            print(f"dreamlake: logging to {where}", file=sys.stderr)
        return _default


def _script() -> str:
    """The start of the default session's name: the script's name, or how Python was started. Never
    starts with `-`, so that the name is not taken for an option on a command line."""
    stem = Path(sys.argv[0]).stem if sys.argv else ""
    stem = {"": "python", "-": "stdin", "-c": "python-c"}.get(stem, stem)
    return f"python{stem}" if stem.startswith("-") else stem
