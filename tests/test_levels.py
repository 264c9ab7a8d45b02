"""Levels: canonical names, any case, aliases, and a clear refusal of anything else."""

import pytest

from dreamlake import LEVELS, Session

from .conftest import read_records


@pytest.mark.parametrize(
    ("given", "stored"),
    [(name, name) for name in LEVELS]
    + [(name.upper(), name) for name in LEVELS]
    + [("Warn", "warn"), ("warning", "warn"), ("WARNING", "warn"), ("Warning", "warn")]
    + [("critical", "fatal"), ("CRITICAL", "fatal"), ("Critical", "fatal"), ("DeBuG", "debug")],
)
def test_level_is_stored_as_canonical_name(session: Session, given: str, stored: str) -> None:
    """Every accepted spelling lands as one of the five canonical names."""
    session.log("m", level=given)
    session.flush()
    assert [r["level"] for r in read_records(session.log_file)] == [stored]


def test_default_level_is_info(session: Session) -> None:
    session.log("m")
    session.flush()
    assert read_records(session.log_file)[0]["level"] == "info"


@pytest.mark.parametrize("bad", ["verbose", "", "warnings", " info", None, 3, ["info"], b"info"])
def test_unknown_level_raises_value_error_and_writes_nothing(session: Session, bad: object) -> None:
    """The error names the valid levels; the neighbours of the bad call still land."""
    session.log("before")
    with pytest.raises(ValueError, match=r"debug.*info.*warn.*error.*fatal") as info:
        session.log("bad", level=bad)  # type: ignore[arg-type]
    assert repr(bad) in str(info.value)
    session.log("after")
    session.flush()
    got = read_records(session.log_file)
    assert [(r["message"], r["sequenceNumber"]) for r in got] == [("before", 0), ("after", 1)]


def test_levels_are_ordered_by_severity() -> None:
    assert LEVELS == ("debug", "info", "warn", "error", "fatal")
