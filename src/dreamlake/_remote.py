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

import dataclasses
import hashlib
import mmap
import os
import re
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

if TYPE_CHECKING:
    from obstore.store import S3Config

CHUNK_BYTES = 8 << 20  # a chunk is cut at about this size, at a record's end
_LOG_NUMBER = re.compile(rb',"sequenceNumber":(\d+)}$')
_POINT_NUMBER = re.compile(rb'^{"index":(\d+),')
_NAME = re.compile(r"^[^/\x00]+$")


class RemoteError(Exception):
    """The bucket refused, or holds something that is not ours where ours should be."""


@dataclasses.dataclass(frozen=True)
class Remote:
    """An `s3://bucket/prefix` URL, checked."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Remote:
        if not isinstance(url, str):
            msg = f"remote must be an s3:// URL (a str), got {type(url).__name__}"
            raise TypeError(msg)
        parts = urlsplit(url)
        if parts.scheme != "s3":
            msg = f"remote must be an s3://bucket/prefix URL, got {url!r}"
            raise ValueError(msg)
        if "@" in parts.netloc or parts.password is not None:
            msg = (
                "remote must not hold credentials (s3://key:secret@...): set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY instead"
            )
            raise ValueError(msg)
        if not parts.netloc or parts.query or parts.fragment:
            msg = f"remote must be an s3://bucket/prefix URL without ?query or #fragment, got {url!r}"
            raise ValueError(msg)
        prefix = parts.path.strip("/")
        if any(piece in {"", ".", ".."} for piece in prefix.split("/")) and prefix:
            msg = f"remote's prefix must not hold empty, '.' or '..' parts: {url!r}"
            raise ValueError(msg)
        return cls(parts.netloc, prefix)

    def key(self, *parts: str) -> str:
        """The object key of `parts` under the prefix; each part a plain name (no '/', '..')."""
        for part in parts:
            for piece in part.split("/"):
                if piece in {"", ".", ".."} or not _NAME.match(piece):
                    msg = f"{part!r} cannot name an object under {self}: no empty, '.' or '..' parts"
                    raise ValueError(msg)
        return "/".join([self.prefix, *parts] if self.prefix else parts)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def open_store(remote: Remote) -> Any:
    """An obstore S3Store for `remote`, configured from the standard AWS variables; plain HTTP
    only to an endpoint on localhost or with AWS_ALLOW_HTTP=true."""
    try:
        from obstore.store import S3Store
    except ImportError:
        msg = "an s3:// remote needs the S3 client: pip install 'dreamlake[s3]'"
        raise ImportError(msg) from None
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    host = urlsplit(endpoint).hostname or ""
    local = host in {"localhost", "127.0.0.1", "::1"}
    allow_http = local or os.environ.get("AWS_ALLOW_HTTP", "").lower() == "true"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    config: S3Config = {"region": region}
    if endpoint:
        config["endpoint"] = endpoint
    return S3Store(remote.bucket, config=config, client_options={"allow_http": allow_http})


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
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN"):
        value = os.environ.get(name, "")
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text


def stream_name(session: Path, host: str | None = None) -> str:
    """One local file's lineage: the host and the local session folder."""
    host = host or os.environ.get("DREAMLAKE_HOST") or socket.gethostname()
    clean = re.sub(r"[^A-Za-z0-9._-]", "_", host)[:64] or "host"
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
    """What one sync did: chunks written, chunks found there already (ours), bytes written."""

    chunks: int = 0
    found: int = 0
    bytes: int = 0
    records: int = 0


class _Lines:
    """A file's whole lines, mapped, not read into memory (a run's log may be gigabytes); a
    last line without its newline is still being written and left out."""

    def __init__(self, file: Path) -> None:
        with open(file, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            self.data: bytes | mmap.mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        self.end = self.data.rfind(b"\n") + 1

    def line_end(self, pos: int) -> int:
        return self.data.find(b"\n", pos, self.end) + 1

    def close(self) -> None:
        if isinstance(self.data, mmap.mmap):
            self.data.close()


def _offset_of(lines: _Lines, wanted: int, number: re.Pattern[bytes]) -> int:
    """Where the first line numbered `wanted` or more begins; the end if none."""
    data, pos = lines.data, 0
    while pos < lines.end:
        line_end = lines.line_end(pos)
        found = number.search(data, pos, line_end - 1)
        if found and int(found.group(1)) >= wanted:
            return pos
        pos = line_end
    return pos


def _next_chunk(lines: _Lines, pos: int, number: re.Pattern[bytes]) -> tuple[int, int, int, int] | None:
    """(first number, start, end, records) of the chunk from `pos` (a line's start): about
    CHUNK_BYTES, cut at a line's end, beginning with a record; None when none is left."""
    first, count, start = -1, 0, pos
    while pos < lines.end and (first < 0 or pos - start < CHUNK_BYTES):
        line_end = lines.line_end(pos)
        found = number.search(lines.data, pos, line_end - 1)
        if found:
            if first < 0:
                first, start = int(found.group(1)), pos
            count += 1
        pos = line_end
    return None if first < 0 else (first, start, pos, count)


def ship_file(store: Any, file: Path, prefix: str, number: re.Pattern[bytes]) -> Shipped:
    """Upload the records of `file` that the chunks under `prefix/` do not hold yet; RemoteError
    when the last chunk there is not the local bytes at its place (a conflict: left as it is)."""

    shipped = Shipped()
    if not file.is_file():
        return shipped
    lines = _Lines(file)
    try:
        _ship_lines(store, lines, file, prefix, number, shipped)
    finally:
        lines.close()
    return shipped


def _ship_lines(
    store: Any, lines: _Lines, file: Path, prefix: str, number: re.Pattern[bytes], shipped: Shipped
) -> None:
    import obstore
    from obstore.exceptions import AlreadyExistsError

    data = lines.data
    keys = sorted(meta["path"] for page in obstore.list(store, prefix + "/") for meta in page)
    chunks = [k for k in keys if re.fullmatch(re.escape(prefix) + r"/\d{12}\.jsonl", k)]
    pos = 0
    if chunks:  # the listing says where the stream stands; its last chunk must be ours
        last = chunks[-1]
        there = bytes(obstore.get(store, last).bytes())
        at = _offset_of(lines, int(last.rsplit("/", 1)[1][:12]), number)
        if not there or data[at : at + len(there)] != there:
            msg = f"conflict: s3 object {last} is not what {file} holds at that place; it is left as it is"
            raise RemoteError(msg)
        pos = at + len(there)
    while (found := _next_chunk(lines, pos, number)) is not None:
        first, start, pos, count = found
        key = f"{prefix}/{first:012d}.jsonl"
        try:
            obstore.put(store, key, data[start:pos], mode="create")
        except AlreadyExistsError:  # another sync of this stream got there first, or our answer was lost
            there = bytes(obstore.get(store, key).bytes())
            if not there or data[start : start + len(there)] != there:
                msg = f"conflict: s3 object {key} is not what {file} holds at that place; it is left as it is"
                raise RemoteError(msg) from None
            shipped.found += 1
            pos = start + len(there)  # cut elsewhere by the other sync: go on after its chunk
            continue
        shipped.chunks += 1
        shipped.bytes += pos - start
        shipped.records += count


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


def sync(session: Path, remote: Remote, workspace: str, name: str) -> Shipped:
    """Ship everything of the local `session` folder that `remote` does not hold yet."""
    from ._read._records import LOG_FILE
    from ._read._tracks import TRACKS

    store = open_store(remote)
    stream = stream_name(session)
    total = Shipped()

    def add(part: Shipped) -> None:
        for field in dataclasses.fields(Shipped):
            setattr(total, field.name, getattr(total, field.name) + getattr(part, field.name))

    add(ship_file(store, session / LOG_FILE, remote.key(workspace, name, "logs", stream), _LOG_NUMBER))
    tracks = session / TRACKS
    if tracks.is_dir():
        for folder in sorted(p for p in tracks.rglob("data.jsonl")):
            track = folder.parent.relative_to(tracks).as_posix()
            add(ship_file(store, folder, remote.key(workspace, name, "tracks", track, stream), _POINT_NUMBER))
            described = folder.parent / "metadata.json"
            if described.is_file():
                merge_json(
                    store,
                    remote.key(workspace, name, "tracks", track, "metadata.json"),
                    orjson.loads(described.read_bytes()),
                )
    params = session / "parameters.json"
    if params.is_file():
        merge_json(store, remote.key(workspace, name, "parameters.json"), orjson.loads(params.read_bytes()))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    info = {
        "host": os.environ.get("DREAMLAKE_HOST") or socket.gethostname(),
        "pid": os.getpid(),
        "localPath": str(session.resolve()),
        "firstUpload": now,
        "lastUpload": now,
        **rank_info(),
    }
    merge_json(store, remote.key(workspace, name, "streams", f"{stream}.json"), info, keep=("firstUpload",))
    return total
