"""`dreamlake plot --html`: one self-contained page, a chart a series, every run overlaid.

The page embeds uPlot (MIT, `_vendor/uplot`) and the thinned points as JSON: it opens
from a file, with no network and no server. Zoom (drag; double-click resets), values
under the cursor, an exponential-moving-average slider, a log-scale toggle, and the
runs' parameters side by side, those that differ highlighted. At the top, a row a run (status,
start, duration); a run's name shows only its lines, "all runs" shows them all again.
"""

from __future__ import annotations

import html
import math
import re
from importlib import resources
from typing import Any

import orjson

from ._series import Run, Series, thin

UPLOT_VERSION = "1.6.32"
COLUMNS = 1000  # pixel columns a series is thinned to: the page stays small, spikes stay in


def _vendored(name: str) -> str:
    return resources.files("dreamlake._plot").joinpath(f"_vendor/uplot/{name}").read_text(encoding="utf-8")


def _short(value: float) -> float:
    """A y value with 7 significant digits: a third of the text, nothing a chart can show lost."""
    return float(f"{value:.7g}")


def payload(runs: list[Run], all_series: dict[str, list[Series]]) -> dict[str, Any]:
    charts = []
    for name, members in all_series.items():
        lines = []
        for series in members:
            thinned = thin(series, COLUMNS)
            order = sorted(range(len(thinned.xs)), key=thinned.xs.__getitem__)  # uPlot wants x ascending
            low, last, high = series.summary()
            lines.append(
                {
                    "run": series.run.name,
                    "x": [thinned.xs[i] for i in order],  # whole: steps past 10^7, times to the µs
                    "y": [_short(thinned.ys[i]) for i in order],
                    "marks": thinned.marks,
                    "points": series.points,
                    "nonfinite": series.nonfinite,
                    "unplaced": series.unplaced,
                    "summary": [None if math.isnan(v) else v for v in (low, last, high)],
                }
            )
        charts.append({"name": name, "xLabel": members[0].x_label, "lines": lines})
    from .._read._runs import identity_columns

    return {
        "runs": [run.name for run in runs],
        "status": [  # the run's name is in "runs", made printable
            identity_columns(run.path) for run in runs
        ],
        "params": _params_table(runs),
        "charts": charts,
    }


def _params_table(runs: list[Run]) -> list[dict[str, Any]]:
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.params))
    rows = []
    for key in keys:
        values = [orjson.dumps(run.params[key]).decode() if key in run.params else "" for run in runs]
        rows.append({"key": key, "values": values, "differs": len(set(values)) > 1})
    return rows


def page(runs: list[Run], all_series: dict[str, list[Series]], title: str) -> str:
    """The whole HTML document."""
    # In the JSON, `<` is written \u003c: no name or value can close or open a script there.
    data = orjson.dumps(payload(runs, all_series)).decode().replace("<", "\\u003c")
    pieces = {
        "TITLE": html.escape(title),
        "UPLOT_CSS": _vendored("uPlot.min.css"),
        "UPLOT_JS": _vendored("uPlot.iife.min.js").replace("</script", "<\\/script"),
        "UPLOT_VERSION": UPLOT_VERSION,
        "DATA": data,
        "APP": _APP,
    }
    # One pass: what one piece holds (a session named @DATA@) is never read as another's place.
    return re.sub(r"@([A-Z_]+)@", lambda m: pieces.get(m[1], m[0]), _TEMPLATE)


_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<style>@UPLOT_CSS@</style>
<style>
body { font: 14px system-ui, sans-serif; margin: 16px 24px; color: #222; }
h1 { font-size: 18px; margin: 0 0 8px; }
.controls { position: sticky; top: 0; background: #fff; padding: 8px 0; z-index: 10;
  display: flex; gap: 24px; align-items: center; border-bottom: 1px solid #ddd; }
.chart { margin: 18px 0 8px; }
.chart h2 { font-size: 15px; margin: 0 0 2px; font-family: ui-monospace, monospace; }
.summary { font-size: 12px; color: #555; margin-bottom: 4px; }
.summary .bad { color: #c00; font-weight: 600; }
table.params { border-collapse: collapse; margin: 8px 0 24px; font-size: 13px; }
table.params td, table.params th { border: 1px solid #ddd; padding: 3px 8px; text-align: left;
  font-family: ui-monospace, monospace; }
table.params tr.differs td { background: #fff3c4; }
table.params tr.focused td { background: #dcecff; }
.status-failed, .status-crashed { color: #c00; font-weight: 600; }
.status-interrupted { color: #b60; }
footer { color: #888; font-size: 12px; margin-top: 24px; }
</style>
</head>
<body>
<h1>@TITLE@</h1>
<div class="controls">
  <label>Smoothing <input id="smoothing" type="range" min="0" max="0.99" step="0.01" value="0">
    <span id="smoothing-value">0.00</span></label>
  <label><input id="log-scale" type="checkbox"> log scale</label>
  <span>drag to zoom, double-click to reset</span>
</div>
<div id="runs"></div>
<div id="params"></div>
<div id="charts"></div>
<footer>dreamlake plot; charts by uPlot @UPLOT_VERSION@ (MIT). Each series is thinned to the first,
lowest, highest and last point of each pixel column; red marks stand for NaN or infinite values.</footer>
<script>@UPLOT_JS@</script>
<script type="application/json" id="dreamlake-data">@DATA@</script>
<script>@APP@</script>
</body>
</html>
"""

_APP = r"""
"use strict";
const DATA = JSON.parse(document.getElementById("dreamlake-data").textContent);
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];
const charts = [];
window.dreamlakeCharts = charts;

function color(run) { return COLORS[DATA.runs.indexOf(run) % COLORS.length]; }

function ema(ys, weight) {  // TensorBoard's debiased exponential moving average
  if (!weight) return ys;
  let last = 0, n = 0;
  return ys.map(y => {
    if (y === null || !isFinite(y)) return y;
    last = last * weight + (1 - weight) * y;
    n += 1;
    return last / (1 - Math.pow(weight, n));
  });
}

function fmt(v) {
  return v === null || v === undefined ? "-" : String(+(+v).toPrecision(6));
}

function text(tag, content, cls) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (cls) el.className = cls;
  return el;
}

let focus = null;  // the one run whose lines are shown, from the page's #run=N; null: all

function seconds(s) {
  if (s === null || s === undefined) return "-";
  if (s < 60) return s.toFixed(1) + "s";
  const m = Math.floor(s / 60), h = Math.floor(m / 60), two = n => String(n).padStart(2, "0");
  return h ? `${h}h${two(m % 60)}m` : `${m}m${two(Math.floor(s % 60))}s`;
}

function runsTable() {
  const table = document.createElement("table");
  table.className = "params";
  table.id = "runs-table";
  const head = document.createElement("tr");
  ["run", "status", "attempts", "start", "duration"].forEach(h => head.appendChild(text("th", h)));
  table.appendChild(head);
  DATA.runs.forEach((run, i) => {
    const info = DATA.status[i] || {};
    const tr = document.createElement("tr");
    if (focus === i) tr.className = "focused";
    const cell = document.createElement("td");
    const link = text("a", run);
    link.href = "#run=" + i;
    cell.appendChild(link);
    tr.appendChild(cell);
    tr.appendChild(text("td", info.status || "-", "status-" + (info.status || "none").replace("?", "")));
    tr.appendChild(text("td", String(info.attempts ?? "-")));
    tr.appendChild(text("td", info.start ? info.start.replace("T", " ").slice(0, 19) : "-"));
    tr.appendChild(text("td", seconds(info.duration)));
    table.appendChild(tr);
  });
  const root = document.getElementById("runs");
  root.replaceChildren(table);
  if (focus !== null) {
    const all = text("a", "all runs");
    all.href = "#";
    root.appendChild(all);
  }
}

function readFocus() {
  const found = /^#run=(\d+)$/.exec(window.location.hash);
  focus = found && +found[1] < DATA.runs.length ? +found[1] : null;
}

function paramsTable() {
  if (!DATA.params.length) return;
  const table = document.createElement("table");
  table.className = "params";
  const head = document.createElement("tr");
  head.appendChild(text("th", "parameter"));
  DATA.runs.forEach(run => head.appendChild(text("th", run)));
  table.appendChild(head);
  DATA.params.forEach(row => {
    const tr = document.createElement("tr");
    if (row.differs && DATA.runs.length > 1) tr.className = "differs";
    tr.appendChild(text("td", row.key));
    row.values.forEach(v => tr.appendChild(text("td", v)));
    table.appendChild(tr);
  });
  document.getElementById("params").appendChild(table);
}

function build(chart, box, smoothing, logScale) {
  const keep = y => (y === null || (logScale && y <= 0) ? null : y);
  const tables = chart.lines.map(line => [line.x, ema(line.y, smoothing).map(keep)]);
  let top = -Infinity, bottom = Infinity;
  tables.forEach(t => t[1].forEach(y => {
    if (y !== null) { top = Math.max(top, y); bottom = Math.min(bottom, y); }
  }));
  if (!isFinite(top)) { top = 1; bottom = logScale ? 0.1 : 0; }
  const series = [{ label: chart.xLabel, value: (u, v) => fmt(v) }];
  chart.lines.forEach(line => series.push({
    label: line.run, stroke: color(line.run), width: 1.5, spanGaps: true, value: (u, v) => fmt(v),
    show: focus === null || line.run === DATA.runs[focus],
  }));
  chart.lines.forEach(line => {
    if (!line.marks.length) return;
    tables.push([line.marks, line.marks.map(() => top)]);
    series.push({
      label: "NaN/inf " + line.run, stroke: "#d00", fill: "#d00", width: 0, paths: () => null,
      points: { show: true, size: 9, stroke: "#d00", fill: "#d00" },
      value: (u, v) => (v === null ? "-" : "NaN/inf"),
    });
  });
  const data = uPlot.join(tables);
  const opts = {
    width: Math.max(400, box.clientWidth), height: 280, series,
    scales: { x: { time: chart.xLabel === "time" }, y: { distr: logScale ? 3 : 1 } },
    cursor: { drag: { x: true, y: false } },
    legend: { live: true },
  };
  return new uPlot(opts, data, box);
}

function render() {
  const smoothing = +document.getElementById("smoothing").value;
  const logScale = document.getElementById("log-scale").checked;
  document.getElementById("smoothing-value").textContent = smoothing.toFixed(2);
  charts.forEach(c => c.destroy());
  charts.length = 0;
  DATA.charts.forEach((chart, i) => {
    const box = document.getElementById("chart-" + i);
    const shown = focus === null || chart.lines.some(line => line.run === DATA.runs[focus]);
    box.parentNode.style.display = shown ? "" : "none";  // a run's link shows only its charts
    charts.push(build(chart, box, smoothing, logScale));
  });
}

function layout() {
  const root = document.getElementById("charts");
  if (!DATA.charts.length) root.appendChild(text("p", "No numeric series in these sessions."));
  DATA.charts.forEach((chart, i) => {
    const div = document.createElement("div");
    div.className = "chart";
    div.appendChild(text("h2", chart.name));
    chart.lines.forEach(line => {
      const [low, last, high] = line.summary;
      const numbers = `min ${fmt(low)}, last ${fmt(last)}, max ${fmt(high)}`;
      const p = text("div", `${line.run}: ${line.points} points, ${numbers}`, "summary");
      if (line.nonfinite) p.appendChild(text("span", `, ${line.nonfinite} NaN/inf`, "bad"));
      if (line.unplaced) p.appendChild(text("span", `, ${line.unplaced} without ${chart.xLabel}`, "bad"));
      div.appendChild(p);
    });
    const box = document.createElement("div");
    box.id = "chart-" + i;
    div.appendChild(box);
    root.appendChild(div);
  });
}

readFocus();
runsTable();
paramsTable();
layout();
render();
window.addEventListener("hashchange", () => { readFocus(); runsTable(); render(); });
document.getElementById("smoothing").addEventListener("input", render);
document.getElementById("log-scale").addEventListener("change", render);
"""
