"""A `dreamlake ... --follow` command in a subprocess, killed if it hangs."""

import contextlib
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def following(
    *args: str, python: list[str] | None = None, timeout: float = 60
) -> Iterator["subprocess.Popen[str]"]:
    """`python -m dreamlake *args` (or `python *python *args`), its stdout and stderr piped; a hang
    fails the test instead of the suite."""
    command = [sys.executable, *(python or ["-m", "dreamlake"]), *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    with process:
        try:
            yield process
        finally:
            watchdog.cancel()
            process.kill()


def interrupt(process: "subprocess.Popen[str]") -> str:
    """Ctrl-C: the command must end quietly, with status 130. Returns its stderr."""
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    assert process.stderr is not None
    return process.stderr.read()
