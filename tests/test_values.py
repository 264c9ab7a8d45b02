"""Metadata values: written as they were at the call, never harmed, never harming the session."""

import json
import math
import subprocess
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dreamlake import Session
from dreamlake._encode import careful

from .conftest import read_records

RunPython = Callable[..., subprocess.CompletedProcess[str]]


class Stamp(datetime):
    """A datetime subclass, as pandas.Timestamp and arrow types are."""


class Day(date):
    """A date subclass."""


class Opaque:
    def __str__(self) -> str:
        return "opaque"


def child_records(tmp_path: Path) -> list[dict[str, Any]]:
    return read_records(tmp_path / "data" / "w" / "n" / "logs.jsonl")


# -- values as at the call -------------------------------------------------------------------


def _nested_list() -> tuple[Any, Callable[[Any], None], Any]:
    value = [[1, 2], [3, [4]]]

    def change(v: Any) -> None:
        v[0].append(99)
        v[1][1][0] = -4

    return value, change, [[1, 2], [3, [4]]]


def _nested_dict() -> tuple[Any, Callable[[Any], None], Any]:
    value = {"a": {"b": 1, "c": {"d": 2}}}

    def change(v: Any) -> None:
        v["a"]["b"] = 100
        v["a"]["c"]["e"] = 3

    return value, change, {"a": {"b": 1, "c": {"d": 2}}}


def _numpy_array() -> tuple[Any, Callable[[Any], None], Any]:
    value = np.array([[1.0, 2.0], [3.0, 4.0]])

    def change(v: Any) -> None:
        v[0, 0] = 100.0
        v *= 2

    return value, change, [[1.0, 2.0], [3.0, 4.0]]


@pytest.mark.parametrize("make", [_nested_list, _nested_dict, _numpy_array], ids=["list", "dict", "ndarray"])
def test_value_changed_in_place_after_log_is_written_as_at_the_call(
    tmp_path: Path, make: Callable[[], tuple[Any, Callable[[Any], None], Any]]
) -> None:
    """A nested container or array changed right after log() reads back as it was at the call."""
    value, change, expected = make()
    with Session(name="n", workspace="w", local_path=tmp_path, write_interval=3600) as s:
        s.log("step", metadata={"v": value})
        change(value)
        s.flush()
    assert {"v": expected} == read_records(s.log_file)[0]["metadata"]


# -- a value whose str() raises a BaseException ------------------------------------------------


@pytest.mark.parametrize("raised", ["asyncio.CancelledError()", "Boom()"])
def test_str_raising_a_base_exception_does_not_break_the_session(
    run_python: RunPython, tmp_path: Path, raised: str
) -> None:
    """log() does not raise; the entry is written with the value as text; later calls all work."""
    result = run_python(
        f"""
        import asyncio
        from dreamlake import Session
        class Boom(BaseException):
            pass
        class Hostile:
            def __str__(self):
                raise {raised}
        s = Session(name="n", workspace="w", local_path="data").open()
        s.log("before")
        s.log("hostile", metadata={{"v": Hostile(), "n": 1}})
        s.log("after")
        s.flush()
        s.log("later")
        s.flush()
        s.close()
        print("ok")
        """,
        timeout=60,
    )
    assert "ok" == result.stdout.strip(), result.stderr[-3000:]
    records = child_records(tmp_path)
    assert ["before", "hostile", "after", "later"] == [r["message"] for r in records]
    hostile = records[1]["metadata"]
    assert 1 == hostile["n"]
    assert isinstance(hostile["v"], str)


# -- tensors, files and sockets once torch is imported ---------------------------------------

FAKE_TORCH = """
import sys, types
torch = types.ModuleType("torch")
class Tensor:
    '''Like torch.Tensor: detach() shares storage with the original, clone() copies it.'''
    def __init__(self, data):
        self.data = data
    def detach(self):
        return Tensor(self.data)
    def clone(self):
        return Tensor(list(self.data))
    def cpu(self):
        return self
    def tolist(self):
        return list(self.data)
torch.Tensor = Tensor
sys.modules["torch"] = torch
import json
from dreamlake import Session
s = Session(name="n", workspace="w", local_path="data", write_interval=3600).open()
"""


def test_text_file_in_metadata_is_not_detached_and_is_written_as_text(
    run_python: RunPython, tmp_path: Path
) -> None:
    """With torch imported, a file object passed as a value stays usable and is written as its str()."""
    result = run_python(
        FAKE_TORCH
        + """
f = open("notes.txt", "w")
text = str(f)
s.log("file", metadata={"f": f})
s.flush()
try:
    f.write("still usable\\n")
    f.close()
    usable = True
except Exception as exc:
    usable = repr(exc)
s.close()
print(json.dumps({"usable": usable, "text": text}))
""",
    )
    out = json.loads(result.stdout)
    assert True is out["usable"], result.stderr[-3000:]
    assert "still usable\n" == (tmp_path / "notes.txt").read_text()
    assert {"f": out["text"]} == child_records(tmp_path)[0]["metadata"]


def test_socket_in_metadata_is_not_detached_and_is_written_as_text(
    run_python: RunPython, tmp_path: Path
) -> None:
    """With torch imported, a socket passed as a value stays open and is written as its str()."""
    result = run_python(
        FAKE_TORCH
        + """
import socket
a, b = socket.socketpair()
text = str(a)
s.log("socket", metadata={"sock": a})
s.flush()
try:
    a.sendall(b"ping")
    usable = b.recv(4) == b"ping"
except Exception as exc:
    usable = repr(exc)
s.close()
print(json.dumps({"usable": usable, "text": text}))
""",
    )
    out = json.loads(result.stdout)
    assert True is out["usable"], result.stderr[-3000:]
    assert {"sock": out["text"]} == child_records(tmp_path)[0]["metadata"]


def test_tensor_changed_in_place_after_log_is_written_as_at_the_call(
    run_python: RunPython, tmp_path: Path
) -> None:
    """A tensor updated in place (an optimizer step) after log() reads back with its value at the call."""
    result = run_python(
        FAKE_TORCH
        + """
weights = Tensor([1.0, 2.0])
s.log("step", metadata={"w": weights})
weights.data[0] = 100.0
s.close()
print("ok")
""",
    )
    assert "ok" == result.stdout.strip(), result.stderr[-3000:]
    assert {"w": [1.0, 2.0]} == child_records(tmp_path)[0]["metadata"]


# -- keys and values JSON cannot hold as they are ----------------------------------------------


def test_int_key_and_str_key_with_the_same_text_are_both_kept(session: Session) -> None:
    """{1: "a", "1": "b"}: both values are written, under distinct keys."""
    session.log("keys", metadata={1: "a", "1": "b"})
    session.flush()
    metadata = read_records(session.log_file)[0]["metadata"]
    assert "b" == metadata["1"]
    others = [key for key in metadata if key != "1"]
    assert 1 == len(others)
    assert others[0].startswith("1")
    assert "a" == metadata[others[0]]


def test_datetime_subclass_is_written_as_iso_8601(session: Session) -> None:
    """A datetime subclass is written like a datetime: ISO 8601 with a T."""
    session.log("when", metadata={"t": Stamp(2025, 1, 1)})
    session.flush()
    assert {"t": "2025-01-01T00:00:00"} == read_records(session.log_file)[0]["metadata"]


@pytest.mark.parametrize(
    ("odd", "written"),
    [(Stamp(2025, 1, 1), "2025-01-01T00:00:00"), (Day(2025, 1, 2), "2025-01-02"), (Opaque(), "opaque")],
    ids=["datetime-subclass", "date-subclass", "object"],
)
def test_nan_next_to_an_unserializable_value_leaves_the_other_values_untouched(
    session: Session, odd: Any, written: str
) -> None:
    """NaN is written "NaN", the odd value as its text, every other value as it is."""
    session.log("mixed", metadata={"nan": math.nan, "odd": odd, "n": 1, "s": "text", "l": [1, 2.5]})
    session.flush()
    expected = {"nan": "NaN", "odd": written, "n": 1, "s": "text", "l": [1, 2.5]}
    assert expected == read_records(session.log_file)[0]["metadata"]


# -- echo ---------------------------------------------------------------------------------------------


def test_echo_of_an_integer_beyond_64_bits_does_not_raise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """echo=True: 2**70 in metadata neither makes log() raise nor goes missing."""
    with Session(name="n", workspace="w", local_path=tmp_path, echo=True) as s:
        s.log("big", metadata={"n": 2**70})
    err = capsys.readouterr().err
    assert str(2**70) in err
    assert {"n": str(2**70)} == read_records(s.log_file)[0]["metadata"]


def test_echo_writes_nan_as_nan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """echo=True: a NaN is echoed as NaN, never as null."""
    with Session(name="n", workspace="w", local_path=tmp_path, echo=True) as s:
        s.log("loss", metadata={"loss": math.nan})
    (line,) = capsys.readouterr().err.splitlines()
    assert "NaN" in line
    assert "null" not in line


def test_echoed_line_carries_the_timestamp_of_its_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """echo=True: each echoed line shows exactly the timestamp string of the record in the file."""
    with Session(name="n", workspace="w", local_path=tmp_path, echo=True) as s:
        for i in range(20):
            s.log("tick", metadata={"i": i})
    lines = capsys.readouterr().err.splitlines()
    stamps = [r["timestamp"] for r in read_records(s.log_file)]
    assert 20 == len(lines)
    assert [True] * 20 == [stamp in line for stamp, line in zip(stamps, lines, strict=True)]


def test_a_value_that_lies_about_its_class_costs_nothing_but_itself(session: Session) -> None:
    """A Mock(spec=float) claims to be a float: it is written as text and the writer goes on."""
    from unittest import mock

    session.log("mock", metadata={"loss": 0.25, "opt": mock.Mock(spec=float)})
    session.log("message", metadata={"m": mock.Mock(spec=dict)})
    session.log(mock.Mock(spec=str))
    session.log("after", metadata={"loss": 0.5})
    session.flush()
    records = read_records(session.log_file)
    assert ["mock", "message", "after"] == [r["message"] for r in records if not r["message"].startswith("<")]
    assert 0.25 == records[0]["metadata"]["loss"]
    assert records[0]["metadata"]["opt"].startswith("<Mock")
    assert {"loss": 0.5} == records[-1]["metadata"]


def test_a_value_whose_attribute_raises_costs_only_that_value(session: Session) -> None:
    """A dataclass field whose getter raises: that field's value is text, its neighbours stay JSON."""
    import dataclasses

    class Raises:
        def __get__(self, obj: object, owner: type) -> int:
            raise RuntimeError("getter raises")

    @dataclasses.dataclass
    class Config:
        a: int = 1

    Config.a = Raises()  # type: ignore[assignment]
    session.log("x", metadata={"loss": 0.25, "cfg": Config.__new__(Config), "s": {1}})
    session.flush()
    (record,) = read_records(session.log_file)
    assert 0.25 == record["metadata"]["loss"]
    assert [1] == record["metadata"]["s"]
    assert isinstance(record["metadata"]["cfg"], str)


# -- None, NaN and "null": the hot path's count against the careful path ----------------------

_plain = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    st.sampled_from(["null", "a null", "nan", "NaN", ""]),
)
_value = st.one_of(
    _plain, st.lists(_plain, max_size=3), st.dictionaries(st.sampled_from(["k", "null"]), _plain)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.dictionaries(st.sampled_from(["a", "b", "null", "n"]), _value, max_size=4), max_size=8))
def test_a_dict_with_nones_nans_and_null_text_is_written_as_the_careful_path_writes_it(
    tmp_path: Path, metadatas: list[dict[str, Any]]
) -> None:
    """The hot path trusts orjson's text when its nulls are exactly the dict's None values;
    anything else (a NaN anywhere, "null" in a string, a nested None) must come out as the
    careful path writes it: NaN as "NaN", None as null, text as it was."""
    expected = [orjson.loads(careful(md)) for md in metadatas]
    with Session(name="n", workspace="w", local_path=tmp_path / str(len(list(tmp_path.iterdir())))) as s:
        for md in metadatas:
            s.log("m", metadata=md)
        path = s.log_file
    assert [r["metadata"] for r in read_records(path)] == expected
