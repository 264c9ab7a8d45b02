"""Log levels: the five canonical names and the aliases users reach for."""

LEVELS: tuple[str, ...] = ("debug", "info", "warn", "error", "fatal")
"""Canonical level names, least to most severe."""

RANK: dict[str, int] = {name: rank for rank, name in enumerate(LEVELS)}
"""Severity of each canonical name, for "this level and above" filters."""

# Exact spellings resolve with one dict lookup on the hot path; any other
# capitalisation goes through `normalize_level`.
CANONICAL: dict[object, str] = {name: name for name in LEVELS}
CANONICAL.update(warning="warn", critical="fatal")
CANONICAL.update({str(k).upper(): v for k, v in CANONICAL.items()})
INDEX: dict[object, int] = {k: RANK[v] for k, v in CANONICAL.items()}
"""The rank of each exact spelling: what the hot path hands the native queue."""


def normalize_level(level: object) -> str:
    """Return the canonical name for `level`, or raise ValueError naming the valid ones."""
    if isinstance(level, str):
        name = CANONICAL.get(level.lower())
        if name is not None:
            return name
    allowed = ", ".join(repr(name) for name in LEVELS)
    msg = (
        f"level must be one of {allowed} (any case; 'warning' and 'critical' "
        f"are accepted too), got {level!r} ({type(level).__name__})"
    )
    raise ValueError(msg)
