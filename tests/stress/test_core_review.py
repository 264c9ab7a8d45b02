"""What a review of the native core found, each kept fixed: refused entries leave no bytes, the
queue grows while the writer formats or converts tensors, out of memory is an OSError that stalls
nobody else, a level's own exception propagates, and the hot paths look like the methods."""

import inspect
import json
import sys
from typing import Any

import pytest

from dreamlake import Session
from dreamlake._core import Ring

from .conftest import Child


def test_entries_refused_by_a_closed_session_leave_nothing_in_its_queue(tmp_path) -> None:  # type: ignore[no-untyped-def]
    session = Session(name="run", workspace="ws", local_path=tmp_path)
    for attempt in range(2):  # never opened, then closed
        for _ in range(2000):
            with pytest.raises(RuntimeError):
                session.log("x" * 1000, metadata={"i": 1})
        assert session._channel.queue.size == 0 and len(session._channel.queue) == 0
        if attempt == 0:
            session.open()
            session.log("kept")
            session.close()
    assert ["kept"] == [r["message"] for r in session.read_logs()]


def test_the_queue_grows_while_the_writer_waits_for_a_tensor(child: Child) -> None:
    """A tensor whose conversion takes 0.3 s (a GPU sync, the GIL released): meanwhile the caller
    logs 5,000 entries of 1 KB, far beyond the queue's first 64 KiB. None is dropped, none waits."""
    result = child.run(
        """
        import sys, types, threading
        class Tensor:
            def __init__(self, values): self.values = values
            def detach(self): return self
            def clone(self): return Tensor(list(self.values))
            def tolist(self):
                converting.set()
                time.sleep(0.3)  # ok: a device sync that releases the GIL
                return self.values
        torch = types.ModuleType("torch"); torch.Tensor = Tensor; sys.modules["torch"] = torch
        converting = threading.Event()
        s = session(when_full="drop").open()
        s.log("tensor", metadata={"t": Tensor([1.0])})
        from dreamlake import _batcher
        _batcher._worker.wake()
        converting.wait(10)
        longest = 0
        for i in range(5000):
            began = time.perf_counter()
            s.log("x" * 1000, metadata={"i": i})
            longest = max(longest, time.perf_counter() - began)
        s.close()
        print(longest)
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    records = child.records()
    assert not [r for r in records if r["level"] == "warn"], "entries were dropped"
    assert [r["metadata"]["i"] for r in records[1:]] == list(range(5000))
    assert records[0]["metadata"] == {"t": [1.0]}
    assert float(result.stdout) < 0.25, "a log() waited for the conversion"


def test_out_of_memory_while_formatting_is_an_oserror_and_stalls_no_other_session(
    tmp_path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    """A fake stands in for the fault (the real one needs an address-space limit): the ring's
    format() raises MemoryError, as the C code does when an allocation fails."""
    starved = Session(name="starved", workspace="ws", local_path=tmp_path).open()
    other = Session(name="other", workspace="ws", local_path=tmp_path).open()
    ring = starved._channel.queue

    class Starved:
        def __getattr__(self, name: str) -> Any:
            return getattr(ring, name)

        def __len__(self) -> int:
            return len(ring)

        def format(self, *args: Any) -> bytes:
            raise MemoryError

    monkeypatch.setattr(starved._channel, "queue", Starved())
    starved.log("a")
    other.log("b")
    other.flush()
    assert ["b"] == [r["message"] for r in other.read_logs()]
    with pytest.raises(OSError, match="not enough memory to format 1 entry") as info:
        starved.flush()
    assert info.value.errno == 12
    monkeypatch.undo()
    starved.close()
    other.close()
    assert ["a"] == [r["message"] for r in starved.read_logs()], "kept, then written once"


def test_an_exception_of_a_levels_own_hash_propagates_and_nothing_is_written(session: Session) -> None:
    class Level(str):
        def __hash__(self) -> int:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        session.log("x", Level("info"))
    with pytest.raises(ValueError, match="level"):
        session.log("x", [1])  # type: ignore[arg-type]  # unhashable: the usual message
    assert [] == session.read_logs()


def test_the_hot_paths_show_the_methods_name_doc_and_signature(session: Session) -> None:
    track = session.track("loss")
    for native, method in ((session.log, Session.log), (track.append, type(track).append)):
        assert (native.__name__, native.__qualname__) == (method.__name__, method.__qualname__)
        assert native.__doc__ == method.__doc__
        assert list(inspect.signature(native).parameters) == list(inspect.signature(method).parameters)[1:]


def test_a_ring_made_without_init_is_usable() -> None:
    ring = Ring.__new__(Ring)
    ring.mark = 1 << 30
    assert ring.push(0, 1, "x", None) == 0 and ring.take(1) == 1
    assert b'"message":"x"' in ring.format(0, [], bytes)
    ring.commit()
    ring.clear()
    assert sys.getrefcount(ring) >= 2


def test_the_queue_grows_under_a_writer_formatting_from_its_middle(child: Child) -> None:
    """Entries of every size from 8 threads switching every 10 µs, while the writer formats: the
    queue keeps growing (copying what the writer reads to a new buffer) with its start far from 0."""
    result = child.run(
        """
        import threading, random
        sys.setswitchinterval(1e-5)
        for round in range(20):
            s = Session(name=f"r{round}", workspace="ws", local_path=os.environ["DL_ROOT"]).open()
            def work(t):
                rnd = random.Random(t)
                for i in range(3000):
                    s.log(f"{t}-{i}-" + "x" * rnd.choice([0, 0, 0, 10, 300, 3000]))
            threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            s.close()
        """,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for round in range(20):
        lines = (child.root / "ws" / f"r{round}" / "logs.jsonl").read_bytes().splitlines()
        messages = [json.loads(line)["message"] for line in lines]
        for t in range(8):
            assert [int(m.split("-")[1]) for m in messages if m.startswith(f"{t}-")] == list(range(3000))


def test_a_tensor_conversion_that_logs_makes_the_queue_grow_and_loses_nothing(child: Child) -> None:
    """The writer converts a tensor whose tolist() logs 3,000 entries of 1 KB (the queue grows
    from under the batch being formatted): every entry is written once, none dropped."""
    result = child.run(
        """
        import sys, types
        class Tensor:
            def __init__(self, values): self.values = values
            def detach(self): return self
            def clone(self): return Tensor(list(self.values))
            def tolist(self):
                for i in range(3000):
                    s.log("inner" + "x" * 1000, metadata={"i": i})
                return self.values
        torch = types.ModuleType("torch"); torch.Tensor = Tensor; sys.modules["torch"] = torch
        s = session().open()
        for i in range(50):
            s.log("before", metadata={"i": i})
        s.log("tensor", metadata={"t": Tensor([2.0])})
        s.log("after")
        s.flush()  # converted while open (a conversion that logs during close() is refused)
        s.close()
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = child.records()
    assert not [r for r in records if r["level"] == "warn"], "entries were dropped"
    assert [r["metadata"]["i"] for r in records if r["message"].startswith("inner")] == list(range(3000))
    assert [r["metadata"]["i"] for r in records if r["message"] == "before"] == list(range(50))
    assert [r["metadata"] for r in records if r["message"] == "tensor"] == [{"t": [2.0]}]


def test_a_conversion_that_logs_into_a_full_queue_is_counted_with_its_reason(child: Child) -> None:
    result = child.run(
        """
        import sys, types
        import dreamlake._batcher as B
        B.QUEUE_BYTES = 64 << 10
        class Tensor:
            def __init__(self, values): self.values = values
            def detach(self): return self
            def clone(self): return Tensor(list(self.values))
            def tolist(self):
                for i in range(200):
                    s.log("inner" + "x" * 10_000)
                return self.values
        torch = types.ModuleType("torch"); torch.Tensor = Tensor; sys.modules["torch"] = torch
        s = session().open()
        s.log("tensor", metadata={"t": Tensor([2.0])})
        s.flush()
        s.close()
        """,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = child.records()
    notices = [r for r in records if r["level"] == "warn"]
    inner = [r for r in records if r["message"].startswith("inner")]
    assert notices and len(inner) + sum(n["metadata"]["dropped"] for n in notices) == 200
    assert all("logged by the writer thread itself" in n["message"] for n in notices), notices
