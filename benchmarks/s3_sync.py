"""`dreamlake sync` of a big run against the client's own bulk upload of the same files.

    python benchmarks/s3_sync.py                # a 1 GB run, median of 3
    python benchmarks/s3_sync.py --mb 200 --reps 1

Logs a run of about `--mb` MB (log and one track) with a Session, starts SeaweedFS on free
localhost ports (the tests' server), then, side by side and alternating, times as a user sees
them, each a whole process: `python -m dreamlake sync RUN --remote URL` into a fresh prefix, and
a script that uploads the same files with obstore's own `put` of a local file (multipart, its
defaults). Prints MB/s for both and the ratio (median of --reps).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import s3server

BULK = """
import os, sys, obstore
from obstore.store import S3Store
store = S3Store(sys.argv[1], config={"endpoint": os.environ["AWS_ENDPOINT_URL"], "region": "us-east-1"},
                client_options={"allow_http": True})
for i, path in enumerate(sys.argv[3:]):
    obstore.put(store, f"{sys.argv[2]}/{i}", __import__("pathlib").Path(path))
"""


def make_run(root: Path, megabytes: int) -> Path:
    from dreamlake import Session

    pad = "p" * 120
    with Session(name="run", workspace="bench", local_path=root) as s:
        loss = s.track("loss")
        i = 0
        while True:
            for _ in range(10000):
                s.log("step", metadata={"i": i, "pad": pad})
                loss.append(value=i * 0.5, step=i)
                i += 1
            s.flush()
            written = s.log_file.stat().st_size + (s.path / "tracks/loss/data.jsonl").stat().st_size
            if written >> 20 >= megabytes:
                break
    return s.path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1024, help="size of the run (MB)")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, s3server.seaweedfs() as endpoint:
        env = s3server.environment(endpoint)
        run = make_run(Path(tmp), args.mb)
        files = [run / "logs.jsonl", run / "tracks/loss/data.jsonl"]
        size = sum(f.stat().st_size for f in files)
        times: dict[str, list[float]] = {"dreamlake sync": [], "obstore put (bulk)": []}
        for rep in range(args.reps):
            for name in list(times) if rep % 2 == 0 else list(reversed(times)):
                start = time.perf_counter()
                if name == "dreamlake sync":
                    command = [sys.executable, "-m", "dreamlake", "sync", str(run), "--remote",
                               f"s3://{s3server.BUCKET}/sync{rep}"]  # fmt: skip
                else:
                    command = [sys.executable, "-c", BULK, s3server.BUCKET, f"bulk{rep}", *map(str, files)]
                subprocess.run(command, env=env, check=True, capture_output=True)
                times[name].append(time.perf_counter() - start)
        print(f"run of {size / 1e6:,.0f} MB ({', '.join(f.name for f in files)}), median of {args.reps}, "
              f"each a whole process")  # fmt: skip
        print("| | seconds | MB/s |\n|---|---|---|")
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name, seconds in medians.items():
            print(f"| {name} | {seconds:.2f} | {size / 1e6 / seconds:.0f} |")
        ratio = medians["dreamlake sync"] / medians["obstore put (bulk)"]
        print(f"\ndreamlake sync takes {ratio:.2f}x the bulk upload's time")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
