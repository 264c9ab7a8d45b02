"""Tracks under the hostile paths of logs: processes, forks, signals, exits, full disks."""

import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from dreamlake import read_track

from .conftest import Child
from .test_signals import wait_for_line


def track_points(child: Child, name: str = "loss") -> list[dict[str, Any]]:
    """Every line whole and valid, indices 0, 1, 2, ... in file order."""
    data = (child.root / "ws" / "run" / "tracks" / name / "data.jsonl").read_bytes()
    assert data.endswith(b"\n") or not data
    points = [orjson.loads(line) for line in data.split(b"\n")[:-1]]
    assert [p["index"] for p in points] == list(range(len(points)))
    return points


def track_metadata(child: Child, name: str = "loss") -> dict[str, Any]:
    meta: dict[str, Any] = orjson.loads(
        (child.root / "ws" / "run" / "tracks" / name / "metadata.json").read_bytes()
    )
    return meta


def test_four_processes_append_to_one_track(child: Child) -> None:
    result = child.run(
        """
        import multiprocessing as mp
        def rank(r, start):
            s = session().open()
            track = s.track("loss")
            start.wait()
            for i in range(0, 3000, 3):
                track.append(rank=r, i=i)
                track.append_batch([{"rank": r, "i": i + 1}, {"rank": r, "i": i + 2}])
            s.close()
        if __name__ == "__main__":
            ctx = mp.get_context("spawn")
            start = ctx.Event()
            procs = [ctx.Process(target=rank, args=(r, start)) for r in range(4)]
            for p in procs: p.start()
            start.set()
            for p in procs: p.join()
            print([p.exitcode for p in procs])
        """,
        timeout=180,
    )
    assert result.stdout.strip() == "[0, 0, 0, 0]", result.stderr
    points = track_points(child)
    assert len(points) == 12000
    for r in range(4):
        assert [p["data"]["i"] for p in points if p["data"]["rank"] == r] == list(range(3000))
    assert track_metadata(child)["totalDataPoints"] == 12000


def test_fork_with_queued_points_writes_them_once_and_both_go_on(child: Child) -> None:
    result = child.run(
        """
        s = session(write_interval=3600).open()
        track = s.track("loss")
        for i in range(500):
            track.append(who="parent", i=i)
        pid = os.fork()
        if pid == 0:
            for i in range(300):
                track.append(who="child", i=i)
            s.close()
            os._exit(0)
        for i in range(500, 800):
            track.append(who="parent", i=i)
        _, status = os.waitpid(pid, 0)
        s.close()
        print(status)
        """
    )
    assert result.stdout.strip() == "0", result.stderr
    assert "fork" not in result.stderr, result.stderr
    points = track_points(child)
    assert [p["data"]["i"] for p in points if p["data"]["who"] == "parent"] == list(range(800))
    assert [p["data"]["i"] for p in points if p["data"]["who"] == "child"] == list(range(300))
    assert track_metadata(child)["totalDataPoints"] == 1100


def test_a_fork_while_threads_append_does_not_hang_the_child(child: Child) -> None:
    """The track's lock may be held by another thread at the fork: the child gets it free."""
    result = child.run(
        """
        import threading
        s = session().open()
        track = s.track("loss")
        stop = threading.Event()
        def spin():
            while not stop.is_set():
                track.append(v=1)
        threads = [threading.Thread(target=spin) for _ in range(3)]
        for t in threads: t.start()
        statuses = []
        for _ in range(20):
            pid = os.fork()
            if pid == 0:
                track.append(v=2)
                s.close()
                os._exit(0)
            statuses.append(os.waitpid(pid, 0)[1])
        stop.set()
        for t in threads: t.join()
        s.close()
        print(statuses)
        """,
        timeout=120,
    )
    assert result.stdout.strip() == str([0] * 20), result.stderr
    points = track_points(child)
    assert sum(p["data"]["v"] == 2 for p in points) == 20


def test_sigterm_writes_the_points_and_the_metadata(child: Child) -> None:
    body = """
s = session(write_interval=3600).open()
track = s.track("loss", description="kept at SIGTERM")
for i in range(5000):
    track.append(i=i)
print("ready", flush=True)
while True:
    time.sleep(1)  # ok: the child idles until it is signalled
"""
    with child.start(body) as proc:
        wait_for_line(proc, "ready")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM
    assert [p["data"]["i"] for p in track_points(child)] == list(range(5000))
    meta = track_metadata(child)
    assert (meta["totalDataPoints"], meta["description"]) == (5000, "kept at SIGTERM")


def test_sigkill_loses_no_point_appended_a_second_before(child: Child) -> None:
    body = """
s = session(write_interval=0.05).open()
for i in range(3000):
    s.track("loss").append(i=i)
print("ready", flush=True)
while True:
    time.sleep(1)  # ok: the child idles until it is killed
"""
    with child.start(body) as proc:
        wait_for_line(proc, "ready")
        time.sleep(1.0)  # ok: the contract under test is "one second after the call, it is on disk"
        proc.kill()
        proc.wait(timeout=30)
    assert [p["data"]["i"] for p in track_points(child)] == list(range(3000))


def test_sigkill_mid_write_then_reopen_continues_the_indices(child: Child) -> None:
    body = """
s = session(write_interval=0.001).open()
track = s.track("loss")
print("ready", flush=True)
i = 0
while True:
    track.append(i=i, pad="x" * 2000)
    i += 1
"""
    for _ in range(3):
        with child.start(body) as proc:
            wait_for_line(proc, "ready")
            time.sleep(0.3)  # ok: let it write for a while before the kill
            proc.kill()
            proc.wait(timeout=30)
    folder = child.root / "ws" / "run"
    killed = read_track(folder, "loss")
    assert [p["index"] for p in killed] == list(range(len(killed)))
    result = child.run(
        """
        with session() as s:
            print(s.track("loss").append(i=-1)["index"])
        """
    )
    after = read_track(folder, "loss")
    assert int(result.stdout) == len(killed) == len(after) - 1, result.stderr
    assert [p["index"] for p in after] == list(range(len(after)))
    assert after[-1]["data"] == {"i": -1}


def test_exit_without_close_writes_points_and_metadata(child: Child) -> None:
    result = child.run(
        """
        s = session(write_interval=3600).open()
        for i in range(2000):
            s.track("train/loss").append(i=i)
        s.track("lr").append(value=0.1)
        print("leaving")
        """
    )
    assert result.stdout.strip() == "leaving", result.stderr
    assert len(track_points(child, "train/loss")) == 2000
    assert track_metadata(child, "train/loss")["totalDataPoints"] == 2000
    assert track_metadata(child, "lr")["totalDataPoints"] == 1


def test_a_full_disk_keeps_the_points_and_retries(child: Child) -> None:
    result = child.run(
        """
        import resource
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))
        s = session().open()
        track = s.track("loss")
        for i in range(2000):
            track.append(i=i)
        try:
            s.flush()
        except OSError as exc:
            print("raised:", exc)
        for i in range(2000, 2500):
            track.append(i=i)
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        s.close()
        print("closed")
        """
    )
    assert "raised:" in result.stdout and "data.jsonl" in result.stdout, result.stdout + result.stderr
    assert result.stdout.strip().endswith("closed"), result.stderr
    assert [p["data"]["i"] for p in track_points(child)] == list(range(2500))
    assert track_metadata(child)["totalDataPoints"] == 2500


def test_a_track_folder_deleted_while_open_starts_again(tmp_path: Path) -> None:
    import shutil

    from dreamlake import Session

    with Session(name="run", workspace="ws", local_path=tmp_path) as session:
        track = session.track("loss")
        track.append(v=0)
        session.flush()
        shutil.rmtree(session.path / "tracks")
        assert track.append(v=1) == {"index": 1}
        session.flush()
        stored = read_track(session.path, "loss")
    assert [(p["index"], p["data"]) for p in stored] == [(0, {"v": 1})]
    assert (session.path / "tracks" / "loss" / "metadata.json").is_file()


def test_when_full_drop_counts_dropped_points_in_the_log(child: Child) -> None:
    result = child.run(
        """
        import dreamlake._batcher as B
        real = B.Sink.write
        gate = __import__("threading").Event()
        def slow(self, batch):
            gate.wait()
            return real(self, batch)
        B.Sink.write = slow
        import dreamlake._batcher as _B; _B.NATIVE = False  # a fault of Python's write: Python's writer only
        s = session(when_full="drop").open()
        for i in range(20000):
            s.track("loss").append(i=i)
        gate.set()
        s.close()
        """
    )
    assert result.returncode == 0, result.stderr
    kept = track_points(child)
    dropped = [
        r for r in map(orjson.loads, (child.log_file.read_bytes().splitlines())) if r["level"] == "warn"
    ]
    assert dropped and "points of track 'loss'" in dropped[0]["message"]
    assert len(kept) + sum(r["metadata"]["dropped"] for r in dropped) == 20000
    assert [p["data"]["i"] for p in kept] == sorted(p["data"]["i"] for p in kept)


def test_sustained_drops_of_a_track_and_its_log_are_all_counted(child: Child) -> None:
    """when_full="drop", a slow disk, a track and the log both overflowing for a while: every
    dropped point is counted in a warn record of the log, although the log drops entries too."""
    result = child.run(
        """
        import dreamlake._sink as S
        real = S.Sink.write
        def slow(self, batch):
            time.sleep(0.002)  # a slow disk: the queues overflow again and again
            return real(self, batch)
        S.Sink.write = slow
        import dreamlake._batcher as _B; _B.NATIVE = False  # a fault of Python's write: Python's writer only
        s = session(when_full="drop").open()
        track = s.track("loss")
        for i in range(400000):
            track.append(i=i)
            s.log("x", metadata={"i": i})
        s.close()
        """,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    kept = track_points(child)
    records = child.records()
    notices = [r for r in records if r["level"] == "warn"]
    of_track = [r["metadata"]["dropped"] for r in notices if r["metadata"].get("track") == "loss"]
    of_log = [r["metadata"]["dropped"] for r in notices if "track" not in r["metadata"]]
    assert len(of_track) > 1 and len(of_log) > 1, "drops again and again, of both"
    assert len(kept) + sum(of_track) == 400000
    assert len(records) - len(notices) + sum(of_log) == 400000


def test_dropped_points_take_no_index(child: Child) -> None:
    """when_full="drop" with a writer held back: a dropped point returns index None, a batch
    says how many it queued, and every index returned is the point's index in the file."""
    result = child.run(
        """
        import threading, json
        import dreamlake._sink as S
        real, gate = S.Sink.write, threading.Event()
        def held(self, batch):
            gate.wait()
            return real(self, batch)
        S.Sink.write = held
        import dreamlake._batcher as _B; _B.NATIVE = False  # a fault of Python's write: Python's writer only
        s = session(when_full="drop").open()
        track = s.track("loss")
        got = {}
        for i in range(20000):
            got[i] = track.append(i=i)["index"]
        batch = track.append_batch([{"i": 20000 + j} for j in range(10000)])
        gate.set()
        s.close()
        print(json.dumps({"got": got, "batch": batch}))
        """
    )
    assert result.returncode == 0, result.stderr
    out = orjson.loads(result.stdout)
    by_i = {p["data"]["i"]: p["index"] for p in track_points(child)}
    returned = {int(i): index for i, index in out["got"].items()}
    assert {i for i, index in returned.items() if index is not None} == {i for i in by_i if i < 20000}
    assert all(by_i[i] == index for i, index in returned.items() if index is not None)
    assert None in returned.values()
    batch = out["batch"]
    assert batch["count"] == sum(1 for i in by_i if i >= 20000) < 10000
    assert [by_i[20000 + j] for j in range(batch["count"])] == list(
        range(batch["startIndex"], batch["endIndex"] + 1)
    )
    logs = [orjson.loads(line) for line in child.log_file.read_bytes().splitlines()]
    assert sum(r["metadata"]["dropped"] for r in logs if r["level"] == "warn") == 30000 - len(by_i)


def test_a_signal_handler_that_appends_gets_its_own_index(child: Child) -> None:
    """SIGALRM every 0.1 ms appends from inside the main thread's append(): no index given twice."""
    result = child.run(
        """
        import json
        s = session().open()
        track = s.track("loss")
        got = []
        def handler(*_):
            got.append(("h", track.append(src="h")["index"]))
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 1e-4, 1e-4)
        for i in range(200000):
            got.append((i, track.append(i=i)["index"]))
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        s.close()
        print(json.dumps(got))
        """,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    got = orjson.loads(result.stdout)
    points = track_points(child)
    handled = [index for who, index in got if who == "h"]
    assert handled, "the timer never fired inside the loop"
    assert len(points) == len(got) and sorted(index for _, index in got) == list(range(len(points)))
    for who, index in got:
        assert points[index]["data"] == ({"src": "h"} if who == "h" else {"i": who})


def test_thousands_of_tracks_hold_no_descriptors(child: Child) -> None:
    result = child.run(
        """
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))
        with session() as s:
            for i in range(1500):
                s.track(f"layer{i}/grad_norm").append(v=i)
            s.flush()
            print(len(os.listdir("/proc/self/fd")))
        """,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 20
    assert track_metadata(child, "layer1499/grad_norm")["totalDataPoints"] == 1


@pytest.mark.parametrize("meeting", [1, 2])
def test_a_batch_that_races_close_raises_only_if_none_of_it_is_written(child: Child, meeting: int) -> None:
    """close() comes while the batch meets the queue's mark for the first time (nothing of it
    queued yet, usually) or the second (part of it queued)."""
    result = child.run(
        f"""
        import threading, time, json
        import dreamlake._batcher as B, dreamlake._sink as S
        inside, met = threading.Event(), []
        def slowed(real):
            def at_the_mark(self, *args):
                met.append(1)
                if len(met) == {meeting}:
                    inside.set()
                time.sleep(0.05)  # ok: stands for a thread switch between queueing and the check
                return real(self, *args)
            return at_the_mark
        # Which of the two a batch meets at the mark depends on how fast the writer drains.
        B.Channel.settle, B.Channel.admit = slowed(B.Channel.settle), slowed(B.Channel.admit)
        real_write = S.Sink.write
        def slow_write(self, batch):
            time.sleep(0.005)  # ok: a slow disk, so that close() writes part of the batch
            return real_write(self, batch)
        S.Sink.write = slow_write
        import dreamlake._batcher as _B; _B.NATIVE = False  # a fault of Python's write: Python's writer only
        s = session().open()
        track = s.track("loss")
        out = {{}}
        def go():
            try:
                out["r"] = track.append_batch([{{"i": i}} for i in range(10000)])
            except RuntimeError as exc:
                out["r"] = str(exc)
            finally:
                inside.set()  # a batch that never met the mark: close() comes after it
        t = threading.Thread(target=go)
        t.start()
        inside.wait()
        s.close()
        t.join()
        print(json.dumps(out["r"]))
        """
    )
    assert result.returncode == 0, result.stderr
    returned = orjson.loads(result.stdout)
    written = len(track_points(child))
    if isinstance(returned, str):
        assert "closed" in returned and written == 0
    else:
        assert returned["count"] == written > 0 and returned["endIndex"] == written - 1
