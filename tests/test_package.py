"""The public surface: what is exported, typed, and importable."""

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import dreamlake


def test_all_lists_exactly_the_public_names() -> None:
    public = {  # a public subpackage (dreamlake.integrations) imported meanwhile is no name of __all__
        name
        for name, value in vars(dreamlake).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert sorted(dreamlake.__all__) == dreamlake.__all__
    assert set(dreamlake.__all__) == public


def test_package_is_marked_typed() -> None:
    assert (Path(dreamlake.__file__).parent / "py.typed").is_file()


ROOT = Path(__file__).resolve().parent.parent


def test_version_is_one_string_everywhere() -> None:
    """`dreamlake.__version__` is the version the installed metadata and `--version` give."""
    from importlib.metadata import version

    assert version("dreamlake") == dreamlake.__version__


def _source_tree(into: Path) -> Path:
    """A copy of the sources as a fresh clone has them: no egg-info, whose file list setuptools reuses."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=60)
    if listed.returncode == 0:
        files = [ROOT / name for name in listed.stdout.decode().split("\0") if name]
    else:  # an unpacked sdist
        files = [
            p
            for p in ROOT.rglob("*")
            if p.is_file() and ".egg-info" not in str(p) and "__pycache__" not in str(p)
        ]
    for file in files:
        if file.is_file():
            target = into / file.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target)
    return into


def test_sdist_carries_what_its_tests_need(tmp_path: Path) -> None:
    """An sdist holds the license and every test and benchmark file; its tests collect with no error."""
    source = _source_tree(tmp_path / "source")
    build = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from setuptools import build_meta; print(build_meta.build_sdist({str(tmp_path)!r}))",
        ],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == build.returncode, build.stderr
    with tarfile.open(tmp_path / build.stdout.split()[-1]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # the filter came in 3.10.12
        sdist.extractall(tmp_path / "unpacked", **safe)
    wanted = {
        str(p.relative_to(ROOT)) for folder in ("tests", "benchmarks") for p in (ROOT / folder).rglob("*.py")
    }
    assert {
        "LICENSE",
        "src/dreamlake/py.typed",
        "src/dreamlake/_plot/_vendor/uplot/uPlot.iife.min.js",
        "src/dreamlake/_core.c",
        "src/dreamlake/_core.pyi",
        "setup.py",
        "docs/core.md",
    } <= names
    assert set() == wanted - names
    assert not any("__pycache__" in name for name in names)
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    collect = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=unpacked,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == collect.returncode, collect.stdout[-2000:] + collect.stderr[-2000:]


def test_without_the_native_core_import_fails_with_one_sentence_saying_how_to_get_it() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['dreamlake._core'] = None; import dreamlake"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: dreamlake's native core (dreamlake._core) is missing")
    assert "C compiler" in last and "pip install" in last
