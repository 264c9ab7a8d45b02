"""Stress scenarios run in child interpreters with a timeout, so a hang fails the test."""

import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

TIMEOUT_SCALE = float(os.environ.get("DL_TIMEOUT_SCALE", "1"))

PRELUDE = """
import os, sys, time, signal
from dreamlake import Session
def session(**options):
    return Session(name="run", workspace="ws", local_path=os.environ["DL_ROOT"], **options)
"""


class Child:
    """A script written to a file (spawned processes re-import it) and run with a timeout."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "data"
        self.log_file = self.root / "ws" / "run" / "logs.jsonl"
        self.tmp_path = tmp_path

    def script(self, body: str) -> Path:
        path = self.tmp_path / "scenario.py"
        path.write_text(PRELUDE + textwrap.dedent(body))
        return path

    def run(self, body: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run the scenario; a hang fails it after `timeout` seconds, times DL_TIMEOUT_SCALE (a
        sanitizer build runs the interpreter several times slower)."""
        return subprocess.run(
            [sys.executable, str(self.script(body))],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout * TIMEOUT_SCALE,
            **kwargs,
        )

    @contextlib.contextmanager
    def start(self, body: str) -> Iterator[subprocess.Popen[str]]:
        """A running child; whatever happens, it is killed and reaped at the end."""
        proc = subprocess.Popen(
            [sys.executable, str(self.script(body))],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with proc:
            try:
                yield proc
            finally:
                proc.kill()
                proc.communicate(timeout=30)

    def env(self) -> dict[str, str]:
        import os

        return {**os.environ, "DL_ROOT": str(self.root)}  # default warnings: a fork warning shows

    def records(self) -> list[dict[str, Any]]:
        """Every line must be whole, valid JSON: a torn or interleaved line fails here."""
        data = self.log_file.read_bytes()
        assert data.endswith(b"\n")
        return [orjson.loads(line) for line in data.split(b"\n")[:-1]]


@pytest.fixture
def child(tmp_path: Path) -> Child:
    return Child(tmp_path)


def assert_numbered_in_file_order(records: list[dict[str, Any]]) -> None:
    assert [r["sequenceNumber"] for r in records] == list(range(len(records)))
