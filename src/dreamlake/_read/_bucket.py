"""Reading sessions back from an S3-compatible bucket, where `dreamlake sync` and the uploader put
them (layout: `dreamlake._remote`). Every stream of a session is read and the records merged by
timestamp, ties by stream, then number; each record says the stream it came from (`stream`,
and `rank` when the stream's writer had one), the stored bytes unchanged."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from .._levels import RANK, normalize_level
from .._remote import Remote, open_store
from ._records import Parse, Records, log_records
from ._tracks import DATA_FILE, TRACKS, check_name, track_points

_CHUNK_KEY = re.compile(r"(.+)/([^/]+)/(\d{12,})\.jsonl")
_FETCHERS = 8  # chunks fetched at once


def is_url(path: object) -> bool:
    """Whether `path` names a place in a bucket (s3://...) rather than a local folder."""
    return isinstance(path, str) and path.startswith("s3://")


class BucketSession:
    """A session (or workspace) in a bucket: its URL checked, a client for it."""

    def __init__(self, url: str) -> None:
        self.remote = Remote.parse(url)
        if not self.remote.prefix:
            msg = f"{url} names a bucket, not a session: give s3://bucket/prefix/workspace/session"
            raise ValueError(msg)
        self.url = str(self.remote)
        self.store = open_store(self.remote)

    def keys(self, under: str, after: str | None = None) -> list[str]:
        """The keys below `under` (a path below the URL), in key order; with `after`, only those after it."""
        import obstore

        prefix = f"{self.remote.prefix}/{under}/" if under else f"{self.remote.prefix}/"
        pages = obstore.list(self.store, prefix, offset=after) if after else obstore.list(self.store, prefix)
        return sorted(meta["path"] for page in pages for meta in page)

    def get(self, key: str) -> bytes:
        import obstore

        return bytes(obstore.get(self.store, key).bytes())

    def get_json(self, under: str) -> dict[str, Any] | None:
        try:
            value: dict[str, Any] = orjson.loads(self.get(f"{self.remote.prefix}/{under}"))
        except FileNotFoundError:
            return None
        return value

    def children(self) -> list[str]:
        """The names of the folders right below the URL (sessions of a workspace, workspaces)."""
        import obstore

        listed = obstore.list_with_delimiter(self.store, self.remote.prefix + "/")
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in listed["common_prefixes"])

    def ranks(self) -> dict[str, int]:
        """The rank of each stream whose writer had one."""
        out = {}
        for key in self.keys("streams"):
            name = key.rsplit("/", 1)[-1].removesuffix(".json")
            info = orjson.loads(self.get(key))
            if isinstance(info.get("rank"), int):
                out[name] = info["rank"]
        return out


def _chunks(session: BucketSession, under: str, seen: set[str] | None = None) -> dict[str, list[str]]:
    """The chunk keys of each stream below `under` (`logs`, or `tracks/{name}`), in number order;
    with `seen`, only those not in it (chunks land out of order: four go up at once, and a
    later upload fills a gap)."""
    out: dict[str, list[str]] = {}
    for key in session.keys(under):
        found = _CHUNK_KEY.fullmatch(key)
        if found is None or found.group(1) != f"{session.remote.prefix}/{under}":
            continue
        if seen is not None and key in seen:
            continue
        out.setdefault(found.group(2), []).append(key)
    for keys in out.values():
        keys.sort(key=lambda k: int(k.rsplit("/", 1)[1][:-6]))
    return out


def _records(
    session: BucketSession,
    chunks: dict[str, list[str]],
    parse: Parse,
    bad: list[int],
    order: Callable[..., Any],
) -> list[dict[str, Any]]:
    """Every record of the chunks, tagged with its stream (and rank), merged by `order`."""
    from concurrent.futures import ThreadPoolExecutor  # at use: its import registers an exit hook

    ranks = session.ranks() if chunks else {}
    jobs = [(stream, key) for stream, keys in chunks.items() for key in keys]
    with ThreadPoolExecutor(_FETCHERS) as pool:
        bodies = list(pool.map(lambda job: session.get(job[1]), jobs))
    out: list[dict[str, Any]] = []
    for (stream, _), body in zip(jobs, bodies, strict=True):
        text = body[:-1] if body.endswith(b"\n") else body
        if not text:
            continue
        tag = {"stream": stream, "rank": ranks[stream]} if stream in ranks else {"stream": stream}
        out.extend({**record, **tag} for record in parse(text, bad))
    out.sort(key=order)
    return out


def _log_order(record: dict[str, Any]) -> tuple[str, str, int]:
    return record["timestamp"], record["stream"], record["sequenceNumber"]


def _point_order(record: dict[str, Any]) -> tuple[str, str, int]:
    return record["createdAt"], record["stream"], record["index"]


def _level_filter(level: str | None) -> Parse:
    floor = RANK[normalize_level(level)] if level is not None else 0
    return lambda text, bad: log_records(text, bad, floor)


def read_bucket_logs(url: str, level: str | None = None) -> Records:
    """Every record of the session at `url`, from every stream, merged by timestamp."""
    session = BucketSession(url)
    bad = [0]
    out = Records(_records(session, _chunks(session, "logs"), _level_filter(level), bad, _log_order))
    if not out and not session.keys("logs"):
        _no_session(session, "logs")
    out.skipped = bad[0]
    return out


def follow_bucket_logs(
    url: str, interval: float = 2.0, level: str | None = None, stop: Callable[[], bool] | None = None
) -> Iterator[dict[str, Any]]:
    """Every record, then those of each chunk that appears later (the listing polled every
    `interval` seconds); each poll's new records merged by timestamp."""
    from .._remote import scrubbed

    session = BucketSession(url)
    parse, seen, bad, failing = _level_filter(level), set[str](), [0], False
    while True:
        try:
            chunks = _chunks(session, "logs", seen)
            records = _records(session, chunks, parse, bad, _log_order)
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 - the network's or the bucket's: polled on
            if not failing:
                print(
                    f"dreamlake: reading {session.url} failed ({scrubbed(str(exc))}); trying on",
                    file=sys.stderr,
                )
            failing, chunks = True, {}
        else:
            if failing:
                print(f"dreamlake: reading {session.url} works again", file=sys.stderr)
            failing = False
            yield from records
            seen.update(key for keys in chunks.values() for key in keys)
        if not chunks:
            if stop is not None and stop():
                return
            time.sleep(interval)  # ok: the bucket has nothing to wait on but time


def read_bucket_track(url: str, name: str) -> Records:
    """Every point of track `name` of the session at `url`, from every stream, merged by createdAt."""
    check_name(name)
    session = BucketSession(url)
    bad = [0]
    out = Records(_records(session, _chunks(session, f"tracks/{name}"), track_points, bad, _point_order))
    if not out and session.get_json(f"tracks/{name}/metadata.json") is None:
        known = ", ".join(bucket_track_names(session)) or "none"
        msg = f"{session.url} has no track {name!r} (tracks: {known})"
        raise FileNotFoundError(msg)
    out.skipped = bad[0]
    return out


def bucket_track_names(session: BucketSession) -> list[str]:
    """The tracks of the session, by their descriptions (tracks/{name}/metadata.json)."""
    head = f"{session.remote.prefix}/tracks/"
    return sorted(
        key[len(head) : -len("/metadata.json")]
        for key in session.keys("tracks")
        if key.endswith("/metadata.json")
    )


def read_bucket_params(url: str) -> dict[str, Any]:
    """The parameters of the session at `url`: every host's, merged as they were shipped."""
    session = BucketSession(url)
    params = session.get_json("parameters.json")
    if params is None:
        msg = f"{session.url} has no parameters (parameters.json)"
        raise FileNotFoundError(msg)
    return params


def bucket_identity(session: BucketSession) -> dict[str, Any] | None:
    """The session.json of every stream (host) merged: the earliest createdAt, every attempt
    once (by id), in the order they started. None when no stream shipped one."""
    merged: dict[str, Any] | None = None
    attempts: dict[str, dict[str, Any]] = {}
    for key in session.keys("attempts"):
        try:
            found = orjson.loads(session.get(key))
        except (FileNotFoundError, orjson.JSONDecodeError):
            continue
        if not isinstance(found, dict):
            continue
        if merged is None or str(found.get("createdAt", "")) < str(merged.get("createdAt", "")):
            merged = {k: v for k, v in found.items() if k != "attempts"}
        for attempt in found.get("attempts") or []:
            if isinstance(attempt, dict):
                attempts[str(attempt.get("id"))] = attempt
    if merged is not None:
        merged["attempts"] = sorted(attempts.values(), key=lambda a: str(a.get("startedAt", "")))
    return merged


def last_upload(session: BucketSession) -> float | None:
    """When any stream of the session last shipped (seconds since the epoch): what "its files
    last changed" is in a bucket."""
    from .._identity import epoch

    times = []
    for key in session.keys("streams"):
        try:
            info = orjson.loads(session.get(key))
        except (FileNotFoundError, orjson.JSONDecodeError):
            continue
        found = epoch(info.get("lastUpload")) if isinstance(info, dict) else None
        if found is not None:
            times.append(found)
    return max(times, default=None)


def _no_session(session: BucketSession, what: str) -> None:
    children = session.children()
    hint = f": it holds {', '.join(children[:5])}" if children else ""
    msg = f"{session.url} has no {what}: give the s3:// URL of a session (prefix/workspace/session){hint}"
    raise FileNotFoundError(msg)


def bucket_sessions(url: str) -> list[str]:
    """The URLs of the sessions at `url`: the session itself, or those of a workspace."""
    session = BucketSession(url)
    if session.keys("streams"):
        return [session.url]
    return [f"{session.url}/{name}" for name in session.children() if session.keys(f"{name}/streams")]


def copy_down(url: str, into: Path) -> list[Path]:
    """The sessions at `url` (one, or a workspace's) as local folders under `into`, for the
    tools that read folders (`dreamlake plot`, `runs`): parameters, identity (every stream's
    attempts), track descriptions, and each
    track's points from every stream merged by createdAt and numbered again from 0."""
    out = []
    for session_url in bucket_sessions(url):
        session = BucketSession(session_url)
        workspace, name = session.remote.prefix.rsplit("/", 2)[-2:]
        folder = into / workspace / name
        folder.mkdir(parents=True, exist_ok=True)
        params = session.get_json("parameters.json")
        if params is not None:
            (folder / "parameters.json").write_bytes(orjson.dumps(params))
        identity = bucket_identity(session)
        if identity is not None:
            (folder / "session.json").write_bytes(orjson.dumps(identity))
        for track in bucket_track_names(session):
            place = folder / TRACKS / track
            place.mkdir(parents=True, exist_ok=True)
            described = session.get_json(f"tracks/{track}/metadata.json")
            if described is not None:
                (place / "metadata.json").write_bytes(orjson.dumps(described))
            points = read_bucket_track(session_url, track)
            (place / DATA_FILE).write_bytes(
                b"".join(
                    orjson.dumps({"index": i, "data": p["data"], "createdAt": p["createdAt"]}) + b"\n"
                    for i, p in enumerate(points)
                )
            )
        shipped = last_upload(session)
        if shipped is not None:  # the copies changed when the bucket last did: a run gone quiet shows
            for root, _, files in os.walk(folder):
                for file in files:
                    os.utime(os.path.join(root, file), (shipped, shipped))
        out.append(folder)
    return out
