"""The loggers `dreamlake bench` compares: dreamlake, its floors, and the peers installed here.

Each contender's `setup(folder)` returns `(log, finish)`: `finish()` makes everything
written so far durable (flush, then fsync), so end-to-end figures compare like with
like. `call` is the source of one logging call in the contender's own idiom, with
`log` the object setup returned, `msg` the message and `md` the metadata.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import logging.handlers
import os
import queue
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from .._session import Session

Setup = Callable[[Path], tuple[Any, Callable[[], None]]]


@dataclass(frozen=True)
class Contender:
    name: str
    call: str
    setup: Setup
    writes: bool = True  # False for the no-op floor
    peer: bool = True  # peers run fewer calls than ours: they are 10-1000x slower
    needs: str = ""  # the module that must be importable


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def noop(message: object, level: str = "info", metadata: Any = None) -> None:
    """Same signature as Session.log; does nothing."""


def setup_noop(folder: Path) -> tuple[Any, Callable[[], None]]:
    return noop, lambda: None


def setup_dreamlake(folder: Path) -> tuple[Any, Callable[[], None]]:
    session = Session(name="bench", workspace="bench", local_path=folder).open()
    return session.log, session.close


class SyncOrjsonWriter:
    """The synchronous floor: the same record, orjson.dumps, a buffered write, fsync at the end."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "ab")  # closed by finish()
        self.sequence = 0

    def log(self, message: str, level: str = "info", metadata: Any = None) -> None:
        record = {
            "timestamp": datetime.now(timezone.utc),
            "level": level,
            "message": message,
            "metadata": metadata,
            "sequenceNumber": self.sequence,
        }
        self.sequence += 1
        self.file.write(orjson.dumps(record, None, _SYNC_OPTIONS))

    def finish(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


_SYNC_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_UTC_Z | orjson.OPT_SERIALIZE_NUMPY


def setup_sync_orjson(folder: Path) -> tuple[Any, Callable[[], None]]:
    writer = SyncOrjsonWriter(folder / "sync.jsonl")
    return writer.log, writer.finish


class JsonFormatter(logging.Formatter):
    """What a stdlib user writes: the same fields, serialized with json."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "timestamp": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
                "level": record.levelname.lower(),
                "message": record.getMessage(),
                "metadata": getattr(record, "metadata", None),
            }
        )


_loggers = [0]


def _fresh_logger() -> logging.Logger:
    _loggers[0] += 1
    logger = logging.getLogger(f"dreamlake.bench.{_loggers[0]}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def setup_stdlib(folder: Path) -> tuple[Any, Callable[[], None]]:
    path = folder / "stdlib.jsonl"
    handler = logging.FileHandler(path)
    handler.setFormatter(JsonFormatter())
    logger = _fresh_logger()
    logger.addHandler(handler)

    def finish() -> None:
        handler.flush()
        fsync_path(path)
        logger.removeHandler(handler)
        handler.close()

    return logger, finish


def setup_stdlib_queue(folder: Path) -> tuple[Any, Callable[[], None]]:
    path = folder / "stdlib-queue.jsonl"
    handler = logging.FileHandler(path)
    handler.setFormatter(JsonFormatter())
    records: queue.SimpleQueue[Any] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(records, handler)
    listener.start()
    logger = _fresh_logger()
    logger.addHandler(logging.handlers.QueueHandler(records))

    def finish() -> None:
        listener.stop()  # drains the queue
        handler.flush()
        fsync_path(path)
        handler.close()

    return logger, finish


def _setup_loguru(folder: Path, enqueue: bool) -> tuple[Any, Callable[[], None]]:
    from loguru import logger

    path = folder / f"loguru-{enqueue}.jsonl"
    logger.remove()
    handler_id = logger.add(path, serialize=True, level="DEBUG", enqueue=enqueue)

    def finish() -> None:
        logger.complete()
        logger.remove(handler_id)  # flushes and closes the file
        fsync_path(path)

    return logger, finish


def setup_loguru(folder: Path) -> tuple[Any, Callable[[], None]]:
    return _setup_loguru(folder, enqueue=False)


def setup_loguru_enqueue(folder: Path) -> tuple[Any, Callable[[], None]]:
    return _setup_loguru(folder, enqueue=True)


def setup_structlog(folder: Path) -> tuple[Any, Callable[[], None]]:
    import structlog

    path = folder / "structlog.jsonl"
    file = open(path, "wb")  # closed by finish()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        logger_factory=structlog.BytesLoggerFactory(file=file),
        cache_logger_on_first_use=False,
    )
    logger = structlog.get_logger()

    def finish() -> None:
        file.flush()
        os.fsync(file.fileno())
        file.close()
        structlog.reset_defaults()

    return logger, finish


NOOP = "no-op call"
DREAMLAKE = "dreamlake"
SYNC = "sync orjson writer"
CONTENDERS = (
    Contender(NOOP, "log(msg, 'debug', md)", setup_noop, writes=False, peer=False),
    Contender(DREAMLAKE, "log(msg, 'debug', md)", setup_dreamlake, peer=False),
    Contender(SYNC, "log(msg, 'debug', md)", setup_sync_orjson, peer=False),
    Contender("stdlib FileHandler+JSON", "log.debug(msg, extra={'metadata': md})", setup_stdlib),
    Contender("stdlib QueueHandler", "log.debug(msg, extra={'metadata': md})", setup_stdlib_queue),
    Contender("loguru serialize", "log.debug(msg, **md)", setup_loguru, needs="loguru"),
    Contender("loguru serialize+enqueue", "log.debug(msg, **md)", setup_loguru_enqueue, needs="loguru"),
    Contender("structlog orjson", "log.debug(msg, **md)", setup_structlog, needs="structlog"),
)


def available(names: list[str] | None = None) -> list[Contender]:
    """The contenders whose libraries are installed (`pip install 'dreamlake[bench]'` for all)."""
    return [
        c
        for c in CONTENDERS
        if (names is None or c.name in names) and (not c.needs or importlib.util.find_spec(c.needs))
    ]
