"""What a session's open() and close() cost, one run after another in one process: the part
of a whole run that is not the loop (folders, the file, session.json, the writer's start).

    python benchmarks/lifecycle.py [SESSIONS]      # prints ms per open + 100 logs + close

Run it against an older checkout with the same interpreter (PYTHONPATH=old/src) to see what
a change to open() or close() costs; each session is a folder of its own, in a temporary
folder outside any git repository.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

from dreamlake import Session


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    root = tempfile.mkdtemp(prefix="dreamlake-lifecycle-")
    os.chdir(root)  # no repository around: the cost of a run outside one
    times = []
    metadata = {"loss": 0.5, "lr": 0.001, "grad_norm": 1.5}
    for i in range(count):
        start = time.perf_counter()
        with Session(name=f"run-{i}", workspace="w", local_path=root) as session:
            for _ in range(100):
                session.log("Batch", "debug", metadata)
        times.append(time.perf_counter() - start)
    print(f"{statistics.median(times) * 1000:.3f} ms median per open + 100 logs + close ({count} sessions)")


if __name__ == "__main__":
    main()
