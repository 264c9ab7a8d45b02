"""A disk that refuses, hangs, or holds a huge torn line: log() stays bounded, nothing is lost or doubled."""

import json
from collections import Counter

from .conftest import Child, assert_numbered_in_file_order


def test_full_disk_with_a_full_queue_never_blocks_log_and_accounts_for_every_entry(child: Child) -> None:
    """RLIMIT_FSIZE refuses writes while 30,000 entries are logged: log() never blocks, the fault is
    reported once, flush() names the file, and afterwards every returned entry is written or counted as dropped."""
    result = child.run(
        """
        import json, resource
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))
        s = session().open()
        returned = raised = 0
        started = time.monotonic()
        for i in range(30_000):
            try:
                s.log("x", metadata={"i": i})
                returned += 1
            except Exception:
                raised += 1
        elapsed = time.monotonic() - started
        print("loop done", file=sys.stderr, flush=True)
        try:
            s.flush()
            flush_error = None
        except OSError as exc:
            flush_error = str(exc)
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        s.close()
        print(json.dumps({"returned": returned, "raised": raised, "elapsed": elapsed, "flush_error": flush_error}))
        """,
        timeout=45,
    )
    assert 0 == result.returncode, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["elapsed"] < 30, (
        f"logging 30,000 entries took {out['elapsed']:.1f}s: log() blocked on the full disk"
    )
    assert out["flush_error"] is not None and "logs.jsonl" in out["flush_error"], (
        "flush() must raise OSError naming the file"
    )
    before_end_of_loop = result.stderr.split("loop done")[0]
    assert "logs.jsonl" in before_end_of_loop, "the fault is reported on stderr while the loop runs"
    reports = [line for line in result.stderr.splitlines() if "logs.jsonl" in line]
    assert 1 <= len(reports) <= 3, (
        f"the fault is reported once or a few times, not per entry: {len(reports)} lines"
    )
    records = child.records()
    data = [r["metadata"]["i"] for r in records if r["message"] == "x"]
    dropped = [
        r["metadata"]["dropped"]
        for r in records
        if r["level"] == "warn" and "dropped" in (r["metadata"] or {})
    ]
    assert {} == {i: n for i, n in Counter(data).items() if n != 1}, "an entry was written twice"
    assert sorted(data) == data
    assert out["returned"] == len(data) + sum(dropped)
    assert_numbered_in_file_order(records)


def test_reopen_after_a_32_mb_torn_line_reads_the_file_linearly(child: Child) -> None:
    """Re-opening a file that ends in 32 MB without a newline reads (and concatenates) at most 3x the file;
    numbering continues, and the new record starts on a line of its own."""
    result = child.run(
        """
        import json
        s = session().open()
        for i in range(10):
            s.log("before", metadata={"i": i})
        s.close()
        with open(s.log_file, "ab") as f:
            f.write(b'{"timestamp":"2025-01-01T00:00:00.000000Z","level":"info","message":"' + b"x" * (32 << 20))
        size = os.path.getsize(s.log_file)
        counted = {"read": 0, "joined": 0}
        class Chunk(bytes):   # what was read; counts the bytes `+` builds from it (a carry grown chunk by chunk)
            def __add__(self, other):
                out = bytes(self) + other
                counted["joined"] += len(out)
                return out
            def __radd__(self, other):
                out = other + bytes(self)
                counted["joined"] += len(out)
                return out
        real_pread, real_read = os.pread, os.read
        def pread(fd, n, offset):
            data = real_pread(fd, n, offset)
            counted["read"] += len(data)
            return Chunk(data)
        def read(fd, n):
            data = real_read(fd, n)
            counted["read"] += len(data)
            return Chunk(data)
        os.pread, os.read = pread, read
        s.open()
        s.log("after")
        s.flush()
        os.pread, os.read = real_pread, real_read
        s.close()
        print(json.dumps({**counted, "size": size}))
        """,
        timeout=60,
    )
    assert 0 == result.returncode, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["read"] <= 3 * out["size"], f"read {out['read']} bytes of a {out['size']}-byte file"
    assert out["joined"] <= 3 * out["size"], (
        f"concatenated {out['joined']} bytes of a {out['size']}-byte file"
    )
    lines = child.log_file.read_bytes().split(b"\n")
    assert b"" == lines[-1]
    assert 13 == len(lines), "10 records, the torn line, the new record, and the final empty split"
    assert lines[10].startswith(b'{"timestamp"') and lines[10].endswith(b"x" * 100), (
        "the torn line stays whole"
    )
    after = json.loads(lines[11])
    assert ("after", 10) == (after["message"], after["sequenceNumber"])


def test_close_with_timeout_gives_up_within_the_timeout_on_a_hung_fsync(child: Child) -> None:
    """close(timeout=1.0) with fsync hanging raises TimeoutError (or returns) well before 2 x timeout."""
    result = child.run(
        """
        s = session().open()
        for i in range(5000):
            s.log("x", metadata={"i": i})
        def hung_fsync(fd):
            time.sleep(10)  # ok: a disk that hangs
        os.fsync = hung_fsync
        started = time.monotonic()
        try:
            s.close(timeout=1.0)
            outcome = "returned"
        except TimeoutError:
            outcome = "timeout"
        print(outcome, time.monotonic() - started)
        os._exit(0)  # ok: skip the exit flush, which would wait for the hung fsync again
        """
    )
    outcome, elapsed = result.stdout.split()
    assert outcome in ("timeout", "returned"), result.stderr[-3000:]
    assert float(elapsed) < 1.8, f"close(timeout=1.0) took {elapsed}s"
