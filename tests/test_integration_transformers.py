"""dreamlake.integrations.transformers: DreamlakeCallback driven through transformers' own
CallbackHandler as the Trainer drives it (trainer.py: `log()` adds `epoch` to the dict it hands
on_log; `evaluate()` hands that same dict to on_log, then to on_evaluate), then read from disk."""

import importlib
import json
import math
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

import dreamlake
from dreamlake import Session, read_logs, read_params, read_track
from dreamlake._read._tracks import track_names

pytest.importorskip("transformers", reason="transformers is not installed: pip install transformers")

from transformers import (
    DefaultFlowCallback,
    PretrainedConfig,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.trainer_callback import CallbackHandler

from dreamlake.integrations.transformers import DreamlakeCallback, track_name


@pytest.fixture(scope="module")
def args(tmp_path_factory: pytest.TempPathFactory) -> TrainingArguments:
    """One TrainingArguments for the module: making it imports the Trainer's backends (seconds)."""
    return TrainingArguments(
        output_dir=str(tmp_path_factory.mktemp("out")), report_to="none", learning_rate=3e-4, seed=7
    )


def model(**config: Any) -> Any:
    """What the Trainer passes as `model`: anything with a `config` (a PretrainedConfig)."""
    return types.SimpleNamespace(config=PretrainedConfig(**config))


class Run:
    """The Trainer's side of the calls: one CallbackHandler, one state, one control."""

    def __init__(self, args: TrainingArguments, callback: DreamlakeCallback, the_model: Any = None) -> None:
        self.args, self.callback = args, callback
        self.handler = CallbackHandler([DefaultFlowCallback(), callback], the_model, None, None, None)
        self.state = TrainerState()
        self.control = TrainerControl()

    def train_begin(self) -> None:
        self.control = self.handler.on_train_begin(self.args, self.state, self.control)

    def log(self, step: int, epoch: float | None, logs: dict[str, Any]) -> dict[str, Any]:
        """`Trainer.log()`: the epoch goes into the very dict handed on."""
        self.state.global_step, self.state.epoch = step, epoch
        if epoch is not None:
            logs["epoch"] = epoch
        self.control = self.handler.on_log(self.args, self.state, self.control, logs)
        return logs

    def evaluate(self, step: int, epoch: float | None, metrics: dict[str, Any]) -> None:
        """`Trainer.evaluate()`: log(metrics), then on_evaluate with the same dict."""
        self.log(step, epoch, metrics)
        self.control = self.handler.on_evaluate(self.args, self.state, self.control, metrics)

    def train_end(self) -> None:
        self.control = self.handler.on_train_end(self.args, self.state, self.control)


def values(folder: Path, name: str) -> list[dict[str, Any]]:
    return [point["data"] for point in read_track(folder, name)]


def test_a_training_run_is_recorded_as_parameters_and_tracks(args: TrainingArguments, tmp_path: Path) -> None:
    """Parameters at train begin, a point per numeric log value with step and epoch, each
    evaluation's metrics once, the session closed at train end."""
    callback = DreamlakeCallback(name="run-1", workspace="glue", local_path=tmp_path)
    run = Run(
        args, callback, model(hidden_size=8, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    )
    run.train_begin()
    assert callback.session.is_open
    run.log(1, 0.25, {"loss": 0.9, "grad_norm": 2.5, "learning_rate": 3e-4})
    run.log(2, 0.5, {"loss": 0.7, "grad_norm": 1.5, "learning_rate": 2e-4})
    run.evaluate(2, 0.5, {"eval_loss": 0.8, "eval_accuracy": 0.6, "eval_runtime": 0.1})
    run.log(4, 1.0, {"loss": 0.5, "grad_norm": 1.0, "learning_rate": 1e-4})
    run.evaluate(4, 1.0, {"eval_loss": 0.6, "eval_accuracy": 0.75, "eval_runtime": 0.2})
    run.log(4, 1.0, {"train_runtime": 3.5, "train_loss": 0.7, "total_flos": 12.0})
    run.train_end()
    assert not callback.session.is_open

    folder = tmp_path / "glue" / "run-1"
    assert values(folder, "loss") == [
        {"value": 0.9, "step": 1, "epoch": 0.25},
        {"value": 0.7, "step": 2, "epoch": 0.5},
        {"value": 0.5, "step": 4, "epoch": 1.0},
    ]
    assert values(folder, "eval/loss") == [
        {"value": 0.8, "step": 2, "epoch": 0.5},
        {"value": 0.6, "step": 4, "epoch": 1.0},
    ]
    assert values(folder, "eval/accuracy") == [
        {"value": 0.6, "step": 2, "epoch": 0.5},
        {"value": 0.75, "step": 4, "epoch": 1.0},
    ]
    assert values(folder, "train_loss") == [{"value": 0.7, "step": 4, "epoch": 1.0}]
    assert track_names(folder) == sorted(
        [
            "eval/accuracy",
            "eval/loss",
            "eval/runtime",
            "grad_norm",
            "learning_rate",
            "loss",
            "total_flos",
            "train_loss",
            "train_runtime",
        ]
    )  # no `epoch` track: it is each point's epoch
    params = read_params(folder)
    assert params["args.learning_rate"] == 3e-4
    assert params["args.seed"] == 7
    assert params["args.report_to"] == []
    assert params["args.output_dir"] == args.output_dir
    assert params["args.accelerator_config.split_batches"] is False
    assert params["model.hidden_size"] == 8
    assert params["model.id2label.0"] == "neg"
    assert params["model.id2label.1"] == "pos"
    assert params["model.label2id.neg"] == 0
    assert list(read_logs(folder)) == []  # nothing non-numeric, nothing refused


def test_each_evaluation_is_one_point_even_when_on_evaluate_gets_a_copy(
    args: TrainingArguments, tmp_path: Path
) -> None:
    """The dedupe compares values, not the dict: a copy with a NaN still counts as logged."""
    callback = DreamlakeCallback(name="run", workspace="ws", local_path=tmp_path)
    run = Run(args, callback)
    run.train_begin()
    logged = run.log(3, 1.0, {"eval_loss": float("nan"), "eval_f1": 0.5})
    copy = {"eval_loss": float("nan"), "eval_f1": 0.5, "epoch": 1.0}
    assert copy["eval_loss"] is not logged["eval_loss"]
    run.handler.on_evaluate(args, run.state, run.control, copy)
    run.train_end()
    folder = tmp_path / "ws" / "run"
    assert values(folder, "eval/loss") == [{"value": "NaN", "step": 3, "epoch": 1.0}]
    assert values(folder, "eval/f1") == [{"value": 0.5, "step": 3, "epoch": 1.0}]


def test_on_evaluate_alone_records_its_metrics(args: TrainingArguments, tmp_path: Path) -> None:
    """A Trainer subclass that calls on_evaluate without log(): the metrics are recorded there,
    and what differs from the on_log before it (same step) is recorded too."""
    callback = DreamlakeCallback(name="run", workspace="ws", local_path=tmp_path)
    run = Run(args, callback)
    run.train_begin()
    run.state.global_step, run.state.epoch = 5, 2.0
    run.handler.on_evaluate(args, run.state, run.control, {"eval_loss": 0.4})
    run.log(6, 2.5, {"eval_loss": 0.3})
    run.handler.on_evaluate(args, run.state, run.control, {"eval_loss": 0.3, "eval_extra": 1})
    run.log(7, 3.0, {"eval_loss": 0.2})
    run.state.global_step = 8
    run.handler.on_evaluate(args, run.state, run.control, {"eval_loss": 0.2})  # another step: its own
    run.train_end()
    folder = tmp_path / "ws" / "run"
    assert values(folder, "eval/loss") == [
        {"value": 0.4, "step": 5, "epoch": 2.0},
        {"value": 0.3, "step": 6, "epoch": 2.5},
        {"value": 0.2, "step": 7, "epoch": 3.0},
        {"value": 0.2, "step": 8, "epoch": 3.0},
    ]
    assert values(folder, "eval/extra") == [{"value": 1, "step": 6, "epoch": 2.5}]


def test_prediction_metrics_are_recorded_once(args: TrainingArguments, tmp_path: Path) -> None:
    """`Trainer.predict()` hands its metrics to on_predict alone (no log())."""
    callback = DreamlakeCallback(name="run", workspace="ws", local_path=tmp_path)
    run = Run(args, callback)
    run.train_begin()
    run.state.global_step, run.state.epoch = 4, 1.0
    run.handler.on_predict(args, run.state, run.control, {"test_loss": 0.125, "test_runtime": 0.5})
    run.train_end()
    folder = tmp_path / "ws" / "run"
    assert values(folder, "test/loss") == [{"value": 0.125, "step": 4, "epoch": 1.0}]
    assert track_names(folder) == ["test/loss", "test/runtime"]


def test_non_numeric_values_go_to_one_log_record(args: TrainingArguments, tmp_path: Path) -> None:
    """Strings, lists, None, flags and names that cannot be tracks: one record per log call."""
    callback = DreamlakeCallback(name="run", workspace="ws", local_path=tmp_path)
    run = Run(args, callback)
    run.train_begin()
    run.log(
        2,
        None,
        {"loss": 1.5, "note": "warmup", "per_class": [0.5, 0.25], "best": None, "flag": True, "eval_": 3.0},
    )
    run.train_end()
    folder = tmp_path / "ws" / "run"
    assert values(folder, "loss") == [{"value": 1.5, "step": 2}]  # no epoch while state.epoch is None
    [record] = read_logs(folder)
    assert (record["level"], record["message"]) == ("info", "transformers log")
    assert record["metadata"] == {
        "step": 2,
        "note": "warmup",
        "per_class": [0.5, 0.25],
        "best": None,
        "flag": True,
        "eval/": 3.0,
    }
    assert track_names(folder) == ["loss"]


def test_config_values_params_refuses_are_stored_as_text(args: TrainingArguments, tmp_path: Path) -> None:
    """A nested dict whose keys cannot be parameter names would make params() raise: it is
    stored whole as its text, and the rest of the config and the run go on."""
    label_map = {"pos.": 1, "neg": 0}
    collide = {1: "int", "1": "str"}
    with Session(name="probe", workspace="ws", local_path=tmp_path) as probe:
        with pytest.raises(ValueError, match=r"cannot start or end with '\.'"):
            probe.params({"label_map": label_map})
        with pytest.raises(TypeError, match="must be str"):
            probe.params({"id2label": {0: "neg"}})
    callback = DreamlakeCallback(name="run", workspace="ws", local_path=tmp_path)
    run = Run(args, callback, model(label_map=label_map, collide=collide, empty={}, depth={"a": {"": 1}}))
    run.train_begin()
    run.log(1, 0.5, {"loss": 0.25})
    run.train_end()
    folder = tmp_path / "ws" / "run"
    params = read_params(folder)
    assert params["model.label_map"] == "{'pos.': 1, 'neg': 0}"
    assert params["model.collide"] == "{1: 'int', '1': 'str'}"
    assert params["model.empty"] == {}
    assert params["model.depth.a"] == "{'': 1}"
    assert params["args.learning_rate"] == 3e-4
    assert values(folder, "loss") == [{"value": 0.25, "step": 1, "epoch": 0.5}]


def test_other_ranks_write_nothing(args: TrainingArguments, tmp_path: Path) -> None:
    """Not the world's process zero: no folder, no file, the session never opened."""
    callback = DreamlakeCallback(name="run", workspace="ws", local_path=tmp_path)
    run = Run(args, callback, model(hidden_size=8))
    run.state.is_world_process_zero = False
    run.train_begin()
    run.log(1, 0.5, {"loss": 0.25})
    run.evaluate(1, 0.5, {"eval_loss": 0.5})
    run.train_end()
    assert not callback.session.was_opened
    assert list(tmp_path.iterdir()) == []


def test_all_ranks_writes_on_other_ranks_too(args: TrainingArguments, tmp_path: Path) -> None:
    callback = DreamlakeCallback(name="run", workspace="ws", local_path=tmp_path, all_ranks=True)
    run = Run(args, callback)
    run.state.is_world_process_zero = False
    run.train_begin()
    run.log(1, 0.5, {"loss": 0.25})
    run.train_end()
    assert values(tmp_path / "ws" / "run", "loss") == [{"value": 0.25, "step": 1, "epoch": 0.5}]


def test_a_session_passed_in_is_used_and_left_open(args: TrainingArguments, tmp_path: Path) -> None:
    """Flushed at train end (on disk without a flush of ours), never closed."""
    with Session(name="mine", workspace="ws", local_path=tmp_path) as session:
        callback = DreamlakeCallback(session=session)
        assert callback.session is session
        run = Run(args, callback, model(hidden_size=8))
        run.train_begin()
        run.log(1, 0.5, {"loss": 0.25})
        run.train_end()
        assert session.is_open
        assert values(session.path, "loss") == [{"value": 0.25, "step": 1, "epoch": 0.5}]
        assert read_params(session.path)["model.hidden_size"] == 8
        session.log("after training")
    assert [r["message"] for r in read_logs(tmp_path / "ws" / "mine")] == ["after training"]


def test_a_session_passed_in_must_be_open_at_train_begin(args: TrainingArguments, tmp_path: Path) -> None:
    session = Session(name="mine", workspace="ws", local_path=tmp_path)
    run = Run(args, DreamlakeCallback(session=session))
    with pytest.raises(RuntimeError, match="is not open: open it around the training"):
        run.train_begin()
    assert not session.was_opened


def test_an_evaluation_after_training_opens_the_session_again(
    args: TrainingArguments, tmp_path: Path
) -> None:
    """`trainer.evaluate()` after `trainer.train()` closed the session: appended, not lost."""
    callback = DreamlakeCallback(name="run", workspace="ws", local_path=tmp_path)
    run = Run(args, callback)
    run.train_begin()
    run.log(1, 1.0, {"loss": 0.5})
    run.train_end()
    run.evaluate(1, 1.0, {"eval_loss": 0.25})
    assert callback.session.is_open
    callback.session.close()
    folder = tmp_path / "ws" / "run"
    assert values(folder, "loss") == [{"value": 0.5, "step": 1, "epoch": 1.0}]
    assert values(folder, "eval/loss") == [{"value": 0.25, "step": 1, "epoch": 1.0}]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "name and workspace not given"),
        ({"workspace": "ws"}, "name not given"),
        ({"name": "run"}, "workspace not given"),
    ],
)
def test_a_callback_without_name_or_workspace_is_a_type_error_at_once(kwargs: Any, message: str) -> None:
    with pytest.raises(TypeError, match=f"needs session= .*: {message}"):
        DreamlakeCallback(**kwargs)


def test_session_and_session_arguments_together_are_a_type_error(tmp_path: Path) -> None:
    session = Session(name="run", workspace="ws", local_path=tmp_path)
    with pytest.raises(TypeError, match="not both"):
        DreamlakeCallback(session=session, name="other")
    with pytest.raises(TypeError, match=r"must be a dreamlake\.Session, got str"):
        DreamlakeCallback(session="run")  # type: ignore[arg-type]


def test_bad_session_arguments_fail_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="name"):
        DreamlakeCallback(name="a/b", workspace="ws", local_path=tmp_path)
    with pytest.raises(TypeError, match="unexpected keyword"):
        DreamlakeCallback(name="run", workspace="ws", colour="red")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("loss", "loss"),
        ("eval_loss", "eval/loss"),
        ("eval_val2_accuracy", "eval/val2_accuracy"),
        ("test_loss", "test/loss"),
        ("train_loss", "train_loss"),
        ("my_eval_loss", "my_eval_loss"),
    ],
)
def test_track_names_follow_the_trainer_keys_with_eval_and_test_as_folders(key: str, name: str) -> None:
    assert track_name(key) == name


def test_importing_without_transformers_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now raises ImportError
    monkeypatch.delitem(sys.modules, "dreamlake.integrations.transformers")
    with pytest.raises(
        ImportError, match=r"needs Hugging Face transformers: pip install transformers"
    ) as info:
        importlib.import_module("dreamlake.integrations.transformers")
    assert "\n" not in str(info.value)


def test_the_integrations_package_imports_no_framework() -> None:
    import dreamlake.integrations

    assert dreamlake.integrations.__doc__
    assert not hasattr(dreamlake, "DreamlakeCallback")


def test_a_real_trainer_run(tmp_path: Path) -> None:
    """transformers' own Trainer, a tiny torch model, an evaluation every 2 steps, then a
    predict(): what the Trainer really passes lands as above, one point per evaluation and metric."""
    torch = pytest.importorskip("torch", reason="the real Trainer needs torch")
    from transformers import Trainer

    class Tiny(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.config = PretrainedConfig(hidden_size=2, id2label={0: "neg", 1: "pos"})
            self.linear = torch.nn.Linear(2, 1)

        def forward(self, x: Any, labels: Any) -> dict[str, Any]:
            prediction = self.linear(x).squeeze(-1)
            return {"loss": torch.nn.functional.mse_loss(prediction, labels), "logits": prediction}

    torch.manual_seed(0)
    data = [{"x": torch.randn(2), "labels": torch.randn(())} for _ in range(16)]
    arguments = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        report_to="none",
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        num_train_epochs=2,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        dataloader_pin_memory=False,
    )
    callback = DreamlakeCallback(name="real", workspace="ws", local_path=tmp_path)
    trainer = Trainer(
        model=Tiny(), args=arguments, train_dataset=data, eval_dataset=data[:8], callbacks=[callback]
    )
    trainer.train()
    assert not callback.session.is_open
    folder = tmp_path / "ws" / "real"
    history = trainer.state.log_history
    train_logs = [h for h in history if "loss" in h]
    eval_logs = [h for h in history if "eval_loss" in h]
    assert len(train_logs) == 8 and len(eval_logs) == 4
    assert values(folder, "loss") == [
        {"value": h["loss"], "step": h["step"], "epoch": h["epoch"]} for h in train_logs
    ]
    assert values(folder, "eval/loss") == [
        {"value": h["eval_loss"], "step": h["step"], "epoch": h["epoch"]} for h in eval_logs
    ]
    assert [p["step"] for p in values(folder, "eval/runtime")] == [2, 4, 6, 8]
    assert len(values(folder, "train_loss")) == 1
    assert "epoch" not in track_names(folder)
    params = read_params(folder)
    assert params["args.num_train_epochs"] == 2
    assert params["args.eval_strategy"] == "steps"
    assert params["model.id2label.1"] == "pos"
    assert math.isclose(values(folder, "train_loss")[0]["value"], trainer.state.log_history[-1]["train_loss"])
    assert list(read_logs(folder)) == []
    assert dreamlake.read_params(folder) == params

    prediction = trainer.predict(data[:8])  # after train(): the session is opened again
    callback.session.close()
    assert values(folder, "test/loss") == [
        {"value": prediction.metrics["test_loss"], "step": 8, "epoch": 2.0}
    ]
    assert len(values(folder, "eval/loss")) == 4


def test_a_training_that_raised_and_was_caught_is_failed_at_exit(tmp_path: Path) -> None:
    """train() began, the caller caught its exception (a notebook cell): on_train_end never came."""
    code = f"""
        from transformers import TrainerControl, TrainerState, TrainingArguments
        from transformers.trainer_callback import CallbackHandler
        from dreamlake.integrations.transformers import DreamlakeCallback
        args = TrainingArguments(output_dir={str(tmp_path / "out")!r}, report_to="none")
        callback = DreamlakeCallback(name="run", workspace="ws", local_path={str(tmp_path)!r})
        handler = CallbackHandler([callback], None, None, None, None)
        handler.on_train_begin(args, TrainerState(), TrainerControl())
        try:
            raise RuntimeError("out of memory")
        except RuntimeError:
            pass
        """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    found = json.loads((tmp_path / "ws" / "run" / "session.json").read_text())["attempts"]
    assert [(a["status"], a.get("error")) for a in found] == [("failed", "TrainingNotFinished")]


def test_a_config_that_cannot_be_read_is_said_and_training_goes_on(
    args: TrainingArguments, tmp_path: Path
) -> None:
    class Broken(PretrainedConfig):  # type: ignore[misc]
        def to_dict(self) -> dict[str, Any]:
            raise TypeError("cannot pickle '_thread.lock' object")

    callback = DreamlakeCallback(name="run", workspace="ws", local_path=tmp_path)
    run = Run(args, callback, types.SimpleNamespace(config=Broken()))
    run.train_begin()
    run.log(1, 0.5, {"loss": 1.0})
    run.train_end()
    folder = tmp_path / "ws" / "run"
    assert values(folder, "loss") == [{"value": 1.0, "step": 1, "epoch": 0.5}]
    (warning,) = [r for r in read_logs(folder) if r["level"] == "warn"]
    assert "config could not be read" in warning["message"] and "_thread.lock" in warning["metadata"]["error"]
    assert "args.learning_rate" in read_params(folder)


def test_keys_whose_dotted_names_clash_are_never_dropped(args: TrainingArguments, tmp_path: Path) -> None:
    callback = DreamlakeCallback(name="run", workspace="ws", local_path=tmp_path)
    run = Run(args, callback, model(custom_map={"v1": 1, "v1.0": 0}))
    run.train_begin()
    run.train_end()
    params = read_params(tmp_path / "ws" / "run")
    assert params["model.custom_map"] == "{'v1': 1, 'v1.0': 0}", "kept whole, as its text"
