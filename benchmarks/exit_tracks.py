"""What closing, exiting or a SIGTERM costs with many tracks, and what each leaves on disk.

    python benchmarks/exit_tracks.py                   # 10,000 tracks, close(), exit and SIGTERM
    python benchmarks/exit_tracks.py --tracks 1000 --points 3 --reps 3

Each run is a fresh child process in a fresh folder: it opens a session, creates `--tracks`
tracks, each with a description and tags, appends `--points` points to each, then
- close: times `session.close()` (write, make durable, describe);
- exit: returns from the script without close(), timing from the last append to the
  process's end (the exit flush, bounded by 5 s);
- sigterm: sends itself SIGTERM, timed the same way.
The parent then counts the tracks whose points are all in data.jsonl and whose metadata.json
holds the description, tags and the right totalDataPoints. Prints one Markdown row per mode:
medians over --reps runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

CHILD = """
import os, signal, sys, time
from dreamlake import Session

root, mode, tracks, points = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
session = Session(name="run", workspace="ws", local_path=root).open()
start = time.perf_counter()
for t in range(tracks):
    track = session.track(f"layer{t}/grad_norm", description=f"track {t}", tags=["grad", str(t)])
    for p in range(points):
        track.append(value=p * 0.5, step=p)
made = time.perf_counter()
print(f"made {made - start:.6f}", flush=True)
if mode == "close":
    session.close()
    print(f"close {time.perf_counter() - made:.6f}", flush=True)
elif mode == "sigterm":
    print(f"at {time.time():.6f}", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)
else:
    print(f"at {time.time():.6f}", flush=True)
"""


def run(mode: str, tracks: int, points: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as root:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(CHILD), root, mode, str(tracks), str(points)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        ended = time.time()
        out = dict(line.split() for line in proc.stdout.split("\n") if line)
        if mode == "close":
            seconds = float(out["close"])
        else:
            seconds = ended - float(out["at"])  # includes the interpreter's own teardown
        return {"seconds": seconds, "made": float(out["made"]), **check(Path(root), tracks, points)}


def check(root: Path, tracks: int, points: int) -> dict[str, float]:
    """How many tracks have all their points, their description and tags, and the right total."""
    folder = root / "ws" / "run" / "tracks"
    whole = described = totals = 0
    for t in range(tracks):
        base = folder / f"layer{t}" / "grad_norm"
        try:
            lines = (base / "data.jsonl").read_bytes().count(b"\n")
        except OSError:
            lines = 0
        whole += lines == points
        try:
            meta = json.loads((base / "metadata.json").read_bytes())
        except (OSError, ValueError):
            continue
        described += meta.get("description") == f"track {t}" and meta.get("tags") == ["grad", str(t)]
        totals += meta.get("totalDataPoints") == points
    return {"all points": whole, "described": described, "right total": totals}


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--tracks", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=3)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--modes", default="close,exit,sigterm")
    args = parser.parse_args()
    python = sys.version.split()[0]
    print(f"{args.tracks} tracks x {args.points} points, Python {python}, medians of {args.reps}")
    print("| mode | making the tracks | close / exit / SIGTERM | all points | described | right total |")
    print("| --- | --- | --- | --- | --- | --- |")
    for mode in args.modes.split(","):
        runs = [run(mode, args.tracks, args.points) for _ in range(args.reps)]
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(
            f"| {mode} | {med['made']:.2f} s | {med['seconds']:.2f} s | {med['all points']:.0f} | "
            f"{med['described']:.0f} | {med['right total']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
