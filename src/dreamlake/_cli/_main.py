"""The `dreamlake` command: read, watch and list logs, run the demo, measure speed."""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import math
import os
import random
import re
import shlex
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from .. import __version__
from .._format import format_record, metadata_text, use_color, visible
from .._identity import attempts, shown_status
from .._levels import LEVELS, RANK, normalize_level
from .._params import read_params
from .._plot._term import python_here
from .._read._bucket import is_url
from .._read._records import LOG_FILE, follow_logs, iter_logs, log_file_of
from .._read._sessions import sessions_in
from .._read._tracks import (
    TRACKS,
    count_points,
    follow_track,
    iter_track,
    last_point,
    track_file,
    track_names,
)
from .._session import Session, default_local_path
from ._places import bucket_errors, local_paths
from ._runs import cmd_files, cmd_runs
from ._usage import UsageError


def parse_since(text: str) -> str:
    """A timestamp to compare records with: ISO 8601, or an age such as 90s, 10m, 2h, 1d."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if match:
        seconds = float(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
        try:
            moment = datetime.now(timezone.utc) - timedelta(seconds=seconds)
        except OverflowError:  # an age older than the year 1: every record
            moment = datetime.min.replace(tzinfo=timezone.utc)
    else:
        try:
            moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            msg = f"--since must be an ISO 8601 time or an age like 90s, 10m, 2h, 1d; got {text!r}"
            raise UsageError(msg) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
    # isoformat, not strftime: %Y gives "1", not "0001", for the year 1 on some systems
    try:
        moment = moment.astimezone(timezone.utc)
    except OverflowError:  # an offset past the first or last moment a datetime holds
        moment = (datetime.min if moment.year == 1 else datetime.max).replace(tzinfo=timezone.utc)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _select(
    records: Iterable[dict[str, Any]], level: str | None, grep: str | None, since: str | None
) -> Iterator[dict[str, Any]]:
    floor = RANK[level] if level else 0
    for record in records:
        if RANK.get(record.get("level"), 0) < floor:  # type: ignore[arg-type]
            continue
        if since and str(record.get("timestamp", "")) < since:
            continue
        if (
            grep
            and grep not in str(record.get("message", ""))
            and grep not in metadata_text(record.get("metadata"))
        ):
            continue
        yield record


def cmd_logs(args: argparse.Namespace) -> None:
    if is_url(args.path):
        _bucket_logs(args)
        return
    try:
        path = log_file_of(args.path)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    level = _level(args.level)
    since = parse_since(args.since) if args.since else None
    color = use_color(sys.stdout)
    out = sys.stdout

    def show(record: dict[str, Any]) -> str:
        return orjson.dumps(record).decode() if args.json else format_record(record, color)

    if args.follow:
        for record in _select(follow_logs(path), level, args.grep, since):
            out.write(show(record) + "\n")
            out.flush()
        return
    skipped, read = [0], [0]
    for record in _select(_tally(iter_logs(path, skipped=skipped), read), level, args.grep, since):
        out.write(show(record) + "\n")
    where = visible(str(path))
    if not read[0]:
        raise UsageError(
            f"{where} has no records: none of its lines is a dreamlake record"
            if skipped[0]
            else f"{where} has no records yet"
        )
    if skipped[0]:  # after the records, so that a pipe gets them all first
        out.flush()
        print(
            f"dreamlake logs: skipped {skipped[0]} line(s) of {where} that are not records "
            "(torn by a crash, or still being written)",
            file=sys.stderr,
        )


def _bucket_logs(args: argparse.Namespace) -> None:
    """`dreamlake logs s3://...`: every stream's records, merged; --follow polls the listing."""
    from .._read._bucket import follow_bucket_logs, read_bucket_logs

    level = _level(args.level)
    since = parse_since(args.since) if args.since else None
    color, out = use_color(sys.stdout), sys.stdout
    with bucket_errors(args.path):
        records = follow_bucket_logs(args.path) if args.follow else read_bucket_logs(args.path)
        shown = 0
        for record in _select(records, level, args.grep, since):
            out.write((orjson.dumps(record).decode() if args.json else format_record(record, color)) + "\n")
            shown += 1
            if args.follow:
                out.flush()
    if not shown and not args.follow:
        raise UsageError(
            f"{args.path} has no records" + (" that match" if level or args.grep or since else "")
        )


def _tally(records: Iterable[dict[str, Any]], count: list[int]) -> Iterator[dict[str, Any]]:
    """`records`, counting them in `count[0]`."""
    for record in records:
        count[0] += 1
        yield record


def _level(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return normalize_level(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_ls(args: argparse.Namespace) -> None:
    if is_url(args.local_path):
        _bucket_ls(args.local_path)
        return
    root = Path(default_local_path() if args.local_path is None else args.local_path)
    try:
        sessions = sessions_in(root)
    except OSError as exc:  # none there, or a folder that cannot be listed
        raise UsageError(
            visible(str(exc)) if exc.strerror is None else f"cannot list {visible(str(root))}: {exc.strerror}"
        ) from None
    rows, bad = [], 0
    for session in sessions:
        name = visible("/".join(Path(os.path.abspath(session)).parts[-2:])).replace("\t", "\\t")  # `ls .` too
        try:
            rows.append((name, *_session_row(session)))
        except OSError as exc:  # one broken session: said, and the others listed
            bad += 1
            where = visible(str(exc.filename or session))
            print(f"dreamlake ls: {name}: cannot read {where}: {exc.strerror or exc}", file=sys.stderr)
    print(
        f"{'SESSION':<32} {'STATUS':<11} {'ATTEMPTS':>8} {'RECORDS':>8} {'WARN':>6} {'ERROR':>6} "
        f"{'FATAL':>6} {'PARAMS':>6} {'TRACKS':>6}  LAST RECORD"
    )
    for name, status, tried, total, counts, params, tracks, last in rows:
        print(
            f"{name:<32} {status:<11} {tried:>8} {total:>8} {counts['warn']:>6} {counts['error']:>6} "
            f"{counts['fatal']:>6} {params:>6} {tracks:>6}  {last}"
        )
    if len(sessions) == 1 and not bad:  # one session: each of its attempts too
        _print_attempts(sessions[0])
    if bad:
        raise UsageError(f"{bad} of {len(sessions)} sessions could not be read (see above)")


def _print_attempts(session: Path) -> None:
    from ._runs import print_table

    tried = attempts(session)
    if not tried:
        return
    print()
    print_table(
        [
            {
                "ATTEMPT": number,
                "STATUS": shown_status(a, session) + (f" ({a['error']})" if a.get("error") else ""),
                "STARTED": str(a.get("startedAt", "-")).replace("T", " ")[:19],
                "ENDED": str(a.get("endedAt") or "-").replace("T", " ")[:19],
                "HOST": a.get("host"),
                "PID": a.get("pid"),
                "COMMIT": _commit(a.get("git")),
                "COMMAND": shlex.join(map(str, argv)) if isinstance(argv := a.get("argv"), list) else "-",
            }
            for number, a in enumerate(tried, 1)
        ]
    )


def _bucket_ls(url: str) -> None:
    """`dreamlake ls s3://...`: the sessions of a workspace (or the one session) in the bucket."""
    from .._read._bucket import (
        BucketSession,
        bucket_identity,
        bucket_sessions,
        bucket_track_names,
        last_upload,
        read_bucket_logs,
    )

    with bucket_errors(url):
        sessions = bucket_sessions(url)
        if not sessions:
            raise UsageError(
                f"no dreamlake session at {url}: give s3://bucket/prefix/workspace (or .../session)"
            )
        print(
            f"{'SESSION':<32} {'STATUS':<11} {'ATTEMPTS':>8} {'RECORDS':>8} {'WARN':>6} {'ERROR':>6} "
            f"{'STREAMS':>7} {'PARAMS':>6} {'TRACKS':>6}  LAST RECORD"
        )
        for session_url in sessions:
            session = BucketSession(session_url)
            records = read_bucket_logs(session_url) if session.keys("logs") else []
            counts = {
                level: sum(1 for r in records if r.get("level") == level) for level in ("warn", "error")
            }
            streams = len(session.keys("streams"))
            params = len(session.get_json("parameters.json") or {})
            last = visible(str(records[-1]["timestamp"])) if records else "-"
            name = visible("/".join(session_url.rsplit("/", 2)[-2:]))
            tried = (bucket_identity(session) or {}).get("attempts") or []
            changed = last_upload(session)
            status = visible(shown_status(tried[-1], None, changed=changed)) if tried else "-"
            print(
                f"{name:<32} {status:<11} {len(tried):>8} {len(records):>8} {counts['warn']:>6} "
                f"{counts['error']:>6} {streams:>7} {params:>6} {len(bucket_track_names(session)):>6}  {last}"
            )


def _commit(git: object) -> str:
    """An attempt's commit, short, `+dirty` when the tree was; `-` outside a repository."""
    if not isinstance(git, dict):
        return "-"
    commit, dirty = git.get("commit"), git.get("dirty")
    if not isinstance(commit, str):
        return "-"
    return commit[:10] + ("+dirty" if dirty is True else "")


def _session_row(session: Path) -> tuple[str, int, int, dict[str, int], str, int, str]:
    tried = attempts(session)
    status = shown_status(tried[-1], session) if tried else "-"
    counts = dict.fromkeys(LEVELS, 0)
    total, last = 0, "-"
    log_file = session / LOG_FILE
    try:
        mode: int | None = os.stat(log_file).st_mode
    except FileNotFoundError:  # a session of tracks only
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        raise IsADirectoryError(errno.EISDIR, "not a file", str(log_file))
    if mode is not None:
        for record in iter_logs(log_file):
            total += 1
            level = record.get("level", "info")
            counts[level] = counts.get(level, 0) + 1
            last = str(record.get("timestamp", last))
    return status, len(tried), total, counts, _count_params(session), len(track_names(session)), visible(last)


def _count_params(session: Path) -> str:
    try:
        return str(len(read_params(session)))
    except FileNotFoundError:
        return "0"
    except ValueError:  # not a JSON object: `dreamlake params` says why
        return "?"


def cmd_tracks(args: argparse.Namespace) -> None:
    if is_url(args.path):
        _bucket_tracks(args)
        return
    session = Path(args.path)
    if args.name is None:
        if args.follow:
            raise UsageError(
                "--follow follows one track: give its name (dreamlake tracks PATH NAME --follow)"
            )
        if not session.is_dir():
            raise UsageError(f"no session folder at {session}")
        _list_tracks(session, args.json)
        return
    try:
        track_file(session, args.name)
    except (FileNotFoundError, ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    out = sys.stdout
    points = follow_track(session, args.name) if args.follow else iter_track(session, args.name)
    for point in points:
        if args.json:
            out.write(orjson.dumps(point).decode())
        else:
            fields = " ".join(f"{visible(k)}={visible(orjson.dumps(v).decode())}" for k, v in _fields(point))
            out.write(f"{point.get('index', '?'):>8}  {visible(str(point.get('createdAt', '')))}  {fields}")
        out.write("\n")
        if args.follow:
            out.flush()


def _bucket_tracks(args: argparse.Namespace) -> None:
    """`dreamlake tracks s3://...[ NAME]`: the tracks, or one track's points from every stream."""
    from .._read._bucket import BucketSession, bucket_track_names, read_bucket_track

    if args.follow:
        raise UsageError("--follow follows a local track; for a bucket, run dreamlake tracks again")
    with bucket_errors(args.path):
        if args.name is None:
            names = bucket_track_names(BucketSession(args.path))
            if not names:
                raise UsageError(f"no tracks in {args.path}")
            for name in names:
                points = read_bucket_track(args.path, name)
                if args.json:
                    print(orjson.dumps({"name": name, "points": len(points)}).decode())
                else:
                    print(f"{visible(name):<32} {len(points):>8}")
            return
        for point in read_bucket_track(args.path, args.name):
            if args.json:
                print(orjson.dumps(point).decode())
            else:
                fields = " ".join(
                    f"{visible(k)}={visible(orjson.dumps(v).decode())}" for k, v in _fields(point)
                )
                created = visible(str(point.get("createdAt", "")))
                print(f"{point.get('index', '?'):>8}  {created}  [{visible(point['stream'])}]  {fields}")


def _fields(point: dict[str, Any]) -> list[tuple[str, Any]]:
    data = point.get("data")
    return list(data.items()) if isinstance(data, dict) else [("data", data)]


def _list_tracks(session: Path, as_json: bool = False) -> None:
    names = track_names(session)
    if not names:
        raise UsageError(f"no tracks in {session} (its {TRACKS} folder is empty or missing)")
    rows = []
    for name in names:
        first = next(iter_track(session, name), None)
        last = last_point(track_file(session, name))
        if as_json:
            count = count_points(track_file(session, name))
            print(orjson.dumps({"name": name, "points": count, "first": first, "last": last}).decode())
            continue
        values = " ".join(f"{visible(k)}={visible(orjson.dumps(v).decode())}" for k, v in _fields(last or {}))
        rows.append((visible(name), count_points(track_file(session, name)), first, last, values))
    if as_json:
        return
    width = max(12, *(len(row[0]) for row in rows))
    print(f"{'TRACK':<{width}} {'POINTS':>8}  {'FIRST':<27} {'LAST':<27} LAST VALUES")
    for name, count, first, last, values in rows:
        start, end = (visible(str((p or {}).get("createdAt", "-"))) for p in (first, last))
        print(f"{name:<{width}} {count:>8}  {start:<27} {end:<27} {values}")


def cmd_demo(args: argparse.Namespace) -> None:
    """A short simulated training run, logged like the docs' training-loop pattern."""
    epochs, batches = 3, 300
    with Session(name="mnist-demo", workspace="demo") as session:
        session.parameters().set(
            model={"architecture": "resnet50", "pretrained": True},
            training={"epochs": epochs, "batch_size": 64, "learning_rate": 0.1, "optimizer": "sgd"},
        )
        session.log("Training started", metadata={"model": "ResNet-50", "epochs": epochs})
        for epoch in range(1, epochs + 1):
            session.log(f"Epoch {epoch}/{epochs}")
            losses = []
            for batch in range(batches):
                loss = math.exp(-(epoch * batches + batch) / 500) + random.random() * 0.05
                losses.append(loss)
                session.track("train/loss").append(
                    value=loss, step=(epoch - 1) * batches + batch, epoch=epoch
                )
                if batch % 100 == 0:
                    session.log(f"Batch {batch}", level="debug", metadata={"batch_loss": loss})
            mean = sum(losses) / len(losses)
            accuracy = 0.9 - mean / 2
            session.track("val/accuracy").append(value=accuracy, epoch=epoch)
            session.track("learning_rate").append(value=0.1 * 0.5 ** (epoch - 1), epoch=epoch)
            session.log(f"Epoch {epoch} complete", metadata={"epoch": epoch, "train_loss": mean})
            if mean > 0.3:
                session.log("Loss still high", level="warn", metadata={"train_loss": mean})
        session.log("Training complete")
    print(f"Logged a demo training run to {session.log_file}\n")
    print(f"$ dreamlake params {session.path}")
    cmd_params(argparse.Namespace(path=session.path, json=False))
    print(f"\n$ dreamlake tracks {session.path}")
    _list_tracks(session.path)
    print(f"\n$ dreamlake logs {session.path} --level info")
    for record in _select(iter_logs(session.log_file), "info", None, None):
        print(format_record(record, use_color(sys.stdout)))
    python, path = python_here(), shlex.quote(os.path.relpath(session.path))
    print("\nTo look at it, in the terminal or as one page:")
    print(f"  {python} -m pip install 'plotext>=6,<7'   # once: the terminal charts' one dependency")
    print(f"  {python} -m dreamlake plot {path}")
    print(f"  {python} -m dreamlake plot {path} --html report.html")


def cmd_params(args: argparse.Namespace) -> None:
    with bucket_errors(args.path) if is_url(args.path) else contextlib.nullcontext():
        try:
            params = read_params(args.path)
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(str(exc)) from None
    if args.json:
        print(orjson.dumps(params, None, orjson.OPT_INDENT_2).decode())
        return
    rows = [(visible(key), visible(orjson.dumps(value).decode())) for key, value in params.items()]
    width = max((len(key) for key, _ in rows), default=0)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def cmd_plot(args: argparse.Namespace) -> None:
    from .._plot._series import runs_of
    from .._plot._term import load_plotext

    if args.html is not None and args.follow:
        raise UsageError("--follow redraws in the terminal; it cannot go with --html (leave one out)")
    if args.html is None:
        try:
            load_plotext()
        except ImportError as exc:
            raise UsageError(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="dreamlake-plot-") as copies:
        paths = local_paths(args.paths, Path(copies), args.follow)
        try:
            runs = runs_of(paths)
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
        _plot_runs(args, runs)


def _plot_runs(args: argparse.Namespace, runs: list[Any]) -> None:
    try:
        if args.html is not None:
            _plot_html(args, runs)
        else:
            _plot_terminal(args, runs)
    except OSError as exc:  # a folder that cannot be listed, say: one line, not a traceback
        if exc.filename is None:  # not a file read, but stdout: a closed pipe or a full disk
            raise
        raise UsageError(f"cannot read {visible(str(exc.filename or ''))}: {exc.strerror or exc}") from None


def _plot_terminal(args: argparse.Namespace, runs: list[Any]) -> None:
    from .._plot._series import Watch, collect
    from .._plot._term import terminal_columns

    color = use_color(sys.stdout)
    if not args.follow:
        notes: list[str] = []
        series = collect(runs, args.track, args.field, args.x == "time", terminal_columns(), notes)
        _tell(notes, set())
        _found_some(series, args, runs)
        _draw(series, runs, color)
        return
    told: set[str] = set()
    # Ctrl-C ends the command between redraws: raised inside plotext, it leaves half-built
    # objects that complain when the interpreter exits.
    interrupted = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.set())
    try:
        watch = Watch(runs, args.track, args.field, args.x == "time")
        while not interrupted.is_set():
            notes = []
            series = watch.collect(terminal_columns(), notes)
            if color:
                sys.stdout.write("\x1b[H\x1b[2J")  # redraw in place
            _draw(series, runs, color)
            _tell(notes, set() if color else told)  # the screen was cleared: say them again
            sys.stdout.flush()
            interrupted.wait(args.interval)  # ok: --follow polls the files
    finally:
        signal.signal(signal.SIGINT, previous)
    raise KeyboardInterrupt  # ends as Ctrl-C does anywhere else: quietly, status 130


def _draw(series: dict[str, list[Any]], runs: list[Any], color: bool) -> None:
    from .._plot._term import draw

    if series:
        draw(series, sys.stdout, color)
    else:
        print(f"no numeric series in {', '.join(visible(str(run.path)) for run in runs)}")


def _found_some(series: dict[str, list[Any]], args: argparse.Namespace, runs: list[Any]) -> None:
    """Nothing to draw is an error that says what was looked for, and where."""
    if series:
        return
    where = ", ".join(visible(str(run.path)) for run in runs)
    given = (("--track", args.track), ("--field", args.field))
    chosen = " or ".join(f"{flag} {visible(repr(value))}" for flag, value in given if value is not None)
    raise UsageError(f"nothing matches {chosen} in {where}" if chosen else f"no numeric series in {where}")


def _tell(notes: list[str], told: set[str]) -> None:
    """Lines skipped and files not read, on stderr, each once."""
    for note in notes:
        if note not in told:
            told.add(note)
            print(f"dreamlake plot: {visible(note)}", file=sys.stderr)


def _plot_html(args: argparse.Namespace, runs: list[Any]) -> None:
    from .._plot._html import COLUMNS, page
    from .._plot._series import collect

    notes: list[str] = []
    series = collect(runs, args.track, args.field, args.x == "time", COLUMNS, notes)
    _tell(notes, set())
    _found_some(series, args, runs)
    title = "dreamlake: " + ", ".join(run.name for run in runs)
    try:
        Path(args.html).write_text(page(runs, series, title), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {args.html}: {exc.strerror or exc}") from None
    count = sum(len(members) for members in series.values())
    print(f"wrote {args.html}: {len(series)} series, {count} lines, {len(runs)} runs")


def cmd_bench(args: argparse.Namespace) -> None:
    from .._bench._scenarios import command  # the contenders import logging's handlers, and maybe peers

    terminal = sys.stderr is not None and sys.stderr.isatty()  # None when started with 2>&-
    command(args.quick, args.json, sys.stdout, sys.stderr if terminal else None)


def cmd_sync(args: argparse.Namespace) -> None:
    from .._remote import Remote, scrubbed, sync

    url = args.remote if args.remote is not None else os.environ.get("DREAMLAKE_REMOTE")
    if not url:
        msg = "sync needs --remote s3://bucket/prefix (or DREAMLAKE_REMOTE)"
        raise UsageError(msg)
    try:
        remote = Remote.parse(url)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    changed = failed = 0
    for session in sessions_in(Path(os.path.abspath(args.path))):  # `sync .` names its folder too
        try:
            shipped = sync(session, remote, session.parent.name, session.name, _waiting_for(session))
        except (ImportError, ValueError) as exc:  # no client; a name that cannot be a key
            raise UsageError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - the bucket's or the network's: said, never with credentials
            print(f"dreamlake: sync of {session} to {remote} failed: {scrubbed(str(exc))}", file=sys.stderr)
            failed += 1
            continue
        print(
            f"{session}: {shipped.chunks} chunks ({shipped.records} records, {shipped.bytes:,} bytes) shipped"
            + (f", {shipped.found} found there already" if shipped.found else "")
            + (f", {shipped.merged} JSON objects merged" if shipped.merged else "")
            + (f", {shipped.files} files" if shipped.files else "")
        )
        changed += shipped.chunks + shipped.merged + shipped.files
    if failed:
        raise SystemExit(1)
    if not changed:
        what = f"{remote} holds every record, parameter and file under {args.path}"
        print(f"dreamlake: nothing new to ship: {what}", file=sys.stderr)
        raise SystemExit(3)


def _waiting_for(session: Path) -> Callable[[], None]:
    def say() -> None:
        print(
            f"dreamlake: another upload of {session} is running (a process logging to it, or another "
            "sync); waiting for it to end its round",
            file=sys.stderr,
            flush=True,
        )

    return say


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dreamlake", description="Read and watch dreamlake logs, parameters and tracks."
    )
    parser.add_argument("--version", action="version", version=f"dreamlake {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    logs = sub.add_parser("logs", help="print a session's records")
    logs.add_argument("path", help="a session folder, its logs.jsonl, or an s3:// URL of a session")
    logs.add_argument("--level", help="this level and the more severe ones")
    logs.add_argument("--grep", help="only records whose message or metadata contain TEXT")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new records")
    logs.add_argument("--json", action="store_true", help="print the records as JSON Lines")
    logs.add_argument("--since", help="ISO 8601 time, or an age: 90s, 10m, 2h, 1d")
    logs.set_defaults(run=cmd_logs)
    ls = sub.add_parser("ls", help="list workspaces and sessions")
    ls.add_argument(
        "local_path",
        nargs="?",
        default=None,
        help="a folder of sessions (default: $DREAMLAKE_LOCAL_PATH, else .dreamlake), or an s3:// URL "
        "of a workspace",
    )
    ls.set_defaults(run=cmd_ls)
    params = sub.add_parser("params", help="print a session's parameters")
    params.add_argument("path", help="a session folder, or an s3:// URL of a session")
    params.add_argument("--json", action="store_true", help="print them as one JSON object")
    params.set_defaults(run=cmd_params)
    tracks = sub.add_parser("tracks", help="list a session's tracks, or print one track's points")
    tracks.add_argument("path", help="a session folder, or an s3:// URL of a session")
    tracks.add_argument("name", nargs="?", help="a track's name, such as train/loss")
    tracks.add_argument("--follow", "-f", action="store_true", help="keep printing new points")
    tracks.add_argument("--json", action="store_true", help="print the points as JSON Lines")
    tracks.set_defaults(run=cmd_tracks)
    plot = sub.add_parser(
        "plot",
        help="draw tracks and numeric log metadata: in the terminal, or as one HTML page",
        description="Draw every track field (against step, else epoch, else index) and every numeric "
        "metadata field of the logs (against sequence number) of one or more sessions, one chart a "
        "series, the runs overlaid. Needs plotext (pip install 'plotext>=6,<7') for the terminal; --html "
        "needs nothing more.",
    )
    plot.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="session, workspace or local_path folders, or s3:// URLs of them",
    )
    plot.add_argument("--html", metavar="FILE", help="write one self-contained HTML page instead")
    plot.add_argument(
        "--track", metavar="GLOB", action=_Once, help="only these tracks (a glob such as 'train/*')"
    )
    plot.add_argument("--field", metavar="GLOB", action=_Once, help="only these log metadata fields")
    plot.add_argument("--x", choices=("step", "time"), default="step", help="x axis (default: step)")
    plot.add_argument("--follow", "-f", action="store_true", help="redraw as new points arrive")
    plot.add_argument("--interval", type=_seconds, default=2.0, help=argparse.SUPPRESS)
    plot.set_defaults(run=cmd_plot)
    compare = sub.add_parser(
        "runs",
        help="compare runs: status, start, duration, the parameters that differ, chosen metrics",
        description="One row per run under each PATH: its status (crashed? for a run whose process is "
        "gone, or whose files have not changed for 10 minutes), start, duration, the parameters that "
        "differ between the runs, and for each --metric the last, smallest and largest value.",
    )
    compare.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="session, workspace or local_path folders, or s3:// URLs of them",
    )
    compare.add_argument(
        "--metric",
        action="append",
        metavar="TRACK[:FIELD]",
        help="a track whose last, min and max to show (its field `value`, or FIELD); repeatable",
    )
    compare.add_argument("--sort", metavar="COLUMN", help="sort by this column (default: run)")
    compare.add_argument("--desc", action="store_true", help="largest first")
    compare.add_argument("--json", action="store_true", help="print the rows as one JSON array")
    compare.add_argument("--csv", action="store_true", help="print the rows as CSV")
    compare.set_defaults(run=cmd_runs)
    files = sub.add_parser("files", help="list the files kept with sessions (session.files().upload)")
    files.add_argument("path", help="a session, workspace or local_path folder")
    files.add_argument("--under", metavar="FOLDER", help="only files in this virtual folder, such as /models")
    files.add_argument("--json", action="store_true", help="print the entries as JSON Lines")
    files.set_defaults(run=cmd_files)
    sync = sub.add_parser(
        "sync",
        help="ship sessions' records, points and parameters to an S3-compatible bucket",
        description="Upload what the bucket does not hold yet of each session under PATH, as chunks "
        "of whole records keyed by their numbers (resumable: the bucket's listing says where each "
        "stream stands). Credentials and endpoint come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
        "AWS_ENDPOINT_URL and AWS_REGION. Exit status: 0 shipped, 1 failed, 2 bad usage, 3 nothing "
        "new to ship. Needs the S3 client: pip install 'dreamlake[s3]'.",
    )
    sync.add_argument("path", help="a session, workspace or local_path folder")
    sync.add_argument("--remote", help="s3://bucket/prefix (default: $DREAMLAKE_REMOTE)")
    sync.set_defaults(run=cmd_sync)
    demo = sub.add_parser("demo", help="log a short simulated training run and show it")
    demo.set_defaults(run=cmd_demo)
    bench = sub.add_parser(
        "bench",
        help="measure dreamlake on this machine next to its floors and other loggers (~25 s)",
        description="Measure the cost of a call, the throughput to disk, the overhead in a training "
        "loop and that of whole training runs (a fresh process each), for dreamlake, a no-op call, a "
        "synchronous orjson writer and the loggers installed here. Writes only under a temporary folder, "
        "removed at the end.",
    )
    bench.add_argument("--quick", action="store_true", help="fewer calls and one run: ~4 s")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.set_defaults(run=cmd_bench)
    return parser


def _seconds(text: str) -> float:
    """A poll interval: a positive, finite number of seconds."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        msg = f"must be a positive number of seconds, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return seconds


class _Once(argparse.Action):
    """An option that takes one value: given twice, an error instead of keeping the last."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option: str | None = None,
    ) -> None:
        if getattr(namespace, self.dest) is not None:
            parser.error(
                f"{option} is given twice: it takes one glob, such as 'train/*' (one that matches both)"
            )
        setattr(namespace, self.dest, values)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if sys.stdout is None:  # started with its output closed (`>&-`): nothing could be shown
        if sys.stderr is not None:
            print("dreamlake: standard output is closed; nothing to show", file=sys.stderr)
        return 2
    for stream in (sys.stdout, sys.stderr):  # "café" on an ASCII terminal: shown as \xe9, no crash
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    try:
        args.run(args)
    except UsageError as exc:
        print(f"dreamlake: {visible(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `dreamlake logs ... | head`
        sys.stderr.close()
        return 0
    except OSError as exc:  # a path too long, a folder where a file should be, no permission...
        where = f"{exc.filename}: " if exc.filename is not None else ""
        print(f"dreamlake: {visible(where)}{visible(exc.strerror or str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
