"""Tracks: every code block of the tracks doc as written, then the rules behind them."""

import json
import math
import os
import random
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from dreamlake import Session, Track, _batcher, read_track
from dreamlake._cli._main import main

from .conftest import KEYS, read_records

POINT_KEYS = ["index", "data", "createdAt"]
META_KEYS = ["name", "description", "tags", "metadata", "totalDataPoints", "createdAt", "updatedAt"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def points(workspace: str, name: str, track: str, local_path: str = "./data") -> list[dict[str, Any]]:
    """A track's data.jsonl, parsed strictly: whole lines, keys in order, indices 0, 1, 2, ..."""
    data = (Path(local_path) / workspace / name / "tracks" / track / "data.jsonl").read_bytes()
    assert data == b"" or data.endswith(b"\n")
    parsed = [orjson.loads(line) for line in data.split(b"\n")[:-1]]
    for point in parsed:
        assert list(point) == POINT_KEYS
        assert point["createdAt"].endswith("Z") and len(point["createdAt"]) == 27
    assert [p["index"] for p in parsed] == list(range(len(parsed)))
    return parsed


def values(workspace: str, name: str, track: str, local_path: str = "./data") -> list[dict[str, Any]]:
    return [p["data"] for p in points(workspace, name, track, local_path)]


def described(workspace: str, name: str, track: str, local_path: str = "./data") -> dict[str, Any]:
    text = (Path(local_path) / workspace / name / "tracks" / track / "metadata.json").read_text()
    meta: dict[str, Any] = json.loads(text)
    assert list(meta) == META_KEYS
    return meta


# -- the doc's code blocks, as written -------------------------------------------------


def test_basic_track_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with Session(name="demo", workspace="test", local_path="./data") as session:
        # Append a single data point
        result = session.track("train_loss").append(value=0.5, epoch=1)
        print(f"Appended at index {result['index']}")

    assert capsys.readouterr().out == "Appended at index 0\n"
    assert values("test", "demo", "train_loss") == [{"value": 0.5, "epoch": 1}]
    meta = described("test", "demo", "train_loss")
    assert meta["name"] == "train_loss" and meta["totalDataPoints"] == 1
    assert meta["updatedAt"] == points("test", "demo", "train_loss")[0]["createdAt"]


def test_flexible_data_schema() -> None:
    with Session(name="demo", workspace="test", local_path="./data") as session:
        # Simple value tracking
        session.track("loss").append(value=0.5)

        # With step/epoch
        session.track("accuracy").append(value=0.85, step=100, epoch=1)

        # Multiple metrics per point
        session.track("metrics").append(loss=0.5, accuracy=0.85, learning_rate=0.001, epoch=1)

        # With timestamps
        import time

        session.track("system").append(cpu_percent=45.2, memory_mb=1024, timestamp=time.time())

    assert values("test", "demo", "loss") == [{"value": 0.5}]
    assert values("test", "demo", "accuracy") == [{"value": 0.85, "step": 100, "epoch": 1}]
    assert values("test", "demo", "metrics") == [
        {"loss": 0.5, "accuracy": 0.85, "learning_rate": 0.001, "epoch": 1}
    ]
    [system] = values("test", "demo", "system")
    assert list(system) == ["cpu_percent", "memory_mb", "timestamp"] and system["timestamp"] > 1.7e9


def test_batch_append(capsys: pytest.CaptureFixture[str]) -> None:
    with Session(name="demo", workspace="test", local_path="./data") as session:
        # Append batch of data points
        result = session.track("train_loss").append_batch(
            [
                {"value": 0.5, "step": 1, "epoch": 1},
                {"value": 0.45, "step": 2, "epoch": 1},
                {"value": 0.40, "step": 3, "epoch": 1},
                {"value": 0.38, "step": 4, "epoch": 1},
            ]
        )

        print(f"Appended {result['count']} data points")
        print(f"Index range: {result['startIndex']} to {result['endIndex']}")

    assert capsys.readouterr().out == "Appended 4 data points\nIndex range: 0 to 3\n"
    assert [p["value"] for p in values("test", "demo", "train_loss")] == [0.5, 0.45, 0.40, 0.38]


def test_reading_track_data(capsys: pytest.CaptureFixture[str]) -> None:
    with Session(name="demo", workspace="test", local_path="./data") as session:
        # Append some data first
        for i in range(100):
            session.track("loss").append(value=1.0 / (i + 1), step=i)

        # Read first 10 points
        result = session.track("loss").read(start_index=0, limit=10)

        print(f"Total points: {result['total']}")
        for point in result["data"]:
            print(f"Index {point['index']}: {point['data']}")

    expected = ["Total points: 100"] + [
        f"Index {i}: {{'value': {1.0 / (i + 1)}, 'step': {i}}}" for i in range(10)
    ]
    assert capsys.readouterr().out.splitlines() == expected
    assert (result["startIndex"], result["endIndex"], result["hasMore"]) == (0, 9, True)


def test_track_statistics(capsys: pytest.CaptureFixture[str]) -> None:
    with Session(name="demo", workspace="test", local_path="./data") as session:
        # Append data
        for i in range(1000):
            session.track("loss").append(value=1.0 / (i + 1), step=i)

        # Get stats
        stats = session.track("loss").stats()

        print(f"Track: {stats['name']}")
        print(f"Total data points: {stats['totalDataPoints']}")
        print(f"Buffered: {stats['bufferedDataPoints']}")
        print(f"Chunked: {stats['chunkedDataPoints']}")

    assert capsys.readouterr().out.splitlines() == [
        "Track: loss",
        "Total data points: 1000",
        "Buffered: 1000",
        "Chunked: 0",
    ]


def test_list_all_tracks(capsys: pytest.CaptureFixture[str]) -> None:
    with Session(name="demo", workspace="test", local_path="./data") as session:
        # Create multiple tracks
        session.track("train_loss").append(value=0.5)
        session.track("val_loss").append(value=0.6)
        session.track("train_acc").append(value=0.85)
        session.track("val_acc").append(value=0.83)

        # List all tracks
        tracks = session.track("train_loss").list_all()

        print(f"Found {len(tracks)} tracks:")
        for track in tracks:
            print(f"  - {track['name']}: {track['totalDataPoints']} points")

    assert capsys.readouterr().out.splitlines() == [
        "Found 4 tracks:",
        "  - train_acc: 1 points",
        "  - train_loss: 1 points",
        "  - val_acc: 1 points",
        "  - val_loss: 1 points",
    ]


class _Loader(list[tuple[list[float], list[int]]]):
    """A stand-in for a torch DataLoader: batches of (data, target)."""


def test_training_loop_example() -> None:
    train_loader = _Loader([([0.1] * 4, [1] * 4)] * 5)
    train_dataset = [0] * 20
    val_loader, model = object(), object()
    calls = iter(range(10**6))

    def train_step(data: list[float], target: list[int]) -> tuple[float, int]:
        return 1.0 / (next(calls) + 1), 3

    def validate(model: object, loader: object) -> tuple[float, float]:
        return 0.4, 0.9

    globals().update(train_loader=train_loader, train_dataset=train_dataset, train_step=train_step)
    globals().update(validate=validate, model=model, val_loader=val_loader)
    try:
        _doc_train_model()
    finally:
        for name in ("train_loader", "train_dataset", "train_step", "validate", "model", "val_loader"):
            globals().pop(name)

    assert json.loads(Path("experiments/computer-vision/mnist-training/parameters.json").read_text()) == {
        "learning_rate": 0.001,
        "batch_size": 32,
        "epochs": 10,
    }
    for track in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert [
            p["epoch"] for p in values("computer-vision", "mnist-training", track, "experiments")
        ] == list(range(1, 11))
    assert values("computer-vision", "mnist-training", "train_accuracy", "experiments")[0]["value"] == 15 / 20
    logs = read_records(Path("experiments/computer-vision/mnist-training/logs.jsonl"))
    assert [r["message"] for r in logs][:2] == ["Starting training", "Epoch 1/10 complete"]
    assert logs[-1]["message"] == "Training complete" and len(logs) == 12


def _doc_train_model() -> None:
    from dreamlake import Session

    def train_model():  # type: ignore[no-untyped-def]
        with Session(
            name="mnist-training", workspace="computer-vision", local_path="./experiments"
        ) as session:
            session.parameters().set(learning_rate=0.001, batch_size=32, epochs=10)

            session.log("Starting training")

            for epoch in range(10):
                # Training phase
                train_loss = 0.0
                train_correct = 0

                for batch_idx, (data, target) in enumerate(train_loader):  # noqa: B007, F821
                    loss, correct = train_step(data, target)  # noqa: F821
                    train_loss += loss
                    train_correct += correct

                # Calculate averages
                avg_train_loss = train_loss / len(train_loader)  # noqa: F821
                train_accuracy = train_correct / len(train_dataset)  # noqa: F821

                # Validation phase
                val_loss, val_accuracy = validate(model, val_loader)  # noqa: F821

                # Track metrics
                session.track("train_loss").append(value=avg_train_loss, epoch=epoch + 1)
                session.track("train_accuracy").append(value=train_accuracy, epoch=epoch + 1)
                session.track("val_loss").append(value=val_loss, epoch=epoch + 1)
                session.track("val_accuracy").append(value=val_accuracy, epoch=epoch + 1)

                # Log progress
                session.log(
                    f"Epoch {epoch + 1}/10 complete",
                    metadata={
                        "train_loss": avg_train_loss,
                        "val_loss": val_loss,
                        "train_acc": train_accuracy,
                        "val_acc": val_accuracy,
                    },
                )

            session.log("Training complete")

    train_model()


def test_multiple_metrics_in_one_track() -> None:
    with Session(name="demo", workspace="test", local_path="./data") as session:
        for epoch in range(10):
            # All metrics in one track
            session.track("all_metrics").append(
                epoch=epoch,
                train_loss=0.5 / (epoch + 1),
                val_loss=0.6 / (epoch + 1),
                train_acc=0.8 + epoch * 0.01,
                val_acc=0.75 + epoch * 0.01,
                learning_rate=0.001 * (0.9**epoch),
            )

    stored = values("test", "demo", "all_metrics")
    assert [p["epoch"] for p in stored] == list(range(10))
    assert list(stored[3]) == ["epoch", "train_loss", "val_loss", "train_acc", "val_acc", "learning_rate"]
    assert stored[3]["learning_rate"] == 0.001 * 0.9**3


def test_learning_rate_tracking() -> None:
    def train_one_epoch(learning_rate: float) -> float:
        return learning_rate * 2

    with Session(name="demo", workspace="test", local_path="./data") as session:
        learning_rate = 0.1

        for epoch in range(100):
            # Track current learning rate
            session.track("learning_rate").append(value=learning_rate, epoch=epoch)

            # Train...
            train_loss = train_one_epoch(learning_rate)

            session.track("train_loss").append(value=train_loss, epoch=epoch)

            # Reduce learning rate
            if (epoch + 1) % 30 == 0:
                learning_rate *= 0.1
                session.log(f"Learning rate reduced to {learning_rate}")

    rates = [p["value"] for p in values("test", "demo", "learning_rate")]
    assert len(rates) == 100 and rates[29] == 0.1 and math.isclose(rates[30], 0.01)
    assert len(read_records(Path("data/test/demo/logs.jsonl"))) == 3


def test_system_monitoring(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("psutil")
    fake.cpu_percent = lambda interval=None: 12.5  # type: ignore[attr-defined]
    fake.virtual_memory = lambda: types.SimpleNamespace(  # type: ignore[attr-defined]
        percent=40.0, used=4 * 1024**3, available=6 * 1024**3
    )
    monkeypatch.setitem(sys.modules, "psutil", fake)
    import time as real_time

    paused: list[float] = []
    monkeypatch.setattr(real_time, "sleep", paused.append)  # the doc waits 5 s per sample

    import psutil  # type: ignore[import-not-found]  # noqa: I001 - as the doc writes them
    import time

    from dreamlake import Session

    with Session(name="system-monitor", workspace="monitoring", local_path="./data") as session:
        for i in range(100):  # noqa: B007
            # Get system metrics
            cpu_percent = psutil.cpu_percent(interval=1)
            memory = psutil.virtual_memory()

            # Track system metrics
            session.track("system_metrics").append(
                timestamp=time.time(),
                cpu_percent=cpu_percent,
                memory_percent=memory.percent,
                memory_used_gb=memory.used / (1024**3),
                memory_available_gb=memory.available / (1024**3),
            )

            time.sleep(5)

    assert paused == [5] * 100
    stored = values("monitoring", "system-monitor", "system_metrics")
    assert len(stored) == 100
    assert {k: v for k, v in stored[0].items() if k != "timestamp"} == {
        "cpu_percent": 12.5,
        "memory_percent": 40.0,
        "memory_used_gb": 4.0,
        "memory_available_gb": 6.0,
    }


def test_batch_tracking_for_performance() -> None:
    losses = iter(range(1000))

    def train_step() -> float:
        return float(next(losses))

    with Session(name="demo", workspace="test", local_path="./data") as session:
        # Collect data points
        batch = []

        for step in range(1000):
            loss = train_step()

            # Add to batch
            batch.append({"value": loss, "step": step, "epoch": step // 100})

            # Append batch every 100 steps
            if len(batch) >= 100:
                session.track("train_loss").append_batch(batch)
                batch = []

        # Append remaining points
        if batch:
            session.track("train_loss").append_batch(batch)

    assert [p["step"] for p in values("test", "demo", "train_loss")] == list(range(1000))


def test_track_metadata() -> None:
    with Session(name="demo", workspace="test", local_path="./data") as session:
        # Create track with metadata
        session.track(
            name="train_loss",
            description="Training loss (cross-entropy)",
            tags=["training", "loss"],
            metadata={"unit": "nats", "goal": "minimize"},
        ).append(value=0.5, epoch=1)

    meta = described("test", "demo", "train_loss")
    assert meta["description"] == "Training loss (cross-entropy)"
    assert meta["tags"] == ["training", "loss"]
    assert meta["metadata"] == {"unit": "nats", "goal": "minimize"}
    assert meta["totalDataPoints"] == 1


def test_data_storage_local_mode() -> None:
    """The doc's files, with its default folder: three points, then the metadata."""
    with Session(name="demo", workspace="test") as session:
        for epoch, value in ((1, 0.5), (2, 0.45), (3, 0.40)):
            session.track("train_loss").append(value=value, epoch=epoch)

    stored = points("test", "demo", "train_loss", ".dreamlake")
    assert [(p["index"], p["data"]) for p in stored] == [
        (0, {"value": 0.5, "epoch": 1}),
        (1, {"value": 0.45, "epoch": 2}),
        (2, {"value": 0.40, "epoch": 3}),
    ]
    assert described("test", "demo", "train_loss", ".dreamlake")["totalDataPoints"] == 3


def test_training_with_validation() -> None:
    epochs = 3
    metrics = iter([{"loss": 1.0 / (i + 1), "acc": i / 10} for i in range(6)])
    train_epoch = validate_epoch = lambda: next(metrics)

    with Session(name="training", workspace="ml", local_path="./data") as session:
        for epoch in range(epochs):
            # Training
            train_metrics = train_epoch()
            session.track("train_loss").append(value=train_metrics["loss"], epoch=epoch)
            session.track("train_acc").append(value=train_metrics["acc"], epoch=epoch)

            # Validation
            val_metrics = validate_epoch()
            session.track("val_loss").append(value=val_metrics["loss"], epoch=epoch)
            session.track("val_acc").append(value=val_metrics["acc"], epoch=epoch)

    assert [p["value"] for p in values("ml", "training", "val_acc")] == [0.1, 0.3, 0.5]
    assert [p["epoch"] for p in values("ml", "training", "train_loss")] == [0, 1, 2]


def test_per_step_logging() -> None:
    epochs = 2
    train_loader = [[1, 2]] * 50

    def train_step(batch: list[int]) -> float:
        return sum(batch) / 10

    with Session(name="demo", workspace="test", local_path="./data") as session:
        global_step = 0

        for epoch in range(epochs):
            for batch in train_loader:
                loss = train_step(batch)

                # Log every step
                session.track("loss").append(value=loss, step=global_step, epoch=epoch)

                global_step += 1

    assert [(p["step"], p["epoch"]) for p in values("test", "demo", "loss")] == [
        (i, i // 50) for i in range(100)
    ]


def test_comparison_with_logging_and_parameters() -> None:
    losses = iter([1.0 / (i + 1) for i in range(10)])
    train = lambda: next(losses)  # noqa: E731

    with Session(name="demo", workspace="test", local_path="./data") as session:
        # Parameters - configuration (set once)
        session.params(learning_rate=0.001, batch_size=32)

        # Logs - events and messages
        session.log("Training started", level="info")

        # Tracks - time-series metrics
        for epoch in range(10):
            loss = train()
            session.track("loss").append(value=loss, epoch=epoch)

        session.log("Training complete", level="info")

    assert json.loads(Path("data/test/demo/parameters.json").read_text()) == {
        "learning_rate": 0.001,
        "batch_size": 32,
    }
    assert [r["message"] for r in read_records(Path("data/test/demo/logs.jsonl"))] == [
        "Training started",
        "Training complete",
    ]
    assert len(values("test", "demo", "loss")) == 10


# -- the rules -----------------------------------------------------------------------


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    with Session(name="run", workspace="ws", local_path=tmp_path / "data") as s:
        yield s


def test_the_same_track_object_on_every_call(session: Session) -> None:
    track = session.track("loss")
    assert isinstance(track, Track)
    assert session.track("loss") is track
    assert session.track("loss", description="d") is track
    assert session.track("val") is not track


@pytest.mark.parametrize("name", ["train/loss", "a/b/c", ".hidden", "lr schedule", "ü/✓"])
def test_slashes_make_folders(session: Session, name: str) -> None:
    session.track(name).append(value=1)
    session.flush()
    assert (session.path / "tracks" / name / "data.jsonl").is_file()
    assert (session.path / "tracks" / name / "metadata.json").is_file()
    assert [p["name"] for p in session.track(name).list_all()] == [name]
    assert read_track(session.path, name)[0]["data"] == {"value": 1}


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/",
        "a/",
        "/a",
        "a//b",
        ".",
        "..",
        "a/../b",
        "../x",
        "a\\b",
        "a\0b",
        "data.jsonl",
        "x/metadata.json",
    ],
)
def test_unsafe_names_are_refused(session: Session, name: str) -> None:
    with pytest.raises(ValueError, match="a track name is folder names joined by '/'"):
        session.track(name)
    with pytest.raises(ValueError, match="a track name"):
        read_track(session.path, name)
    assert not (session.path / "tracks").exists()


@pytest.mark.parametrize("name", [None, 1, b"loss", ["loss"], Path("loss")])
def test_a_name_that_is_not_a_str_is_a_type_error(session: Session, name: Any) -> None:
    with pytest.raises(TypeError, match="a track name must be a str"):
        session.track(name)


def test_nothing_is_recorded_on_a_session_that_is_not_open(tmp_path: Path) -> None:
    session = Session(name="run", workspace="ws", local_path=tmp_path)
    with pytest.raises(RuntimeError, match="not open"):
        session.track("loss")
    with session:
        track = session.track("loss")
        append = track.append
        track.append(value=1)
    for call in (lambda: session.track("loss"), lambda: track.append(value=2), lambda: append(value=3)):
        with pytest.raises(RuntimeError, match="closed"):
            call()
    with pytest.raises(RuntimeError, match="closed"):
        track.append_batch([{"value": 4}])
    assert [p["data"] for p in read_track(session.path, "loss")] == [{"value": 1}]
    with session:  # open again: the same objects go on
        assert session.track("loss") is track
        assert track.append(value=5) == {"index": 1}
        assert append(value=6) == {"index": 2}
    assert [p["data"]["value"] for p in read_track(session.path, "loss")] == [1, 5, 6]


def test_append_returns_the_index_in_the_file(session: Session) -> None:
    track = session.track("loss")
    returned = [track.append(value=i)["index"] for i in range(10)]
    batch = track.append_batch([{"value": i} for i in range(10, 15)])
    returned.append(track.append(value=15)["index"])
    assert returned[:10] == list(range(10)) and returned[10] == 15
    assert batch == {"startIndex": 10, "endIndex": 14, "count": 5}
    session.flush()
    assert [(p["index"], p["data"]["value"]) for p in read_track(session.path, "loss")] == [
        (i, i) for i in range(16)
    ]


def test_an_empty_batch_records_nothing(session: Session) -> None:
    track = session.track("loss")
    track.append(value=0)
    assert track.append_batch([]) == {"startIndex": 1, "endIndex": 0, "count": 0}
    assert track.append(value=1) == {"index": 1}


@pytest.mark.parametrize(
    ("batch", "error", "match"),
    [
        ({"value": 1}, TypeError, "takes a list of mappings"),
        ("value", TypeError, "takes a list of mappings"),
        (5, TypeError, "takes a list of mappings"),
        ([{"value": 1}, 2.0], TypeError, "point 1 of the batch is a float"),
        ([{"value": 1}, {}], ValueError, "point 1 of the batch has no fields"),
    ],
)
def test_a_bad_batch_records_none_of_its_points(
    session: Session, batch: Any, error: type, match: str
) -> None:
    track = session.track("loss")
    with pytest.raises(error, match=match):
        track.append_batch(batch)
    assert track.append(value="after") == {"index": 0}
    session.flush()
    assert [p["data"] for p in read_track(session.path, "loss")] == [{"value": "after"}]


def test_append_without_fields_is_refused(session: Session) -> None:
    with pytest.raises(ValueError, match="at least one field"):
        session.track("loss").append()
    assert session.track("loss").append(value=1) == {"index": 0}


def test_out_of_order_and_repeated_steps_are_all_stored(session: Session) -> None:
    steps = [5, 3, 3, 9, 0, 5, 5]
    track = session.track("loss")
    for i, step in enumerate(steps):
        track.append(value=i, step=step)
    track.append_batch([{"value": 7, "step": 3}, {"value": 8, "step": 3}])
    session.flush()
    stored = read_track(session.path, "loss")
    assert [(p["data"]["step"], p["data"]["value"]) for p in stored] == [
        *((s, i) for i, s in enumerate(steps)),
        (3, 7),
        (3, 8),
    ]


def test_values_follow_the_metadata_rules(session: Session) -> None:
    import datetime
    import enum

    class Color(enum.Enum):
        RED = "red"

    class Odd:
        def __str__(self) -> str:
            return "odd!"

    track = session.track("values")
    track.append(value=math.nan, high=math.inf, low=-math.inf, none=None)
    track.append(when=datetime.date(2025, 1, 2), color=Color.RED, odd=Odd(), nested={"a": [1, math.nan]})
    track.append(big=2**70, keyed={1: "one"}, surrogate="\ud800")
    track.append_batch([{"v": math.nan}, {3: "int key"}])
    session.flush()
    stored = [p["data"] for p in read_track(session.path, "values")]
    assert stored == [
        {"value": "NaN", "high": "Infinity", "low": "-Infinity", "none": None},
        {"when": "2025-01-02", "color": "red", "odd": "odd!", "nested": {"a": [1, "NaN"]}},
        {"big": str(2**70), "keyed": {"1": "one"}, "surrogate": "\\ud800"},
        {"v": "NaN"},
        {"3": "int key"},
    ]


def test_a_value_changed_after_append_does_not_reach_the_point(session: Session) -> None:
    values_ = [1, 2]
    track = session.track("loss")
    track.append(values=values_)
    track.append_batch([{"values": values_}])
    values_.append(3)
    session.flush()
    assert [p["data"]["values"] for p in read_track(session.path, "loss")] == [[1, 2], [1, 2]]


def test_indices_go_on_across_reopen(tmp_path: Path) -> None:
    for run in range(3):
        with Session(name="run", workspace="ws", local_path=tmp_path) as session:
            track = session.track("loss")
            assert track.append(run=run, i=0) == {"index": run * 3}
            assert track.append_batch([{"run": run, "i": 1}, {"run": run, "i": 2}])["endIndex"] == run * 3 + 2
            assert track.stats()["totalDataPoints"] == run * 3 + 3
    stored = read_track(tmp_path / "ws" / "run", "loss")
    assert [p["index"] for p in stored] == list(range(9))
    assert [(p["data"]["run"], p["data"]["i"]) for p in stored] == [
        (r, i) for r in range(3) for i in range(3)
    ]
    meta = described("ws", "run", "loss", str(tmp_path))
    assert meta["totalDataPoints"] == 9


def test_a_track_cut_at_any_byte_of_its_last_line_never_repeats_an_index(tmp_path: Path) -> None:
    """Cut anywhere in its last point (just before the newline too), the next append gets the
    index after what read() counts, and the file's indices stay unique and contiguous."""
    with Session(name="run", workspace="ws", local_path=tmp_path / "whole") as session:
        session.track("loss").append_batch([{"v": i} for i in range(3)])
    data = (session.path / "tracks" / "loss" / "data.jsonl").read_bytes()
    last_line = data.rindex(b"\n", 0, len(data) - 1) + 1
    for cut in range(last_line, len(data) + 1):
        root = tmp_path / f"cut{cut}"
        file = root / "ws" / "run" / "tracks" / "loss" / "data.jsonl"
        file.parent.mkdir(parents=True)
        file.write_bytes(data[:cut])
        kept = 3 if cut >= len(data) - 1 else 2  # points whole but for (at most) the newline
        with Session(name="run", workspace="ws", local_path=root) as session:
            track = session.track("loss")
            assert track.append(v=9) == {"index": kept}, cut
            result = track.read()
            assert [p["index"] for p in result["data"]] == list(range(kept + 1)), cut
            assert (result["total"], track.stats()["totalDataPoints"]) == (kept + 1, kept + 1)
        stored = read_track(root / "ws" / "run", "loss")
        assert [p["data"]["v"] for p in stored] == [*range(kept), 9], cut
        assert json.loads(file.with_name("metadata.json").read_text())["totalDataPoints"] == kept + 1


def test_a_torn_last_line_is_repaired_on_reopen(tmp_path: Path) -> None:
    with Session(name="run", workspace="ws", local_path=tmp_path) as session:
        session.track("loss").append_batch([{"v": i} for i in range(3)])
    file = tmp_path / "ws" / "run" / "tracks" / "loss" / "data.jsonl"
    with open(file, "ab") as f:
        f.write(b'{"index":3,"data":{"v":')  # a crash in the middle of a write
    assert len(read_track(file.parents[2], "loss")) == 3
    assert read_track(file.parents[2], "loss").skipped == 1
    with Session(name="run", workspace="ws", local_path=tmp_path) as session:
        assert session.track("loss").append(v=3) == {"index": 3}
        result = session.track("loss").read()
    assert [p["index"] for p in result["data"]] == [0, 1, 2, 3] and result["total"] == 4
    stored = read_track(file.parents[2], "loss")
    assert [p["data"]["v"] for p in stored] == [0, 1, 2, 3] and stored.skipped == 1


def test_read_pages_through_the_track(session: Session) -> None:
    track = session.track("loss")
    track.append_batch([{"v": i} for i in range(25)])
    pages = []
    start = 0
    while True:
        page = track.read(start_index=start, limit=10)
        pages.append(
            (page["startIndex"], page["endIndex"], len(page["data"]), page["total"], page["hasMore"])
        )
        if not page["hasMore"]:
            break
        start = page["endIndex"] + 1
    assert pages == [(0, 9, 10, 25, True), (10, 19, 10, 25, True), (20, 24, 5, 25, False)]
    assert track.read(start_index=100) == {
        "data": [],
        "startIndex": 100,
        "endIndex": 99,
        "total": 25,
        "hasMore": False,
    }
    assert [p["data"]["v"] for p in track.read(start_index=24, limit=1)["data"]] == [24]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"start_index": -1}, ValueError),
        ({"limit": 0}, ValueError),
        ({"start_index": 1.5}, TypeError),
        ({"limit": "10"}, TypeError),
        ({"limit": True}, TypeError),
    ],
)
def test_read_refuses_bad_ranges(session: Session, kwargs: dict[str, Any], error: type) -> None:
    with pytest.raises(error, match=r"start_index|limit"):
        session.track("loss").read(**kwargs)


def test_reading_sees_what_was_just_appended(session: Session) -> None:
    track = session.track("loss")
    for i in range(3000):
        track.append(v=i)
    assert track.read(start_index=2990)["total"] == 3000
    assert track.stats()["totalDataPoints"] == 3000
    assert track.list_all() == [{"name": "loss", "totalDataPoints": 3000, "description": None, "tags": None}]


def test_metadata_is_written_when_described_and_when_flushed_never_per_append(session: Session) -> None:
    """track() with a description writes metadata.json at once; the totals follow at each flush."""
    track = session.track("loss", description="the loss", tags=["train"])
    at_once = described("ws", "run", "loss", str(session.local_path))
    assert (at_once["description"], at_once["tags"], at_once["totalDataPoints"]) == ("the loss", ["train"], 0)
    meta_file = track.folder / "metadata.json"
    before = meta_file.stat().st_ino
    for i in range(50):
        track.append(v=i)
    session.track("loss", description="the loss")  # as in a loop: nothing new, nothing written
    assert track.read()["total"] == 50  # written, not flushed
    assert meta_file.stat().st_ino == before
    session.flush()
    first = described("ws", "run", "loss", str(session.local_path))
    assert (
        first["totalDataPoints"] == 50 and first["description"] == "the loss" and first["tags"] == ["train"]
    )
    assert first["createdAt"] <= first["updatedAt"]
    track.append(v=50)
    session.track("loss", metadata={"unit": "nats"})
    session.flush()
    second = described("ws", "run", "loss", str(session.local_path))
    assert second["totalDataPoints"] == 51 and second["metadata"] == {"unit": "nats"}
    assert second["description"] == "the loss" and second["createdAt"] == first["createdAt"]
    assert second["updatedAt"] == read_track(session.path, "loss")[-1]["createdAt"]
    assert [p.name for p in track.folder.iterdir()] in (
        ["data.jsonl", "metadata.json"],
        ["metadata.json", "data.jsonl"],
    )


def test_a_later_open_keeps_what_an_earlier_one_described(tmp_path: Path) -> None:
    with Session(name="run", workspace="ws", local_path=tmp_path) as session:
        session.track("loss", description="kept", tags=["a"]).append(v=0)
    with Session(name="run", workspace="ws", local_path=tmp_path) as session:
        session.track("loss").append(v=1)
        assert session.track("loss").stats()["description"] == "kept"
    meta = described("ws", "run", "loss", str(tmp_path))
    assert (meta["description"], meta["tags"], meta["totalDataPoints"]) == ("kept", ["a"], 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"description": 3}, "description must be a str"),
        ({"tags": "training"}, "tags must be a list of str"),
        ({"tags": ["ok", 3]}, "tags must be a list of str"),
        ({"metadata": [1, 2]}, "metadata must be a mapping"),
    ],
)
def test_bad_descriptions_are_type_errors(session: Session, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(TypeError, match=match):
        session.track("loss", **kwargs)


def test_read_track_needs_a_session_and_a_track(tmp_path: Path, session: Session) -> None:
    with pytest.raises(FileNotFoundError, match="no session folder"):
        read_track(tmp_path / "nowhere", "loss")
    session.track("loss").append(v=1)
    session.flush()
    with pytest.raises(FileNotFoundError, match=r"has no track 'lost' \(tracks: loss\)"):
        read_track(session.path, "lost")


def test_records_of_other_kinds_are_skipped_and_counted(session: Session) -> None:
    session.track("loss").append(v=1)
    session.flush()
    with open(session.path / "tracks" / "loss" / "data.jsonl", "ab") as f:
        f.write(b'[1]\n"text"\n{"index":"one"}\n{"no":"index"}\nnot json\n')
    stored = read_track(session.path, "loss")
    assert [p["data"] for p in stored] == [{"v": 1}] and stored.skipped == 5


def test_a_track_and_the_logs_share_the_writer_and_the_flush(session: Session) -> None:
    track = session.track("loss")
    for i in range(100):
        session.log("step", metadata={"i": i})
        track.append(i=i)
    session.flush()  # one flush makes both durable
    assert len(read_records(session.log_file)) == 100
    assert len(points("ws", "run", "loss", str(session.local_path))) == 100
    assert list(read_records(session.log_file)[0]) == KEYS


def test_many_threads_get_the_index_their_point_has_in_the_file(session: Session) -> None:
    import threading

    track = session.track("loss")
    returned: dict[tuple[int, ...], int] = {}
    start = threading.Barrier(8)

    def work(t: int) -> None:
        start.wait()
        for i in range(2000):
            if i % 100 == 0:
                first = track.append_batch([{"t": t, "i": i, "b": b} for b in range(3)])["startIndex"]
                for b in range(3):
                    returned[(t, i, b)] = first + b
            returned[(t, i)] = track.append(t=t, i=i)["index"]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as they can
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    session.flush()
    stored = read_track(session.path, "loss")
    assert len(stored) == 8 * (2000 + 20 * 3)
    for point in stored:
        data = point["data"]
        key = (data["t"], data["i"], data["b"]) if "b" in data else (data["t"], data["i"])
        assert returned[key] == point["index"]


# -- the command line ----------------------------------------------------------------


def test_cli_lists_tracks_and_prints_points(session: Session, capsys: pytest.CaptureFixture[str]) -> None:
    session.track("train/loss").append_batch([{"value": 1.0 - i / 10, "step": i} for i in range(5)])
    session.track("lr").append(value=0.1, epoch=0)
    session.flush()
    assert main(["tracks", str(session.path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["TRACK", "POINTS", "FIRST", "LAST", "LAST", "VALUES"]
    assert out[1].split()[:2] == ["lr", "1"] and out[1].split()[-2:] == ["value=0.1", "epoch=0"]
    assert out[2].split()[:2] == ["train/loss", "5"] and out[2].split()[-2:] == ["value=0.6", "step=4"]
    assert main(["tracks", str(session.path), "train/loss", "--json"]) == 0
    printed = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == list(read_track(session.path, "train/loss"))
    assert main(["tracks", str(session.path), "lr"]) == 0
    assert capsys.readouterr().out.split()[-2:] == ["value=0.1", "epoch=0"]


def test_cli_mistakes_are_one_line_and_status_2(session: Session, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tracks", str(session.path), "missing"]) == 2
    assert main(["tracks", str(session.path), "../x"]) == 2
    assert main(["tracks", str(session.path / "nope")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("dreamlake: ") for line in err)
    assert main(["tracks", str(session.path)]) == 2, "nothing to list: said, and not a success"
    assert "dreamlake: no tracks in " in capsys.readouterr().err


def test_cli_escapes_control_characters(session: Session, capsys: pytest.CaptureFixture[str]) -> None:
    session.track("evil\x1b[31m").append(**{"k\x07": "v\x1b]0;t\x07"})
    session.flush()
    assert main(["tracks", str(session.path)]) == 0
    assert main(["tracks", str(session.path), "evil\x1b[31m"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b" in out


def test_cli_follow_prints_points_as_they_arrive(tmp_path: Path) -> None:
    import subprocess

    with Session(name="run", workspace="ws", local_path=tmp_path) as session:
        session.track("loss").append(v=0)
        session.flush()
        follower = subprocess.Popen(
            [sys.executable, "-m", "dreamlake", "tracks", str(session.path), "loss", "--follow", "--json"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert follower.stdout is not None
            assert orjson.loads(follower.stdout.readline())["data"] == {"v": 0}
            session.track("loss").append(v=1)
            session.flush()
            assert orjson.loads(follower.stdout.readline())["data"] == {"v": 1}
        finally:
            follower.kill()
            follower.communicate(timeout=30)


def test_ls_counts_tracks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Session(name="run", workspace="ws", local_path=tmp_path) as session:
        for name in ("a", "b/c", "b/d"):
            session.track(name).append(v=random.random())
    with Session(name="bare", workspace="ws", local_path=tmp_path) as session:
        session.log("no tracks")
    assert main(["ls", str(tmp_path)]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["ws/run"][8] == "3" and rows["ws/bare"][8] == "0"


def test_the_readme_tracks_example_makes_the_files_it_shows() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Tracks\n", 1)[1].split("\n## ", 1)[0]
    code, point_example, meta_example = (block.split("\n", 1)[1] for block in section.split("```")[1:6:2])
    exec(code, {"Session": Session})
    stored = points("test", "demo", "train/loss", ".dreamlake")
    assert len(stored) == 1002 and stored[-1]["data"] == {"value": 0.09, "step": 1001}
    shown = [orjson.loads(line) for line in point_example.splitlines()]
    assert [list(p) for p in shown] == [list(p) for p in stored[:2]]
    assert [p["data"] for p in shown] == [p["data"] for p in stored[:2]]
    meta = described("test", "demo", "train/loss", ".dreamlake")
    assert list(json.loads(meta_example)) == list(meta)
    assert meta["totalDataPoints"] == json.loads(meta_example)["totalDataPoints"]
    assert described("test", "demo", "val/accuracy", ".dreamlake")["description"] == "top-1"


def test_read_finds_any_page_of_a_long_track_with_torn_lines(session: Session) -> None:
    """read() bisects the file to its start: every page matches the file, torn lines or not."""
    track = session.track("loss")
    track.append_batch([{"v": i, "pad": "x" * (i % 97)} for i in range(20_000)])
    session.flush()
    with open(track.file, "ab") as f:
        f.write(b'{"index":20000,"data":{"v"')  # a crash mid-line; the next write starts a new line
    track.append_batch([{"v": i, "pad": ""} for i in range(20_000, 30_000)])
    session.flush()
    stored = {p["index"]: p for p in read_track(session.path, "loss")}
    assert len(stored) == 30_000
    rng = random.Random(7)
    for start in [0, 1, 19_999, 20_000, 29_999, 30_000, *rng.sample(range(30_000), 40)]:
        limit = rng.choice([1, 3, 1000])
        page = track.read(start_index=start, limit=limit)
        assert page["data"] == [stored[i] for i in range(start, min(start + limit, 30_000))]
        assert page["total"] == 30_000


def test_read_takes_numpy_integers(session: Session) -> None:
    np = pytest.importorskip("numpy")
    session.track("loss").append_batch([{"v": i} for i in range(5)])
    page = session.track("loss").read(start_index=np.int64(2), limit=np.int32(2))
    assert [p["index"] for p in page["data"]] == [2, 3]


def test_a_metadata_write_that_fails_is_reported_and_the_close_goes_on(tmp_path: Path) -> None:
    session = Session(name="run", workspace="ws", local_path=tmp_path).open()
    session.track("loss").append(v=1)
    (session.path / "tracks" / "loss" / "metadata.json").mkdir()  # cannot be replaced by a file
    with pytest.raises(OSError, match=r"could not write .*tracks/loss/metadata.json"):
        session.close()
    assert not session.is_open
    session.close()  # closed: nothing left to retry
    assert [p["data"] for p in read_track(session.path, "loss")] == [{"v": 1}]


def test_a_track_that_cannot_be_opened_leaves_the_session_closed(tmp_path: Path) -> None:
    session = Session(name="run", workspace="ws", local_path=tmp_path)
    with session:
        session.track("m").append(v=0)
    blocker = session.path / "tracks" / "m"
    for child in blocker.iterdir():
        child.unlink()
    blocker.rmdir()
    blocker.write_text("in the way")
    with pytest.raises(OSError):
        session.open()
    assert not session.is_open
    with pytest.raises(RuntimeError, match="closed"):
        session.log("nothing")
    blocker.unlink()
    with session:
        assert session.track("m").append(v=1) == {"index": 0}
        session.log("back")


def test_a_description_given_while_metadata_is_written_is_not_lost(session: Session) -> None:
    import threading

    import dreamlake._tracks as T

    real, inside, go_on = T.replace_file, threading.Event(), threading.Event()

    def gated(*args: Any) -> None:
        inside.set()
        go_on.wait(10)
        real(*args)

    track = session.track("loss", description="old")
    track.append(v=1)
    T.replace_file = gated  # type: ignore[assignment]
    try:
        flusher = threading.Thread(target=session.flush)
        flusher.start()
        assert inside.wait(10)
        session.track("loss", description="new")
        go_on.set()
        flusher.join()
    finally:
        T.replace_file = real  # type: ignore[assignment]
    session.flush()
    assert described("ws", "run", "loss", str(session.local_path))["description"] == "new"


@pytest.mark.parametrize("name", ["a/.metadata.json.1.tmp", "x" * 256, "ok/" + "é" * 128])
def test_names_that_would_break_the_files_are_refused(session: Session, name: str) -> None:
    with pytest.raises(ValueError, match="a track name"):
        session.track(name)


def test_cli_errors_escape_control_characters(session: Session, capsys: pytest.CaptureFixture[str]) -> None:
    session.track("x\x1b[31mRED").append(v=1)
    session.flush()
    assert main(["tracks", str(session.path), "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b[31mRED" in err and err.count("\n") == 1


def test_a_file_deleted_before_its_fsync_does_not_keep_close_failing(tmp_path: Path) -> None:
    session = Session(name="run", workspace="ws", local_path=tmp_path).open()
    track = session.track("loss")
    track.append(v=1)
    track.read()  # written, not yet fsynced
    track.file.unlink()
    session.close()  # nothing of ours is left to make durable
    with session:
        assert track.append(v=2) == {"index": 0}
    assert [p["data"] for p in read_track(session.path, "loss")] == [{"v": 2}]


def test_appends_racing_close_and_reopen_get_the_index_in_the_file(tmp_path: Path) -> None:
    import threading

    session = Session(name="run", workspace="ws", local_path=tmp_path).open()
    track = session.track("loss")
    returned: dict[int, int] = {}
    stop = threading.Event()
    interval = sys.getswitchinterval()

    def spin() -> None:
        i = 0
        while not stop.is_set():
            try:
                returned[i] = track.append(i=i)["index"]  # type: ignore[assignment]
            except RuntimeError:  # closed at that moment: not recorded
                pass
            i += 1

    sys.setswitchinterval(5e-6)
    thread = threading.Thread(target=spin)
    thread.start()
    try:
        for _ in range(300):
            session.close()
            session.open()
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
        session.close()
    stored = {p["data"]["i"]: p["index"] for p in read_track(session.path, "loss")}
    assert stored == returned


def test_tracks_listing_as_json_and_follow_without_a_name(
    session: Session, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tracks PATH --json` prints JSON, one object a track; `--follow` with no track is an error."""
    session.track("a").append(v=1)
    session.track("a").append(v=2)
    session.flush()
    assert 0 == main(["tracks", str(session.path), "--json"])
    (row,) = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert ("a", 2, {"v": 1}, {"v": 2}) == (
        row["name"],
        row["points"],
        row["first"]["data"],
        row["last"]["data"],
    )
    assert 2 == main(["tracks", str(session.path), "--follow"])
    assert "--follow follows one track: give its name" in capsys.readouterr().err


# -- many tracks: what close, exit and SIGTERM cost ------------------------------------------


def test_a_description_is_in_metadata_json_when_track_returns(session: Session) -> None:
    """Described at track(), not at the next flush: an exit short of time has nothing to add but totals."""
    session.track("loss", description="the loss", tags=["train"], metadata={"unit": "nats"})
    meta = described("ws", "run", "loss", str(session.local_path))
    assert (meta["description"], meta["tags"], meta["metadata"]) == ("the loss", ["train"], {"unit": "nats"})


def test_many_tracks_are_made_durable_at_once_not_with_an_fsync_each(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush of 100 tracks syncs their filesystem once for the points and once for metadata.json."""
    for i in range(100):
        session.track(f"layer{i}/grad", description=f"layer {i}").append(v=i)
    fsyncs, syncs = [0], []
    real_fsync, real_sync_files = os.fsync, _batcher.sync_files

    def counting_fsync(fd: int) -> None:
        fsyncs[0] += 1
        real_fsync(fd)

    def counting_sync_files(paths: Any) -> None:
        syncs.append(len(list(paths)))
        real_sync_files(paths)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    monkeypatch.setattr(_batcher, "sync_files", counting_sync_files)
    session.close()
    monkeypatch.undo()
    assert syncs == [101, 100], "the points of 100 tracks and the log, then the tracks' metadata.json"
    assert fsyncs[0] <= 2, "the log's file and its folder at most"
    for i in range(100):
        meta = described("ws", "run", f"layer{i}/grad", str(session.local_path))
        assert (meta["description"], meta["totalDataPoints"]) == (f"layer {i}", 1)


def test_a_timed_flush_makes_the_points_durable_and_leaves_the_totals_for_later(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """flush(timeout) (exit and SIGTERM use 5 s) spends its time on the points first and returns in time,
    leaving the totals it had no time for to the next flush."""
    real = Track._write_metadata

    def slow(track: Track, durable: bool) -> None:
        if track._described != track._channel.sink.writes:
            time.sleep(0.1)  # a slow disk
        real(track, durable)

    monkeypatch.setattr(Track, "_write_metadata", slow)
    tracks = [session.track(f"t{i}") for i in range(20)]  # 2 s of metadata.json in all
    for i, track in enumerate(tracks):
        track.append(v=i)
    session.flush(timeout=1.0)  # no TimeoutError
    assert all(not track._channel.sink.unsynced for track in tracks), "every point is durable"
    written = sum((track.folder / "metadata.json").exists() for track in tracks)
    assert 0 < written < 20, "some metadata.json written, the rest left for the next flush"
    session.flush()
    assert all(
        described("ws", "run", f"t{i}", str(session.local_path))["totalDataPoints"] == 1 for i in range(20)
    )


def test_once_the_writer_finds_the_folder_deleted_append_returns_the_new_files_index(
    session: Session,
) -> None:
    """The points queued before the writer looks keep the index they were given; the writer
    then finds the new file numbered from 0, and every later index is the one in the file."""
    import shutil

    track = session.track("loss")
    track.append_batch([{"v": i} for i in range(3)])
    session.flush()
    shutil.rmtree(session.path)
    assert track.append(v=3) == {"index": 3}  # queued before the writer looked: numbered 0 in the file
    session.flush()
    returned = track.append(v=4)["index"]
    assert returned == 1
    assert [p["data"] for p in track.read(start_index=returned)["data"]] == [{"v": 4}]
    batch = track.append_batch([{"v": 5}, {"v": 6}])
    assert (batch["startIndex"], batch["endIndex"]) == (2, 3)
    page = track.read(start_index=2)
    assert [(p["index"], p["data"]) for p in page["data"]] == [(2, {"v": 5}), (3, {"v": 6})]
    assert page["total"] == 4


def test_another_writer_moves_the_index_returned_once_the_writer_has_seen_it(tmp_path: Path) -> None:
    """Two sessions on one folder: once a process has written after the other's points, the
    indices it returns are the file's again."""
    first = Session(name="run", workspace="ws", local_path=tmp_path).open()
    second = Session(name="run", workspace="ws", local_path=tmp_path).open()
    try:
        a, b = first.track("loss"), second.track("loss")
        a.append(v=0)
        first.flush()
        b.append(v=1)  # predicted 0, written as 1
        second.flush()
        returned = b.append(v=2)["index"]
        second.flush()
        assert returned == 2 == read_track(second.path, "loss")[-1]["index"]
    finally:
        first.close()
        second.close()


def test_a_positional_value_is_the_value_field(session: Session) -> None:
    """append(0.5, step=3) is append(value=0.5, step=3)."""
    track = session.track("loss")
    track.append(0.5, step=3)
    track.append(value=0.25, step=4)
    track.append(None)

    session.flush()
    assert [{"value": 0.5, "step": 3}, {"value": 0.25, "step": 4}, {"value": None}] == [
        p["data"] for p in read_track(session.path, "loss")
    ]


def test_wrong_calls_name_the_public_methods(session: Session) -> None:
    """TypeErrors say Track.append() and Session.log(), never the closures behind them."""
    track = session.track("loss")
    with pytest.raises(TypeError, match=r"^Track\.append\(\) got value twice"):
        track.append(0.5, value=1)
    with pytest.raises(TypeError, match=r"^Track\.append\(\) takes from 0 to 1 positional arguments but 2"):
        track.append(0.5, 3)
    with pytest.raises(TypeError, match=r"^Session\.log\(\) missing 1 required positional argument"):
        session.log()  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"^Track\.append\(\) needs at least one field"):
        track.append()


def test_a_name_too_long_for_the_system_is_refused_at_track_with_nothing_made(session: Session) -> None:
    """Checked at track(): ValueError, no folder; a name just short of the limit flushes and closes."""
    for extra in (1, 500, 5000):
        with pytest.raises(ValueError, match="this system takes fewer than 4096: use a shorter name"):
            session.track("/".join(["z" * 200] * (extra // 200 + 21)))
    assert not (session.path / "tracks").exists() or [] == list((session.path / "tracks").iterdir())
    tracks_room = 4095 - len(os.fsencode(session.path / "tracks" / ".metadata.json.9999999999.tmp")) - 1
    parts, left = [], tracks_room
    while left > 201:
        parts.append("a" * 200)
        left -= 201
    parts.append("b" * left)
    name = "/".join(parts)
    assert tracks_room == len(name)
    session.track(name).append(v=1)
    session.flush()
    with pytest.raises(ValueError, match="use a shorter name"):
        session.track(name + "c")
    assert [{"v": 1}] == [p["data"] for p in read_track(session.path, name)]


def test_a_local_path_too_long_for_any_track_says_so() -> None:
    """The advice names what is too long: the session's own path, not the track's name."""
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp())
    deep = base
    while len(os.fsencode(deep)) < 4060 - 201:
        deep = deep / ("d" * 200)
    deep = deep / ("d" * (4060 - len(os.fsencode(deep)) - 1))  # logs.jsonl fits; no track's files do
    deep.mkdir(parents=True)
    try:
        with Session(name="n", workspace="w", local_path=deep) as session:
            with pytest.raises(ValueError, match="is too long a path for any track"):
                session.track("t")
    finally:
        shutil.rmtree(base)
