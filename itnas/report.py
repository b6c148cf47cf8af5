"""Ablation report over searched, trained and evaluated runs: a markdown summary and one self-contained HTML page.

A run is one (method, seed) of the pipeline; its directory holds ``metrics.json`` (evaluate stage),
``genotype.json`` (derive stage) and ``search/history.json`` (search stage; one record per epoch, see
`itnas.search._epoch_record`). `load_run` reads one run; `ablation_table`, `write_markdown` and `write_html`
turn a list of runs into the report.

Selection rule (`SELECTION_RULE`): every seed is reported, nothing is selected on test data, and the model of
the last training epoch is evaluated once. Published DARTS-family numbers (DESIGN.md 5) are best-of-several
searches on CIFAR-10; they are shown for context only, never compared with this pipeline's numbers.

The library knows nothing of DVC or of the pipeline's paths; it logs through `logging` and never prints.
"""

from __future__ import annotations

import html
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .arch import get_method, list_methods
from .genotype import Genotype
from .ops import PARAMETER_FREE_OPS
from .spaces import SearchSpace, create_space

__all__ = ["OP_ABBREVIATIONS", "PUBLISHED_NUMBERS", "SELECTION_RULE", "MethodSummary", "RunResult", "ablation_table",
           "load_run", "method_summary", "write_html", "write_markdown"]

log = logging.getLogger(__name__)

SELECTION_RULE = ("every seed is reported; no selection on test data; "
                  "the model of the last training epoch is evaluated once")

#: Short op names for tables and small plots.
OP_ABBREVIATIONS = {"none": "none", "max_pool_3x3": "max3", "avg_pool_3x3": "avg3", "skip_connect": "skip",
                    "sep_conv_3x3": "sep3", "sep_conv_5x5": "sep5", "dil_conv_3x3": "dil3", "dil_conv_5x5": "dil5",
                    "nor_conv_1x1": "conv1", "nor_conv_3x3": "conv3", "noise": "noise"}

#: DESIGN.md 5: published CIFAR-10 (DARTS space) test error (%), params (M), search cost (GPU-days), and
#: NAS-Bench-201 test accuracy (%) on CIFAR-10 / CIFAR-100 / ImageNet16-120. Best of several searches.
PUBLISHED_NUMBERS = (
    ("DARTS (2nd order)", "2.76 ± 0.09", "3.3", "1", "54.30 / 15.61 / 16.32 (collapses to all skip)"),
    ("PC-DARTS", "2.57 ± 0.07", "3.6", "0.1", "93.41 / 67.48 / 41.31"),
    ("DrNAS", "2.46 ± 0.03", "4.1", "0.6", "94.36 / 73.51 / 46.34"),
    ("best cell in NB201", "–", "–", "–", "94.37 / 73.51 / 47.31"),
)
PUBLISHED_IMAGENET = "ImageNet top-1 error (%): DARTS 26.7, PC-DARTS 24.2."

_METRICS_STAGE = ("metrics.json", "evaluate")
_GENOTYPE_STAGE = ("genotype.json", "derive")
_HISTORY_STAGE = ("search/history.json", "search")
_CELL_TITLES = {"normal": "normal cell", "reduce": "reduction cell"}
_COLOR_PARAM, _COLOR_FREE, _COLOR_CONCAT = "#1f77b4", "#d62728", "#999999"
_EDGE_KEY = re.compile(r"\((\d+),\s*(\d+)\)->\((\d+),\s*(\d+)\)")


# ---------------------------------------------------------------------------------------------------- loading
@dataclass
class RunResult:
    """One evaluated run.

    Attributes:
        method, seed: the run's method name and seed.
        metrics: the evaluate stage's ``metrics.json``: test_acc (%), test_loss (nats), test_images, params_m (M
            parameters of the trained network), madds_m (M multiply-adds), params_m_c36_l20 and
            madds_m_c36_l20_32px (the same genotype at the paper size, C=36, 20 cells, 32x32 input),
            collapse_count, search_time_s and train_time_s (wall seconds).
        genotype: the derived genotype.
        history: per-epoch search records (`itnas.search._epoch_record`); empty when the file was missing.
    """

    method: str
    seed: int
    metrics: dict[str, Any]
    genotype: Genotype
    history: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        """``<method>-s<seed>``, the run directory's name."""
        return f"{self.method}-s{self.seed}"

    @property
    def test_acc(self) -> float:
        """Test accuracy (%) of the final network."""
        return float(self.metrics["test_acc"])

    @property
    def collapse_count(self) -> int:
        """Parameter-free ops in the normal cell of the derived genotype (DESIGN.md 2.6)."""
        return int(self.metrics.get("collapse_count", self.genotype.collapse_count))

    @property
    def search_time_s(self) -> float | None:
        """Wall seconds of the search (metrics, else the sum of the history's epoch times, else None)."""
        if self.metrics.get("search_time_s") is not None:
            return float(self.metrics["search_time_s"])
        times = [r["time_s"] for r in self.history if "time_s" in r]
        return float(sum(times)) if times else None


def _missing(path: Path, stage: str) -> FileNotFoundError:
    return FileNotFoundError(f"{path} does not exist; it is written by the {stage} stage "
                             f"(run `dvc repro` or `itnas {stage} METHOD SEED` first)")


def load_run(run_dir: Path, method: str, seed: int) -> RunResult:
    """Read one run directory.

    Reads ``metrics.json`` and ``genotype.json`` (required) and ``search/history.json`` (optional: a missing
    history gives an empty list and a warning, the report then leaves out that run's search plots).

    Raises:
        FileNotFoundError: metrics.json or genotype.json is missing (the message names the stage that writes it).
        KeyError: metrics.json has no ``test_acc``.
        GenotypeError: genotype.json is malformed or does not fit its space.
        ValueError: a file is not valid JSON.
    """
    run_dir = Path(run_dir)
    metrics_path = run_dir / _METRICS_STAGE[0]
    genotype_path = run_dir / _GENOTYPE_STAGE[0]
    history_path = run_dir / _HISTORY_STAGE[0]
    for path, stage in ((genotype_path, _GENOTYPE_STAGE[1]), (metrics_path, _METRICS_STAGE[1])):
        if not path.exists():
            raise _missing(path, stage)
    metrics = _read_json(metrics_path)
    if not isinstance(metrics, dict) or "test_acc" not in metrics:
        keys = sorted(metrics) if isinstance(metrics, dict) else type(metrics).__name__
        raise KeyError(f"{metrics_path} has no 'test_acc' (written by the evaluate stage); it holds {keys}")
    genotype = Genotype.load(genotype_path)
    history: list[dict] = []
    if history_path.exists():
        history = _read_json(history_path)
        if not isinstance(history, list):
            raise ValueError(f"{history_path} must hold a list of per-epoch records, got {type(history).__name__}")
    else:
        log.warning("%s is missing (written by the search stage); the report leaves out the search plots of %s-s%d",
                    history_path, method, seed)
    return RunResult(method, int(seed), metrics, genotype, history)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None


# ---------------------------------------------------------------------------------------------------- tables
@dataclass
class MethodSummary:
    """Test accuracy over the seeds of one method.

    Attributes:
        method: method name. seeds: the seeds, in run order. n: number of seeds.
        test_acc_mean: mean test accuracy (%). test_acc_std: sample standard deviation (%, ddof=1), None when n=1.
        search_time_s_mean: mean search wall time (s), None when no run has one.
        collapse_mean: mean collapse count (parameter-free ops in the normal cell).
    """

    method: str
    seeds: list[int]
    n: int
    test_acc_mean: float
    test_acc_std: float | None
    search_time_s_mean: float | None
    collapse_mean: float


def method_summary(runs: list[RunResult]) -> list[MethodSummary]:
    """One `MethodSummary` per method, methods in order of first appearance in `runs`."""
    out = []
    for method in dict.fromkeys(r.method for r in runs):
        group = [r for r in runs if r.method == method]
        acc = np.array([r.test_acc for r in group], dtype=float)
        times = [r.search_time_s for r in group if r.search_time_s is not None]
        out.append(MethodSummary(
            method=method, seeds=[r.seed for r in group], n=len(group), test_acc_mean=float(acc.mean()),
            test_acc_std=float(acc.std(ddof=1)) if len(group) > 1 else None,
            search_time_s_mean=float(np.mean(times)) if times else None,
            collapse_mean=float(np.mean([r.collapse_count for r in group]))))
    return out


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "n/a"
    return f"{float(value):.{digits}f}"


def _acc_mean_std(s: MethodSummary) -> str:
    """``mean ± std (n=N)``, or ``mean (n=1)`` for a single seed."""
    if s.test_acc_std is None:
        return f"{s.test_acc_mean:.2f} (n=1)"
    return f"{s.test_acc_mean:.2f} ± {s.test_acc_std:.2f} (n={s.n})"


def _compact_cell(genotype: Genotype, cell_type: str) -> str:
    """Abbreviated edges ``sep3(0->2) skip(1->2) ...`` ('n/a' when the genotype has no such cell)."""
    edges = getattr(genotype, cell_type)
    if not edges:
        return "n/a"
    return "`" + " ".join(f"{OP_ABBREVIATIONS.get(op, op)}({s}->{d})" for op, s, d in edges) + "`"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ablation_table(runs: list[RunResult]) -> str:
    """Markdown: one row per run (method, seed), then a per-method summary and the selection rule.

    Per-run columns: method, seed, normal and reduction cell (abbreviated edges), params (M) of the trained
    network, params (M) at the paper size (C=36, 20 cells), multiply-adds (M) of the trained network on its input
    size and at the paper size on 32x32, collapse count, search time (s), test accuracy (%).
    Summary columns: test accuracy mean ± sample std (ddof=1; "n=1" and no std for one seed), mean search time
    (s), mean collapse count.
    """
    header = ["method", "seed", "normal cell", "reduction cell", "params (M)", "params (M), C=36 20 cells",
              "mult-adds (M)", "mult-adds (M), C=36 20 cells 32x32", "collapse count", "search time (s)",
              "test acc (%)"]
    rows = []
    for r in runs:
        m = r.metrics
        rows.append([r.method, str(r.seed), _compact_cell(r.genotype, "normal"), _compact_cell(r.genotype, "reduce"),
                     _fmt(m.get("params_m"), 3), _fmt(m.get("params_m_c36_l20"), 2), _fmt(m.get("madds_m"), 1),
                     _fmt(m.get("madds_m_c36_l20_32px"), 1), str(r.collapse_count), _fmt(r.search_time_s, 1),
                     _fmt(r.test_acc, 2)])
    summary_rows = [[s.method, ", ".join(map(str, s.seeds)), _acc_mean_std(s), _fmt(s.search_time_s_mean, 1),
                     f"{s.collapse_mean:.2f}"] for s in method_summary(runs)]
    used = sorted({op for r in runs for t in ("normal", "reduce") for op, _, _ in getattr(r.genotype, t)})
    legend = ", ".join(f"{OP_ABBREVIATIONS.get(op, op)} = {op}" for op in used)
    return "\n".join([
        "### Every run", "", _md_table(header, rows), "",
        (f"Ops: {legend}. Edges are written op(src->dst); node ids as in DESIGN.md 2.1. Collapse count = "
        "parameter-free ops (skip, pools, none, noise) in the normal cell."), "",
        "### Per method (over seeds)", "",
        _md_table(["method", "seeds", "test acc (%) mean ± std", "mean search time (s)", "mean collapse count"],
                  summary_rows), "",
        f"Selection rule: {SELECTION_RULE}. The std is the sample standard deviation over seeds (ddof=1).",
    ])


def _published_table(dataset: str) -> str:
    header = ["method", "CIFAR-10 test error (%)", "params (M)", "search cost (GPU-days)",
              "NB201 test acc (%) C10 / C100 / IN16-120"]
    return "\n".join([
        (f"Published **CIFAR-10** numbers (DESIGN.md 5), for context only: they are CIFAR-10 / NAS-Bench-201 "
        f"results of paper-size networks (C=36, 20 cells, 600 epochs), best of several searches, and are "
        f"**not comparable** with the {dataset} numbers above."), "",
        _md_table(header, [list(row) for row in PUBLISHED_NUMBERS]), "", PUBLISHED_IMAGENET])


def write_markdown(runs: list[RunResult], path: Path, context: dict[str, Any]) -> None:
    """Write the full markdown report.

    Args:
        runs: the runs, in report order.
        path: output file (its folder is created).
        context: what was run. Keys: ``dataset`` (name), ``test_images`` (number of test images), ``commands``
            (list of command lines); optional ``title``, ``settings`` (label -> description) and
            ``html_name`` (the HTML report's file name, default ``report.html``).
    """
    path = Path(path)
    dataset = str(context.get("dataset", "unknown data set"))
    test_images = context.get("test_images")
    html_name = context.get("html_name", "report.html")
    methods = list(dict.fromkeys(r.method for r in runs))
    seeds = list(dict.fromkeys(r.seed for r in runs))
    lines = [f"# {context.get('title', 'ITNAS ablation report')}", "", "## What was run", "",
             (f"- data set: {dataset}; test accuracy on {test_images if test_images is not None else 'n/a'} test "
             "images that search, derivation and training never see"),
             f"- runs: {len(runs)} (methods {', '.join(methods)} x seeds {', '.join(map(str, seeds))})"]
    for label, text in (context.get("settings") or {}).items():
        lines.append(f"- {label}: {text}")
    commands = context.get("commands") or []
    if commands:
        lines += ["- commands:", "", "  ```", *[f"  {c}" for c in commands], "  ```"]
    lines += ["", "## Results", "", ablation_table(runs), "", "## Genotypes", ""]
    for r in runs:
        lines.append(f"### {r.name} (test acc {r.test_acc:.2f} %, collapse count {r.collapse_count})")
        lines.append("")
        for t in ("normal", "reduce"):
            if getattr(r.genotype, t):
                lines.append(f"- {_CELL_TITLES[t]}: `{r.genotype.cell_string(t)}`")
        lines += [f"- JSON: `{json.dumps(r.genotype.to_dict(), separators=(',', ':'))}`", ""]
    lines += ["## Published numbers (CIFAR-10, for context)", "", _published_table(dataset), "",
              "## Figures", "",
              (f"Interactive figures: [{html_name}]({html_name}) (one self-contained page): test accuracy per run "
              "and per method, every genotype drawn as a cell graph, alpha heatmaps with an epoch slider and the "
              "mean alpha entropy per epoch, the learned transition matrices and attention weights of the last "
              "search epoch (ITNAS variants only), and the collapse count per search epoch."), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    log.info("wrote %s (%d runs)", path, len(runs))


# ---------------------------------------------------------------------------------------------------- figures
def _method_colors(runs: list[RunResult]) -> dict[str, str]:
    palette = qualitative.Plotly
    return {m: palette[i % len(palette)] for i, m in enumerate(dict.fromkeys(r.method for r in runs))}


def _edge_label(src: int, dst: int) -> str:
    return f"({src},{dst})"


def _accuracy_figure(runs: list[RunResult]) -> go.Figure:
    """(a) Test accuracy (%) of every run, and mean ± sample std per method."""
    colors = _method_colors(runs)
    summaries = method_summary(runs)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], horizontal_spacing=0.08,
                        subplot_titles=("every run", "per method: mean ± sample std over seeds"))
    for method, color in colors.items():
        group = [r for r in runs if r.method == method]
        fig.add_trace(go.Bar(x=[r.name for r in group], y=[r.test_acc for r in group], name=method,
                             marker_color=color, legendgroup=method, text=[f"{r.test_acc:.2f}" for r in group],
                             textposition="outside"), row=1, col=1)
    for s in summaries:
        std = s.test_acc_std
        label = f"{s.test_acc_mean:.2f}" + (f" ± {std:.2f}" if std is not None else "") + f"<br>n={s.n}"
        fig.add_trace(go.Bar(x=[f"{s.method}<br>{label}"], y=[s.test_acc_mean], marker_color=colors[s.method],
                             showlegend=False, legendgroup=s.method,
                             error_y={"type": "data", "array": [std or 0.0], "visible": std is not None},
                             hovertemplate=f"{s.method}: {label.replace('<br>', ', ')} %<extra></extra>"),
                      row=1, col=2)
    values = [r.test_acc for r in runs] + [s.test_acc_mean + sign * (s.test_acc_std or 0.0)
                                           for s in summaries for sign in (-1, 1)]
    lo, hi = min(values), max(values)
    pad = max(1.0, 0.25 * (hi - lo))
    y_lo, y_hi = max(0.0, math.floor(lo - pad)), min(100.0, hi + pad) + 0.5
    title = "test accuracy (%)" + (f" (axis starts at {y_lo:g})" if y_lo > 0 else "")
    for col in (1, 2):
        fig.update_yaxes(range=[y_lo, y_hi], title_text=title if col == 1 else None, row=1, col=col)
    fig.update_layout(height=460, margin={"t": 40, "b": 40}, legend_title_text="method")
    return fig


def _node_layout(space: SearchSpace) -> dict[int | str, tuple[float, float]]:
    """Node -> (x, y): two inputs at the upper and lower left (one input: on the line), intermediate nodes on the
    line y=0 at x=1..n, the output node at the right end of the line."""
    pos: dict[int | str, tuple[float, float]] = {}
    for i in range(space.n_inputs):
        pos[i] = (0.0, 0.0 if space.n_inputs == 1 else 1.3 - 2.6 * i / (space.n_inputs - 1))
    for k, j in enumerate(space.intermediate_nodes):
        pos[j] = (1.0 + k if space.n_inputs > 1 else float(j), 0.0)
    pos["out"] = (max(x for x, _ in pos.values()) + 1.0, 0.0)
    return pos


def _bend(p0: tuple[float, float], p2: tuple[float, float], on_line_side: float = 1.0) -> float:
    """Control-point offset of an edge curve: edges along the node line arc over the nodes they skip (up, or down
    for `on_line_side` -1); edges from an input above / below the line bow away from it."""
    span = p2[0] - p0[0]
    if p0[1] == p2[1]:
        return on_line_side * (0.35 + 0.2 * span) if span > 1.5 else 0.0
    return math.copysign(0.12 * max(0.0, span - 1.0), p0[1] - p2[1])


def _node_name(space: SearchSpace, node: int | str) -> str:
    if node == "out":
        return "c_{k}" if space.n_inputs == 2 else "out"
    if node < space.n_inputs:
        return f"c_{{k-{space.n_inputs - node}}}" if space.n_inputs == 2 else "in"
    return str(node)


def _curve(p0: tuple[float, float], p2: tuple[float, float], bend: float, n: int = 21):
    """Quadratic Bezier from p0 to p2, its control point pushed `bend` perpendicular to the chord.

    Returns (xs, ys, mid): n points of the curve and its point at t=0.5."""
    (x0, y0), (x2, y2) = p0, p2
    dx, dy = x2 - x0, y2 - y0
    norm = math.hypot(dx, dy) or 1.0
    cx, cy = (x0 + x2) / 2 - bend * dy / norm, (y0 + y2) / 2 + bend * dx / norm
    t = np.linspace(0.0, 1.0, n)
    xs = (1 - t) ** 2 * x0 + 2 * (1 - t) * t * cx + t ** 2 * x2
    ys = (1 - t) ** 2 * y0 + 2 * (1 - t) * t * cy + t ** 2 * y2
    return xs.tolist(), ys.tolist(), (0.25 * x0 + 0.5 * cx + 0.25 * x2, 0.25 * y0 + 0.5 * cy + 0.25 * y2)


def _genotype_figure(run: RunResult) -> go.Figure:
    """(b) The run's cells as graphs: nodes left to right, one curve per kept edge labelled with its op."""
    space = create_space(run.genotype.space)
    cell_types = [t for t in space.cell_types if getattr(run.genotype, t)]
    fig = make_subplots(rows=1, cols=len(cell_types), horizontal_spacing=0.04,
                        subplot_titles=[_CELL_TITLES[t] for t in cell_types])
    pos = _node_layout(space)
    for col, t in enumerate(cell_types, start=1):
        edges, concat = getattr(run.genotype, t), getattr(run.genotype, f"{t}_concat")
        for j in concat:  # cell output: concat (DARTS) or the last node (NB201)
            xs, ys, _ = _curve(pos[j], pos["out"], _bend(pos[j], pos["out"], -1.0))
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": _COLOR_CONCAT, "dash": "dot", "width": 1},
                                     hoverinfo="skip", showlegend=False), row=1, col=col)
        for op, src, dst in edges:
            xs, ys, (mx, my) = _curve(pos[src], pos[dst], _bend(pos[src], pos[dst]))
            color = _COLOR_FREE if op in PARAMETER_FREE_OPS else _COLOR_PARAM
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": color, "width": 2}, showlegend=False,
                                     hovertemplate=f"{op}: {src} -> {dst}<extra></extra>"), row=1, col=col)
            fig.add_annotation(x=mx, y=my, text=op, showarrow=False, font={"size": 10, "color": color},
                               bgcolor="rgba(255,255,255,0.85)", row=1, col=col)
        nodes = list(pos)
        fig.add_trace(go.Scatter(
            x=[pos[n][0] for n in nodes], y=[pos[n][1] for n in nodes], mode="markers+text",
            text=[_node_name(space, n) for n in nodes], textposition="middle center", textfont={"size": 11},
            marker={"size": 38, "color": ["#dbe9f6" if n != "out" and n < space.n_inputs else
                                        "#fde9c9" if n == "out" else "#ffffff" for n in nodes],
                        "line": {"color": "#333333", "width": 1.5}},
            hoverinfo="text", showlegend=False), row=1, col=col)
        fig.update_xaxes(visible=False, range=[-0.5, pos["out"][0] + 0.5], row=1, col=col)
        fig.update_yaxes(visible=False, range=[-1.75, 1.75], row=1, col=col)
    for name, color in (("op with parameters", _COLOR_PARAM),
                        ("parameter-free op (skip, pool, none, noise)", _COLOR_FREE),
                        ("into the cell output", _COLOR_CONCAT)):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=name,
                                 line={"color": color, "dash": "dot" if color == _COLOR_CONCAT else "solid"}))
    fig.update_layout(height=380, margin={"t": 70, "b": 20, "l": 20, "r": 20}, plot_bgcolor="white",
                      legend={"orientation": "h", "y": -0.02},
                      title_text=f"{run.name}: test acc {run.test_acc:.2f} %, collapse count {run.collapse_count}",
                      title_font_size=14)
    return fig


def _op_axis(space: SearchSpace, cell_type: str) -> tuple[list[str], list[list[str]]]:
    """Column labels of an (E, K) alpha heatmap and the op name of every cell (edges may differ, e.g. in s1)."""
    per_edge = space.ops[cell_type]
    uniform = len(set(per_edge)) == 1
    labels = list(per_edge[0]) if uniform else [f"op {k + 1}" for k in range(space.n_ops)]
    return labels, [list(ops) for ops in per_edge]


def _alpha_figure(run: RunResult) -> go.Figure:
    """(c) Alpha heatmaps (edges x ops) with an epoch slider (final epoch shown), and mean alpha entropy per epoch."""
    space = create_space(run.genotype.space)
    cell_types = [t for t in space.cell_types if t in run.history[-1].get("alphas", {})]
    titles = [f"alpha, {_CELL_TITLES[t]}" for t in cell_types] + ["mean alpha entropy (nats) per epoch"]
    fig = make_subplots(rows=1, cols=len(cell_types) + 1, subplot_titles=titles, horizontal_spacing=0.12,
                        column_widths=[1.0] * len(cell_types) + [0.8])
    edge_labels = [_edge_label(s, d) for s, d in space.edges]
    epochs = [int(r["epoch"]) + 1 for r in run.history]
    zmax = max(max(max(row) for row in r["alphas"][t]) for r in run.history for t in cell_types)
    heat_traces = []
    for col, t in enumerate(cell_types, start=1):
        labels, names = _op_axis(space, t)
        z = np.round(np.asarray(run.history[-1]["alphas"][t], dtype=float), 4).tolist()
        heat_traces.append(len(fig.data))
        uniform = labels == names[0]  # else (s1) each cell names its op: the edges have different op sets
        fig.add_trace(go.Heatmap(z=z, x=labels, y=edge_labels, customdata=names, coloraxis="coloraxis",
                                 text=[[OP_ABBREVIATIONS.get(o, o) for o in ops] for ops in names],
                                 texttemplate="%{z:.2f}" if uniform else "%{text} %{z:.2f}", textfont={"size": 8},
                                 hovertemplate="edge %{y}, %{customdata}: alpha %{z:.4f}<extra></extra>"),
                      row=1, col=col)
        kept = getattr(run.genotype, t)
        fig.add_trace(go.Scatter(
            x=[labels[names[space.edge_index(s, d)].index(op)] for op, s, d in kept],
            y=[_edge_label(s, d) for _, s, d in kept], mode="markers",
            marker={"symbol": "square-open", "size": 16, "color": "black", "line": {"width": 2}},
            name="derived genotype", showlegend=col == 1, hovertemplate="kept: %{y} %{x}<extra></extra>"),
            row=1, col=col)
        fig.update_yaxes(autorange="reversed", tickfont={"size": 9}, row=1, col=col)
        fig.update_xaxes(tickfont={"size": 9}, tickangle=-45, row=1, col=col)
    ent_col = len(cell_types) + 1
    for t, dash in zip(cell_types, ("solid", "dash")):
        ent = [float(np.mean(r["alpha_entropy"][t])) for r in run.history]
        fig.add_trace(go.Scatter(x=epochs, y=ent, mode="lines+markers", name=f"entropy, {_CELL_TITLES[t]}",
                                 line={"dash": dash}), row=1, col=ent_col)
    fig.add_hline(y=math.log(space.n_ops), line={"color": "grey", "dash": "dot"}, annotation_text="uniform (log K)",
                  annotation_font_size=9, row=1, col=ent_col)
    warm = [int(r["epoch"]) + 1 for r in run.history if r.get("arch_updated") is False]
    if warm:
        fig.add_vrect(x0=min(warm) - 0.5, x1=max(warm) + 0.5, fillcolor="grey", opacity=0.15, line_width=0,
                      annotation_text="warm-up", annotation_font_size=9, row=1, col=ent_col)
    fig.update_xaxes(title_text="epoch", dtick=1, row=1, col=ent_col)
    steps = []
    for k, rec in enumerate(run.history):
        zs = [np.round(np.asarray(rec["alphas"][t], dtype=float), 4).tolist() for t in cell_types]
        steps.append({"method": "restyle", "label": str(epochs[k]), "args": [{"z": zs}, heat_traces]})
    fig.update_layout(
        height=580, margin={"t": 110, "b": 40}, coloraxis={"colorscale": "Viridis", "cmin": 0.0, "cmax": zmax,
                                                            "colorbar": {"title": "alpha", "len": 0.8}},
        sliders=[{"active": len(steps) - 1, "steps": steps, "currentvalue": {"prefix": "alphas of epoch "},
                      "pad": {"t": 60}, "len": 0.6}] if len(steps) > 1 else [],
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.08, "x": 0.0},
        title_text=f"{run.name}: architecture weights (squares: the derived genotype's edges and ops)",
        title_font_size=14)
    return fig


def _has_transitions(run: RunResult) -> bool:
    """Whether the run's last search epoch recorded transition matrices (not for darts, pcdarts)."""
    last = run.history[-1] if run.history else {}
    return any((last.get("transitions") or {}).values())


def _transition_figures(run: RunResult) -> list[go.Figure | str]:
    """(d) Transition matrices T_{p->e} of the last epoch (grid of K x K heatmaps per cell type) and the attention
    w_e over predecessors (stacked bars per inner edge). What the method does not learn (T of itnas_notrans, w of
    itnas_noattn) is a one-line note (str) instead of a figure. Empty list for runs without transitions."""
    if not _has_transitions(run):
        return []
    last = run.history[-1]
    transitions, attention = last.get("transitions") or {}, last.get("attention") or {}
    space = create_space(run.genotype.space)
    spec = get_method(run.method) if run.method in list_methods() else None
    items: list[go.Figure | str] = []
    for t, mats in transitions.items():
        if not mats:
            continue
        if spec is not None and not spec.learn_transition:
            items.append(f"{run.name}, {_CELL_TITLES.get(t, t)}: T is fixed to the op identity (not learned), so an "
                         "inner edge takes its predecessors' alphas as they are, mixed by the attention below.")
            continue
        keys = list(mats)
        cols = 4
        rows = max(1, math.ceil(len(keys) / cols))
        titles = []
        for key in keys:
            m = _EDGE_KEY.fullmatch(key.replace(" ", ""))
            titles.append(f"{_edge_label(int(m[1]), int(m[2]))} → {_edge_label(int(m[3]), int(m[4]))}" if m else key)
        fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.07,
                            vertical_spacing=0.12 if rows > 1 else 0.2)
        for k, key in enumerate(keys):
            m = _EDGE_KEY.fullmatch(key.replace(" ", ""))
            if m:
                p = space.edge_index(int(m[1]), int(m[2]))
                e = space.edge_index(int(m[3]), int(m[4]))
                y_ops, x_ops = space.ops[t][p], space.ops[t][e]
            else:
                y_ops = x_ops = tuple(f"op {i + 1}" for i in range(len(mats[key])))
            fig.add_trace(go.Heatmap(
                z=np.round(np.asarray(mats[key], dtype=float), 4).tolist(),
                x=[OP_ABBREVIATIONS.get(o, o) for o in x_ops], y=[OP_ABBREVIATIONS.get(o, o) for o in y_ops],
                coloraxis="coloraxis",
                hovertemplate="op on p: %{y}, op on e: %{x}: T %{z:.3f}<extra></extra>"),
                row=k // cols + 1, col=k % cols + 1)
            fig.update_yaxes(autorange="reversed", tickfont={"size": 8}, row=k // cols + 1, col=k % cols + 1)
            fig.update_xaxes(tickfont={"size": 8}, tickangle=-60, row=k // cols + 1, col=k % cols + 1)
        fig.update_annotations(font_size=10)
        fig.update_layout(height=150 + 210 * rows, margin={"t": 90, "b": 30},
                          coloraxis={"colorscale": "Blues", "cmin": 0.0, "cmax": 1.0, "colorbar": {"title": "T"}},
                          title_text=f"{run.name}, {_CELL_TITLES.get(t, t)}: transition matrices T(p → e) of the "
                                     "last epoch; rows: op on predecessor p, columns: op on inner edge e",
                          title_font_size=13)
        items.append(fig)
    if any(attention.values()) and spec is not None and not spec.learn_attention:
        items.append(f"{run.name}: attention w_e is uniform over the predecessor edges (not learned).")
    elif any(attention.values()):
        cell_types = [t for t in attention if attention[t]]
        fig = make_subplots(rows=1, cols=len(cell_types), subplot_titles=[_CELL_TITLES.get(t, t) for t in cell_types])
        for col, t in enumerate(cell_types, start=1):
            inner = list(attention[t])
            preds = {}
            for key in inner:
                m = re.fullmatch(r"\((\d+),(\d+)\)", key.replace(" ", ""))
                e = space.edge_index(int(m[1]), int(m[2])) if m else None
                preds[key] = ([_edge_label(*space.edges[p]) for p in space.predecessors[e]] if e is not None
                              else [f"pred {i + 1}" for i in range(len(attention[t][key]))])
            depth = max(len(v) for v in attention[t].values())
            for k in range(depth):
                xs = [key for key in inner if len(attention[t][key]) > k]
                fig.add_trace(go.Bar(
                    x=[_edge_label(*map(int, re.findall(r"\d+", key))) for key in xs],
                    y=[attention[t][key][k] for key in xs], text=[preds[key][k] for key in xs],
                    textposition="inside", insidetextanchor="middle", showlegend=False,
                    marker={"color": qualitative.Pastel[k % len(qualitative.Pastel)],
                            "line": {"color": "white", "width": 1}},
                    hovertemplate="inner edge %{x}, predecessor %{text}: w %{y:.3f}<extra></extra>"), row=1, col=col)
            fig.update_yaxes(range=[0, 1], title_text="attention w_e" if col == 1 else None, row=1, col=col)
            fig.update_xaxes(title_text="inner edge e", row=1, col=col)
        fig.update_layout(barmode="stack", height=400, margin={"t": 80},
                          title_text=f"{run.name}: attention over predecessor edges, last epoch "
                                     "(each bar sums to 1; segments labelled by predecessor edge)",
                          title_font_size=13)
        items.append(fig)
    return items


def _collapse_figure(runs: list[RunResult]) -> go.Figure:
    """(e) Collapse count (parameter-free ops in the normal cell of each epoch's marginal genotype) per epoch."""
    colors = _method_colors(runs)
    dashes = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
    fig = go.Figure()
    seed_rank: dict[str, int] = {}
    for r in runs:
        k = seed_rank[r.method] = seed_rank.get(r.method, -1) + 1
        if not r.history:
            continue
        fig.add_trace(go.Scatter(x=[int(h["epoch"]) + 1 for h in r.history],
                                 y=[h["collapse_count"] for h in r.history], mode="lines+markers", name=r.name,
                                 line={"color": colors[r.method], "dash": dashes[k % len(dashes)]}))
    fig.update_layout(height=400, xaxis_title="search epoch", yaxis_title="collapse count (normal cell)",
                      title_text="Collapse count per search epoch (genotype derived with the marginal rule each "
                                 "epoch)", title_font_size=13)
    fig.update_yaxes(rangemode="tozero", dtick=1)
    fig.update_xaxes(dtick=1)
    return fig


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1400px;margin:auto;
padding:0 1.5em 3em;color:#222}h1{margin-top:1em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
p.note{color:#555}"""


def write_html(runs: list[RunResult], path: Path, title: str = "ITNAS ablation report") -> None:
    """Write one self-contained interactive HTML page (plotly.js embedded once; opens offline).

    Sections: (a) test accuracy per run and per method (mean ± sample std); (b) every genotype drawn as cell
    graphs (parameter-free ops in red); (c) per run, alpha heatmaps (edges x ops, epoch slider, final epoch shown)
    and mean alpha entropy (nats) per epoch; (d) per ITNAS-variant run, the last epoch's transition matrices and
    attention weights (runs without transitions, darts and pcdarts, are skipped); (e) collapse count per epoch.
    """
    path = Path(path)
    parts: list[str] = []

    def add(fig: go.Figure) -> None:
        # plotly.js is embedded with the first figure only; later figures reuse it (one self-contained page)
        n_figs = sum(1 for p in parts if p.startswith("<div"))
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=n_figs == 0, config={"responsive": True}))

    def text(tag: str, body: str, cls: str | None = None) -> None:
        attr = f' class="{cls}"' if cls else ""
        parts.append(f"<{tag}{attr}>{html.escape(body)}</{tag}>")

    text("h1", title)
    text("p", f"{len(runs)} runs. Selection rule: {SELECTION_RULE}. Mean ± sample standard deviation (ddof=1) over "
              "seeds.", "note")
    text("h2", "(a) Test accuracy")
    add(_accuracy_figure(runs))
    text("h2", "(b) Derived genotypes")
    text("p", "Nodes left to right: cell inputs, intermediate nodes, cell output. Each kept edge is labelled "
              "with its op; parameter-free ops (the collapse indicator) are red.", "note")
    for r in runs:
        add(_genotype_figure(r))
    text("h2", "(c) Architecture weights over the search")
    text("p", "Alphas of every edge (rows) and op (columns); the slider steps through the search epochs. Squares "
              "mark the derived genotype. Right: mean entropy of the edges' alphas per epoch.", "note")
    for r in runs:
        if r.history:
            add(_alpha_figure(r))
        else:
            text("p", f"{r.name}: no search history (search/history.json missing).", "note")
    text("h2", "(d) Transition matrices and attention (last search epoch)")
    skipped = [r.name for r in runs if not _has_transitions(r)]
    if skipped:
        text("p", f"No transitions (inner edges with their own softmax, as darts and pcdarts), not shown: "
                  f"{', '.join(skipped)}.", "note")
    for r in runs:
        for item in _transition_figures(r):
            if isinstance(item, str):
                text("p", item, "note")
            else:
                add(item)
    text("h2", "(e) Collapse count per search epoch")
    add(_collapse_figure(runs))
    doc = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
           f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
           + "\n".join(parts) + "\n</body>\n</html>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc, encoding="utf-8")
    log.info("wrote %s (%.1f MB, %d runs)", path, path.stat().st_size / 1e6, len(runs))

