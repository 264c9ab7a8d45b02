"""The benchmark scenarios: each defined once, run by `dreamlake bench` and `benchmarks/report.py`.

A scenario runs every contender once, alternating, in a fresh temporary folder
each, checks what each wrote (whole JSON lines, the right count: a fast but wrong
writer fails), and returns its figures per contender. Callers repeat scenarios and
take medians.
"""

from __future__ import annotations

import gc
import hashlib
import os
import statistics
import tempfile
import threading
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from .._batcher import write_all
from .._session import Session
from ._contenders import DREAMLAKE, SYNC, Contender, available

Figures = dict[str, dict[str, float]]
"""Per contender, per figure: what one run of a scenario measured."""

_KB = "x" * 1000
_FIELDS20 = ", ".join(f'"metric_{k}": i * 1e-6' for k in range(20))
SHAPES: dict[str, str] = {  # code that sets `msg` and `md` for call number `i`
    "3 floats": 'msg = "Batch"; md = {"loss": i * 1e-6, "lr": 0.001, "grad_norm": 1.5}',
    "one None value": 'msg = "Batch"; md = {"loss": i * 1e-6, "val_loss": None}',
    '"null" in the message': 'msg = "val_loss is null"; md = {"loss": i * 1e-6, "lr": 0.001}',
    "20 keys": f'msg = "Batch"; md = {{{_FIELDS20}}}',
    "nested 3 deep": 'msg = "Batch"; md = {"train": {"opt": {"lr": i * 1e-6, "beta": 0.9}}, "epoch": 1}',
    "numpy array of 100 floats": 'msg = "Batch"; md = {"weights": ARRAY}',
    "1 KB message (each different)": 'msg = f"{i:08d}" + KB; md = {"loss": i * 1e-6}',
    "no metadata": 'msg = "Batch"; md = None',
}
"""Metadata shapes of the end-to-end scenario; "3 floats" is what the other scenarios log."""


def _compile(template: str, call: str, shape: str = "3 floats") -> Callable[..., Any]:
    namespace: dict[str, Any] = {"KB": _KB}
    if "ARRAY" in SHAPES[shape]:
        import numpy

        namespace["ARRAY"] = numpy.linspace(0.0, 1.0, 100)
    exec(template.replace("SHAPE", SHAPES[shape]).replace("CALL", call), namespace)
    return namespace["loop"]  # type: ignore[no-any-return]


def _run(
    contender: Contender, body: Callable[[Any, Callable[[], None]], Any], expected: int
) -> tuple[Any, int]:
    """Set the contender up in a fresh folder, run `body(log, finish)`, check the output.

    Returns what `body` returned and the bytes written."""
    with tempfile.TemporaryDirectory(prefix="dreamlake-bench-") as tmp:
        folder = Path(tmp)
        log, finish = contender.setup(folder)
        gc.collect()
        result = body(log, finish)
        lines, size = count_lines(folder)
        if contender.writes and lines != expected:
            msg = f"{contender.name} wrote {lines} records, expected {expected}"
            raise AssertionError(msg)
    return result, size


def count_lines(folder: Path) -> tuple[int, int]:
    """Whole lines under `folder`, each parsed, and their bytes."""
    total = size = 0
    for path in folder.rglob("*.jsonl"):
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            msg = f"{path}: torn last line"
            raise AssertionError(msg)
        for line in data.splitlines():
            orjson.loads(line)
            total += 1
        size += len(data)
    return total, size


# -- caller latency --------------------------------------------------------------------

_HOT = """
def loop(log, n, lat, clock):
    for i in range(n):
        SHAPE
        t0 = clock()
        CALL
        lat[i] = clock() - t0
"""


def hot(contenders: list[Contender], calls: int, peer_calls: int) -> Figures:
    """`perf_counter_ns` around each call in a tight loop: p50, p99, p99.9, max (ns)."""
    out = {}
    for c in contenders:
        n = peer_calls if c.peer else calls
        loop = _compile(_HOT, c.call)
        lat = array("q", bytes(8 * n))

        def body(log: Any, finish: Callable[[], None]) -> None:
            loop(log, n, lat, time.perf_counter_ns)  # noqa: B023 - called at once
            finish()

        _run(c, body, n)
        values = sorted(lat)
        out[c.name] = {
            "p50": _at(values, 0.5),
            "p99": _at(values, 0.99),
            "p99.9": _at(values, 0.999),
            "max": float(values[-1]),
        }
    return out


def _at(sorted_values: Any, q: float) -> float:
    return float(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))])


# -- end to end ------------------------------------------------------------------------

_E2E = """
def loop(log, n):
    for i in range(n):
        SHAPE
        CALL
"""


def end_to_end(contenders: list[Contender], calls: int, peer_calls: int, shape: str = "3 floats") -> Figures:
    """N calls, then everything durable: wall and CPU per entry (ns), entries/s and MB/s."""
    out = {}
    for c in contenders:
        if not c.writes:
            continue
        n = peer_calls if c.peer else calls
        loop = _compile(_E2E, c.call, shape)

        def body(log: Any, finish: Callable[[], None]) -> dict[str, float]:
            wall, cpu = time.perf_counter_ns(), time.process_time_ns()
            loop(log, n)  # noqa: B023 - called at once
            finish()
            wall, cpu = time.perf_counter_ns() - wall, time.process_time_ns() - cpu
            return {"wall": wall / n, "cpu": cpu / n, "entries/s": n / wall * 1e9}  # noqa: B023

        figures, size = _run(c, body, n)
        figures["MB/s"] = size / figures["wall"] / n * 1e9 / 2**20
        out[c.name] = figures
    return out


def shapes(calls: int) -> Figures:
    """End to end for each metadata shape: dreamlake's CPU per entry over the synchronous writer's."""
    pair = available([DREAMLAKE, SYNC])
    out = {}
    for shape in SHAPES:
        if "ARRAY" in SHAPES[shape] and not _has_numpy():
            continue
        figures = end_to_end(pair, calls, calls, shape)
        ours, floor = figures[DREAMLAKE], figures[SYNC]
        out[shape] = {
            "dreamlake cpu": ours["cpu"],
            "sync cpu": floor["cpu"],
            "ratio": ours["cpu"] / floor["cpu"],
        }
    return out


def _has_numpy() -> bool:
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


# -- training loops --------------------------------------------------------------------

_TRAIN = """
def loop(log, steps, per_step, work):
    for step in range(steps):
        work()
        for j in range(per_step):
            i = step
            SHAPE
            CALL
"""


def sha256_bytes(micros: float) -> int:
    """How many bytes sha256 hashes in about `micros` here: the size of a GIL-free step."""
    buf = bytes(64 * 1024)
    per_hash = _seconds_per_call(lambda: hashlib.sha256(buf).digest(), 40)
    return max(4096, int(len(buf) * micros * 1e-6 / per_hash))


def spin_count(micros: float) -> int:
    """How many iterations `_spin` runs in about `micros` here: the size of a GIL-bound step."""
    per_spin = _seconds_per_call(lambda: _spin(20_000), 1)
    return max(100, int(20_000 * micros * 1e-6 / per_spin))


def _seconds_per_call(call: Callable[[], object], calls: int, tries: int = 5) -> float:
    """The least of `tries` timings of `calls` calls, per call, after one call to warm up.

    The least, not the mean: a timing taken while the machine was busy would make every
    step shorter than asked."""
    call()
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, time.perf_counter() - start)
    return best / calls


def _spin(n: int) -> int:
    total = 0
    for k in range(n):
        total += k
    return total


def sha256_work(size: int) -> Callable[[], None]:
    """A step of GIL-free work: sha256 over `size` bytes (hashlib releases the GIL, like a GPU wait)."""
    buf = bytes(size)
    sha = hashlib.sha256

    def work() -> None:
        sha(buf).digest()

    return work


def spin_work(n: int) -> Callable[[], None]:
    """A step of GIL-bound work: a pure-Python loop of `n` additions (like eager-mode dispatch)."""

    def work() -> None:
        _spin(n)

    return work


def gil_free_work(micros: float) -> Callable[[], None]:
    """A GIL-free step of about `micros`."""
    return sha256_work(sha256_bytes(micros))


def gil_bound_work(micros: float) -> Callable[[], None]:
    """A GIL-bound step of about `micros`."""
    return spin_work(spin_count(micros))


def training(
    contenders: list[Contender], steps: int, micros: float, per_step: int, gil_bound: bool = False
) -> Figures:
    """Overhead (%) of logging in a loop of steps of `micros` of work.

    Blocks of steps without and with logging alternate in one setup, so drifts in
    the machine's speed cancel; overhead is total logged time over total plain time.
    """
    work = (gil_bound_work if gil_bound else gil_free_work)(micros)
    blocks = 10
    per_block = max(1, steps // blocks)
    out = {}
    for c in contenders:
        loop = _compile(_TRAIN, c.call)

        def body(log: Any, finish: Callable[[], None]) -> dict[str, float]:
            plain = logged = 0.0
            for _ in range(blocks):
                t0 = time.perf_counter()
                loop(log, per_block, 0, work)  # noqa: B023 - called at once
                t1 = time.perf_counter()
                loop(log, per_block, per_step, work)  # noqa: B023
                t2 = time.perf_counter()
                plain, logged = plain + t1 - t0, logged + t2 - t1
            finish()
            return {"overhead %": (logged / plain - 1) * 100, "step µs": plain / (blocks * per_block) * 1e6}

        out[c.name], _ = _run(c, body, blocks * per_block * per_step)
    return out


# -- many sessions, many threads -------------------------------------------------------


def sessions(calls: int, count: int = 1000) -> Figures:
    """Round-robin into `count` open sessions, next to one: CPU per entry (ns) until written.

    Written, not fsynced: making 1,000 new files and folders durable costs 2,000
    fsyncs, which one file does not need; `fsync wall` is that cost, per entry."""
    out = {}
    for label, n_sessions in (("1 session", 1), (f"{count:,} sessions", count)):
        with tempfile.TemporaryDirectory(prefix="dreamlake-bench-") as tmp:
            opened = [Session(name=f"s{k}", workspace="b", local_path=tmp).open() for k in range(n_sessions)]
            logs = [s.log for s in opened] * (count // n_sessions)
            gc.collect()
            wall, cpu = time.perf_counter_ns(), time.process_time_ns()
            for i in range(calls):
                logs[i % count]("Batch", "debug", {"loss": i * 1e-6, "lr": 0.001, "grad_norm": 1.5})
            write_all()
            wall, cpu = time.perf_counter_ns() - wall, time.process_time_ns() - cpu
            threads = sum(t.name.startswith("dreamlake") for t in threading.enumerate())
            synced = time.perf_counter_ns()
            for s in opened:
                s.close()
            synced = time.perf_counter_ns() - synced
            written, _ = count_lines(Path(tmp))
            if written != calls:
                msg = f"{label}: wrote {written} records, expected {calls}"
                raise AssertionError(msg)
        out[label] = {
            "cpu": cpu / calls,
            "wall": wall / calls,
            "threads": float(threads),
            "fsync wall": synced / calls,
        }
    return out


def threads(calls: int, count: int = 8) -> Figures:
    """`calls` entries into one session from 1 thread, then from `count` threads: entries/s."""
    out = {}
    for n_threads in (1, count):
        with tempfile.TemporaryDirectory(prefix="dreamlake-bench-") as tmp:
            session = Session(name="threads", workspace="bench", local_path=tmp).open()
            log, share = session.log, calls // n_threads
            start = threading.Barrier(n_threads + 1)

            def run() -> None:
                start.wait()  # noqa: B023 - called at once
                for i in range(share):  # noqa: B023
                    log("Batch", "debug", {"loss": i * 1e-6, "lr": 0.001, "grad_norm": 1.5})  # noqa: B023

            workers = [threading.Thread(target=run) for _ in range(n_threads)]
            for w in workers:
                w.start()
            gc.collect()
            start.wait()
            wall = time.perf_counter_ns()
            for w in workers:
                w.join()
            session.flush()
            wall = time.perf_counter_ns() - wall
            session.close()
            written, _ = count_lines(Path(tmp))
            if written != share * n_threads:
                msg = f"{n_threads} threads wrote {written} records, expected {share * n_threads}"
                raise AssertionError(msg)
        out[f"{n_threads} thread{'s' if n_threads > 1 else ''}"] = {
            "entries/s": share * n_threads / wall * 1e9
        }
    return out


def medians(runs: list[Figures]) -> Figures:
    """Figure by figure, the median over runs."""
    return {
        name: {key: statistics.median(run[name][key] for run in runs) for key in runs[0][name]}
        for name in runs[0]
    }


def environment() -> str:
    import platform

    from .. import __version__

    return (
        f"dreamlake {__version__}, orjson {orjson.__version__}, {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"
    )


def duration(ns: float) -> str:
    """A time in ns, for people: 299 ns, 1.9 µs, 21 µs, 4.2 ms."""
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    if ns >= 1e4:
        return f"{ns / 1e3:.0f} µs"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


# -- `dreamlake bench` -----------------------------------------------------------------

_SIZES = {  # reps, hot-path calls (peers), end-to-end calls (peers), training steps
    "full": (3, 200_000, 10_000, 100_000, 5_000, 1_000),
    "quick": (1, 50_000, 2_000, 30_000, 1_000, 300),
}
STEP_MICROS = 150.0
_WHOLE_RUN = {"full": (3, 0.1), "quick": (1, 0.025)}
"""Runs, and the fraction of each run's steps, of the whole-run scenario here: benchmarks/report.py
runs all the steps 7 times, which takes minutes."""


def command(quick: bool, as_json: bool, out: Any, progress: Any) -> None:
    """Measure every installed contender on this machine; print one table (or JSON) to `out`.

    `progress` (a terminal, or None) gets a line saying what runs now."""
    from . import _whole_run  # it builds on this module

    size = "quick" if quick else "full"
    reps, calls, peer_calls, e2e_calls, e2e_peer_calls, steps = _SIZES[size]
    whole_runs, fraction = _WHOLE_RUN[size]
    contenders = available()
    whole_contenders = [c for c in contenders if c.name in _whole_run.NAMES]
    plan: list[tuple[str, Contender]] = [
        (what, c) for what in ("caller latency", "end to end", "training loop") for c in contenders
    ]
    runs: dict[str, list[Figures]] = {"caller latency": [], "end to end": [], "training loop": []}
    done, total = 0, reps * len(plan) + whole_runs * len(_whole_run.KINDS) * len(whole_contenders)

    def show(what: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress.write(f"\r\x1b[K[{done}/{total}] {what}")
            progress.flush()

    for _ in range(reps):
        figures: dict[str, Figures] = {what: {} for what in runs}
        for what, c in plan:
            show(f"{what}: {c.name}")
            if what == "caller latency":
                figures[what].update(hot([c], calls, peer_calls))
            elif what == "end to end":
                figures[what].update(end_to_end([c], e2e_calls, e2e_peer_calls))
            else:
                figures[what].update(training([c], steps, STEP_MICROS, 1))
        for what in runs:
            runs[what].append(figures[what])
    whole = _whole_run.whole_run(whole_contenders, whole_runs, fraction, show)
    if progress is not None:
        progress.write("\r\x1b[K")
        progress.flush()
    latency, e2e, train = (medians(runs[what]) for what in runs)
    results: dict[str, dict[str, float | None]] = {}
    for c in contenders:
        written = e2e.get(c.name)
        results[c.name] = {
            "p50_ns": latency[c.name]["p50"],
            "p99_ns": latency[c.name]["p99"],
            "max_ns": latency[c.name]["max"],
            "entries_per_s": written["entries/s"] if written else None,
            "mb_per_s": written["MB/s"] if written else None,
            "training_overhead_pct": train[c.name]["overhead %"],
        }
    settings = {
        "runs": reps,
        "hot_path_calls": calls,
        "peer_hot_path_calls": peer_calls,
        "end_to_end_calls": e2e_calls,
        "peer_end_to_end_calls": e2e_peer_calls,
        "training_steps": steps,
        "step_us": round(statistics.median(r["step µs"] for r in train.values()), 1),
    }
    if as_json:
        out.write(
            orjson.dumps(
                {"environment": environment(), "settings": settings, "results": results, "whole_run": whole}
            ).decode()
        )
        out.write("\n")
        return
    out.write(_table(results, settings))
    out.write(_whole_run.table(whole))


def aligned(rows: list[tuple[str, ...]], head: int = 1) -> str:
    """Rows as text columns: the first left-aligned, the others right; a rule under `head` rows."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(head, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _table(results: dict[str, dict[str, float | None]], settings: dict[str, Any]) -> str:
    head = ("logger", "call p50", "call p99", "call max", "entries/s", "MB/s", "training overhead")
    rows: list[tuple[str, ...]] = [head]
    for name, r in results.items():
        rate, mbs = r["entries_per_s"], r["mb_per_s"]
        rows.append(
            (
                name,
                duration(r["p50_ns"] or 0),
                duration(r["p99_ns"] or 0),
                duration(r["max_ns"] or 0),
                "-" if rate is None else f"{rate:,.0f}",
                "-" if mbs is None else f"{mbs:.1f}",
                f"{r['training_overhead_pct']:+.2f}%",
            )
        )
    s = settings
    return (
        aligned(rows)
        + f"""

{environment()}; {"medians of " + str(s["runs"]) + " runs" if s["runs"] > 1 else "one run"}.
call: perf_counter_ns around each of {s["hot_path_calls"]:,} calls ({s["peer_hot_path_calls"]:,} for peers) \
in a tight loop, each logging a message and 3 floats.
entries/s, MB/s: {s["end_to_end_calls"]:,} calls ({s["peer_end_to_end_calls"]:,} for peers), then flush \
and fsync: the file is durable.
training overhead: {s["training_steps"]:,} steps of ~{s["step_us"]:.0f} µs of work that releases the GIL \
(like waiting for a GPU), one log of 3 floats per step, against the same steps without logging.
The no-op call and the sync orjson writer (the same record, written at once) are the floors.
"""
    )
