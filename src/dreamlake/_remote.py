"""Sessions in an S3-compatible bucket: the local files, shipped as chunks of whole records.

Under `{remote}/{workspace}/{session}/` a session's log is `logs/{stream}/{first:012d}.jsonl`,
each chunk exactly the bytes of a run of whole lines of the local file, `first` the sequence
number of its first record; a track's points are `tracks/{name}/{stream}/{first:012d}.jsonl`
(numbered by "index"), its description `tracks/{name}/metadata.json`; the parameters
`parameters.json`; who wrote a stream `streams/{stream}.json`. A stream is one local file's
lineage: one host and one local session folder.

Exactly once: a chunk's key comes from the numbers its records already carry, and it is
written create-only. The listing says where a stream stands, so a sync after a crash goes on
after the last chunk the bucket holds. A key that exists already is compared with the local
bytes at its place: the same (a retry whose answer was lost) counts as done, anything else is
a conflict, reported and never overwritten. JSON objects (parameters, descriptions) are
merged key by key with compare-and-swap on the object's ETag.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

if TYPE_CHECKING:
    from obstore.store import S3Config


class Numbering:
    """How a kind of line carries its number: `pattern` matches a whole line (no newline), its
    first group the number. A line that does not match is no record (a torn line ended later,
    foreign text): it must begin and end as records do."""

    def __init__(self, pattern: bytes) -> None:
        self._line = re.compile(pattern)
        self._lines = re.compile(rb"^" + pattern + rb"$", re.M)

    def __call__(self, data: Any, pos: int, end: int) -> int | None:
        """The number of the record on the line [pos, end) of `data`, or None."""
        found = self._line.fullmatch(data, pos, end)
        return int(found.group(1)) if found else None

    def records(self, text: bytes) -> tuple[int, int] | None:
        """(first number, count) of the records among the whole lines of `text`; None if none."""
        found = self._lines.findall(text)
        return (int(found[0]), len(found)) if found else None


CHUNK_BYTES = 8 << 20  # chunks end at the first line end at or after each multiple of this offset
_BLOCK = 1 << 20  # bytes read at a time
_IN_FLIGHT = 4  # chunks uploaded at once
STREAM_EVERY = 30.0  # seconds between updates of a stream's lastUpload while it ships
_NAME = re.compile(r"^[^/\x00-\x1f\x7f]+$")  # S3 keys may hold control characters; clients refuse them
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")
log_number = Numbering(rb'\{"timestamp":"[^\n]*,"sequenceNumber":(\d+)\}')
point_number = Numbering(rb'\{"index":(\d+),[^\n]*\}')


class RemoteError(Exception):
    """The bucket refused, or holds something that is not ours where ours should be."""


@dataclasses.dataclass(frozen=True)
class Remote:
    """An `s3://bucket/prefix` URL, checked."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Remote:
        """Check `url`; the errors never repeat it (it may hold a secret)."""
        if not isinstance(url, str):
            msg = f"remote must be an s3://bucket/prefix URL (a str), got {type(url).__name__}"
            raise TypeError(msg)
        parts = urlsplit(url)
        if "@" in parts.netloc or ":" in parts.netloc:
            msg = (
                "remote must not hold credentials or a port (s3://key:secret@...): set AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL instead"
            )
            raise ValueError(msg)
        if parts.scheme != "s3":
            msg = f"remote must be an s3://bucket/prefix URL, not a {parts.scheme or 'schemeless'} one"
            raise ValueError(msg)
        if parts.query or parts.fragment:
            msg = "remote must be an s3://bucket/prefix URL without ?query or #fragment"
            raise ValueError(msg)
        if not _BUCKET.match(parts.netloc):
            msg = "remote's bucket must be a bucket name: letters, digits, '.', '-' and '_'"
            raise ValueError(msg)
        prefix = parts.path.strip("/")
        if prefix and any(piece in {"", ".", ".."} or "\x00" in piece for piece in prefix.split("/")):
            msg = "remote's prefix must not hold empty, '.' or '..' parts"
            raise ValueError(msg)
        return cls(parts.netloc, prefix)

    def key(self, *parts: str) -> str:
        """The object key of `parts` under the prefix; each part a plain name (no '/', '..')."""
        for part in parts:
            for piece in part.split("/"):
                if piece in {"", ".", ".."} or not _NAME.match(piece):
                    msg = (
                        f"{part!r} cannot name an object under {self}: no empty, '.' or '..' parts, "
                        "no control characters"
                    )
                    raise ValueError(msg)
        return "/".join([self.prefix, *parts] if self.prefix else parts)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def client_installed() -> None:
    """ImportError, saying what to install, when the S3 client is not."""
    try:
        import obstore.store  # noqa: F401
    except ImportError:
        msg = "an s3:// remote needs the S3 client: pip install 'dreamlake[s3]'"
        raise ImportError(msg) from None


_runtime_pid = 0  # the process whose client first ran: its async runtime's threads live there


def runtime_forked() -> bool:
    """Whether this process is a fork of one that used the client: its runtime's threads are
    gone, and a request here would hang."""
    return _runtime_pid != 0 and _runtime_pid != os.getpid()


def open_store(remote: Remote) -> Any:
    """An obstore S3Store for `remote`, configured from the standard AWS variables; plain HTTP
    only to an endpoint on localhost or with AWS_ALLOW_HTTP=true. Requests give up after a few
    quick retries: the callers retry with backoff of their own."""
    global _runtime_pid
    client_installed()
    from obstore.store import S3Store

    if not _runtime_pid:
        _runtime_pid = os.getpid()

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    host = urlsplit(endpoint).hostname or ""
    local = host in {"localhost", "127.0.0.1", "::1"}
    allow_http = local or os.environ.get("AWS_ALLOW_HTTP", "").lower() == "true"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config: S3Config = {"region": region}
    if endpoint:
        config["endpoint"] = endpoint
    return S3Store(
        remote.bucket,
        config=config,
        client_options={"allow_http": allow_http, "connect_timeout": "5s", "timeout": "30s"},
        retry_config={"max_retries": 3, "retry_timeout": timedelta(seconds=20)},
    )


def scrubbed(text: str) -> str:
    """An error of the client in one line, without the credentials in the environment (an
    error may quote a signed request): the S3 error code and HTTP status when it has them."""
    code = re.search(r"<Code>([^<]+)</Code>", text)
    status = re.search(r"status: (\d{3})", text)
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    if code or status:
        first = (
            " ".join(
                part
                for part in (f"HTTP {status.group(1)}" if status else "", code.group(1) if code else "")
                if part
            )
            + f" ({first.rstrip(':')})"
        )
    text = first
    secrets = [
        os.environ.get(name, "")
        for name in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN")
    ]
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):  # http://user:password@host
        parts = urlsplit(os.environ.get(name, ""))
        secrets += [parts.password or "", parts.username or ""]
    for value in secrets:
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text


def host_name() -> str:
    """The host a stream is from: $DREAMLAKE_HOST, else the machine's name."""
    return os.environ.get("DREAMLAKE_HOST") or socket.gethostname()


def stream_name(session: Path) -> str:
    """One local file's lineage: the host and the local session folder."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", host_name())[:64] or "host"
    folder = hashlib.sha256(os.fsencode(session.resolve())).hexdigest()[:12]
    return f"{clean}-{folder}"


def rank_info() -> dict[str, int]:
    """Rank, local rank and world size, from torchrun's, SLURM's or Open MPI's variables."""
    names = {
        "rank": ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK"),
        "localRank": ("LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK"),
        "worldSize": ("WORLD_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"),
    }
    out = {}
    for field, variables in names.items():
        for variable in variables:
            value = os.environ.get(variable, "")
            if value.isdigit():
                out[field] = int(value)
                break
    return out


@dataclasses.dataclass
class Shipped:
    """What one sync did: chunks written, chunks found there already (ours), bytes and records
    written, JSON objects merged."""

    chunks: int = 0
    found: int = 0
    bytes: int = 0
    records: int = 0
    merged: int = 0  # JSON objects (parameters, descriptions, run identity) changed
    files: int = 0  # files kept with the run (session.files()) put, with their entries


class _Lines:
    """A file's whole lines, read by block with pread (never mapped: a writer that truncates a
    failed write away would make a mapping fault), up to `limit` bytes; a last line without
    its newline is still being written and left out."""

    def __init__(self, file: Path, limit: int | None = None) -> None:
        self._fd = os.open(file, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        size = os.fstat(self._fd).st_size
        self.size = size if limit is None else min(size, limit)
        self._base, self._buf = 0, b""
        self._whole: int | None = None

    def _hold(self, pos: int, count: int) -> None:
        """Have [pos, pos + count) (or up to the size) in the buffer."""
        if self._base <= pos and pos + count <= self._base + len(self._buf):
            return
        count = min(max(count, _BLOCK), self.size - pos)
        self._base, self._buf = pos, os.pread(self._fd, count, pos) if count > 0 else b""
        if len(self._buf) < count:  # the file shrank under us (a failed write truncated away)
            self.size = pos + len(self._buf)

    def line_end(self, pos: int) -> int:
        """Just after the newline that ends the line at `pos`; 0 if it has none (yet)."""
        want = 0  # first, what the buffer holds already
        while True:
            self._hold(pos, want)
            found = self._buf.find(b"\n", pos - self._base)
            if found >= 0:
                return self._base + found + 1
            held = self._base + len(self._buf) - pos
            if pos + held >= self.size:
                return 0  # a last line without its newline (yet)
            want = max(2 * held, _BLOCK)

    def whole_end(self) -> int:
        """Just after the last newline: the end of the whole lines."""
        if self._whole is None:
            at = self.size
            self._whole = 0
            while at > 0:
                start = max(0, at - _BLOCK)
                found = os.pread(self._fd, at - start, start).rfind(b"\n")
                if found >= 0:
                    self._whole = start + found + 1
                    break
                at = start
        return min(self._whole, self.size)

    def number(self, number: Numbering, pos: int, end: int) -> int | None:
        """The number of the record on the line [pos, end) (end without the newline)."""
        self._hold(pos, end - pos)
        return number(self._buf, pos - self._base, end - self._base)

    def bytes(self, pos: int, end: int) -> bytes:
        self._hold(pos, end - pos)
        return self._buf[pos - self._base : end - self._base]

    def close(self) -> None:
        os.close(self._fd)


def _records_from(lines: _Lines, pos: int, number: Numbering) -> Iterator[tuple[int, int]]:
    """(start, number) of each record line from `pos` (a line's start) on."""
    while line_end := lines.line_end(pos):
        found = lines.number(number, pos, line_end - 1)
        if found is not None:
            yield pos, found
        pos = line_end


def _offset_of(lines: _Lines, wanted: int, number: Numbering) -> int:
    """Where the first line numbered `wanted` or more begins; the end of the whole lines if none."""
    return next((at for at, found in _records_from(lines, 0, number) if found >= wanted), lines.whole_end())


def _next_chunk(lines: _Lines, pos: int, number: Numbering) -> tuple[int, int, int] | None:
    """(first number, end, records) of the chunk from `pos` (a line's start): whole lines up to
    the first line end at or after the next multiple of CHUNK_BYTES (so every upload cuts a
    file at the same places, wherever it began), or up to the last whole line; lines that are
    no record go with the records after them. None when no record is left."""
    whole = lines.whole_end()
    end = pos
    while end < whole:
        boundary = (end // CHUNK_BYTES + 1) * CHUNK_BYTES
        end = whole if boundary >= whole else (lines.line_end(boundary - 1) or whole)
        found = number.records(lines.bytes(pos, end))
        if found is not None:
            return found[0], end, found[1]
    return None


def _first_record_at(data: bytes, number: Numbering) -> tuple[int, int] | None:
    """(offset, number) of the first record line in a chunk's bytes."""
    pos = 0
    while pos < len(data):
        line_end = data.find(b"\n", pos) + 1 or len(data) + 1
        found = number(data, pos, line_end - 1)
        if found is not None:
            return pos, found
        pos = line_end
    return None


def _matches(lines: _Lines, there: bytes, number: Numbering, near: int | None = None) -> int | None:
    """Where the chunk `there` (of whole lines) ends in the local file when it is the local
    bytes at its place, else None. `near`: where it most likely starts (looked at first)."""
    if near is not None and there.endswith(b"\n") and lines.bytes(near, near + len(there)) == there:
        return near + len(there)
    head = _first_record_at(there, number)
    if not there.endswith(b"\n") or head is None:
        return None
    start = _offset_of(lines, head[1], number) - head[0]
    if start < 0 or lines.bytes(start, start + len(there)) != there:
        return None
    return start + len(there)


def ship_file(
    store: Any,
    file: Path,
    prefix: str,
    number: Numbering,
    resume: int | None = None,
    limit: int | None = None,
) -> tuple[Shipped, int]:
    """Upload the records of `file` (its first `limit` bytes) that the chunks under `prefix/`
    do not hold yet; returns what was shipped and the offset shipped to. `resume` is where the
    last upload of this stream ended, when that is known for sure; None: the listing says.
    RemoteError when a chunk there is not the local bytes at its place (a conflict: left as it is)."""
    shipped = Shipped()
    lines = _Lines(file, limit)
    try:
        if resume is None or resume > lines.size:  # unknown, or the file is not what we shipped from
            resume = _listed_end(store, lines, file, prefix, number)
        return shipped, _ship_lines(store, lines, file, prefix, number, shipped, resume)
    finally:
        lines.close()


def _conflict(key: str, file: Path) -> RemoteError:
    return RemoteError(
        f"conflict: s3 object {key} is not what {file} holds at that place; it is left as it is"
    )


def _listed_end(store: Any, lines: _Lines, file: Path, prefix: str, number: Numbering) -> int:
    """Where the stream stands, from the listing: chunks are walked from the file's start by
    their sizes while each begins where the last ended (its key, the number of the first
    record there); the walk stops at the first gap (an upload killed with chunks in flight).
    The last chunk of the walk must be the local bytes at its place."""
    import obstore

    key_of = re.compile(re.escape(prefix) + r"/(\d{12,})\.jsonl")
    listed = (
        (key_of.fullmatch(meta["path"]), meta) for page in obstore.list(store, prefix + "/") for meta in page
    )
    chunks = sorted((int(found.group(1)), meta["path"], int(meta["size"])) for found, meta in listed if found)
    pos, last = 0, None
    for first, key, size in chunks:
        if _first_number_at(lines, pos, number) != first or pos + size > lines.size:
            break
        pos, last = pos + size, (key, size)
    if last is not None:
        key, size = last
        if _matches(lines, bytes(obstore.get(store, key).bytes()), number, near=pos - size) != pos:
            raise _conflict(key, file)
    return pos


def _first_number_at(lines: _Lines, pos: int, number: Numbering) -> int | None:
    """The number of the first record at or after `pos` (a line's start)."""
    return next((found for _, found in _records_from(lines, pos, number)), None)


def _ship_lines(
    store: Any, lines: _Lines, file: Path, prefix: str, number: Numbering, shipped: Shipped, pos: int
) -> int:
    """Put the chunks from `pos` on, _IN_FLIGHT at a time, settled in file order; the offset
    after the last one settled. A key taken already is ours when it holds the local bytes at
    its place (a lost answer, an earlier upload killed): counted as found."""
    import obstore

    def put(key: str, data: bytes) -> bool:
        from obstore.exceptions import AlreadyExistsError

        try:
            obstore.put(store, key, data, mode="create")
        except AlreadyExistsError:
            return False
        return True

    def settle() -> None:
        nonlocal pos
        start, end, count, key, future = flight.popleft()
        landed = future.result()
        while not landed:
            there = _matches(lines, bytes(obstore.get(store, key).bytes()), number, near=start)
            if there is None or there > end:  # not ours
                raise _conflict(key, file)
            shipped.found += 1
            rest = number.records(lines.bytes(there, end)) if there < end else None
            if rest is None:
                break
            # An earlier upload ended this stretch short (the file was shorter then): the rest
            # of it is a chunk of its own, ending where the chunk after it, in flight, begins.
            start, count, key = there, rest[1], f"{prefix}/{rest[0]:012d}.jsonl"
            landed = put(key, lines.bytes(start, end))
        if landed:
            shipped.chunks, shipped.bytes = shipped.chunks + 1, shipped.bytes + end - start
            shipped.records += count
        pos = end

    def submit(key: str, data: bytes) -> concurrent.futures.Future[bool]:
        """Put on a daemon thread of its own (a pool's threads are joined before the exit
        hooks run: a stuck request would hold the exit beyond remote_timeout)."""
        done: concurrent.futures.Future[bool] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(put(key, data))
            except BaseException as exc:  # noqa: BLE001 - handed to the settling thread
                done.set_exception(exc)

        try:
            threading.Thread(target=run, name="dreamlake-upload-put", daemon=True).start()
        except RuntimeError:  # at interpreter exit no thread can start: here, one at a time
            run()
        return done

    flight: collections.deque[tuple[int, int, int, str, concurrent.futures.Future[bool]]] = (
        collections.deque()
    )
    cut = pos
    while (found := _next_chunk(lines, cut, number)) is not None:
        first, end, count = found
        key = f"{prefix}/{first:012d}.jsonl"
        flight.append((cut, end, count, key, submit(key, lines.bytes(cut, end))))
        cut = end
        if len(flight) >= _IN_FLIGHT:
            settle()
    while flight:
        settle()
    return pos


def merge_json(store: Any, key: str, local: dict[str, Any], keep: tuple[str, ...] = ()) -> bool:
    """Merge `local` into the JSON object at `key` (its keys win, but those in `keep` that are
    there already), with compare-and-swap on the object's ETag, retried when another writer got
    there first; True if it changed."""
    import obstore
    from obstore.exceptions import AlreadyExistsError, PreconditionError

    for _ in range(50):
        try:
            got = obstore.get(store, key)
        except FileNotFoundError:
            try:
                obstore.put(store, key, orjson.dumps(local), mode="create")
            except AlreadyExistsError:
                continue
            return True
        stored = orjson.loads(bytes(got.bytes()))
        merged = {**stored, **{k: v for k, v in local.items() if k not in keep or k not in stored}}
        if merged == stored:
            return False
        try:
            obstore.put(store, key, orjson.dumps(merged), mode={"e_tag": got.meta["e_tag"]})
        except PreconditionError:
            continue
        return True
    msg = f"s3 object {key} changed under every one of 50 tries to merge into it"
    raise RemoteError(msg)


class Syncer:
    """Ships one local session folder to `remote`; between calls it remembers how far each file
    is shipped (no listing then) and which JSON objects it merged, so a call that finds nothing
    new costs a stat per file and no request. Every key is made (and so checked: ValueError)
    when it is made."""

    def __init__(self, session: Path, remote: Remote, workspace: str, name: str) -> None:
        self.session, self.remote = session, remote
        self.stream = stream_name(session)
        self._writer = {"host": host_name(), **rank_info()}  # who writes: fixed when the session is made
        self._where = (workspace, name)
        self._stream_key = self._key("streams", f"{self.stream}.json")
        self._attempts_key = self._key("attempts", f"{self.stream}.json")  # this stream's session.json
        self._merged: dict[str, bytes] = {}  # key: the local bytes merged into it last
        self._store: Any = None
        self._pid = 0
        self._ends: list[tuple[Path, int]] = []  # (file, offset shipped to) at the last run
        self._unshippable: set[str] = set()  # tracks whose names no key can hold: said once
        self._stream_at = 0.0  # when streams/{stream}.json was last merged

    def _key(self, *parts: str) -> str:
        return self.remote.key(*self._where, *parts)

    def _files(self) -> list[tuple[Path, str, Numbering, Path | None, str]]:
        """(file, chunks' prefix, numbering, description file, its key) of the log and each track."""
        from ._read._records import LOG_FILE
        from ._read._tracks import TRACKS

        files: list[tuple[Path, str, Numbering, Path | None, str]] = [
            (self.session / LOG_FILE, self._key("logs", self.stream), log_number, None, "")
        ]
        tracks = self.session / TRACKS
        if tracks.is_dir():
            for data in sorted(tracks.rglob("data.jsonl")):
                if data.parent == tracks:
                    continue  # not a track's: a track is a folder of its own
                track = data.parent.relative_to(tracks).as_posix()
                try:
                    chunks, described = self._key("tracks", track, self.stream), data.parent / "metadata.json"
                    files.append(
                        (data, chunks, point_number, described, self._key("tracks", track, "metadata.json"))
                    )
                except ValueError as exc:  # a name made locally that no key can hold: the rest ship
                    if track not in self._unshippable:
                        self._unshippable.add(track)
                        print(
                            f"dreamlake: track {track!r} of {self.session} is not shipped: {exc}",
                            file=sys.stderr,
                        )
        return files

    def store(self) -> Any:
        if self._store is None or self._pid != os.getpid():  # a forked child makes its own client
            self._store, self._pid = open_store(self.remote), os.getpid()
        probe(self._store, self.remote)
        return self._store

    def run(self, durable: bool = False, waiting: Callable[[], None] | None = None) -> Shipped:
        """Ship what the bucket does not hold yet; with `durable`, only what is fsynced (each
        file is fsynced first, to the size it had before).

        Every process that ships this folder (the uploader of each process logging to it,
        `dreamlake sync`) takes turns under a lock on its state file, which says how far
        each file is shipped: a round with nothing new makes no request, and no two
        uploads of one stream ever run at once. A file's entry is taken out while its
        chunks are in flight, so after a crash the listing says where the stream stands."""
        total = Shipped()
        files = self._files()
        store = self.store()
        ends: list[tuple[Path, int]] = []
        with _State(self.session / STATE_FILE, waiting) as state:
            for file, prefix, number, description, description_key in files:
                try:
                    stat = os.stat(file)
                except FileNotFoundError:
                    continue
                where = f"{self.remote.bucket}/{prefix}"
                known = state.get(where)
                # The same file still (a new file may get the old one's inode): the bytes before
                # where it was shipped to are the same.
                fresh = known is not None and known[0] == stat.st_ino and _tail(file, known[1]) == known[3]
                if not (fresh and known is not None and known[1] == known[2] == stat.st_size):
                    limit = _fsynced(file) if durable else None
                    state.drop(where)  # in flight: a crash leaves the listing to say
                    resume = known[1] if fresh and known is not None else None
                    part, end = ship_file(store, file, prefix, number, resume, limit)
                    seen = limit if limit is not None else stat.st_size
                    state.put(where, [stat.st_ino, end, seen, _tail(file, end)])
                    known = state.get(where)
                    for field in dataclasses.fields(Shipped):
                        setattr(total, field.name, getattr(total, field.name) + getattr(part, field.name))
                ends.append((file, known[1] if known is not None else 0))
                if description is not None:
                    total.merged += self._merge(store, description, description_key)
            total.files += self._ship_files(store, state)
        self._ends = ends
        total.merged += self._merge(store, self.session / "parameters.json", self._key("parameters.json"))
        total.merged += self._replace(store, self.session / "session.json", self._attempts_key)
        if self._stream_key not in self._merged or (
            (total.chunks or total.merged) and time.monotonic() - self._stream_at >= STREAM_EVERY
        ):
            self._merge_stream(store)
        return total

    def backlog(self) -> int:
        """Bytes written to the log (and to up to 16 tracks) since this process last shipped
        them: a stat of each, no lock, no request."""
        left = 0
        for file, size in self._ends[:17]:
            try:
                left += max(0, os.stat(file).st_size - size)
            except OSError:
                continue
        return left

    def pending(self) -> int:
        """Bytes of the local files not known to be shipped (all of a file never shipped)."""
        try:
            shipped = orjson.loads((self.session / STATE_FILE).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            shipped = {}
        left = 0
        for file, prefix, *_ in self._files():
            try:
                size = os.stat(file).st_size
            except FileNotFoundError:
                continue
            known = shipped.get(f"{self.remote.bucket}/{prefix}")
            left += max(0, size - (known[1] if isinstance(known, list) else 0))
        for _, blob, _, _ in self._unshipped_files(lambda where: where in shipped):
            try:
                left += os.stat(blob).st_size
            except OSError:
                continue
        return left

    def _unshipped(self, file: Path, key: str) -> bytes | None:
        """`file`'s bytes when they are not what this process last shipped to `key`."""
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            return None
        return None if self._merged.get(key) == data else data

    def _merge(self, store: Any, file: Path, key: str) -> bool:
        data = self._unshipped(file, key)
        if data is None:
            return False
        changed = merge_json(store, key, orjson.loads(data))
        self._merged[key] = data
        return changed

    def _replace(self, store: Any, file: Path, key: str) -> bool:
        """Put `file` whole at `key` when it changed: an object only this stream writes."""
        import obstore

        data = self._unshipped(file, key)
        if data is None:
            return False
        if key not in self._merged:  # the first look of this process: the bucket may hold it
            try:
                there = bytes(obstore.get(store, key).bytes())
            except FileNotFoundError:
                there = None
            if there == data:
                self._merged[key] = data
                return False
        obstore.put(store, key, data)
        self._merged[key] = data
        return True

    def _unshipped_files(self, shipped: Callable[[str], bool]) -> list[tuple[Path, Path, str, str]]:
        """(entry file, the file it names, the entry's key, the file's key) of each file kept
        with the run that is not `shipped` (by the key of its entry) yet."""
        from ._artifacts import FILES, list_files

        out = []
        for entry in list_files(self.session):
            try:
                key = self._key(FILES, entry["id"], str(entry["filename"]))
                entry_key = self._key(FILES, f"{entry['id']}.json")
            except ValueError as exc:  # a name no key can hold: the rest ship
                if entry["id"] not in self._unshippable:
                    self._unshippable.add(entry["id"])
                    print(f"dreamlake: a file of {self.session} is not shipped: {exc}", file=sys.stderr)
                continue
            if shipped(f"{self.remote.bucket}/{entry_key}"):
                continue
            blob = self.session / FILES / entry["id"] / str(entry["filename"])
            out.append((self.session / FILES / f"{entry['id']}.json", blob, entry_key, key))
        return out

    def _ship_files(self, store: Any, state: _State) -> int:
        """Each file not shipped yet, then its entry: an entry in the bucket names a whole
        file. Large files go in parts (the client's multipart upload, 5 MiB a part); ids are
        unique, so a retry only puts the same bytes again."""
        import obstore

        shipped = 0
        for entry_file, blob, entry_key, key in self._unshipped_files(
            lambda where: state.get(where) is not None
        ):
            try:
                stat = os.stat(blob)
                obstore.put(store, key, blob)
                entry = entry_file.read_bytes()
            except FileNotFoundError:  # removed from the folder by hand: nothing left to ship
                continue
            obstore.put(store, entry_key, entry)
            state.put(f"{self.remote.bucket}/{entry_key}", [stat.st_ino, stat.st_size, stat.st_size, "file"])
            shipped += 1
        return shipped

    def _merge_stream(self, store: Any) -> None:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        info = {
            "pid": os.getpid(),
            "localPath": str(self.session.resolve()),
            "firstUpload": now,
            "lastUpload": now,
            **self._writer,
        }
        merge_json(store, self._stream_key, info, keep=("firstUpload",))
        self._merged[self._stream_key] = b""
        self._stream_at = time.monotonic()


_probed: set[str] = set()  # buckets whose conditional writes were checked by this process


def probe(store: Any, remote: Remote) -> None:
    """Once per process and bucket: does it refuse a create-only put of a key that exists?
    Exactly once rests on it; a bucket that ignores it is said loudly on stderr."""
    import uuid

    import obstore
    from obstore.exceptions import AlreadyExistsError

    if remote.bucket in _probed:
        return
    key = remote.key(".dreamlake-probe", f"{uuid.uuid4().hex}.txt")  # a new key: only we write it
    try:
        obstore.put(store, key, b"1", mode="create")
    except AlreadyExistsError:
        pass  # our own put, whose answer was lost and retried
    try:
        obstore.put(store, key, b"2", mode="create")
    except AlreadyExistsError:
        ignored = False
    else:
        ignored = True
    _probed.add(remote.bucket)
    try:
        obstore.delete(store, key)
    except Exception:  # noqa: BLE001 - a probe left behind is harmless: readers skip it
        pass
    if ignored:
        print(
            f"dreamlake: WARNING: bucket {remote.bucket} ignores conditional writes (If-None-Match: *): "
            "two uploads of one chunk could overwrite each other and parameters set on two hosts at once "
            "could lose one; use a store that honours them (AWS S3, MinIO, SeaweedFS, R2 do)",
            file=sys.stderr,
        )


STATE_FILE = ".upload-state.json"
"""In a session folder: how far each of its files is shipped, per bucket and prefix; locked
(flock) by whoever ships it."""


class _State:
    """The upload state of a folder, read and written under an exclusive flock of its file.
    A folder that cannot hold it (read-only) ships without: the listing says every time."""

    def __init__(self, file: Path, waiting: Callable[[], None] | None = None) -> None:
        from ._files import locked_file

        self._lock, self._fd, self._state = locked_file(file, waiting), -1, dict[str, Any]()

    def __enter__(self) -> _State:
        self._fd = self._lock.__enter__()
        if self._fd < 0:
            return self
        try:
            loaded = orjson.loads(os.pread(self._fd, 1 << 24, 0) or b"{}")
        except orjson.JSONDecodeError:  # torn by a crash: the listing says
            loaded = {}
        self._state = loaded if isinstance(loaded, dict) else {}
        return self

    def get(self, where: str) -> list[Any] | None:
        """[inode, offset shipped to, size seen, fingerprint of the bytes before the offset]."""
        known = self._state.get(where)
        return known if isinstance(known, list) and len(known) == 4 else None

    def drop(self, where: str) -> None:
        if self._state.pop(where, None) is not None:
            self._write()

    def put(self, where: str, value: list[Any]) -> None:
        self._state[where] = value
        self._write()

    def _write(self) -> None:
        if self._fd >= 0:
            data = orjson.dumps(self._state)
            os.pwrite(self._fd, data, 0)
            os.ftruncate(self._fd, len(data))

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(None, None, None)


def _tail(file: Path, end: int) -> str:
    """A fingerprint of the 64 bytes of `file` before `end`."""
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return ""
    try:
        return hashlib.blake2b(os.pread(fd, min(end, 64), max(0, end - 64)), digest_size=8).hexdigest()
    finally:
        os.close(fd)


def _fsynced(file: Path) -> int:
    """fsync `file` and return its size before: the bytes now durable."""
    fd = os.open(file, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        os.fsync(fd)
        return size
    finally:
        os.close(fd)


def sync(
    session: Path, remote: Remote, workspace: str, name: str, waiting: Callable[[], None] | None = None
) -> Shipped:
    """Ship everything of the local `session` folder that `remote` does not hold yet;
    `waiting()` is called if another upload of the folder must end first."""
    return Syncer(session, remote, workspace, name).run(waiting=waiting)
