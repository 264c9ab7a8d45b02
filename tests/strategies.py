"""Hypothesis strategies for metadata, and the JSON each value must come back as."""

import math
from typing import Any

from hypothesis import strategies as st

# Text with lone surrogates, control characters and newlines included.
texts = st.text(st.characters(codec=None, categories=None), max_size=20)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.one_of(texts, st.integers(), st.booleans()), children, max_size=4),
    ),
    max_leaves=20,
)
metadata = st.dictionaries(texts, values, max_size=6)


def expected_json(value: Any) -> Any:
    """What the contract says `value` reads back as."""
    if isinstance(value, str):
        return _text(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return dict(zip(expected_keys(value), map(expected_json, value.values()), strict=True))
    return [expected_json(v) for v in value]


def expected_keys(mapping: dict[Any, Any]) -> list[str]:
    """str keys keep their text; any other key is str(key), plus " (type)" (then " 2", " 3"...)
    where that text is taken, so no two keys collide and no value is lost."""
    taken = {_text(k) for k in mapping if isinstance(k, str)}
    names = []
    for key in mapping:
        if isinstance(key, str):
            names.append(_text(key))
            continue
        name = str(key)
        if name in taken:
            name = f"{key} ({type(key).__name__})"
        base, n = name, 2
        while name in taken:
            name, n = f"{base} {n}", n + 1
        taken.add(name)
        names.append(name)
    return names


def _text(value: str) -> str:
    return value.encode("utf-8", "backslashreplace").decode("utf-8")
