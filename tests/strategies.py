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
        return {_text(k) if isinstance(k, str) else str(k): expected_json(v) for k, v in value.items()}
    return [expected_json(v) for v in value]


def _text(value: str) -> str:
    return value.encode("utf-8", "backslashreplace").decode("utf-8")
