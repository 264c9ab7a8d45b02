"""The command line, through `python -m dreamlake` and through main()."""

import os
import shlex
import signal
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from dreamlake import Session, read_params
from dreamlake._cli._main import format_record, main, parse_since

from .follower import following, interrupt


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    return subprocess.run(
        [sys.executable, "-m", "dreamlake", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.fixture
def logged(tmp_path: Path) -> Session:
    with Session(name="run", workspace="ws", local_path=tmp_path / ".dreamlake") as s:
        s.log("start", metadata={"lr": 0.1})
        s.log("slow step", level="warn", metadata={"ms": 250})
        s.log("nan loss", level="error", metadata={"loss": float("nan")})
    return s


def test_logs_prints_readable_lines(logged: Session, tmp_path: Path) -> None:
    result = cli("logs", str(logged.path), cwd=tmp_path)
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and len(lines) == 3
    assert "INFO" in lines[0] and "start" in lines[0] and "lr=0.1" in lines[0]
    assert "\033[" not in result.stdout, "no colour when the output is not a terminal"


def test_logs_json_level_and_grep(logged: Session, tmp_path: Path) -> None:
    result = cli("logs", str(logged.log_file), "--json", "--level", "warn", cwd=tmp_path)
    assert [orjson.loads(line)["message"] for line in result.stdout.splitlines()] == [
        "slow step",
        "nan loss",
    ]
    grep = cli("logs", str(logged.path), "--grep", "NaN", cwd=tmp_path)
    assert [line.split("  ")[2] for line in grep.stdout.splitlines()] == ["nan loss"]


def test_logs_since(logged: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["logs", str(logged.path), "--since", "1h"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert main(["logs", str(logged.path), "--since", "2999-01-01T00:00:00Z"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "args",
    [
        ["logs", "missing"],
        ["logs", ".", "--level", "loud"],
        ["logs", ".", "--since", "yesterday"],
        ["ls", "nowhere"],
    ],
)
def test_errors_are_one_line_without_traceback(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "logs.jsonl").write_text("")
    result = cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("dreamlake: ")


def test_ls_counts_records_and_problems(logged: Session, tmp_path: Path) -> None:
    result = cli("ls", cwd=tmp_path)
    header, line, blank, attempts_header, attempt = result.stdout.splitlines()
    assert header.split()[:4] == ["SESSION", "STATUS", "ATTEMPTS", "RECORDS"]
    assert line.split()[:8] == ["ws/run", "completed", "1", "3", "1", "1", "0", "0"]
    assert (blank, attempts_header.split()[:2]) == ("", ["ATTEMPT", "STATUS"]), (
        "one session: its attempts too"
    )
    assert attempt.split()[:2] == ["1", "completed"]
    assert str(os.getpid()) in attempt.split() and attempt.endswith(shlex.join(sys.argv))
    logged.open()
    logged.params(lr=0.1, model={"depth": 50})
    assert cli("ls", cwd=tmp_path).stdout.splitlines()[1].split()[1:3] == ["running", "2"]
    logged.close()
    assert cli("ls", cwd=tmp_path).stdout.splitlines()[1].split()[7] == "2"


def test_demo_writes_a_session_and_shows_it(tmp_path: Path) -> None:
    result = cli("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    log_file = tmp_path / ".dreamlake" / "demo" / "mnist-demo" / "logs.jsonl"
    assert str(log_file.relative_to(tmp_path)) in result.stdout
    assert "Training complete" in result.stdout
    assert log_file.read_bytes().count(b"\n") > 10
    assert "training.learning_rate  0.1" in result.stdout, "the demo shows its parameters"
    assert read_params(log_file.parent)["model.architecture"] == "resnet50"


def test_follow_prints_records_another_process_writes(logged: Session, tmp_path: Path) -> None:
    with following("logs", str(logged.path), "--follow", "--json") as follower:
        assert follower.stdout is not None
        assert orjson.loads(follower.stdout.readline())["message"] == "start"
        follower.stdout.readline(), follower.stdout.readline()
        writer = subprocess.run(
            [
                sys.executable,
                "-c",
                "from dreamlake import Session\n"
                f"with Session('run', 'ws', local_path={str(tmp_path / '.dreamlake')!r}) as s:\n"
                "    s.log('from another process')",
            ],
            timeout=60,
        )
        assert writer.returncode == 0
        assert orjson.loads(follower.stdout.readline())["message"] == "from another process"
        assert "Traceback" not in interrupt(follower)


def test_format_record_colours_levels_when_asked() -> None:
    record = {"timestamp": "t", "level": "error", "message": "m", "metadata": {"a": [1, 2]}}
    assert format_record(record) == "t  ERROR  m  a=[1,2]"
    assert "\033[31m" in format_record(record, color=True)


def test_parse_since_accepts_iso_and_ages() -> None:
    assert parse_since("2025-10-25T10:30:00Z") == "2025-10-25T10:30:00.000000Z"
    assert parse_since("2025-10-25T12:30:00+02:00") == "2025-10-25T10:30:00.000000Z"
    assert parse_since("10m") < parse_since("1m")


def test_follow_prints_a_half_written_record_once_and_follows_a_replaced_file(tmp_path: Path) -> None:
    """--follow completes a line that was half-written at its start, then reads a new file from its start."""

    def line(message: str) -> bytes:
        return orjson.dumps({"timestamp": "t", "level": "info", "message": message, "metadata": None}) + b"\n"

    log_file = tmp_path / "logs.jsonl"
    half = line("half-written")
    log_file.write_bytes(line("first") + half[:12])
    follower = subprocess.Popen(
        [sys.executable, "-m", "dreamlake", "logs", str(log_file), "--follow", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(
        30, follower.kill
    )  # a record never printed fails the test instead of hanging it
    watchdog.start()
    with follower:
        try:
            out = follower.stdout
            assert out is not None
            assert orjson.loads(out.readline())["message"] == "first"
            with open(log_file, "ab") as f:
                f.write(half[12:] + line("second"))
            assert [orjson.loads(out.readline())["message"] for _ in range(2)] == ["half-written", "second"]
            log_file.unlink()
            log_file.write_bytes(line("in the new file"))
            assert orjson.loads(out.readline())["message"] == "in the new file"
            follower.send_signal(signal.SIGINT)
            assert follower.wait(timeout=30) == 130
        finally:
            watchdog.cancel()
            follower.kill()


HOSTILE = {
    "timestamp": "2025-01-01T00:00:00Z\x1b[2J",
    "level": "error\x07",
    "message": "owned\x1b]0;title\x07\x1b[2J\rline\nbreak\x9b31m\x7f\ttab",
    "metadata": {"k\x1b[1m": "v\x1b[31m", "nested": ["\x85", "\x1b"]},
    "sequenceNumber": 0,
}


def test_logs_escapes_control_characters_but_json_keeps_the_record(tmp_path: Path) -> None:
    """Readable output shows control characters from a hostile file as escapes; --json prints it exactly."""
    log_file = tmp_path / "logs.jsonl"
    log_file.write_bytes(orjson.dumps(HOSTILE) + b"\n")
    readable = cli("logs", str(log_file), cwd=tmp_path)
    assert readable.returncode == 0, readable.stderr
    assert readable.stdout.count("\n") == 1
    assert not [ch for ch in readable.stdout[:-1] if unicodedata.category(ch) == "Cc" and ch != "\t"]
    assert "owned\\x1b]0;title\\x07\\x1b[2J\\rline\\nbreak\\x9b31m\\x7f\ttab" in readable.stdout
    assert "k\\x1b[1m=v\\x1b[31m" in readable.stdout
    as_json = cli("logs", str(log_file), "--json", cwd=tmp_path)
    assert [orjson.loads(line) for line in as_json.stdout.split("\n")[:-1]] == [HOSTILE]


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    import dreamlake

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert 0 == exited.value.code
    assert f"dreamlake {dreamlake.__version__}\n" == capsys.readouterr().out


def _hostile_sessions(root: Path) -> None:
    for workspace, name in [("ws", "good"), ("ws", "evil\x1b]52;c;aGk=\x07\u202e"), ("ws", "folder-log")]:
        folder = root / workspace / name
        folder.mkdir(parents=True)
        if name == "folder-log":
            (folder / "logs.jsonl").mkdir()  # a log file that is a folder
        else:
            (folder / "logs.jsonl").write_bytes(
                b'{"timestamp":"\\u001b[2J2025","level":"info","message":"m","metadata":null,"sequenceNumber":0}\n'
            )


@pytest.mark.parametrize("where", ["local_path", "workspace", "session"])
def test_ls_takes_what_plot_takes_escapes_names_and_reports_a_broken_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """Names and times print escaped; a broken session is one line on stderr, the rest listed, exit 2."""
    _hostile_sessions(tmp_path)
    path = {"local_path": tmp_path, "workspace": tmp_path / "ws", "session": tmp_path / "ws" / "good"}[where]
    status = main(["ls", str(path)])
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "\u202e" not in out + err and "\x07" not in out
    assert "ws/good" in out
    if where == "session":
        assert 0 == status and "" == err
    else:
        assert 2 == status
        assert "\\x1b]52;c;aGk=\\x07\\u202e" in out
        assert "dreamlake ls: ws/folder-log: cannot read" in err and "1 of 3 sessions" in err


def test_ls_of_a_folder_without_sessions_says_so_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert 2 == main(["ls", str(tmp_path)])
    assert "holds no dreamlake session" in capsys.readouterr().err
    assert 2 == main(["ls", str(tmp_path / "missing")])
    assert "does not exist" in capsys.readouterr().err


def test_logs_of_a_missing_path_says_it_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert 2 == main(["logs", str(tmp_path / "nope")])
    assert f"{tmp_path / 'nope'} does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert 2 == main(["logs", str(tmp_path / "empty")])
    assert "empty has no logs.jsonl: give a session folder that has logs" in capsys.readouterr().err


@pytest.mark.parametrize("age", ["99999999999d", "1" + "0" * 400 + "s"])
def test_since_an_age_older_than_any_date_means_every_record(age: str) -> None:
    assert "0001-01-01T00:00:00.000000Z" == parse_since(age)


def test_a_path_too_long_for_the_system_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ENAMETOOLONG is an OSError like any other: one line naming the problem, exit 2, no traceback."""
    long = str(tmp_path / ("x" * 300))
    for command in (["logs", long], ["ls", long], ["tracks", long], ["params", long]):
        assert 2 == main(command), command
        err = capsys.readouterr().err
        assert err.startswith("dreamlake: ") and err.count("\n") == 1, (command, err)


def test_a_parameters_file_that_is_a_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Session(name="s", workspace="w", local_path=tmp_path) as s:
        s.log("x")
    (s.path / "parameters.json").mkdir()
    assert 2 == main(["params", str(s.path)])
    err = capsys.readouterr().err
    assert err.startswith("dreamlake: ") and "parameters.json" in err and err.count("\n") == 1


@pytest.mark.parametrize(("where", "path"), [("ws/run", "."), ("ws", "."), ("ws/run", ".."), ("ws", "../ws")])
def test_ls_of_a_relative_path_names_sessions_by_workspace_and_name(
    logged: Session,
    where: str,
    path: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`dreamlake ls .` in a session or a workspace folder: `ws/run`, not `/` or `/run`."""
    monkeypatch.chdir(logged.local_path / where)
    assert 0 == main(["ls", path])
    assert capsys.readouterr().out.splitlines()[1].split()[0] == "ws/run"


@pytest.mark.parametrize("reserved", ["tracks", "logs.jsonl", "parameters.json"])
def test_a_session_file_name_cannot_name_a_workspace_or_session(tmp_path: Path, reserved: str) -> None:
    """Such a folder would read as a session's own files and hide the sessions beside it."""
    for kwargs in ({"name": reserved, "workspace": "w"}, {"name": "n", "workspace": reserved}):
        with pytest.raises(ValueError, match="a session folder keeps its own files under that name"):
            Session(local_path=tmp_path, **kwargs)


def test_ls_names_a_log_file_that_is_a_folder_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "w" / "c" / "logs.jsonl").mkdir(parents=True)
    with Session(name="ok", workspace="w", local_path=tmp_path) as s:
        s.log("x")
    assert 2 == main(["ls", str(tmp_path)])
    out, err = capsys.readouterr()
    assert f"dreamlake ls: w/c: cannot read {tmp_path / 'w' / 'c' / 'logs.jsonl'}: not a file" in err
    assert "logs.jsonl/logs.jsonl" not in err and "w/ok" in out


def test_logs_of_a_session_of_tracks_only_says_it_has_no_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Session(name="t", workspace="w", local_path=tmp_path) as s:
        s.track("loss").append(value=1)
    (s.path / "logs.jsonl").unlink()
    assert 2 == main(["logs", str(s.path)])
    assert f"{s.path} has no logs.jsonl" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("9999-12-31T23:59:59-14:00", "9999-12-31T23:59:59.999999Z"),
        ("0001-01-01T00:00:00+00:01", "0001-01-01T00:00:00.000000Z"),
    ],
)
def test_since_an_offset_past_the_ends_of_time_is_clamped(since: str, expected: str) -> None:
    assert expected == parse_since(since)


def test_a_closed_stdout_is_said_on_stderr(tmp_path: Path) -> None:
    """`dreamlake ls >&-`: one line and exit 2, not a traceback or a silent success."""
    done = subprocess.run(
        ["sh", "-c", 'exec "$0" -m dreamlake ls "$1" >&-', sys.executable, str(tmp_path)],
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    assert 2 == done.returncode
    assert "dreamlake: standard output is closed; nothing to show\n" == done.stderr


_AS_NOBODY = """
import os, sys
from dreamlake._cli._main import main
import functools
import dreamlake._plot._html as page, dreamlake._plot._series, dreamlake._plot._term  # before losing root
page._vendored = functools.cache(page._vendored)  # the chart library lies in root's folders
page._vendored("uPlot.min.css"), page._vendored("uPlot.iife.min.js")
if os.geteuid() == 0:
    os.setgid(65534)
    os.setuid(65534)
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A folder others may enter: tests/ tmp folders are root's alone, and root reads anything."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="dreamlake-perm-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        for folder in root.rglob("*"):
            if folder.is_dir():
                folder.chmod(0o755)
        shutil.rmtree(root)


def _as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    """The command as a user who cannot read what was chmod 000 (root can read anything)."""
    return subprocess.run(
        [sys.executable, "-c", _AS_NOBODY, *args], capture_output=True, text=True, timeout=120
    )


def test_folders_that_cannot_be_read_are_named_and_the_rest_listed_and_drawn(shared_root: Path) -> None:
    """One unreadable session, workspace or tracks folder: said on stderr, the others listed and drawn."""
    for workspace, name in [("w", "a"), ("w", "b"), ("w", "c"), ("w2", "d"), ("w", "t")]:
        with Session(name=name, workspace=workspace, local_path=shared_root) as s:
            s.log("hi", metadata={"loss": 0.5})
            s.track("loss").append(value=1.0, step=0)
    (shared_root / "w" / "b").chmod(0)
    (shared_root / "w2").chmod(0)
    (shared_root / "w" / "t" / "tracks").chmod(0)
    out_dir = shared_root / "out"
    out_dir.mkdir(mode=0o777)
    out_dir.chmod(0o777)

    listed = _as_nobody("ls", str(shared_root))
    assert 2 == listed.returncode, listed.stderr
    assert {"w/a", "w/c"} == {line.split()[0] for line in listed.stdout.splitlines()[1:]}
    assert "dreamlake ls: w/b: cannot read" in listed.stderr
    assert f"cannot read {shared_root / 'w2'}" in listed.stderr or "w2: cannot read" in listed.stderr
    assert "dreamlake ls: w/t: cannot read" in listed.stderr and "Traceback" not in listed.stderr

    drawn = _as_nobody("plot", str(shared_root / "w"), "--html", str(out_dir / "p.html"))
    assert 0 == drawn.returncode, drawn.stderr
    assert f"cannot read {shared_root / 'w' / 'b' / 'logs.jsonl'}" in drawn.stderr
    assert f"cannot read {shared_root / 'w' / 't' / 'tracks'}" in drawn.stderr
    assert "4 runs" in drawn.stdout

    tracks = _as_nobody("tracks", str(shared_root / "w" / "t"))
    assert 2 == tracks.returncode
    assert tracks.stderr.startswith("dreamlake: ") and "Permission denied" in tracks.stderr
    assert "no tracks" not in tracks.stderr


@pytest.mark.parametrize("interval", ["-1", "0", "nan", "inf", "x"])
def test_a_poll_interval_that_is_not_a_positive_number_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], interval: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["plot", str(tmp_path), "--follow", "--interval", interval])
    assert 2 == exited.value.code
    assert "must be a positive number of seconds" in capsys.readouterr().err


def test_ls_shows_a_tab_in_a_name_as_an_escape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Session(name="a\tb", workspace="w", local_path=tmp_path) as s:
        s.log("x")
    assert 0 == main(["ls", str(tmp_path)])
    out = capsys.readouterr().out
    assert "w/a\\tb" in out and "\t" not in out


def test_logs_of_a_file_without_records_says_so_and_fails(tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("just some text\nmore text\n")
    result = cli("logs", str(other), cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert "has no records: none of its lines is a dreamlake record" in result.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    result = cli("logs", str(empty), cwd=tmp_path)
    assert result.returncode == 2 and "has no records yet" in result.stderr


def test_logs_reports_torn_lines_after_printing_the_records(logged: Session, tmp_path: Path) -> None:
    with open(logged.log_file, "ab") as f:
        f.write(b'{"timestamp": "2026-01-01T00:00:00Z", "lev\n{"torn')  # a torn line, a partial last
    result = cli("logs", str(logged.path), "--json", cwd=tmp_path)
    assert result.returncode == 0
    assert ["start", "slow step", "nan loss"] == [
        orjson.loads(x)["message"] for x in result.stdout.splitlines()
    ]
    assert "skipped 2 line(s)" in result.stderr and "not records" in result.stderr


def test_output_that_cannot_encode_a_name_escapes_it_instead_of_crashing(tmp_path: Path) -> None:
    root = tmp_path / ".dreamlake"
    with Session(name="café", workspace="ws", local_path=root) as s:
        s.log("naïve")
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    for args in (["ls", str(root)], ["logs", str(s.path)]):
        result = subprocess.run(
            [sys.executable, "-m", "dreamlake", *args], capture_output=True, text=True, timeout=60, env=env
        )
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert "caf\\xe9" in result.stdout or "na\\xefve" in result.stdout
