"""Following a JSON Lines file as it grows (`tail -F`): one rule for logs, tracks and plots.

At each poll the file is opened, read from where the last poll stopped, and closed: a
workspace may hold more files than a process may open. Before the new bytes are read,
the file is checked to be the one read so far: the same device and inode, and the same
first line (it holds the first record's time, so a file written anew differs there).
- Another file, or another first line: it is read afresh, from its start.
- Shorter than where the last poll stopped, with the same first line: the writer took
  back a batch it could not write whole (it truncates the file to where the batch
  began); reading resumes at the new size, and nothing already read is read again.
"""

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._records import _CHUNK, Parse, WholeLines


class Follower:
    """Where reading `path` stopped and what its first line was; no file is kept open between
    polls. `on_start()` is called whenever reading starts at the file's first byte (the first
    poll, and each time the file is read afresh). With `reread_cut`, a file cut short is read
    afresh as well: for a reader that shows what the file holds, rather than a stream of what
    it held."""

    def __init__(
        self, path: Path, on_start: Callable[[], None] | None = None, *, reread_cut: bool = False
    ) -> None:
        self.path, self.on_start, self.reread_cut = path, on_start, reread_cut
        self.identity: tuple[int, int] | None = None
        self.first = b""  # the file's first line as read so far, its newline included once read
        self.lines: WholeLines | None = None  # None until the file is read from its start
        self.position = 0  # where the last poll stopped reading

    def poll(self) -> Iterator[bytes]:
        """The runs of whole lines written since the last poll (see `WholeLines`); none while
        there is no file at the path."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return
        with f:
            fd = f.fileno()
            now = os.fstat(fd)
            identity = (now.st_dev, now.st_ino)
            if identity != self.identity or not _starts_with(fd, self.first):
                self._start(identity)  # another file at this path, or this one written anew
            elif now.st_size < self.position:
                if self.reread_cut:
                    self._start(identity)
                else:
                    self._cut(now.st_size)
            if not self.first.endswith(b"\n"):  # before the new bytes: what they will be checked by
                self.first += _first_line(fd, len(self.first), now.st_size)
            if self.lines is None:
                self.lines = WholeLines(f)
            lines = self.lines
            lines.file = f
            f.seek(self.position)
            yield from lines
            if _identity(self.path) not in (identity, None):  # replaced while read: what it got last
                yield from lines
            self.position = f.tell()

    def _start(self, identity: tuple[int, int]) -> None:
        self.identity, self.first, self.position, self.lines = identity, b"", 0, None
        if self.on_start is not None:
            self.on_start()

    def _cut(self, size: int) -> None:
        """The file now ends at `size`, before where reading stopped: go on from there."""
        if self.lines is not None:
            tail = self.lines.tail
            begins = self.position - len(tail)  # where the partial last line begins
            self.lines.tail = tail[: max(0, size - begins)]
        self.position = size


def follow(
    path: Path,
    parse: Parse,
    interval: float = 0.2,
    stop: Callable[[], bool] | None = None,
) -> Iterator[dict[str, Any]]:
    """`follow_logs` for any JSON Lines file: `parse(text, bad)` gives its records."""
    bad = [0]  # lines that are not records are skipped, as in iter_logs
    follower = Follower(path)
    while True:
        for text in follower.poll():
            yield from parse(text, bad)
        if stop is not None and stop():
            return
        time.sleep(interval)  # ok: following polls the file


def _starts_with(fd: int, head: bytes) -> bool:
    """Whether the file's first bytes are `head`, read a chunk at a time."""
    for at in range(0, len(head), _CHUNK):
        piece = head[at : at + _CHUNK]
        if os.pread(fd, len(piece), at) != piece:
            return False
    return True


def _first_line(fd: int, at: int, stop: int) -> bytes:
    """The rest of the file's first line from byte `at` (the bytes before hold no newline), its
    newline included; or up to byte `stop` if no newline comes before."""
    pieces: list[bytes] = []
    while at < stop:
        piece = os.pread(fd, min(_CHUNK, stop - at), at)
        if not piece:
            break
        newline = piece.find(b"\n")
        if newline >= 0:
            pieces.append(piece[: newline + 1])
            break
        pieces.append(piece)
        at += len(piece)
    return b"".join(pieces)


def _identity(path: Path) -> tuple[int, int] | None:
    """Device and inode of the file at `path` now, None while there is none."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return None
    return now.st_dev, now.st_ino
