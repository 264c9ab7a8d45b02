"""`dreamlake bench`: one table of figures measured here, next to the floors, leaving nothing behind."""

import io
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from dreamlake._bench import _scenarios as _bench
from dreamlake._bench._contenders import CONTENDERS, DREAMLAKE, NOOP, SYNC, available


def bench(*args: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """Run `python -m dreamlake bench --quick` from an empty folder, with an empty TMPDIR."""
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "dreamlake", "bench", "--quick", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": str(tmp)},
    )
    assert result.returncode == 0, result.stderr
    return result, cwd, tmp


def test_quick_bench_prints_one_row_per_contender_and_leaves_nothing(tmp_path: Path) -> None:
    result, cwd, tmp = bench(tmp_path=tmp_path)
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "logger",
        "call",
        "p50",
        "call",
        "p99",
        "call",
        "max",
        "entries/s",
        "MB/s",
        "training",
        "overhead",
    ]
    names = [c.name for c in available()]
    rows = [line for line in lines[2 : 2 + len(names)]]
    assert [row[: len(name)] for row, name in zip(rows, names, strict=True)] == names
    assert "stdlib FileHandler+JSON" in names, "stdlib logging is always compared"
    assert "CPython" in result.stdout and "one run" in result.stdout
    assert result.stderr == "", "no progress line when stderr is not a terminal"
    assert list(cwd.iterdir()) == [], "bench writes nothing where it runs"
    assert list(tmp.iterdir()) == [], "bench removes its temporary folders"


def test_json_holds_every_figure(tmp_path: Path) -> None:
    result, _, tmp = bench("--json", tmp_path=tmp_path)
    report = orjson.loads(result.stdout)
    assert set(report) == {"environment", "settings", "results"}
    assert list(report["results"]) == [c.name for c in available()]
    for name, figures in report["results"].items():
        assert 0 < figures["p50_ns"] <= figures["p99_ns"] <= figures["max_ns"], name
        assert isinstance(figures["training_overhead_pct"], float), name
        if name == NOOP:
            assert figures["entries_per_s"] is None and figures["mb_per_s"] is None
        else:
            assert figures["entries_per_s"] > 0 and figures["mb_per_s"] > 0, name
    assert report["settings"]["runs"] == 1
    assert list(tmp.iterdir()) == []


def test_progress_goes_to_a_terminal_and_is_wiped(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal, one line says what runs now, and is cleared before the table."""
    monkeypatch.setattr(
        _bench, "available", lambda: [c for c in CONTENDERS if c.name in (NOOP, DREAMLAKE, SYNC)]
    )
    out, progress = io.StringIO(), io.StringIO()
    _bench.command(quick=True, as_json=False, out=out, progress=progress)
    shown = progress.getvalue()
    assert "[1/9] caller latency: no-op call" in shown and "[9/9] training loop: sync orjson writer" in shown
    assert shown.endswith("\r\x1b[K")
    assert out.getvalue().startswith("logger")


def test_a_contender_that_writes_wrong_output_fails_the_run(tmp_path: Path) -> None:
    """Figures of a writer that loses records are refused, not printed."""
    broken = _bench.Contender("loses one", "log(msg, 'debug', md)", _losing_setup, peer=False)
    with pytest.raises(AssertionError, match="loses one wrote 9 records, expected 10"):
        _bench.end_to_end([broken], 10, 10)


def _losing_setup(folder: Path):  # type: ignore[no-untyped-def]
    file = open(folder / "lost.jsonl", "ab")
    written = []

    def log(message: str, level: str, metadata: object) -> None:
        written.append(1)
        if len(written) > 1:
            file.write(orjson.dumps({"message": message}) + b"\n")

    return log, file.close


@pytest.mark.parametrize("shape", list(_bench.SHAPES))
def test_every_shape_is_written_whole_by_both_writers(shape: str) -> None:
    """The shapes table compares correct output: each shape's records land, parsed."""
    if "ARRAY" in _bench.SHAPES[shape]:
        pytest.importorskip("numpy")
    figures = _bench.end_to_end(available([DREAMLAKE, SYNC]), 50, 50, shape)
    assert set(figures) == {DREAMLAKE, SYNC}
    assert all(f["cpu"] > 0 for f in figures.values())


def test_bench_runs_with_stderr_closed(tmp_path: Path) -> None:
    """Started with `2>&-`, sys.stderr is None: no progress line, the figures all the same."""
    result = subprocess.run(
        ["sh", "-c", f'"{sys.executable}" -m dreamlake bench --quick --json 2>&-'],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == result.returncode
    assert set(orjson.loads(result.stdout)) == {"environment", "settings", "results"}
