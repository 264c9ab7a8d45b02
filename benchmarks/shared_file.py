"""Several processes logging into one session's file: CPU per entry, and who wrote the batches.

    python benchmarks/shared_file.py                       # 1, 2 and 4 processes, median of 5
    python benchmarks/shared_file.py --procs 2 --calls 100000 --reps 3

Each process is its own interpreter: it opens the same session (one `logs.jsonl`), logs
`--calls` records of 3 floats in a tight loop, closes, and reports its own CPU time and how many
batches Python's writer wrote (`Sink.write`, counted; the native writer's batches are not Python
calls). Prints one Markdown row per process count: CPU per entry (user + system, all threads of
the process, median over processes and runs), the same relative to one process alone, and the
share of batches Python wrote. The file is checked: every record once, numbered 0..N-1.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

CHILD = """
import os, sys, time
from dreamlake import Session, _sink
python_batches = 0
real_write = _sink.Sink.write
def counted(self, batch):
    global python_batches
    python_batches += 1
    return real_write(self, batch)
_sink.Sink.write = counted
root, calls = sys.argv[1], int(sys.argv[2])
sys.stdin.readline()  # all processes start logging together
cpu = time.process_time()
with Session(name="run", workspace="ws", local_path=root) as session:
    channel = session._channel
    for i in range(calls):
        session.log("step", metadata={"loss": 0.25, "lr": 0.001, "step": float(i)})
cpu = time.process_time() - cpu
print(cpu, python_batches, channel.sink.writes)
"""


def _run(procs: int, calls: int) -> tuple[list[float], float]:
    with tempfile.TemporaryDirectory() as root:
        children = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, root, str(calls)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(procs)
        ]
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        per_entry, python, total = [], 0, 0
        for child in children:
            out, _ = child.communicate(timeout=600)
            assert child.returncode == 0, out
            cpu, by_python, writes = out.split()
            per_entry.append(float(cpu) / calls)
            python += int(by_python)
            total += int(writes)
        lines = (Path(root) / "ws" / "run" / "logs.jsonl").read_bytes().splitlines()
        numbers = [orjson.loads(line)["sequenceNumber"] for line in lines]
        assert numbers == list(range(procs * calls)), "records lost, doubled or misnumbered"
        return per_entry, python / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    print("| processes on one file | CPU per entry | vs one process | batches written by Python |")
    print("|---|---|---|---|")
    alone = None
    for procs in args.procs:
        cpu: list[float] = []
        shares = []
        for _ in range(args.reps):
            per_entry, share = _run(procs, args.calls)
            cpu += per_entry
            shares.append(share)
        median = statistics.median(cpu)
        alone = alone or median
        print(
            f"| {procs} | {median * 1e9:.0f} ns | {median / alone:.2f}x | {statistics.median(shares):.0%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
