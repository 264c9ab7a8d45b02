"""dreamlake.log() used like print(), and where sessions go by default."""

import subprocess
import sys
from pathlib import Path

import pytest

from dreamlake import Session
from dreamlake._default import _script
from dreamlake._format import visible


def test_second_positional_argument_is_named_as_the_level(tmp_path: Path) -> None:
    """log("hello", "world"): one ValueError, not chained, naming the level and the way out."""
    with Session(name="s", workspace="w", local_path=tmp_path) as s:
        with pytest.raises(
            ValueError, match=r"^level \(log\(\)'s second argument, or level=\) must be one of 'debug'"
        ) as info:
            s.log("hello", "world")
    assert info.value.__suppress_context__ and "metadata={...}" in str(info.value)


@pytest.mark.parametrize(
    ("argv0", "expected"),
    [("-c", "python-c"), ("-", "stdin"), ("", "python"), ("-x.py", "python-x"), ("/a/train.py", "train")],
)
def test_default_session_name_never_starts_with_a_dash(
    monkeypatch: pytest.MonkeyPatch, argv0: str, expected: str
) -> None:
    monkeypatch.setattr(sys, "argv", [argv0])
    assert expected == _script()


def test_local_path_defaults_to_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert tmp_path / ".dreamlake" / "w" / "s" == Session(name="s", workspace="w").path
    monkeypatch.setenv("DREAMLAKE_LOCAL_PATH", str(tmp_path / "data"))
    assert tmp_path / "data" / "w" / "s" == Session(name="s", workspace="w").path


def test_python_c_default_session_goes_to_the_environment_variable(tmp_path: Path) -> None:
    env = {"DREAMLAKE_LOCAL_PATH": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    subprocess.run(
        [sys.executable, "-c", "import dreamlake; dreamlake.log('hi')"],
        cwd=tmp_path,
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
    )
    [folder] = (tmp_path / "data" / "default").iterdir()
    assert folder.name.startswith("python-c-")


@pytest.mark.parametrize("code", [0x202E, 0x2066, 0x2069, 0x202A, 0x202D, 0x200E, 0x200F])
def test_bidi_controls_are_escaped(code: int) -> None:
    assert f"a\\u{code:04x}b" == visible(f"a{chr(code)}b")


def test_ls_without_a_folder_reads_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A session opened with no local_path is listed by a bare `dreamlake ls`, wherever the variable points."""
    from dreamlake._cli._main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DREAMLAKE_LOCAL_PATH", str(tmp_path / "runs"))
    with Session(name="s", workspace="w") as s:
        s.log("hi")
    assert 0 == main(["ls"])
    assert "w/s" in capsys.readouterr().out


def test_an_empty_local_path_is_refused() -> None:
    """'' would mean the current folder, while an empty DREAMLAKE_LOCAL_PATH means .dreamlake."""
    with pytest.raises(ValueError, match="local_path must name a folder, got '' \\(leave it out"):
        Session(name="s", workspace="w", local_path="")
