"""The loggers the report compares, each set up to write the same records to a file.

Every contender logs message "Batch" at level debug with a small dict of floats
`md`, through its own idiomatic call (`CALL`), and `finish()` makes everything
written so far durable (flush, then fsync), so end-to-end figures compare like
with like.
"""

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

import dreamlake


@dataclass
class Contender:
    name: str
    call: str  # source of one logging call; `log` is what setup returned, `md` the metadata
    setup: Callable[[Path], tuple[Any, Callable[[], None]]]  # folder -> (log, finish)
    writes: bool = True  # False for the no-op floor
    peer: bool = True  # peers run --peer-calls calls, fewer than ours: they are 30-500x slower


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
    session = dreamlake.Session(name="bench", workspace="bench", local_path=folder).open()
    return session.log, session.close


class SyncOrjsonWriter:
    """The synchronous floor: build the same record, orjson.dumps, buffered write, fsync at the end."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "ab")
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
        self.file.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_UTC_Z))

    def finish(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


def setup_sync_orjson(folder: Path) -> tuple[Any, Callable[[], None]]:
    writer = SyncOrjsonWriter(folder / "sync.jsonl")
    return writer.log, writer.finish


class JsonFormatter(logging.Formatter):
    """What a stdlib user writes: the same five fields, serialized with json."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "timestamp": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
                "level": record.levelname.lower(),
                "message": record.getMessage(),
                "metadata": getattr(record, "metadata", None),
            }
        )


_loggers = 0


def _fresh_logger() -> logging.Logger:
    global _loggers
    _loggers += 1
    logger = logging.getLogger(f"bench.{_loggers}")
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
    q: queue.SimpleQueue[Any] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(q, handler)
    listener.start()
    logger = _fresh_logger()
    logger.addHandler(logging.handlers.QueueHandler(q))

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
    file = open(path, "wb")
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


CONTENDERS = [
    Contender("no-op call", 'log("Batch", "debug", md)', setup_noop, writes=False, peer=False),
    Contender("dreamlake", 'log("Batch", "debug", md)', setup_dreamlake, peer=False),
    Contender("sync orjson writer", 'log("Batch", "debug", md)', setup_sync_orjson, peer=False),
    Contender("stdlib FileHandler+JSON", 'log.debug("Batch", extra={"metadata": md})', setup_stdlib),
    Contender("stdlib QueueHandler", 'log.debug("Batch", extra={"metadata": md})', setup_stdlib_queue),
    Contender("loguru serialize", 'log.debug("Batch", **md)', setup_loguru),
    Contender("loguru serialize+enqueue", 'log.debug("Batch", **md)', setup_loguru_enqueue),
    Contender("structlog orjson", 'log.debug("Batch", **md)', setup_structlog),
]


def available() -> list[Contender]:
    """The contenders whose libraries are installed (`pip install -e .[bench]` for all)."""
    out = []
    for contender in CONTENDERS:
        try:
            if "loguru" in contender.name:
                import loguru  # noqa: F401
            if "structlog" in contender.name:
                import structlog  # noqa: F401
        except ImportError:
            continue
        out.append(contender)
    return out


def count_lines(folder: Path) -> int:
    """Whole lines written under `folder`, every one parsed: output must be correct, not just fast."""
    total = 0
    for path in folder.rglob("*.jsonl"):
        data = path.read_bytes()
        assert not data or data.endswith(b"\n"), f"{path}: torn last line"
        for line in data.splitlines():
            orjson.loads(line)
            total += 1
    return total
