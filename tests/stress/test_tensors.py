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
    """Tensors are recognised once torch is imported; pretend it is, with FakeTensor its Tensor."""
    if "torch" not in sys.modules:
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
