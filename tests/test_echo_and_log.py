"""echo= prints records as they are logged; dreamlake.log() needs no setup."""

import subprocess
import sys
from pathlib import Path

import pytest

import dreamlake
from dreamlake import Session

from .conftest import read_records


def test_echo_prints_readable_records_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Session(name="n", workspace="w", local_path=tmp_path, echo=True) as s:
        s.log("loss went up", level="WARNING", metadata={"loss": 0.9})
        with pytest.raises(ValueError):
            s.log("bad", level="loud")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert "WARN" in err[0] and "loss went up" in err[0] and "loss=0.9" in err[0]
    assert [r["message"] for r in read_records(s.log_file)] == ["loss went up"]


def test_no_echo_prints_nothing(session: Session, capsys: pytest.CaptureFixture[str]) -> None:
    session.log("quiet")
    assert capsys.readouterr() == ("", "")


def test_module_log_goes_to_the_innermost_open_session(tmp_path: Path) -> None:
    with Session(name="outer", workspace="w", local_path=tmp_path) as outer:
        dreamlake.log("to outer")
        with Session(name="inner", workspace="w", local_path=tmp_path) as inner:
            dreamlake.log("to inner", level="warn", metadata={"k": 1})
        dreamlake.log("to outer again")
    assert [r["message"] for r in read_records(outer.log_file)] == ["to outer", "to outer again"]
    assert [(r["message"], r["metadata"]) for r in read_records(inner.log_file)] == [("to inner", {"k": 1})]


def test_module_log_without_a_session_opens_a_default_one(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("from dreamlake import log\nfor x in range(3):\n    log('x', metadata={'x': x})\n")
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    (log_file,) = (tmp_path / ".dreamlake" / "default").glob("train-*/logs.jsonl")
    assert [r["metadata"]["x"] for r in read_records(log_file)] == [0, 1, 2]
    assert f"logging to {log_file.relative_to(tmp_path)}" in result.stderr
    assert result.stderr.count("x=") == 3, "the default session echoes like print()"
