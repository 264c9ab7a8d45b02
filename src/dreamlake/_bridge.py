"""stdlib `logging` into a session: the records of the libraries a run uses."""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._session import Session

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def level_name(levelno: int) -> str:
    """Map a logging level number to ours: WARNING -> warn, CRITICAL -> fatal, between -> below."""
    if levelno >= logging.CRITICAL:
        return "fatal"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warn"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


class LoggingHandler(logging.Handler):
    """A `logging.Handler` that logs each record into a dreamlake session.

    The message is `record.getMessage()`; metadata holds the logger name, the
    source location, the `extra` fields and, when there is one, the formatted
    traceback. A record emitted while this handler is already emitting in the
    same thread (a library logging from inside our own call) is dropped rather
    than recursed into. Once the session is closed, records are dropped and
    one line on stderr says so, rather than a traceback for every record.
    """

    def __init__(self, session: Session, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.session = session
        self._busy = threading.local()
        self._said_closed = False

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._busy, "active", False):
            return
        self._busy.active = True
        try:
            metadata: dict[str, Any] = {
                key: value
                for key, value in vars(record).items()
                if key not in _STANDARD and not key.startswith("_")
            }
            metadata.update(
                logger=record.name, source=f"{record.pathname}:{record.lineno}", function=record.funcName
            )
            if record.exc_info:
                metadata["traceback"] = record.exc_text or logging.Formatter().formatException(
                    record.exc_info
                )
            if record.stack_info:
                metadata["stack"] = record.stack_info
            self.session.log(record.getMessage(), level=level_name(record.levelno), metadata=metadata)
        except RuntimeError:
            if self.session.is_open:  # not the "session is not open" error
                self.handleError(record)
            elif not self._said_closed:
                self._said_closed = True
                self._say_closed()
        except Exception:  # noqa: BLE001 - logging's own convention: report, never raise
            self.handleError(record)
        finally:
            self._busy.active = False

    def _say_closed(self) -> None:
        """One line on stderr: this handler's records go nowhere until the session is open again."""
        state = "closed" if self.session.was_opened else "not open"
        msg = (
            f"dreamlake: logging handler: {self.session!r} is {state}; records are dropped "
            "(open() the session again, or remove the handler)"
        )
        stream = sys.stderr
        if stream is not None:  # None under pythonw
            try:
                stream.write(msg + "\n")
            except (OSError, ValueError):  # stderr closed: nowhere left to say it
                pass
