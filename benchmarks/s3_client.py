"""Which S3 client: obstore against boto3, uploading the same chunks to a local SeaweedFS.

    python benchmarks/s3_client.py                    # 64 chunks of 8 MB, median of 3
    python benchmarks/s3_client.py --chunks 16 --reps 1

Starts SeaweedFS on free localhost ports (the tests' server, `tests/s3server.py`), then for each
client puts `--chunks` objects of 8 MB one after another, create-only where the client can say
it, and prints one Markdown row per client: MB/s (median of --reps) and the time to import it.
boto3 is measured only if it is installed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import s3server

CHUNK = 8 << 20


def import_seconds(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return float(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )


def with_obstore(endpoint: str, data: bytes, chunks: int, run: int) -> float:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        s3server.BUCKET,
        config={"endpoint": endpoint, "region": "us-east-1"},
        client_options={"allow_http": True},
    )
    start = time.perf_counter()
    for i in range(chunks):
        obstore.put(store, f"bench/obstore/{run}/{i:012d}.jsonl", data, mode="create")
    return time.perf_counter() - start


def with_boto3(endpoint: str, data: bytes, chunks: int, run: int) -> float:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    start = time.perf_counter()
    for i in range(chunks):
        client.put_object(
            Bucket=s3server.BUCKET, Key=f"bench/boto3/{run}/{i:012d}.jsonl", Body=data, IfNoneMatch="*"
        )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    data = (
        b'{"timestamp":"2026-01-01T00:00:00.000000Z","level":"info","message":"x","metadata":null}\n'
        * (CHUNK // 90)
    )[:CHUNK]
    clients = [("obstore", with_obstore)]
    try:
        import boto3  # noqa: F401

        clients.append(("boto3", with_boto3))
    except ImportError:
        pass
    with s3server.seaweedfs() as endpoint:
        os.environ.update({k: v for k, v in s3server.environment(endpoint).items() if k.startswith("AWS_")})
        print("| client | MB/s | import |")
        print("|---|---|---|")
        for name, put in clients:
            seconds = [put(endpoint, data, args.chunks, run) for run in range(args.reps)]
            rate = args.chunks * CHUNK / statistics.median(seconds) / 1e6
            print(f"| {name} | {rate:.0f} | {import_seconds(name) * 1000:.0f} ms |", flush=True)


if __name__ == "__main__":
    main()
