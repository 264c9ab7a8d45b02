"""The whole-run scenario: a training run as its user sees it, one fresh Python process a run.

Each run is a child interpreter that opens the logger, runs the steps, closes it (everything
durable: flush, fsync) and exits. The child times open + steps + close itself, wall and
process CPU (which counts a logger's own threads); the parent times the whole process, spawn
to exit, and checks what was written. Contenders alternate run by run, so a drift in the
machine's speed spreads over all of them; each figure is a median over runs, and overheads
are taken against the median of the no-op call, the floor.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict

from ._contenders import DREAMLAKE, NOOP, SYNC, Contender, available
from ._scenarios import (
    _TRAIN,
    _compile,
    aligned,
    count_lines,
    sha256_bytes,
    sha256_work,
    spin_count,
    spin_work,
)


@dataclass(frozen=True)
class StepKind:
    """A training run: `steps` steps of about `micros` of work each, `logs` logs a step."""

    label: str
    steps: int
    logs: int
    gil_bound: bool
    micros: float = 70.0


KINDS = (
    StepKind("70 µs GIL-free, 1 log", 20_000, 1, gil_bound=False),
    StepKind("70 µs GIL-free, 10 logs", 5_000, 10, gil_bound=False),
    StepKind("70 µs GIL-bound, 1 log", 20_000, 1, gil_bound=True),
)
NAMES = (
    NOOP,
    DREAMLAKE,
    SYNC,
    "stdlib FileHandler+JSON",
    "stdlib QueueHandler",
    "structlog orjson",
    "loguru serialize",
)
"""The contenders of a whole run, those installed; loguru's enqueue mode (~80 µs a call) is left out."""

SESSION_CALL = "log(msg, metadata=md)"
"""How a user calls `session.log`; the no-op floor and the sync writer take the same call."""

_CHILD = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from dreamlake._bench._whole_run import child; child(sys.argv[2])"
)
_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding this dreamlake: the child runs it too


class RunFigures(TypedDict):
    """One contender's medians in one kind of run (seconds, and % of the floor's)."""

    wall_s: float
    cpu_s: float
    process_wall_s: float  # spawn to exit, the parent's clock: interpreter start, imports, exit
    wall_overhead_pct: float
    cpu_overhead_pct: float
    process_overhead_s: float
    wall_runs_s: list[float]  # each run's wall time, in run order: how noisy the machine was


class KindResult(TypedDict):
    steps: int
    logs_per_step: int
    gil_bound: bool
    work: str  # what a step does
    step_us: float  # the floor's wall time per step, as measured
    dreamlake_vs_sync_wall: float | None  # dreamlake's overhead / the sync writer's; None if not > 0
    dreamlake_vs_sync_cpu: float | None
    contenders: dict[str, RunFigures]


class WholeRun(TypedDict):
    runs: int
    steps_fraction: float  # of KINDS' steps
    kinds: dict[str, KindResult]


def contenders() -> list[Contender]:
    """The installed contenders of a whole run, in NAMES' order."""
    return available(list(NAMES))


def whole_run(
    who: list[Contender], runs: int, fraction: float = 1.0, progress: Callable[[str], None] | None = None
) -> WholeRun:
    """Run each kind of KINDS `runs` times for each contender in `who`, alternating, with
    `fraction` of its steps; `who` must hold the no-op floor. Returns the medians and overheads.

    The step's work is sized here, once, so that every child does the same work."""
    if NOOP not in [c.name for c in who]:
        msg = f"a whole run needs the {NOOP!r} floor"
        raise ValueError(msg)
    work = {(k.gil_bound, k.micros) for k in KINDS}
    sized = {(bound, micros): (spin_count if bound else sha256_bytes)(micros) for bound, micros in work}
    sizes = {k.label: sized[k.gil_bound, k.micros] for k in KINDS}
    samples: dict[str, dict[str, list[dict[str, float]]]] = {
        k.label: {c.name: [] for c in who} for k in KINDS
    }
    for run in range(runs):
        for kind in KINDS:
            for c in who:
                if progress is not None:
                    progress(f"whole run {run + 1}/{runs}, {kind.label}: {c.name}")
                samples[kind.label][c.name].append(_one(c, kind, _steps(kind, fraction), sizes[kind.label]))
    kinds = {k.label: _summary(k, _steps(k, fraction), sizes[k.label], samples[k.label]) for k in KINDS}
    return {"runs": runs, "steps_fraction": fraction, "kinds": kinds}


def _steps(kind: StepKind, fraction: float) -> int:
    return max(1, round(kind.steps * fraction))


def _one(c: Contender, kind: StepKind, steps: int, size: int) -> dict[str, float]:
    """One whole run of `c` in a child process, in a fresh folder; its figures, its output checked."""
    with tempfile.TemporaryDirectory(prefix="dreamlake-bench-") as tmp:
        spec = {
            "contender": c.name,
            "call": c.call if c.peer else SESSION_CALL,
            "folder": tmp,
            "steps": steps,
            "logs": kind.logs,
            "gil_bound": kind.gil_bound,
            "size": size,
        }
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, _ROOT, json.dumps(spec)],
            cwd=tmp,  # nothing lands where the benchmark was started
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        process = time.perf_counter() - start
        if done.returncode != 0 or not done.stdout.strip():
            msg = f"whole run of {c.name} failed (exit status {done.returncode}):\n{done.stderr}"
            raise RuntimeError(msg)
        figures: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
        lines, _ = count_lines(Path(tmp))
        if c.writes and lines != steps * kind.logs:
            msg = f"{c.name} wrote {lines} records in a whole run, expected {steps * kind.logs}"
            raise AssertionError(msg)
    return {**figures, "process": process}


def child(spec_text: str) -> None:
    """The child's side of one run: open, steps, close under its own clocks; prints them as JSON."""
    spec = json.loads(spec_text)
    (contender,) = available([spec["contender"]])
    work = (spin_work if spec["gil_bound"] else sha256_work)(spec["size"])
    loop = _compile(_TRAIN, spec["call"])
    folder = Path(spec["folder"])
    wall, cpu = time.perf_counter(), time.process_time()
    log, finish = contender.setup(folder)
    loop(log, spec["steps"], spec["logs"], work)
    finish()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"wall": wall, "cpu": cpu}), flush=True)


def _summary(kind: StepKind, steps: int, size: int, samples: dict[str, list[dict[str, float]]]) -> KindResult:
    med = {
        name: {key: statistics.median(run[key] for run in runs) for key in ("wall", "cpu", "process")}
        for name, runs in samples.items()
    }
    floor = med[NOOP]
    figures: dict[str, RunFigures] = {
        name: {
            "wall_s": m["wall"],
            "cpu_s": m["cpu"],
            "process_wall_s": m["process"],
            "wall_overhead_pct": (m["wall"] / floor["wall"] - 1) * 100,
            "cpu_overhead_pct": (m["cpu"] / floor["cpu"] - 1) * 100,
            "process_overhead_s": m["process"] - floor["process"],
            "wall_runs_s": [run["wall"] for run in samples[name]],
        }
        for name, m in med.items()
    }

    def versus(key: Literal["wall_overhead_pct", "cpu_overhead_pct"]) -> float | None:
        if DREAMLAKE not in figures or SYNC not in figures:
            return None
        ours, sync = figures[DREAMLAKE][key], figures[SYNC][key]
        return ours / sync if sync > 0 else None

    work = f"sha256 of {size:,} bytes" if not kind.gil_bound else f"a Python loop of {size:,} additions"
    return {
        "steps": steps,
        "logs_per_step": kind.logs,
        "gil_bound": kind.gil_bound,
        "work": work,
        "step_us": floor["wall"] / steps * 1e6,
        "dreamlake_vs_sync_wall": versus("wall_overhead_pct"),
        "dreamlake_vs_sync_cpu": versus("cpu_overhead_pct"),
        "contenders": figures,
    }


def table(result: WholeRun) -> str:
    """The whole run as text for `dreamlake bench`: a column a kind, wall / CPU in each cell."""
    kinds = result["kinds"]
    first = next(iter(kinds.values()))
    rows: list[tuple[str, ...]] = [("whole run", *kinds), ("", *["wall / CPU"] * len(kinds))]
    for name in first["contenders"]:
        cells = []
        for k in kinds.values():
            f = k["contenders"][name]
            if name == NOOP:
                cells.append(f"{_seconds(f['wall_s'])} / {_seconds(f['cpu_s'])}")
            else:
                cells.append(f"{f['wall_overhead_pct']:+.1f}% / {f['cpu_overhead_pct']:+.1f}%")
        rows.append((name, *cells))
    if DREAMLAKE in first["contenders"] and SYNC in first["contenders"]:
        rows.append(
            (
                "dreamlake / sync",
                *[
                    f"{_ratio(k['dreamlake_vs_sync_wall'])} / {_ratio(k['dreamlake_vs_sync_cpu'])}"
                    for k in kinds.values()
                ],
            )
        )
    runs = result["runs"]
    share = f"{result['steps_fraction'] * 100:g}% of the steps of benchmarks/report.py's whole run"
    details = "\n".join(
        f"{label}: {k['steps']:,} steps of {k['step_us']:.0f} µs ({k['work']}), {k['logs_per_step']} "
        f"log{'s' if k['logs_per_step'] > 1 else ''} of 3 floats a step"
        for label, k in kinds.items()
    )
    return f"""
{aligned(rows, head=2)}

whole run: each run a fresh process that opens the logger, runs the steps and closes it (flush, fsync), \
timing open + steps + close itself: wall, and CPU of all its threads. The no-op call's row is its time; \
the others are their overhead over it; dreamlake / sync is dreamlake's overhead over the sync writer's \
(- when that is not above 0). {"Medians of " + str(runs) + " runs" if runs > 1 else "One run"}, {share} \
(which takes 7 runs): so short that the noise and the fixed costs of open and close weigh more.
{details}
"""


def _seconds(value: float) -> str:
    """1.43 s, 143 ms, 14.3 ms."""
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1e3:.0f} ms" if value >= 0.1 else f"{value * 1e3:.1f} ms"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"
