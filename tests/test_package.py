"""The public surface: what is exported, typed, and importable."""

from pathlib import Path

import dreamlake


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in vars(dreamlake) if not name.startswith("_")}
    assert sorted(dreamlake.__all__) == dreamlake.__all__
    assert set(dreamlake.__all__) == public


def test_package_is_marked_typed() -> None:
    assert (Path(dreamlake.__file__).parent / "py.typed").is_file()
