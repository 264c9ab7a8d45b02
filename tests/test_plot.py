"""`dreamlake plot`: series, thinning, the terminal charts and the HTML page in a real browser."""

import math
import os
import random
import shutil
import signal
import subprocess
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from dreamlake import Session
from dreamlake._cli._main import main
from dreamlake._plot import _series
from dreamlake._plot._series import Series, collect, runs_of, thin

from .browser import Browser, find_chromium
from .follower import following, interrupt

ARTIFACTS = Path(__file__).parents[1] / "test-artifacts"


def make_run(root: Path, name: str, lr: float, points: int = 200, spike_at: int | None = None) -> Path:
    with Session(name=name, workspace="sweep", local_path=root) as session:
        session.params(lr=lr, batch_size=32, optimizer="sgd")
        track = session.track("train/loss")
        batch = []
        for step in range(points):
            value = 1.0 / (step + 1) + lr
            if step == spike_at:
                value = 50.0
            batch.append({"value": value, "step": step, "accuracy": step / points})
            if len(batch) == 10_000:
                track.append_batch(batch)
                batch = []
        track.append_batch(batch)
        session.track("val/loss").append(value=math.nan, epoch=0)
        session.track("val/loss").append(value=0.5, epoch=1)
        for i in range(5):
            session.log("epoch", metadata={"loss": 1.0 / (i + 1), "note": "text"})
    return root / "sweep" / name


# -- series and thinning -------------------------------------------------------------


def test_series_of_tracks_and_logs(tmp_path: Path) -> None:
    run = make_run(tmp_path, "a", 0.1)
    series = collect(runs_of([run]), None, None, False)
    assert list(series) == ["logs.loss", "train/loss.accuracy", "train/loss.value", "val/loss.value"]
    (loss,) = series["train/loss.value"]
    assert loss.x_label == "step" and list(loss.xs) == list(range(200))
    (val,) = series["val/loss.value"]
    assert val.x_label == "epoch" and val.nonfinite == 1 and val.summary() == (0.5, 0.5, 0.5)
    (logs,) = series["logs.loss"]
    assert logs.x_label == "sequenceNumber" and len(logs.xs) == 5
    assert list(collect(runs_of([run]), "val/*", None, False)) == ["val/loss.value"]
    assert list(collect(runs_of([run]), None, "lo*", False)) == ["logs.loss"]
    (timed,) = collect(runs_of([run]), "train/*", None, True)["train/loss.value"]
    assert timed.x_label == "time" and abs(timed.xs[0] - __import__("time").time()) < 600


def clashing_run(root: Path) -> Path:
    """A session whose series pairwise share a dotted name: track `logs` field `loss` and the
    logs' `loss`; track `a` field `b.c` and track `a.b` field `c`."""
    with Session(name="clash", workspace="w", local_path=root) as session:
        session.track("logs").append(loss=1.0, step=0)
        session.track("a").append(**{"b.c": 2.0, "step": 0})
        session.track("a.b").append(c=3.0, step=0)
        session.log("m", metadata={"loss": 4.0})
    return session.path


CLASHING = {
    "a.b.c (track a, field b.c)": 2.0,
    "a.b.c (track a.b, field c)": 3.0,
    "logs.loss (logs, field loss)": 4.0,
    "logs.loss (track logs, field loss)": 1.0,
}


def test_different_series_of_the_same_name_stay_apart(tmp_path: Path) -> None:
    """Two series whose track and field names join to the same name are two charts, each named
    for what it is; a name that clashes with nothing stays as it is."""
    run = clashing_run(tmp_path)
    with Session(name="clash", workspace="w", local_path=tmp_path) as session:
        session.track("plain").append(value=5.0, step=0)
    series = collect(runs_of([run]), None, None, False)
    assert {**CLASHING, "plain.value": 5.0} == {name: members[0].ys[0] for name, members in series.items()}
    assert all(len(members) == 1 for members in series.values())
    watch = _series.Watch(runs_of([run]), None, None, False)
    assert list(series) == list(watch.collect(None))


def test_series_of_the_same_name_stay_apart_on_the_terminal_and_the_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What collect() tells apart, the terminal and the page show apart."""
    pytest.importorskip("plotext")
    run = clashing_run(tmp_path)
    assert main(["plot", str(run)]) == 0
    out = capsys.readouterr().out
    for name in CLASHING:
        assert f"\n{name}\n  clash: 1 points" in f"\n{out}"
    page = tmp_path / "page.html"
    assert main(["plot", str(run), "--html", str(page)]) == 0
    data = page.read_text().split('id="dreamlake-data">')[1].split("</script>")[0]
    charts = orjson.loads(data)["charts"]
    assert CLASHING == {chart["name"]: chart["lines"][0]["y"][0] for chart in charts}
    assert all(len(chart["lines"]) == 1 for chart in charts)


def test_a_workspace_folder_holds_several_runs(tmp_path: Path) -> None:
    make_run(tmp_path, "a", 0.1)
    make_run(tmp_path, "b", 0.2)
    assert [run.name for run in runs_of([tmp_path / "sweep"])] == ["a", "b"]
    assert runs_of([tmp_path / "sweep"])[1].params == {"lr": 0.2, "batch_size": 32, "optimizer": "sgd"}
    assert ["a", "b"] == [run.name for run in runs_of([tmp_path])], "a local_path, as `dreamlake ls` takes"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no dreamlake session"):
        runs_of([tmp_path / "empty"])


def test_thinning_keeps_a_single_spike_and_marks_nan() -> None:
    series = Series(run=None, name="s", x_label="step")  # type: ignore[arg-type]
    for i in range(1_000_000):
        series.add(i, 50.0 if i == 612_345 else ("NaN" if i == 777_777 else 1.0 + (i % 7) * 1e-3))
    assert series.ascending and series.nonfinite == 1
    thinned = thin(series, 1000)
    assert len(thinned.xs) <= 4000
    assert max(thinned.ys) == 50.0 and thinned.xs[thinned.ys.index(50.0)] == 612_345
    assert min(thinned.ys) == 1.0
    assert thinned.marks == [777_777.0]
    assert thinned.xs == sorted(thinned.xs)


@pytest.mark.parametrize("seed", range(5))
def test_thinning_by_bisection_picks_what_the_point_by_point_loop_picks(seed: int) -> None:
    """xs that never decrease are cut into columns by bisection: the same points must come out
    as from the loop that any order needs, including repeated x, ties and empty columns."""
    rng = random.Random(seed)
    fast = Series(run=None, name="s", x_label="step")  # type: ignore[arg-type]
    x = 0.0
    for _ in range(rng.randrange(1, 20_000)):
        x += rng.choice([0.0, 0.5, 1.0, 37.0])
        fast.add(x, rng.choice([1.0, 2.0, rng.random(), rng.random() * 100, "NaN"]))
    slow = Series(
        run=None, name="s", x_label="step", xs=fast.xs, ys=fast.ys, marks=fast.marks, ascending=False
    )  # type: ignore[arg-type]
    assert fast.ascending
    for buckets in (1, 7, 1000):
        assert thin(fast, buckets) == thin(slow, buckets)


# -- the terminal --------------------------------------------------------------------


def test_x_going_back_where_parts_or_batches_meet_is_seen() -> None:
    """Each part and each batch is ascending on its own; where they meet, x goes back: bisection
    would then cut the columns wrongly."""

    def part(xs: list[float]) -> Series:
        series = Series(run=None, name="s", x_label="step")  # type: ignore[arg-type]
        series.extend(array("d", xs), array("d", [1.0] * len(xs)), True)
        return series

    joined = part([0, 1, 2, 3])
    joined.join(part([1, 2]))
    assert not joined.ascending
    batches = part([0, 1, 2, 3])
    batches.extend(array("d", [2.5]), array("d", [1.0]), True)
    assert not batches.ascending
    fine = part([0, 1, 2])
    fine.join(part([2, 3]))
    fine.join(part([]))
    fine.extend(array("d", [3, 4]), array("d", [1.0, 1.0]), True)
    assert fine.ascending


def odd_run(root: Path) -> Path:
    """A run whose track has everything a hand or a crash can put there."""
    with Session(name="odd", workspace="w", local_path=root) as session:
        track = session.track("t")
        for step in range(3000):
            point: dict[str, object] = {
                "step": step if step != 1701 else 5,
                "value": step * 0.5,
                "flag": step % 3 == 0,
            }
            point["note"] = "text"
            if step % 7 == 0:
                point["val"] = -step
            if step % 50 == 0:
                point["value"] = "NaN" if step % 100 else float("inf")
            track.append(**point)
        for i in range(500):
            session.log(
                "m", metadata={"loss": 1 / (i + 1), "note": "x", **({"rare": i} if i % 9 == 0 else {})}
            )
    file = session.path / "tracks" / "t" / "data.jsonl"
    with open(file, "ab") as f:
        f.write(b'{"index":3000,"data":[1,2],"createdAt":"2025-01-01T00:00:00.000000Z"}\nnot json\n')
        f.write(b'{"index":3001,"data":{"value":3.0},"createdAt":"2025-01-01T00:00:00.000000Z"}\n')
    return session.path


@pytest.mark.parametrize("buckets", [None, 40])
def test_files_read_in_parts_side_by_side_give_what_one_reader_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, buckets: int | None
) -> None:
    runs = runs_of([odd_run(tmp_path)])
    whole = collect(runs, None, None, False, buckets)
    files = [
        _series._Part(run, file, track, None) for run, file, track in _series._files(runs, None, None, None)
    ]
    assert len(_series._split(files, [part.file.stat().st_size for part in files], 2000)) > 50
    monkeypatch.setattr(_series, "_PARALLEL_BYTES", 0)
    monkeypatch.setattr(_series, "_PART_BYTES", 2000)
    parts = collect(runs, None, None, False, buckets)
    assert list(parts) == list(whole) == ["logs.loss", "logs.rare", "t.flag", "t.val", "t.value"]
    same_series(whole, parts)
    (value,) = whole["t.value"]
    assert (value.nonfinite, value.unplaced, value.ascending, value.points) == (60, 1, False, 3000)
    assert value.stats == (0.5, 1499.5, 1499.5)
    (flag,) = whole["t.flag"]
    assert set(flag.ys) == {0.0, 1.0}  # a flag is drawn as 0 and 1


FIELDS = ("name", "x_label", "xs", "ys", "marks", "ascending", "nonfinite", "unplaced", "points", "stats")


def same_series(one: dict[str, list[Series]], other: dict[str, list[Series]]) -> None:
    assert list(one) == list(other)
    for name in one:
        for a, b in zip(one[name], other[name], strict=True):
            assert [getattr(a, f) for f in FIELDS] == [getattr(b, f) for f in FIELDS], name


@pytest.mark.parametrize("buckets", [None, 40])
def test_following_reads_what_was_added_and_shows_what_reading_anew_shows(
    tmp_path: Path, buckets: int | None
) -> None:
    """`--follow` reads only what was written since the last poll: at each poll it must show what
    reading every file anew shows, after growth, a new track, a file cut short, rewritten in
    place, replaced, emptied, or deleted with its track."""
    with Session(name="live", workspace="w", local_path=tmp_path) as session:
        session.track("loss")  # described before its first point: the x is decided by that point
        runs = runs_of([session.path])
        watch = _series.Watch(runs, None, None, False)

        def same() -> dict[str, list[Series]]:
            shown = watch.collect(buckets)
            same_series(shown, collect(runs, None, None, False, buckets))
            return shown

        assert same() == {}
        for round_ in range(3):
            for step in range(round_ * 500, round_ * 500 + 500):
                session.track("loss").append(value=1 / (step + 1), step=step)
                session.log("m", metadata={"lr": step * 1e-3})
            if round_ == 1:
                session.track("acc").append(value="NaN", epoch=0)
            session.flush()
            shown = same()
        assert shown["loss.value"][0].x_label == "step" and shown["loss.value"][0].points == 1500
        assert shown["acc.value"][0].nonfinite == 1
    data = session.path / "tracks" / "loss" / "data.jsonl"
    lines = data.read_bytes().split(b"\n")
    data.write_bytes(b"\n".join(lines[:10]) + b"\n")  # cut short
    assert same()["loss.value"][0].points == 10
    with open(data, "r+b") as f:  # rewritten in place, longer than what was read
        f.write(b"\n".join(line.replace(b'"value":', b'"other":') for line in lines[:20]) + b"\n")
    assert same()["loss.other"][0].points == 20
    replacement = data.with_name("new")
    replacement.write_bytes(b"\n".join(lines[100:103]) + b"\n")
    os.replace(replacement, data)  # another file at the same path
    assert same()["loss.value"][0].points == 3
    data.write_bytes(b"")  # emptied
    assert "loss.value" not in same()
    shutil.rmtree(session.path / "tracks" / "acc")  # a track deleted
    assert "acc.value" not in same() and len(watch._files) == 2
    (session.path / "tracks" / "acc").mkdir()  # and made again
    (session.path / "tracks" / "acc" / "data.jsonl").write_bytes(lines[0] + b"\n")
    assert same()["acc.value"][0].points == 1


def test_following_many_files_keeps_none_open(tmp_path: Path) -> None:
    """A workspace may hold more files than a process may open: --follow must not hold them."""
    pytest.importorskip("plotext")
    with Session(name="wide", workspace="w", local_path=tmp_path) as session:
        for n in range(100):
            session.track(f"t{n}").append(value=1.0, step=0)
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))\n"
        "from dreamlake._cli._main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    with following(
        "plot", str(session.path), "--follow", "--interval", "0.01", python=["-c", script]
    ) as follower:
        assert follower.stdout is not None
        headlines = (line for line in follower.stdout if line.startswith("t99.value"))
        next(headlines), next(headlines), next(headlines)  # three redraws, every track each time
        assert interrupt(follower) == ""


def test_plot_follow_redraws_as_points_arrive(tmp_path: Path) -> None:
    pytest.importorskip("plotext")
    with Session(name="live", workspace="w", local_path=tmp_path) as session:
        for step in range(100):
            session.track("loss").append(value=1.0, step=step)
    with following("plot", str(session.path), "--follow", "--interval", "0.05") as follower:
        assert follower.stdout is not None
        headlines = (line for line in follower.stdout if "live: " in line)
        assert "live: 100 points" in next(headlines)
        with Session(name="live", workspace="w", local_path=tmp_path) as again:
            for step in range(100, 250):
                again.track("loss").append(value=2.0, step=step)
        assert any("live: 250 points  min 1  last 2  max 2" in line for line in headlines)
        assert interrupt(follower) == ""


def test_lines_skipped_and_points_without_x_are_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("plotext")
    path = odd_run(tmp_path)
    assert main(["plot", str(path), "--track", "t"]) == 0
    out, err = capsys.readouterr()
    assert "odd: 3000 points  min 0.5  last 1499.5  max 1499.5  60 NaN/inf  1 without step" in out
    assert err == f"dreamlake plot: {path / 'tracks' / 't' / 'data.jsonl'}: 1 line is not a point, skipped\n"
    real = _series.each_batch

    def unreadable(file: Path, *args: Any, **kwargs: Any) -> object:
        if file.name == "data.jsonl":
            raise PermissionError(13, "Permission denied", str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(_series, "each_batch", unreadable)
    assert main(["plot", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "logs.loss" in out and "t.value" not in out
    assert err == f"dreamlake plot: cannot read {path / 'tracks' / 't' / 'data.jsonl'}: Permission denied\n"


def test_terminal_shows_names_summaries_and_nan_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("plotext")
    make_run(tmp_path, "a", 0.1)
    make_run(tmp_path, "b", 0.2)
    assert main(["plot", str(tmp_path / "sweep")]) == 0
    out = capsys.readouterr().out
    for name in ("train/loss.value", "train/loss.accuracy", "val/loss.value", "logs.loss"):
        assert f"\n{name}\n" in f"\n{out}"
    assert "a: 200 points  min 0.105  last 0.105  max 1.1" in out
    assert "b: 2 points  min 0.5  last 0.5  max 0.5  1 NaN/inf" in out
    assert "┤" in out and "\x1b[" not in out  # a chart, without colour when not a terminal


def test_terminal_without_plotext_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "plotext", None)  # import fails
    assert main(["plot", str(make_run(tmp_path, "a", 0.1))]) == 2
    err = capsys.readouterr().err
    from dreamlake._plot._term import python_here

    assert err == f"dreamlake: dreamlake plot needs plotext: {python_here()} -m pip install 'plotext>=6,<7'\n"
    assert "dreamlake[plot]" not in err, "the name dreamlake on PyPI is not this project"


def test_the_demo_ends_with_commands_that_work_as_printed(tmp_path: Path) -> None:
    """Each command the demo prints runs as written from the folder it was run in."""
    pytest.importorskip("plotext")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DREAMLAKE")}
    demo = subprocess.run(
        [sys.executable, "-m", "dreamlake", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert 0 == demo.returncode, demo.stderr
    commands = [
        line.split("#")[0].strip() for line in demo.stdout.split("To look at it", 1)[1].splitlines()[1:]
    ]
    commands = [c for c in commands if c and "pip install" not in c]
    assert 2 == len(commands)
    for command in commands:
        done = subprocess.run(
            command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env
        )
        assert 0 == done.returncode, (command, done.stderr)
    assert (tmp_path / "report.html").stat().st_size > 10_000


def test_an_empty_session_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("plotext")
    with Session(name="empty", workspace="w", local_path=tmp_path) as session:
        session.log("no numbers here", metadata={"note": "text"})
    assert main(["plot", str(session.path)]) == 2
    assert capsys.readouterr().err.startswith("dreamlake: no numeric series in ")


def test_plot_mistakes_are_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert main(["plot", str(make_run(tmp_path, "a", 0.1)), "--html", str(tmp_path / "no" / "x.html")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("dreamlake: ") for line in err)


# -- the page ------------------------------------------------------------------------


def test_the_page_is_self_contained(tmp_path: Path) -> None:
    run = make_run(tmp_path, "a", 0.1)
    out = tmp_path / "report.html"
    assert main(["plot", str(run), "--html", str(out)]) == 0
    text = out.read_text()
    assert "uPlot" in text and "http://" not in text.replace("http://www.w3.org", "")
    assert "<script src" not in text and "<link" not in text


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[Browser]:
    binary = find_chromium()
    if binary is None:
        pytest.skip(
            "no Chromium on this machine: apt-get install chromium (or any Chrome) to run the page tests"
        )
    page = Browser(binary)
    try:
        yield page
    finally:
        page.close()


def chart_pixels(browser: Browser) -> list[int]:
    """Per chart, the canvas pixels that are not blank."""
    return browser.run(  # type: ignore[no-any-return]
        """window.dreamlakeCharts.map(u => {
            const c = u.ctx.canvas, d = u.ctx.getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
            return n; })"""
    )


def test_the_page_in_a_browser(tmp_path: Path, browser: Browser) -> None:
    runs = [make_run(tmp_path, "run-a", 0.1, 1_000_000, spike_at=654_321), make_run(tmp_path, "run-b", 0.2)]
    out = tmp_path / "report.html"
    assert main(["plot", *map(str, runs), "--html", str(out)]) == 0
    assert out.stat().st_size < 2_000_000
    try:
        browser.open(out)
        assert browser.run("window.dreamlakeCharts.length") == 4
        assert browser.errors() == []
        assert all(n > 500 for n in chart_pixels(browser)), chart_pixels(browser)
        names = browser.run("window.dreamlakeCharts.map(u => u.series.slice(1).map(s => s.label))")
        assert all({"run-a", "run-b"} <= set(labels) for labels in names), names
        # the spike at one point of a million is inside the drawn range of train/loss.value
        index = browser.run("DATA.charts.findIndex(c => c.name === 'train/loss.value')")
        assert browser.run(f"window.dreamlakeCharts[{index}].scales.y.max") >= 50.0
        # a NaN is marked
        assert any("NaN/inf run-b" in labels for labels in names)
        # the parameter that differs is highlighted, the others are not
        rows = browser.run(
            "[...document.querySelectorAll('table.params tr.differs td:first-child')].map(td => td.textContent)"
        )
        assert rows == ["lr"]
        # hovering shows the values under the cursor
        box = browser.run(
            f"(() => {{ const o = window.dreamlakeCharts[{index}].over; o.scrollIntoView({{block: 'center'}}); const r = o.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; }})()"
        )
        left, top, width, height = box
        legend = f"[...window.dreamlakeCharts[{index}].root.querySelectorAll('.u-value')].map(e => e.textContent).join('|')"
        before = browser.run(legend)
        browser.mouse("mouseMoved", left + width * 0.3, top + height / 2)
        hovered = browser.run(legend)
        browser.mouse("mouseMoved", left + width * 0.7, top + height / 2)
        assert hovered != before and browser.run(legend) != hovered
        # dragging zooms in on x
        x_range = (
            f"[window.dreamlakeCharts[{index}].scales.x.min, window.dreamlakeCharts[{index}].scales.x.max]"
        )
        full = browser.run(x_range)
        browser.mouse("mousePressed", left + width * 0.4, top + height / 2, buttons=1)
        browser.mouse("mouseMoved", left + width * 0.5, top + height / 2, buttons=1)
        browser.mouse("mouseReleased", left + width * 0.5, top + height / 2)
        zoomed = browser.run(x_range)
        assert full[0] < zoomed[0] < zoomed[1] < full[1]
        # smoothing and log scale redraw without errors
        browser.run(
            "(() => { const s = document.getElementById('smoothing'); s.value = 0.9; s.dispatchEvent(new Event('input')); })()"
        )
        browser.run("document.getElementById('log-scale').click()")
        assert browser.run(f"window.dreamlakeCharts[{index}].scales.y.distr") == 3
        assert browser.errors() == []
        assert all(n > 500 for n in chart_pixels(browser))
        if os.environ.get("DREAMLAKE_SCREENSHOT"):  # the picture in the README
            browser.run(
                "(() => { const s = document.getElementById('smoothing'); s.value = 0; s.dispatchEvent(new Event('input')); document.getElementById('log-scale').click(); })()"
            )
            browser.run("window.scrollTo(0, 0)")
            clip = {"x": 0, "y": 0, "width": 1185, "height": 1000, "scale": 0.6}
            browser.screenshot(Path(os.environ["DREAMLAKE_SCREENSHOT"]), clip)
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        browser.screenshot(ARTIFACTS / "test_the_page_in_a_browser.png")
        raise


def test_the_page_starts_with_a_row_a_run_whose_link_shows_only_its_charts(
    tmp_path: Path, browser: Browser
) -> None:
    done = make_run(tmp_path, "done", 0.1)
    with pytest.raises(RuntimeError), Session(name="broken", workspace="sweep", local_path=tmp_path) as s:
        s.track("only/broken").append(value=1.0, step=0)
        s.track("train/loss").append(value=2.0, step=0)
        raise RuntimeError
    out = tmp_path / "report.html"
    assert main(["plot", str(done), str(s.path), "--html", str(out)]) == 0
    browser.open(out)
    rows = browser.run(
        "[...document.querySelectorAll('#runs-table tr')].slice(1).map(tr => [...tr.children].map(td => td.textContent))"
    )
    assert [(r[0], r[1], r[2]) for r in rows] == [("done", "completed", "1"), ("broken", "failed", "1")]
    shown = """DATA.charts.map((c, i) => [c.name, document.getElementById('chart-' + i).parentNode.style.display !== 'none',
        window.dreamlakeCharts[i].series.slice(1).filter(x => x.show).map(x => x.label)])"""
    everything = browser.run(shown)
    assert ["only/broken.value", True, ["broken"]] in everything
    assert any(name == "train/loss.value" and labels == ["done", "broken"] for name, _, labels in everything)
    click = """new Promise(done => {{ window.addEventListener('hashchange', () => done(), {{once: true}});
        document.querySelector({!r}).click(); }})"""  # the page's own listener, added first, has run
    browser.run(click.format("#runs-table a"))
    focused = browser.run(shown)
    assert ["only/broken.value", False, []] in focused, "a chart without the run is hidden"
    assert any(name == "train/loss.value" and seen and labels == ["done"] for name, seen, labels in focused)
    assert browser.run("document.querySelector('#runs-table tr.focused a').textContent") == "done"
    browser.run(click.format('#runs a[href="#"]'))
    assert browser.run(shown) == everything
    assert browser.errors() == []


def test_the_page_keeps_x_whole(tmp_path: Path) -> None:
    """Steps past ten million and call times to the microsecond survive into the page."""
    import orjson

    with Session(name="big", workspace="w", local_path=tmp_path) as session:
        session.track("loss").append_batch([{"value": 0.5, "step": 12_345_678 + i} for i in range(3)])
    out = tmp_path / "r.html"
    assert main(["plot", str(session.path), "--html", str(out)]) == 0
    data = orjson.loads(out.read_text().split('id="dreamlake-data">', 1)[1].split("</script>", 1)[0])
    assert data["charts"][0]["lines"][0]["x"] == [12_345_678, 12_345_679, 12_345_680]
    assert main(["plot", str(session.path), "--html", str(out), "--x", "time"]) == 0
    data = orjson.loads(out.read_text().split('id="dreamlake-data">', 1)[1].split("</script>", 1)[0])
    stamps = [p["createdAt"] for p in __import__("dreamlake").read_track(session.path, "loss")]
    assert data["charts"][0]["lines"][0]["x"][0] % 1 == pytest.approx(
        float("0." + stamps[0][20:26]), abs=1e-6
    )


@pytest.mark.parametrize("name", ["@DATA@", "@APP@", "plain"])
def test_names_and_values_cannot_break_out_of_the_page(tmp_path: Path, name: str) -> None:
    hostile = "<img src=x onerror=alert(1)></script><script>alert(2)</script><!--<script>@DATA@@APP@"
    with Session(name=name, workspace="w", local_path=tmp_path) as session:
        session.params(note=hostile)
        session.track("loss").append(value=1.0, step=1, **{hostile: 2.0})
    out = tmp_path / "r.html"
    assert main(["plot", str(session.path), "--html", str(out)]) == 0
    text = out.read_text()
    assert text.count("<script") == 3 and text.count("</script>") == 3
    assert "<img" not in text and "<!--" not in text
    data = __import__("orjson").loads(text.split('id="dreamlake-data">', 1)[1].split("</script>", 1)[0])
    assert data["params"][0]["values"] == [__import__("orjson").dumps(hostile).decode()]
    assert f"loss.{hostile}" in [chart["name"] for chart in data["charts"]]


def test_the_same_session_twice_gets_two_names(tmp_path: Path) -> None:
    run = make_run(tmp_path, "a", 0.1)
    assert [r.name for r in runs_of([run, run])] == ["sweep/a", "sweep/a (2)"]


def hostile_run(root: Path) -> Path:
    """Sparse, mixed and odd fields in a track and in the logs' metadata."""
    with Session(name="mixed", workspace="w", local_path=root) as session:
        track = session.track("m")
        for step in range(2000):
            point: dict[str, Any] = {"step": step, "a": step * 0.25, "d": step % 2 == 0}
            if step % 3 == 0:
                point["b"] = -step
            point["c"] = "text" if step % 5 == 0 else step
            if step % 11 == 0:
                point["e"] = ["NaN", "Infinity", "-Infinity"][step % 3]
            point["f"] = None if step % 2 else 1.5
            point["g"] = [step]
            track.append(**point)
        for i in range(1500):
            kind = i % 30
            session.log(
                "m", metadata={f"k{kind}": i, f"j{kind}": "NaN" if i % 7 == 0 else i / 2, "text": "x"}
            )
    return session.path


def plainly(path: Path) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """The series of a session read the plain way: a record at a time, a field at a time."""
    from dreamlake import read_logs
    from dreamlake._read._tracks import read_track

    out: dict[str, tuple[list[float], list[float], list[float]]] = {}

    def add(name: str, x: float, value: Any) -> None:
        xs, ys, marks = out.setdefault(name, ([], [], []))
        if type(value) in (int, float, bool):
            xs.append(x)
            ys.append(float(value))
        elif value in ("NaN", "Infinity", "-Infinity"):
            marks.append(x)

    for point in read_track(path, "m"):
        for key, value in point["data"].items():
            if key != "step" and not isinstance(value, list):
                add(f"m.{key}", point["data"]["step"], value)
    for record in read_logs(path):
        for key, value in record["metadata"].items():
            add(f"logs.{key}", record["sequenceNumber"], value)
    return {name: series for name, series in out.items() if series[0] or series[2]}


@pytest.mark.parametrize("run_bytes", [300, 16 << 10])
def test_series_are_what_a_plain_reading_of_the_records_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_bytes: int
) -> None:
    """Whole batches of numbers go through C loops, sparse fields through one pass over the rows,
    the rest a point at a time: together they must give what reading record by record gives."""
    from dreamlake._read import _records as _reader

    path = hostile_run(tmp_path)
    monkeypatch.setattr(_reader, "_RUN", run_bytes)
    found = collect(runs_of([path]), None, None, False)
    expected = plainly(path)
    assert list(found) == sorted(expected)
    for name, (xs, ys, marks) in expected.items():
        (series,) = found[name]
        assert (list(series.xs), list(series.ys), sorted(series.marks)) == (xs, ys, sorted(marks)), name
        assert series.nonfinite == len(marks) and series.points == len(xs) + len(marks)


def test_a_series_no_longer_than_the_columns_is_kept_whole() -> None:
    series = Series(run=None, name="s", x_label="step")  # type: ignore[arg-type]
    for i in range(20):
        series.add(i // 5, float(i) if i != 7 else "NaN")  # five points an x
    thinned = thin(series, 20)
    assert thinned.ys == [i for i in range(20) if i != 7] and thinned.marks == [1.0]
    assert len(thin(series, 4).xs) < 19


def test_values_past_what_can_be_drawn_say_so_in_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("plotext")
    with Session(name="wide", workspace="w", local_path=tmp_path) as session:
        for i, x in enumerate([-1.7e308, 0.0, 1.7e308] * 400):
            session.track("t").append(value=float(i), step=x)
    file = session.path / "tracks" / "u" / "data.jsonl"
    file.parent.mkdir()
    file.write_bytes(
        b'{"index":0,"data":{"v":1.0},"createdAt":"2025-01-01T00:00:00.5Z"}\n'
        b'{"index":1,"data":{"v":2.0},"createdAt":"2025-01-01T00:00:00.9e999Z"}\n'
    )
    assert main(["plot", str(session.path)]) == 0
    out = capsys.readouterr().out
    assert "wide: 1200 points  min 0  last 1199  max 1199" in out and "Traceback" not in out
    assert main(["plot", str(session.path), "--track", "u", "--x", "time"]) == 0
    assert "wide: 1 points  min 1  last 1  max 1  1 without time" in capsys.readouterr().out
    assert main(["plot", str(session.path), "--html", str(tmp_path / "p.html")]) == 0


def test_names_that_are_not_utf8_are_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("plotext")
    folder = os.fsdecode(bytes(tmp_path) + b"/w/run\xff")
    file = Path(folder) / "tracks" / os.fsdecode(b"t\xfe") / "data.jsonl"
    file.parent.mkdir(parents=True)
    file.write_bytes(b'{"index":0,"data":{"v":1.0,"step":1},"createdAt":"2025-01-01T00:00:00.5Z"}\n')
    assert main(["plot", folder]) == 0
    assert "t\ufffd.v\n  run\ufffd: 1 points" in capsys.readouterr().out
    assert main(["plot", folder, "--html", str(tmp_path / "p.html")]) == 0
    assert '"runs":["run\ufffd"]' in (tmp_path / "p.html").read_text()


def test_a_run_being_written_and_a_session_given_twice_are_told_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("plotext")
    path = odd_run(tmp_path)
    with open(path / "tracks" / "t" / "data.jsonl", "ab") as f:
        f.write(b'{"index":3002,"data":{"val')  # the writer is in the middle of a line
    assert main(["plot", str(path), str(path), "--track", "t"]) == 0
    err = capsys.readouterr().err
    assert err == f"dreamlake plot: {path / 'tracks' / 't' / 'data.jsonl'}: 1 line is not a point, skipped\n"


def test_follow_says_its_notes_again_after_each_redraw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also: Ctrl-C ends --follow after the redraw it came in, never inside plotext."""
    pytest.importorskip("plotext")
    from dreamlake._cli import _main as _cli

    path = odd_run(tmp_path)
    draw = _cli._draw
    redraws = []

    def counted(*args: Any) -> None:
        redraws.append(args)
        if len(redraws) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of a redraw
        draw(*args)
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler

    monkeypatch.setattr(_cli, "use_color", lambda stream: True)
    monkeypatch.setattr(_cli, "_draw", counted)
    assert main(["plot", str(path), "--track", "t", "--follow", "--interval", "0.01"]) == 130
    out, err = capsys.readouterr()
    assert out.count("\x1b[2J") == 3 and out.endswith("\n")
    assert err.count("1 line is not a point, skipped") == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_tracks_folder_that_cannot_be_listed_is_one_note_and_the_rest_is_drawn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("plotext")
    path = odd_run(tmp_path)

    def unlistable(session: Path) -> list[str]:
        raise PermissionError(13, "Permission denied", str(session / "tracks"))

    monkeypatch.setattr(_series, "track_names", unlistable)
    assert main(["plot", str(path)]) == 0, "the logs are still drawn"
    err = capsys.readouterr().err
    assert (
        f"dreamlake plot: cannot read {path / 'tracks'}: Permission denied\n" in err
        and "Traceback" not in err
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--track", "train/*", "--track", "val/*"], "--track is given twice"),
        (["--field", "a", "--field", "b"], "--field is given twice"),
    ],
)
def test_an_option_given_twice_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["plot", str(make_run(tmp_path, "a", 0.1)), *args])
    assert 2 == exited.value.code
    assert said in capsys.readouterr().err


def test_html_with_follow_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "p.html"
    assert 2 == main(["plot", str(make_run(tmp_path, "a", 0.1)), "--html", str(page), "--follow"])
    assert "--follow redraws in the terminal; it cannot go with --html" in capsys.readouterr().err
    assert not page.exists()


@pytest.mark.parametrize("html", [False, True])
def test_a_selection_that_matches_nothing_says_so_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], html: bool
) -> None:
    if not html:
        pytest.importorskip("plotext")
    run = make_run(tmp_path, "a", 0.1)
    extra = ["--html", str(tmp_path / "p.html")] if html else []
    assert 2 == main(["plot", str(run), "--track", "nope/*", *extra])
    assert "nothing matches --track 'nope/*' in " in capsys.readouterr().err


@pytest.mark.parametrize(("stdout", "status", "said"), [("closed pipe", 0, ""), ("/dev/full", 2, "No space")])
def test_output_that_cannot_be_written_is_not_a_file_that_cannot_be_read(
    tmp_path: Path, stdout: str, status: int, said: str
) -> None:
    path = make_run(tmp_path, "run", 0.1, points=5)
    if stdout == "closed pipe":  # `dreamlake plot ... | head` once head has gone
        read, out = os.pipe()
        os.close(read)
    else:
        if not os.path.exists(stdout):
            pytest.skip("no /dev/full")
        out = os.open(stdout, os.O_WRONLY)
    try:
        command = [sys.executable, "-m", "dreamlake", "plot", str(path), "--html", str(tmp_path / "p.html")]
        done = subprocess.run(command, stdout=out, stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    finally:
        os.close(out)
    assert done.returncode == status
    assert "cannot read" not in done.stderr and said in done.stderr
    assert (tmp_path / "p.html").stat().st_size > 0


@pytest.mark.parametrize(
    ("where", "paths", "names"), [("a", ["."], ["a"]), ("", [".", "a"], ["sweep/a", "sweep/a (2)"])]
)
def test_runs_given_as_relative_paths_keep_their_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, paths: list[str], names: list[str]
) -> None:
    """`dreamlake plot .` in a session folder: the run is named after the session, not ''."""
    make_run(tmp_path, "a", 0.1, points=5)
    monkeypatch.chdir(tmp_path / "sweep" / where)
    assert [run.name for run in runs_of(paths)] == names
