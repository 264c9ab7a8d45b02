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

from ._contenders import DREAMLAKE, SYNC, Contender, available
from ._session import Session

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


def _run(contender: Contender, body: Callable[[Any, Callable[[], None]], Any], expected: int) -> Any:
    """Set the contender up in a fresh folder, run `body(log, finish)`, check the output."""
    with tempfile.TemporaryDirectory(prefix="dreamlake-bench-") as tmp:
        folder = Path(tmp)
        log, finish = contender.setup(folder)
        gc.collect()
        result = body(log, finish)
        if contender.writes:
            lines, size = count_lines(folder)
            if lines != expected:
                msg = f"{contender.name} wrote {lines} records, expected {expected}"
                raise AssertionError(msg)
            if isinstance(result, dict):
                result["bytes"] = size
    return result


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

        figures = _run(c, body, n)
        figures["MB/s"] = figures.pop("bytes") / figures["wall"] / n * 1e9 / 2**20
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


def gil_free_work(micros: float) -> Callable[[], None]:
    """sha256 over a buffer sized to take about `micros`; hashlib releases the GIL (like a GPU wait)."""
    buf = bytes(64 * 1024)
    start = time.perf_counter()
    for _ in range(200):
        hashlib.sha256(buf).digest()
    per_call = (time.perf_counter() - start) / 200
    buf = bytes(max(4096, int(len(buf) * micros * 1e-6 / per_call)))
    sha = hashlib.sha256

    def work() -> None:
        sha(buf).digest()

    return work


def gil_bound_work(micros: float) -> Callable[[], None]:
    """A pure-Python loop of about `micros` that holds the GIL (like eager-mode dispatch)."""

    def spin(n: int) -> int:
        total = 0
        for k in range(n):
            total += k
        return total

    start = time.perf_counter()
    spin(100_000)
    n = max(100, int(100_000 * micros * 1e-6 / (time.perf_counter() - start)))

    def work() -> None:
        spin(n)

    return work


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

        figures = _run(c, body, blocks * per_block * per_step)
        figures.pop("bytes", None)
        out[c.name] = figures
    return out


# -- many sessions, many threads -------------------------------------------------------


def sessions(calls: int, count: int = 1000) -> Figures:
    """Round-robin into `count` open sessions, next to one: CPU per entry (ns), threads."""
    out = {}
    for label, n_sessions in (("1 session", 1), (f"{count:,} sessions", count)):
        with tempfile.TemporaryDirectory(prefix="dreamlake-bench-") as tmp:
            before = threading.active_count()
            opened = [Session(name=f"s{k}", workspace="b", local_path=tmp).open() for k in range(n_sessions)]
            logs = [s.log for s in opened] * (count // n_sessions)
            gc.collect()
            wall, cpu = time.perf_counter_ns(), time.process_time_ns()
            for i in range(calls):
                logs[i % count]("Batch", "debug", {"loss": i * 1e-6, "lr": 0.001, "grad_norm": 1.5})
            threads = threading.active_count() - before
            for s in opened:
                s.flush()
            wall, cpu = time.perf_counter_ns() - wall, time.process_time_ns() - cpu
            for s in opened:
                s.close()
            written, _ = count_lines(Path(tmp))
            if written != calls:
                msg = f"{label}: wrote {written} records, expected {calls}"
                raise AssertionError(msg)
        out[label] = {"cpu": cpu / calls, "wall": wall / calls, "threads": float(threads)}
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

    from . import __version__

    return (
        f"dreamlake {__version__}, orjson {orjson.__version__}, {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"
    )
