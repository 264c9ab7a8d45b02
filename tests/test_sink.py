"""The sink on its own, without threads: numbering, resuming, all-or-nothing batches."""

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from dreamlake._core import Ring
from dreamlake._read._records import read_logs
from dreamlake._sink import Sink

from .conftest import read_records


class Batch:
    """Log entries taken from a queue, as the writer hands them to a sink."""

    def __init__(self, *messages: str, formats: list[int] | None = None) -> None:
        self.ring = Ring()
        for message in messages:
            self.ring.push(1_700_000_000 * 10**9, 1, message, None)
        self.ring.take(len(messages))
        self.formats = [] if formats is None else formats  # the numbers format() was given

    @property
    def pending(self) -> int:
        return self.ring.pending

    def format(self, first: int) -> bytes:
        self.formats.append(first)
        return self.ring.format(first, [], bytes)

    def commit(self) -> None:
        self.ring.commit()


entries = Batch


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ws" / "run" / "logs.jsonl"


def opened(path: Path) -> Sink:
    sink = Sink(str(path))
    sink.open()
    return sink


def messages(path: Path) -> list[tuple[str, int]]:
    return [(r["message"], r["sequenceNumber"]) for r in read_records(path)]


def test_open_creates_the_folders_and_batches_are_numbered_in_file_order(path: Path) -> None:
    sink = opened(path)
    batch = entries("a", "b")
    sink.write(batch)
    assert batch.pending == 0, "a written batch is committed"
    sink.write(entries("c"))
    assert [("a", 0), ("b", 1), ("c", 2)] == messages(path)


def test_reopen_resumes_after_the_last_record_and_leaves_a_torn_line_alone(path: Path) -> None:
    sink = opened(path)
    sink.write(entries("a", "b"))
    sink.close()
    with open(path, "ab") as f:
        f.write(b'{"timestamp":"2025-')  # a crash in the middle of a line
    sink = opened(path)
    sink.write(entries("c"))
    lines = path.read_bytes().split(b"\n")
    assert lines[2] == b'{"timestamp":"2025-'
    assert ("c", 2) == (orjson.loads(lines[3])["message"], orjson.loads(lines[3])["sequenceNumber"])


def test_two_sinks_on_one_file_number_contiguously_and_encode_again_only_when_needed(path: Path) -> None:
    first, second = opened(path), opened(path)
    calls: list[int] = []
    first.write(entries("a", formats=calls))
    second.write(entries("b", formats=calls))  # predicted 0 before the lock, 1 under it
    first.write(entries("c", formats=calls))  # predicted 1, then 2
    first.write(entries("d", formats=calls))  # predicted 3: right, encoded once
    assert [("a", 0), ("b", 1), ("c", 2), ("d", 3)] == messages(path)
    assert [0, 0, 1, 1, 2, 3] == calls


@pytest.mark.parametrize("fault", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_an_interrupted_write_leaves_nothing_and_the_retry_writes_once(
    path: Path, monkeypatch: pytest.MonkeyPatch, fault: BaseException
) -> None:
    """Whether the write fails or a signal lands right after it, the batch is whole or absent."""
    sink = opened(path)
    sink.write(entries("a"))
    real_write = os.write

    def write_then_fail(fd: int, data: Any) -> int:
        real_write(fd, data)
        raise fault

    monkeypatch.setattr(os, "write", write_then_fail)
    batch = entries("b", "c")
    with pytest.raises(type(fault)):
        sink.write(batch)
    monkeypatch.undo()
    assert [("a", 0)] == messages(path)
    assert 2 == batch.pending, "the batch is kept for the retry"
    sink.write(batch)
    assert [("a", 0), ("b", 1), ("c", 2)] == messages(path)


def test_write_errors_name_the_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = opened(path)

    def refuse(fd: int, data: Any) -> int:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "write", refuse)
    with pytest.raises(OSError, match=f"could not write {path}: Input/output error") as info:
        sink.write(entries("a"))
    assert 5 == info.value.errno


def test_resuming_behind_a_long_torn_line_reads_each_byte_about_once(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 4 MB torn tail costs one pass, not one pass per chunk (it was quadratic)."""
    sink = opened(path)
    sink.write(entries("a", "b"))
    sink.close()
    with open(path, "ab") as f:
        f.write(b"x" * (4 << 20) + b"\n" + b"y" * (4 << 20))  # a torn line, then a partial one
    size = path.stat().st_size
    read = [0]
    real_pread = os.pread

    def counting_pread(fd: int, n: int, offset: int) -> bytes:
        data = real_pread(fd, n, offset)
        read[0] += len(data)
        return data

    monkeypatch.setattr(os, "pread", counting_pread)
    sink = opened(path)
    sink.write(entries("c"))
    assert read[0] <= 1.1 * size
    assert ("c", 2) == messages_after_torn(path)


def messages_after_torn(path: Path) -> tuple[str, int]:
    last = orjson.loads(path.read_bytes().split(b"\n")[-2])
    return last["message"], last["sequenceNumber"]


def test_a_deleted_file_is_replaced_by_a_new_one_numbered_from_zero(path: Path) -> None:
    sink = opened(path)
    sink.write(entries("a", "b"))
    path.unlink()
    os.rmdir(path.parent)
    sink.write(entries("c"))
    assert [("c", 0)] == messages(path)


def test_fsync_only_when_something_was_written_since(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    sink = opened(path)
    sink.fsync()
    assert [] == synced
    sink.write(entries("a"))
    sink.fsync()
    assert len(synced) == 2, "the file, and its new folder entry"
    sink.fsync()
    assert len(synced) == 2


def test_a_file_cut_at_any_byte_of_its_last_line_never_repeats_a_number(tmp_path: Path) -> None:
    """Cut anywhere in the last record (just before its newline too), the next writer numbers
    after what readers will count: sequence numbers stay unique and contiguous in file order."""
    whole = tmp_path / "whole.jsonl"
    sink = Sink(str(whole))
    sink.open()
    sink.write(entries("a", "b", "c"))
    sink.close()
    data = whole.read_bytes()
    last_line = data.rindex(b"\n", 0, len(data) - 1) + 1
    for cut in range(last_line, len(data) + 1):
        path = tmp_path / f"cut{cut}" / "logs.jsonl"
        path.parent.mkdir()
        path.write_bytes(data[:cut])
        sink = opened(path)
        sink.write(entries("d"))
        sink.close()
        records = read_logs(path)
        assert [r["sequenceNumber"] for r in records] == list(range(len(records))), cut
        whole_record = cut >= len(data) - 1  # the crash cut the newline only, or nothing
        assert [r["message"] for r in records] == (["a", "b", "c", "d"] if whole_record else ["a", "b", "d"])
        assert records.skipped == (0 if whole_record or cut == last_line else 1), cut
