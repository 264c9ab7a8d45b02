"""Every scenario side by side, one process per scenario, contenders alternating.

    python benchmarks/report.py                 # everything, the figures in benchmarks/README.md
    python benchmarks/report.py --quick         # a smoke run in well under a minute
    python benchmarks/report.py --only hot,train --reps 7

Peers need `pip install -e .[bench]`; those not installed are left out.
Prints Markdown tables of medians over --reps runs, and whether each target holds.
"""

import argparse
import gc
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from contenders import Contender, available, count_lines

SCENARIOS = ("hot", "e2e", "train", "memory", "read")

HOT_LOOP = """
def loop(log, n, lat, clock):
    for i in range(n):
        md = {"loss": i * 1e-6}
        t0 = clock()
        CALL
        lat[i] = clock() - t0
"""
E2E_LOOP = """
def loop(log, n):
    for i in range(n):
        md = {"loss": i * 1e-6, "lr": 0.001}
        CALL
"""
TRAIN_LOOP = """
def loop(log, steps, per_step, work):
    for step in range(steps):
        work()
        for j in range(per_step):
            md = {"loss": step * 1e-6, "lr": 0.001, "grad_norm": 1.5}
            CALL
"""


def compile_loop(template: str, call: str) -> Callable[..., Any]:
    namespace: dict[str, Any] = {}
    exec(template.replace("CALL", call), namespace)
    return namespace["loop"]


def run_once(contender: Contender, body: Callable[[Any], Any], expected: int | None) -> Any:
    """Set the contender up in a fresh folder, run `body(log)`, finish, check the output."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        log, finish = contender.setup(folder)
        gc.collect()
        result = body((log, finish))
        if contender.writes and expected is not None:
            written = count_lines(folder)
            assert written == expected, f"{contender.name}: wrote {written}, expected {expected}"
    return result


def percentile(sorted_values: Any, q: float) -> float:
    return float(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))])


def scenario_hot(contenders: list[Contender], reps: int, ours: int, peers: int) -> dict[str, Any]:
    samples: dict[str, list[dict[str, float]]] = {c.name: [] for c in contenders}
    for _ in range(reps):
        for c in contenders:
            calls = peers if c.peer else ours
            loop = compile_loop(HOT_LOOP, c.call)
            lat = array("q", bytes(8 * calls))

            def body(lf: Any) -> None:
                log, finish = lf
                loop(log, calls, lat, time.perf_counter_ns)
                finish()

            run_once(c, body, calls)
            values = sorted(lat)
            samples[c.name].append(
                {
                    "p50": percentile(values, 0.5),
                    "p99": percentile(values, 0.99),
                    "p99.9": percentile(values, 0.999),
                    "max": float(values[-1]),
                }
            )
    return {name: _median_of(runs) for name, runs in samples.items()}


def scenario_e2e(contenders: list[Contender], reps: int, ours: int, peers: int) -> dict[str, Any]:
    samples: dict[str, list[dict[str, float]]] = {c.name: [] for c in contenders}
    for _ in range(reps):
        for c in contenders:
            calls = peers if c.peer else ours
            loop = compile_loop(E2E_LOOP, c.call)

            def body(lf: Any) -> dict[str, float]:
                log, finish = lf
                wall, cpu = time.perf_counter_ns(), time.process_time_ns()
                loop(log, calls)
                finish()
                return {
                    "wall": (time.perf_counter_ns() - wall) / calls,
                    "cpu": (time.process_time_ns() - cpu) / calls,
                }

            samples[c.name].append(run_once(c, body, calls))
    return {name: _median_of(runs) for name, runs in samples.items()}


def calibrated_work(target_us: float = 150.0) -> Callable[[], None]:
    """sha256 over a buffer sized to take about `target_us`; hashlib releases the GIL."""
    size = 64 * 1024
    buf = bytes(size)
    start = time.perf_counter()
    for _ in range(200):
        hashlib.sha256(buf).digest()
    per_call = (time.perf_counter() - start) / 200
    size = max(4096, int(size * target_us * 1e-6 / per_call))
    buf = bytes(size)
    sha = hashlib.sha256

    def work() -> None:
        sha(buf).digest()

    return work


def scenario_train(contenders: list[Contender], reps: int, steps: int) -> dict[str, Any]:
    """Blocks of steps with and without logging alternate, so drifts in machine speed cancel."""
    work = calibrated_work()
    blocks = 10
    samples: dict[str, list[dict[str, float]]] = {c.name: [] for c in contenders}
    step_us = []
    for _ in range(reps):
        for c in contenders:
            loop = compile_loop(TRAIN_LOOP, c.call)
            sample = {}
            for per_step in (1, 10):

                def body(lf: Any) -> tuple[float, float]:
                    log, finish = lf
                    base = logged = 0.0
                    for _ in range(blocks):
                        t0 = time.perf_counter()
                        loop(log, steps // blocks, 0, work)  # the same loop without logging
                        t1 = time.perf_counter()
                        loop(log, steps // blocks, per_step, work)
                        t2 = time.perf_counter()
                        base, logged = base + t1 - t0, logged + t2 - t1
                    finish()
                    return base, logged

                base, logged = run_once(c, body, steps // blocks * blocks * per_step)
                sample[f"{per_step}/step"] = (logged / base - 1) * 100
                step_us.append(base / steps * 1e6)
            samples[c.name].append(sample)
    result = {name: _median_of(runs) for name, runs in samples.items()}
    result["_step_us"] = statistics.median(step_us)
    return result


def scenario_read(reps: int, count: int) -> dict[str, Any]:
    """read_logs on a file of `count` records, next to a bare orjson.loads loop over its lines."""
    import orjson

    import dreamlake

    samples: dict[str, list[dict[str, float]]] = {"bare orjson loop": [], "dreamlake.read_logs": []}
    with tempfile.TemporaryDirectory() as tmp:
        with dreamlake.Session(name="read", workspace="bench", local_path=tmp) as s:
            for i in range(count):
                s.log("Batch", "debug", {"loss": i * 1e-6, "lr": 0.001})
        for _ in range(reps):
            gc.collect()
            t0 = time.perf_counter()
            with open(s.log_file, "rb") as f:
                bare = [orjson.loads(line) for line in f.read().split(b"\n")[:-1]]
            t1 = time.perf_counter()
            records = dreamlake.read_logs(s.path)
            t2 = time.perf_counter()
            assert len(bare) == len(records) == count
            del bare, records
            samples["bare orjson loop"].append({"seconds": t1 - t0})
            samples["dreamlake.read_logs"].append({"seconds": t2 - t1})
    return {name: _median_of(runs) for name, runs in samples.items()}


def current_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def scenario_memory(contender: Contender, calls: int) -> dict[str, Any]:
    loop = compile_loop(E2E_LOOP, contender.call)

    def body(lf: Any) -> dict[str, float]:
        log, finish = lf
        start = current_rss()
        t0 = time.perf_counter()
        loop(log, calls)
        finish()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {"peak_mb": (peak - start) / 2**20, "seconds": time.perf_counter() - t0}

    return run_once(contender, body, calls)


def _median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


# -- parent: run children, print tables ------------------------------------------------


def child(args: argparse.Namespace) -> None:
    contenders = available()
    if args.scenario == "memory":
        (c,) = [c for c in contenders if c.name == args.contender]
        print(json.dumps(scenario_memory(c, args.memory_calls)))
        return
    if args.scenario == "read":
        print(json.dumps(scenario_read(args.reps, args.read_records)))
        return
    if args.scenario == "hot":
        out = scenario_hot(contenders, args.reps, args.calls, args.peer_calls)
    elif args.scenario == "e2e":
        out = scenario_e2e(contenders, args.reps, args.e2e_calls, args.peer_calls)
    else:
        out = scenario_train(contenders, args.reps, args.steps)
    print(json.dumps(out))


def spawn(args: argparse.Namespace, scenario: str, contender: str | None = None) -> Any:
    cmd = [sys.executable, __file__, "--child", scenario]
    for opt in ("reps", "calls", "e2e_calls", "peer_calls", "steps", "memory_calls", "read_records"):
        cmd += [f"--{opt.replace('_', '-')}", str(getattr(args, opt))]
    if contender:
        cmd += ["--contender", contender]
    print(f"# running {scenario} {contender or ''}", file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def ns(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.1f} ms"
    if value >= 1e4:
        return f"{value / 1e3:.0f} µs"
    if value >= 1e3:
        return f"{value / 1e3:.1f} µs"
    return f"{value:.0f} ns"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1_000_000, help="hot path calls per run")
    parser.add_argument("--e2e-calls", type=int, default=200_000)
    parser.add_argument("--peer-calls", type=int, default=100_000, help="hot path and e2e calls for peers")
    parser.add_argument("--steps", type=int, default=5_000)
    parser.add_argument("--memory-calls", type=int, default=5_000_000)
    parser.add_argument("--read-records", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="small counts, 1 rep: a smoke run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.reps, args.calls, args.e2e_calls, args.peer_calls = 1, 20_000, 20_000, 5_000
        args.steps, args.memory_calls, args.read_records = 300, 200_000, 20_000
    if args.child:
        args.scenario = args.child
        child(args)
        return

    names = [c.name for c in available()]
    only = args.only.split(",")
    print(
        f"dreamlake {__import__('dreamlake').__version__}, CPython {platform.python_version()}, "
        f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}, medians of {args.reps} runs\n"
    )
    checks: list[tuple[str, bool]] = []
    hot = e2e = None
    if "hot" in only:
        hot = spawn(args, "hot")
        floor = hot["no-op call"]["p50"]
        print(
            f"### Hot path: {args.calls:,} calls ({args.peer_calls:,} for peers), "
            "perf_counter_ns around each\n"
        )
        print("| contender | p50 | p99 | p99.9 | max | p50 / no-op |\n|---|---|---|---|---|---|")
        for name in names:
            r = hot[name]
            print(
                f"| {name} | {ns(r['p50'])} | {ns(r['p99'])} | {ns(r['p99.9'])} | {ns(r['max'])} "
                f"| {r['p50'] / floor:.1f}x |"
            )
        d = hot["dreamlake"]
        checks += [
            (f"hot p50 <= 3x no-op ({d['p50'] / floor:.2f}x)", d["p50"] <= 3 * floor),
            (f"hot p99 < 2 µs ({ns(d['p99'])})", d["p99"] < 2000),
            (f"hot max < 5 ms ({ns(d['max'])})", d["max"] < 5e6),
        ]
        if "stdlib FileHandler+JSON" in hot:
            ratio = hot["stdlib FileHandler+JSON"]["p50"] / d["p50"]
            checks.append((f"caller cost >= 20x below stdlib+JSON ({ratio:.1f}x)", ratio >= 20))
        print()
    if "e2e" in only:
        e2e = spawn(args, "e2e")
        floor = e2e["sync orjson writer"]
        print(
            f"### End to end: {args.e2e_calls:,} calls ({args.peer_calls:,} for peers), then flush + fsync\n"
        )
        print("| contender | wall / entry | CPU / entry | wall / sync orjson | CPU / sync orjson |")
        print("|---|---|---|---|---|")
        for name in names:
            if name == "no-op call":
                continue
            r = e2e[name]
            print(
                f"| {name} | {ns(r['wall'])} | {ns(r['cpu'])} | {r['wall'] / floor['wall']:.2f}x "
                f"| {r['cpu'] / floor['cpu']:.2f}x |"
            )
        ratio = e2e["dreamlake"]["wall"] / floor["wall"]
        checks.append((f"end to end <= 1.3x sync orjson ({ratio:.2f}x)", ratio <= 1.3))
        print()
    if "train" in only:
        train = spawn(args, "train")
        print(f"### Training loop: {args.steps:,} steps of ~{train['_step_us']:.0f} µs GIL-free work\n")
        print("| contender | overhead, 1 log/step | overhead, 10 logs/step |\n|---|---|---|")
        for name in names:
            r = train[name]
            print(f"| {name} | {r['1/step']:.2f}% | {r['10/step']:.2f}% |")
        d = train["dreamlake"]["1/step"]
        peers = [
            train[n]["1/step"] for n in names if n not in ("no-op call", "dreamlake", "sync orjson writer")
        ]
        checks.append((f"training overhead < 0.5% at 1 log/step ({d:.2f}%)", d < 0.5))
        if peers:
            best = min(peers)
            checks.append((f"overhead <= 1/5 of best peer's ({d:.2f}% vs {best:.2f}%)", d <= best / 5))
        print()
    if "memory" in only:
        print(f"### Memory: {args.memory_calls:,} entries in a tight loop\n")
        print("| contender | peak RSS above start | seconds |\n|---|---|---|")
        for name in ("dreamlake", "sync orjson writer"):
            r = spawn(args, "memory", name)
            print(f"| {name} | {r['peak_mb']:.0f} MB | {r['seconds']:.1f} |")
            if name == "dreamlake":
                checks.append((f"peak RSS < 200 MB above start ({r['peak_mb']:.0f} MB)", r["peak_mb"] < 200))
        print()
    if "read" in only:
        read = spawn(args, "read")
        floor = read["bare orjson loop"]["seconds"]
        print(f"### Read-back: {args.read_records:,} records\n")
        print("| reader | seconds | ratio |\n|---|---|---|")
        for name, r in read.items():
            print(f"| {name} | {r['seconds']:.2f} | {r['seconds'] / floor:.2f}x |")
        print()
    print("### Targets\n")
    for text, ok in checks:
        print(f"- [{'x' if ok else ' '}] {text}")


if __name__ == "__main__":
    main()
