import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from dreamlake import Session, _batcher

KEYS = ["timestamp", "level", "message", "metadata", "sequenceNumber"]


def read_records(path: Path) -> list[dict[str, Any]]:
    """Parse a logs.jsonl strictly: every line whole, valid JSON, keys in contract order."""
    data = Path(path).read_bytes()
    assert data == b"" or data.endswith(b"\n"), "file must end with a newline"
    records = [orjson.loads(line) for line in data.split(b"\n")[:-1]]
    for record in records:
        assert list(record) == KEYS
    return records


def python_writer_only(monkeypatch: pytest.MonkeyPatch, *sessions: Session) -> None:
    """For a fault put into Python's own os.write: lend nothing to the native writer (which
    does not call it), and take back what `sessions` lent (a flush reclaims)."""
    monkeypatch.setattr(_batcher, "NATIVE", False)
    for s in sessions:
        s.flush()


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> bool:
    """Poll `condition` for behaviour that has no flush to wait on (the thread's own rounds)."""
    ready = threading.Event()
    for _ in range(int(timeout / 0.025)):
        if condition():
            return True
        ready.wait(0.025)
    return condition()


@pytest.fixture
def session(tmp_path: Path) -> Any:
    with Session(name="run", workspace="ws", local_path=tmp_path) as s:
        yield s


@pytest.fixture
def run_python(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run a script in a fresh interpreter with a timeout, so a hang fails instead of freezing."""

    def run(
        code: str, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )

    return run


@pytest.fixture(scope="session")
def endpoint() -> Iterator[str]:
    """One S3-compatible server (SeaweedFS) on localhost for the whole run, started at first use."""
    from . import s3server

    with s3server.seaweedfs() as url:
        yield url


@pytest.fixture
def aws(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The AWS variables of the test server, in this process's environment and returned whole
    for children."""
    from . import s3server

    env = s3server.environment(endpoint)
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        monkeypatch.setenv(name, env[name])
    return env


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A prefix of the test's own in the shared bucket."""
    from . import s3server

    return f"s3://{s3server.BUCKET}/{request.node.name.replace('[', '-').replace(']', '')}"
