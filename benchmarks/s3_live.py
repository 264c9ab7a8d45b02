"""What a remote costs a training loop, and how soon a record is in the bucket.

    python benchmarks/s3_live.py                    # both parts, medians of 5
    python benchmarks/s3_live.py --only loop --reps 3
    python benchmarks/s3_live.py --only visible --seconds 30

Starts SeaweedFS on free localhost ports (the tests' server). `loop`: the training loops of
`benchmarks/report.py` (steps of sha256 work, GIL-free or GIL-bound, logging each step), a
fresh process a run, dreamlake without and with `remote=` (remote_interval=1 s, so that rounds
of uploads run during the loop), alternating; the per-call p50 too. `visible`: a process logs
100,000 records/s (paced) for --seconds with the default remote_interval (10 s) while this
one polls the bucket's listing every 0.1 s; for each chunk as it appears, the age of its
oldest and newest records. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import s3server

LOOPS = {  # label: (step µs, logs per step, GIL-bound)
    "70 µs GIL-free, 1 log": (70, 1, False),
    "70 µs GIL-free, 10 logs": (70, 10, False),
    "100 µs GIL-bound, 1 log": (100, 1, True),
}


def loop_child(remote: str, steps: int) -> dict[str, Any]:
    from dreamlake import Session
    from dreamlake._bench import _scenarios
    from dreamlake._bench._contenders import Contender

    def setup(folder: Path) -> tuple[Any, Any]:
        where = {"remote": remote, "remote_interval": 1.0} if remote else {}
        session = Session(name="bench", workspace="bench", local_path=folder, **where).open()  # type: ignore[arg-type]
        return session.log, session.close

    contender = Contender("dreamlake", "log(msg, metadata=md)", setup, peer=False)
    out: dict[str, Any] = {}
    for label, (micros, per_step, bound) in LOOPS.items():
        out[label] = _scenarios.training([contender], steps, micros, per_step, bound)["dreamlake"][
            "overhead %"
        ]
    hot = _scenarios.hot([contender], 200_000, 20_000)["dreamlake"]
    out["p50 ns"] = hot["p50"]
    return out


def part_loop(env: dict[str, str], reps: int, steps: int) -> None:
    kinds = {"without remote": "", "remote=, rounds every 1 s": f"s3://{s3server.BUCKET}/live-loop"}
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for rep in range(reps):
        for kind in list(kinds) if rep % 2 == 0 else list(reversed(kinds)):
            code = [sys.executable, __file__, "--child-loop", kinds[kind], "--steps", str(steps)]
            done = subprocess.run(code, env=env, capture_output=True, text=True, check=True)
            runs[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
    labels = [*LOOPS, "p50 ns"]
    print(f"\n### The loop's overhead over the same loop without logging (%), median of {reps}, "
          f"{steps:,} steps a block\n")  # fmt: skip
    print("| | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels))
    for kind, values in runs.items():
        cells = [statistics.median(v[label] for v in values) for label in labels]
        print(f"| {kind} | " + " | ".join(f"{c:+.1f}" if label != "p50 ns" else f"{c:.0f}"
                                         for c, label in zip(cells, labels, strict=True)) + " |")  # fmt: skip


def visible_child(remote: str, seconds: float, rate: int) -> None:
    from dreamlake import Session

    with Session(name="live", workspace="bench", local_path=tempfile.mkdtemp(), remote=remote) as s:
        start, sent = time.time(), 0
        while (now := time.time()) - start < seconds:
            due = int((now - start) * rate)
            while sent < due:
                s.log("step", metadata={"t": time.time(), "i": sent})
                sent += 1
            time.sleep(0.001)
        print(sent, flush=True)


def part_visible(env: dict[str, str], seconds: float, rate: int) -> None:
    import obstore

    from dreamlake._remote import Remote

    remote = f"s3://{s3server.BUCKET}/live-visible"
    prefix = Remote.parse(remote).key("bench", "live", "logs") + "/"
    proc = subprocess.Popen([sys.executable, __file__, "--child-visible", remote, "--seconds", str(seconds)],
                            env=env, stdout=subprocess.PIPE, text=True)  # fmt: skip
    import os

    os.environ.update(env)
    store = s3server.store()
    seen: set[str] = set()
    ages: list[tuple[float, float, int]] = []
    while True:
        running = proc.poll() is None
        for page in obstore.list(store, prefix):
            for meta in page:
                if meta["path"] in seen:
                    continue
                now = time.time()
                seen.add(meta["path"])
                lines = bytes(obstore.get(store, meta["path"]).bytes()).splitlines()
                times = [json.loads(line)["metadata"]["t"] for line in (lines[0], lines[-1])]
                if running:  # chunks of the close are not what the interval promises
                    ages.append((now - times[0], now - times[1], len(lines)))
        if not running:
            break
        time.sleep(0.1)  # ok: polling the listing is what a reader of the bucket does
    sent = int(proc.stdout.read().strip()) if proc.stdout else 0
    print(f"\n### From log() to visible in the bucket: {sent:,} records in {seconds:g} s "
          f"({sent / seconds:,.0f}/s), remote_interval 10 s, listing polled every 0.1 s\n")  # fmt: skip
    print("| chunk | records | age of its oldest record (s) | of its newest (s) |\n|---|---|---|---|")
    for n, (oldest, newest, count) in enumerate(ages):
        print(f"| {n} | {count:,} | {oldest:.1f} | {newest:.1f} |")
    if ages:
        print(f"\nworst: {max(a[0] for a in ages):.1f} s (target: remote_interval + 2 = 12 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["loop", "visible"])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=35)
    parser.add_argument("--rate", type=int, default=100_000)
    parser.add_argument("--child-loop", help=argparse.SUPPRESS)
    parser.add_argument("--child-visible", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_loop is not None:
        print(json.dumps(loop_child(args.child_loop, args.steps)))
        return
    if args.child_visible is not None:
        visible_child(args.child_visible, args.seconds, args.rate)
        return
    with s3server.seaweedfs() as endpoint:
        env = s3server.environment(endpoint)
        if args.only in (None, "loop"):
            part_loop(env, args.reps, args.steps)
        if args.only in (None, "visible"):
            part_visible(env, args.seconds, args.rate)


if __name__ == "__main__":
    main()
