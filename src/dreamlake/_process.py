"""Process-wide events every open session must survive: exit, SIGTERM, fork.

Nothing here runs at import. The first writer installs the hooks:
- `atexit`: write what is queued, within `EXIT_TIMEOUT` seconds, and keep
  writing at once whatever is logged later (from other exit handlers);
- SIGTERM, when its handler is the default or a Python function: flush, then
  call that function, or end the process as SIGTERM would have;
- `os.register_at_fork`: no slice is half written when the process is copied;
  the child drops the parent's queue (the parent writes it) and reopens the file;
- children started by `multiprocessing` leave through `os._exit`, skipping
  atexit: they flush from multiprocessing's own exit hook.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._writer import Writer

EXIT_TIMEOUT = 5.0  # seconds the exit and SIGTERM flushes wait for a slow disk, per session

_live: set[Writer] = set()
_installed = False
exiting = False  # our exit hook has run: writers opened now write each entry at once
_previous_sigterm: Any = signal.SIG_DFL


def track(writer: Writer) -> None:
    _live.add(writer)
    _install()
    _watch_this_multiprocessing_child()


def untrack(writer: Writer) -> None:
    _live.discard(writer)


def _install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(_at_exit)
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
    )
    _install_sigterm()


def _at_exit() -> None:
    global exiting
    exiting = True
    for writer in list(_live):
        writer.exit_flush(EXIT_TIMEOUT)


def _install_sigterm() -> None:
    global _previous_sigterm
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN or previous is None:
        return  # ignored on purpose, or set outside Python: leave it alone
    _previous_sigterm = previous
    signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    for writer in list(_live):
        try:
            writer.flush(EXIT_TIMEOUT)
        except Exception as exc:
            print(f"dreamlake: on SIGTERM: {exc}", file=sys.stderr)
    if callable(_previous_sigterm):
        _previous_sigterm(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)  # end as SIGTERM would have


def _before_fork() -> None:
    _watch_multiprocessing_children()
    for writer in list(_live):
        writer.before_fork()


def _after_fork_in_parent() -> None:
    for writer in list(_live):
        writer.after_fork_in_parent()


def _after_fork_in_child() -> None:
    for writer in list(_live):
        writer.after_fork_in_child()


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
    if util is None or _watching:
        return
    _watching = True
    # Runs in each child multiprocessing starts, after it has cleared the
    # finalizers inherited from the parent; its exit runs finalizers, not atexit.
    util.register_after_fork(_token, lambda _: util.Finalize(None, _at_exit, exitpriority=100))
