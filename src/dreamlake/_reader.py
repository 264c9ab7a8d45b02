"""Reading records back: whole lines only, corrupt ones skipped and counted."""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ._levels import RANK, normalize_level

LOG_FILE = "logs.jsonl"
_CHUNK = 1 << 20


class Records(list[dict[str, Any]]):
    """The records of a log file, in file order; `skipped` counts lines that were not records."""

    skipped: int = 0


def log_file_of(path: str | os.PathLike[str]) -> Path:
    """`path` itself if it is a file, else the logs.jsonl of the session folder it names."""
    path = Path(path)
    if path.is_dir():
        path = path / LOG_FILE
    if not path.is_file():
        msg = f"{path} is not a dreamlake log: give a session folder or its {LOG_FILE}"
        raise FileNotFoundError(msg)
    return path


def iter_logs(
    path: str | os.PathLike[str], level: str | None = None, skipped: list[int] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield records one by one, reading the file in chunks: for files too big to load.

    A line that is not a JSON object (a torn write, a crash) is skipped; when
    `skipped` is given, its first item counts them. A last line without its
    newline is still being written, or was torn by a crash, and is not yielded.
    """
    floor = RANK[normalize_level(level)] if level is not None else 0
    rank = RANK
    loads = orjson.loads
    bad = 0
    with open(log_file_of(path), "rb") as f:
        tail = b""
        while chunk := f.read(_CHUNK):
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            for line in lines:
                try:
                    record = loads(line)
                    keep = rank.get(record["level"], 0) >= floor
                except (orjson.JSONDecodeError, TypeError, KeyError):
                    bad += 1
                    continue
                if keep:
                    yield record
    if tail:
        bad += 1
    if skipped is not None:
        skipped[:] = [bad]


def read_logs(path: str | os.PathLike[str], level: str | None = None) -> Records:
    """All records of a session folder or logs.jsonl, in file order.

    `level` keeps that level and the more severe ones. Lines that are not
    records are skipped; `result.skipped` says how many.
    """
    counter = [0]
    records = Records(iter_logs(path, level, counter))
    records.skipped = counter[0]
    return records
