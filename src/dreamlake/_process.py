"""Process-wide events every open session must survive: exit, SIGTERM, fork.

Nothing here runs at import. The first session opened installs the hooks, which
call the writer through the small `Hooks` protocol:
- `atexit` (and multiprocessing's exit hook, since its children leave through
  `os._exit`): write and fsync everything, within `EXIT_TIMEOUT` seconds; entries
  logged later, by other exit handlers, are written at once;
- SIGTERM, when its handler is the default or a Python function: write and fsync
  everything, then call that function, or end the process as SIGTERM would have.
  Handlers can only be set from the main thread: a session first opened in another
  thread asks the main thread to install it at its next Python instruction;
- `os.register_at_fork`, once for every module that must act around a fork (see
  `on_fork`): a `Parameters.set()` in progress finishes, then the writer's threads
  stop (so the child is copied from a single-threaded process); after the fork the
  same in reverse, and the child closes the folder descriptors it inherited locked
  and gets locks of its own.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, NamedTuple, Protocol

EXIT_TIMEOUT = 5.0  # seconds the exit and SIGTERM flushes wait for a slow disk
MAIN_THREAD_WAIT = 0.5  # seconds open() in another thread waits for the main thread to set the hook


class Hooks(Protocol):
    def flush_all(self, timeout: float) -> None: ...
    def exit_all(self, timeout: float) -> None: ...
    def before_fork(self) -> None: ...
    def after_fork(self, child: bool) -> None: ...


_hooks: Hooks | None = None
_previous_sigterm: Any = signal.SIG_DFL
_sigterm_installed = False
_ask_lock = threading.Lock()
_asked: threading.Event | None = None  # a request to the main thread is pending; set once it ran
_main_callback: Any = None  # the C callback given to Py_AddPendingCall: made once, never freed


def install(hooks: Hooks) -> None:
    """Install the process hooks once; in the main thread, or asked of it."""
    global _hooks
    if _hooks is None:
        _hooks = hooks
        atexit.register(_at_exit)
        on_fork(
            "writer",
            before=hooks.before_fork,
            after_in_parent=lambda: hooks.after_fork(child=False),
            after_in_child=lambda: hooks.after_fork(child=True),
        )
    _watch_this_multiprocessing_child()
    if not _sigterm_installed:
        if threading.current_thread() is threading.main_thread():
            _install_sigterm()
        else:
            _ask_main_thread(MAIN_THREAD_WAIT)


# -- fork: one os.register_at_fork, the hooks of every module in one order ------------------

FORK_ORDER = ("parameters", "writer", "folders", "sessions", "uploads")
"""Before a fork the hooks run in this order, after it in reverse: a set() in progress
finishes before the writer stops, and the writer starts again before the next set()."""


class _ForkHooks(NamedTuple):
    before: Callable[[], None] | None
    after_in_parent: Callable[[], None] | None
    after_in_child: Callable[[], None] | None


_fork_hooks: dict[str, _ForkHooks] = {}


def on_fork(
    stage: str,
    before: Callable[[], None] | None = None,
    after_in_parent: Callable[[], None] | None = None,
    after_in_child: Callable[[], None] | None = None,
) -> None:
    """Run these around every fork from now on, at `stage`'s place in FORK_ORDER. Called at
    a module's first use, never at import; the first call registers the process's hook."""
    if stage not in FORK_ORDER:
        msg = f"stage must be one of {', '.join(FORK_ORDER)} (got {stage!r})"
        raise ValueError(msg)
    if stage in _fork_hooks:
        return
    if not _fork_hooks:
        os.register_at_fork(
            before=_before_fork, after_in_parent=_after_in_parent, after_in_child=_after_in_child
        )
    _fork_hooks[stage] = _ForkHooks(before, after_in_parent, after_in_child)


def _run_fork_hooks(which: int, stages: Any) -> None:
    for stage in stages:
        hooks = _fork_hooks.get(stage)
        hook = None if hooks is None else hooks[which]
        if hook is None:
            continue
        try:
            hook()
        except Exception as exc:  # noqa: BLE001 - one failing hook must not skip the others
            _say(f"around a fork ({stage}): {exc!r}")


def _before_fork() -> None:
    _watch_multiprocessing_children()
    _run_fork_hooks(0, FORK_ORDER)


def _after_in_parent() -> None:
    _run_fork_hooks(1, reversed(FORK_ORDER))


def _after_in_child() -> None:
    _run_fork_hooks(2, reversed(FORK_ORDER))


_after_exit: list[Callable[[], None]] = []


def after_exit(call: Callable[[], None]) -> None:
    """Run `call` at exit (and before a SIGTERM ends the process), after the writer has
    written everything."""
    _after_exit.append(call)


def _at_exit() -> None:
    if _hooks is not None:
        _quietly("at exit", _hooks.exit_all)
    _run_after_exit()


def _run_after_exit() -> None:
    for call in list(_after_exit):
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - an exit path must not raise
            _say(f"at exit: {exc}")


def _quietly(when: str, call: Any) -> None:
    try:
        call(EXIT_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - an exit path must not raise
        _say(f"{when}: {exc}")


def _say(text: str) -> None:
    try:
        print(f"dreamlake: {text}", file=sys.stderr)
    except Exception:  # noqa: BLE001 - stderr may be closed
        pass


def _install_sigterm() -> None:
    global _previous_sigterm, _sigterm_installed
    if _sigterm_installed:
        return
    _sigterm_installed = True
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN or previous is None:
        return  # ignored on purpose, or set outside Python: leave it alone
    _previous_sigterm = previous
    signal.signal(signal.SIGTERM, _on_sigterm)


terminating = False
"""True while SIGTERM ends the process (the exit hooks then call a run interrupted)."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global terminating
    if _hooks is not None:
        _quietly("on SIGTERM", _hooks.flush_all)
    if signal.getsignal(signal.SIGTERM) is not _on_sigterm:
        return  # called by a handler set on top of ours (Lightning's): it decides what happens next
    terminating = True
    if callable(_previous_sigterm):
        _previous_sigterm(signum, frame)  # a handler that ends the process runs the exit hooks
        terminating = False  # it returned: the process goes on
        return
    _run_after_exit()  # the process ends now, without atexit: a preempted machine ships first
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)  # end as SIGTERM would have


def _ask_main_thread(wait: float) -> None:
    """Have the main thread install the SIGTERM hook at its next Python instruction
    (Py_AddPendingCall), and wait up to `wait` seconds for it.

    A main thread blocked in C (a join without a timeout) runs it only once it wakes:
    one request is made, and only the thread that made it waits. The C callback is
    made once and kept: the main thread may call it long after."""
    global _asked, _main_callback
    with _ask_lock:
        if _asked is not None:
            return  # asked already
        asked = _asked = threading.Event()
        try:
            import ctypes

            if _main_callback is None:
                _main_callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)(_run_in_main_thread)
            add = ctypes.pythonapi.Py_AddPendingCall
            add.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
            if add(ctypes.cast(_main_callback, ctypes.c_void_p), None) != 0:
                raise RuntimeError("the pending-call queue is full")
        except Exception:  # noqa: BLE001 - no ctypes here: the session simply has no SIGTERM hook
            _asked = None
            return
    asked.wait(wait)


def _run_in_main_thread(_: object) -> int:
    global _asked
    try:
        _install_sigterm()
    except Exception:  # noqa: BLE001 - nothing to report to from here
        pass
    asked, _asked = _asked, None
    if asked is not None:
        asked.set()
    return 0


_finalized_pid = 0


def _watch_this_multiprocessing_child() -> None:
    """A session opened inside a multiprocessing child: flush it at that child's exit."""
    global _finalized_pid
    mp = sys.modules.get("multiprocessing")
    util = sys.modules.get("multiprocessing.util")
    if mp is None or util is None or _finalized_pid == os.getpid():
        return
    if mp.parent_process() is not None:
        _finalized_pid = os.getpid()
        util.Finalize(None, _at_exit, exitpriority=100)


class _Token:
    """multiprocessing keeps after-fork callbacks in a weak mapping: this keeps ours alive."""


_token = _Token()
_watching = False


def _watch_multiprocessing_children() -> None:
    global _watching
    util = sys.modules.get("multiprocessing.util")
    if util is not None and not _watching:
        _watching = True
        # Runs in each child multiprocessing starts, after it has cleared the
        # finalizers inherited from the parent; its exit runs finalizers, not atexit.
        util.register_after_fork(_token, lambda _: util.Finalize(None, _at_exit, exitpriority=100))
