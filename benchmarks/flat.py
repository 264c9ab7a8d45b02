"""The core's encoder of flat metadata against orjson.dumps, shape by shape.

    python benchmarks/flat.py

`_core.flat(d)` is the text `log()` and `append()` write for a flat dict, returned as
bytes (as orjson.dumps returns its text, so both pay for one bytes object). Each figure
is the median over RUNS runs of the mean of a timeit loop; the two alternate in a run.
"""

import statistics
import timeit
from collections.abc import Callable
from typing import Any

import orjson

from dreamlake import _core

NUMBER, RUNS = 100_000, 9
SHAPES: dict[str, dict[str, Any]] = {
    "3 floats (the report's)": {"loss": 12345 * 1e-6, "lr": 0.001, "grad_norm": 1.5},
    "20 floats of i * 1e-6": {f"metric_{k}": (12345 + k) * 1e-6 for k in range(20)},
    "20 floats of 17 digits": {f"metric_{k}": 0.6931471824645996 + k for k in range(20)},
    "20 ints": {f"metric_{k}": 12345 * k for k in range(20)},
    "20 bools": {f"metric_{k}": k % 2 == 0 for k in range(20)},
    "5 short strs": {f"tag_{k}": f"value-{k}" for k in range(5)},
}


def per_call(fn: Callable[[], object]) -> float:
    return timeit.timeit(fn, number=NUMBER) / NUMBER * 1e9


def main() -> None:
    print("| metadata | _core.flat | orjson.dumps | ratio |\n|---|---|---|---|")
    for label, metadata in SHAPES.items():
        assert _core.flat(metadata) == orjson.dumps(metadata), label
        ours, theirs = [], []
        for _ in range(RUNS):
            ours.append(per_call(lambda m=metadata: _core.flat(m)))
            theirs.append(per_call(lambda m=metadata: orjson.dumps(m)))
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"| {label} | {a:.0f} ns | {b:.0f} ns | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
