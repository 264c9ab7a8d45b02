"""Files kept with a run: session.files().upload/list/download and `dreamlake files`."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from dreamlake import Session
from dreamlake._artifacts import list_files
from dreamlake._cli._main import main


def make(path: Path, size: int, seed: int = 0) -> Path:
    path.write_bytes(hashlib.sha256(str(seed).encode()).digest() * (size // 32) + b"x" * (size % 32))
    return path


def test_an_upload_is_a_whole_copy_with_its_size_checksum_and_description(tmp_path: Path) -> None:
    source = make(tmp_path / "model.pt", 100_003)
    with Session(name="run", workspace="ws", local_path=tmp_path / "data") as s:
        s.log("before")
        entry = s.files().upload(
            source, path="/models", description="best", tags=["val"], metadata={"epoch": 3, "acc": 0.9}
        )
        s.log("after")
    assert entry["filename"] == "model.pt"
    assert entry["path"] == "/models"
    assert entry["sizeBytes"] == 100_003
    assert entry["checksum"] == "sha256:" + hashlib.sha256(source.read_bytes()).hexdigest()
    assert (entry["description"], entry["tags"], entry["metadata"]) == (
        "best",
        ["val"],
        {"epoch": 3, "acc": 0.9},
    )
    assert entry["createdAt"].endswith("Z")
    kept = s.path / "files" / entry["id"] / "model.pt"
    assert kept.read_bytes() == source.read_bytes()
    assert s.files().list() == [entry]
    assert [r["message"] for r in s.read_logs()] == ["before", "after"]


def test_list_filters_by_virtual_folder_and_keeps_upload_order(tmp_path: Path) -> None:
    a, b, c = (make(tmp_path / name, 10, i) for i, name in enumerate(["a.txt", "b.txt", "c.txt"]))
    with Session(name="run", workspace="ws", local_path=tmp_path / "data") as s:
        files = s.files()
        files.upload(a, path="/models")
        files.upload(b, path="/models/best/")
        files.upload(c, path="/")
        files.upload(a, path="/modelsx")
        assert [e["filename"] for e in files.list()] == ["a.txt", "b.txt", "c.txt", "a.txt"]
        assert [(e["filename"], e["path"]) for e in files.list("/models")] == [
            ("a.txt", "/models"),
            ("b.txt", "/models/best"),
        ]
        assert [e["path"] for e in files.list("/models/best")] == ["/models/best"]
        assert files.list("/nothing") == []


def test_download_by_id_name_or_path_checks_the_checksum(tmp_path: Path) -> None:
    first = make(tmp_path / "ckpt.bin", 3 << 20, 1)
    with Session(name="run", workspace="ws", local_path=tmp_path / "data") as s:
        one = s.files().upload(first, path="/a")
        make(first, 1000, 2)
        two = s.files().upload(first, path="/b")
        out = tmp_path / "out"
        out.mkdir()
        got = s.files().download(one["id"], out)
        assert got == out / "ckpt.bin"
        assert hashlib.sha256(got.read_bytes()).hexdigest() == one["checksum"][7:]
        assert s.files().download("ckpt.bin", out / "newest").stat().st_size == 1000, "a name: the newest"
        assert s.files().download("/a/ckpt.bin", out / "by-path").stat().st_size == 3 << 20
        kept = s.path / "files" / two["id"] / "ckpt.bin"
        kept.write_bytes(b"y" * 1000)  # the stored copy damaged
        with pytest.raises(OSError, match="does not match its checksum"):
            s.files().download(two["id"], out / "damaged")
        assert not (out / "damaged").exists()
        assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [], "no temporary file left"


def test_bad_input_names_what_was_wrong_and_logs_on(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    good = make(tmp_path / "good.txt", 5)
    with Session(name="run", workspace="ws", local_path=tmp_path / "data") as s:
        s.log("kept")
        files = s.files()
        with pytest.raises(FileNotFoundError, match=r"cannot upload .*missing\.pt: no such file"):
            files.upload(tmp_path / "missing.pt")
        with pytest.raises(IsADirectoryError, match="it is a folder"):
            files.upload(tmp_path / "folder")
        with pytest.raises(TypeError, match=r"local_file must be a str or os\.PathLike"):
            files.upload(3)  # type: ignore[arg-type]
        for bad in ["models", "/a/../b", "/a/./b", "/a\\b", "/a\0"]:
            with pytest.raises(ValueError, match="path must be a folder such as"):
                files.upload(good, path=bad)
        with pytest.raises(TypeError, match="tags must be a list of str"):
            files.upload(good, tags="a")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="description must be a str"):
            files.upload(good, description=3)  # type: ignore[arg-type]
        with pytest.raises(FileNotFoundError, match=r"has no file 'nope' \(files: none\)"):
            files.download("nope")
        with pytest.raises(FileNotFoundError, match="does not exist"):
            files.upload(good)
            files.download("good.txt", tmp_path / "no" / "such" / "folder" / "x")
        s.log("still logging")
    assert [r["message"] for r in s.read_logs()] == ["kept", "still logging"]
    assert len(s.files().list()) == 1, "the one good upload; nothing from the refused ones"
    with pytest.raises(RuntimeError, match="is not open"):
        s.files().upload(good)


def test_an_upload_streams_never_reading_the_file_whole(tmp_path: Path) -> None:
    """64 MB through a process whose address space cannot hold it twice over its baseline."""
    source = tmp_path / "big.bin"
    with open(source, "wb") as f:
        f.truncate(64 << 20)
    code = textwrap.dedent(
        f"""
        import resource
        from dreamlake import Session
        s = Session(name="run", workspace="ws", local_path={str(tmp_path / "data")!r}).open()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        entry = s.files().upload({str(source)!r})
        s.files().download(entry["id"], {str(tmp_path / "back.bin")!r})
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        s.close()
        print(grown)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 32 << 10, f"peak memory grew by {done.stdout.strip()} KiB for a 64 MiB file"
    assert (tmp_path / "back.bin").stat().st_size == 64 << 20


def test_uploads_from_several_processes_are_all_kept(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from dreamlake import Session
        n = sys.argv[1]
        src = Path({str(tmp_path)!r}) / f"f{{n}}.txt"
        with Session(name="run", workspace="ws", local_path={str(tmp_path / "data")!r}) as s:
            for i in range(20):
                src.write_text(f"{{n}}-{{i}}")
                s.files().upload(src, path=f"/p{{n}}")
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)]) for n in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    entries = list_files(tmp_path / "data" / "ws" / "run")
    assert len(entries) == 80
    assert len({e["id"] for e in entries}) == 80
    folder = tmp_path / "data" / "ws" / "run" / "files"
    contents = sorted((folder / e["id"] / e["filename"]).read_text() for e in entries)
    assert contents == sorted(f"{n}-{i}" for n in range(4) for i in range(20))


def test_a_damaged_entry_hides_nothing_else(tmp_path: Path) -> None:
    good = make(tmp_path / "good.txt", 5)
    with Session(name="run", workspace="ws", local_path=tmp_path / "data") as s:
        s.files().upload(good)
    (s.path / "files" / "zzz.json").write_text("{torn")
    (s.path / "files" / "list.json").write_text("[1, 2]")
    assert [e["filename"] for e in list_files(s.path)] == ["good.txt"]


def test_the_command_lists_the_files_of_every_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = make(tmp_path / "good.txt", 2048)
    for name in ("a", "b"):
        with Session(name=name, workspace="ws", local_path=tmp_path / "data") as s:
            s.files().upload(good, path="/cfg", description=f"from {name}")
    with Session(name="c", workspace="ws", local_path=tmp_path / "data") as s:
        s.log("no files here")
    assert main(["files", str(tmp_path / "data" / "ws")]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["SESSION", "FILE", "SIZE", "CREATED", "ID", "DESCRIPTION"]
    assert [r.split()[:4] for r in rows] == [
        ["ws/a", "/cfg/good.txt", "2.0", "KB"],
        ["ws/b", "/cfg/good.txt", "2.0", "KB"],
    ]
    assert main(["files", str(tmp_path / "data" / "ws"), "--json"]) == 0
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["session"], e["description"]) for e in lines] == [("ws/a", "from a"), ("ws/b", "from b")]
    assert main(["files", str(tmp_path / "data" / "ws" / "c")]) == 2
    assert "no files in" in capsys.readouterr().err
    assert main(["files", str(tmp_path / "data" / "ws"), "--under", "/models"]) == 2
    assert "no files under /models" in capsys.readouterr().err
