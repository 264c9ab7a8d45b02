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

# Characters a terminal may obey as commands, shown as escapes instead: C0
# controls but TAB, DEL, and C1 controls. A logged "\x1b]0;title\x07" or
# "\x1b[2J" is then printed as text, and a record is always one line.
_VISIBLE: dict[int, str] = {
    code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)] if code != 0x09
}
_VISIBLE.update({0x0A: "\\n", 0x0D: "\\r"})
# Lone surrogates, such as the bytes of a file name that is not UTF-8 (U+DC80 to U+DCFF for
# bytes 0x80 to 0xFF), cannot be written to a UTF-8 stream: shown as the escape of that byte.
_VISIBLE.update({code: f"\\u{code:04x}" for code in range(0xD800, 0xE000)})
_VISIBLE.update({0xDC00 + byte: f"\\x{byte:02x}" for byte in range(0x80, 0x100)})
# Bidirectional controls reorder what follows on the line: a name that ends in U+202E shows
# the next columns backwards. Shown as escapes too (they are not printable, so rarely seen).
_BIDI = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_VISIBLE.update({code: f"\\u{code:04x}" for code in _BIDI})


def visible(text: str) -> str:
    """`text` with every control character but TAB, and every bidirectional control, written as an
    escape (`\\x1b`, `\\n`, `\\u202e`)."""
    # isprintable() is False for every control character and fast in C; most text passes it.
    return text if text.isprintable() else text.translate(_VISIBLE)


def use_color(stream: TextIO) -> bool:
    """Colour for a terminal, unless NO_COLOR is set."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def format_record(record: dict[str, Any], color: bool = False) -> str:
    """One human-readable line: time, level, message, metadata as key=value.

    Every field may come from a hostile file, so control characters in any of
    them are shown as escapes; the level colour is the only one we emit.
    """
    level = str(record.get("level", "?"))
    name = f"{visible(level.upper()):<5}"
    if color and level in _COLORS:
        name = f"{_COLORS[level]}{name}{_RESET}"
    text = str(record.get("message", ""))
    metadata = record.get("metadata")
    if isinstance(metadata, dict) and metadata:
        text += "  " + " ".join(f"{key}={metadata_text(value)}" for key, value in metadata.items())
    where = f"[{visible(str(record['stream']))}]  " if "stream" in record else ""  # read from a bucket
    return f"{visible(str(record.get('timestamp', '?')))}  {name}  {where}{visible(text)}"


def metadata_text(value: Any) -> str:
    """A metadata value as text: a string as it is, anything else as compact JSON."""
    return value if isinstance(value, str) else orjson.dumps(value, default=str).decode()


def echo(record: dict[str, Any], stream: TextIO | None = None) -> None:
    """Write `record` as a readable line to `stream` (stderr by default), coloured on a terminal."""
    stream = stream or sys.stderr
    stream.write(format_record(record, use_color(stream)) + "\n")
