"""How reading scales with the length of one line: a log record and a track point of 25, 50 and
100 MB, each the only line of its file, read back whole.

    python benchmarks/long_line.py                 # 25, 50, 100 MB, median of 3
    python benchmarks/long_line.py --mb 25 200 --reps 1

Prints one Markdown row per size: seconds for `read_logs`, `read_track` and, as the floor,
`orjson.loads` of the same line; then each per MB. A linear reader keeps its time per MB flat
as the line grows. Each read is checked to give back the one record it holds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from dreamlake import read_logs, read_track


def _timed(read: Callable[[], Any], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        read()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, nargs="+", default=[25, 50, 100])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    print("| line | read_logs | read_track | orjson.loads | read_logs / MB | read_track / MB |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as root:
        session = Path(root)
        (session / "tracks" / "t").mkdir(parents=True)
        for mb in args.mb:
            text = "x" * (mb << 20)
            record = {"timestamp": "2026-01-01T00:00:00Z", "level": "info", "message": text, "metadata": {}}
            line = orjson.dumps({**record, "sequenceNumber": 0})
            (session / "logs.jsonl").write_bytes(line + b"\n")
            point = orjson.dumps({"index": 0, "data": {"note": text}, "createdAt": "2026-01-01T00:00:00Z"})
            (session / "tracks" / "t" / "data.jsonl").write_bytes(point + b"\n")
            assert [r["message"] for r in read_logs(session)] == [text]
            assert [p["data"]["note"] for p in read_track(session, "t")] == [text]
            logs = _timed(lambda: read_logs(session), args.reps)
            track = _timed(lambda: read_track(session, "t"), args.reps)
            floor = _timed(lambda: orjson.loads(line), args.reps)
            print(
                f"| {mb} MB | {logs:.2f} s | {track:.2f} s | {floor:.2f} s "
                f"| {logs / mb * 1000:.1f} ms | {track / mb * 1000:.1f} ms |"
            )


if __name__ == "__main__":
    main()
