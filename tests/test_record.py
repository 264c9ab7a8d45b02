"""The record: key order, timestamp, numbering, and how metadata values are written."""

import datetime as dt
import enum
import re
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from dreamlake import Session

from . import strategies
from .conftest import KEYS, read_records

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def logged(session: Session, metadata: Any) -> Any:
    session.log("m", metadata=metadata)
    session.flush()
    return read_records(session.log_file)[-1]["metadata"]


def test_line_layout(session: Session) -> None:
    """One UTF-8 JSON object per line, keys in contract order, newline-terminated."""
    session.log("héllo\nwörld ✓", metadata={"k": "v"})
    session.flush()
    raw = session.log_file.read_bytes()
    assert raw.count(b"\n") == 1 and raw.endswith(b"\n")
    record = orjson.loads(raw)
    assert list(record) == KEYS
    assert record["message"] == "héllo\nwörld ✓"
    assert "héllo".encode() in raw, "non-ASCII text is written as UTF-8, not escaped"


def test_timestamp_is_taken_at_the_call_not_when_written(session: Session) -> None:
    """The writer formats the line later; the time in it is the call's, to the microsecond."""
    before = time.time_ns() // 1000
    session.log("stamped")
    after = time.time_ns() // 1000
    while time.time_ns() // 1000 < after + 20_000:  # 20 ms of work before the write
        pass
    session.flush()
    (stamp,) = [r["timestamp"] for r in read_records(session.log_file)]
    assert ISO_UTC.match(stamp)
    micros = dt.datetime.fromisoformat(stamp[:-1]).replace(tzinfo=dt.timezone.utc).timestamp() * 1e6
    assert before <= round(micros) <= after


def test_timestamp_matches_the_wall_clock(session: Session) -> None:
    before = time.time_ns() // 1000
    for _ in range(2000):
        session.log("now")
    after = time.time_ns() // 1000
    session.flush()
    stamps = [r["timestamp"] for r in read_records(session.log_file)]
    assert all(ISO_UTC.match(s) for s in stamps)
    micros = [
        int(dt.datetime.fromisoformat(s[:-1]).replace(tzinfo=dt.timezone.utc).timestamp()) * 1_000_000
        + int(s[-7:-1])
        for s in stamps
    ]
    assert before <= micros[0] and micros[-1] <= after
    assert micros == sorted(micros)


def test_sequence_numbers_follow_file_order(session: Session) -> None:
    for i in range(5000):
        session.log(str(i))
    session.flush()
    got = read_records(session.log_file)
    assert [r["sequenceNumber"] for r in got] == list(range(5000))
    assert [r["message"] for r in got] == [str(i) for i in range(5000)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        ([1.0, float("nan"), {"x": float("inf")}], [1.0, "NaN", {"x": "Infinity"}]),
        ((1, 2), [1, 2]),
        (None, None),
        (2**64 - 1, 2**64 - 1),
        (2**64, str(2**64)),
        (-(2**63) - 1, str(-(2**63) - 1)),
        ("a\ud800b", "a\\ud800b"),
        (dt.datetime(2025, 10, 25, 10, 30, 0, 5), "2025-10-25T10:30:00.000005"),
        (
            dt.datetime(2025, 10, 25, 10, 30, tzinfo=dt.timezone.utc),
            "2025-10-25T10:30:00+00:00",
        ),
        (dt.date(2025, 10, 25), "2025-10-25"),
        (Decimal("1.10"), "1.10"),
        (Path("a/b"), str(Path("a/b"))),
        (b"raw", "b'raw'"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (frozenset({3}), [3]),
    ],
    ids=repr,
)
def test_metadata_value_conversion(session: Session, value: Any, expected: Any) -> None:
    assert logged(session, {"v": value}) == {"v": expected}


def test_sets_become_lists(session: Session) -> None:
    assert sorted(logged(session, {"s": {3, 1, 2}})["s"]) == [1, 2, 3]


def test_enums_are_written_by_value(session: Session) -> None:
    class Phase(enum.Enum):
        TRAIN = "train"

    assert logged(session, {"p": Phase.TRAIN}) == {"p": "train"}


def test_non_str_keys_become_str(session: Session) -> None:
    assert logged(session, {1: "a", 2.5: "b", None: "c", (1, 2): "d", True: "e"}) == {  # noqa: F601 - True is 1
        "1": "e",
        "2.5": "b",
        "None": "c",
        "(1, 2)": "d",
    }


def test_cycles_are_written_as_text(session: Session) -> None:
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = loop
    items: list[Any] = [1]
    items.append(items)
    assert logged(session, {"d": loop, "l": items}) == {
        "d": {"name": "loop", "self": "{...}"},
        "l": [1, "[...]"],
    }


def test_deep_nesting_is_written(session: Session) -> None:
    deep: Any = "leaf"
    for _ in range(500):
        deep = [deep]
    got = logged(session, {"deep": deep})
    text = orjson.dumps(got).decode()
    assert "leaf" in text


def test_unknown_objects_become_their_str(session: Session) -> None:
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    class Broken:
        def __str__(self) -> str:
            raise ValueError("boom")

        def __repr__(self) -> str:
            raise ValueError("boom")

    assert logged(session, {"t": Thing(), "b": Broken()}) == {
        "t": "a thing",
        "b": "<unprintable test_unknown_objects_become_their_str.<locals>.Broken object>",
    }


def test_numpy_values(session: Session) -> None:
    np = pytest.importorskip("numpy")
    metadata = {
        "f32": np.float32(0.5),
        "f64": np.float64(0.25),
        "i64": np.int64(-3),
        "u8": np.uint8(200),
        "bool": np.bool_(True),
        "arr": np.arange(6).reshape(2, 3),
        "farr": np.array([0.5, np.nan, np.inf], dtype=np.float32),
        "strided": np.arange(10)[::3],
        "nan64": np.float64("nan"),
        "nan32": np.float32("nan"),
        "obj": np.array([1, "a"], dtype=object),
    }
    assert logged(session, metadata) == {
        "f32": 0.5,
        "f64": 0.25,
        "i64": -3,
        "u8": 200,
        "bool": True,
        "arr": [[0, 1, 2], [3, 4, 5]],
        "farr": [0.5, "NaN", "Infinity"],
        "strided": [0, 3, 6, 9],
        "nan64": "NaN",
        "nan32": "NaN",
        "obj": [1, "a"],
    }


def test_a_bad_value_costs_no_neighbour(session: Session) -> None:
    """Entries around an awkward one land, in order, with their own numbers."""
    session.log("before", metadata={"ok": 1})
    session.log("awkward", metadata={"big": 2**100, "nan": float("nan"), "s": "\udfff"})
    session.log("after", metadata={"ok": 2})
    session.flush()
    got = read_records(session.log_file)
    assert [(r["message"], r["sequenceNumber"]) for r in got] == [
        ("before", 0),
        ("awkward", 1),
        ("after", 2),
    ]


def test_message_with_lone_surrogate(session: Session) -> None:
    session.log("x\udc80y")
    session.flush()
    assert read_records(session.log_file)[0]["message"] == "x\\udc80y"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(metadata=strategies.metadata)
def test_any_metadata_round_trips_as_the_contract_says(tmp_path: Path, metadata: dict) -> None:
    with Session(name="prop", workspace="ws", local_path=tmp_path) as session:
        session.log("before")
        session.log("value", metadata=metadata)
        session.log("after")
        session.flush()
        got = read_records(session.log_file)[-3:]
    assert [r["message"] for r in got] == ["before", "value", "after"]
    assert got[1]["metadata"] == strategies.expected_json(metadata)
