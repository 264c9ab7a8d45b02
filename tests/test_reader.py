"""Reading back: file order, level filter, corrupt and torn lines skipped and counted."""

from pathlib import Path

import pytest

from dreamlake import Session, iter_logs, read_logs
from dreamlake import _reader


def fill(tmp_path: Path) -> Session:
    with Session(name="n", workspace="w", local_path=tmp_path) as s:
        for i, level in enumerate(["debug", "info", "warn", "error", "fatal"] * 3):
            s.log(f"m{i}", level=level, metadata={"i": i})
    return s


def test_read_logs_from_folder_or_file_in_file_order(tmp_path: Path) -> None:
    s = fill(tmp_path)
    by_folder, by_file = read_logs(s.path), read_logs(s.log_file)
    assert by_folder == by_file
    assert [r["metadata"]["i"] for r in by_folder] == list(range(15))
    assert by_folder.skipped == 0


@pytest.mark.parametrize(
    ("level", "kept"),
    [("debug", 5), ("info", 4), ("warn", 3), ("WARNING", 3), ("error", 2), ("fatal", 1)],
)
def test_level_keeps_that_level_and_above(tmp_path: Path, level: str, kept: int) -> None:
    s = fill(tmp_path)
    assert len(read_logs(s.path, level=level)) == 3 * kept


def test_corrupt_and_torn_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    s = fill(tmp_path)
    data = s.log_file.read_bytes().split(b"\n")
    data.insert(3, b"not json")
    data.insert(5, b"[1, 2]")
    s.log_file.write_bytes(b"\n".join(data) + b'{"timestamp":"2025')  # a torn last line
    records = read_logs(s.path)
    assert [r["metadata"]["i"] for r in records] == list(range(15))
    assert records.skipped == 3


def test_iter_logs_reads_lines_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = fill(tmp_path)
    monkeypatch.setattr(_reader, "_CHUNK", 7)
    counter: list[int] = []
    it = iter_logs(s.path, level="error", skipped=counter)
    assert next(it)["message"] == "m3"
    assert [r["message"] for r in it] == ["m4", "m8", "m9", "m13", "m14"]
    assert counter == [0]


def test_open_session_reads_what_it_logged(tmp_path: Path) -> None:
    with Session(name="n", workspace="w", local_path=tmp_path) as s:
        s.log("a")
        s.log("b", level="error")
        assert [r["message"] for r in s.read_logs()] == ["a", "b"]
        assert [r["message"] for r in s.read_logs(level="warn")] == ["b"]


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a dreamlake log"):
        read_logs(tmp_path / "nope")


def test_bad_level_is_a_clear_error(tmp_path: Path) -> None:
    s = fill(tmp_path)
    with pytest.raises(ValueError, match="level must be one of"):
        read_logs(s.path, level="loud")
