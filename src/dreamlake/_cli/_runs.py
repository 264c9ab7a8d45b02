"""`dreamlake runs`: one row per run, as a table, JSON or CSV."""

from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from .._format import visible
from .._read._bucket import is_url
from .._read._runs import FIXED, runs
from ._places import local_paths
from ._usage import UsageError


def cmd_runs(args: argparse.Namespace) -> None:
    if args.json and args.csv:
        raise UsageError("--json and --csv are two formats: give one")
    with tempfile.TemporaryDirectory(prefix="dreamlake-runs-") as copies:
        paths = local_paths(args.paths, Path(copies))
        try:
            rows = runs(*paths, metrics=args.metric or (), sort=args.sort, descending=args.desc)
        except (FileNotFoundError, ValueError) as exc:
            raise UsageError(str(exc)) from None
    if args.json:
        shown = [{_text(k): _json(v) for k, v in row.items()} for row in rows]
        sys.stdout.write(orjson.dumps(shown, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE).decode())
    elif args.csv:
        names = _names(rows)
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([_csv(row.get(name)) for name in names] for row in rows)
    else:
        print_table(rows)


def print_table(rows: list[dict[str, Any]]) -> None:
    names = _names(rows)
    cells = [[name.upper() if name in FIXED else name for name in names]]
    cells += [[visible(text(name, row.get(name))) for name in names] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(names))]
    for line in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def text(name: str, value: Any) -> str:
    """A cell as the table shows it."""
    if value is None:
        return "-"
    if name == "duration":
        return duration(value)
    if name == "start" and isinstance(value, str):
        return value.replace("T", " ")[:19]
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict, bool)):
        return orjson.dumps(value).decode()
    return str(value)


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _names(rows: list[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return list(names)


def _text(value: str) -> str:
    """A str JSON can hold: a folder name that is not UTF-8 keeps its bytes as \\x escapes."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _json(value: Any) -> Any:
    """A cell as --json gives it: NaN and the infinities as the strings the files store."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {_text(str(k)): _json(v) for k, v in value.items()}
    return value


def _csv(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (float, str)):
        return _json(value)
    if isinstance(value, (list, dict, bool)):
        return orjson.dumps(_json(value)).decode()
    return value


def cmd_files(args: argparse.Namespace) -> None:
    """`dreamlake files PATH`: the files kept with each session under PATH."""
    from .._artifacts import list_files
    from .._read._sessions import sessions_in

    if is_url(args.path):
        raise UsageError(
            "dreamlake files lists local session folders; a bucket holds a run's files under "
            "{session}/files/ (dreamlake sync puts them there)"
        )
    try:
        sessions = sessions_in(Path(args.path))
        rows = [(session, entry) for session in sessions for entry in list_files(session, args.under)]
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if not rows:
        where = f" under {args.under}" if args.under else ""
        raise UsageError(f"no files{where} in {args.path}: keep one with session.files().upload(...)")
    if args.json:
        for session, entry in rows:
            line = {"session": "/".join(session.parts[-2:]), **entry}
            sys.stdout.write(orjson.dumps(_json(line), option=orjson.OPT_APPEND_NEWLINE).decode())
        return
    print_table(
        [
            {
                "SESSION": "/".join(session.parts[-2:]),
                "FILE": f"{str(entry.get('path', '/')).rstrip('/')}/{entry.get('filename')}",
                "SIZE": _size(entry.get("sizeBytes")),
                "CREATED": str(entry.get("createdAt", "")).replace("T", " ")[:19],
                "ID": entry.get("id"),
                "DESCRIPTION": entry.get("description"),
            }
            for session, entry in rows
        ]
    )


def _size(value: Any) -> str:
    if not isinstance(value, int):
        return "?"
    if value < 1024:
        return f"{value} B"
    size = float(value)
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            break
    return f"{size:.1f} {unit}"
