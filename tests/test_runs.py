"""Comparing runs: dreamlake.runs(), `dreamlake runs`, and records as DataFrames."""

from __future__ import annotations

import csv
import io
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import dreamlake
from dreamlake import Session
from dreamlake._cli._main import main


def sweep(root: Path) -> None:
    for i, lr in enumerate([0.1, 0.01, 0.001]):
        with Session(name=f"lr{i}", workspace="sweep", local_path=root) as s:
            s.params(lr=lr, batch=32, model={"depth": i % 2})
            loss = s.track("val/loss")
            for step, value in enumerate([3.0 - i, 1.0 + i, 2.0]):
                loss.append(value=value, step=step, acc=step / 10)


def test_a_row_per_run_with_the_parameters_that_differ_and_each_metrics_last_min_max(tmp_path: Path) -> None:
    sweep(tmp_path)
    rows = dreamlake.runs(tmp_path / "sweep", metrics=["val/loss", "val/loss:acc"])
    assert [r["run"] for r in rows] == ["sweep/lr0", "sweep/lr1", "sweep/lr2"]
    assert [r["status"] for r in rows] == ["completed"] * 3
    assert [r["attempts"] for r in rows] == [1, 1, 1]
    assert all(isinstance(r["duration"], float) and r["duration"] >= 0 for r in rows)
    assert all("batch" not in r for r in rows), "a parameter the same in every run is left out"
    assert [(r["lr"], r["model.depth"]) for r in rows] == [(0.1, 0), (0.01, 1), (0.001, 0)]
    assert [(r["val/loss last"], r["val/loss min"], r["val/loss max"]) for r in rows] == [
        (2.0, 1.0, 3.0),
        (2.0, 2.0, 2.0),
        (2.0, 1.0, 3.0),
    ]
    assert [r["val/loss:acc max"] for r in rows] == [0.2, 0.2, 0.2]


def test_runs_sort_by_any_column_and_runs_without_a_value_go_last(tmp_path: Path) -> None:
    sweep(tmp_path)
    with Session(name="no-track", workspace="sweep", local_path=tmp_path) as s:
        s.params(lr=0.5)
    rows = dreamlake.runs(tmp_path / "sweep", metrics=["val/loss"], sort="val/loss max", descending=True)
    assert [r["run"] for r in rows][-1] == "sweep/no-track"
    assert rows[-1]["val/loss last"] is None
    assert [r["run"] for r in dreamlake.runs(tmp_path / "sweep", sort="lr")] == [
        "sweep/lr2",
        "sweep/lr1",
        "sweep/lr0",
        "sweep/no-track",
    ]
    with pytest.raises(ValueError, match="cannot sort by 'nope': the columns are run, status"):
        dreamlake.runs(tmp_path / "sweep", sort="nope")


def test_a_parameter_missing_from_one_run_or_of_another_type_differs(tmp_path: Path) -> None:
    for name, params in [("a", {"lr": 1, "x": 1}), ("b", {"lr": 1.0, "x": 1}), ("c", {"x": 1})]:
        with Session(name=name, workspace="ws", local_path=tmp_path) as s:
            s.params(params)
    rows = dreamlake.runs(tmp_path / "ws")
    assert [r.get("lr", "absent") for r in rows] == [1, 1.0, None]
    assert all("x" not in r for r in rows)


def test_a_parameter_named_like_a_column_keeps_a_prefix(tmp_path: Path) -> None:
    for name, status in [("a", "ok"), ("b", "bad")]:
        with Session(name=name, workspace="ws", local_path=tmp_path) as s:
            s.params(status=status)
    rows = dreamlake.runs(tmp_path / "ws")
    assert [(r["status"], r["params.status"]) for r in rows] == [("completed", "ok"), ("completed", "bad")]


def test_a_metric_no_run_has_is_an_error_naming_the_tracks_there(tmp_path: Path) -> None:
    sweep(tmp_path)
    with pytest.raises(ValueError, match=r"no run has a metric 'val/los'.*tracks there: val/loss"):
        dreamlake.runs(tmp_path / "sweep", metrics=["val/los"])
    with pytest.raises(ValueError, match="no run has a metric 'val/loss:nope'"):
        dreamlake.runs(tmp_path / "sweep", metrics=["val/loss:nope"])
    with pytest.raises(ValueError, match="a metric is a track name"):
        dreamlake.runs(tmp_path / "sweep", metrics=[":"])
    with pytest.raises(TypeError, match="needs at least one folder"):
        dreamlake.runs()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dreamlake.runs(tmp_path / "nowhere")


def test_nan_and_infinity_in_a_track_count_as_numbers(tmp_path: Path) -> None:
    with Session(name="a", workspace="ws", local_path=tmp_path) as s:
        for value in [1.0, float("inf"), float("nan")]:
            s.track("loss").append(value=value)
    (row,) = dreamlake.runs(tmp_path / "ws", metrics=["loss"])
    assert math.isnan(row["loss last"])
    assert (row["loss min"], row["loss max"]) == (1.0, math.inf)


def test_several_session_folders_and_their_status_crashed_or_failed(tmp_path: Path) -> None:
    sweep(tmp_path)
    with pytest.raises(ZeroDivisionError), Session(name="bad", workspace="other", local_path=tmp_path):
        1 / 0
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import os, signal; from dreamlake import Session; "
            f"Session(name='killed', workspace='other', local_path={str(tmp_path)!r}).open(); "
            f"os.kill(os.getpid(), signal.SIGKILL)",
        ],
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL
    rows = dreamlake.runs(tmp_path / "sweep" / "lr1", tmp_path / "other")
    assert [(r["run"], r["status"]) for r in rows] == [
        ("other/bad", "failed"),
        ("other/killed", "crashed?"),
        ("sweep/lr1", "completed"),
    ]


def test_a_session_from_before_session_json_is_listed_without_a_status(tmp_path: Path) -> None:
    with Session(name="old", workspace="ws", local_path=tmp_path) as s:
        s.log("x")
    os.remove(s.path / "session.json")
    (row,) = dreamlake.runs(s.path)
    assert (row["status"], row["attempts"], row["start"], row["duration"]) == ("-", 0, None, None)


def run_cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_prints_a_table_json_and_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep(tmp_path)
    ws = str(tmp_path / "sweep")
    code, out, _ = run_cli("runs", ws, "--metric", "val/loss", "--sort", "lr", capsys=capsys)
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split()[:5] == ["RUN", "STATUS", "ATTEMPTS", "START", "DURATION"]
    assert "val/loss min" in header
    assert [line.split()[0] for line in lines] == ["sweep/lr2", "sweep/lr1", "sweep/lr0"]
    code, out, _ = run_cli("runs", ws, "--metric", "val/loss", "--json", capsys=capsys)
    assert orjson.loads(out) == dreamlake.runs(ws, metrics=["val/loss"])
    code, out, _ = run_cli("runs", ws, "--csv", capsys=capsys)
    table = list(csv.DictReader(io.StringIO(out)))
    assert [(r["run"], float(r["lr"])) for r in table] == [
        ("sweep/lr0", 0.1),
        ("sweep/lr1", 0.01),
        ("sweep/lr2", 0.001),
    ]


def test_the_command_says_what_was_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep(tmp_path)
    ws = str(tmp_path / "sweep")
    code, _, err = run_cli("runs", ws, "--metric", "nope", capsys=capsys)
    assert (code, "no run has a metric 'nope'" in err) == (2, True)
    code, _, err = run_cli("runs", ws, "--json", "--csv", capsys=capsys)
    assert (code, "give one" in err) == (2, True)
    code, _, err = run_cli("runs", str(tmp_path / "empty"), capsys=capsys)
    assert (code, "does not exist" in err) == (2, True)


# -- DataFrames ---------------------------------------------------------------------------


def logged(tmp_path: Path) -> Path:
    with Session(name="run", workspace="ws", local_path=tmp_path) as s:
        s.log("a", metadata={"loss": 1.0, "opt": {"lr": 0.1}})
        s.log("b", metadata={"loss": float("nan"), "level": "clash"})
        s.log("c", metadata={"loss": 3.0})
        s.log("d")
        track = s.track("loss")
        for step, value in enumerate([0.5, float("inf"), 1.5]):
            track.append(value=value, step=step)
    return s.path


def test_records_to_pandas_turn_the_stored_nan_back_into_floats(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas", reason="pip install pandas")
    folder = logged(tmp_path)
    frame = dreamlake.read_logs(folder).to_pandas()
    assert list(frame["message"]) == ["a", "b", "c", "d"]
    assert frame["loss"].mean() == 2.0, "NaN skipped, not a str that makes mean() raise"
    assert math.isnan(frame["loss"][1])
    assert frame["opt.lr"][0] == 0.1
    assert frame["metadata.level"][1] == "clash", "a metadata key named like a field keeps its prefix"
    assert list(frame["level"]) == ["info"] * 4
    assert str(frame["timestamp"].dt.tz) == "UTC"
    assert pd.api.types.is_integer_dtype(frame["sequenceNumber"])
    points = dreamlake.read_track(folder, "loss").to_pandas()
    assert list(points["step"]) == [0, 1, 2]
    assert points["value"].max() == math.inf
    assert list(points["index"]) == [0, 1, 2]


def test_records_to_polars_have_the_same_columns(tmp_path: Path) -> None:
    pl = pytest.importorskip("polars", reason="pip install polars")
    folder = logged(tmp_path)
    frame = dreamlake.read_logs(folder).to_polars()
    assert frame.columns == [
        "timestamp",
        "level",
        "message",
        "sequenceNumber",
        "loss",
        "opt.lr",
        "metadata.level",
    ]
    assert frame["loss"].dtype == pl.Float64
    assert frame["loss"].drop_nans().mean() == 2.0
    assert frame["timestamp"].dtype == pl.Datetime("us", "UTC")
    points = dreamlake.read_track(folder, "loss").to_polars()
    assert points["value"].to_list() == [0.5, math.inf, 1.5]


def test_a_column_of_mixed_kinds_stays_text(tmp_path: Path) -> None:
    pytest.importorskip("polars", reason="pip install polars")
    with Session(name="run", workspace="ws", local_path=tmp_path) as s:
        s.log("a", metadata={"v": 3})
        s.log("b", metadata={"v": "three"})
        s.log("c", metadata={"v": "NaN"})
    frame = dreamlake.read_logs(s.path).to_polars()
    assert frame["v"].to_list() == ["3", "three", "NaN"]


def test_without_the_library_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = logged(tmp_path)
    monkeypatch.setitem(sys.modules, "pandas", None)
    monkeypatch.setitem(sys.modules, "polars", None)
    records = dreamlake.read_logs(folder)
    with pytest.raises(ImportError, match="pip install pandas"):
        records.to_pandas()
    with pytest.raises(ImportError, match="pip install polars"):
        records.to_polars()


def test_ranks_that_ran_at_once_count_once_and_a_failed_one_shows(tmp_path: Path) -> None:
    folder = tmp_path / "ws" / "run"
    folder.mkdir(parents=True)
    (folder / "logs.jsonl").touch()
    (folder / "session.json").write_bytes(
        orjson.dumps(
            {
                "name": "run",
                "workspace": "ws",
                "attempts": [
                    {
                        "id": "a",
                        "status": "failed",
                        "error": "RuntimeError",
                        "startedAt": "2026-01-01T00:00:00Z",
                        "endedAt": "2026-01-01T00:00:05Z",
                    },
                    {
                        "id": "b",
                        "status": "completed",
                        "startedAt": "2026-01-01T00:00:01Z",
                        "endedAt": "2026-01-01T00:00:10Z",
                    },
                ],
            }
        )
    )
    (row,) = dreamlake.runs(folder)
    assert (row["status"], row["attempts"], row["duration"]) == ("failed", 2, 10.0)


def test_two_runs_that_read_the_same_get_more_of_their_path(tmp_path: Path) -> None:
    for root in ("a", "b"):
        with Session(name="run", workspace="ws", local_path=tmp_path / root):
            pass
    rows = dreamlake.runs(tmp_path / "a" / "ws", tmp_path / "b" / "ws")
    assert [r["run"] for r in rows] == ["a/ws/run", "b/ws/run"]


def test_a_parameter_named_like_a_metric_column_keeps_a_prefix(tmp_path: Path) -> None:
    for name, value in [("a", 1), ("b", 2)]:
        with Session(name=name, workspace="ws", local_path=tmp_path) as s:
            s.params({"loss last": value})
            s.track("loss").append(value=float(value))
    rows = dreamlake.runs(tmp_path / "ws", metrics=["loss"])
    assert [(r["params.loss last"], r["loss last"]) for r in rows] == [(1, 1.0), (2, 2.0)]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: dreamlake.runs(p, metrics="loss"), "metrics must be a list of track names"),
        (lambda p: dreamlake.runs([p]), "takes folders as separate arguments"),
        (lambda p: dreamlake.runs(p, descending="no"), "descending must be True or False"),
        (lambda p: dreamlake.runs(p, metrics=["loss:"]), "a metric is a track name"),
    ],
)
def test_runs_misused_says_how(tmp_path: Path, call: object, message: str) -> None:
    sweep(tmp_path)
    with pytest.raises((TypeError, ValueError), match=message):
        call(tmp_path / "sweep")  # type: ignore[operator]


def test_json_keeps_nan_apart_from_none_and_names_that_are_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    odd = os.fsdecode(b"run-\xff")
    with Session(name=odd, workspace="ws", local_path=tmp_path) as s:
        s.track("loss").append(value=float("nan"))
    with Session(name="plain", workspace="ws", local_path=tmp_path):
        pass
    code, out, _ = run_cli("runs", str(tmp_path / "ws"), "--metric", "loss", "--json", capsys=capsys)
    assert code == 0
    rows = orjson.loads(out)
    assert [r["run"] for r in rows] == ["ws/plain", "ws/run-\\xff"]
    assert [r["loss last"] for r in rows] == [None, "NaN"]


def test_frames_convert_only_the_records_own_time_and_lose_no_colliding_key(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas", reason="pip install pandas")
    with Session(name="run", workspace="ws", local_path=tmp_path) as s:
        s.log(
            "a", metadata={"createdAt": "yesterday", "a": {"b": 1}, "a.b": 2, "level": 3, "metadata.level": 4}
        )
        s.track("t").append(value="NaN", timestamp="not a time")
        s.track("t").append(value=float("nan"), timestamp="still not")
    frame = dreamlake.read_logs(s.path).to_pandas()
    assert frame["createdAt"][0] == "yesterday"
    assert (frame["a.b"][0], frame["a.b~2"][0]) == (1, 2)
    assert (frame["metadata.level"][0], frame["metadata.level~2"][0]) == (3, 4)
    assert str(frame["timestamp"].dt.tz) == "UTC"
    points = dreamlake.read_track(s.path, "t").to_pandas()
    assert list(points["timestamp"]) == ["not a time", "still not"]
    assert pd.api.types.is_float_dtype(points["value"]), "a column of NaN only is numbers too"
