"""session.json: what a run was and how each open() of it ended, whatever ended it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from dreamlake import Session, read_logs
from dreamlake._identity import attempts, shown_status
from dreamlake._remote import host_name

Run = Callable[..., subprocess.CompletedProcess[str]]


def stored(folder: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads((folder / "session.json").read_bytes())
    return loaded


def test_a_run_says_who_ran_it_where_and_that_it_completed(tmp_path: Path) -> None:
    with Session(name="run", workspace="ws", local_path=tmp_path) as s:
        s.log("hi")
        during = stored(s.path)["attempts"]
    assert [a["status"] for a in during] == ["running"]
    assert during[0]["endedAt"] is None
    found = stored(s.path)
    assert (found["name"], found["workspace"]) == ("run", "ws")
    (attempt,) = found["attempts"]
    assert attempt["status"] == "completed"
    assert found["createdAt"] == attempt["startedAt"] < attempt["endedAt"]
    assert attempt["pid"] == os.getpid()
    assert attempt["host"] == host_name()
    assert attempt["argv"] == sys.argv
    assert attempt["cwd"] == os.getcwd()
    assert attempt["python"] == sys.version.split()[0]
    assert "error" not in attempt


def test_each_open_is_an_attempt_and_the_with_block_says_how_it_ended(tmp_path: Path) -> None:
    s = Session(name="run", workspace="ws", local_path=tmp_path)
    with s:
        pass
    with pytest.raises(ValueError, match="boom"), s:
        raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt), s:
        raise KeyboardInterrupt
    s.open()
    s.close()
    found = attempts(s.path)
    assert [(a["status"], a.get("error")) for a in found] == [
        ("completed", None),
        ("failed", "ValueError"),
        ("interrupted", None),
        ("completed", None),
    ]
    assert len({a["id"] for a in found}) == 4
    assert s.read_logs() == [], "session.json is not a record"


def test_sessions_opened_by_two_objects_each_end_their_own_attempt(tmp_path: Path) -> None:
    a = Session(name="run", workspace="ws", local_path=tmp_path).open()
    b = Session(name="run", workspace="ws", local_path=tmp_path).open()
    with pytest.raises(RuntimeError), b:
        raise RuntimeError
    assert [x["status"] for x in attempts(a.path)] == ["running", "failed"]
    a.close()
    assert [x["status"] for x in attempts(a.path)] == ["completed", "failed"]


@pytest.mark.parametrize(
    ("ending", "status", "error"),
    [
        ("pass", "completed", None),
        ("raise KeyError('x')", "failed", "KeyError"),
        ("sys.exit(3)", "completed", None),
        ("os.kill(os.getpid(), signal.SIGTERM)", "interrupted", None),
    ],
)
def test_a_process_that_exits_without_close_says_how_it_ended(
    tmp_path: Path, run_python: Run, ending: str, status: str, error: str | None
) -> None:
    done = run_python(
        f"""
        import os, signal, sys
        from dreamlake import Session, read_logs
        s = Session(name="run", workspace="ws", local_path={str(tmp_path)!r}).open()
        s.log("before")
        {ending}
        """
    )
    (attempt,) = attempts(tmp_path / "ws" / "run")
    assert (attempt["status"], attempt.get("error")) == (status, error), done.stderr
    assert attempt["endedAt"] is not None


def test_a_sigterm_handler_that_lets_the_process_go_on_does_not_make_the_run_interrupted(
    tmp_path: Path, run_python: Run
) -> None:
    done = run_python(
        f"""
        import os, signal
        from dreamlake import Session, read_logs
        s = Session(name="run", workspace="ws", local_path={str(tmp_path)!r}).open()
        signal.signal(signal.SIGTERM, lambda *a: None)  # set after open: dreamlake's own runs first
        s2 = Session(name="other", workspace="ws", local_path={str(tmp_path)!r}).open()
        os.kill(os.getpid(), signal.SIGTERM)
        """
    )
    assert done.returncode == 0, done.stderr
    assert [a["status"] for a in attempts(tmp_path / "ws" / "run")] == ["completed"]


def test_a_killed_run_stays_running_and_is_shown_as_crashed(tmp_path: Path) -> None:
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from dreamlake import Session, read_logs
                s = Session(name="run", workspace="ws", local_path={str(tmp_path)!r}).open()
                s.flush()
                print("open", flush=True)
                sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "open\n"
            folder = tmp_path / "ws" / "run"
            (alive,) = attempts(folder)
            assert shown_status(alive, folder) == "running", "its process is still there"
        finally:
            proc.kill()
            proc.wait(timeout=30)
    (attempt,) = attempts(folder)
    assert (attempt["status"], attempt["endedAt"]) == ("running", None)
    assert shown_status(attempt, folder) == "crashed?"
    elsewhere = {**attempt, "host": "another-host"}
    assert shown_status(elsewhere, folder) == "running", "another host's process cannot be looked up"
    assert shown_status(elsewhere, folder, now=os.stat(folder / "session.json").st_mtime + 601) == "crashed?"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_leaving_does_not_end_its_parents_attempt(tmp_path: Path, run_python: Run) -> None:
    done = run_python(
        f"""
        import os, sys
        from dreamlake import Session, read_logs
        s = Session(name="run", workspace="ws", local_path={str(tmp_path)!r}).open()
        pid = os.fork()
        if pid == 0:
            s.log("from the child")
            s.close()
            sys.exit(0)  # the exit hooks run in the child too
        os.waitpid(pid, 0)
        import json
        print(json.load(open(s.path / "session.json"))["attempts"][0]["status"])
        s.close()
        """
    )
    assert done.stdout == "running\n", done.stderr
    (attempt,) = attempts(tmp_path / "ws" / "run")
    assert (attempt["status"], attempt["pid"]) == ("completed", int(attempt["pid"]))
    assert read_logs(tmp_path / "ws" / "run")[0]["message"] == ("from the child")


def test_rank_and_world_size_are_kept_when_set(tmp_path: Path, run_python: Run) -> None:
    env = {**os.environ, "RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "8"}
    done = run_python(
        f"""
        from dreamlake import Session, read_logs
        with Session(name="run", workspace="ws", local_path={str(tmp_path)!r}):
            pass
        """,
        env=env,
    )
    (attempt,) = attempts(tmp_path / "ws" / "run")
    assert (attempt["rank"], attempt["localRank"], attempt["worldSize"]) == (3, 1, 8), done.stderr


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_inside_a_git_repository_the_commit_and_a_dirty_tree_are_kept(
    tmp_path: Path, run_python: Run
) -> None:
    git_env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=tmp_path, env=git_env, check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    (tmp_path / "train.py").write_text("x = 1\n")
    git("add", "train.py")
    git("commit", "-q", "-m", "first")
    code = """
        from dreamlake import Session, read_logs
        with Session(name="run", workspace="ws", local_path="data"):
            pass
        """
    run_python(code)
    (tmp_path / "train.py").write_text("x = 2\n")
    run_python(code)
    clean, dirty = attempts(tmp_path / "data" / "ws" / "run")
    head = git("rev-parse", "HEAD")
    assert clean["git"] == {"commit": head, "dirty": False}
    assert dirty["git"] == {"commit": head, "dirty": True}


def test_outside_a_git_repository_no_commit_is_made_up(tmp_path: Path, run_python: Run) -> None:
    run_python(
        """
        from dreamlake import Session, read_logs
        with Session(name="run", workspace="ws", local_path="data"):
            pass
        """
    )
    (attempt,) = attempts(tmp_path / "data" / "ws" / "run")
    assert "git" not in attempt


def test_resume_never_refuses_a_folder_that_holds_a_run_and_loses_nothing(tmp_path: Path) -> None:
    with Session(name="run", workspace="ws", local_path=tmp_path, resume="never") as s:
        s.log("first run")
    before = s.log_file.read_bytes()
    again = Session(name="run", workspace="ws", local_path=tmp_path, resume="never")
    with pytest.raises(FileExistsError, match=r"ws/run already holds a run.*resume='never'"):
        again.open()
    assert not again.is_open
    assert s.log_file.read_bytes() == before
    assert [a["status"] for a in attempts(s.path)] == ["completed"]
    s.open()  # the object that made the run goes on with it
    s.close()
    assert len(attempts(s.path)) == 2


def test_resume_never_takes_a_folder_with_only_a_track_as_a_run(tmp_path: Path) -> None:
    with Session(name="run", workspace="ws", local_path=tmp_path) as s:
        s.track("loss").append(value=1.0)
    (s.path / "session.json").unlink()
    with pytest.raises(FileExistsError):
        Session(name="run", workspace="ws", local_path=tmp_path, resume="never").open()


def test_of_two_processes_opening_one_name_with_resume_never_one_wins(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from dreamlake import Session, read_logs
        sys.stdin.read()
        try:
            with Session(name="run", workspace="ws", local_path={str(tmp_path)!r}, resume="never") as s:
                s.log("won")
        except FileExistsError:
            print("refused")
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outs = [p.communicate("go", timeout=60)[0] for p in procs]
    assert sorted(outs) == ["", "refused\n", "refused\n", "refused\n"]
    assert [r["message"] for r in read_logs(tmp_path / "ws" / "run")] == ["won"]


@pytest.mark.parametrize("bad", ["always", None, True, "NEVER"])
def test_resume_takes_allow_or_never(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match=r"resume must be 'allow' .* or 'never'"):
        Session(name="run", workspace="ws", local_path=tmp_path, resume=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["session.json", "files"])
def test_the_names_a_session_folder_keeps_for_itself_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="keeps its own files under that name"):
        Session(name=name, workspace="ws", local_path=tmp_path)


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"attempts": 5}', b"\xff\xfe"])
def test_an_unreadable_session_json_is_kept_aside_and_never_stops_a_run(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], content: bytes
) -> None:
    folder = tmp_path / "ws" / "run"
    folder.mkdir(parents=True)
    (folder / "session.json").write_bytes(content)
    with Session(name="run", workspace="ws", local_path=tmp_path) as s:
        s.log("still logged")
    assert [a["status"] for a in attempts(folder)] == ["completed"]
    assert (folder / "session.json.unreadable").read_bytes() == content, "what was there is not lost"
    assert "is kept as" in capfd.readouterr().err
    assert s.read_logs()[0]["message"] == "still logged"


def test_a_session_json_that_cannot_be_written_is_said_and_the_run_goes_on(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "ws" / "run"
    (folder / "session.json").mkdir(parents=True)  # a folder where the file should be
    with Session(name="run", workspace="ws", local_path=tmp_path) as s:
        s.log("still logged")
    err = capfd.readouterr().err
    assert err.count("cannot write") == 1, "said once, not at open and again at close"
    assert "the run goes on without it" in err
    assert s.read_logs()[0]["message"] == "still logged"


def test_end_records_what_an_integration_says(tmp_path: Path) -> None:
    s = Session(name="run", workspace="ws", local_path=tmp_path).open()
    with pytest.raises(ValueError, match="status must be one of completed, failed, interrupted"):
        s._end("success")
    assert s.is_open
    s._end("failed", "RuntimeError")
    assert not s.is_open
    assert [(a["status"], a["error"]) for a in attempts(s.path)] == [("failed", "RuntimeError")]


def test_sigterm_while_the_main_thread_holds_the_folder_lock_ends_the_run_interrupted(tmp_path: Path) -> None:
    """The exit hook must not wait for the lock the thread it interrupted holds (params.set)."""
    code = textwrap.dedent(
        f"""
        import sys
        from dreamlake import Session
        s = Session(name="run", workspace="ws", local_path={str(tmp_path)!r}).open()
        s2 = Session(name="run", workspace="ws", local_path={str(tmp_path)!r})
        i = 0
        while True:
            s.params(step=i)
            s2.open()
            s2.close()
            i += 1
            if i == 100:  # going round, holding the folder's lock much of the time
                print("ready", flush=True)
        """
    )
    for _ in range(3):
        with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            os.kill(proc.pid, signal.SIGTERM)
            try:
                assert proc.wait(timeout=30) == -signal.SIGTERM
            finally:
                proc.kill()
    statuses = [a["status"] for a in attempts(tmp_path / "ws" / "run")]
    assert statuses.count("running") == 0, statuses
    assert "interrupted" in statuses


def test_a_sigterm_handler_that_exits_inside_the_with_block_is_interrupted(
    tmp_path: Path, run_python: Run
) -> None:
    done = run_python(
        f"""
        import os, signal, sys
        from dreamlake import Session
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))  # before the first session: chained
        with Session(name="run", workspace="ws", local_path={str(tmp_path)!r}) as s:
            os.kill(os.getpid(), signal.SIGTERM)
        """
    )
    assert done.returncode == 0, done.stderr
    assert [a["status"] for a in attempts(tmp_path / "ws" / "run")] == ["interrupted"]


def test_a_close_that_raised_ends_the_run_failed_at_exit_and_a_later_close_goes_on(
    tmp_path: Path, run_python: Run
) -> None:
    code = """
        import resource, signal
        from dreamlake import Session
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        s = Session(name="run", workspace="ws", local_path={root!r}).open()
        s.log("x" * 1000)
        s.flush()
        resource.setrlimit(resource.RLIMIT_FSIZE, (1500, resource.RLIM_INFINITY))
        s.log("y" * 1000)
        try:
            s.close()
        except OSError:
            print("raised")
        {then}
        """
    root = str(tmp_path / "a")
    done = run_python(code.format(root=root, then="pass"))
    assert done.stdout == "raised\n", done.stderr
    assert [(a["status"], a.get("error")) for a in attempts(Path(root) / "ws" / "run")] == [
        ("failed", "OSError")
    ]
    root = str(tmp_path / "b")
    then = "resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2); s.open(); s.close()"
    done = run_python(code.format(root=root, then=then))
    assert done.stdout == "raised\n", done.stderr
    (attempt,) = attempts(Path(root) / "ws" / "run")
    assert attempt["status"] == "completed", "the open() after the failed close() goes on with its attempt"


def test_ctrl_c_in_close_ends_the_run_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake for a fault that cannot be timed: Ctrl-C arriving while close() waits."""
    from dreamlake import _batcher

    s = Session(name="run", workspace="ws", local_path=tmp_path).open()
    real = _batcher.close

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_batcher, "close", interrupted)
    with pytest.raises(KeyboardInterrupt):
        s.close()
    monkeypatch.setattr(_batcher, "close", real)
    s.close()
    assert [a["status"] for a in attempts(s.path)] == ["interrupted"]


def test_an_open_that_fails_ends_its_attempt_failed(tmp_path: Path) -> None:
    folder = tmp_path / "ws" / "run"
    (folder / "logs.jsonl").mkdir(parents=True)  # a folder where the file should be
    s = Session(name="run", workspace="ws", local_path=tmp_path)
    for _ in range(2):
        with pytest.raises(OSError):
            s.open()
    assert [(a["status"], a["error"]) for a in attempts(folder)] == [("failed", "IsADirectoryError")] * 2


def test_an_error_shown_at_an_interactive_prompt_does_not_fail_the_run(tmp_path: Path) -> None:
    lines = "\n".join(
        [
            "1 / 0",
            "from dreamlake import Session",
            f"s = Session(name='run', workspace='ws', local_path={str(tmp_path)!r}).open()",
            "s.log('after the typo')",
            "",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-i", "-q"], input=lines, capture_output=True, text=True, timeout=60
    )
    assert "ZeroDivisionError" in done.stderr
    assert [a["status"] for a in attempts(tmp_path / "ws" / "run")] == ["completed"]


def test_a_live_process_is_running_however_quiet_and_a_reused_pid_is_not(tmp_path: Path) -> None:
    folder = tmp_path / "ws" / "run"
    folder.mkdir(parents=True)
    now = os.stat(folder).st_mtime + 10_000  # the folder's files quiet for hours
    mine = {"status": "running", "host": host_name(), "pid": os.getpid(), "startedAt": "2999-01-01T00:00:00Z"}
    assert shown_status(mine, folder, now=now) == "running", "this process started before the attempt"
    if os.path.exists(f"/proc/{os.getpid()}/stat"):
        older = {**mine, "startedAt": "2000-01-01T00:00:00Z"}  # our pid, but we started after it
        assert shown_status(older, folder, now=now) == "crashed?"


def test_names_and_arguments_that_are_not_utf8_are_kept_as_escapes(tmp_path: Path, run_python: Run) -> None:
    done = run_python(
        f"""
        import os, sys
        from dreamlake import Session
        sys.argv.append(os.fsdecode(b"--tag=\\xff"))
        with Session(name=os.fsdecode(b"run-\\xfe"), workspace="ws", local_path={str(tmp_path)!r}) as s:
            s.log("x")
        """
    )
    assert done.returncode == 0, done.stderr
    (folder,) = (tmp_path / "ws").iterdir()
    found = stored(folder)
    assert found["name"] == "run-\\xfe"
    assert found["attempts"][0]["argv"][-1] == "--tag=\\xff"
    assert found["attempts"][0]["status"] == "completed"


def test_a_sigterm_handler_set_later_that_calls_dreamlakes_decides(tmp_path: Path, run_python: Run) -> None:
    """As Lightning's does: it chains the handler it found; dreamlake's flushes and lets it decide."""
    done = run_python(
        f"""
        import os, signal
        from dreamlake import Session
        s = Session(name="run", workspace="ws", local_path={str(tmp_path)!r}).open()
        s.log("before")
        previous = signal.getsignal(signal.SIGTERM)
        seen = []
        def graceful(signum, frame):
            previous(signum, frame)
            seen.append(signum)
        signal.signal(signal.SIGTERM, graceful)
        os.kill(os.getpid(), signal.SIGTERM)
        s.log("after")
        s.close()
        print(seen == [signal.SIGTERM])
        """
    )
    assert (done.returncode, done.stdout) == (0, "True\n"), done.stderr
    assert [r["message"] for r in read_logs(tmp_path / "ws" / "run")] == ["before", "after"]
    assert [a["status"] for a in attempts(tmp_path / "ws" / "run")] == ["completed"]
