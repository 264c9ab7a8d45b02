"""The encoder: its fast path agrees with checking every line for lost NaNs."""

import datetime as dt
from collections import deque
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamlake._encode import Encoder

from . import strategies

# Metadata built to fool a splitter that looks for record separators or `null`.
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


def encode(entries: list[tuple[int, str, str, Any]], first: int = 0) -> bytes:
    return bytes(Encoder().encode(entries, first))


def reference(entries: list[tuple[int, str, str, Any]], first: int = 0) -> bytes:
    out, _ = Encoder()._lines(entries, first, check=True)
    return bytes(out)


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=4 * 10**18),
            st.sampled_from(["debug", "info", "warn"]),
            st.one_of(strategies.texts, st.sampled_from(['},{"timestamp":', "null", ""])),
            st.one_of(st.sampled_from(TRICKY), strategies.metadata),
        ),
        max_size=12,
    ),
    st.integers(min_value=0, max_value=2**40),
)
@settings(max_examples=300, deadline=None)
def test_batch_encoding_equals_checking_every_line(entries: list, first: int) -> None:
    assert encode(entries, first) == reference(entries, first)


@pytest.mark.parametrize("metadata", TRICKY, ids=repr)
def test_each_tricky_batch_splits_into_whole_records(metadata: Any) -> None:
    entries = [(1_700_000_000 * 10**9, "info", f"m{i}", metadata) for i in range(3)]
    lines = encode(entries).split(b"\n")
    assert lines[-1] == b""
    records = [orjson.loads(line) for line in lines[:-1]]
    assert [(r["message"], r["sequenceNumber"]) for r in records] == [
        ("m0", 0),
        ("m1", 1),
        ("m2", 2),
    ]


def test_empty_batch_is_empty() -> None:
    assert encode([]) == b""


@given(st.lists(st.integers(min_value=0, max_value=2**63 // 1000), min_size=1, max_size=20))
def test_timestamp_truncates_to_the_microsecond_in_utc(stamps: list[int]) -> None:
    encoder = Encoder()  # one encoder for the whole list, so its cache is exercised
    for ns in stamps:
        expected = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=ns // 1000)
        assert encoder.timestamp(ns) == expected.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_timestamp_cache_survives_going_back_in_time() -> None:
    """The wall clock can step backwards (NTP); the cache must not reuse a stale prefix."""
    encoder = Encoder()
    assert encoder.timestamp(1_700_000_001_500_000_000) == "2023-11-14T22:13:21.500000Z"
    assert encoder.timestamp(1_700_000_000_250_000_000) == "2023-11-14T22:13:20.250000Z"
    assert encoder.timestamp(1_700_000_000_250_500_999) == "2023-11-14T22:13:20.250500Z"
