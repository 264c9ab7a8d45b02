"""One Session driven through open, log, flush, close and read in any order (a Hypothesis state machine)."""

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from dreamlake import LEVELS, Session, read_logs, read_track

from . import strategies
from .conftest import read_records

levels = st.sampled_from([*LEVELS, "WARNING", "critical", "Info"])
canonical = {"warning": "warn", "critical": "fatal"}


class SessionLifecycle(RuleBasedStateMachine):
    """log() works exactly while open; after flush() or close() the file holds exactly what was logged."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="dreamlake-machine-"))
        self.session = Session(name="n", workspace="w", local_path=self.root)
        self.is_open = False
        self.cached_log: Callable[..., None] | None = None  # `session.log` as taken right after open()
        self.logged: list[tuple[str, str, Any]] = []  # (level, message, metadata JSON) in call order
        self.written = 0  # entries known to be on disk

    def teardown(self) -> None:
        try:
            self.session.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def expect_not_open(self, call: Callable[[], None]) -> None:
        with pytest.raises(RuntimeError):
            call()

    @rule()
    def open(self) -> None:
        assert self.session is self.session.open()
        self.is_open = True
        self.cached_log = self.session.log

    @rule()
    def close(self) -> None:
        self.session.close()
        self.is_open = False
        self.written = len(self.logged)
        self.assert_file_holds_everything_logged()

    @rule()
    def flush(self) -> None:
        self.session.flush()
        if self.is_open:
            self.written = len(self.logged)
        self.assert_file_holds_everything_logged()

    @rule(
        level=levels, message=strategies.texts, metadata=st.none() | strategies.metadata, cached=st.booleans()
    )
    def log(self, level: str, message: str, metadata: Any, cached: bool) -> None:
        log = self.cached_log if cached and self.cached_log is not None else self.session.log
        if not self.is_open:
            self.expect_not_open(lambda: log(message, level=level, metadata=metadata))
            return
        log(message, level=level, metadata=metadata)
        stored_level = canonical.get(level.lower(), level.lower())
        expected_metadata = None if metadata is None else strategies.expected_json(metadata)
        self.logged.append((stored_level, strategies.expected_json(message), expected_metadata))

    @precondition(lambda self: self.is_open)
    @rule()
    def read_back(self) -> None:
        """session.read_logs() flushes, then reads: it sees every entry, in order."""
        records = self.session.read_logs()
        self.written = len(self.logged)
        assert self.logged == [(r["level"], r["message"], r["metadata"]) for r in records]
        assert 0 == records.skipped

    @precondition(lambda self: self.session.log_file.exists())
    @rule()
    def read_from_disk(self) -> None:
        """dreamlake.read_logs() sees at least every entry known to be written, in order."""
        records = read_logs(self.session.log_file)
        assert self.logged[: len(records)] == [(r["level"], r["message"], r["metadata"]) for r in records]
        assert len(records) >= self.written

    @invariant()
    def log_raises_exactly_when_not_open(self) -> None:
        if not self.is_open:
            self.expect_not_open(lambda: self.session.log("probe"))
            if self.cached_log is not None:
                self.expect_not_open(lambda: self.cached_log("probe"))  # type: ignore[misc]

    def assert_file_holds_everything_logged(self) -> None:
        if not self.session.log_file.exists():
            assert [] == self.logged
            return
        records = read_records(self.session.log_file)
        assert self.logged == [(r["level"], r["message"], r["metadata"]) for r in records]
        assert list(range(len(records))) == [r["sequenceNumber"] for r in records]


SessionLifecycle.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_session_lifecycle = SessionLifecycle.TestCase


track_names = st.sampled_from(["loss", "train/acc", "a/b/c"])
fields = st.dictionaries(
    st.sampled_from(["value", "step", "epoch", "x"]), strategies.values, min_size=1, max_size=4
)


class TrackLifecycle(RuleBasedStateMachine):
    """Tracks through open, append, flush, close, reopen and reads in any order: every index
    returned is the point's index in the file, and the file holds exactly what was appended."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="dreamlake-tracks-"))
        self.session = Session(name="n", workspace="w", local_path=self.root)
        self.is_open = False
        self.appended: dict[str, list[Any]] = {}  # per track, the expected data in index order
        self.cached: dict[str, Callable[..., dict[str, int]]] = {}  # `track.append` taken while open

    def teardown(self) -> None:
        try:
            self.session.close()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    @rule()
    def open(self) -> None:
        self.session.open()
        self.is_open = True

    @rule()
    def close(self) -> None:
        self.session.close()
        self.is_open = False
        self.assert_files_hold_everything()

    @rule()
    def flush(self) -> None:
        self.session.flush()
        self.assert_files_hold_everything()

    @rule(name=track_names, data=fields, cached=st.booleans())
    def append(self, name: str, data: dict[str, Any], cached: bool) -> None:
        append = self.cached.get(name) if cached else None
        if not self.is_open:
            with pytest.raises(RuntimeError):
                (append or (lambda **kw: self.session.track(name).append(**kw)))(**data)
            return
        if append is None:
            append = self.cached[name] = self.session.track(name).append
        expected = self.appended.setdefault(name, [])
        assert append(**data) == {"index": len(expected)}
        expected.append(strategies.expected_json(data))

    @rule(name=track_names, batch=st.lists(fields, max_size=5))
    def append_batch(self, name: str, batch: list[dict[str, Any]]) -> None:
        if not self.is_open:
            with pytest.raises(RuntimeError):
                self.session.track(name)
            return
        expected = self.appended.setdefault(name, [])
        result = self.session.track(name).append_batch(batch)
        assert result == {
            "startIndex": len(expected),
            "endIndex": len(expected) + len(batch) - 1,
            "count": len(batch),
        }
        expected.extend(strategies.expected_json(point) for point in batch)

    @precondition(lambda self: self.is_open)
    @rule(name=track_names, start=st.integers(0, 12), limit=st.integers(1, 12))
    def read(self, name: str, start: int, limit: int) -> None:
        track = self.session.track(name)
        page = track.read(start_index=start, limit=limit)
        expected = self.appended.setdefault(name, [])  # made by track(), even without a point
        assert [p["data"] for p in page["data"]] == expected[start : start + limit]
        assert [p["index"] for p in page["data"]] == list(range(start, min(start + limit, len(expected))))
        assert (page["total"], page["hasMore"]) == (len(expected), len(expected) > start + limit)
        assert track.stats()["totalDataPoints"] == len(expected)
        assert {t["name"]: t["totalDataPoints"] for t in track.list_all()} == {
            n: len(points) for n, points in self.appended.items()
        }

    def assert_files_hold_everything(self) -> None:
        for name, expected in self.appended.items():
            stored = read_track(self.session.path, name)
            assert [p["data"] for p in stored] == expected and stored.skipped == 0
            assert [p["index"] for p in stored] == list(range(len(expected)))


TrackLifecycle.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_track_lifecycle = TrackLifecycle.TestCase
