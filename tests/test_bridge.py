"""The stdlib logging bridge: levels mapped, metadata kept, no recursion or deadlock."""

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dreamlake import Session, _batcher

from .conftest import read_records


@pytest.fixture
def bridged(session: Session) -> Iterator[logging.Logger]:
    logger = logging.getLogger(f"lib.{id(session)}")
    logger.setLevel(1)
    logger.propagate = False
    handler = session.logging_handler()
    logger.addHandler(handler)
    yield logger
    logger.removeHandler(handler)


@pytest.mark.parametrize(
    ("levelno", "stored"),
    [
        (logging.DEBUG, "debug"),
        (logging.INFO, "info"),
        (logging.WARNING, "warn"),
        (logging.ERROR, "error"),
        (logging.CRITICAL, "fatal"),
        (logging.INFO + 5, "info"),
        (5, "debug"),
    ],
)
def test_levels_are_mapped(session: Session, bridged: logging.Logger, levelno: int, stored: str) -> None:
    bridged.log(levelno, "m")
    session.flush()
    assert read_records(session.log_file)[0]["level"] == stored


def test_message_is_formatted_and_metadata_says_where_it_came_from(
    session: Session, bridged: logging.Logger
) -> None:
    bridged.warning("loaded %d shards from %s", 3, "s3://x", extra={"shard": 7})
    session.flush()
    record = read_records(session.log_file)[0]
    assert record["message"] == "loaded 3 shards from s3://x"
    meta = record["metadata"]
    assert meta["logger"] == bridged.name and meta["shard"] == 7
    assert meta["source"].endswith(f"{Path(__file__).name}:{meta['source'].rsplit(':', 1)[1]}")
    assert meta["function"] == "test_message_is_formatted_and_metadata_says_where_it_came_from"


def test_exception_traceback_is_kept(session: Session, bridged: logging.Logger) -> None:
    try:
        raise KeyError("missing")
    except KeyError:
        bridged.exception("failed")
    session.flush()
    record = read_records(session.log_file)[0]
    assert record["level"] == "error"
    assert "Traceback" in record["metadata"]["traceback"]
    assert "KeyError: 'missing'" in record["metadata"]["traceback"]


def test_handler_level_filters(session: Session) -> None:
    logger = logging.getLogger("lib.filtered")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = session.logging_handler(logging.WARNING)
    logger.addHandler(handler)
    try:
        logger.info("dropped")
        logger.error("kept")
    finally:
        logger.removeHandler(handler)
    session.flush()
    assert [r["message"] for r in read_records(session.log_file)] == ["kept"]


def test_a_library_logging_from_inside_our_code_path_neither_loops_nor_deadlocks(
    session: Session, bridged: logging.Logger
) -> None:
    """A value whose str() logs is turned into text while the writer lock is held.

    With more entries than the queue holds, the caller itself encodes a share,
    so the nested log() happens in a thread that holds the lock.
    """

    class Chatty:
        def __str__(self) -> str:
            bridged.warning("str() was called")
            return "chatty"

    total = 2 * _batcher.QUEUE_LIMIT

    def work() -> None:
        for _ in range(total):
            session.log("x", metadata={"v": Chatty()})
        session.flush()

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "logging from inside the writer deadlocked"
    session.flush()  # the warnings logged while the worker's flush encoded its entries
    messages = [r["message"] for r in read_records(session.log_file)]
    assert messages.count("x") == total
    assert "str() was called" in messages


def test_logging_into_a_closed_session_reports_without_raising(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Session(name="n", workspace="w", local_path=tmp_path) as s:
        handler = s.logging_handler()
    record = logging.LogRecord("lib", logging.ERROR, __file__, 1, "late", (), None)
    handler.handle(record)  # must not raise: logging reports handler errors on stderr
    assert "closed" in capsys.readouterr().err


def test_a_closed_sessions_handler_says_so_once_without_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After close, records are dropped with one line on stderr per handler, not a traceback each."""
    with Session(name="n", workspace="w", local_path=tmp_path) as s:
        handler = s.logging_handler()
        other = s.logging_handler()
    for message in ["late 1", "late 2", "late 3"]:
        handler.handle(logging.LogRecord("lib", logging.ERROR, __file__, 1, message, (), None))
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Logging error" not in err
    assert len(err.splitlines()) == 1
    assert "closed" in err and repr(s) in err
    other.handle(logging.LogRecord("lib", logging.INFO, __file__, 1, "late", (), None))
    assert len(capsys.readouterr().err.splitlines()) == 1, "once per handler"


def test_other_errors_are_still_reported_by_logging(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    """A record that cannot be formatted still goes through logging's handleError, every time."""
    handler = session.logging_handler()
    for shards in ["three", "four"]:
        handler.handle(logging.LogRecord("lib", logging.WARNING, __file__, 1, "%d shards", (shards,), None))
    assert capsys.readouterr().err.count("--- Logging error ---") == 2


def test_a_never_opened_sessions_handler_says_not_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The state is told from the session, not from an error's wording."""
    s = Session(name="never", workspace="ws", local_path=tmp_path)
    logger = logging.getLogger("lib.never")
    logger.propagate = False
    handler = s.logging_handler()
    logger.addHandler(handler)
    try:
        logger.warning("nobody hears this")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "is not open" in err and "closed" not in err
