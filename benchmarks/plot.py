"""`dreamlake plot` on big runs: the HTML page of 10 sessions x 5 series x 1,000,000 points, and the
terminal chart of one series of 10,000,000 points. Whole commands, as a user runs them.

    python benchmarks/plot.py                 # the figures in benchmarks/README.md (targets: < 5 MB
                                              # and < 10 s for the page, < 5 s for the terminal)
    python benchmarks/plot.py --points 100000 # a smaller run

The sessions are written once under a temporary folder (a track of 5 fields a point, its
`step` the x), with one spike and one NaN planted in each; the run checks both are on the page.
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
        size = page.stat().st_size
    print(f"| what | median of {args.reps} | target |\n|---|---|---|")
    print(f"| HTML, 10 sessions x 5 series x {args.points:,} points: size | {size / 1e6:.2f} MB | < 5 MB |")
    print(f"| HTML: whole command | {statistics.median(html):.1f} s | < 10 s |")
    seconds = statistics.median(terminal)
    print(f"| terminal, one series of {args.big:,} points: whole command | {seconds:.1f} s | < 5 s |")


if __name__ == "__main__":
    main()
