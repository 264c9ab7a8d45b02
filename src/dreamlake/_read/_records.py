"""Reading records back: whole lines only, corrupt ones skipped and counted."""

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from .._levels import RANK, normalize_level

LOG_FILE = "logs.jsonl"
_CHUNK = 1 << 20
_RUN = 16 << 10  # bytes of lines parsed at once: few enough objects alive that the collector idles


class Records(list[dict[str, Any]]):
    """The records of a log file (or points of a track), in file order; `skipped` counts lines
    that were not records. `to_pandas()` and `to_polars()` make a DataFrame of them."""

    skipped: int = 0

    def to_pandas(self) -> Any:
        """A pandas DataFrame: a row each, metadata (or a point's data) spread into columns,
        times as UTC datetimes, the stored "NaN"/"Infinity" strings floats again."""
        from ._frames import to_pandas

        return to_pandas(self)

    def to_polars(self) -> Any:
        """A Polars DataFrame of the same columns as `to_pandas()`."""
        from ._frames import to_polars

        return to_polars(self)


def log_file_of(path: str | os.PathLike[str]) -> Path:
    """`path` itself if it is a file, else the logs.jsonl of the session folder it names."""
    path = Path(path)
    if not path.exists():
        msg = f"{path} does not exist: give a session folder or its {LOG_FILE}"
        raise FileNotFoundError(msg)
    if path.is_dir():
        if not (path / LOG_FILE).exists():
            msg = f"{path} has no {LOG_FILE}: give a session folder that has logs, or its {LOG_FILE}"
            raise FileNotFoundError(msg)
        path = path / LOG_FILE
    if not path.is_file():
        msg = f"{path} is not a dreamlake log: give a session folder or its {LOG_FILE}"
        raise FileNotFoundError(msg)
    return path


class WholeLines:
    """The complete lines of a binary file, read in chunks; a last line without its newline waits.

    Iterating yields runs of whole lines, each run one bytes object of about
    `_RUN` bytes, its lines joined by newlines: parsed as one JSON array, a run
    makes no bytes object a line. Each pass (`for text in lines`) reads on to the
    current end of the file, so iterating again after more was written continues
    where the last pass stopped, and completes the line that was partial then
    (finish a pass before starting the next). `tail` holds the partial last line.
    With `end`, a pass stops at the first line that starts at or after that offset.

    Each byte is searched for a newline once and copied a few times, however long
    its line: the pieces of a line not yet complete are kept apart and joined once,
    when its newline comes, so a line of 1 GB costs what 1 GB of short lines costs.
    """

    def __init__(self, file: BinaryIO, end: int | None = None) -> None:
        self.file = file
        self.end = end
        self._pieces: list[bytes] = []  # the partial last line, as read: no newline in any

    @property
    def tail(self) -> bytes:
        """The last line read so far without its newline."""
        return _joined(self._pieces)

    @tail.setter
    def tail(self, value: bytes) -> None:
        self._pieces = [value] if value else []

    def __iter__(self) -> Iterator[bytes]:
        read, end, file = self.file.read, self.end, self.file
        while chunk := read(_CHUNK if end is None else max(0, min(_CHUNK, end - file.tell()))):
            last = chunk.rfind(b"\n")
            if last < 0:
                self._pieces.append(chunk)  # the line goes on: searched once, joined later
                continue
            if self._pieces:
                last += sum(map(len, self._pieces))
                text = _joined([*self._pieces, chunk])
            else:
                text = chunk
            self._pieces = [text[last + 1 :]] if last + 1 < len(text) else []
            start = 0
            while start <= last:
                cut = text.find(b"\n", start + _RUN, last)
                if cut < 0:
                    cut = last
                yield text[start:cut]
                start = cut + 1
        if end is not None and self._pieces:  # the line that crosses `end` belongs to this part
            self._pieces.append(file.readline())  # a C loop over buffers: linear in the line
            if self._pieces[-1].endswith(b"\n"):
                line = _joined(self._pieces)
                self._pieces = []
                yield line[:-1]


def _joined(pieces: list[bytes]) -> bytes:
    """The pieces of a line as one bytes object: one copy."""
    return b"".join(pieces)


def parse_run(text: bytes, keep: Callable[[list[Any]], bool]) -> list[Any] | None:
    """The values of the lines in `text` (a run of `WholeLines`), parsed in one call, if each line
    is one value and `keep(values)` approves them all; else None (sort the lines one by one).

    Lines are joined only where one ends with `}` and the next starts with `{`; a run with any
    other line break (a torn line, a trailing comma, a blank line) is sorted line by line."""
    joined = text.replace(b"}\n{", b"},{")
    if b"\n" in joined:
        return None
    try:
        values: list[Any] = orjson.loads(b"[" + joined + b"]")
        if len(values) == text.count(b"\n") + 1 and keep(values):
            return values
    except (orjson.JSONDecodeError, TypeError, KeyError, IndexError):
        pass
    return None


def log_records(text: bytes, bad: list[int], floor: int = 0) -> list[dict[str, Any]]:
    """The records among the lines of `text` whose level ranks at least `floor`; `bad[0]` counts
    the lines that are not records."""
    rank = RANK
    records = parse_run(text, lambda values: _STR.issuperset([type(value["level"]) for value in values]))
    if records is not None:
        return [record for record in records if rank.get(record["level"], 0) >= floor] if floor else records
    records = []
    for line in text.split(b"\n"):
        try:
            record = orjson.loads(line)
            keep = rank.get(record["level"], 0) >= floor
        except (orjson.JSONDecodeError, TypeError, KeyError):
            bad[0] += 1
            continue
        if keep:
            records.append(record)
    return records


_STR = frozenset({str})


def iter_logs(
    path: str | os.PathLike[str], level: str | None = None, skipped: list[int] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield records one by one, reading the file in chunks: for files too big to load.

    A line that is not a JSON object (a torn write, a crash) is skipped; when
    `skipped` is given, its first item counts them. A last line without its
    newline is still being written, or was torn by a crash, and is not yielded.
    """
    if isinstance(path, str) and path.startswith("s3://"):
        from ._bucket import read_bucket_logs

        records = read_bucket_logs(path, level)
        if skipped is not None:
            skipped[:] = [records.skipped]
        yield from records
        return
    floor = RANK[normalize_level(level)] if level is not None else 0
    yield from each_record(log_file_of(path), lambda text, bad: log_records(text, bad, floor), skipped)


Parse = Callable[[bytes, list[int]], list[dict[str, Any]]]
"""The records among a run of whole lines, counting in `bad[0]` the lines that are not records."""


def each_batch(
    file: Path,
    parse: Parse,
    skipped: list[int] | None,
    start: int = 0,
    end: int | None = None,
    *,
    unfinished: bool = True,
) -> Iterator[list[dict[str, Any]]]:
    """The records `parse` finds in the whole lines of `file`, a batch at a time. Lines that are
    not records, and (if `unfinished`) a last line without its newline, are counted in
    `skipped[0]` when given. With `start` and `end`, only the lines that start in that byte
    range: parts of one file read side by side hold each line once."""
    bad = [0]
    with open(file, "rb") as f:
        if start:
            f.seek(start - 1)
            f.readline()  # the rest of the line before `start`: the previous part's
        lines = WholeLines(f, end)
        for text in lines:
            if records := parse(text, bad):
                yield records
    if lines.tail and unfinished:
        bad[0] += 1
    if skipped is not None:
        skipped[:] = bad


def each_record(file: Path, parse: Parse, skipped: list[int] | None) -> Iterator[dict[str, Any]]:
    """The records of `each_batch`, one by one."""
    for batch in each_batch(file, parse, skipped):
        yield from batch


def all_records(records: Callable[[list[int]], Iterable[dict[str, Any]]]) -> Records:
    """`records(skipped)` as a Records list, with `.skipped` set from it."""
    counter = [0]
    out = Records(records(counter))
    out.skipped = counter[0]
    return out


def follow_logs(
    path: str | os.PathLike[str], interval: float = 0.2, stop: Callable[[], bool] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield every record of the log, then each new one once its line is complete: `tail -F`.

    Whole lines only, so a record half-written at any moment is yielded once,
    when its newline arrives. When there is nothing new, poll every `interval`
    seconds, the file closed in between. A different file at the path (the
    writer starts a new one when the session folder was deleted), or one whose
    first line changed (rewritten, truncated and written again), is read from its
    start, after what the old file got last; a file cut short with the same first
    line (the writer took back a batch) is read on from where it now ends (see
    `_follow`). Ends when `stop()`, asked on each idle poll, returns True;
    without `stop`, runs until interrupted.
    """
    from ._follow import follow  # follows with this module's reader

    return follow(log_file_of(path), log_records, interval, stop)


def read_logs(path: str | os.PathLike[str], level: str | None = None) -> Records:
    """All records of a session folder or logs.jsonl, in file order.

    `level` keeps that level and the more severe ones. Lines that are not
    records are skipped; `result.skipped` says how many. An s3:// URL reads the session from
    the bucket: every stream's records merged by timestamp, each with its `stream` (and `rank`).
    """
    if isinstance(path, str) and path.startswith("s3://"):
        from ._bucket import read_bucket_logs

        return read_bucket_logs(path, level)
    return all_records(lambda skipped: iter_logs(path, level, skipped))
