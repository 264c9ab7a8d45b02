"""Readable lines: one record per line, control characters shown as escapes, our colours kept."""

import unicodedata

import pytest

from dreamlake._format import format_record

# C0 controls but TAB, DEL and C1 controls: what a terminal may obey.
CONTROLS = [chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)] if c != 0x09]


def raw_controls(text: str) -> list[str]:
    """The control characters in `text` that a terminal would act on (TAB is harmless)."""
    return [ch for ch in text if unicodedata.category(ch) == "Cc" and ch != "\t"]


def test_no_code_point_reaches_the_terminal_as_a_control_character() -> None:
    """Of all Unicode code points in a message, only TAB is printed as a control character."""
    everything = "".join(map(chr, range(0x110000)))
    assert CONTROLS == raw_controls(everything)
    line = format_record({"timestamp": "t", "level": "info", "message": everything})
    assert raw_controls(line) == []
    assert line.count("\t") == 1


@pytest.mark.parametrize(
    ("char", "shown"),
    [
        ("\x00", "\\x00"),
        ("\x07", "\\x07"),
        ("\x08", "\\x08"),
        ("\x1b", "\\x1b"),
        ("\n", "\\n"),
        ("\r", "\\r"),
        ("\x7f", "\\x7f"),
        ("\x85", "\\x85"),
        ("\x9b", "\\x9b"),
        ("\x9f", "\\x9f"),
    ],
)
def test_control_characters_are_escaped_in_every_field(char: str, shown: str) -> None:
    """Message, metadata keys and values, timestamp and level show the character as an escape."""
    record = {
        "timestamp": f"t{char}",
        "level": f"x{char}",
        "message": f"m{char}m",
        "metadata": {f"k{char}": f"v{char}", "list": [f"w{char}"]},
    }
    line = format_record(record, color=True)
    assert raw_controls(line) == []
    assert line.startswith(f"t{shown}  X{shown}")
    assert f"  m{shown}m  k{shown}=v{shown} " in line


@pytest.mark.parametrize("char", CONTROLS)
def test_no_control_character_reaches_the_terminal(char: str) -> None:
    """Every C0, DEL and C1 control in a message or metadata is escaped; the line stays one line."""
    line = format_record({"timestamp": char, "level": char, "message": char, "metadata": {char: char}})
    assert raw_controls(line) == []
    assert len(line.splitlines()) == 1


def test_terminal_escape_sequences_are_shown_not_obeyed() -> None:
    """A title-setting OSC and a clear-screen CSI in a message are printed as text."""
    record = {"timestamp": "t", "level": "info", "message": "\x1b]0;pwned\x07\x1b[2J", "metadata": None}
    assert format_record(record) == "t  INFO   \\x1b]0;pwned\\x07\\x1b[2J"


def test_tabs_stay_and_our_colours_are_still_emitted() -> None:
    """Tabs are printed as they are, and the level colour we add is the only escape sequence."""
    record = {"timestamp": "t", "level": "error", "message": "a\tb\x1b[0m", "metadata": {"k": "\t"}}
    assert format_record(record, color=True) == "t  \x1b[31mERROR\x1b[0m  a\tb\\x1b[0m  k=\t"
