"""Session: naming, lifecycle, paths, re-open and the call-site checks of log()."""

import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType

import orjson
import pytest

from dreamlake import Session

from .conftest import read_records, wait_until


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "/abs", "a\0b"])
@pytest.mark.parametrize("field", ["name", "workspace"])
def test_name_and_workspace_must_be_one_folder(tmp_path: Path, field: str, bad: str) -> None:
    kwargs = {"name": "n", "workspace": "w", "local_path": tmp_path, field: bad}
    with pytest.raises(ValueError, match=field):
        Session(**kwargs)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("field", ["name", "workspace"])
def test_name_and_workspace_must_be_str(tmp_path: Path, field: str) -> None:
    kwargs = {"name": "n", "workspace": "w", "local_path": tmp_path, field: 7}
    with pytest.raises(TypeError, match=f"{field} must be a str, got int"):
        Session(**kwargs)  # type: ignore[arg-type]


def test_local_path_must_be_path_like() -> None:
    with pytest.raises(TypeError, match="local_path"):
        Session(name="n", workspace="w", local_path=3)  # type: ignore[arg-type]


def test_default_local_path_is_dot_dreamlake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with Session(name="n", workspace="w") as s:
        s.log("x")
    assert (tmp_path / ".dreamlake" / "w" / "n" / "logs.jsonl").is_file()
    assert s.log_file == tmp_path / ".dreamlake" / "w" / "n" / "logs.jsonl"


def test_construction_touches_no_file(tmp_path: Path) -> None:
    Session(name="n", workspace="w", local_path=tmp_path / "deep")
    assert not (tmp_path / "deep").exists()


def test_open_creates_folders_and_returns_the_session(tmp_path: Path) -> None:
    s = Session(name="n", workspace="w", local_path=tmp_path / "a" / "b")
    assert s.open() is s
    try:
        assert s.log_file == tmp_path / "a" / "b" / "w" / "n" / "logs.jsonl"
        assert s.log_file.is_file()
    finally:
        s.close()


def test_open_and_close_are_idempotent(tmp_path: Path) -> None:
    s = Session(name="n", workspace="w", local_path=tmp_path)
    s.open()
    opened = _dreamlake_threads()
    s.open()
    assert _dreamlake_threads() == opened, "a second open() must not start a writer"
    s.log("once")
    s.close()
    s.close()
    assert wait_until(lambda: _dreamlake_threads() == 0), "the threads outlive the last session"
    assert [r["message"] for r in read_records(s.log_file)] == ["once"]


def _dreamlake_threads() -> int:
    return sum(t.name.startswith("dreamlake") for t in threading.enumerate())


def test_log_before_open_raises(tmp_path: Path) -> None:
    s = Session(name="n", workspace="w", local_path=tmp_path)
    with pytest.raises(RuntimeError, match="not open"):
        s.log("x")


def test_log_after_close_raises_and_writes_nothing(tmp_path: Path) -> None:
    with Session(name="n", workspace="w", local_path=tmp_path) as s:
        s.log("in")
    with pytest.raises(RuntimeError, match="closed"):
        s.log("out")
    assert [r["message"] for r in read_records(s.log_file)] == ["in"]


def test_reopen_continues_sequence_numbers(tmp_path: Path) -> None:
    for run in range(3):
        with Session(name="n", workspace="w", local_path=tmp_path) as s:
            for i in range(4):
                s.log(f"run {run} entry {i}")
    got = read_records(s.log_file)
    assert [r["sequenceNumber"] for r in got] == list(range(12))
    assert got[4]["message"] == "run 1 entry 0"


def test_same_object_can_be_reopened_after_close(tmp_path: Path) -> None:
    s = Session(name="n", workspace="w", local_path=tmp_path)
    with s:
        s.log("a")
    with s:
        s.log("b")
    assert [(r["message"], r["sequenceNumber"]) for r in read_records(s.log_file)] == [
        ("a", 0),
        ("b", 1),
    ]


def test_reopen_after_partial_last_line(tmp_path: Path) -> None:
    """A line torn by a crash stays apart; numbering resumes after the last valid record."""
    with Session(name="n", workspace="w", local_path=tmp_path) as s:
        for i in range(3):
            s.log(f"e{i}")
    with open(s.log_file, "ab") as f:
        f.write(b'{"timestamp":"2025-01-01T00:00:00.000000Z","level":"in')
    with s:
        s.log("after crash")
    lines = s.log_file.read_bytes().split(b"\n")
    assert lines[3].startswith(b'{"timestamp"') and lines[3].endswith(b'"in')
    assert lines[-1] == b""
    last = orjson.loads(lines[4])
    assert (last["message"], last["sequenceNumber"]) == ("after crash", 3)


def test_reopen_finds_last_record_behind_a_long_corrupt_tail(tmp_path: Path) -> None:
    """The search for the last sequence number reaches past more than one read chunk."""
    with Session(name="n", workspace="w", local_path=tmp_path) as s:
        for i in range(5):
            s.log(f"e{i}")
    with open(s.log_file, "ab") as f:
        f.write((b"x" * 999 + b"\n") * 300)  # 300 KB of garbage lines
    with s:
        s.log("next")
    last = orjson.loads(s.log_file.read_bytes().split(b"\n")[-2])
    assert last["sequenceNumber"] == 5


def test_message_objects_are_stored_as_str(session: Session) -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

        def __repr__(self) -> str:
            return "<Unprintable>"

    session.log(42)
    session.log(Path("a/b"))
    session.log(None)
    session.log(Unprintable())
    session.flush()
    assert [r["message"] for r in read_records(session.log_file)] == [
        "42",
        str(Path("a/b")),
        "None",
        "<Unprintable>",
    ]


@pytest.mark.parametrize("bad", [[("a", 1)], "a=1", 3, {"a", "b"}])
def test_metadata_must_be_a_mapping(session: Session, bad: object) -> None:
    session.log("ok")
    with pytest.raises(TypeError, match=f"metadata must be a mapping.*got {type(bad).__name__}"):
        session.log("bad", metadata=bad)  # type: ignore[arg-type]
    session.flush()
    assert [r["message"] for r in read_records(session.log_file)] == ["ok"]


def test_metadata_is_copied_at_the_call(session: Session) -> None:
    """Changing the caller's dict after log() does not change the record."""
    metadata = {"step": 1, "loss": 0.5}
    session.log("m", metadata=metadata)
    metadata["step"] = 2
    metadata["extra"] = True
    del metadata["loss"]
    session.flush()
    assert read_records(session.log_file)[0]["metadata"] == {"step": 1, "loss": 0.5}


def test_any_mapping_is_accepted_and_copied(session: Session) -> None:
    class Config(Mapping[str, int]):
        def __init__(self) -> None:
            self.data = {"a": 1}

        def __getitem__(self, key: str) -> int:
            return self.data[key]

        def __iter__(self) -> Iterator[str]:
            return iter(self.data)

        def __len__(self) -> int:
            return len(self.data)

    config = Config()
    session.log("custom", metadata=config)
    config.data["a"] = 2
    session.log("proxy", metadata=MappingProxyType({"b": 2}))
    session.flush()
    assert [r["metadata"] for r in read_records(session.log_file)] == [{"a": 1}, {"b": 2}]


def test_exception_in_with_block_propagates_and_entries_are_on_disk(tmp_path: Path) -> None:
    with pytest.raises(ZeroDivisionError):
        with Session(name="n", workspace="w", local_path=tmp_path) as s:
            for i in range(100):
                s.log(f"e{i}")
            1 / 0
    assert len(read_records(s.log_file)) == 100


def test_repr_names_the_session(tmp_path: Path) -> None:
    s = Session(name="n", workspace="w", local_path="x")
    assert repr(s) == f"Session(name='n', workspace='w', local_path='{Path('x').absolute()}')"


def test_file_permissions_follow_umask(tmp_path: Path) -> None:
    with Session(name="n", workspace="w", local_path=tmp_path) as s:
        s.log("x")
    mask = os.umask(0)
    os.umask(mask)
    assert s.log_file.stat().st_mode & 0o777 == 0o644 & ~mask
