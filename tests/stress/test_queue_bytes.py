"""A queue whose bytes are full (big entries, a slow disk): log() and append() wait for room or
drop and count, as a queue full of entries does; nothing is written twice or out of order."""

import pytest

from .conftest import Child, assert_numbered_in_file_order

SMALL_SLOW_QUEUE = """
        import dreamlake._batcher as B, dreamlake._sink as S
        B.QUEUE_BYTES = 64 << 10  # 64 KiB: about 60 of the entries below
        waits = [0]
        real_wait = B.Channel.push_when_room
        def counted(self, again):
            waits[0] += 1
            return real_wait(self, again)
        B.Channel.push_when_room = counted
        real = S.Sink.write
        def slow(self, batch):
            time.sleep(0.002)  # a slow disk: the queue fills in bytes long before in entries
            return real(self, batch)
        S.Sink.write = slow
        import dreamlake._batcher as _B; _B.NATIVE = False  # a fault of Python's write: Python's writer only
"""


@pytest.mark.parametrize("when_full", ["wait", "drop"])
def test_a_queue_full_of_bytes_waits_or_drops_and_counts(child: Child, when_full: str) -> None:
    result = child.run(
        SMALL_SLOW_QUEUE
        + f"""
        s = session(when_full={when_full!r}).open()
        track = s.track("loss")
        indices = []
        for i in range(3000):
            s.log("x" * 1000, metadata={{"i": i}})
            indices.append(track.append(i=i, pad="y" * 1000)["index"])
        s.close()
        print(sum(index is None for index in indices), indices[-1], waits[0])
        """,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    records = child.records()
    assert_numbered_in_file_order(records)
    notices = [r for r in records if r["level"] == "warn"]
    logged = [r["metadata"]["i"] for r in records if r["level"] == "info"]
    points = [
        __import__("json").loads(line)
        for line in (child.root / "ws" / "run" / "tracks" / "loss" / "data.jsonl").read_text().splitlines()
    ]
    assert logged == sorted(logged) and len(set(logged)) == len(logged)
    assert [p["index"] for p in points] == list(range(len(points)))
    assert [p["data"]["i"] for p in points] == sorted(p["data"]["i"] for p in points)
    none, last, waits = result.stdout.split()
    assert int(waits) > 10, "the queue's bytes were never full: the test tests nothing"
    dropped_points = sum(n["metadata"]["dropped"] for n in notices if "track" in n["metadata"])
    dropped_logs = sum(n["metadata"]["dropped"] for n in notices if "track" not in n["metadata"])
    assert len(points) + dropped_points == 3000 and int(none) == dropped_points
    assert len(logged) + dropped_logs == 3000
    if when_full == "wait":
        assert not notices and len(logged) == 3000 and int(last) == 2999
    else:
        assert dropped_logs > 0 and dropped_points > 0
