"""Tensors in metadata: detached at the call, turned into numbers by the writer."""

import gc
import sys
import types
import weakref
from pathlib import Path
from typing import Any

import pytest

from dreamlake import Session

from ..conftest import read_records


class Graph:
    """Stands for the autograd graph a tensor with requires_grad keeps alive."""


class FakeTensor:
    """Shaped like a torch.Tensor: detach(), cpu(), tolist(), item()."""

    def __init__(self, values: list[float], graph: Graph | None = None) -> None:
        self.values, self.graph = values, graph
        self.item_calls = 0

    def detach(self) -> "FakeTensor":
        return FakeTensor(self.values)

    def clone(self) -> "FakeTensor":
        return FakeTensor(list(self.values))

    def cpu(self) -> "FakeTensor":
        return self

    def tolist(self) -> Any:
        return self.values[0] if len(self.values) == 1 else list(self.values)

    def item(self) -> float:
        self.item_calls += 1  # on a GPU this would wait for the device
        return self.values[0]


@pytest.fixture
def torch_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tensors are recognised once torch is imported; pretend it is, with FakeTensor its Tensor
    (in place of the real one for the test, when an earlier test imported it)."""
    torch = types.ModuleType("torch")
    torch.Tensor = FakeTensor  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)


def test_tensor_is_detached_at_the_call(tmp_path: Path, torch_loaded: None) -> None:
    with Session(name="n", workspace="w", local_path=tmp_path, write_interval=3600) as s:
        graph = Graph()
        loss = FakeTensor([0.25], graph)
        s.log("step", metadata={"loss": loss, "batch": FakeTensor([1.0, 2.0], graph)})
        alive = weakref.ref(graph)
        del graph, loss
        gc.collect()
        assert alive() is None, "the queued entry keeps the graph alive"
    assert read_records(s.log_file)[0]["metadata"] == {"loss": 0.25, "batch": [1.0, 2.0]}


def test_tensor_values_are_not_read_in_the_callers_thread(tmp_path: Path, torch_loaded: None) -> None:
    loss = FakeTensor([0.5])
    with Session(name="n", workspace="w", local_path=tmp_path) as s:
        s.log("step", metadata={"loss": loss})
        assert loss.item_calls == 0
    assert read_records(s.log_file)[0]["metadata"] == {"loss": 0.5}


def test_real_torch_tensors(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    weights = torch.ones(3, requires_grad=True)
    loss = (weights * 2).sum()
    with Session(name="n", workspace="w", local_path=tmp_path) as s:
        s.log("step", metadata={"loss": loss, "w": weights, "i": torch.tensor(7)})
    assert read_records(s.log_file)[0]["metadata"] == {"loss": 6.0, "w": [1.0, 1.0, 1.0], "i": 7}


class DeviceTensor(FakeTensor):
    """A FakeTensor on a device: reading its values (tolist) stands for waiting for the GPU."""

    def __init__(self, values: list[float], device: str, readers: list[str]) -> None:
        super().__init__(values)
        self.device, self.shape, self.readers = types.SimpleNamespace(type=device), [len(values)], readers

    def __str__(self) -> str:
        return f"device({self.device.type})"

    def detach(self) -> "DeviceTensor":
        return DeviceTensor(self.values, self.device.type, self.readers)

    def clone(self) -> "DeviceTensor":
        return DeviceTensor(list(self.values), self.device.type, self.readers)

    def tolist(self) -> Any:
        import threading

        self.readers.append(threading.current_thread().name)
        return super().tolist()


def test_echo_never_reads_a_device_tensor_in_the_callers_thread(
    tmp_path: Path, torch_loaded: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """echo=True (and so dreamlake.log()) shows a GPU tensor by device and shape; its values reach the file."""
    import threading

    readers: list[str] = []
    with Session(name="n", workspace="w", local_path=tmp_path, echo=True) as s:
        s.log(
            "step",
            metadata={"loss": DeviceTensor([0.5], "cuda", readers), "x": DeviceTensor([2.0], "cpu", readers)},
        )
        in_caller = readers.count(threading.current_thread().name)
    assert 1 == in_caller, "the caller read the values of a tensor on the GPU (or none for the CPU one)"
    assert 3 == len(readers), "the writer reads both tensors for the file"
    err = capsys.readouterr().err
    assert "loss=<tensor on " in err and "shape [1]>" in err and "x=2.0" in err
    assert {"loss": 0.5, "x": 2.0} == read_records(s.log_file)[0]["metadata"]


class RaisingDevice(FakeTensor):
    """A tensor-like object whose device cannot be read."""

    @property
    def device(self) -> Any:
        raise RuntimeError("no device")

    def detach(self) -> "RaisingDevice":
        return RaisingDevice(self.values)

    def clone(self) -> "RaisingDevice":
        return RaisingDevice(list(self.values))


def test_echo_of_a_tensor_whose_device_raises_keeps_the_other_values(
    tmp_path: Path, torch_loaded: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with Session(name="n", workspace="w", local_path=tmp_path, echo=True) as s:
        s.log("step", metadata={"t": RaisingDevice([1.0]), "x": 2})
    err = capsys.readouterr().err
    assert "t=<tensor on None, shape ?>" in err and "x=2" in err
    assert {"t": 1.0, "x": 2} == read_records(s.log_file)[0]["metadata"]
