"""Every code block of the logging doc, run as written, checking the file it produces."""

import time
from pathlib import Path

import pytest

from dreamlake import Session

from .conftest import read_records


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def records(workspace: str, name: str, local_path: str = "./data") -> list[dict]:
    return read_records(Path(local_path) / workspace / name / "logs.jsonl")


def summary(workspace: str, name: str) -> list[tuple]:
    return [(r["level"], r["message"], r["metadata"]) for r in records(workspace, name)]


def test_basic_logging() -> None:
    with Session(name="demo", workspace="test", local_path="./data") as session:
        session.log("Training started")
        session.log("Model architecture: ResNet-50", level="info")
        session.log("GPU memory low", level="warn")
        session.log("Failed to load checkpoint", level="error")

    assert summary("test", "demo") == [
        ("info", "Training started", None),
        ("info", "Model architecture: ResNet-50", None),
        ("warn", "GPU memory low", None),
        ("error", "Failed to load checkpoint", None),
    ]


def test_log_levels() -> None:
    with Session(name="demo", workspace="test", local_path="./data") as session:
        session.log("Verbose debug info", level="debug")
        session.log("Training epoch 1", level="info")
        session.log("Learning rate decreased", level="warn")
        session.log("Gradient exploded", level="error")
        session.log("Out of memory - aborting", level="fatal")

    assert [r["level"] for r in records("test", "demo")] == ["debug", "info", "warn", "error", "fatal"]


def test_structured_logging_with_metadata() -> None:
    with Session(name="demo", workspace="test", local_path="./data") as session:
        session.log(
            "Epoch completed",
            level="info",
            metadata={"epoch": 5, "train_loss": 0.234, "val_loss": 0.456, "learning_rate": 0.001},
        )
        session.log(
            "System status",
            level="info",
            metadata={"gpu_memory": "8GB", "cpu_percent": 45.2, "disk_space": "50GB"},
        )

    assert summary("test", "demo") == [
        (
            "info",
            "Epoch completed",
            {"epoch": 5, "train_loss": 0.234, "val_loss": 0.456, "learning_rate": 0.001},
        ),
        ("info", "System status", {"gpu_memory": "8GB", "cpu_percent": 45.2, "disk_space": "50GB"}),
    ]


def test_logging_during_training() -> None:
    train_loader = [((i, i), i % 3) for i in range(250)]

    def train_step(data: tuple, target: int) -> float:
        return 1.0 / (1 + data[0] + target)

    def validate(model: object, loader: list) -> float:
        return 0.5

    model = object()
    val_loader = train_loader
    epochs = 10

    with Session(name="mnist-training", workspace="ml", local_path="./data") as session:
        session.log("Starting training", level="info")
        for epoch in range(epochs):
            session.log(f"Epoch {epoch + 1}/10", level="info")
            train_loss = 0.0
            for batch_idx, (data, target) in enumerate(train_loader):
                loss = train_step(data, target)
                train_loss += loss
                if batch_idx % 100 == 0:
                    session.log(f"Batch {batch_idx}", level="debug", metadata={"batch_loss": loss})
            avg_train_loss = train_loss / len(train_loader)
            val_loss = validate(model, val_loader)
            session.log(
                f"Epoch {epoch + 1} complete",
                level="info",
                metadata={
                    "epoch": epoch + 1,
                    "train_loss": avg_train_loss,
                    "val_loss": val_loss,
                    "time": time.time(),
                },
            )

    got = records("ml", "mnist-training")
    # 1 start + per epoch: 1 header + 3 batches (0, 100, 200) + 1 summary
    assert len(got) == 1 + epochs * 5
    assert [r["sequenceNumber"] for r in got] == list(range(len(got)))
    batches = [r for r in got if r["level"] == "debug"]
    assert [b["message"] for b in batches[:3]] == ["Batch 0", "Batch 100", "Batch 200"]
    assert batches[0]["metadata"] == {"batch_loss": train_step((0, 0), 0)}
    last = got[-1]
    assert last["message"] == "Epoch 10 complete"
    assert last["metadata"]["epoch"] == 10 and last["metadata"]["val_loss"] == 0.5


def test_log_storage_format_under_default_local_path() -> None:
    with Session(name="demo", workspace="test") as session:
        session.log("Training started")
        session.log("Epoch 1 complete", metadata={"train_loss": 0.5, "val_loss": 0.6})

    lines = Path(".dreamlake/test/demo/logs.jsonl").read_text("utf-8").splitlines()
    got = records("test", "demo", local_path=".dreamlake")
    assert len(lines) == 2
    assert got[0]["metadata"] is None and got[0]["message"] == "Training started"
    assert got[1]["metadata"] == {"train_loss": 0.5, "val_loss": 0.6}
    assert [r["sequenceNumber"] for r in got] == [0, 1]
    assert all(r["timestamp"].endswith("Z") for r in got)


def test_error_logging_propagates_and_keeps_the_record() -> None:
    def risky_operation() -> None:
        raise KeyError("checkpoint.pt")

    with pytest.raises(KeyError):
        with Session(name="demo", workspace="test", local_path="./data") as session:
            try:
                risky_operation()
                session.log("Operation succeeded", level="info")
            except Exception as e:
                session.log(
                    f"Operation failed: {e!s}",
                    level="error",
                    metadata={"error_type": type(e).__name__, "error_message": str(e)},
                )
                raise

    assert summary("test", "demo") == [
        (
            "error",
            "Operation failed: 'checkpoint.pt'",
            {"error_type": "KeyError", "error_message": "'checkpoint.pt'"},
        ),
    ]


def test_progress_logging() -> None:
    processed = []
    with Session(name="data-processing", workspace="etl", local_path="./data") as session:
        total = 10000
        session.log(f"Processing {total} items", level="info")
        for i in range(total):
            processed.append(i)
            if (i + 1) % (total // 10) == 0:
                percent = ((i + 1) / total) * 100
                session.log(
                    f"Progress: {percent:.0f}%",
                    level="info",
                    metadata={"processed": i + 1, "total": total, "percent": percent},
                )
        session.log("Processing complete", level="info")

    got = records("etl", "data-processing")
    assert [r["message"] for r in got[1:-1]] == [f"Progress: {p}%" for p in range(10, 101, 10)]
    assert got[-2]["metadata"] == {"processed": 10000, "total": 10000, "percent": 100.0}


def test_conditional_logging() -> None:
    threshold = 0.1

    def train() -> float:
        return 0.25

    with Session(name="demo", workspace="test", local_path="./data") as session:
        verbose = True
        if verbose:
            session.log("Verbose mode enabled", level="debug")
        loss = train()
        if loss > threshold:
            session.log(
                f"Loss {loss} exceeds threshold {threshold}",
                level="warn",
                metadata={"loss": loss, "threshold": threshold},
            )

    assert summary("test", "demo") == [
        ("debug", "Verbose mode enabled", None),
        ("warn", "Loss 0.25 exceeds threshold 0.1", {"loss": 0.25, "threshold": 0.1}),
    ]


def test_training_loop_pattern() -> None:
    epochs = 3

    def train_one_epoch() -> dict:
        return {"loss": 0.3, "acc": 0.9}

    with Session(name="training", workspace="ml", local_path="./data") as session:
        session.log("Training started", level="info", metadata={"model": "ResNet50"})
        for epoch in range(epochs):
            session.log(f"Starting epoch {epoch + 1}", level="info")
            metrics = train_one_epoch()
            session.log(f"Epoch {epoch + 1} complete", level="info", metadata=metrics)
        session.log("Training complete", level="info")

    got = summary("ml", "training")
    assert got[0] == ("info", "Training started", {"model": "ResNet50"})
    assert got[-2] == ("info", "Epoch 3 complete", {"loss": 0.3, "acc": 0.9})
    assert len(got) == 2 + 2 * epochs


def test_debugging_pattern_with_numpy_shapes() -> None:
    np = pytest.importorskip("numpy")
    data = np.zeros((32, 1, 28, 28), dtype=np.float32)
    batch_size = 32
    model = [object()] * 7

    def count_layers(m: list) -> int:
        return len(m)

    with Session(name="debug", workspace="test", local_path="./data") as session:
        session.log("Debug session started", level="debug")
        session.log("Model architecture", level="debug", metadata={"layers": count_layers(model)})
        session.log(
            "Data shapes",
            level="debug",
            metadata={"input_shape": data.shape, "batch_size": batch_size},
        )

    got = summary("test", "debug")
    assert got[1] == ("debug", "Model architecture", {"layers": 7})
    assert got[2] == ("debug", "Data shapes", {"input_shape": [32, 1, 28, 28], "batch_size": 32})


@pytest.mark.parametrize("failing", [[], [2, 5]])
def test_error_tracking_pattern(failing: list[int]) -> None:
    items = list(range(8))

    def process(item: int) -> None:
        if item in failing:
            raise ValueError(f"bad item {item}")

    with Session(name="production", workspace="prod", local_path="./data") as session:
        errors = []
        for item in items:
            try:
                process(item)
            except Exception as e:
                errors.append(str(e))
                session.log(
                    f"Failed to process item {item}",
                    level="error",
                    metadata={"item": item, "error": str(e)},
                )
        if errors:
            session.log(
                f"Processing complete with {len(errors)} errors",
                level="warn",
                metadata={"total_errors": len(errors)},
            )
        else:
            session.log("Processing complete successfully", level="info")

    got = summary("prod", "production")
    expected = [
        ("error", f"Failed to process item {i}", {"item": i, "error": f"bad item {i}"}) for i in failing
    ]
    if failing:
        expected.append(("warn", "Processing complete with 2 errors", {"total_errors": 2}))
    else:
        expected.append(("info", "Processing complete successfully", None))
    assert got == expected
