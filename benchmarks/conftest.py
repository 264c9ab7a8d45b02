from collections.abc import Iterator
from pathlib import Path

import pytest

from dreamlake import Session


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    with Session(name="bench", workspace="bench", local_path=tmp_path) as s:
        yield s


def read_records_count(path: Path) -> int:
    """Count records, checking each line is whole JSON: a benchmark must write correct output."""
    import orjson

    lines = Path(path).read_bytes().split(b"\n")
    assert lines[-1] == b""
    for line in lines[:-1]:
        orjson.loads(line)
    return len(lines) - 1
