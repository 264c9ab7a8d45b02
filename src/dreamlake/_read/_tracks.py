"""Reading tracks back: a session's `tracks/NAME/data.jsonl` files, their points and names."""

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from .._sink import last_record
from ._follow import follow
from ._records import Records, WholeLines, all_records, each_record, parse_run

TRACKS = "tracks"
DATA_FILE = "data.jsonl"
META_FILE = "metadata.json"
_SCAN = 1 << 16  # bytes points_between() goes through line by line, once bisecting has narrowed the file


def check_name(name: object) -> str:
    """`name` if it names a track: folders joined by `/`, each a plain folder name."""
    if not isinstance(name, str):
        msg = f"a track name must be a str, got {type(name).__name__}"
        raise TypeError(msg)
    for part in name.split("/"):
        if (
            part in ("", ".", "..", DATA_FILE, META_FILE)
            or part.startswith(f".{META_FILE}.")  # our temporary files
            or "\0" in part
            or "\\" in part
            or len(part.encode("utf-8", "surrogatepass")) > 255
        ):
            msg = (
                f"a track name is folder names joined by '/', each not empty, not '.' or '..', "
                f"not {DATA_FILE!r}, {META_FILE!r} or '.{META_FILE}.*', at most 255 bytes, "
                f"without '\\' or NUL; got {name!r}"
            )
            raise ValueError(msg)
    return name


def track_points(text: bytes, bad: list[int]) -> list[dict[str, Any]]:
    """The points among the lines of `text`; `bad[0]` counts the lines that are not points."""
    points = parse_run(text, lambda values: _INT.issuperset([type(value["index"]) for value in values]))
    if points is not None:
        return points
    points = []
    for line in text.split(b"\n"):
        try:
            point = orjson.loads(line)
            numbered = type(point["index"]) is int
        except (orjson.JSONDecodeError, TypeError, KeyError, IndexError):
            numbered = False
        if numbered:
            points.append(point)
        else:
            bad[0] += 1
    return points


_INT = frozenset({int})


def track_file(path: str | os.PathLike[str], name: str) -> Path:
    """The data.jsonl of track `name` in session folder `path`; FileNotFoundError naming what is missing."""
    folder = Path(path)
    check_name(name)
    if not folder.is_dir():
        msg = f"no session folder at {folder}"
        raise FileNotFoundError(msg)
    file = folder / TRACKS / name / DATA_FILE
    if not file.is_file():
        known = ", ".join(track_names(folder)) or "none"
        msg = f"{folder} has no track {name!r} (tracks: {known})"
        raise FileNotFoundError(msg)
    return file


def iter_track(
    path: str | os.PathLike[str], name: str, skipped: list[int] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the points of a track one by one, in file order; lines that are not points are
    skipped (counted in `skipped[0]` when given), a last line without its newline too."""
    yield from each_record(track_file(path, name), track_points, skipped)


def follow_track(
    path: str | os.PathLike[str], name: str, interval: float = 0.2, stop: Callable[[], bool] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield every point of the track, then each new one once its line is complete (see follow_logs)."""
    return follow(track_file(path, name), track_points, interval, stop)


def read_track(path: str | os.PathLike[str], name: str) -> Records:
    """All points of track `name` of the session folder `path`, in file order: each a dict of
    index, data and createdAt. Torn lines are skipped; `result.skipped` says how many. An s3://
    URL reads it from the bucket: every stream's points merged by createdAt, each with its `stream`."""
    if isinstance(path, str) and path.startswith("s3://"):
        from ._bucket import read_bucket_track

        return read_bucket_track(path, name)
    return all_records(lambda skipped: iter_track(path, name, skipped))


def track_names(session: Path) -> list[str]:
    """The tracks of a session folder, by name."""
    root = session / TRACKS
    if not os.path.isdir(root):
        return []
    names = []
    for folder, _, files in os.walk(root, onerror=_raise):  # a folder it cannot read: said, not skipped
        if DATA_FILE in files and os.path.isfile(os.path.join(folder, DATA_FILE)):
            names.append(Path(folder).relative_to(root).as_posix())
    return sorted(names)


def _raise(error: OSError) -> None:
    raise error


def points_between(file: Path, start: int, stop: int) -> list[dict[str, Any]]:
    """The points of `file` whose index is at least `start` and less than `stop`, in file order."""
    data: list[dict[str, Any]] = []
    try:
        f = open(file, "rb")
    except FileNotFoundError:
        return data
    with f:
        f.seek(_offset_before(f.fileno(), start))
        for point in itertools.chain.from_iterable(track_points(text, [0]) for text in WholeLines(f)):
            index = point["index"]
            if index >= stop:
                break
            if index >= start:
                data.append(point)
    return data


def _offset_before(fd: int, target: int) -> int:
    """A line start in the file before every point whose index is `target` or more: found by
    bisecting the bytes, as indices grow in file order. 0 when anything looks odd."""
    low, high = 0, os.fstat(fd).st_size
    while high - low > _SCAN:
        middle = (low + high) // 2
        block = os.pread(fd, _SCAN, middle)
        begin = block.find(b"\n") + 1
        end = block.find(b"\n", begin)
        if begin == 0 or end < 0:
            return low  # a line longer than the window: read from `low`
        try:
            index = orjson.loads(block[begin:end])["index"]
        except (orjson.JSONDecodeError, TypeError, KeyError, IndexError):
            return low  # a torn or foreign line: read from `low`
        if type(index) is not int:
            return low
        if index < target:
            low = middle + begin
        else:
            high = middle
    return low


def count_points(file: Path) -> int:
    """Points in a track's file: the last one's index + 1 (indices are contiguous in file order)."""
    last = last_point(file)
    return 0 if last is None else int(last["index"]) + 1


def last_point(file: Path) -> dict[str, Any] | None:
    """The last whole point of a track's file, None if it has none (or is missing)."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        return last_record(fd, os.fstat(fd).st_size, 0, "index")
    finally:
        os.close(fd)


def load_metadata(file: Path) -> dict[str, Any]:
    """A track's metadata.json, or {} when missing or not an object (the writer rewrites it)."""
    try:
        loaded = orjson.loads(file.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return loaded if isinstance(loaded, dict) else {}
