"""What one call costs inside a training loop, where the work between calls evicts the caches.

    python benchmarks/cold_call.py

Each step runs ~150 µs of sha256 (GIL-free, streaming through a buffer larger than
the L1 and most of L2), then makes ten calls, timing each with perf_counter_ns.
Prints the median of each call position for the no-op call, dreamlake and the
synchronous orjson writer, alternating, 3,000 steps each, twice.
"""

import statistics
import tempfile
import time
from pathlib import Path

from dreamlake import Session
from dreamlake._bench._contenders import SyncOrjsonWriter, noop
from dreamlake._bench._scenarios import gil_free_work

STEPS, CALLS = 3_000, 10


def per_call(log: object, work: object) -> list[float]:
    clock = time.perf_counter_ns
    lat: list[list[int]] = [[] for _ in range(CALLS)]
    for step in range(STEPS):
        work()  # type: ignore[operator]
        for j in range(CALLS):
            md = {"loss": step * 1e-6, "lr": 0.001, "grad_norm": 1.5}
            t0 = clock()
            log("Batch", "debug", md)  # type: ignore[operator]
            lat[j].append(clock() - t0)
    return [statistics.median(calls) for calls in lat]


def main() -> None:
    work = gil_free_work(150)
    with tempfile.TemporaryDirectory() as tmp:
        session = Session(name="cold", workspace="bench", local_path=tmp).open()
        writer = SyncOrjsonWriter(Path(tmp) / "sync.jsonl")
        print("| contender | 1st call after the work | calls 2-10 (median of medians) |\n|---|---|---|")
        for _ in range(2):
            for name, log in (
                ("no-op call", noop),
                ("dreamlake", session.log),
                ("sync orjson writer", writer.log),
            ):
                medians = per_call(log, work)
                print(f"| {name} | {medians[0]:.0f} ns | {statistics.median(medians[1:]):.0f} ns |")
        session.close()
        writer.finish()


if __name__ == "__main__":
    main()
