"""`dreamlake bench`: one table of figures measured here, next to the floors, leaving nothing behind."""

import io
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from dreamlake._bench import _scenarios as _bench
from dreamlake._bench import _whole_run
from dreamlake._bench._contenders import CONTENDERS, DREAMLAKE, NOOP, SYNC, Contender, available


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
    whole = lines.index(next(line for line in lines if line.startswith("whole run ")))
    ran = [c.name for c in _whole_run.contenders()]  # loguru's enqueue mode is left out
    assert [row[: len(name)] for row, name in zip(lines[whole + 3 :], ran, strict=False)] == ran
    assert lines[whole + 3 + len(ran)].startswith("dreamlake / sync")
    assert "2.5% of the steps of benchmarks/report.py's whole run" in result.stdout, "says it is cut short"
    assert result.stderr == "", "no progress line when stderr is not a terminal"
    assert list(cwd.iterdir()) == [], "bench writes nothing where it runs"
    assert list(tmp.iterdir()) == [], "bench removes its temporary folders"


def test_json_holds_every_figure(tmp_path: Path) -> None:
    result, _, tmp = bench("--json", tmp_path=tmp_path)
    report = orjson.loads(result.stdout)
    assert set(report) == {"environment", "settings", "results", "whole_run"}
    assert list(report["results"]) == [c.name for c in available()]
    whole = report["whole_run"]
    assert whole["runs"] == 1 and whole["steps_fraction"] == 0.025
    assert list(whole["kinds"]) == [k.label for k in _whole_run.KINDS]
    for kind in whole["kinds"].values():
        assert list(kind["contenders"]) == [c.name for c in _whole_run.contenders()]
        assert kind["contenders"][NOOP]["wall_overhead_pct"] == 0.0
        assert all(isinstance(f["cpu_overhead_pct"], float) for f in kind["contenders"].values())
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
    assert (
        "[1/18] caller latency: no-op call" in shown and "[9/18] training loop: sync orjson writer" in shown
    )
    assert "[10/18] whole run 1/1, 70 µs GIL-free, 1 log: no-op call" in shown
    assert "[18/18] whole run 1/1, 70 µs GIL-bound, 1 log: sync orjson writer" in shown
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
    assert set(orjson.loads(result.stdout)) == {"environment", "settings", "results", "whole_run"}


WHOLE = [NOOP, DREAMLAKE, SYNC, "stdlib FileHandler+JSON"]


def test_whole_run_reports_each_kind_and_contender(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny whole run (a child process per contender and kind, 1 run): every figure is there;
    nothing is left in the temporary folder."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    shown: list[str] = []
    result = _whole_run.whole_run(available(WHOLE), runs=1, fraction=0.001, progress=shown.append)
    assert shown[0] == "whole run 1/1, 70 µs GIL-free, 1 log: no-op call"
    assert len(shown) == len(_whole_run.KINDS) * len(WHOLE)
    assert result["runs"] == 1
    assert list(result["kinds"]) == [k.label for k in _whole_run.KINDS]
    for kind, spec in zip(result["kinds"].values(), _whole_run.KINDS, strict=True):
        assert kind["steps"] == round(spec.steps * 0.001) and kind["logs_per_step"] == spec.logs
        assert kind["gil_bound"] is spec.gil_bound
        assert ("Python loop" if spec.gil_bound else "sha256") in kind["work"]
        assert kind["step_us"] > 0
        assert list(kind["contenders"]) == WHOLE
        for name, f in kind["contenders"].items():
            assert 0 < f["wall_s"] < f["process_wall_s"], name
            assert f["cpu_s"] > 0 and len(f["wall_runs_s"]) == 1, name
            assert isinstance(f["wall_overhead_pct"], float) and isinstance(f["cpu_overhead_pct"], float)
        floor = kind["contenders"][NOOP]
        assert floor["wall_overhead_pct"] == floor["cpu_overhead_pct"] == floor["process_overhead_s"] == 0
        for key in ("dreamlake_vs_sync_wall", "dreamlake_vs_sync_cpu"):
            assert kind[key] is None or isinstance(kind[key], float)  # type: ignore[literal-required]
    text = _whole_run.table(result).splitlines()
    assert text[1].split()[:3] == ["whole", "run", "70"]
    assert [line.split("  ")[0] for line in text[4:9]] == [*WHOLE, "dreamlake / sync"]
    assert "One run, 0.1% of the steps" in _whole_run.table(result)
    assert list(tmp_path.iterdir()) == [], "each run's folder is removed"


def test_whole_run_needs_the_floor() -> None:
    with pytest.raises(ValueError, match="no-op call"):
        _whole_run.whole_run(available([DREAMLAKE]), runs=1, fraction=0.001)


def test_a_whole_run_that_writes_wrong_output_fails() -> None:
    """The parent counts what the child wrote: a "writer" that writes nothing is refused."""
    (noop,) = available([NOOP])
    claims_to_write = Contender(NOOP, noop.call, noop.setup, writes=True, peer=False)
    with pytest.raises(AssertionError, match="no-op call wrote 0 records in a whole run, expected 3"):
        _whole_run._one(claims_to_write, _whole_run.KINDS[0], 3, 4096)


def test_a_failing_child_is_reported_with_its_stderr() -> None:
    missing = Contender("not installed", "log(msg)", _losing_setup)
    with pytest.raises(RuntimeError, match="whole run of not installed failed") as failed:
        _whole_run._one(missing, _whole_run.KINDS[0], 3, 4096)
    assert "ValueError" in str(failed.value)
