"""Parameters: every code block of the parameters doc as written, then the rules behind them."""

import json
import subprocess
import sys
import types
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dreamlake import Session, read_params
from dreamlake._cli._main import main


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def stored(workspace: str, name: str, local_path: str = "./data") -> dict[str, Any]:
    """parameters.json, checked to be one pretty-printed JSON object."""
    text = (Path(local_path) / workspace / name / "parameters.json").read_text()
    assert text.startswith("{\n  ") and text.endswith("}\n")
    parsed: dict[str, Any] = json.loads(text)
    return parsed


# -- the doc's code blocks, as written -------------------------------------------------


def test_basic_parameter_tracking() -> None:
    with Session(name="demo", workspace="test", local_path="./data") as session:
        # Track parameters
        session.parameters().set(learning_rate=0.001, batch_size=32, optimizer="adam", epochs=100)

    assert stored("test", "demo") == {
        "learning_rate": 0.001,
        "batch_size": 32,
        "optimizer": "adam",
        "epochs": 100,
    }


def test_nested_parameters_are_flattened_with_dots() -> None:
    with Session(name="demo", workspace="test", local_path="./data") as session:
        # Pass nested dictionary
        session.parameters().set(
            **{
                "model": {"architecture": "resnet50", "pretrained": True, "num_classes": 1000},
                "optimizer": {"type": "adam", "lr": 0.001, "weight_decay": 0.0001},
            }
        )

    assert list(stored("test", "demo").items()) == [
        ("model.architecture", "resnet50"),
        ("model.pretrained", True),
        ("model.num_classes", 1000),
        ("optimizer.type", "adam"),
        ("optimizer.lr", 0.001),
        ("optimizer.weight_decay", 0.0001),
    ]


def test_multiple_parameter_calls_merge() -> None:
    with Session(name="demo", workspace="test", local_path="./data") as session:
        # Initial parameters
        session.parameters().set(learning_rate=0.001, batch_size=32)

        # Add more parameters
        session.parameters().set(optimizer="adam", momentum=0.9)

        # Update existing parameter
        session.parameters().set(learning_rate=0.0001)  # Overwrites previous value

    assert stored("test", "demo") == {
        "learning_rate": 0.0001,
        "batch_size": 32,
        "optimizer": "adam",
        "momentum": 0.9,
    }


def test_parameter_types() -> None:
    with Session(name="demo", workspace="test", local_path="./data") as session:
        session.parameters().set(
            # Numbers
            learning_rate=0.001,
            batch_size=32,
            temperature=0.5,
            # Strings
            optimizer="adam",
            architecture="resnet50",
            # Booleans
            pretrained=True,
            use_dropout=False,
            # Lists
            layer_sizes=[256, 128, 64],
            augmentations=["flip", "rotate", "crop"],
            # None
            checkpoint_path=None,
        )

    assert stored("test", "demo") == {
        "learning_rate": 0.001,
        "batch_size": 32,
        "temperature": 0.5,
        "optimizer": "adam",
        "architecture": "resnet50",
        "pretrained": True,
        "use_dropout": False,
        "layer_sizes": [256, 128, 64],
        "augmentations": ["flip", "rotate", "crop"],
        "checkpoint_path": None,
    }


def test_training_configuration_example() -> None:
    with Session(name="resnet-imagenet", workspace="computer-vision", local_path="./experiments") as session:
        # Model parameters
        session.parameters().set(
            {
                "model": {
                    "architecture": "resnet50",
                    "pretrained": True,
                    "num_classes": 1000,
                    "dropout": 0.5,
                },
                "data": {
                    "dataset": "imagenet",
                    "train_split": 0.8,
                    "val_split": 0.1,
                    "test_split": 0.1,
                    "num_workers": 4,
                },
                "training": {
                    "epochs": 100,
                    "batch_size": 256,
                    "learning_rate": 0.1,
                    "optimizer": "sgd",
                    "momentum": 0.9,
                    "weight_decay": 0.0001,
                    "scheduler": "cosine",
                },
                "augmentation": {
                    "random_crop": True,
                    "random_flip": True,
                    "color_jitter": 0.4,
                    "normalize": True,
                },
            }
        )

    params = stored("computer-vision", "resnet-imagenet", "./experiments")
    assert len(params) == 20
    assert params["training.scheduler"] == "cosine" and params["augmentation.color_jitter"] == 0.4


def test_loading_from_config_file() -> None:
    Path("config.json").write_text(json.dumps({"lr": 0.01, "model": {"depth": 50}}))
    # Load config
    with open("config.json") as f:
        config = json.load(f)

    with Session(name="experiment", workspace="ml", local_path="./data") as session:
        # Track all config parameters
        session.parameters().set(config)

        session.log("Configuration loaded")

    assert stored("ml", "experiment") == {"lr": 0.01, "model.depth": 50}


def test_command_line_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    monkeypatch.setattr(sys, "argv", ["train.py", "--lr", "0.01"])
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--optimizer", type=str, default="adam")
    args = parser.parse_args()

    with Session(name="cli-experiment", workspace="ml", local_path="./data") as session:
        # Convert argparse namespace to dict
        session.parameters().set(vars(args))

        session.log("Parameters loaded from CLI")

    assert stored("ml", "cli-experiment") == {"lr": 0.01, "batch_size": 32, "optimizer": "adam"}


def test_environment_information(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    torch = types.SimpleNamespace(  # a stand-in: torch is not installed here
        __version__="2.13.0",
        cuda=types.SimpleNamespace(is_available=lambda: False, device_count=lambda: 0),
        version=types.SimpleNamespace(cuda=None),
    )
    with Session(name="demo", workspace="test", local_path="./data") as session:
        # Track environment info
        session.parameters().set(
            {
                "environment": {
                    "python_version": platform.python_version(),
                    "platform": platform.platform(),
                    "pytorch_version": torch.__version__,
                    "cuda_available": torch.cuda.is_available(),
                    "cuda_version": torch.version.cuda if torch.cuda.is_available() else None,
                    "device_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
                }
            }
        )

    params = stored("test", "demo")
    assert params["environment.python_version"] == platform.python_version()
    assert params["environment.cuda_version"] is None and params["environment.device_count"] == 0


def test_storage_format_is_the_flat_object_pretty_printed() -> None:
    with Session(name="demo", workspace="test") as session:
        session.parameters().set(learning_rate=0.001, batch_size=32, optimizer="adam")
        session.parameters().set(model={"architecture": "resnet50", "pretrained": True, "num_classes": 1000})

    assert Path(".dreamlake/test/demo/parameters.json").read_text() == (
        "{\n"
        '  "learning_rate": 0.001,\n'
        '  "batch_size": 32,\n'
        '  "optimizer": "adam",\n'
        '  "model.architecture": "resnet50",\n'
        '  "model.pretrained": true,\n'
        '  "model.num_classes": 1000\n'
        "}\n"
    )


def test_hyperparameter_search() -> None:
    from itertools import product

    def train_model(lr: float, bs: int) -> float:  # a stand-in
        return 1 - lr / bs

    learning_rates = [0.1, 0.01, 0.001]
    batch_sizes = [32, 64, 128]

    for lr, bs in product(learning_rates, batch_sizes):
        with Session(
            name=f"search-lr{lr}-bs{bs}", workspace="hyperparameter-search", local_path="./experiments"
        ) as session:
            session.parameters().set(learning_rate=lr, batch_size=bs, optimizer="adam")

            accuracy = train_model(lr, bs)
            session.log(f"Final accuracy: {accuracy}")

    assert stored("hyperparameter-search", "search-lr0.01-bs64", "./experiments") == {
        "learning_rate": 0.01,
        "batch_size": 64,
        "optimizer": "adam",
    }
    assert len(list(Path("experiments/hyperparameter-search").iterdir())) == 9


def test_config_class() -> None:
    @dataclass
    class TrainingConfig:
        learning_rate: float = 0.001
        batch_size: int = 32
        epochs: int = 100
        optimizer: str = "adam"

    config = TrainingConfig()

    with Session(name="experiment", workspace="ml", local_path="./data") as session:
        # Convert dataclass to dict
        session.parameters().set(asdict(config))

    assert stored("ml", "experiment") == {
        "learning_rate": 0.001,
        "batch_size": 32,
        "epochs": 100,
        "optimizer": "adam",
    }


def test_progressive_updates() -> None:
    with Session(name="demo", workspace="test", local_path="./data") as session:
        # Initial config
        session.parameters().set(learning_rate=0.1, batch_size=32)
        session.parameters().set(learning_rate=0.01)
        session.log("Learning rate reduced to 0.01")
        assert session.parameters().get()["learning_rate"] == 0.01
        session.parameters().set(learning_rate=0.001)
        session.log("Learning rate reduced to 0.001")

    assert stored("test", "demo") == {"learning_rate": 0.001, "batch_size": 32}


# -- the rules -------------------------------------------------------------------------


@pytest.fixture
def session(tmp_path: Path) -> Any:
    with Session(name="run", workspace="ws", local_path=tmp_path) as s:
        yield s


def test_a_value_replacing_a_subtree_removes_it_and_the_reverse(session: Session) -> None:
    p = session.parameters()
    p.set(model={"lr": 0.1, "depth": 50}, seed=1)
    p.set(model="resnet")
    assert p.get() == {"seed": 1, "model": "resnet"}
    p.set(model={"lr": 0.2})
    assert p.get() == {"seed": 1, "model.lr": 0.2}
    p.set({"model": {"lr": {"warmup": 5}}})
    assert p.get() == {"seed": 1, "model.lr.warmup": 5}


def test_within_one_call_the_later_value_wins(session: Session) -> None:
    session.parameters().set({"model": {"lr": 0.1}}, model="resnet")
    assert session.parameters().get() == {"model": "resnet"}


def test_get_nested_and_params_shorthand(session: Session) -> None:
    session.params({"model": {"lr": 0.1, "layers": [1, 2]}}, seed=3)
    assert session.parameters().get(flatten=False) == {"model": {"lr": 0.1, "layers": [1, 2]}, "seed": 3}
    assert session.parameters() is session.parameters()


def test_values_follow_the_rules_of_log_metadata(session: Session) -> None:
    np = pytest.importorskip("numpy")

    class Opaque:
        def __str__(self) -> str:
            return "opaque"

    session.params(
        nan=float("nan"), inf=-float("inf"), arr=np.array([1.5, 2.5]), obj=Opaque(), tup=(1, 2), empty={}
    )
    assert session.parameters().get() == {
        "nan": "NaN",
        "inf": "-Infinity",
        "arr": [1.5, 2.5],
        "obj": "opaque",
        "tup": [1, 2],
        "empty": {},
    }


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        ({1: "x"}, TypeError, "parameter names must be str, got int"),
        ({"": 1}, ValueError, "non-empty and without NUL"),
        ({"a": {"b\0": 1}}, ValueError, r"non-empty and without NUL, got 'a\.b\\x00'"),
        ([("a", 1)], TypeError, "parameters must be a mapping"),
        ({".lr": 1}, ValueError, r"cannot start or end with '\.' or hold '\.\.', got '\.lr'"),
        ({"lr.": 1}, ValueError, r"got 'lr\.'"),
        ({"a..b": 1}, ValueError, r"got 'a\.\.b'"),
        ({"model": {"x.": 1}}, ValueError, r"got 'model\.x\.'"),
    ],
)
def test_bad_names_raise_at_the_call_and_keep_what_was_set(
    session: Session, bad: Any, error: type, match: str
) -> None:
    session.params(kept=1)
    with pytest.raises(error, match=match):
        session.params(bad)
    assert session.parameters().get() == {"kept": 1}


def test_set_on_a_session_not_open_raises(tmp_path: Path) -> None:
    s = Session(name="n", workspace="w", local_path=tmp_path)
    with pytest.raises(RuntimeError, match="is not open"):
        s.params(a=1)
    with s:
        s.params(a=1)
    with pytest.raises(RuntimeError, match="is not open"):
        s.parameters().set(b=2)
    assert s.parameters().get() == {"a": 1}


def test_reopening_keeps_and_merges_the_parameters(tmp_path: Path) -> None:
    with Session(name="n", workspace="w", local_path=tmp_path) as s:
        s.params(a=1, b=2)
    with Session(name="n", workspace="w", local_path=tmp_path) as again:
        assert again.parameters().get() == {"a": 1, "b": 2}
        again.params(b=3, c=4)
    assert read_params(again.path) == {"a": 1, "b": 3, "c": 4}


def test_read_params_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no session folder"):
        read_params(tmp_path / "nope")
    with Session(name="n", workspace="w", local_path=tmp_path) as s:
        pass
    with pytest.raises(FileNotFoundError, match="has no parameters"):
        read_params(s.path)


def test_four_processes_setting_parameters_of_one_session_lose_nothing(tmp_path: Path) -> None:
    script = f"""
import sys
from dreamlake import Session
p = int(sys.argv[1])
with Session(name="n", workspace="w", local_path={str(tmp_path)!r}) as s:
    for i in range(40):
        s.params({{f"p{{p}}": {{f"k{{i}}": i}}}}, last=p)
"""
    procs = [subprocess.Popen([sys.executable, "-c", script, str(p)]) for p in range(4)]
    assert [proc.wait(timeout=120) for proc in procs] == [0, 0, 0, 0]
    params = read_params(tmp_path / "w" / "n")
    assert {f"p{p}.k{i}" for p in range(4) for i in range(40)} <= set(params)
    assert params["last"] in range(4)
    assert [f.name for f in (tmp_path / "w" / "n").iterdir() if f.name.endswith(".tmp")] == []


def test_cli_prints_the_parameters(session: Session, capsys: pytest.CaptureFixture[str]) -> None:
    session.params(lr=0.1, model={"name": "resnet"})
    assert main(["params", str(session.path)]) == 0
    assert capsys.readouterr().out == 'lr          0.1\nmodel.name  "resnet"\n'
    assert main(["params", str(session.path), "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == {"lr": 0.1, "model.name": "resnet"}
    assert main(["params", str(session.path / "nope")]) == 2
    assert "no session folder" in capsys.readouterr().err


def test_a_session_folder_deleted_under_an_open_session_is_made_again(session: Session) -> None:
    import shutil

    session.params(a=1)
    shutil.rmtree(session.path)
    session.params(b=2)
    assert read_params(session.path) == {"b": 2}


def test_setting_many_keys_is_not_quadratic(session: Session) -> None:
    """20,000 keys, set then set again: each key looks at its own prefixes, not at every stored key."""
    import time

    keys = {f"group{g}": {f"k{i}": i for i in range(g * 200, (g + 1) * 200)} for g in range(100)}
    started = time.process_time()
    session.params(keys)
    session.params(keys)
    assert len(session.parameters().get()) == 20_000
    assert time.process_time() - started < 30  # was minutes: a safety net, not a speed claim


def test_cycles_and_depth_do_not_raise(session: Session) -> None:
    cyclic: dict[str, Any] = {"x": 1}
    cyclic["self"] = cyclic
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(3000):
        node["d"] = {}
        node = node["d"]
    node["leaf"] = 1
    session.params(c=cyclic, deep=deep)
    params = session.parameters().get()
    assert params["c.x"] == 1 and params["c.self"] == "{...}"
    assert any(key.startswith("deep.d.d") for key in params)


def test_a_stray_temporary_file_of_a_killed_process_is_removed(session: Session) -> None:
    stray = session.path / ".parameters.json.99999.tmp"
    stray.write_text("{half")
    session.params(a=1)
    assert not stray.exists()
    assert sorted(p.name for p in session.path.iterdir()) == ["logs.jsonl", "parameters.json", "session.json"]


def test_a_file_that_is_not_a_json_object_is_named_and_kept(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    session.parameters().file.write_text("{bad")
    with pytest.raises(ValueError, match=r"parameters\.json is not valid JSON .* fix it or remove it"):
        session.params(a=1)
    assert session.parameters().file.read_text() == "{bad"
    assert main(["params", str(session.path)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    session.parameters().file.write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold one JSON object, not list"):
        session.parameters().get()


def test_the_file_keeps_its_permissions(session: Session) -> None:
    session.params(a=1)
    session.parameters().file.chmod(0o600)
    session.params(b=2)
    assert session.parameters().file.stat().st_mode & 0o777 == 0o600


def test_cli_shows_control_characters_as_escapes(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    session.params({"evil\x1b]0;title\x07key": "v\x9b31m\x7f", "multi\nline": 1})
    assert main(["params", str(session.path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines] == [
        ["evil\\x1b]0;title\\x07key", '"v\\x9b31m\\x7f"'],
        ["multi\\nline", "1"],
    ]


def test_a_fork_while_another_thread_sets_parameters_leaves_the_lock_to_the_parent(tmp_path: Path) -> None:
    """The child must not inherit the folder's descriptor while it holds the lock: the
    parent's next set() would wait for the child to exit, and the child's would hang."""
    script = f"""
import os, threading, time
import dreamlake._params as P
from dreamlake import Session
inside, release = threading.Event(), threading.Event()
real = P.replace_file
def gated(*args):
    inside.set()
    release.wait()
    real(*args)
P.replace_file = gated
s = Session(name="n", workspace="w", local_path={str(tmp_path)!r}).open()
big = {{f"k{{i}}": i for i in range(100_000)}}
t = threading.Thread(target=lambda: s.params(big))
t.start()
inside.wait()   # the thread holds the folder's lock now
pid = os.fork()  # waits FORK_TIMEOUT for that set(), then goes on with the lock held
if pid == 0:
    P.replace_file = real
    s.params(child=1)   # waits for the parent's set(), and must not hang
    time.sleep(3)  # ok: the child lives on, holding nothing
    os._exit(0)
release.set()
t.join()
P.replace_file = real
started = time.monotonic()
s.params(parent=1)
waited = time.monotonic() - started
os.waitpid(pid, 0)
print(f"{{waited:.2f}}")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert float(result.stdout) < 2, "the parent's set() waited for the child to exit"
    params = read_params(tmp_path / "w" / "n")
    assert params["child"] == 1 and params["parent"] == 1 and len(params) == 100_002


_NAMES = st.text(alphabet="ab.", min_size=1, max_size=4)
_TREES = st.recursive(
    st.integers(0, 9),
    lambda children: st.dictionaries(_NAMES, children, min_size=1, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=st.dictionaries(_NAMES, _TREES, min_size=1, max_size=4))
def test_nested_get_feeds_back_to_set(tmp_path: Path, tree: dict[str, Any]) -> None:
    """Whatever set() accepts, get(flatten=False) gives back in a form set() stores the same."""
    with Session(name="a", workspace="w", local_path=tmp_path / "h") as first:
        first.parameters().file.unlink(missing_ok=True)
        try:
            first.params(tree)
        except ValueError as exc:
            assert "cannot start or end with '.'" in str(exc)
            assert {} == first.parameters().get(), "a refused set() wrote something"
            return
        stored, nested = first.parameters().get(), first.parameters().get(flatten=False)
    with Session(name="b", workspace="w", local_path=tmp_path / "h") as second:
        second.parameters().file.unlink(missing_ok=True)
        second.params(nested)
        assert stored == second.parameters().get()
