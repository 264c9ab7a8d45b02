"""Reading back: file order, level filter, corrupt and torn lines skipped and counted."""

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamlake import Session, iter_logs, read_logs
from dreamlake._read import _records as _reader


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


@pytest.mark.parametrize("run_bytes", [1, 40, 1 << 14])
def test_each_line_is_judged_alone_when_lines_are_parsed_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_bytes: int
) -> None:
    """Lines are parsed a run at a time, as one JSON array: two torn lines that would make one
    value together, or one line holding two values, must still count as lines that are not records."""
    monkeypatch.setattr(_reader, "_RUN", run_bytes)
    good = [orjson.dumps({"level": "info", "message": f"m{i}", "metadata": {}}) for i in range(4)]
    torn, stray, double = (
        b'{"level":"info","message":"a","metadata":{"v":[1',
        b"2]}}",
        good[2] + b"," + good[3],
    )
    file = tmp_path / "logs.jsonl"
    file.write_bytes(b"\n".join([good[0], torn, stray, double, good[1]]) + b"\n")  # as many values as lines
    records = read_logs(file)
    assert [r["message"] for r in records] == ["m0", "m1"]
    assert records.skipped == 3
    file.write_bytes(b"\n".join([good[0], torn, stray, good[1], double, b"", good[3]]) + b"\n")
    records = read_logs(file)
    assert [r["message"] for r in records] == ["m0", "m1", "m3"]
    assert records.skipped == 4
    file.write_bytes(good[0] + b",\n" + good[1] + b"\n" + good[2] + b"\n," + good[3] + b"\n")  # stray commas
    records = read_logs(file)
    assert [r["message"] for r in records] == ["m1", "m2"]
    assert records.skipped == 2


@given(
    lines=st.lists(
        st.one_of(
            st.integers(0, 10**6).map(
                lambda i: orjson.dumps({"level": "info", "message": "x" * (i % 300), "metadata": {"i": i}})
            ),
            st.sampled_from([b"", b"not json", b"[1, 2]", b'{"level": 5', b"{}"]),
        ),
        max_size=60,
    ),
    torn=st.booleans(),
    cuts=st.lists(st.integers(0, 1 << 16), max_size=5),
    chunk=st.sampled_from([3, 64, 1 << 20]),
)
@settings(max_examples=150, deadline=None)
def test_parts_of_a_file_hold_each_line_once(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], torn: bool, cuts: list[int], chunk: int
) -> None:
    """Reading a file in parts cut at any bytes gives what reading it whole gives: every record
    once, in order, and each line that is not a record (the torn last line too) counted once."""
    file = tmp_path_factory.mktemp("parts") / "logs.jsonl"
    file.write_bytes(b"".join(line + b"\n" for line in lines) + (b'{"level":"in' if torn else b""))
    size = file.stat().st_size
    bounds = sorted({0, *(cut % (size + 1) for cut in cuts)})
    whole_skipped: list[int] = []
    whole = [r for batch in _reader.each_batch(file, _reader.log_records, whole_skipped) for r in batch]
    parts, skipped = [], 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_reader, "_CHUNK", chunk)
        for start, end in zip(bounds, [*bounds[1:], None], strict=True):
            counted: list[int] = []
            parts += [
                r
                for batch in _reader.each_batch(file, _reader.log_records, counted, start, end)
                for r in batch
            ]
            skipped += counted[0]
    assert parts == whole
    assert (
        skipped
        == whole_skipped[0]
        == sum(1 for line in lines if not line.startswith(b'{"level":"info"')) + torn
    )


def test_open_session_reads_what_it_logged(tmp_path: Path) -> None:
    with Session(name="n", workspace="w", local_path=tmp_path) as s:
        s.log("a")
        s.log("b", level="error")
        assert [r["message"] for r in s.read_logs()] == ["a", "b"]
        assert [r["message"] for r in s.read_logs(level="warn")] == ["b"]


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope does not exist: give a session folder"):
        read_logs(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty has no logs\.jsonl"):
        read_logs(tmp_path / "empty")


def test_bad_level_is_a_clear_error(tmp_path: Path) -> None:
    s = fill(tmp_path)
    with pytest.raises(ValueError, match="level must be one of"):
        read_logs(s.path, level="loud")


def line(message: str) -> bytes:
    """One record as the writer would put it in the file."""
    record = {"timestamp": "t", "level": "info", "message": message, "metadata": None, "sequenceNumber": 0}
    return orjson.dumps(record) + b"\n"


class IdlePolls:
    """`stop` for follow_logs: gives up after `limit` idle polls, so a lost record fails, not hangs."""

    def __init__(self, limit: int = 2000) -> None:
        self.limit = limit
        self.count = 0

    def __call__(self) -> bool:
        self.count += 1
        return self.count > self.limit


def follow(path: Path, stop: IdlePolls) -> Iterator[str]:
    """The messages follow_logs yields, polling every 5 ms."""
    return (r["message"] for r in _reader.follow_logs(path, interval=0.005, stop=stop))


def test_follow_yields_a_record_half_written_when_it_started_once_complete(tmp_path: Path) -> None:
    """A line still being written at the start is yielded once, when its newline arrives."""
    path = tmp_path / "logs.jsonl"
    half = line("c")
    path.write_bytes(line("a") + line("b") + half[:10])
    stop = IdlePolls()
    messages = follow(path, stop)
    assert [next(messages), next(messages)] == ["a", "b"]
    with open(path, "ab") as f:
        f.write(half[10:])
    assert next(messages) == "c"
    with open(path, "ab") as f:
        f.write(line("d") + b"not json\n" + line("e"))
    assert [next(messages), next(messages)] == ["d", "e"]
    stop.limit = 0
    assert list(messages) == [], "every record exactly once"


def test_follow_reads_a_replaced_file_from_its_start(tmp_path: Path) -> None:
    """When the file is replaced (new inode), what the old one got last, then the new one from its start."""
    path = tmp_path / "logs.jsonl"
    path.write_bytes(line("old"))
    stop = IdlePolls()
    messages = follow(path, stop)
    assert next(messages) == "old"
    with open(path, "ab") as old:
        path.unlink()  # the session folder deleted under a writer that still holds the file
        old.write(line("old, late"))
    path.write_bytes(line("new 1") + line("new 2"))
    assert [next(messages), next(messages), next(messages)] == ["old, late", "new 1", "new 2"]
    with open(path, "ab") as f:
        f.write(line("new 3"))
    assert next(messages) == "new 3"
    stop.limit = 0
    assert list(messages) == []


def test_follow_reads_a_truncated_file_from_its_start(tmp_path: Path) -> None:
    """A file that shrank below what was read is read again from its start."""
    path = tmp_path / "logs.jsonl"
    path.write_bytes(line("a") + line("b") + line("c"))
    stop = IdlePolls()
    messages = follow(path, stop)
    assert [next(messages), next(messages), next(messages)] == ["a", "b", "c"]
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(line("x"))
    assert next(messages) == "x"
    stop.limit = 0
    assert list(messages) == []


def test_follow_waits_while_the_log_file_is_gone(tmp_path: Path) -> None:
    """A log file deleted with its folder is picked up when the session writes a new one."""
    with Session(name="n", workspace="w", local_path=tmp_path) as s:
        s.log("first")
    polls = IdlePolls()
    gone: list[int] = []

    def stop() -> bool:
        """Count the polls that find no file; on the third, a writer starts a new one."""
        if not s.log_file.exists():
            gone.append(polls.count)
            if len(gone) == 3:
                with Session(name="n", workspace="w", local_path=tmp_path) as again:
                    again.log("again")
        return polls()

    messages = (r["message"] for r in _reader.follow_logs(s.path, interval=0.005, stop=stop))
    assert next(messages) == "first"
    shutil.rmtree(s.path)
    assert next(messages) == "again"
    assert len(gone) == 3


class Counted(bytes):
    """Bytes that count, in `handled[0]`, every byte they copy or search: what a reader costs."""

    handled: ClassVar[list[int]] = [0]

    def _made(self, value: bytes) -> "Counted":
        Counted.handled[0] += len(value)
        return Counted(value)

    def __add__(self, other: bytes) -> "Counted":  # type: ignore[override]
        return self._made(bytes(self) + other)

    def __radd__(self, other: bytes) -> "Counted":
        return self._made(other + bytes(self))

    def __getitem__(self, key: slice) -> "Counted":  # type: ignore[override]
        return self._made(bytes(self)[key])

    def find(self, sub: bytes, start: int = 0, end: int | None = None) -> int:  # type: ignore[override]
        Counted.handled[0] += len(bytes(self)[start:end])
        return bytes(self).find(sub, start, len(self) if end is None else end)

    def rfind(self, sub: bytes, start: int = 0, end: int | None = None) -> int:  # type: ignore[override]
        Counted.handled[0] += len(bytes(self)[start:end])
        return bytes(self).rfind(sub, start, len(self) if end is None else end)


@pytest.mark.parametrize("end", [None, 1 << 19])
def test_a_long_line_costs_time_in_proportion_to_its_length(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, end: int | None
) -> None:
    """One line of 1 MB read 64 bytes at a time: each byte is searched and copied a few times,
    not once per chunk read after it (which made a 200 MB line take 12 s)."""
    size = 1 << 20
    record = orjson.dumps({"level": "info", "message": "x" * (size - 50), "metadata": {}})
    file = tmp_path / "logs.jsonl"
    file.write_bytes(record + b"\n" + line("next"))
    monkeypatch.setattr(_reader, "_CHUNK", 64)
    monkeypatch.setattr(
        _reader, "_joined", lambda pieces: Counted._made(Counted(), b"".join(pieces)), raising=False
    )
    Counted.handled[0] = 0
    with open(file, "rb") as f:
        read = f.read
        f.read = lambda n=-1: Counted(read(n))  # type: ignore[method-assign]
        runs = list(_reader.WholeLines(f, end))
    assert [record, line("next")[:-1]][: 1 if end else 2] == [bytes(run) for run in runs]
    assert Counted.handled[0] < 4 * size


class Between(IdlePolls):
    """`stop` that makes one change to the file at each idle poll, while the follower holds none."""

    def __init__(self, *changes: Callable[[], object]) -> None:
        super().__init__()
        self.changes = list(changes)

    def __call__(self) -> bool:
        if self.changes:
            self.changes.pop(0)()
        return super().__call__()


def append(path: Path, data: bytes) -> Callable[[], object]:
    def change() -> None:
        with open(path, "ab") as f:
            f.write(data)

    return change


def messages_of(path: Path, stop: IdlePolls) -> Iterator[str]:
    return (r["message"] for r in _reader.follow_logs(path, interval=0.001, stop=stop))


def test_follow_resumes_where_a_batch_was_taken_back(tmp_path: Path) -> None:
    """A file cut short with its first line unchanged (the writer truncates a batch it could not
    write whole) is read on from where it now ends: nothing already yielded comes again."""
    path = tmp_path / "logs.jsonl"
    path.write_bytes(line("a") + line("b") + line("taken back")[:-3])
    stop = Between(
        append(path, line("taken back")[-3:] + line("taken back too")),
        lambda: os.truncate(path, len(line("a") + line("b"))),
        append(path, line("c")),
    )
    messages = messages_of(path, stop)
    assert ["a", "b", "taken back", "taken back too", "c"] == [next(messages) for _ in range(5)]
    stop.limit = 0
    assert list(messages) == [], "a and b not again"


def test_follow_reads_a_file_written_anew_in_place_from_its_start(tmp_path: Path) -> None:
    """The same file (same inode) written again from its start, longer than what was read: its
    first line differs, so it is read from its start, not from where the last poll stopped."""
    path = tmp_path / "logs.jsonl"
    path.write_bytes(line("a") + line("b"))

    def rewrite() -> None:
        with open(path, "r+b") as f:
            f.write(line("A") + line("B") + line("C"))

    stop = Between(rewrite)
    messages = messages_of(path, stop)
    assert ["a", "b", "A", "B", "C"] == [next(messages) for _ in range(5)]
    stop.limit = 0
    assert list(messages) == []


def test_follow_completes_a_first_line_written_in_pieces(tmp_path: Path) -> None:
    """A first line still partial at a poll is checked by what of it was there, and yielded
    once, when its newline comes."""
    path = tmp_path / "logs.jsonl"
    first = line("first")
    path.write_bytes(first[:5])
    stop = Between(append(path, first[5:12]), append(path, first[12:]), append(path, line("second")))
    messages = messages_of(path, stop)
    assert ["first", "second"] == [next(messages), next(messages)]
    stop.limit = 0
    assert list(messages) == []


def open_files() -> set[str]:
    """What this process has open now."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass  # the listing's own descriptor, closed by now
    return found


def test_follow_keeps_no_file_open_between_polls(tmp_path: Path) -> None:
    """Between polls the followed file is closed: following many files needs no descriptor each."""
    path = tmp_path / "logs.jsonl"
    path.write_bytes(line("a"))
    open_then: list[bool] = []
    stop = Between(*[lambda: open_then.append(str(path) in open_files())] * 3)
    stop.limit = 3
    assert ["a"] == list(messages_of(path, stop))
    assert [False] * 3 == open_then
