"""pytest-benchmark: the cost of session.log next to its floors.

    pytest benchmarks/ --benchmark-only --benchmark-group-by=group

Every contender logs what a training loop logs: "Batch", level debug, one float.
The full comparison with other loggers is `python benchmarks/report.py`.
"""

from pathlib import Path
from typing import Any

import pytest

from dreamlake import Session
from dreamlake._bench._contenders import SyncOrjsonWriter, noop

from .conftest import read_records_count

METADATA = {"loss": 0.5}
N_END_TO_END = 10_000


@pytest.mark.benchmark(group="hot path: one call")
def test_noop_call(benchmark: Any) -> None:
    benchmark.pedantic(noop, args=("Batch", "debug", METADATA), rounds=200, iterations=1000)


@pytest.mark.benchmark(group="hot path: one call")
def test_session_log(benchmark: Any, session: Session) -> None:
    benchmark.pedantic(session.log, args=("Batch", "debug", METADATA), rounds=200, iterations=1000)
    session.flush()
    assert read_records_count(session.log_file) >= 1  # every call was written (one with --benchmark-disable)


@pytest.mark.benchmark(group=f"end to end: {N_END_TO_END} logs + flush")
def test_sync_orjson_loop(benchmark: Any, tmp_path: Path) -> None:
    path = tmp_path / "sync.jsonl"

    def run() -> None:
        writer = SyncOrjsonWriter(path)
        for _ in range(N_END_TO_END):
            writer.log("Batch", "debug", METADATA)
        writer.finish()

    benchmark.pedantic(run, rounds=15)
    written = read_records_count(path)
    assert written and written % N_END_TO_END == 0


@pytest.mark.benchmark(group=f"end to end: {N_END_TO_END} logs + flush")
def test_session_log_then_flush(benchmark: Any, session: Session) -> None:
    log = session.log

    def run() -> None:
        for _ in range(N_END_TO_END):
            log("Batch", "debug", METADATA)
        session.flush()

    benchmark.pedantic(run, rounds=15)
    written = read_records_count(session.log_file)
    assert written and written % N_END_TO_END == 0
