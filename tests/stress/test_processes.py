"""Forks, multiprocessing children and several processes sharing one session."""

import pytest

from .conftest import Child, assert_numbered_in_file_order


def test_fork_with_queued_entries_writes_them_once(child: Child) -> None:
    """The child logs freely; the parent's queued entries are written once, by the parent."""
    result = child.run(
        """
        s = session(write_interval=3600).open()   # nothing written before the fork
        for i in range(5000):
            s.log("parent before", metadata={"i": i})
        pid = os.fork()
        if pid == 0:
            for i in range(100):
                s.log("child", metadata={"i": i})
            s.flush()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        s.log("parent after")
        s.close()
        print(status)
        """
    )
    assert result.stdout.split() == ["0"], result.stderr
    records = child.records()
    messages = [r["message"] for r in records]
    assert messages.count("parent before") == 5000
    assert messages.count("child") == 100
    assert messages.count("parent after") == 1
    assert [r["metadata"]["i"] for r in records if r["message"] == "parent before"] == list(range(5000))
    assert_numbered_in_file_order(records)


def test_forks_during_heavy_logging_never_hang(child: Child) -> None:
    """Forks land while the writer thread is mid-write; every child finishes and logs."""
    result = child.run(
        """
        import threading
        s = session().open()
        stop = False
        def flood():
            i = 0
            while not stop:
                s.log("flood", metadata={"i": i}); i += 1
        t = threading.Thread(target=flood); t.start()
        for n in range(20):
            pid = os.fork()
            if pid == 0:
                s.log("child", metadata={"n": n})
                s.close()
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            assert status == 0, status
        stop = True; t.join(); s.close()
        print("ok")
        """,
        timeout=120,
    )
    assert result.stdout.strip() == "ok", result.stderr
    records = child.records()
    assert sorted(r["metadata"]["n"] for r in records if r["message"] == "child") == list(range(20))
    flood = [r["metadata"]["i"] for r in records if r["message"] == "flood"]
    assert flood == list(range(len(flood))), "the parent's entries, each once and in order"
    assert_numbered_in_file_order(records)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_children_entries_land(child: Child, method: str) -> None:
    """Children log and return without close(); fork children leave through os._exit."""
    result = child.run(
        f"""
        import multiprocessing as mp
        def work(rank):
            s = session().open()
            for i in range(1000):
                s.log("work", metadata={{"rank": rank, "i": i}})
        if __name__ == "__main__":
            ctx = mp.get_context("{method}")
            procs = [ctx.Process(target=work, args=(r,)) for r in range(3)]
            for p in procs: p.start()
            for p in procs: p.join()
            print([p.exitcode for p in procs])
        """,
        timeout=120,
    )
    assert result.stdout.strip() == "[0, 0, 0]", result.stderr
    records = child.records()
    for rank in range(3):
        mine = [r["metadata"]["i"] for r in records if r["metadata"]["rank"] == rank]
        assert mine == list(range(1000))
    assert_numbered_in_file_order(records)


def test_several_processes_share_one_session(child: Child) -> None:
    """Ranks writing at once: no torn lines, nothing lost, numbers unique and increasing."""
    result = child.run(
        """
        import multiprocessing as mp
        def rank(r, start):
            s = session().open()
            start.wait()
            for i in range(5000):
                s.log("step", metadata={"rank": r, "i": i})
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
    records = child.records()
    assert len(records) == 20000
    for r in range(4):
        assert [x["metadata"]["i"] for x in records if x["metadata"]["rank"] == r] == list(range(5000))
    assert_numbered_in_file_order(records)


def test_forked_worker_pool_finishes(child: Child) -> None:
    """A DataLoader-style pool of forked workers, each logging, ends within its bound."""
    result = child.run(
        """
        import multiprocessing as mp
        s = session().open()
        s.log("parent")
        def task(n):
            for i in range(100):
                s.log("task", metadata={"n": n, "i": i})
            return n
        if __name__ == "__main__":
            pool = mp.get_context("fork").Pool(4)
            done = pool.map(task, range(32))
            pool.close()
            pool.join()
            s.close()
            print(len(done))
        """,
        timeout=120,
    )
    assert result.stdout.strip() == "32", result.stderr
    records = child.records()
    tasks = [(r["metadata"]["n"], r["metadata"]["i"]) for r in records if r["message"] == "task"]
    assert sorted(tasks) == [(n, i) for n in range(32) for i in range(100)]
    assert_numbered_in_file_order(records)
