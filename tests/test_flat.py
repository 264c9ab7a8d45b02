"""The core writes a flat dict's text itself (`_core.flat`, used by `log()`): byte for byte what
orjson writes, or nothing, and orjson decides."""

import math
import random
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dreamlake import Session, _core
from dreamlake._encode import NATIVE, native, snapshot_dict

from .strategies import texts

ROOT = Path(__file__).resolve().parent.parent
ascii_texts = st.text(st.characters(min_codepoint=0, max_codepoint=127), max_size=20)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)
flat_values = st.one_of(st.none(), st.booleans(), int64, finite, ascii_texts)
any_values = st.one_of(
    flat_values,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    texts,
    st.lists(st.integers(), max_size=2),
)


def orjson_text(metadata: dict[Any, Any]) -> bytes:
    return orjson.dumps(metadata, native, NATIVE)


def double(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", bits))[0])


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(ascii_texts, flat_values, max_size=12))
def test_a_flat_dict_is_written_natively_as_orjson_writes_it(metadata: dict[str, Any]) -> None:
    """...and as the Python path wrote it before (None as null, a str holding "null" as it is)."""
    assert _core.flat(metadata) == orjson_text(metadata) == snapshot_dict(metadata)


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(st.one_of(texts, st.integers()), any_values, max_size=6))
def test_any_other_dict_is_left_to_orjson_or_written_as_it_writes_it(metadata: dict[Any, Any]) -> None:
    got = _core.flat(metadata)
    if got is not None:
        assert got == orjson_text(metadata)


@settings(max_examples=3000, deadline=None)
@given(finite)
def test_every_finite_float_is_the_shortest_text_that_reads_back(value: float) -> None:
    got = _core.flat({"v": value})
    assert got == orjson_text({"v": value})
    assert got is not None and float(got[5:-1]) == value


def test_floats_from_every_exponent_and_random_bits_are_orjsons() -> None:
    rng = random.Random(18)
    values = [double(rng.getrandbits(64)) for _ in range(100_000)]
    values += [rng.random() for _ in range(20_000)]  # 16 and 17 digits: losses, accuracies
    values += [round(rng.random(), rng.randint(0, 9)) for _ in range(20_000)]  # short decimals
    values += [float(rng.randint(-(10**17), 10**17)) for _ in range(5_000)]
    for exponent in range(2**11 - 1):  # each binary exponent, with mantissas at its ends
        for mantissa in (0, 1, 2, 3, 2**51, 2**52 - 2, 2**52 - 1):
            values.append(double(exponent << 52 | mantissa))
    for power in range(-325, 309):  # each decimal exponent, at the bounds of fixed notation too
        for digits in ("1", "5", "9.999999999999999", "1.0000000000000002", "3.14159", "4.35"):
            values.append(float(f"{digits}e{power}"))
    wrong = [v for v in values if math.isfinite(v) and _core.flat({"v": v}) != orjson_text({"v": v})]
    assert wrong[:5] == []


@pytest.mark.parametrize(
    "metadata",
    [
        {"v": float("nan")},
        {"v": float("inf")},
        {"v": 2**63},
        {"v": -(2**63) - 1},
        {"v": "é"},
        {"é": 1},
        {1: 1},
        {"v": [1]},
        {"v": True, "w": 1.5, "x": "a" * 2000},  # more than the native buffer holds
    ],
    ids=[
        "nan",
        "inf",
        "int-over-int64",
        "int-under-int64",
        "non-ascii-value",
        "non-ascii-key",
        "int-key",
        "list",
        "long",
    ],
)
def test_what_the_core_does_not_write_is_left_to_orjson(metadata: dict[Any, Any]) -> None:
    assert _core.flat(metadata) is None


def test_subclasses_are_left_to_orjson_and_their_overrides() -> None:
    class Text(str):
        pass

    class Number(float):
        pass

    assert _core.flat({Text("k"): 1}) is None
    assert _core.flat({"k": Text("v")}) is None
    assert _core.flat({"k": Number(1.5)}) is None


def test_escapes_in_keys_and_values_are_orjsons() -> None:
    every_ascii = "".join(map(chr, range(128)))
    metadata = {every_ascii: every_ascii, 'a"b\\c': "\n\t\x00\x1f\x7f"}
    assert _core.flat(metadata) == orjson_text(metadata)


def test_a_logged_flat_dict_lands_as_orjsons_bytes(tmp_path: Path) -> None:
    metadata = {
        "loss": 0.6931471824645996,
        "lr": 1e-05,
        "step": 2**40,
        "ok": True,
        "note": 'say "hi"',
        "none": None,
    }
    with Session(name="n", workspace="w", local_path=str(tmp_path)) as session:
        session.log("step", metadata=metadata)
        session.log("long", metadata={"text": "x" * 5000})  # past the native buffer: orjson's path
    lines = session.log_file.read_bytes().splitlines()
    assert b'"metadata":' + orjson_text(metadata) + b',"sequenceNumber":0}' in lines[0]
    assert orjson.loads(lines[1])["metadata"] == {"text": "x" * 5000}


def test_a_dict_changed_by_another_thread_is_written_as_it_was_at_the_call(tmp_path: Path) -> None:
    """Each update() below is one step under the GIL: a record with "a" != "b" would be a torn read."""
    shared = {"a": 0, "b": 0}
    stop = threading.Event()

    def mutate() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            if n % 2:
                shared.update({"a": n, "b": n, "c": float(n)})
            else:
                shared.update({"a": -n, "b": -n})
                shared.pop("c")

    mutator = threading.Thread(target=mutate)
    with Session(name="t", workspace="w", local_path=str(tmp_path)) as session:
        mutator.start()
        try:
            seen: set[int] = set()
            for _ in range(2_000_000):  # until the other thread has changed it 20 times
                session.log("step", metadata=shared)
                seen.add(shared["a"])
                if len(seen) > 20:
                    break
        finally:
            stop.set()
            mutator.join()
    records = [orjson.loads(line) for line in session.log_file.read_bytes().splitlines()]
    assert len(seen) > 20, "the other thread never ran"
    assert [r["sequenceNumber"] for r in records] == list(range(len(records)))
    assert all(r["metadata"]["a"] == r["metadata"]["b"] for r in records)
    assert len({r["metadata"]["a"] for r in records}) >= 20  # the last change seen came after the last call


def test_the_power_tables_are_what_their_script_writes() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "pow5.py"), "--check"], check=False)
    assert result.returncode == 0, "src/dreamlake/_pow5.h differs: run python tools/pow5.py"
