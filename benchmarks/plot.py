"""`dreamlake plot` on big runs: the HTML page of 10 sessions x 5 series x 1,000,000 points, and the
terminal chart of one series of 10,000,000 points. Whole commands, as a user runs them.

    python benchmarks/plot.py                 # the figures in benchmarks/README.md (targets: < 5 MB
                                              # and < 10 s for the page, < 5 s for the terminal)
    python benchmarks/plot.py --points 100000 # a smaller run

The sessions are written once under a temporary folder (a track of 5 fields a point, its
`step` the x), with one spike and one NaN planted in each; the run checks both are on the page.
Beside them, in the same run: a bare `orjson.loads` loop over the 10,000,000-point file (the
floor of reading it in one process), and two shapes that are not big but were slow once: logs
whose records carry one of 100 kinds of metadata, and a page of 1,000 small sessions.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from dreamlake import Session


def write(root: Path, name: str, points: int, fields: int) -> None:
    with Session(name=name, workspace="big", local_path=root) as session:
        session.params(run=name)
        track = session.track("train")
        batch = []
        for step in range(points):
            point = {f"f{k}": 1.0 + (step % 101) * 1e-3 * (k + 1) for k in range(fields)}
            if step == points * 2 // 3:
                point["f0"] = 1e6  # the spike
            if step == points // 3:
                point["f1"] = float("nan")
            point["step"] = step
            batch.append(point)
            if len(batch) == 50_000:
                track.append_batch(batch)
                batch = []
        track.append_batch(batch)


def write_sparse(root: Path, records: int, kinds: int) -> None:
    with Session(name="sparse", workspace="logs", local_path=root) as session:
        for i in range(records):
            kind = i % kinds
            session.log("step", metadata={f"loss{kind}": 1.0 / (i + 1), f"acc{kind}": i / records})


def write_small(root: Path, sessions: int, points: int) -> None:
    for n in range(sessions):
        with Session(name=f"s{n}", workspace="small", local_path=root) as session:
            session.params(seed=n)
            for step in range(points):
                session.track("train").append(loss=1.0 / (step + 1), acc=step / points, lr=0.1, step=step)


BARE_LOOP = """import orjson, sys
with open(sys.argv[1], "rb") as f:
    for line in f:
        orjson.loads(line)
"""


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000, help="points a session of the page")
    parser.add_argument("--big", type=int, default=10_000_000, help="points of the terminal's series")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "dreamlake", "plot"]
    with tempfile.TemporaryDirectory(prefix="dreamlake-plot-") as tmp:
        root = Path(tmp)
        print(f"# writing 10 x {args.points:,} points x 5 fields, 1 x {args.big:,} x 1", file=sys.stderr)
        for i in range(10):
            write(root, f"run{i}", args.points, 5)
        write(root / "one", "huge", args.big, 1)
        page = root / "report.html"
        html = [timed([*cli, str(root / "big"), "--html", str(page)]) for _ in range(args.reps)]
        text = page.read_text()
        data = orjson.loads(text.split('id="dreamlake-data">', 1)[1].split("</script>", 1)[0])
        f0 = next(c for c in data["charts"] if c["name"] == "train.f0")
        f1 = next(c for c in data["charts"] if c["name"] == "train.f1")
        assert all(max(line["y"]) == 1e6 for line in f0["lines"]), "a spike was thinned away"
        assert all(line["marks"] and line["nonfinite"] == 1 for line in f1["lines"]), "a NaN was lost"
        terminal = [timed([*cli, str(root / "one" / "big" / "huge")]) for _ in range(args.reps)]
        huge = root / "one" / "big" / "huge" / "tracks" / "train" / "data.jsonl"
        bare = [timed([sys.executable, "-c", BARE_LOOP, str(huge)]) for _ in range(args.reps)]
        size = page.stat().st_size
        write_sparse(root / "sparse", 200_000, 100)
        sparse = [timed([*cli, str(root / "sparse" / "logs" / "sparse")]) for _ in range(args.reps)]
        write_small(root / "small", 1000, 20)
        small_page = str(root / "small.html")
        small = [timed([*cli, str(root / "small" / "small"), "--html", small_page]) for _ in range(args.reps)]
    print(f"| what | median of {args.reps} | target |\n|---|---|---|")
    print(f"| HTML, 10 sessions x 5 series x {args.points:,} points: size | {size / 1e6:.2f} MB | < 5 MB |")
    print(f"| HTML: whole command | {statistics.median(html):.1f} s | < 10 s |")
    seconds = statistics.median(terminal)
    print(f"| terminal, one series of {args.big:,} points: whole command | {seconds:.1f} s | < 5 s |")
    floor = statistics.median(bare)
    print(f"| bare `orjson.loads` loop over that file, one process | {floor:.1f} s | |")
    print(f"| terminal / bare loop | {seconds / floor:.2f}x | |")
    sparse_s = statistics.median(sparse)
    print(f"| terminal, logs of 200,000 records, 100 kinds of metadata | {sparse_s:.1f} s | |")
    print(f"| HTML, 1,000 sessions x 3 series x 20 points | {statistics.median(small):.1f} s | |")


if __name__ == "__main__":
    main()
