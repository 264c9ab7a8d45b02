"""One record as one human-readable line, for the terminal."""

import os
import sys
from typing import Any, TextIO

import orjson

_COLORS = {
    "debug": "\033[2m",
    "info": "\033[32m",
    "warn": "\033[33m",
    "error": "\033[31m",
    "fatal": "\033[1;31m",
}
_RESET = "\033[0m"


def use_color(stream: TextIO) -> bool:
    """Colour for a terminal, unless NO_COLOR is set."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def format_record(record: dict[str, Any], color: bool = False) -> str:
    """One human-readable line: time, level, message, metadata as key=value."""
    level = str(record.get("level", "?"))
    name = f"{level.upper():<5}"
    if color and level in _COLORS:
        name = f"{_COLORS[level]}{name}{_RESET}"
    line = f"{record.get('timestamp', '?')}  {name}  {record.get('message', '')}"
    metadata = record.get("metadata")
    if isinstance(metadata, dict) and metadata:
        line += "  " + " ".join(f"{key}={metadata_text(value)}" for key, value in metadata.items())
    return line


def metadata_text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value, default=str).decode()


def echo(record: dict[str, Any], stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    stream.write(format_record(record, use_color(stream)) + "\n")
