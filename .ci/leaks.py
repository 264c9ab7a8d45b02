"""A workout of the native core for LeakSanitizer (run by .ci/sanitize): sessions opened and
closed with logs and tracks, a record bigger than the queue's limit, a native write that fails,
records another process appended (the batch numbered again), take-backs, formats with notices,
and forked children that log and exit normally, one forked while a native write waits at the
file's lock. Whatever the core allocates for a ring, a logger or a write must be freed by the
time the process ends. One block is leaked on purpose (CANARY bytes, through ctypes): its
report shows that LeakSanitizer ran. Leaked references are the test suite's to find
(tests/stress/test_native_writer.py, with tracemalloc): the collector still reaches them."""

import ctypes
import errno
import fcntl
import os
import tempfile
import time

import orjson

from dreamlake import Session, _core

root = tempfile.mkdtemp()
for run in range(3):
    with Session(name=f"run-{run}", workspace="ws", local_path=root, write_interval=0.01) as s:
        track = s.track("loss")
        if run == 1:
            _core.fail_writes(errno.EIO, 1)  # the native writer's next write fails halfway
        for i in range(20_000):
            s.log("x" * (i % 300), metadata={"i": i, "f": 0.5})
            if i % 10 == 0:
                track.append(value=i * 0.1, step=i)
        s.log("big", metadata={"pad": "y" * (3 << 20)})  # bigger than the ring's start: it grows
        s.flush()
        if run == 1:  # another process's records: the native writer numbers its batch after them
            with open(s.log_file, "ab") as other:
                fcntl.flock(other, fcntl.LOCK_EX)
                other.write(
                    orjson.dumps(
                        {
                            "timestamp": "2026-01-01T00:00:00.000000Z",
                            "level": "info",
                            "message": "other",
                            "metadata": None,
                            "sequenceNumber": 10**6,
                        }
                    )
                    + b"\n"
                )
            for i in range(100):
                s.log("after the other", metadata={"i": i})
            s.flush()
        if run == 2:
            lock = open(s.log_file, "rb")
            fcntl.flock(lock, fcntl.LOCK_EX)  # the native writer's next write waits here
            for i in range(100):
                s.log("held", metadata={"i": i})
            deadline = time.monotonic() + 10
            while s._channel.queue.pending != 100 and time.monotonic() < deadline:
                time.sleep(0.005)
            pid = os.fork()  # mid-write: the child ends the write it does not go on with
            if pid == 0:
                s.log("from the child")
                s.close()
                raise SystemExit(0)
            fcntl.flock(lock, fcntl.LOCK_UN)
            os.waitpid(pid, 0)
            lock.close()
            pid = os.fork()
            if pid == 0:
                s.log("from the child")
                s.close()
                raise SystemExit(0)  # a normal exit: LeakSanitizer looks at the child too
            os.waitpid(pid, 0)

ring = _core.Ring(limit=1 << 16)
for i in range(2_000):
    ring.push(i, 1, "m" * 500, orjson.dumps({"a": i}))
    if i % 7 == 0:
        ring.remove(ring.serial - 1)
    if i % 11 == 0:
        ring.take(5)
        ring.format(0, [(0, "warn", "notice", '{"dropped":1}')], bytes)
        ring.commit()
ring.push(0, 1, "z" * (1 << 17), None)  # a record bigger than the limit: a ring of its own size
ring.clear()
del ring
CANARY = 4321
ctypes.CDLL(None).malloc.restype = ctypes.c_void_p
ctypes.CDLL(None).malloc(CANARY)  # dropped at once: a leak LeakSanitizer must report
print("leaks.py: done")
