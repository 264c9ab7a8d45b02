"""Where a command reads from: local folders, or s3:// URLs copied down or read in place."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from .._read._bucket import is_url
from ._usage import UsageError


@contextlib.contextmanager
def bucket_errors(url: str) -> Iterator[None]:
    """A bucket's errors as the CLI's: a bad URL or a missing client is a usage error (2), the
    network's or the bucket's one line without credentials (exit 1)."""
    from .._remote import scrubbed

    try:
        yield
    except (ImportError, ValueError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None
    except (UsageError, BrokenPipeError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - the network's or the bucket's
        print(f"dreamlake: reading {url} failed: {scrubbed(str(exc))}", file=sys.stderr)
        raise SystemExit(1) from None


def local_paths(given: list[str], into: Path, follow: bool = False) -> list[str | os.PathLike[str]]:
    """The paths given, the s3:// URLs among them copied down under `into` first (the tracks,
    parameters and identity of each session there)."""
    if not any(is_url(path) for path in given):
        return list(given)
    if follow:
        raise UsageError("--follow redraws local folders; plot an s3:// URL without it")
    from .._read._bucket import copy_down

    paths: list[str | os.PathLike[str]] = []
    for number, path in enumerate(given):
        if not is_url(path):
            paths.append(path)
            continue
        with bucket_errors(path):
            folders = copy_down(path, into / str(number))
        if not folders:
            raise UsageError(
                f"no dreamlake session at {path}: give s3://bucket/prefix/workspace (or .../session)"
            )
        paths.extend(folders)
    return paths
