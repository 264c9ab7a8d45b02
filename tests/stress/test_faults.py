"""Full disks, files deleted under us, a full queue, and hostile input."""

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dreamlake import Session, _batcher, read_params

from .. import strategies
from ..conftest import python_writer_only
from .conftest import Child, assert_numbered_in_file_order


def test_file_size_limit_then_recovery(child: Child) -> None:
    """EFBIG from RLIMIT_FSIZE: reported once, raised by flush(), then every entry lands once."""
    result = child.run(
        """
        import resource
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))
        s = session().open()
        for i in range(2000):
            s.log("x", metadata={"i": i})
        try:
            s.flush()
        except OSError as exc:
            print("raised:", exc)
        for i in range(2000, 2500):
            s.log("x", metadata={"i": i})
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        s.close()
        print("closed")
        """
    )
    assert "raised:" in result.stdout and "logs.jsonl" in result.stdout, result.stderr
    assert "entries are kept" in result.stdout
    assert result.stdout.strip().endswith("closed"), result.stderr
    assert result.stderr.count("dreamlake:") <= 1, "the writer thread reports a fault once"
    records = child.records()
    assert [r["metadata"]["i"] for r in records] == list(range(2500))
    assert_numbered_in_file_order(records)


def test_session_folder_deleted_while_open(tmp_path: Path) -> None:
    """The writer notices its file is gone and starts a new one instead of writing into the void."""
    with Session(name="n", workspace="w", local_path=tmp_path) as s:
        s.log("before")
        s.flush()
        shutil.rmtree(s.path)
        s.log("after")
        s.flush()
        data = s.log_file.read_bytes()
    assert [orjson.loads(line)["message"] for line in data.splitlines()] == ["after"]


def test_drop_policy_drops_new_entries_and_says_how_many(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With when_full='drop' a stuck disk never blocks log(); warn records count every loss."""
    gate = threading.Event()
    real_write = os.write

    def stuck_write(fd: int, data: Any) -> int:
        gate.wait(30)
        return real_write(fd, data)

    total = 3 * _batcher.QUEUE_LIMIT
    with Session(name="n", workspace="w", local_path=tmp_path, when_full="drop") as s:
        python_writer_only(monkeypatch, s)
        monkeypatch.setattr(os, "write", stuck_write)
        done = threading.Event()

        def burst() -> None:
            for i in range(total):
                s.log("x", metadata={"i": i})
            done.set()

        threading.Thread(target=burst, daemon=True).start()
        assert done.wait(30), "log() blocked although the session drops when full"
        gate.set()
        monkeypatch.undo()
    records = [orjson.loads(line) for line in s.log_file.read_bytes().splitlines()]
    notices = [r for r in records if r["level"] == "warn"]
    kept = [r["metadata"]["i"] for r in records if r["level"] != "warn"]
    assert notices, "a warn record says entries were dropped"
    assert sum(n["metadata"]["dropped"] for n in notices) == total - len(kept)
    assert kept == sorted(kept) and len(kept) < total
    assert_numbered_in_file_order(records)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "0.1"])
def test_write_interval_must_be_a_positive_number(tmp_path: Path, bad: Any) -> None:
    with pytest.raises((ValueError, TypeError), match="write_interval"):
        Session(name="n", workspace="w", local_path=tmp_path, write_interval=bad)


def test_when_full_must_be_wait_or_drop(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"when_full.*'wait'.*'drop'"):
        Session(name="n", workspace="w", local_path=tmp_path, when_full="block")  # type: ignore[arg-type]


class Raising:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


hostile_values = st.recursive(
    st.one_of(
        strategies.values,
        st.binary(max_size=10),
        st.builds(Raising),
        st.just(float("nan")),
        st.integers(min_value=2**64, max_value=2**200),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.integers(), children, max_size=3)
    ),
    max_leaves=10,
)
messages = st.one_of(strategies.texts, st.text(alphabet='\n\r\t\x00\x1b"\\', max_size=20), st.builds(Raising))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=messages, metadata=st.dictionaries(strategies.texts, hostile_values, max_size=4))
def test_hostile_input_is_written_and_costs_no_neighbour(
    tmp_path: Path, message: Any, metadata: dict[str, Any]
) -> None:
    with Session(name="h", workspace="w", local_path=tmp_path) as s:
        before = len(s.log_file.read_bytes().splitlines())
        s.log("before")
        s.log(message, metadata=metadata)
        s.log("after")
        s.flush()
        lines = s.log_file.read_bytes().splitlines()[before:]
    records = [orjson.loads(line) for line in lines]
    assert [r["message"] for r in records][::2] == ["before", "after"]
    assert len(records) == 3


def test_ten_megabyte_message(session: Session) -> None:
    big = "x" * (10 * 1024 * 1024)
    session.log(big)
    session.log("next")
    session.flush()
    lines = session.log_file.read_bytes().splitlines()
    assert orjson.loads(lines[0])["message"] == big
    assert orjson.loads(lines[1])["message"] == "next"


def test_a_reader_that_drops_a_partial_tail_sees_only_whole_records(child: Child) -> None:
    """A reader of a file being written only needs to drop a trailing partial line."""
    result = child.run(
        """
        import threading
        s = session().open()
        def flood():
            for i in range(50000):
                s.log("f", metadata={"i": i})
        t = threading.Thread(target=flood); t.start()
        seen = 0
        while t.is_alive():
            data = s.log_file.read_bytes()
            whole = data[: data.rfind(b"\\n") + 1]
            import orjson
            for line in whole.splitlines():
                orjson.loads(line)
            seen = max(seen, whole.count(b"\\n"))
        t.join(); s.close()
        print("ok", seen)
        """,
        timeout=120,
    )
    assert result.stdout.startswith("ok"), result.stderr


@pytest.mark.parametrize("delay", [0.05, 0.09, 0.13, 0.21, 0.29])
def test_sigkill_during_parameters_set_leaves_the_old_or_the_new_file(child: Child, delay: float) -> None:
    """parameters.json is replaced whole: a kill at any moment leaves a complete object."""
    with child.start(
        """
s = session().open()
i = 0
while True:
    s.params(step=i, blob="x" * 2_000_000)
    if i == 0:
        print("ready", flush=True)
    i += 1
"""
    ) as proc:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(delay)  # ok: paces the kill, so it lands at some point of a rewrite
        proc.kill()
        proc.wait(timeout=30)
    params = read_params(child.log_file.parent)
    assert params["step"] >= 0 and params["blob"] == "x" * 2_000_000
