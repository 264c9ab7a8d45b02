"""The uploader: one daemon thread per process ships what the writer made durable, for every
open session with a remote, every `remote_interval` seconds, as soon as a chunk's worth (8 MiB)
is written, at flush(), close() and exit.

The local files are the journal: nothing here ever makes log() wait. A failing bucket is
retried with backoff and jitter and said once on stderr (and once more when it recovers);
close() waits for its session's last upload at most `remote_timeout` seconds, then says
what is left and that `dreamlake sync` ships it. Any shipped state lives in the bucket (the
listing is the truth), so a process killed at any point loses nothing the next sync cannot
finish. A forked child gets an uploader of its own, started at its first need.
"""

from __future__ import annotations

import dataclasses
import random
import shlex
import subprocess
import sys
import threading
import time

from ._process import after_exit, on_fork
from ._remote import CHUNK_BYTES, RemoteError, Syncer, runtime_forked, scrubbed

MAX_BACKOFF = 60.0  # seconds between tries while the bucket fails
CLOSING_BACKOFF = 1.0  # at most this between tries while close() or the exit waits
MIN_GAP = 1.0  # seconds at least between the rounds that flush() asks for
BACKLOG_POLL = 0.5  # seconds between looks at how much is written and not shipped


@dataclasses.dataclass(eq=False)
class _Job:
    syncer: Syncer
    interval: float
    timeout: float
    due: float = 0.0
    closing: bool = False  # the session is closed: one last successful round ends the job
    abandoned: bool = False  # close() stopped waiting and said what was left
    failing: str = ""  # the error said on stderr, until a round succeeds
    backoff: float = 0.0
    last: float = 0.0  # when the last round began (monotonic)
    asked: int = 0  # rounds asked for by flush() and close(): one asked during a round runs after it
    inherited: bool = False  # from before a fork: the parent ships it, unless closed here
    done: threading.Event = dataclasses.field(default_factory=threading.Event)


class Uploader:
    def __init__(self) -> None:
        # Reentrant: a SIGTERM handler that ships (finish_all) may interrupt this thread inside it.
        self._cond = threading.Condition(threading.RLock())
        self._jobs: dict[int, _Job] = {}  # by id() of the session: a subclass may be unhashable
        self._thread: threading.Thread | None = None
        self._forked = False  # a forked child: the S3 client's runtime cannot run here

    def add(self, owner: object, syncer: Syncer, interval: float, timeout: float) -> None:
        """Upload `owner`'s session from now on (it was opened); a first round at once."""
        with self._cond:
            self._jobs[id(owner)] = _Job(syncer, interval, timeout, due=time.monotonic())
            self._start()

    def nudge(self, owner: object) -> None:
        """Upload `owner`'s session now, without waiting for it (a flush())."""
        with self._cond:
            job = self._jobs.get(id(owner))
            if job is not None and not job.failing:
                # Soon, but not more often than once a second: flush() in a loop must not
                # make a request per call.
                job.due, job.asked = min(job.due, job.last + MIN_GAP), job.asked + 1
                self._start()

    def finish(self, owner: object, timeout: float | None = None) -> None:
        """`owner` was closed: wait up to its remote_timeout (or `timeout`, if shorter) for
        the last upload, then say what is left."""
        with self._cond:
            job = self._jobs.get(id(owner))
            if job is None:
                return
            job.closing, job.due, job.asked = True, 0.0, job.asked + 1
            self._start()
        self._wait([job], job.timeout if timeout is None else min(timeout, job.timeout))

    def finish_all(self) -> None:
        """At exit: every session still uploading gets its remote_timeout for the last round."""
        with self._cond:
            jobs = [job for job in self._jobs.values() if not job.abandoned and not job.inherited]
            for job in jobs:
                job.closing, job.due, job.asked = True, 0.0, job.asked + 1
            if jobs:
                self._start()
        self._wait(jobs, max((job.timeout for job in jobs), default=0.0))

    def _wait(self, jobs: list[_Job], seconds: float) -> None:
        """Wait up to `seconds` in all for `jobs`' last rounds; say what each left."""
        deadline = time.monotonic() + seconds
        for job in jobs:
            if not job.done.wait(max(0.0, deadline - time.monotonic())):
                job.abandoned = True
                syncer = job.syncer
                folder = shlex.quote(str(syncer.session))
                _say(
                    f"{syncer.pending():,} bytes of {syncer.session} are not uploaded to {syncer.remote} "
                    f"after {seconds:g} s (remote_timeout={job.timeout:g}); the local files hold them, "
                    f"and `dreamlake sync {folder} --remote {syncer.remote}` ships them"
                )

    def _start(self) -> None:
        """Under the lock: wake the thread, or start it."""
        self._cond.notify()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="dreamlake-upload", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._jobs:
                        self._thread = None
                        return  # stopped with the last session; started again by the next
                    now = time.monotonic()
                    for waiting in self._jobs.values():  # a chunk's worth is written: no need to wait
                        if (
                            not waiting.failing
                            and not waiting.inherited
                            and waiting.syncer.backlog() >= CHUNK_BYTES
                        ):
                            waiting.due = min(waiting.due, now)
                    job = min(self._jobs.values(), key=lambda j: (j.due, not j.closing))  # close() first
                    if job.due <= now:
                        break
                    self._cond.wait(min(job.due - now, BACKLOG_POLL))
            self._round(job)

    def _round(self, job: _Job) -> None:
        with self._cond:
            closing, asked = job.closing, job.asked  # a close() or flush() after this needs one more
            job.last = time.monotonic()
        try:
            if self._forked or runtime_forked():
                _sync_in_a_new_process(job)
            else:
                job.syncer.run(durable=True)
        except RemoteError as exc:  # a conflict: trying again changes nothing
            _say(f"uploads of {job.syncer.session} to {job.syncer.remote} stopped: {exc}")
            self._end(job)
            return
        except Exception as exc:  # noqa: BLE001 - the network's or the bucket's: retried
            self._failed(job, scrubbed(str(exc)) or type(exc).__name__)
            return
        if job.failing:
            _say(f"uploads of {job.syncer.session} to {job.syncer.remote} work again")
        with self._cond:
            job.failing, job.backoff = "", 0.0
            now = time.monotonic()
            job.due = (
                (job.last + MIN_GAP if not job.closing else now) if job.asked != asked else now + job.interval
            )
        if closing:
            self._end(job)

    def _failed(self, job: _Job, error: str) -> None:
        if not job.failing:
            _say(
                f"uploads of {job.syncer.session} to {job.syncer.remote} fail ({error}); retrying "
                f"with backoff. Logging goes on and nothing is lost: the local files hold everything"
            )
        with self._cond:
            job.failing = error
            job.backoff = min(MAX_BACKOFF, max(0.5, 2 * job.backoff))
            waited_for = job.closing and not job.abandoned  # close() or the exit waits on it
            wait = min(job.backoff, CLOSING_BACKOFF) if waited_for else job.backoff
            job.due = time.monotonic() + wait * random.uniform(0.5, 1.5)

    def _end(self, job: _Job) -> None:
        with self._cond:
            for owner, there in list(self._jobs.items()):
                if there is job:
                    del self._jobs[owner]
        job.done.set()

    def after_fork_in_child(self) -> None:
        """The thread is gone and its lock may be held: new ones. The client's async runtime
        does not survive a fork (its threads are gone), so a child ships through a new
        process (`dreamlake sync`). The parent's sessions stay the parent's to ship (a child
        writes to the same files, and so the same streams), unless the child closes one."""
        self._cond = threading.Condition(threading.RLock())
        self._thread, self._forked = None, True
        for job in self._jobs.values():
            job.done, job.inherited, job.due = threading.Event(), True, float("inf")


def _sync_in_a_new_process(job: _Job) -> None:
    """A round of a forked child: `dreamlake sync` in a fresh interpreter, within remote_timeout."""
    syncer = job.syncer
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dreamlake", "sync", str(syncer.session), "--remote", str(syncer.remote)],
            capture_output=True, text=True, timeout=job.timeout, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        msg = f"dreamlake sync took longer than remote_timeout={job.timeout:g} s"
        raise TimeoutError(msg) from None
    if done.returncode == 1:
        raise OSError(
            done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "dreamlake sync failed"
        )
    if done.returncode not in (0, 3):  # 3: nothing new
        raise RemoteError(done.stderr.strip() or f"dreamlake sync exited with {done.returncode}")


def _say(text: str) -> None:
    try:
        print(f"dreamlake: {text}", file=sys.stderr, flush=True)
    except Exception:  # noqa: BLE001 - stderr may be closed
        pass


_uploader: Uploader | None = None


def uploader() -> Uploader:
    """The process's uploader, made at the first session with a remote."""
    global _uploader
    if _uploader is None:
        made = _uploader = Uploader()
        on_fork("uploads", after_in_child=made.after_fork_in_child)
        after_exit(made.finish_all)
    return _uploader
