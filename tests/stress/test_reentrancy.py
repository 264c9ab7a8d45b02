"""log() called from inside log() or flush(): signal handlers, __str__ and __del__ that log."""

import json
from collections import Counter
from typing import Any

import pytest

from .conftest import Child, assert_numbered_in_file_order

SLOW_VALUES = """
class Opaque:
    def __str__(self):
        return "o"
SLOW = [Opaque() for _ in range(8)]  # slow to encode, short to write: the queue runs full
"""


def assert_each_once(records: list[dict[str, Any]], message: str, count: int) -> None:
    """The entries with `message` carry metadata i = 0..count-1, each exactly once."""
    seen = Counter(r["metadata"]["i"] for r in records if r["message"] == message)
    assert {} == {i: n for i, n in seen.items() if n != 1}, f"{message}: entries written more than once"
    assert set(range(count)) == set(seen), f"{message}: entries missing"


def test_signal_handler_that_logs_during_logging_and_flushing(child: Child) -> None:
    """SIGALRM every 1 ms logs while the main thread logs and flushes: no deadlock, every entry once."""
    result = child.run(
        SLOW_VALUES
        + """
import itertools, json
s = session().open()
handled = itertools.count()
calls = []
def on_alarm(signum, frame):
    i = next(handled)
    s.log("handler", metadata={"i": i})
    calls.append(i)
signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
N = 200_000
try:
    for i in range(N):
        s.log("main", metadata={"i": i, "slow": SLOW})
        if i % 20_000 == 0:   # rarely: in between, the tight loop fills the queue
            s.flush()
finally:
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
s.close()
print(json.dumps({"main": N, "handler": len(calls)}))
""",
        timeout=30,
    )
    assert 0 == result.returncode, result.stderr[-3000:]
    counts = json.loads(result.stdout)
    records = child.records()
    assert counts["handler"] > 0, "the timer never fired"
    assert list(range(counts["main"])) == [r["metadata"]["i"] for r in records if r["message"] == "main"]
    assert_each_once(records, "handler", counts["handler"])
    assert_numbered_in_file_order(records)


REENTER = {
    "signal-handler": """
def on_alarm(signum, frame):
    log_inner()
signal.signal(signal.SIGALRM, on_alarm)
def reenter():
    signal.raise_signal(signal.SIGALRM)   # the handler runs right here
""",
    "finalizer": """
class LogsWhenFreed:
    def __del__(self):
        log_inner()
def reenter():
    LogsWhenFreed()   # freed at once: __del__ runs right here
""",
}


@pytest.mark.parametrize("how", list(REENTER))
def test_log_reentered_at_every_point_inside_log_and_flush(child: Child, how: str) -> None:
    """Code that logs runs at every call and return inside dreamlake (a profiler hook): no deadlock, every entry once."""
    result = child.run(
        """
import json, math
import dreamlake._batcher as _B; _B.NATIVE = False  # a fault of Python's write: Python's writer only
s = session().open()
real_write = os.write
def slow_write(fd, data):
    time.sleep(0.002)  # ok: paces a slow disk, so the queue runs full
    return real_write(fd, data)
os.write = slow_write
inner = []
busy = False
def log_inner():
    global busy
    busy = True
    try:
        i = len(inner)
        s.log("inner", metadata={"i": i})
        inner.append(i)
    finally:
        busy = False
"""
        + REENTER[how]
        + """
depth = 0
def profile(frame, event, arg):
    '''Re-enter log() at every profiler event while a dreamlake function is on the stack.'''
    global depth
    if busy:
        return
    if "/dreamlake/" in frame.f_code.co_filename:
        if event == "call":
            depth += 1
        elif event == "return":
            depth -= 1
    if depth > 0:
        reenter()
N = 5_000
sys.setprofile(profile)
for i in range(N):
    # A NaN sends log() back to Python between encoding and queueing (orjson wrote it null):
    # the hook re-enters there, in the middle of the native call.
    s.log("main", metadata={"i": i, "nan": math.nan})
    if i % 1_000 == 999:
        s.flush()
sys.setprofile(None)
os.write = real_write
s.close()
print(json.dumps({"main": N, "inner": len(inner)}))
""",
        timeout=30,
    )
    assert 0 == result.returncode, result.stderr[-3000:]
    counts = json.loads(result.stdout)
    records = child.records()
    assert counts["inner"] > counts["main"], "the hook re-entered log() less than once per call"
    assert list(range(counts["main"])) == [r["metadata"]["i"] for r in records if r["message"] == "main"]
    assert_each_once(records, "inner", counts["inner"])
    assert_numbered_in_file_order(records)


def test_metadata_str_that_logs_neither_deadlocks_nor_loses_entries(child: Child) -> None:
    """A value whose __str__ calls session.log(): every entry, outer and inner, is written once."""
    result = child.run(
        SLOW_VALUES
        + """
import json
s = session().open()
inner = []
class Chatty:
    def __str__(self):
        i = len(inner)
        inner.append(i)
        s.log("from str", metadata={"i": i})
        return "chatty"
N = 50_000
for i in range(N):
    s.log("main", metadata={"i": i, "c": Chatty(), "slow": SLOW})
    if i % 10_000 == 0:
        s.flush()
s.flush()
s.close()
print(json.dumps({"main": N, "inner": len(inner)}))
""",
        timeout=30,
    )
    assert 0 == result.returncode, result.stderr[-3000:]
    counts = json.loads(result.stdout)
    records = child.records()
    main = [r for r in records if r["message"] == "main"]
    assert list(range(counts["main"])) == [r["metadata"]["i"] for r in main]
    assert {"chatty"} == {r["metadata"]["c"] for r in main}
    assert_each_once(records, "from str", counts["inner"])
    assert_numbered_in_file_order(records)


def test_finalizer_that_logs_neither_deadlocks_nor_loses_entries(child: Child) -> None:
    """Objects whose __del__ logs, freed by the collector at arbitrary points: every entry once."""
    result = child.run(
        SLOW_VALUES
        + """
import gc, json
gc.set_threshold(50, 5, 5)  # collect often, so finalizers run inside the library too
s = session().open()
finalized = []
class Logs:
    def __init__(self):
        self.me = self   # a cycle: only the collector frees it, wherever it runs
    def __del__(self):
        i = len(finalized)
        finalized.append(i)
        s.log("from del", metadata={"i": i})
N = 100_000
for i in range(N):
    s.log("main", metadata={"i": i, "slow": SLOW})
    Logs()
    if i % 10_000 == 0:
        s.flush()
gc.collect()
s.flush()
gc.disable()
s.close()
print(json.dumps({"main": N, "finalized": len(finalized)}))
""",
        timeout=30,
    )
    assert 0 == result.returncode, result.stderr[-3000:]
    counts = json.loads(result.stdout)
    records = child.records()
    assert counts["finalized"] > 0
    assert list(range(counts["main"])) == [r["metadata"]["i"] for r in records if r["message"] == "main"]
    assert_each_once(records, "from del", counts["finalized"])
    assert_numbered_in_file_order(records)
