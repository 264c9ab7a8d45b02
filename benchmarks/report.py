"""Every scenario side by side, one process per scenario, contenders alternating.

    python benchmarks/report.py                  # everything: the figures in benchmarks/README.md
    python benchmarks/report.py --quick          # a smoke run, about a minute
    python benchmarks/report.py --only hot,train --reps 7
    python benchmarks/report.py --only whole     # whole runs, a fresh process each: ~3 minutes

The scenarios are `dreamlake._bench`'s, the ones `dreamlake bench` runs. Peers need
`pip install -e '.[bench]'`; those not installed are left out. Prints Markdown
tables of medians over --reps runs, and whether each target of issues 9 and 10 holds.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from dreamlake._bench import _scenarios as _bench
from dreamlake._bench import _whole_run
from dreamlake._bench._contenders import DREAMLAKE, NOOP, SYNC, available
from dreamlake._bench._scenarios import duration

SCENARIOS = ("hot", "e2e", "train", "shapes", "sessions", "threads", "tracks", "memory", "read", "whole")
TRAINING = {  # label: (step µs, logs per step, GIL-bound)
    "70 µs GIL-free, 1 log": (70, 1, False),
    "150 µs GIL-free, 1 log": (150, 1, False),
    "70 µs GIL-free, 10 logs": (70, 10, False),
    "150 µs GIL-free, 10 logs": (150, 10, False),
    "100 µs GIL-bound, 1 log": (100, 1, True),
}


# -- children: one scenario each, medians over reps ---------------------------------------


def child(args: argparse.Namespace) -> Any:
    contenders = available()
    reps = args.reps
    if args.child == "hot":
        return _bench.medians([_bench.hot(contenders, args.calls, args.peer_calls) for _ in range(reps)])
    if args.child == "e2e":
        runs = [_bench.end_to_end(contenders, args.e2e_calls, args.peer_calls) for _ in range(reps)]
        return _bench.medians(runs)
    if args.child == "train":
        out = {}
        for label, (micros, per_step, bound) in TRAINING.items():
            runs = [_bench.training(contenders, args.steps, micros, per_step, bound) for _ in range(reps)]
            out[label] = _bench.medians(runs)
        return out
    if args.child == "shapes":
        return _bench.medians([_bench.shapes(args.e2e_calls // 2) for _ in range(reps)])
    if args.child == "sessions":
        return _bench.medians([_bench.sessions(args.e2e_calls) for _ in range(reps)])
    if args.child == "threads":
        return _bench.medians([_bench.threads(args.e2e_calls) for _ in range(reps)])
    if args.child == "tracks":
        return _bench.medians([tracks(args.calls, args.e2e_calls) for _ in range(reps)])
    if args.child == "memory":
        return memory(args.contender, args.memory_calls)
    return read_back(reps, args.read_records)


def memory(name: str, calls: int) -> dict[str, float]:
    """Peak RSS above the start while `calls` entries are logged in a tight loop."""
    (contender,) = available([name])
    loop = _bench._compile(_bench._E2E, contender.call)

    def body(log: Any, finish: Any) -> dict[str, float]:
        start = current_rss()
        t0 = time.perf_counter()
        loop(log, calls)
        finish()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {"peak_mb": (peak - start) / 2**20, "seconds": time.perf_counter() - t0}

    figures: dict[str, float] = _bench._run(contender, body, calls)[0]
    return figures


TRACK_CALLS = {  # the same metric, as a log record and as a track point
    "session.log(...)": 's.log("loss", metadata={"value": i * 1e-6, "step": i})',
    "session.track(...).append(...)": 's.track("loss").append(value=i * 1e-6, step=i)',
}
_TRACK_HOT = """
def loop(s, n, lat, clock):
    for i in range(n):
        t0 = clock()
        CALL
        lat[i] = clock() - t0
"""
_TRACK_E2E = """
def loop(s, n):
    for i in range(n):
        CALL
"""


def tracks(calls: int, e2e_calls: int) -> dict[str, dict[str, float]]:
    """A metric logged and tracked, alternating, each in a fresh session: caller p50 and p99 (ns),
    then end to end (calls, flush, fsync): CPU per call (ns)."""
    from array import array

    import dreamlake

    out: dict[str, dict[str, float]] = {}
    for name, call in TRACK_CALLS.items():
        hot = _bench._compile(_TRACK_HOT.replace("CALL", call), "")
        e2e = _bench._compile(_TRACK_E2E.replace("CALL", call), "")
        lat = array("q", bytes(8 * calls))
        with tempfile.TemporaryDirectory() as tmp:
            with dreamlake.Session(name="hot", workspace="bench", local_path=tmp) as s:
                gc.collect()
                hot(s, calls, lat, time.perf_counter_ns)
            with dreamlake.Session(name="e2e", workspace="bench", local_path=tmp) as s:
                gc.collect()
                cpu = time.process_time_ns()
                e2e(s, e2e_calls)
                s.flush()
                cpu = time.process_time_ns() - cpu
            tracked = "track" in name
            written = len(dreamlake.read_track(s.path, "loss") if tracked else dreamlake.read_logs(s.path))
            assert written == e2e_calls, f"{name}: {written} written, {e2e_calls} expected"
        values = sorted(lat)
        out[name] = {"p50": _bench._at(values, 0.5), "p99": _bench._at(values, 0.99), "cpu": cpu / e2e_calls}
    return out


def current_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def read_back(reps: int, count: int) -> dict[str, dict[str, float]]:
    """read_logs on a file of `count` records and read_track on a track of `count` points, each
    next to a bare orjson.loads loop over the lines of the same file."""
    import orjson

    import dreamlake

    def bare(file: Any) -> list[Any]:
        with open(file, "rb") as f:
            return [orjson.loads(line) for line in f.read().split(b"\n")[:-1]]

    readers = {
        "logs: bare orjson loop": lambda s: bare(s.log_file),
        "dreamlake.read_logs": lambda s: dreamlake.read_logs(s.path),
        "track: bare orjson loop": lambda s: bare(s.path / "tracks" / "loss" / "data.jsonl"),
        "dreamlake.read_track": lambda s: dreamlake.read_track(s.path, "loss"),
    }
    samples: dict[str, list[float]] = {name: [] for name in readers}
    with tempfile.TemporaryDirectory() as tmp:
        with dreamlake.Session(name="read", workspace="bench", local_path=tmp) as s:
            track = s.track("loss")
            for i in range(count):
                s.log("Batch", "debug", {"loss": i * 1e-6, "lr": 0.001})
                track.append(value=i * 1e-6, step=i)
        for _ in range(reps):
            for name, read in readers.items():
                gc.collect()
                t0 = time.perf_counter()
                got = read(s)
                samples[name].append(time.perf_counter() - t0)
                assert len(got) == count, f"{name}: {len(got)} read, {count} expected"
                del got
    return {name: {"seconds": statistics.median(runs)} for name, runs in samples.items()}


def spawn(args: argparse.Namespace, scenario: str, contender: str = "") -> Any:
    """Run one scenario in a fresh interpreter (peak RSS is a process's own); its figures."""
    cmd = [sys.executable, __file__, "--child", scenario, "--contender", contender]
    for opt in ("reps", "calls", "e2e_calls", "peer_calls", "steps", "memory_calls", "read_records"):
        cmd += [f"--{opt.replace('_', '-')}", str(getattr(args, opt))]
    print(f"# running {scenario}", file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# -- parent: tables and targets ---------------------------------------------------------


class Report:
    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.checks: list[tuple[str, bool]] = []

    def check(self, text: str, ok: bool) -> None:
        self.checks.append((text, ok))

    def hot(self, hot: dict[str, Any], args: argparse.Namespace) -> None:
        floor = hot[NOOP]["p50"]
        print(
            f"### Hot path: {args.calls:,} calls ({args.peer_calls:,} for peers), "
            "perf_counter_ns around each\n"
        )
        print("| contender | p50 | p99 | p99.9 | max | p50 / no-op |\n|---|---|---|---|---|---|")
        for name in self.names:
            r = hot[name]
            print(
                f"| {name} | {duration(r['p50'])} | {duration(r['p99'])} | {duration(r['p99.9'])} "
                f"| {duration(r['max'])} | {r['p50'] / floor:.1f}x |"
            )
        d = hot[DREAMLAKE]
        self.check(f"6. hot path p50 <= 3x no-op: {d['p50'] / floor:.1f}x", d["p50"] <= 3 * floor)
        self.check(f"6. hot path p99 < 1 µs: {duration(d['p99'])}", d["p99"] < 1000)
        self.check(f"6. hot path max < 2 ms: {duration(d['max'])}", d["max"] < 2e6)
        print()

    def e2e(self, e2e: dict[str, Any], args: argparse.Namespace) -> None:
        floor = e2e[SYNC]
        print(
            f"### End to end: {args.e2e_calls:,} calls ({args.peer_calls:,} for peers), then flush + fsync\n"
        )
        print("| contender | wall / entry | CPU / entry | entries/s | MB/s | CPU / sync orjson |")
        print("|---|---|---|---|---|---|")
        for name in self.names:
            if name in e2e:
                r = e2e[name]
                print(
                    f"| {name} | {duration(r['wall'])} | {duration(r['cpu'])} | {r['entries/s']:,.0f} "
                    f"| {r['MB/s']:.1f} | {r['cpu'] / floor['cpu']:.2f}x |"
                )
        ratio = e2e[DREAMLAKE]["cpu"] / floor["cpu"]
        self.check(f"4. end-to-end CPU per entry <= 1.0x sync orjson: {ratio:.2f}x", ratio <= 1.0)
        print()

    def train(self, train: dict[str, Any], args: argparse.Namespace) -> None:
        labels = list(TRAINING)
        print(f"### Training loops: {args.steps:,} steps, overhead of logging (3 floats a log)\n")
        print("| contender | " + " | ".join(labels) + " |\n|---|" + "---|" * len(labels))
        for name in self.names:
            print(
                f"| {name} | "
                + " | ".join(f"{train[label][name]['overhead %']:.2f}%" for label in labels)
                + " |"
            )
        print()

        def pct(label: str, name: str) -> float:
            return float(train[label][name]["overhead %"])

        for label in labels[:2]:
            ours, sync = pct(label, DREAMLAKE), pct(label, SYNC)
            self.check(f"1. {label}: overhead <= 1.0%: {ours:.2f}%", ours <= 1.0)
            self.check(f"1. {label}: <= 1/3 of sync's: {ours:.2f}% vs {sync:.2f}%", ours <= sync / 3)
        for label in labels[2:4]:
            ours, sync = pct(label, DREAMLAKE), pct(label, SYNC)
            self.check(f"2. {label}: <= 1/2 of sync's: {ours:.2f}% vs {sync:.2f}%", ours <= sync / 2)
        label = labels[4]
        ours, sync = pct(label, DREAMLAKE), pct(label, SYNC)
        self.check(f"3. {label}: <= sync's: {ours:.2f}% vs {sync:.2f}%", ours <= sync)

    def shapes(self, shapes: dict[str, Any], args: argparse.Namespace) -> None:
        print(f"### Metadata shapes: {args.e2e_calls // 2:,} calls each, then flush + fsync\n")
        print("| shape | dreamlake CPU / entry | sync orjson CPU / entry | ratio |\n|---|---|---|---|")
        for shape, r in shapes.items():
            print(
                f"| {shape} | {duration(r['dreamlake cpu'])} | {duration(r['sync cpu'])} "
                f"| {r['ratio']:.2f}x |"
            )
        worst = max(shapes, key=lambda s: shapes[s]["ratio"])
        ratio = shapes[worst]["ratio"]
        self.check(f"5. every shape <= 1.2x sync orjson: worst {ratio:.2f}x ({worst})", ratio <= 1.2)
        print()

    def sessions(self, sessions: dict[str, Any], args: argparse.Namespace) -> None:
        print(f"### Many sessions: {args.e2e_calls:,} calls round-robin, until written\n")
        print(
            "| sessions | CPU / entry | wall / entry | dreamlake threads | then close (fsync): wall / entry |"
        )
        print("|---|---|---|---|---|")
        for label, r in sessions.items():
            print(
                f"| {label} | {duration(r['cpu'])} | {duration(r['wall'])} | {r['threads']:.0f} "
                f"| {duration(r['fsync wall'])} |"
            )
        one, many = sessions.values()
        self.check(f"7. threads bounded: {many['threads']:.0f} for 1,000 sessions", many["threads"] <= 2)
        ratio = many["cpu"] / one["cpu"]
        self.check(f"7. 1,000 sessions <= 1.2x the CPU per entry of one: {ratio:.2f}x", ratio <= 1.2)
        print()

    def tracks(self, tracks: dict[str, Any], args: argparse.Namespace) -> None:
        print(
            f"### Tracks: one metric as a log record and as a track point; {args.calls:,} calls "
            f"timed each, {args.e2e_calls:,} end to end (then flush + fsync)\n"
        )
        print("| call | p50 | p99 | CPU / call end to end |\n|---|---|---|---|")
        for name, r in tracks.items():
            print(f"| `{name}` | {duration(r['p50'])} | {duration(r['p99'])} | {duration(r['cpu'])} |")
        log, track = tracks.values()
        for figure, what in (("p50", "caller p50"), ("cpu", "end-to-end CPU")):
            ratio = track[figure] / log[figure]
            self.check(f"10. track append {what} <= 1.5x log()'s: {ratio:.2f}x", ratio <= 1.5)
        print()

    def whole(self, whole: _whole_run.WholeRun, args: argparse.Namespace) -> None:
        kinds = whole["kinds"]
        runs = whole["runs"]
        print(
            f"### Whole run (open, steps, close): a fresh process a run, contenders alternating, "
            f"medians of {runs} run{'s' if runs > 1 else ''}\n"
        )
        print(
            "| step kind | steps | logs a step | work a step | no-op floor: step | wall / CPU | runs' wall |"
        )
        print("|---|---|---|---|---|---|---|")
        for label, k in kinds.items():
            floor = k["contenders"][NOOP]
            walls = floor["wall_runs_s"]
            print(
                f"| {label} | {k['steps']:,} | {k['logs_per_step']} | {k['work']} | {k['step_us']:.1f} µs "
                f"| {floor['wall_s']:.3f} s / {floor['cpu_s']:.3f} s | {min(walls):.3f}-{max(walls):.3f} s |"
            )
        print()
        print("Overhead over the no-op floor, wall / CPU, % of the floor's median:\n")
        print("| contender | " + " | ".join(kinds) + " |\n|---|" + "---|" * len(kinds))
        names = list(next(iter(kinds.values()))["contenders"])
        for name in names:
            if name != NOOP:
                figures = [k["contenders"][name] for k in kinds.values()]
                cells = [f"{f['wall_overhead_pct']:+.2f}% / {f['cpu_overhead_pct']:+.2f}%" for f in figures]
                print(f"| {name} | " + " | ".join(cells) + " |")

        def ratio(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}x"

        if DREAMLAKE in names and SYNC in names:
            cells = [
                f"{ratio(k['dreamlake_vs_sync_wall'])} / {ratio(k['dreamlake_vs_sync_cpu'])}"
                for k in kinds.values()
            ]
            print("| dreamlake overhead / sync's | " + " | ".join(cells) + " |")
        print()
        print(
            "Whole process, spawn to exit (the parent's clock: start, imports, exit too), over the floor's:\n"
        )
        print("| contender | " + " | ".join(kinds) + " |\n|---|" + "---|" * len(kinds))
        for name in names:
            cells = []
            for k in kinds.values():
                f = k["contenders"][name]
                cells.append(
                    f"{f['process_wall_s']:.3f} s"
                    if name == NOOP
                    else f"{f['process_overhead_s'] * 1e3:+.0f} ms"
                )
            print(f"| {name} | " + " | ".join(cells) + " |")
        print()

    def threads(self, threads: dict[str, Any], args: argparse.Namespace) -> None:
        print(f"### Threads: {args.e2e_calls:,} calls into one session, then flush\n")
        print("| threads | entries/s |\n|---|---|")
        for label, r in threads.items():
            print(f"| {label} | {r['entries/s']:,.0f} |")
        one, eight = threads.values()
        ratio = eight["entries/s"] / one["entries/s"]
        self.check(f"8. 8 threads >= the throughput of one: {ratio:.2f}x", ratio >= 1.0)
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1_000_000, help="hot path calls per run")
    parser.add_argument("--e2e-calls", type=int, default=200_000)
    parser.add_argument("--peer-calls", type=int, default=20_000, help="hot path and e2e calls for peers")
    parser.add_argument("--steps", type=int, default=3_000)
    parser.add_argument("--memory-calls", type=int, default=5_000_000)
    parser.add_argument("--read-records", type=int, default=1_000_000)
    parser.add_argument("--whole-runs", type=int, default=7, help="runs of each contender in a whole run")
    parser.add_argument("--whole-fraction", type=float, default=1.0, help="of the whole run's steps")
    parser.add_argument("--quick", action="store_true", help="small counts, 1 rep: a smoke run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.reps, args.calls, args.e2e_calls, args.peer_calls = 1, 20_000, 20_000, 2_000
        args.steps, args.memory_calls, args.read_records = 200, 200_000, 20_000
        args.whole_runs, args.whole_fraction = 1, 0.025
    if args.child:
        print(json.dumps(child(args)))
        return

    only = args.only.split(",")
    report = Report([c.name for c in available()])
    print(f"{_bench.environment()}, {time.strftime('%Y-%m-%d')}, medians of {args.reps} runs\n")
    for scenario in ("hot", "e2e", "train", "shapes", "sessions", "threads", "tracks"):
        if scenario in only:
            getattr(report, scenario)(spawn(args, scenario), args)
    if "memory" in only:
        print(f"### Memory: {args.memory_calls:,} entries in a tight loop\n")
        print("| contender | peak RSS above start | seconds |\n|---|---|---|")
        for name in (DREAMLAKE, SYNC):
            r = spawn(args, "memory", name)
            print(f"| {name} | {r['peak_mb']:.0f} MB | {r['seconds']:.1f} |")
        print()
    if "read" in only:
        read = spawn(args, "read")
        print(f"### Read-back: {args.read_records:,} records, {args.read_records:,} points\n")
        print("| reader | seconds | speed / bare orjson loop |\n|---|---|---|")
        for name, r in read.items():
            floor = read[("logs" if "logs" in name else "track") + ": bare orjson loop"]["seconds"]
            print(f"| {name} | {r['seconds']:.2f} | {floor / r['seconds']:.2f}x |")
        speed = read["track: bare orjson loop"]["seconds"] / read["dreamlake.read_track"]["seconds"]
        report.check(f"10. read_track at >= 0.7x the speed of a bare orjson loop: {speed:.2f}x", speed >= 0.7)
        print()
    if "whole" in only:  # each run is a fresh process already: no child for the scenario

        def progress(what: str) -> None:
            print(f"# running {what}", file=sys.stderr, flush=True)

        whole = _whole_run.whole_run(_whole_run.contenders(), args.whole_runs, args.whole_fraction, progress)
        report.whole(whole, args)
    print("### Targets (issues 9 and 10)\n")
    for text, ok in report.checks:
        print(f"- {'met' if ok else '**not met**'}: {text}")


if __name__ == "__main__":
    main()
