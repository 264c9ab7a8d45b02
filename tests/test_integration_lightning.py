"""dreamlake.integrations.lightning: DreamlakeLogger under a real lightning.Trainer (a tiny model
on random tensors, on the CPU), then read from disk; the Logger's calls one by one."""

import importlib
import json
import pickle
import sys
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest

from dreamlake import Session, read_logs, read_params, read_track
from dreamlake._read._tracks import track_names

torch = pytest.importorskip("torch", reason="torch is not installed: pip install torch==2.13.0")
lightning = pytest.importorskip("lightning", reason="lightning is not installed: pip install lightning")

from lightning.fabric.utilities.rank_zero import rank_zero_only  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from dreamlake.integrations.lightning import DreamlakeLogger  # noqa: E402

# What a fit on this machine warns of, and nothing else: DataLoaders without worker processes
# (what a test on two cores wants), and Lightning 2.6 building torch's deprecated LeafSpec.
NO_WORKERS = pytest.mark.filterwarnings(
    r"ignore:The '(train|val)_dataloader' does not have many workers:lightning.fabric.utilities.warnings.PossibleUserWarning"
)
LEAF_SPEC = pytest.mark.filterwarnings(
    r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"
)


def fit_warnings(test: Any) -> Any:
    return NO_WORKERS(LEAF_SPEC(test))


class Tiny(lightning.LightningModule):  # type: ignore[misc]
    """One linear layer; remembers each training loss it logged, by global step."""

    def __init__(
        self, lr: float = 0.1, layers: dict[str, Any] | None = None, fail_at: int | None = None
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.linear = torch.nn.Linear(4, 1)
        self.logged: list[tuple[int, float]] = []

    def training_step(self, batch: Any, batch_index: int) -> Any:
        if self.hparams.fail_at == self.global_step:
            raise RuntimeError("diverged")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.linear(x), y)
        self.log("train_loss", loss)
        self.logged.append((self.global_step, loss.item()))
        return loss

    def validation_step(self, batch: Any, batch_index: int) -> None:
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.linear(x), y))

    def test_step(self, batch: Any, batch_index: int) -> None:
        x, y = batch
        self.log("test_loss", torch.nn.functional.mse_loss(self.linear(x), y))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loaders() -> tuple[DataLoader[Any], DataLoader[Any]]:
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(32, 4, generator=generator), torch.randn(32, 1, generator=generator))
    return DataLoader(data, batch_size=8), DataLoader(data, batch_size=16)


def fit(logger: DreamlakeLogger, model: Tiny) -> Any:
    trainer = lightning.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=logger,
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, *loaders())
    return trainer


def values(folder: Path, name: str) -> list[dict[str, Any]]:
    return [point["data"] for point in read_track(folder, name)]


def attempts(folder: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads((folder / "session.json").read_text())["attempts"]
    return found


@fit_warnings
def test_a_fit_is_recorded_as_parameters_and_tracks(tmp_path: Path) -> None:
    """Every training loss Lightning logged, with its step and epoch; validation per epoch;
    the module's hyperparameters; the session closed as completed; a test after it appended."""
    logger = DreamlakeLogger(name="run-1", workspace="mnist", local_path=tmp_path)
    model = Tiny(lr=0.05, layers={"hidden": 4, "ids": {0: "in"}})
    trainer = fit(logger, model)
    folder = tmp_path / "mnist" / "run-1"
    assert not logger._get_session().is_open  # finalize("success") closed it

    assert len(model.logged) == 8  # 4 batches, 2 epochs
    assert values(folder, "train_loss") == [
        {"value": loss, "step": step, "epoch": step // 4} for step, loss in model.logged
    ]
    val = values(folder, "val/loss")
    assert [(p["step"], p["epoch"]) for p in val] == [(3, 0), (7, 1)]
    assert val[-1]["value"] == pytest.approx(trainer.callback_metrics["val/loss"].item())
    assert track_names(folder) == ["train_loss", "val/loss"]  # no `epoch` track
    assert read_params(folder) == {
        "lr": 0.05,
        "layers.hidden": 4,
        "layers.ids.0": "in",
        "fail_at": None,
    }
    assert list(read_logs(folder)) == []
    assert [a["status"] for a in attempts(folder)] == ["completed"]
    assert (logger.name, logger.version) == ("mnist", "run-1")

    [result] = trainer.test(model, loaders()[1], verbose=False)  # opens the session again, appending
    assert values(folder, "test_loss") == [
        {"value": pytest.approx(result["test_loss"]), "step": 8, "epoch": 2}
    ]
    assert [a["status"] for a in attempts(folder)] == ["completed", "completed"]
    assert len(values(folder, "train_loss")) == 8


@fit_warnings
def test_a_failed_fit_is_recorded_as_failed(tmp_path: Path) -> None:
    logger = DreamlakeLogger(name="run", workspace="ws", local_path=tmp_path)
    with pytest.raises(RuntimeError, match="diverged"):
        fit(logger, Tiny(fail_at=2))
    folder = tmp_path / "ws" / "run"
    assert [p["step"] for p in values(folder, "train_loss")] == [0, 1]
    [attempt] = attempts(folder)
    assert (attempt["status"], attempt["error"]) == ("failed", "RuntimeError")


@fit_warnings
def test_a_session_passed_in_is_used_and_left_open(tmp_path: Path) -> None:
    with Session(name="mine", workspace="ws", local_path=tmp_path) as session:
        logger = DreamlakeLogger(session=session)
        fit(logger, Tiny())
        assert session.is_open
        assert len(values(session.path, "train_loss")) == 8  # flushed by finalize, not closed
        assert logger.experiment is session
        session.log("after fit")
    assert [r["message"] for r in read_logs(tmp_path / "ws" / "mine")] == ["after fit"]


@pytest.mark.parametrize(
    ("status", "exception", "expected"),
    [
        ("success", None, ("completed", None)),
        ("failed", ValueError("bad"), ("failed", "ValueError")),
        ("failed", KeyboardInterrupt(), ("interrupted", None)),
        ("finished", None, ("interrupted", None)),
    ],
)
def test_finalize_ends_the_session_with_lightnings_status(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    status: str,
    exception: BaseException | None,
    expected: tuple[str, str | None],
) -> None:
    """Lightning calls finalize("failed") inside its `except`: the exception's type is the error,
    in session.json."""
    logger = DreamlakeLogger(name="run", workspace="ws", local_path=tmp_path)
    logger.log_metrics({"loss": 1.0}, step=0)
    if exception is None:
        logger.finalize(status)
    else:
        try:
            raise exception
        except BaseException:
            logger.finalize(status)
    ended = [(a["status"], a.get("error")) for a in attempts(tmp_path / "ws" / "run")]
    assert ended == [expected]
    assert not logger._get_session().is_open
    logger.finalize(status)  # once closed, nothing more
    assert [(a["status"], a.get("error")) for a in attempts(tmp_path / "ws" / "run")] == [expected]


def test_log_metrics_reads_tensors_and_records_the_rest(tmp_path: Path) -> None:
    """Tensors by .item(), ints stay ints, the epoch key is the points' epoch; flags, strings,
    tensors of several values and names that cannot be tracks go to one record."""
    logger = DreamlakeLogger(name="run", workspace="ws", local_path=tmp_path)
    logger.log_metrics(
        {
            "loss": torch.tensor(0.5),
            "count": torch.tensor(3),
            "plain": 2,
            "epoch": 1,
            "flag": True,
            "many": torch.tensor([1.0, 2.0]),
            "bad\\name": 1.0,
        },
        step=9,
    )
    logger.log_metrics({"loss": 0.25})  # no step, no epoch
    logger.experiment.flush()  # save() leaves it to the writer
    folder = tmp_path / "ws" / "run"
    assert values(folder, "loss") == [{"value": 0.5, "step": 9, "epoch": 1}, {"value": 0.25}]
    assert values(folder, "count") == [{"value": 3, "step": 9, "epoch": 1}]
    assert values(folder, "plain") == [{"value": 2, "step": 9, "epoch": 1}]
    [record] = read_logs(folder)
    assert (record["level"], record["message"]) == ("info", "lightning log_metrics")
    assert record["metadata"] == {"step": 9, "epoch": 1, "flag": True, "many": [1.0, 2.0], "bad\\name": 1.0}
    logger.finalize("success")


def test_log_hyperparams_takes_a_namespace_or_a_dict(tmp_path: Path) -> None:
    logger = DreamlakeLogger(name="run", workspace="ws", local_path=tmp_path)
    logger.log_hyperparams(Namespace(lr=0.1, ids={0: "a"}, inner=Namespace(depth=2), steps=[1, 2]))
    logger.log_hyperparams({"lr": 0.2, "bad": {"x.": 1}, "": "nameless"})
    logger.experiment.flush()  # save() leaves it to the writer
    folder = tmp_path / "ws" / "run"
    assert read_params(folder) == {
        "lr": 0.2,
        "ids.0": "a",
        "inner.depth": 2,
        "steps": [1, 2],
        "bad": "{'x.': 1}",
    }
    [record] = read_logs(folder)
    assert (record["level"], record["metadata"]) == ("warn", {"parameters": {"''": "nameless"}})
    with pytest.raises(TypeError, match=r"dict or argparse\.Namespace, got list"):
        logger.log_hyperparams([1, 2])  # type: ignore[arg-type]
    logger.finalize("success")


def test_other_ranks_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = DreamlakeLogger(name="run", workspace="ws", local_path=tmp_path)
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.save()
    logger.finalize("success")
    assert not isinstance(logger.experiment, Session)  # Lightning's dummy experiment
    assert list(tmp_path.iterdir()) == []


def test_a_copy_for_another_process_logs_to_the_same_session(tmp_path: Path) -> None:
    """ddp_spawn pickles the logger: the copy makes its own Session of the same folder."""
    logger = DreamlakeLogger(name="run", workspace="ws", local_path=tmp_path)
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.experiment.flush()  # save() leaves it to the writer
    copy = pickle.loads(pickle.dumps(logger))
    copy.log_metrics({"loss": 0.5}, step=1)
    copy.finalize("success")
    logger.finalize("success")
    assert values(tmp_path / "ws" / "run", "loss") == [{"value": 1.0, "step": 0}, {"value": 0.5, "step": 1}]
    with Session(name="mine", workspace="ws", local_path=tmp_path) as session:
        with pytest.raises(TypeError, match="cannot go to another process"):
            pickle.dumps(DreamlakeLogger(session=session))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "name and workspace not given"),
        ({"workspace": "ws"}, "name not given"),
        ({"name": "run"}, "workspace not given"),
    ],
)
def test_a_logger_without_name_or_workspace_is_a_type_error_at_once(kwargs: Any, message: str) -> None:
    with pytest.raises(TypeError, match=f"needs session= .*: {message}"):
        DreamlakeLogger(**kwargs)


def test_bad_arguments_fail_at_construction(tmp_path: Path) -> None:
    session = Session(name="run", workspace="ws", local_path=tmp_path)
    with pytest.raises(TypeError, match=r"not both \(got session= and name=, local_path=\)"):
        DreamlakeLogger("other", local_path=tmp_path, session=session)
    with pytest.raises(ValueError, match="name"):
        DreamlakeLogger(name="a/b", workspace="ws", local_path=tmp_path)
    with pytest.raises(TypeError, match="unexpected keyword"):
        DreamlakeLogger(name="run", workspace="ws", colour="red")
    assert list(tmp_path.iterdir()) == []


def test_a_session_passed_in_must_be_open(tmp_path: Path) -> None:
    logger = DreamlakeLogger(session=Session(name="run", workspace="ws", local_path=tmp_path))
    with pytest.raises(RuntimeError, match="is not open: open it around the training"):
        logger.log_metrics({"loss": 1.0}, step=0)


def test_importing_without_lightning_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither `lightning` nor the older `pytorch_lightning`: one line naming the install."""
    packages = ("lightning", "pytorch_lightning", "lightning_fabric")
    for module in [*packages, *sys.modules]:
        if module.split(".")[0] in packages:
            monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    monkeypatch.delitem(sys.modules, "dreamlake.integrations.lightning")
    with pytest.raises(ImportError, match=r"needs Lightning: pip install lightning") as info:
        importlib.import_module("dreamlake.integrations.lightning")
    assert "\n" not in str(info.value)


def test_without_lightning_the_older_pytorch_lightning_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytorch_lightning = pytest.importorskip("pytorch_lightning", reason="pytorch_lightning is not installed")
    for module in ["lightning", *sys.modules]:
        if module.split(".")[0] == "lightning":
            monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.delitem(sys.modules, "dreamlake.integrations.lightning")
    older = importlib.import_module("dreamlake.integrations.lightning")
    logger = older.DreamlakeLogger(name="run", workspace="ws", local_path=tmp_path)
    assert isinstance(logger, pytorch_lightning.loggers.Logger)
    logger.log_metrics({"loss": 1.0}, step=3)
    logger.finalize("success")
    assert values(tmp_path / "ws" / "run", "loss") == [{"value": 1.0, "step": 3}]


def test_checkpoints_and_reports_go_into_the_session_folder(tmp_path: Path) -> None:
    logger = DreamlakeLogger(name="run", workspace="ws", local_path=tmp_path)
    assert logger.save_dir == str(tmp_path)
    assert logger.log_dir == str(tmp_path / "ws" / "run")
    logger.finalize("success")


def test_a_copy_made_elsewhere_writes_to_the_same_folder_even_with_resume_never(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    logger = DreamlakeLogger(name="run", workspace="ws", local_path="relative", resume="never")
    logger.log_metrics({"loss": 1.0}, step=0)
    logger.experiment.flush()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    copy = pickle.loads(pickle.dumps(logger))
    copy.log_metrics({"loss": 0.5}, step=1)
    copy.finalize("success")
    logger.finalize("success")
    assert values(tmp_path / "relative" / "ws" / "run", "loss") == [
        {"value": 1.0, "step": 0},
        {"value": 0.5, "step": 1},
    ]
    assert not (tmp_path / "elsewhere" / "relative").exists()


@pytest.mark.parametrize(
    ("exception", "expected"),
    [(SystemExit(0), ("completed", None)), (None, ("failed", None))],
)
def test_finalize_failed_reads_the_exception_being_handled(
    tmp_path: Path, exception: BaseException | None, expected: tuple[str, str | None]
) -> None:
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    for raised, want in [(exception, expected), (SIGTERMException(), ("interrupted", None))]:
        folder = tmp_path / type(raised).__name__
        logger = DreamlakeLogger(name="run", workspace="ws", local_path=folder)
        logger.log_metrics({"loss": 1.0}, step=0)
        if raised is None:
            logger.finalize("failed")
        else:
            try:
                raise raised
            except BaseException:
                logger.finalize("failed")
        assert [(a["status"], a.get("error")) for a in attempts(folder / "ws" / "run")] == [want]


def test_an_epoch_that_is_no_number_is_kept_in_a_record(tmp_path: Path) -> None:
    logger = DreamlakeLogger(name="run", workspace="ws", local_path=tmp_path)
    logger.log_metrics({"loss": 1.0, "epoch": "warmup"}, step=3)
    logger.finalize("success")
    folder = tmp_path / "ws" / "run"
    assert values(folder, "loss") == [{"value": 1.0, "step": 3}]
    assert [r["metadata"] for r in read_logs(folder)] == [{"step": 3, "epoch": "warmup"}]


def test_clashing_hyperparameters_are_kept_in_a_warning(tmp_path: Path) -> None:
    logger = DreamlakeLogger(name="run", workspace="ws", local_path=tmp_path)
    logger.log_hyperparams({"lr": 0.1, "lr.warmup": 10, "layers": (4, 8)})
    logger.finalize("success")
    folder = tmp_path / "ws" / "run"
    assert read_params(folder) == {"lr": 0.1, "layers": [4, 8]}
    (record,) = read_logs(folder)
    assert record["level"] == "warn" and record["metadata"] == {"parameters": {"'lr.warmup'": "10"}}
