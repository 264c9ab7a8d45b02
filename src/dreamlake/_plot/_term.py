"""`dreamlake plot` in the terminal: one small chart a series, drawn by plotext (an optional extra)."""

from __future__ import annotations

import contextlib
import io
import math
import os
import shlex
import shutil
import sys
from typing import Any, TextIO

from .._format import visible
from ._series import Series, thin


def python_here() -> str:
    """This interpreter as a command that works from the current folder (`.venv/bin/python`)."""
    relative = os.path.relpath(sys.executable)
    command = relative if not relative.startswith("..") else sys.executable
    return shlex.quote(command if os.sep in command else f".{os.sep}{command}")


MISSING = "dreamlake plot needs plotext: {python} -m pip install 'plotext>=6,<7'"


def load_plotext() -> Any:
    """The plotext module, or ImportError with the one line to install it."""
    try:
        import plotext
    except ImportError:
        raise ImportError(MISSING.format(python=python_here())) from None
    return plotext


def headline(name: str, runs: list[Series]) -> list[str]:
    """The series' name, then per run: points, min / last / max, NaN or infinite values."""
    lines = [visible(name)]
    for series in runs:
        low, last, high = series.summary()
        bad = f"  {series.nonfinite} NaN/inf" if series.nonfinite else ""
        if series.unplaced:
            bad += f"  {series.unplaced} without {series.x_label}"
        lines.append(
            f"  {visible(series.run.name)}: {series.points} points  "
            f"min {_num(low)}  last {_num(last)}  max {_num(high)}{bad}"
        )
    return lines


def _num(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.6g}"


def width() -> int:
    return max(40, min(shutil.get_terminal_size((100, 24)).columns, 160))


def terminal_columns() -> int:
    """Columns a series is thinned to for the terminal: plotext draws two points a cell."""
    return width() * 2


def draw(all_series: dict[str, list[Series]], out: TextIO, color: bool) -> None:
    """Every series: its headline and a chart with a line per run."""
    plotext = load_plotext()
    columns = width()
    figure = plotext.figure
    for name, runs in all_series.items():
        figure.clear()
        figure.plot_size(columns, 15)
        for series in runs:
            thinned = thin(series, columns * 2)  # plotext draws two points a cell
            if thinned.xs:
                signal = figure.signal(thinned.xs, thinned.ys).lines()
                if len(runs) > 1:
                    signal.label(visible(series.run.name))
                figure.draw(signal)
        out.write("\n".join(headline(name, runs)) + "\n")
        if any(series.ys for series in runs):
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                    chart = figure.build().string(colorless=not color)  # plotext's warnings: not ours
            except (ArithmeticError, ValueError) as exc:  # values past what plotext can scale: 1e308
                chart = f"  (no chart: plotext cannot draw these values: {exc})"
            out.write(chart)
            out.write("\n")
        out.write("\n")
