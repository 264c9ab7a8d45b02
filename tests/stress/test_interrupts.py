"""SIGTERM and Ctrl-C at awkward moments: mid-loop, mid-flush, with the session opened off the main thread."""

import json
import signal
from collections import Counter
from typing import Any

import orjson
import pytest

from .conftest import Child, assert_numbered_in_file_order
from .test_reentrancy import SLOW_VALUES
from .test_signals import wait_for_line


def records_of(child: Child) -> list[dict[str, Any]]:
    """The file's records; an empty or missing file has none."""
    if not child.log_file.exists():
        return []
    data = child.log_file.read_bytes()
    assert data == b"" or data.endswith(b"\n"), "a torn last line"
    return [orjson.loads(line) for line in data.splitlines()]


def counters(records: list[dict[str, Any]], message: str = "x") -> list[int]:
    return [r["metadata"]["i"] for r in records if r["message"] == message]


# -- SIGTERM ------------------------------------------------------------------------------------------

TERMINATE_SOON = """
import threading
reached = threading.Event()
def terminate():
    reached.wait()
    time.sleep(DELAY)  # ok: paces the signal, so it lands at some point of the loop
    print(i, flush=True)   # at least this many log() calls have returned
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=terminate, daemon=True).start()
s = session().open()
i = 0
"""

LOOPS = {
    # far more than the queue holds (8,192 entries), no flush
    "tight-loop": """
while True:
    s.log("x", metadata={"i": i})
    i += 1
    if i == 20_000:
        reached.set()
""",
    # mostly inside flush(), with values that take a while to encode
    "flush-loop": SLOW_VALUES
    + """
while True:
    for _ in range(4_000):
        s.log("x", metadata={"i": i, "slow": SLOW})
        i += 1
    s.flush()
    if i >= 20_000:
        reached.set()
""",
}


@pytest.mark.parametrize("delay", [0.003, 0.011, 0.027])
@pytest.mark.parametrize("loop", list(LOOPS))
def test_sigterm_while_logging_keeps_every_entry_logged_before_it(
    child: Child, loop: str, delay: float
) -> None:
    """SIGTERM mid-loop or mid-flush: the process ends as SIGTERM; the file holds i = 0..k-1, k >= entries logged."""
    result = child.run(f"DELAY = {delay}\n" + TERMINATE_SOON + LOOPS[loop], timeout=60)
    assert -signal.SIGTERM == result.returncode, result.stderr[-3000:]
    logged = int(result.stdout.split()[0])
    got = counters(records_of(child))
    assert list(range(len(got))) == got, "the entries on disk are not a gap-free prefix"
    assert len(got) >= logged, f"{len(got)} entries on disk, but {logged} log() calls returned before SIGTERM"


@pytest.mark.parametrize("main_thread", ["joins", "logs"])
def test_sigterm_flushes_a_session_first_opened_off_the_main_thread(child: Child, main_thread: str) -> None:
    """The first session is opened in a worker thread; SIGTERM still writes everything logged."""
    body = """
import threading
main_logged = threading.Event()
def work():
    s = session(write_interval=3600).open()   # nothing written before the signal unless flushed
    for i in range(1000):
        s.log("x", metadata={"i": i})
    main_logged.wait()
    print("ready", flush=True)
    threading.Event().wait()
t = threading.Thread(target=work, daemon=True)
t.start()
"""
    if main_thread == "joins":
        body += """
main_logged.set()
while t.is_alive():
    t.join(0.1)
"""
    else:
        body += """
m = Session(name="main", workspace="ws", local_path=os.environ["DL_ROOT"], write_interval=3600).open()
m.log("m", metadata={"i": 0})
main_logged.set()
i = 1
while True:
    m.log("m", metadata={"i": i})
    i += 1
"""
    with child.start(body) as proc:
        wait_for_line(proc, "ready")
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=30)
    assert -signal.SIGTERM == status
    assert list(range(1000)) == counters(records_of(child))
    if main_thread == "logs":
        main_file = child.root / "ws" / "main" / "logs.jsonl"
        got = [orjson.loads(line)["metadata"]["i"] for line in main_file.read_bytes().splitlines()]
        assert len(got) > 0
        assert list(range(len(got))) == got


# -- Ctrl-C inside flush() -----------------------------------------------------------------------------

# SIGALRM every 0.5 ms; the handler raises KeyboardInterrupt (as Ctrl-C does) only while the
# main thread is inside flush(), so every interrupt comes out of flush() and nothing else.
CTRL_C_IN_FLUSH = """
import json
s = session().open()
def flush_once():
    s.flush()
def on_alarm(signum, frame):
    f = frame
    while f is not None:
        if f.f_code is flush_once.__code__:
            if f is not frame:
                raise KeyboardInterrupt
            return
        f = f.f_back
signal.signal(signal.SIGALRM, on_alarm)
logged = interrupts = batches = 0
signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
while interrupts < 30 and batches < 3_000:
    for _ in range(200):
        s.log("x", metadata={"i": logged})
        logged += 1
    batches += 1
    try:
        flush_once()
    except KeyboardInterrupt:
        interrupts += 1
signal.setitimer(signal.ITIMER_REAL, 0, 0)
"""


def test_ctrl_c_inside_flush_then_close_writes_every_entry_once(child: Child) -> None:
    """KeyboardInterrupt out of flush(), again and again: after close() each entry is in the file once, in order."""
    result = child.run(
        CTRL_C_IN_FLUSH
        + """
s.close()
print(json.dumps({"logged": logged, "interrupts": interrupts}))
""",
        timeout=60,
    )
    assert 0 == result.returncode, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["interrupts"] > 0, "no KeyboardInterrupt came out of flush()"
    records = child.records()
    got = counters(records)
    assert {} == {i: n for i, n in Counter(got).items() if n != 1}, "entries written twice"
    assert list(range(out["logged"])) == got
    assert_numbered_in_file_order(records)


def test_ctrl_c_inside_flush_then_logging_works_and_sigterm_ends_the_process(child: Child) -> None:
    """After KeyboardInterrupts out of flush(), log() and flush() work, and SIGTERM ends the process as SIGTERM."""
    body = (
        CTRL_C_IN_FLUSH
        + """
for _ in range(1000):
    s.log("x", metadata={"i": logged})
    logged += 1
s.flush()
for _ in range(1000):   # queued, not flushed: SIGTERM writes them
    s.log("x", metadata={"i": logged})
    logged += 1
print(json.dumps({"logged": logged, "interrupts": interrupts}), flush=True)
print("ready", flush=True)
while True:
    time.sleep(1)  # ok: the child idles until it is signalled
"""
    )
    with child.start(body) as proc:
        assert proc.stdout is not None
        out = json.loads(proc.stdout.readline() or "{}")
        wait_for_line(proc, "ready")
        proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=30)
    assert out.get("interrupts", 0) > 0, "no KeyboardInterrupt came out of flush()"
    assert -signal.SIGTERM == status
    records = child.records()
    got = counters(records)
    assert {} == {i: n for i, n in Counter(got).items() if n != 1}, "entries written twice"
    assert list(range(out["logged"])) == got
    assert_numbered_in_file_order(records)


def test_many_threads_opening_sessions_while_the_main_thread_joins(child: Child) -> None:
    """One request goes to the blocked main thread and only its maker waits: no crash (the C
    callback stays alive until the main thread runs it), and later opens do not wait again."""
    result = child.run(
        """
import threading, time
waits = []
def opener(t):
    for k in range(4):
        started = time.monotonic()
        Session(name=f"t{t}s{k}", workspace="ws", local_path=os.environ["DL_ROOT"]).open()
        waits.append(time.monotonic() - started)
        junk = [bytearray(100) for _ in range(2000)]   # work the allocator, as the crash needed
threads = [threading.Thread(target=opener, args=(t,)) for t in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(sum(w > 0.25 for w in waits), len(waits))
""",
        timeout=60,
    )
    assert 0 == result.returncode, result.stderr[-3000:]
    slow, opened = map(int, result.stdout.split())
    assert opened == 24
    assert slow <= 1, f"{slow} opens waited for the main thread; only the first should"
