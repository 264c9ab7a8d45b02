"""Where the hot path's time goes: the steps of Session.log added one at a time.

    python benchmarks/breakdown.py

Each variant is the previous one plus one step of the real hot path
(`dreamlake._session._bind_log`), timed the way report.py times calls:
perf_counter_ns around each of 300,000 calls, median of the per-run medians.
No writer thread runs, so this is the caller's own cost.
"""

import statistics
import time
import types
from array import array
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from dreamlake._encode import NATIVE, native
from dreamlake._levels import CANONICAL, normalize_level

CALLS, RUNS = 300_000, 9
STEPS = [
    ("no-op call", "pass"),
    (
        "check level",
        """
    try:
        level = CANONICAL[level]
    except (KeyError, TypeError):
        level = normalize_level(level)""",
    ),
    (
        "check message",
        """
    if message.__class__ is not str:
        message = str(message)""",
    ),
    (
        "snapshot metadata (orjson.dumps: JSON now, a deep copy)",
        """
    if metadata is not None:
        metadata = dumps(metadata, native, NATIVE)
        if len(metadata) < 512:
            metadata = metadata.decode()
            if "null" in metadata:
                pass""",
    ),
    (
        "read clock",
        """
    now = time_ns()""",
    ),
    (
        "enqueue",
        """
    append((now, level, message, metadata))""",
    ),
    (
        "check the mark",
        """
    if len(queue) >= channel.mark:
        pass""",
    ),
]


def build(steps: int, queue: deque[Any]) -> Callable[..., None]:
    body = "".join(code if code.startswith("\n") else "\n    " + code for _, code in STEPS[:steps])
    namespace: dict[str, Any] = {
        "CANONICAL": CANONICAL,
        "normalize_level": normalize_level,
        "time_ns": time.time_ns,
        "queue": queue,
        "append": queue.append,
        "channel": types.SimpleNamespace(mark=1 << 30),
        "dumps": orjson.dumps,
        "NATIVE": NATIVE,
        "native": native,
    }
    exec(f"def log(message, level='info', metadata=None):{body}", namespace)
    return namespace["log"]


def median_call(log: Callable[..., None], queue: deque[Any]) -> int:
    lat = array("q", bytes(8 * CALLS))
    clock = time.perf_counter_ns
    for i in range(CALLS):
        md = {"loss": i * 1e-6, "lr": 0.001, "grad_norm": 1.5}
        t0 = clock()
        log("Batch", "debug", md)
        lat[i] = clock() - t0
        if len(queue) > 4096:
            queue.clear()
    return sorted(lat)[CALLS // 2]


def main() -> None:
    queue: deque[Any] = deque()
    variants = [build(n, queue) for n in range(1, len(STEPS) + 1)]
    runs: list[list[int]] = [[] for _ in variants]
    for _ in range(RUNS):
        for i, log in enumerate(variants):
            runs[i].append(median_call(log, queue))
    print("| step added | p50 per call | added by the step |\n|---|---|---|")
    previous = None
    for (name, _), samples in zip(STEPS, runs, strict=True):
        p50 = statistics.median(samples)
        print(f"| {name} | {p50:.0f} ns | {'' if previous is None else f'{p50 - previous:+.0f} ns'} |")
        previous = p50


if __name__ == "__main__":
    main()
