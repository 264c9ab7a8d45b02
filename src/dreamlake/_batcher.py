"""The background writer: one daemon thread per process drains the queue of every open session.

Callers take no lock and do no I/O. `log()` copies an entry into its session's
`Channel.queue` (a `_core.Ring` of bytes: see docs/core.md), which compares the queue's
length with `Channel.mark`, and only at the mark calls `Channel.pressure()`. The mark is where
the state shows: `WAKE_AT` while open, `QUEUE_LIMIT` once the worker has been woken
(or is writing that channel), and 0 whenever the channel is not simply open (not yet
open, closed, the process exiting, a forked child whose worker has not started), so
every call then reaches `pressure()` and sees why. Once a channel is registered, only
the worker changes its state, always before its mark; a caller that raises the mark
checks the state after writing it, so a 0 the worker wrote is never lost.

A caller that must wait (flush, close, a full queue) waits on a one-shot latch (a
`threading.Lock` that the worker releases), never on a lock that the worker or
another caller holds. A signal handler or a finalizer that logs or flushes in the
middle of its own thread's log() or flush() cannot deadlock, and Ctrl-C in flush()
leaves nothing locked. The worker is the only thread that writes, so a batch is
written exactly once whatever interrupts the caller.
"""

from __future__ import annotations

import enum
import errno
import itertools
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

import orjson

from . import _core, _process
from ._core import Ring
from ._encode import Metadata, metadata_bytes
from ._files import reworded, sync_files
from ._process import EXIT_TIMEOUT
from ._sink import Sink

WRITE_INTERVAL = 0.1  # default seconds between the worker's rounds when nobody wakes it
WAKE_AT = 1024  # queued entries that wake the worker before its round is due
QUEUE_LIMIT = 8192  # entries queued per session; then log() waits for room (or drops)
QUEUE_BYTES = 64 << 20  # bytes a queue grows to, at most (from 64 KiB); then log() waits for room (or drops)
BATCH = 1024  # entries per write, at most
ROOM = QUEUE_LIMIT * 3 // 4  # a caller waiting for room is let go once the queue is this short
STALL_TIMEOUT = 5.0  # seconds a full queue waits for a writer that makes no progress
FORK_TIMEOUT = 1.0  # seconds a fork waits for the worker to stop (a hung write)
SYNC_ALL_AT = 16  # files made durable at once from which one syncfs beats an fsync each (~0.2 ms)
DESCRIBE_SHARE = 0.8  # of a timed flush (exit, SIGTERM): past it, tracks' totals wait for the next one
NATIVE = True  # lend open channels to the native writer (False: the Python writer writes every batch)

Notice = tuple[int, str, str, str]
"""A warn entry counting drops: (time.time_ns(), "warn", message, metadata as JSON text)."""


class State(enum.Enum):
    NEW = "not open"
    OPEN = "open"
    EXITING = "exiting"  # after the exit flush: every entry is written at once
    CLOSED = "closed"  # by the worker, before its last drain; registered until that succeeds


class Channel:
    """One session's queue and file, and what its log() needs to know."""

    __slots__ = (
        "queue", "state", "sink", "notices", "drops", "reported_drops", "error", "stalled", "waiters",
        "registered", "interval", "drop_when_full", "name", "reported", "log_channel", "after_sync",
        "track", "tracks", "drops_due", "dropped_by_writer",
    )  # fmt: skip

    def __init__(
        self,
        path: str,
        name: str,
        interval: float,
        drop_when_full: bool,
        log_channel: Channel | None = None,
        track: str | None = None,
    ) -> None:
        self.queue = Ring(points=track is not None, limit=QUEUE_BYTES)  # the entries, as bytes
        self.state = State.NEW
        # A track's points are numbered by "index"; its drops are counted in its session's log,
        # by that log's writer, which looks at its tracks' counters while `drops_due`.
        self.log_channel = log_channel
        self.track = track  # the track's name
        self.tracks: list[Channel] = []  # of a session's log: its tracks' channels
        self.drops_due = False  # of a session's log: a track dropped points since the last look
        if log_channel is None:
            self.sink = Sink(path)
        else:
            self.sink = Sink(path, "index", keep_open=False)
            log_channel.tracks.append(self)
        # Called by the syncer once the entries are durable, with whether to fsync what it writes
        # (False: the syncer makes many such files durable at once, after calling each).
        self.after_sync: Callable[[bool], None] | None = None
        self.notices: list[Notice] = []  # drop notices written before the taken entries
        self.drops = itertools.count()  # next() per dropped entry: atomic, and O(1) memory
        self.reported_drops = 0  # how many of them a warn record has counted
        self.error: OSError | None = None  # the last write failed with this
        self.stalled = False  # a full queue waited STALL_TIMEOUT for no progress
        self.dropped_by_writer = False  # the writer's own thread logged into a full queue
        self.waiters: deque[threading.Lock] = deque()  # latches of callers waiting for room
        self.registered = False  # the worker knows this channel
        self.interval = interval
        self.drop_when_full = drop_when_full
        self.name = name  # the session's repr (and the track's name), for messages
        self.reported: object = None  # the fault last reported on stderr

    @property
    def mark(self) -> int:
        """The queue's length at which a push calls `pressure()` (see the module's docstring)."""
        return self.queue.mark

    @mark.setter
    def mark(self, value: int) -> None:
        self.queue.mark = value

    @property
    def pending(self) -> int:
        """Entries taken by the writer (and notices), not yet written."""
        return self.queue.pending + len(self.notices)

    # -- the session's calls -------------------------------------------------------------

    def open(self) -> None:
        if self.registered:  # a close() failed and the entries are kept: the worker resumes
            _worker.call(_Kind.REOPEN, [self], None)
            return
        self.sink.open()
        self.queue.clear()  # closed and written: anything here was refused (an interrupted take-back)
        self.error, self.stalled = None, False
        # Opened by an exit handler (ours may have run, or will not run for it): write at once.
        self.arm(_worker.exiting or getattr(threading, "_SHUTTING_DOWN", False))
        self.lend()  # before the worker knows it: the only time a thread but the writer lends
        self.registered = True
        _worker.register(self)

    def arm(self, exiting: bool) -> None:
        """Open for log(): state first, then the mark (0 while exiting: each entry at once)."""
        self.state = State.EXITING if exiting else State.OPEN
        self.mark = 0 if exiting else WAKE_AT

    def lendable(self) -> bool:
        """The native writer may write this channel: it is simply open, and Python's writer
        has nothing to write first (see docs/core.md)."""
        return (
            NATIVE
            and not self.queue.lent
            and self.state is State.OPEN
            and self.error is None
            and not self.stalled
            and not self.drops_due
            and self._dropped() == self.reported_drops
            and self.sink.lendable
        )

    def lend(self) -> None:
        """Lend the file to the native writer if it may write it. Called by the writer only
        (or by open() before the writer knows the channel): two threads lending one ring
        would each think the other's loan ended."""
        if self.lendable():
            self.sink.lend(self.queue, WAKE_AT, self.interval)

    def _dropped(self) -> int:
        return int(repr(self.drops)[6:-1])  # "count(N)": N drops so far, read without a next()

    @property
    def what(self) -> str:
        return "log()" if self.log_channel is None else "append()"

    # -- log() at the mark ----------------------------------------------------------------

    def pressure(self, token: int, again: Callable[[], int]) -> None:
        """The queue reached the mark (`token` is the entry's serial + 1), or had no room for
        the entry's bytes (-1; `again()` pushes it again): wake the worker, make room, or say
        why log() cannot."""
        if token < 0:
            pushed = self.push_when_room(again)
            if not pushed:
                return  # dropped (and counted), or queued below the mark
            token = pushed
        serial = token - 1
        state = self.state
        if state is State.OPEN:
            self._wake_worker()
            if len(self.queue) > QUEUE_LIMIT:
                try:
                    if not self._wait_for_room():
                        self._drop(serial)
                except KeyboardInterrupt:  # a log() that raises writes nothing
                    self.queue.remove(serial)  # False: written already, the writer took it meanwhile
                    raise
        elif state is State.EXITING:
            try:  # the process is ending: nothing will come back for it later
                _worker.call(_Kind.WRITE, [self], EXIT_TIMEOUT)
            except OSError as exc:
                _report(f"at exit: {exc}")
        elif self.queue.remove(serial):
            self.refuse()
        # else the closing writer took it: it is in the file when close() returns

    def pressed(self, token: int, ns: int, rank: int, message: str, metadata: Metadata) -> None:
        """`pressure()` for the log's native hot path (`_core.Logger`); token 0: the mark was 0
        and nothing is queued yet (refused here if the session is not open)."""

        def again() -> int:
            return self.queue.push(ns, rank, message, metadata)

        if not token:
            if self.state is State.NEW or self.state is State.CLOSED:
                self.refuse()
            token = again()  # exiting, or a forked child's first entry: pressure() sees why
            if not token:
                return
        self.pressure(token, again)

    def push_when_room(self, again: Callable[[], int]) -> int | None:
        """The queue's bytes are full: wait for the writer to write some, then push again with
        `again()`; its token (0, or the serial + 1 at the mark), or None if the entry is dropped
        (counted) instead."""
        token = -1
        while token < 0:
            state = self.state
            if state is State.EXITING:
                try:
                    _worker.call(_Kind.WRITE, [self], EXIT_TIMEOUT)
                except OSError as exc:
                    _report(f"at exit: {exc}")
            elif state is not State.OPEN:
                self.refuse()
            elif _worker.is_current():  # a value's conversion logged: the writer cannot wait for itself
                self.dropped_by_writer = True
                self.count_drops(1)
                return None
            else:
                seen = self.queue.written  # before the push: a batch written after it is progress
                token = again()  # room may have been made since the push that found none
                if token < 0 and not self._wait_for_progress(seen):
                    self.count_drops(1)
                    return None
                continue  # pushed, or the next turn looks at the state (a close meanwhile) and pushes
            token = again()
            if token < 0:  # exiting, and the write failed: nothing frees room now
                self.count_drops(1)
                return None
        return token

    def admit(self, count: int) -> bool:
        """For a track, before `count` points are queued, under the track's lock, when the
        queue is at the mark: wake the worker and wait for room; False when the points must
        be dropped (counted). Raises RuntimeError when the session is not open.

        Deciding before queueing leaves nothing to take back: no index given out is ever
        dropped, and a signal handler that appends meanwhile finds the counter as it was.
        """
        state = self.state
        if state is State.OPEN:
            self._wake_worker()
            if len(self.queue) + count > QUEUE_LIMIT and not self._wait_for_room(QUEUE_LIMIT - count):
                self.count_drops(count)
                return False
            return True
        if state is not State.EXITING:
            self.refuse()
        return True

    def count_drops(self, count: int) -> None:
        for _ in range(count):
            next(self.drops)
        self.queue.unlend()  # the notice is Python's to write, before what follows
        if self.log_channel is not None:
            self.log_channel.drops_due = True  # after counting: the writer clears it, then reads
            self.log_channel.queue.unlend()

    def settle(self, first: int, count: int) -> int:
        """For a track, right after `count` points were queued from serial `first` at the mark,
        under the track's lock:
        wake the worker, or write them now (the process is exiting). If the session was closed
        meanwhile, take back those the closing writer did not take: raise RuntimeError if
        that is all of them, else return how many."""
        state = self.state
        if state is State.OPEN:
            self._wake_worker()
            return 0
        if state is State.EXITING:
            self.pressure(first + count, lambda: 0)
            return 0
        taken = 0
        while taken < count and self.queue.pop(
            first, first + count
        ):  # newest first, unless the writer took them
            taken += 1
        if taken == count:
            self.refuse()
        return taken

    def _wake_worker(self) -> None:
        if not self.queue.wake():  # lent to the native writer, which writes it now
            _worker.wake()
        # The worker is on its way: until it is, only a full queue matters. Write, then
        # check: if the worker changed the state meanwhile, its 0 must stand.
        self.mark = QUEUE_LIMIT
        if self.state is not State.OPEN:
            self.mark = 0

    def refuse(self, call: str = "") -> None:
        """Raise the RuntimeError that says why `call` (log() or append()) records nothing now."""
        call = call or self.what
        msg = (
            f"{self.name} is closed: {call} after close() is not recorded; open() it again to go on"
            if self.state is not State.NEW
            else f"{self.name} is not open: use `with Session(...) as session:` or call .open() first"
        )
        raise RuntimeError(msg)

    def _wait_for_room(self, limit: int = QUEUE_LIMIT) -> bool:
        """Wait while the queue holds more than `limit` and the worker makes progress; False
        when the newest entries must be dropped instead."""
        if _worker.is_current():
            return True  # a value converted by the worker logged: it cannot wait for itself
        while True:
            seen = self.queue.written  # before looking: a batch written after it is progress
            if len(self.queue) <= limit:
                return True
            if not self._wait_for_progress(seen):
                return False

    def _wait_for_progress(self, seen: int) -> bool:
        """Wait until the writer has written a batch of this channel (the native writer: one
        more than the `seen` count of `queue.written`); False when entries must be dropped
        instead (when_full="drop", a failing file, or STALL_TIMEOUT of no progress)."""
        if self.drop_when_full or self.error is not None or self.stalled:
            return False
        made = -1
        if self.queue.wake():  # lent: the native writer makes room, and this waits without the GIL
            made = self.queue.wait_written(seen, STALL_TIMEOUT)
        if made < 0:  # not lent, or the loan ended: Python's writer makes room
            latch = _latch()
            self.waiters.append(latch)
            _worker.wake()
            made = int(latch.acquire(timeout=STALL_TIMEOUT))
        if not made:
            self.stalled = True
            _report(
                f"writing {self.sink.path} made no progress for {STALL_TIMEOUT:g} s; "
                f"new entries are dropped, and counted in a warn record, until it does"
            )
        return True

    def _drop(self, serial: int) -> None:
        if len(self.queue) > QUEUE_LIMIT and self.queue.remove(serial):
            next(self.drops)
            self.queue.unlend()

    # -- the worker's side ----------------------------------------------------------------

    def take_drops(self) -> list[Notice]:
        """Of a session's log: warn entries counting what it and its tracks dropped since the
        last ones. Written in the log's own batch, never queued: no notice is ever dropped."""
        notices = []
        notice = self._drop_notice()
        if notice is not None:
            notices.append(notice)
        if self.drops_due:
            self.drops_due = False  # before reading: a drop counted meanwhile sets it again
            for track in self.tracks:
                notice = track._drop_notice()
                if notice is not None:
                    notices.append(notice)
        return notices

    def _drop_notice(self) -> Notice | None:
        """A warn entry counting the entries dropped since the last one, if any."""
        total = self._dropped()
        count, self.reported_drops = total - self.reported_drops, total
        if not count:
            return None
        if self.drop_when_full:
            reason = "when_full='drop'"
        elif self.dropped_by_writer:
            self.dropped_by_writer = False
            reason = "logged by the writer thread itself, converting a value, which cannot wait for room"
        elif self.error is not None:
            reason = "the file could not be written"
        else:
            reason = f"the writer made no progress for {STALL_TIMEOUT:g} s"
        metadata: dict[str, int | str] = {"dropped": count}
        what = "entries"
        if self.track is not None:
            what, metadata["track"] = f"points of {self.name}", self.track
        message = f"dreamlake dropped {count} {what}: the queue was full ({reason})"
        return (time.time_ns(), "warn", message, orjson.dumps(metadata).decode())

    def format(self, first: int) -> bytes:
        """The notices and the taken entries as JSON Lines numbered from `first`: tensors are
        made numbers here, the rest formatted with the GIL released. Out of memory, an OSError
        (ENOMEM): the batch is kept and retried like one the disk refused."""
        try:
            return self.queue.format(first, self.notices, metadata_bytes)
        except MemoryError:
            count = self.pending
            what = "1 entry" if count == 1 else f"{count} entries"
            raise OSError(errno.ENOMEM, f"not enough memory to format {what}") from None

    def commit(self) -> None:
        """The notices and the taken entries are in the file."""
        self.queue.commit()
        self.notices = []

    def release_waiters(self) -> None:
        while self.waiters:
            self.waiters.popleft().release()

    def kept_error(self) -> OSError:
        exc = self.error or OSError("unknown error")
        kept = len(self.queue) + self.pending
        return reworded(
            exc,
            f"{exc.strerror or exc}. {kept} entries are kept in memory; fix the cause and call flush() or "
            f"close() again",
        )

    def after_fork_in_child(self) -> None:
        """The parent writes what it had queued; the child starts clean, with its own handle."""
        self.queue.reclaim()  # the parent's loan: what its writer knew of the file is stale here
        self.queue.clear()
        self.notices = []
        self.drops, self.reported_drops, self.drops_due = itertools.count(), 0, False
        self.waiters.clear()
        self.error, self.stalled, self.reported = None, False, None
        self.sink.reopen()
        self.mark = 0  # the first log() starts the child's worker, which sets the mark
        if self.state is State.CLOSED:  # a failed close: the parent keeps those entries
            self.registered = False


class _Kind(enum.Enum):
    FLUSH = "flush"  # write, then fsync
    WRITE = "write"  # write only
    CLOSE = "close"  # write, fsync, close the file
    REOPEN = "open"  # after a close() that failed or timed out
    EXIT = "exit flush"  # write and fsync everything; from now on each entry is written at once


class _Request:
    """What a caller asked for, and the latch it waits on."""

    __slots__ = ("kind", "targets", "done", "error", "channels", "describe_until")

    def __init__(self, kind: _Kind, targets: list[Channel] | None, timeout: float | None = None) -> None:
        self.kind = kind
        self.targets = targets  # None: every open channel
        # The entries are made durable first; what describes them (tracks' metadata.json) is
        # written until then, so that the call ends in time rather than raise TimeoutError.
        self.describe_until = None if timeout is None else time.monotonic() + DESCRIBE_SHARE * timeout
        self.done = _latch()
        self.error: BaseException | None = None
        self.channels: list[Channel] = []  # written, to fsync (and close) in the syncer

    def finish(self, error: BaseException | None = None) -> None:
        self.error = self.error or error
        self.done.release()


def _latch() -> threading.Lock:
    """A one-shot latch: acquire() waits until someone calls release()."""
    latch = threading.Lock()
    latch.acquire()
    return latch


class Gate:
    """What the writer's threads share about starting: a fork sets `forking` under `lock`,
    and a thread is started only under it, after finding `forking` false."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # re-entrant: a signal handler may start one meanwhile
        self.forking = False
        self.forker = 0  # the thread running os.fork(), while forking
        self.inline = False  # after the exit flush: callers write in their own thread


class _Loop:
    """A named daemon thread that runs `step` whenever woken, or every `interval()` seconds.

    Callers start a thread whenever no thread holds `running` (under the gate's lock,
    unless a fork is under way), and a thread that finds `running` held leaves at once. Only the loop's
    own threads (and a caller doing a round itself when no thread can start) hold
    `running`; no signal handler runs in those threads, so it is never left held.
    """

    def __init__(
        self,
        name: str,
        step: Callable[[], None],
        interval: Callable[[], float],
        idle: Callable[[], bool],
        gate: Gate,
        leave: Callable[[], object] = lambda: None,
    ) -> None:
        self._name, self._step, self._interval, self._idle, self._gate = name, step, interval, idle, gate
        self._leave = leave  # called by a thread that leaves for want of work
        self.running = threading.Lock()  # held while a thread (or an inline round) runs steps
        self.ident = 0  # the thread holding `running`
        self.stop = False
        self._wake = _latch()  # released = "a step is wanted"

    def wake(self) -> None:
        wake = self._wake
        if wake.locked():
            try:
                wake.release()
            except RuntimeError:  # another caller released it first
                pass

    def start(self) -> bool:
        """Start a thread unless one runs; False if none can (interpreter shutdown, a fork)."""
        if self.running.locked():
            return True
        with self._gate.lock:  # a fork waits: no thread of ours is half started when it joins them
            if self._gate.forking or self._gate.inline:
                return False
            thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            try:
                thread.start()  # returns once the thread runs: join() can find it
            except RuntimeError:  # "can't create new thread at interpreter shutdown"
                return False
        return True

    def join(self, timeout: float) -> None:
        """Ask the threads to stop after their current step, and wait for them up to `timeout`."""
        self.stop = True
        self.wake()
        deadline = time.monotonic() + timeout
        # Found by name, not kept in a list: two threads starting one each at once
        # (a caller and the writer) would lose one from a list, and a fork would copy it.
        for thread in [t for t in threading.enumerate() if t.name == self._name]:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
                _wait_gone(thread, deadline)

    def _run(self) -> None:
        if not self.running.acquire(blocking=False):
            return  # another thread of this loop runs
        held = True
        self.ident = threading.get_ident()
        try:
            while True:
                self._wake.acquire(timeout=self._interval())
                try:
                    self._step()
                except BaseException as exc:  # noqa: BLE001 - the writer must outlive any fault
                    _report(f"{self._name}: {exc!r} (will retry)")
                if self.stop or self._idle():
                    if not self.stop:
                        self._leave()
                    held, self.ident = False, 0
                    self.running.release()
                    # Work may have come between the look and the release: look again.
                    if self.stop or self._idle() or not self.running.acquire(blocking=False):
                        return
                    held, self.ident = True, threading.get_ident()
        finally:
            if held:
                self.ident = 0
                self.running.release()


def _wait_gone(thread: threading.Thread, deadline: float) -> None:
    """Wait for a joined thread to leave the OS as well: join() returns while it is still
    exiting, and Python 3.12+ counts the OS's threads to warn about a multi-threaded fork."""
    task = f"/proc/self/task/{thread.native_id}"
    while not thread.is_alive() and os.path.exists(task) and time.monotonic() < deadline:
        time.sleep(0.0002)


class Worker:
    """The process's writer: one thread writes, another fsyncs, both started lazily.

    fsync has a thread of its own so that the writer keeps draining queues while a
    disk is slow to sync, and a flush() or close() can stop waiting for a hung one.
    """

    def __init__(self) -> None:
        self.channels: list[Channel] = []  # registered and not being closed
        self.exiting = False
        self._requests: deque[_Request] = deque()  # for the writer, in order
        self._syncs: deque[_Request] = deque()  # for the syncer, in order
        self._scan = False  # a queue reached its mark since the last look at every channel
        self._scanned = 0.0  # when the writer last looked at every channel
        self._others = False  # other threads ran when the fork began
        self._init_threads()

    def _init_threads(self) -> None:
        self._gate = Gate()
        leave = lambda: _core.stop(FORK_TIMEOUT)  # noqa: E731 - the native writer leaves with it
        self._writer = _Loop("dreamlake writer", self._round, self._until_scan, self._idle, self._gate, leave)
        self._syncer = _Loop("dreamlake fsync", self._sync_round, lambda: 1.0, self._idle, self._gate)

    # -- callers --------------------------------------------------------------------------

    def register(self, channel: Channel) -> None:
        self.channels.append(channel)
        _process.install(self)
        self._start()

    def wake(self) -> None:
        """A queue reached its mark: look at every channel soon."""
        self._scan = True
        if not self._writer.running.locked():  # first use, after a fork, or it left
            self._start()
        self._writer.wake()

    def is_current(self) -> bool:
        return threading.get_ident() in (self._writer.ident, self._syncer.ident)

    def call(self, kind: _Kind, targets: list[Channel] | None, timeout: float | None) -> None:
        """Have the writer do `kind` to `targets` (None: all) and wait for it, up to `timeout`
        seconds for the whole call."""
        if self.is_current():
            return  # a value being converted by the writer flushed: it cannot wait for itself
        request = _Request(kind, targets, timeout)
        self._requests.append(request)
        if self._start():
            self._writer.wake()
        elif not self._gate.forking:
            self._run_inline()  # no thread can run (interpreter shutdown): do it here
        elif self._gate.forker == threading.get_ident():
            # Called by a fork hook or a signal handler (SIGTERM) in the forking thread, which
            # cannot wait for after_fork: once the stopping writer has left, do it here.
            self._run_inline(-1 if timeout is None else timeout)
        # else: another thread, during a fork: the writer starts after it and serves this
        if not request.done.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            for waiting in (self._requests, self._syncs):  # not taken yet: nothing to keep
                try:
                    waiting.remove(request)
                except ValueError:
                    pass
            what = (
                "the open sessions' files" if targets is None else ", ".join(ch.sink.path for ch in targets)
            )
            msg = (
                f"dreamlake: {kind.value} of {what} did not finish within {timeout:g} s; "
                f"it goes on in the background"
            )
            raise TimeoutError(msg)
        if request.error is not None:
            raise request.error

    def flush_all(self, timeout: float) -> None:
        self.call(_Kind.FLUSH, None, timeout)

    def exit_all(self, timeout: float) -> None:
        """The exit flush; then the threads stop, and what exit handlers and finalizers log
        later is written in their own thread. A daemon thread that the interpreter's
        finalization freezes would hold `running` for ever: every later write would wait
        for it, and be lost."""
        self.exiting = True
        deadline = time.monotonic() + timeout
        self.call(_Kind.EXIT, None, timeout)  # a timeout (a hung disk) leaves the threads on it
        gate = self._gate
        with gate.lock:
            gate.inline = True  # none starts again
        self._writer.join(max(0.0, deadline - time.monotonic()))
        self._syncer.join(max(0.0, deadline - time.monotonic()))
        if self._writer.running.locked() or self._syncer.running.locked():  # still in a write
            gate.inline = False
            self._writer.stop = self._syncer.stop = False
            self.wake()

    # -- forks ----------------------------------------------------------------------------

    def before_fork(self) -> None:
        """Stop the threads (bounded), so the child is copied from a single-threaded process.

        The writer finishes its round first: what was queued before the fork is written.
        """
        gate = self._gate
        with gate.lock:  # no thread is starting once this is set: join() finds them all
            gate.forking, gate.forker = True, threading.get_ident()
        deadline = time.monotonic() + FORK_TIMEOUT
        self._writer.join(FORK_TIMEOUT)
        self._syncer.join(max(0.0, deadline - time.monotonic()))
        _core.stop(max(0.0, deadline - time.monotonic()))  # lent rings wait, unwritten, for it to start again
        self._others = threading.active_count() > 1  # threads that may log during the fork

    def after_fork(self, child: bool) -> None:
        if child:  # the parent's callers wait for the parent's threads
            self._requests.clear()
            self._syncs.clear()
            self._init_threads()
            self.exiting = False
            for channel in self.channels:
                channel.after_fork_in_child()
            self.channels = [ch for ch in self.channels if ch.registered]
            return
        self._gate.forking, self._gate.forker = False, 0
        self._writer.stop = self._syncer.stop = False  # one still in a hung write goes on
        if self._writer.running.locked():
            return
        # Marks first: every log() from now on reaches pressure() and starts the writer.
        for channel in self.channels:
            if channel.state is State.OPEN:
                channel.mark = 0
        # Work that other threads brought during the fork (entries, a wait for room, a
        # flush) is done now, not at the next log(), which may never come. Otherwise
        # nothing starts: a thread started here would make Python 3.13 warn about this
        # very fork (with other threads, the process was multi-threaded anyway). Entries
        # that a single-threaded process logged in a fork hook wait for its next call.
        waiting = self._requests or self._syncs or any(ch.waiters for ch in self.channels)
        others, self._others = self._others or threading.active_count() > 1, False
        if waiting or (others and any(ch.queue or ch.pending for ch in self.channels)):
            self.wake()

    # -- the threads ----------------------------------------------------------------------

    def _start(self) -> bool:
        """Make sure both threads run while there is work; False if the writer cannot."""
        if self._gate.forking or self._idle():
            return self._writer.running.locked()
        self._syncer.start()  # now, although needed later: at interpreter exit none can start
        self._start_native()
        return self._writer.start()

    def _start_native(self) -> None:
        gate = self._gate
        with gate.lock:  # as the threads: none is started once a fork has begun
            if not (gate.forking or gate.inline):
                _core.start()

    def _idle(self) -> bool:
        return not (self.channels or self._requests or self._syncs)

    def _interval(self) -> float:
        return min((ch.interval for ch in self.channels), default=WRITE_INTERVAL)

    def _until_scan(self) -> float:
        """Seconds until every channel is due to be looked at (a round serving only requests
        does not look at them: it must not push the next look further away)."""
        return max(0.0, self._scanned + self._interval() - time.monotonic())

    def _run_inline(self, wait: float = 0.0) -> None:
        """The threads' work in the caller's thread, for when no thread can be started; waits
        up to `wait` seconds (-1: for ever) for a thread still running to leave."""
        writer = self._writer
        deadline = time.monotonic() + wait
        while self._requests or self._syncs:  # also those other callers add meanwhile
            left = -1 if wait < 0 else max(0.0, deadline - time.monotonic())
            if not writer.running.acquire(timeout=left):
                return  # a thread, or another caller (or this one, under a signal handler)
            writer.ident = threading.get_ident()
            try:
                self._round(inline=True)
                self._sync_round()
            finally:
                writer.ident = 0
                writer.running.release()

    def _round(self, inline: bool = False) -> None:
        """Serve the requests made so far, after writing what was queued before them.

        Each request writes what its channel holds (all of them for a flush of every
        session): a round that only serves requests looks at no other channel unless
        one reached its mark or the interval is up, so that flushing each of a
        thousand sessions in turn does not look at all of them a thousand times.
        """
        requests = []
        while self._requests:
            requests.append(self._requests.popleft())
        try:
            now = time.monotonic()
            if self._scan or not requests or now - self._scanned >= self._interval():
                self._scan, self._scanned = False, now
                native = _core.running()
                if not native and self.channels and not inline:
                    self._start_native()  # it left meanwhile (stopped as the last session closed)
                    native = _core.running()
                for channel in list(self.channels):
                    if not channel.waiters:  # those are let go by Python's writer, whoever writes
                        if channel.queue.lent and native:
                            continue  # the native writer's
                        idle = not (channel.queue or channel.pending or channel.drops_due)
                        if idle and channel.state is State.OPEN:
                            if native:  # reopened, or the fault that kept it from the native writer passed
                                channel.lend()
                            continue
                    self._drain(channel, len(channel.queue), in_round=not inline)
                    if channel.state is State.CLOSED and not (channel.queue or channel.pending):
                        self._hand_over_close(channel)  # a close() that had failed can finish
        finally:
            for request in requests:
                try:
                    self._serve(request)
                except BaseException as exc:  # noqa: BLE001 - hand any failure to the caller
                    request.finish(exc)

    def _drain(self, channel: Channel, budget: int, in_round: bool = False) -> bool:
        """Write what `channel` holds (its kept batch, then `budget` entries); False on failure."""
        if channel.state is State.OPEN:
            channel.mark = QUEUE_LIMIT  # we are on it: log() need not wake us
        queue = channel.queue
        channel.sink.reclaim(queue)  # the native writer's write under way ends first
        rest = ok = False
        try:
            while True:
                if not channel.pending:
                    if channel.log_channel is None:  # a track's drops are counted by its log's
                        channel.notices = channel.take_drops()
                    count = queue.take(min(BATCH, budget)) if budget > 0 else 0
                    if not (count or channel.notices):
                        break
                    budget -= count
                try:  # formatted with the GIL released; numbered again if another process wrote
                    channel.sink.write(channel)
                except OSError as exc:
                    channel.error = exc
                    if channel.reported != exc.errno:
                        channel.reported = exc.errno
                        _report(f"{exc} ({len(queue) + channel.pending} entries kept; will retry)")
                    return False
                channel.error, channel.stalled, channel.reported = None, False, None
                if channel.waiters and len(queue) <= ROOM:
                    # The caller outruns the disk: let it fill half the queue while we
                    # rest, rather than both fighting for the GIL entry by entry.
                    channel.release_waiters()
                    rest = in_round
                    if rest:
                        break
            ok = True
        finally:
            channel.release_waiters()
            if channel.state is State.OPEN:
                channel.mark = QUEUE_LIMIT if rest else WAKE_AT
                if ok and not (queue.pending or channel.notices):
                    channel.lend()
        return True

    def _serve(self, request: _Request) -> None:
        kind, targets = request.kind, request.targets
        if kind is _Kind.REOPEN and targets is not None:
            if all(ch in self.channels for ch in targets):  # their close failed: the files are open
                for ch in targets:
                    ch.arm(self.exiting)
                request.finish()
            else:  # a close is with the syncer: reopen after it
                self._to_syncer(request)
            return
        channels = list(self.channels) if targets is None else []
        for ch in targets or ():
            if ch in self.channels:
                channels.append(ch)
            elif ch.registered:  # its close is with the syncer: this waits for that outcome
                request.channels.append(ch)
            # else: closed already
        if kind is _Kind.CLOSE:
            for ch in channels:
                ch.state, ch.mark = State.CLOSED, 0
        elif kind is _Kind.EXIT:
            for ch in channels:
                if ch.state is State.OPEN:
                    ch.state, ch.mark = State.EXITING, 0
        errors = []
        for ch in channels:
            # What was logged before the request is queued now: one pass writes it. A close
            # goes on until nothing comes (late log() calls see CLOSED and take theirs back).
            while self._drain(ch, len(ch.queue)):
                if kind is not _Kind.CLOSE or not (ch.queue or ch.pending or ch.drops_due):
                    request.channels.append(ch)
                    if kind is _Kind.CLOSE:
                        self.channels.remove(ch)  # written: the syncer fsyncs and closes it
                    break
            else:
                errors.append(ch.kept_error())  # a close that failed: kept, and retried by rounds
        if errors:
            request.error = errors[0]
        if kind is _Kind.WRITE:
            request.finish()
        else:
            self._to_syncer(request)

    def _hand_over_close(self, channel: Channel) -> None:
        """Stop writing `channel`; the syncer fsyncs and closes its file."""
        self.channels.remove(channel)
        request = _Request(_Kind.CLOSE, [channel])
        request.channels.append(channel)
        self._to_syncer(request)

    def _to_syncer(self, request: _Request) -> None:
        self._syncs.append(request)
        # None starts during a fork: fsync here. Started under its lock, the syncer cannot be
        # deciding to stop meanwhile.
        if not self._gate.forking and self._syncer.start():
            self._syncer.wake()
        else:
            self._sync_round()

    def _sync_round(self) -> None:
        while self._syncs:
            request = self._syncs.popleft()
            try:
                self._sync(request)
            except BaseException as exc:  # noqa: BLE001 - hand any failure to the caller
                request.finish(exc)
            else:
                request.finish()

    def _sync(self, request: _Request) -> None:
        kind = request.kind
        if kind is _Kind.REOPEN and request.targets is not None:
            for ch in request.targets:
                if not ch.sink.is_open:
                    ch.sink.open()
                ch.arm(self.exiting)
                ch.registered = True
                if ch not in self.channels:
                    self.channels.append(ch)
            self.wake()
            return
        errors: list[OSError] = []
        channels = request.channels
        durable = self._make_durable(channels, kind is _Kind.CLOSE, errors)  # entries first
        many = len(durable) >= SYNC_ALL_AT
        described = []
        until = request.describe_until
        for ch in durable:
            if until is not None and time.monotonic() > until:
                break  # out of time: the entries are durable, the totals follow at the next flush
            if ch.after_sync is not None:
                try:  # the entries are durable: a failure here is reported, and the close goes on
                    ch.after_sync(not many)
                    described.append(ch.sink.path)
                except OSError as exc:
                    errors.append(exc)
        if many and described:
            try:
                sync_files(described)
            except OSError as exc:
                msg = f"dreamlake could not make the tracks' metadata.json durable: {exc.strerror or exc}"
                errors.append(reworded(exc, msg))
        for ch in durable:
            if kind is _Kind.CLOSE and ch.registered and ch not in self.channels:
                ch.sink.close()
                ch.registered = False
        if errors:
            raise errors[0]

    def _make_durable(self, channels: list[Channel], closing: bool, errors: list[OSError]) -> list[Channel]:
        """fsync each channel's file, or for many sync their filesystems at once; the channels
        whose entries are durable. A failure is added to `errors`, and a closing channel whose
        file failed is kept for the writer to retry (a later close() ends it)."""
        due = [ch for ch in channels if ch.sink.unsynced]
        if len(due) >= SYNC_ALL_AT:
            targets = [ch.sink.writes for ch in due]  # what sync_files makes durable, at least
            try:
                sync_files([ch.sink.path for ch in due])
            except OSError:
                pass  # fsync one by one, below: each failure names its file
            else:
                for ch, target in zip(due, targets, strict=True):
                    ch.sink.synced_by_others(target)
        durable = []
        for ch in channels:
            try:
                ch.sink.fsync()  # nothing to do if synced above
            except OSError as exc:
                errors.append(exc)
                if closing and ch not in self.channels:
                    ch.error = exc  # keep it: the writer retries, a later close() ends it
                    self.channels.append(ch)
                continue
            durable.append(ch)
        return durable


def _report(text: str) -> None:
    """One line on stderr; never raises (stderr may be closed, or busy in this thread)."""
    try:
        print(f"dreamlake: {text}", file=sys.stderr)
    except Exception:  # noqa: BLE001
        pass


_worker = Worker()


def write_all(timeout: float | None = None) -> None:
    """Write what every open session has queued, without fsync (for benchmarks)."""
    _worker.call(_Kind.WRITE, None, timeout)


def write(channels: list[Channel], timeout: float | None = None) -> None:
    """Write what `channels` hold, without fsync: for reading them back."""
    _ask(_Kind.WRITE, channels, timeout)


def flush(channels: list[Channel], timeout: float | None) -> None:
    """Write and fsync what `channels` hold."""
    _ask(_Kind.FLUSH, channels, timeout)


def close(channels: list[Channel], timeout: float | None) -> None:
    """Write, fsync and close `channels`; those whose close fails stay registered, their entries kept."""
    _ask(_Kind.CLOSE, channels, timeout)


def _ask(kind: _Kind, channels: list[Channel], timeout: float | None) -> None:
    registered = [ch for ch in channels if ch.registered]
    if registered:
        _worker.call(kind, registered, timeout)
