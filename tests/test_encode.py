"""Encoding: the metadata snapshot taken at the call, and the lines the writer assembles."""

import datetime as dt
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamlake._core import Ring
from dreamlake._encode import Deferred, careful, clean_str, iso_timestamp, metadata_bytes, snapshot
from dreamlake._levels import RANK

from . import strategies
from .conftest import KEYS

# Metadata built to fool code that looks for record separators or `null`.
TRICKY = [
    None,
    {"loss": 0.5},
    {"rows": [{"timestamp": 1}, {"timestamp": 2}]},
    {"text": '},{"timestamp":"'},
    {"text": "null"},
    {"nothing": None},
    {"nan": float("nan")},
    {"big": 2**80},
]


def encode(entries: list[tuple[int, str, str, Any]], first: int) -> bytes:
    """The writer's way with queued entries: pushed, taken, formatted with numbers from `first`."""
    ring = Ring()
    ring.mark = 1 << 30  # no pressure: the writer's side is tested here
    for ns, level, message, metadata in entries:
        assert ring.push(ns, RANK[level], message, metadata) == 0
    assert ring.take(len(entries) + 1) == len(entries)
    return ring.format(first, [], metadata_bytes)


def lines(entries: list[tuple[int, str, str, Any]], first: int = 0) -> list[dict[str, Any]]:
    """Encode entries whose metadata is given as Python values, and parse the lines back."""
    queued = [(ns, level, msg, None if md is None else snapshot(md)) for ns, level, msg, md in entries]
    data = encode(queued, first)
    assert data == b"" or data.endswith(b"\n")
    return [orjson.loads(line) for line in data.split(b"\n")[:-1]]


@settings(max_examples=300, deadline=None)
@given(strategies.metadata)
def test_snapshot_reads_back_as_the_contract_says(metadata: dict[Any, Any]) -> None:
    assert strategies.expected_json(metadata) == orjson.loads(snapshot(metadata))  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(strategies.metadata)
def test_fast_path_and_careful_path_agree(metadata: dict[Any, Any]) -> None:
    assert orjson.loads(careful(metadata)) == orjson.loads(snapshot(metadata))  # type: ignore[arg-type]


def test_none_values_keep_the_fast_encoding() -> None:
    """A None next to finite numbers is not a NaN: the first encoding stands."""
    assert orjson.dumps({"val_loss": None, "loss": 0.5}) == snapshot({"val_loss": None, "loss": 0.5})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=repr)
@pytest.mark.parametrize("where", ["flat", "list", "nested"])
def test_nonfinite_floats_are_found_wherever_they_are(value: float, where: str) -> None:
    metadata = {"flat": {"x": value}, "list": {"x": [1, value]}, "nested": {"x": {"y": (None, value)}}}[where]
    assert strategies.expected_json(metadata) == orjson.loads(snapshot(metadata))  # type: ignore[arg-type]


@pytest.mark.parametrize("metadata", TRICKY, ids=repr)
def test_each_tricky_entry_makes_a_whole_record(metadata: Any) -> None:
    records = lines([(1_700_000_000 * 10**9, "info", f"m{i}", metadata) for i in range(3)], first=7)
    assert [(r["message"], r["sequenceNumber"]) for r in records] == [("m0", 7), ("m1", 8), ("m2", 9)]
    for record in records:
        assert list(record) == KEYS
        assert record["metadata"] == strategies.expected_json(metadata)


flat_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    strategies.texts,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["info", "warn"]),
            st.one_of(strategies.texts, st.sampled_from(['},{"timestamp":"', '"timestamp":"x"', "null"])),
            st.one_of(
                st.none(),
                st.dictionaries(st.one_of(strategies.texts, st.integers()), flat_values, max_size=4),
                st.sampled_from([{"timestamp": "2025-01-01"}, {"rows": [{"a": 1}, {"timestamp": "x"}]}]),
            ),
        ),
        max_size=12,
    )
)
def test_a_batch_holds_exactly_its_records(entries: list[tuple[str, str, Any]]) -> None:
    """Records are assembled from encoded parts: nothing in a message or a value can fake one."""
    queued = [
        (1_700_000_000 * 10**9 + i, level, msg, None if md is None else snapshot(md))
        for i, (level, msg, md) in enumerate(entries)
    ]
    data = encode(queued, 3)
    records = [orjson.loads(line) for line in data.split(b"\n")[:-1]]
    assert len(entries) == len(records)
    for (level, msg, md), record in zip(entries, records, strict=True):
        assert list(record) == KEYS
        assert (level, strategies.expected_json(msg), strategies.expected_json(md)) == (
            record["level"],
            record["message"],
            record["metadata"],
        )
    assert list(range(3, 3 + len(entries))) == [r["sequenceNumber"] for r in records]


def test_message_with_lone_surrogate_is_kept_visible() -> None:
    (record,) = lines([(0, "warn", "a\ud800b", None)])
    assert record["message"] == "a\\ud800b"


def test_empty_batch_is_empty() -> None:
    assert encode([], 0) == b""


def stamped(*stamps: int) -> list[str]:
    """The timestamps written for entries logged at `stamps` (ns), one batch each."""
    return [orjson.loads(encode([(ns, "info", "m", None)], 0))["timestamp"] for ns in stamps]


@given(st.lists(st.integers(min_value=0, max_value=2**63 - 1), min_size=1, max_size=20), st.booleans())
def test_timestamp_truncates_to_the_microsecond_in_utc(stamps: list[int], one_batch: bool) -> None:
    if one_batch:  # one batch for the whole list, so the cached second is exercised
        data = encode([(ns, "info", "m", None) for ns in stamps], 0)
        written = [orjson.loads(line)["timestamp"] for line in data.splitlines()]
    else:
        written = stamped(*stamps)
    for ns, text in zip(stamps, written, strict=True):
        expected = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=ns // 1000)
        assert expected.strftime("%Y-%m-%dT%H:%M:%S.%fZ") == text
        assert text == iso_timestamp(ns), "the echo shows the file's timestamp"


def test_timestamp_cache_survives_going_back_in_time() -> None:
    """The wall clock can step backwards (NTP); the cache must not reuse a stale prefix."""
    data = encode(
        [
            (ns, "info", "m", None)
            for ns in (1_700_000_001_500_000_000, 1_700_000_000_250_000_000, 1_700_000_000_250_500_999)
        ],
        0,
    )
    assert [orjson.loads(line)["timestamp"] for line in data.splitlines()] == [
        "2023-11-14T22:13:21.500000Z",
        "2023-11-14T22:13:20.250000Z",
        "2023-11-14T22:13:20.250500Z",
    ]


def test_snapshot_refuses_what_is_not_a_mapping() -> None:
    with pytest.raises(TypeError, match=r"metadata must be a mapping .* got list"):
        snapshot([1, 2])


class FakeTensor:
    def __init__(self, values: list[float]) -> None:
        self.values = values

    def detach(self) -> "FakeTensor":
        return self

    def clone(self) -> "FakeTensor":
        return FakeTensor(list(self.values))

    def tolist(self) -> list[float]:
        return self.values


def test_tensors_are_copied_now_and_converted_later(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    torch = types.ModuleType("torch")
    torch.Tensor = FakeTensor  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "torch", torch)
    tensor = FakeTensor([1.0, float("nan")])
    queued = snapshot({"t": tensor, "n": 1})
    tensor.values[0] = 99.0
    assert isinstance(queued, Deferred)
    assert {"t": [1.0, "NaN"], "n": 1} == orjson.loads(metadata_bytes(queued))


@pytest.mark.parametrize(
    "metadata",
    [
        {"a": None, "b": float("nan")},
        {"text": "null and void", "b": float("inf")},
        {"a": None, "rows": [None, -float("inf")]},
        {"rows": [None], "b": {"c": float("nan")}},
    ],
    ids=repr,
)
def test_a_nan_beside_nulls_that_are_not_nan_is_still_found(metadata: dict[str, Any]) -> None:
    assert strategies.expected_json(metadata) == orjson.loads(snapshot(metadata))  # type: ignore[arg-type]


@pytest.mark.parametrize("message", ["short", "x" * 5000, 'quote " back\\slash\nnewline ' * 100], ids=len)
def test_messages_short_and_long_are_encoded_alike(message: str) -> None:
    data = encode([(0, "info", message, None), (1, "warn", message, '{"a":1}')], 0)
    records = [orjson.loads(line) for line in data.split(b"\n")[:-1]]
    assert [(message, "info", None), (message, "warn", {"a": 1})] == [
        (r["message"], r["level"], r["metadata"]) for r in records
    ]


every_code_point = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None))


class Text(str):
    """A str subclass: the queue takes its text, not its methods."""

    def __str__(self) -> str:
        return "never called"


@settings(max_examples=500, deadline=None)
@given(every_code_point, st.booleans())
def test_a_message_is_escaped_as_orjson_escapes_it_and_reads_back(message: str, subclass: bool) -> None:
    """Any code point, NUL, lone surrogates, a str subclass: the line is JSON that gives the
    message back (lone surrogates as visible \\udXXX), its text byte for byte orjson's."""
    data = encode([(0, "info", Text(message) if subclass else message, None)], 0)
    assert data.count(b"\n") == 1 and data.endswith(b"\n")
    kept = clean_str(message)
    assert json.loads(data)["message"] == kept
    assert b',"message":' + orjson.dumps(kept) + b',"metadata":' in data


@pytest.mark.parametrize("special", [*map(chr, range(0x20)), '"', "\\", "\x7f", " ", "~", "é", "€", "😀"])
def test_a_character_to_escape_is_escaped_at_every_place_in_a_word(special: str) -> None:
    """The escaper copies runs of plain bytes 8 at a time: a character that must be escaped
    (or must not) at each offset of a 25-byte message, alone and twice in a row, gives
    orjson's text."""
    messages = []
    for at in range(25):
        messages.append("a" * at + special + "b" * (24 - at))
        messages.append("a" * at + special * 2 + "b" * (23 - at))
    data = encode([(0, "info", m, None) for m in messages], 0)
    for line, message in zip(data.splitlines(), messages, strict=True):
        assert b',"message":' + orjson.dumps(message) + b',"metadata":' in line


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**62), every_code_point), max_size=40), st.integers(0, 2**40))
def test_points_read_back_numbered_from_first(points: list[tuple[int, str]], first: int) -> None:
    ring = Ring(points=True)
    for ns, text in points:
        ring.push_point(ns, orjson.dumps({"t": clean_str(text)}))
    ring.take(len(points))
    data = ring.format(first, [], metadata_bytes)
    records = [json.loads(line) for line in data.splitlines()]
    assert [(first + i, {"t": clean_str(t)}, iso_timestamp(ns)) for i, (ns, t) in enumerate(points)] == [
        (r["index"], r["data"], r["createdAt"]) for r in records
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.integers(-(2**40), 2**62), st.sampled_from([0, 999, 1000, 10**9 - 1, 10**9])),
        max_size=20,
    ),
    st.one_of(st.integers(0, 2**62), st.sampled_from([0, 9, 10, 99, 100, 10**18])),
)
def test_timestamps_and_numbers_are_written_digit_for_digit(stamps: list[int], first: int) -> None:
    """The writer makes its digits itself: each line's timestamp is the ISO text of its time
    (microseconds, before 1970 too) and its number counts on from `first`."""
    records = lines([(ns, "info", "m", None) for ns in stamps], first)
    assert [(r["timestamp"], r["sequenceNumber"]) for r in records] == [
        (iso_timestamp(ns), first + i) for i, ns in enumerate(stamps)
    ]
