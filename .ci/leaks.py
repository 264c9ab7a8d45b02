"""A workout of the native core for LeakSanitizer (run by .ci/sanitize): sessions opened and
closed with logs and tracks, a record bigger than the queue's limit, a native write that fails,
take-backs, formats with notices, and a forked child that logs and exits normally. Whatever
the core allocates for a ring, a logger or a write must be freed by the time the process ends."""

import errno
import os
import tempfile

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
        if run == 2:
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
print("leaks.py: done")
