"""The report's plotly figures, one function per figure; `itnas.report.page` puts them on one HTML page.

Per benchmark: (a) its evaluator's headline figure (`itnas.evaluators.Evaluator.figure`, colours from
`method_colors`); (e) `collapse_figure`: collapse count per search epoch. Per run: (b) the cell graphs
(`itnas.report.cellgraph.genotype_figure`); (c) `alpha_figure`: alpha heatmaps over the search epochs and the mean
alpha entropy (nats); (d) `transition_figures`: the last epoch's transition matrices and attention (records of
`itnas.records`; ITNAS variants only).
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ..methods import get_method, list_methods
from ..spaces import SearchSpace, create_space
from .runs import RunResult
from .tables import CELL_TITLES, OP_ABBREVIATIONS

__all__ = ["alpha_figure", "collapse_figure", "has_transitions", "method_colors", "transition_figures"]


def method_colors(runs: list[RunResult]) -> dict[str, str]:
    palette = qualitative.Plotly
    return {m: palette[i % len(palette)] for i, m in enumerate(dict.fromkeys(r.method for r in runs))}


def _edge_label(src: int, dst: int) -> str:
    return f"({src},{dst})"


def _op_axis(space: SearchSpace, cell_type: str) -> tuple[list[str], list[list[str]]]:
    """Column labels of an (E, K) alpha heatmap and the op name of every cell (edges may differ, e.g. in s1)."""
    per_edge = space.ops[cell_type]
    uniform = len(set(per_edge)) == 1
    labels = list(per_edge[0]) if uniform else [f"op {k + 1}" for k in range(space.n_ops)]
    return labels, [list(ops) for ops in per_edge]


def alpha_figure(run: RunResult) -> go.Figure:
    """(c) Alpha heatmaps (edges x ops) with an epoch slider (final epoch shown), and mean alpha entropy per epoch."""
    space = create_space(run.genotype.space)
    cell_types = [t for t in space.cell_types if t in run.history[-1].get("alphas", {})]
    titles = [f"alpha, {CELL_TITLES[t]}" for t in cell_types] + ["mean alpha entropy (nats) per epoch"]
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
    for t, dash in zip(cell_types, ("solid", "dash"), strict=False):  # 1 or 2 cell types
        ent = [float(np.mean(r["alpha_entropy"][t])) for r in run.history]
        fig.add_trace(go.Scatter(x=epochs, y=ent, mode="lines+markers", name=f"entropy, {CELL_TITLES[t]}",
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


def has_transitions(run: RunResult) -> bool:
    """Whether the run's last search epoch recorded transition matrices (not for darts, pcdarts)."""
    last = run.history[-1] if run.history else {}
    return any((last.get("transitions") or {}).values())


def transition_figures(run: RunResult) -> list[go.Figure | str]:
    """(d) Transition matrices T_{p->e} of the last epoch (grid of K x K heatmaps per cell type) and the attention
    w_e over predecessors (stacked bars per inner edge), read from the records of `itnas.records`. What the method
    does not learn (T of itnas_notrans, w of itnas_noattn) is a one-line note (str) instead of a figure. Empty
    list for runs without transitions."""
    if not has_transitions(run):
        return []
    last = run.history[-1]
    transitions, attention = last.get("transitions") or {}, last.get("attention") or {}
    space = create_space(run.genotype.space)
    spec = get_method(run.method) if run.method in list_methods() else None
    items: list[go.Figure | str] = []
    for t, records in transitions.items():
        if not records:
            continue
        if spec is not None and not spec.learn_transition:
            items.append(f"{run.name}, {CELL_TITLES.get(t, t)}: T is fixed to the op identity (not learned), so an "
                         "inner edge takes its predecessors' alphas as they are, mixed by the attention below.")
            continue
        items.append(_transition_grid(run, space, t, records))
    if any(attention.values()) and spec is not None and not spec.learn_attention:
        items.append(f"{run.name}: attention w_e is uniform over the predecessor edges (not learned).")
    elif any(attention.values()):
        items.append(_attention_figure(run, attention))
    return items


def _transition_grid(run: RunResult, space: SearchSpace, cell_type: str, records: list[dict]) -> go.Figure:
    """One K x K heatmap per (predecessor p, inner edge e) record, 4 per row; rows: op on p, columns: op on e."""
    cols = 4
    rows = max(1, math.ceil(len(records) / cols))
    titles = [f"{_edge_label(*r['pred'])} → {_edge_label(*r['edge'])}" for r in records]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.07,
                        vertical_spacing=0.12 if rows > 1 else 0.2)
    for k, r in enumerate(records):
        y_ops = space.ops[cell_type][space.edge_index(*r["pred"])]
        x_ops = space.ops[cell_type][space.edge_index(*r["edge"])]
        fig.add_trace(go.Heatmap(
            z=np.round(np.asarray(r["matrix"], dtype=float), 4).tolist(),  # (K, K)
            x=[OP_ABBREVIATIONS.get(o, o) for o in x_ops], y=[OP_ABBREVIATIONS.get(o, o) for o in y_ops],
            coloraxis="coloraxis",
            hovertemplate="op on p: %{y}, op on e: %{x}: T %{z:.3f}<extra></extra>"),
            row=k // cols + 1, col=k % cols + 1)
        fig.update_yaxes(autorange="reversed", tickfont={"size": 8}, row=k // cols + 1, col=k % cols + 1)
        fig.update_xaxes(tickfont={"size": 8}, tickangle=-60, row=k // cols + 1, col=k % cols + 1)
    fig.update_annotations(font_size=10)
    fig.update_layout(height=150 + 210 * rows, margin={"t": 90, "b": 30},
                      coloraxis={"colorscale": "Blues", "cmin": 0.0, "cmax": 1.0, "colorbar": {"title": "T"}},
                      title_text=f"{run.name}, {CELL_TITLES.get(cell_type, cell_type)}: transition matrices "
                                 "T(p → e) of the last epoch; rows: op on predecessor p, columns: op on inner edge e",
                      title_font_size=13)
    return fig


def _attention_figure(run: RunResult, attention: dict[str, list[dict]]) -> go.Figure:
    """Stacked bars per inner edge e: w_e over its predecessor edges (segment k: ``preds[k]``, ``weights[k]``)."""
    cell_types = [t for t in attention if attention[t]]
    fig = make_subplots(rows=1, cols=len(cell_types), subplot_titles=[CELL_TITLES.get(t, t) for t in cell_types])
    for col, t in enumerate(cell_types, start=1):
        records = attention[t]
        depth = max(len(r["weights"]) for r in records)
        for k in range(depth):
            xs = [r for r in records if len(r["weights"]) > k]
            fig.add_trace(go.Bar(
                x=[_edge_label(*r["edge"]) for r in xs], y=[r["weights"][k] for r in xs],
                text=[_edge_label(*r["preds"][k]) for r in xs],
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
    return fig


def collapse_figure(runs: list[RunResult]) -> go.Figure:
    """(e) Collapse count (parameter-free ops in the normal cell of each epoch's marginal genotype) per epoch."""
    colors = method_colors(runs)
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

