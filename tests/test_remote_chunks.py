"""How `dreamlake sync` cuts a local file into chunks and finds its place again, on inline files
(no server): every record in exactly one chunk, lines that are no record kept with the records
after them, numbers read only from whole records."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from dreamlake import _remote
from dreamlake._remote import Remote, log_number, point_number


def record(n: int, message: str = "m", metadata: object = None) -> bytes:
    line = {"timestamp": "2026-01-01T00:00:00.000000Z", "level": "info", "message": message,
            "metadata": metadata, "sequenceNumber": n}  # fmt: skip
    return orjson.dumps(line) + b"\n"


def point(n: int) -> bytes:
    return (
        orjson.dumps({"index": n, "data": {"value": n * 0.5}, "createdAt": "2026-01-01T00:00:00.000000Z"})
        + b"\n"
    )


def cut(tmp_path: Path, data: bytes, number: _remote.Numbering, chunk: int) -> list[tuple[int, bytes]]:
    file = tmp_path / "f.jsonl"
    file.write_bytes(data)
    lines = _remote._Lines(file)
    out, pos = [], 0
    old, _remote.CHUNK_BYTES = _remote.CHUNK_BYTES, chunk
    try:
        while (found := _remote._next_chunk(lines, pos, number)) is not None:
            first, end, _ = found
            out.append((first, lines.bytes(pos, end)))
            pos = end
    finally:
        _remote.CHUNK_BYTES = old
        lines.close()
    return out


@pytest.mark.parametrize(("make", "number"), [(record, log_number), (point, point_number)])
def test_every_record_lands_in_one_chunk_keyed_by_its_first_number(
    tmp_path: Path, make: object, number: _remote.Numbering
) -> None:
    data = b"".join(make(n) for n in range(500))  # type: ignore[operator]
    chunks = cut(tmp_path, data, number, 1000)
    assert len(chunks) > 10
    assert b"".join(c for _, c in chunks) == data
    for first, chunk in chunks:
        assert number(chunk, 0, chunk.index(b"\n")) == first


def test_a_torn_line_ended_later_is_no_record_and_goes_with_the_records_after_it(tmp_path: Path) -> None:
    """A crash cut a record of the metadata {"a":1,"sequenceNumber":99}; the next writer ended
    the line. Its tail looks like a record's end, but it does not begin as one."""
    torn = record(2, metadata={"a": 1, "sequenceNumber": 99})[:-40] + b'"sequenceNumber":99}\n'
    data = record(0) + record(1) + torn + record(2) + record(3)
    chunks = cut(tmp_path, data, log_number, 10**6)
    assert [first for first, _ in chunks] == [0]
    assert chunks[0][1] == data
    late = cut(tmp_path, torn + record(2), log_number, 10**6)
    assert late == [(2, torn + record(2))], "the torn line is shipped with the record after it"


def test_a_message_or_metadata_that_holds_a_number_key_does_not_fool_the_cut(tmp_path: Path) -> None:
    data = record(0, message=',"sequenceNumber":7}') + record(1, metadata={"sequenceNumber": 9}) + record(2)
    assert [log_number(line, 0, len(line)) for line in data.splitlines()] == [0, 1, 2]


def test_numbers_past_twelve_digits_are_read_whole(tmp_path: Path) -> None:
    big = 10**12
    chunks = cut(tmp_path, record(big - 1) + record(big), log_number, 1)
    assert [first for first, _ in chunks] == [big - 1, big]


def test_the_place_of_a_chunk_is_found_again_only_for_the_same_bytes(tmp_path: Path) -> None:
    data = b"junk\n" + record(0) + record(1) + b"more junk\n" + record(2) + record(3)
    file = tmp_path / "f.jsonl"
    file.write_bytes(data)
    lines = _remote._Lines(file)
    try:
        first = b"junk\n" + record(0) + record(1)
        assert _remote._matches(lines, first, log_number) == len(first)
        second = b"more junk\n" + record(2)
        assert _remote._matches(lines, second, log_number) == len(first) + len(second)
        assert _remote._matches(lines, record(2)[:-1], log_number) is None, "not whole lines"
        assert _remote._matches(lines, record(2, message="other"), log_number) is None
    finally:
        lines.close()


@pytest.mark.parametrize(
    "url",
    [
        "https://AKIAEXAMPLE:SECRET-42@host/bucket",
        "s3://AKIAEXAMPLE:SECRET-42@bucket/x",
        "s3://AKIAEXAMPLE:SECRET-42/x",
        "s3://bucket/x?X-Amz-Signature=SECRET-42",
        "s3://bucket/a/../SECRET-42",
    ],
)
def test_a_refused_remote_is_never_repeated_in_the_error(url: str) -> None:
    with pytest.raises(ValueError) as refused:
        Remote.parse(url)
    assert "SECRET-42" not in str(refused.value) and "AKIAEXAMPLE" not in str(refused.value)


@pytest.mark.parametrize("name", ["..", ".", "", "a/../b", "nul\x00"])
def test_names_that_would_leave_the_prefix_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="cannot name an object"):
        Remote.parse("s3://bucket/team").key("ws", name)
