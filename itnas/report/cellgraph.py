"""A genotype's cells drawn as graphs (`genotype_figure`), with edge labels whose boxes do not overlap.

Layout (data units): DARTS-like cells (2 inputs): c(k-2) upper left, c(k-1) lower left, intermediate nodes 2..5 on
the line y=0, the concatenated output c(k) at its right end (dotted edges). NB201 cells (1 input): node 0 (input)
and nodes 1..3 on the line; node 3 is the cell output. Edges are quadratic curves; those along the line arc over
the nodes they skip.

Edge labels are the op abbreviations of `OP_ABBREVIATIONS` (the legend names the full ops; hovering a label too).
The figure has a fixed size in pixels, so label boxes can be placed in pixels: each label goes to the first point
along its edge (from the middle outwards) whose box stays inside its subplot and clears the node markers and every
label already placed (`LABEL_GAP_PX`). Box sizes come from the text length with per-character advance widths that
bound those of DejaVu Sans, Liberation Sans / Arial and Open Sans (`text_width_px`); `label_boxes` recomputes
them from a finished figure, for tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..genotype import Genotype
from ..spaces import PARAMETER_FREE_OPS, SearchSpace, create_space
from .tables import CELL_TITLES, OP_ABBREVIATIONS

__all__ = ["CELL_WIDTH_PX", "FIG_HEIGHT_PX", "LABEL_FONT_PX", "LABEL_GAP_PX", "boxes_overlap", "genotype_figure",
           "label_boxes", "text_width_px"]

CELL_WIDTH_PX = 560       # figure width per cell (px)
FIG_HEIGHT_PX = 440       # figure height (px)
_MARGIN = {"l": 20, "r": 20, "t": 80, "b": 110}
_H_SPACING = 0.06         # between the two cells (fraction of the plot width)
LABEL_FONT_PX = 11        # edge-label font size (px)
_LABEL_PAD_PX = 2         # plotly annotation border width (1) + border pad (1), each side
LABEL_GAP_PX = 3          # smallest gap between two label boxes, or a label box and a node marker (px)
_NODE_DIAMETER_PX = 42
_Y_RANGE = (-1.75, 1.75)
_T_CANDIDATES = (0.5, 0.42, 0.58, 0.34, 0.66, 0.27, 0.73, 0.2, 0.8, 0.14, 0.86)
_COLOR_PARAM, _COLOR_FREE, _COLOR_CONCAT = "#1f77b4", "#d62728", "#999999"

#: Advance width (em) per character, an upper bound over DejaVu Sans (the widest common fallback), Liberation Sans /
#: Arial and Open Sans (plotly's default font); other characters: `_DEFAULT_EM`.
_CHAR_EM = {**dict.fromkeys("mwMW", 1.0), **dict.fromkeys("iljtfr.,:;|!' ", 0.45), "_": 0.55,
            **dict.fromkeys("ABCDEFGHKNOPQRSTUVXYZ", 0.8)}
_DEFAULT_EM = 0.66

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in page pixels (y down)


def text_width_px(text: str, size: float = LABEL_FONT_PX) -> float:
    """Upper bound of the rendered width (px) of `text` at font size `size` (px)."""
    return size * sum(_CHAR_EM.get(c, _DEFAULT_EM) for c in text)


def _label_size(text: str, size: float = LABEL_FONT_PX) -> tuple[float, float]:
    """(width, height) of an annotation box (px): the text plus border and padding on each side."""
    return text_width_px(text, size) + 2 * _LABEL_PAD_PX, 1.3 * size + 2 * _LABEL_PAD_PX


def boxes_overlap(a: Box, b: Box, gap: float = 0.0) -> bool:
    """Whether boxes a and b (x0, y0, x1, y1) come closer than `gap` px (touching boxes do not overlap)."""
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


@dataclass(frozen=True)
class _Frame:
    """Data <-> pixel transform of one subplot of a fixed-size figure (pixels from the figure's top left)."""

    x0: float
    x1: float
    y0: float
    y1: float
    xr: tuple[float, float]
    yr: tuple[float, float]

    def px(self, x: float, y: float) -> tuple[float, float]:
        return (self.x0 + (x - self.xr[0]) / (self.xr[1] - self.xr[0]) * (self.x1 - self.x0),
                self.y1 - (y - self.yr[0]) / (self.yr[1] - self.yr[0]) * (self.y1 - self.y0))

    def data(self, px: float, py: float) -> tuple[float, float]:
        return (self.xr[0] + (px - self.x0) / (self.x1 - self.x0) * (self.xr[1] - self.xr[0]),
                self.yr[0] + (self.y1 - py) / (self.y1 - self.y0) * (self.yr[1] - self.yr[0]))

    def inside(self, box: Box) -> bool:
        return self.x0 <= box[0] and box[2] <= self.x1 and self.y0 <= box[1] and box[3] <= self.y1


def _frame(fig: go.Figure, xref: str) -> _Frame:
    """The pixel frame of the subplot whose axes are `xref` / the matching y axis ("x", "x2", ...)."""
    layout = fig.layout
    suffix = xref[1:]
    xa, ya = layout[f"xaxis{suffix}"], layout[f"yaxis{suffix}"]
    m = layout.margin
    w, h = layout.width - m.l - m.r, layout.height - m.t - m.b
    return _Frame(m.l + xa.domain[0] * w, m.l + xa.domain[1] * w, m.t + (1 - ya.domain[1]) * h,
                  m.t + (1 - ya.domain[0]) * h, tuple(xa.range), tuple(ya.range))


def label_boxes(fig: go.Figure) -> dict[str, list[tuple[str, Box]]]:
    """{subplot x axis ("x", "x2"): [(label name, box in px)]} of the edge labels (annotations named "edge ...") of a
    figure made by `genotype_figure`, from their positions, text and font size."""
    out: dict[str, list[tuple[str, Box]]] = {}
    for ann in fig.layout.annotations:
        if not (ann.name or "").startswith("edge "):
            continue
        frame = _frame(fig, ann.xref)
        cx, cy = frame.px(ann.x, ann.y)
        w, h = _label_size(ann.text, ann.font.size)
        out.setdefault(ann.xref, []).append((ann.name, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
    return out


def _node_layout(space: SearchSpace) -> dict[int | str, tuple[float, float]]:
    """Node -> (x, y) (module docstring); "out" only for cells that concatenate their nodes."""
    pos: dict[int | str, tuple[float, float]] = {}
    for i in range(space.n_inputs):
        pos[i] = (0.0, 0.0 if space.n_inputs == 1 else 1.3 - 2.6 * i / (space.n_inputs - 1))
    for k, j in enumerate(space.intermediate_nodes):
        pos[j] = (1.0 + k if space.n_inputs > 1 else float(j), 0.0)
    if space.output == "concat":
        pos["out"] = (max(x for x, _ in pos.values()) + 1.0, 0.0)
    return pos


def _node_name(space: SearchSpace, node: int | str) -> str:
    if node == "out":
        return "c(k)"
    if space.n_inputs == 2 and node < 2:
        return f"c(k-{2 - node})"
    if space.output == "last" and node == space.n_nodes - 1:
        return f"{node} out"
    return "in 0" if node == 0 and space.n_inputs == 1 else str(node)


def _node_color(space: SearchSpace, node: int | str) -> str:
    if node == "out" or (space.output == "last" and node == space.n_nodes - 1):
        return "#fde9c9"
    return "#dbe9f6" if node < space.n_inputs else "#ffffff"


def _bend(space: SearchSpace, src: int | str, dst: int | str, pos: dict, on_line_side: float = 1.0) -> float:
    """Control-point offset (data units) of the curve of edge src -> dst: edges along the node line arc over the nodes
    they skip (up, or down for `on_line_side` -1; in a one-input cell (NB201) the two 2-node skips arc to opposite
    sides, so that no two arcs cross); edges from an input above / below the line bow away from it."""
    p0, p2 = pos[src], pos[dst]
    span = p2[0] - p0[0]
    if p0[1] != p2[1]:
        return math.copysign(0.12 * max(0.0, span - 1.0), p0[1] - p2[1])
    if span <= 1.5:
        return 0.0
    if space.n_inputs == 1 and dst != "out":
        return (1.0 if span < 2.5 else 1.7) * (1.0 if src % 2 == 0 else -1.0)
    return on_line_side * (0.35 + 0.2 * span)


def _curve(p0: tuple[float, float], p2: tuple[float, float], bend: float, t=None):
    """Points of the quadratic Bezier from p0 to p2 whose control point is pushed `bend` perpendicular to the
    chord, at parameters `t` (default 21 points from 0 to 1). Returns (xs, ys) as arrays."""
    (x0, y0), (x2, y2) = p0, p2
    dx, dy = x2 - x0, y2 - y0
    norm = math.hypot(dx, dy) or 1.0
    cx, cy = (x0 + x2) / 2 - bend * dy / norm, (y0 + y2) / 2 + bend * dx / norm
    t = np.linspace(0.0, 1.0, 21) if t is None else np.asarray(t, dtype=float)
    return ((1 - t) ** 2 * x0 + 2 * (1 - t) * t * cx + t ** 2 * x2,
            (1 - t) ** 2 * y0 + 2 * (1 - t) * t * cy + t ** 2 * y2)


def _place_labels(frame: _Frame, space: SearchSpace, pos: dict,
                  edges: list[tuple[str, int, int]]) -> dict[tuple[int, int], tuple[float, float]]:
    """(src, dst) -> (x, y) data position of every edge's label: the first candidate point along the edge
    (`_T_CANDIDATES`, then the same points shifted off the edge by one box height either side) whose box is inside
    the subplot and clears the node markers and the labels placed before; edges placed shortest first. When none
    clears, the candidate with the least overlap is taken."""
    r = _NODE_DIAMETER_PX / 2
    taken: list[Box] = []
    for node in pos.values():
        cx, cy = frame.px(*node)
        taken.append((cx - r, cy - r, cx + r, cy + r))

    def length(edge) -> float:
        (ax, ay), (bx, by) = frame.px(*pos[edge[1]]), frame.px(*pos[edge[2]])
        return math.hypot(bx - ax, by - ay)

    out = {}
    for op, src, dst in sorted(edges, key=length):
        w, h = _label_size(OP_ABBREVIATIONS.get(op, op))
        xs, ys = _curve(pos[src], pos[dst], _bend(space, src, dst, pos), _T_CANDIDATES)
        points = [frame.px(x, y) for x, y in zip(xs, ys, strict=True)]
        candidates = points + [(px, py + s * (h + LABEL_GAP_PX)) for s in (-1, 1) for px, py in points]
        best, best_cost = None, math.inf
        for px, py in candidates:
            box = (px - w / 2, py - h / 2, px + w / 2, py + h / 2)
            if not frame.inside(box):
                continue
            hits = [b for b in taken if boxes_overlap(box, b, LABEL_GAP_PX)]
            cost = sum((min(box[2], b[2]) - max(box[0], b[0]) + LABEL_GAP_PX) *
                       (min(box[3], b[3]) - max(box[1], b[1]) + LABEL_GAP_PX) for b in hits)
            if cost < best_cost:
                best, best_cost = (px, py, box), cost
            if not hits:
                break
        px, py, box = best if best is not None else (*points[0], None)
        if box is not None:
            taken.append(box)
        out[(src, dst)] = frame.data(px, py)
    return out


def genotype_figure(genotype: Genotype, title: str) -> go.Figure:
    """The genotype's cells as graphs (module docstring): one curve per kept edge, labelled with its abbreviated op
    (red: parameter-free, the collapse indicator), the op legend below. Fixed size: `CELL_WIDTH_PX` per cell x
    `FIG_HEIGHT_PX`."""
    space = create_space(genotype.space)
    cell_types = [t for t in space.cell_types if getattr(genotype, t)]
    fig = make_subplots(rows=1, cols=len(cell_types), horizontal_spacing=_H_SPACING,
                        subplot_titles=[CELL_TITLES[t] for t in cell_types])
    pos = _node_layout(space)
    x_max = max(x for x, _ in pos.values())
    fig.update_layout(width=_MARGIN["l"] + _MARGIN["r"] + CELL_WIDTH_PX * len(cell_types), height=FIG_HEIGHT_PX,
                      autosize=False, margin=_MARGIN, plot_bgcolor="white", title_text=title, title_font_size=14,
                      legend={"orientation": "h", "y": -0.04, "yanchor": "top", "font": {"size": 11}})
    for col in range(1, len(cell_types) + 1):
        fig.update_xaxes(visible=False, range=[-0.6, x_max + 0.6], fixedrange=True, row=1, col=col)
        fig.update_yaxes(visible=False, range=list(_Y_RANGE), fixedrange=True, row=1, col=col)
    for col, t in enumerate(cell_types, start=1):
        edges, concat = getattr(genotype, t), getattr(genotype, f"{t}_concat")
        xref = "x" if col == 1 else f"x{col}"
        if "out" in pos:
            for j in concat:  # the concatenated cell output (DARTS); NB201's output is its last node
                xs, ys = _curve(pos[j], pos["out"], _bend(space, j, "out", pos, -1.0))
                fig.add_trace(go.Scatter(x=xs.tolist(), y=ys.tolist(), mode="lines", hoverinfo="skip",
                                         line={"color": _COLOR_CONCAT, "dash": "dot", "width": 1}, showlegend=False),
                              row=1, col=col)
        labels = _place_labels(_frame(fig, xref), space, pos, list(edges))
        for op, src, dst in edges:
            xs, ys = _curve(pos[src], pos[dst], _bend(space, src, dst, pos))
            color = _COLOR_FREE if op in PARAMETER_FREE_OPS else _COLOR_PARAM
            fig.add_trace(go.Scatter(x=xs.tolist(), y=ys.tolist(), mode="lines", showlegend=False,
                                     line={"color": color, "width": 2, "dash": "dash" if op == "none" else "solid"},
                                     hovertemplate=f"{op}: {src} -> {dst}<extra></extra>"), row=1, col=col)
            lx, ly = labels[(src, dst)]
            fig.add_annotation(x=lx, y=ly, xref=xref, yref=xref.replace("x", "y"), name=f"edge {t} {src}->{dst}",
                               text=OP_ABBREVIATIONS.get(op, op), showarrow=False, hovertext=f"{op}: {src} -> {dst}",
                               font={"size": LABEL_FONT_PX, "color": color}, bgcolor="rgba(255,255,255,0.9)")
        nodes = list(pos)
        fig.add_trace(go.Scatter(
            x=[pos[n][0] for n in nodes], y=[pos[n][1] for n in nodes], mode="markers+text",
            text=[_node_name(space, n) for n in nodes], textposition="middle center", textfont={"size": 10},
            marker={"size": _NODE_DIAMETER_PX, "color": [_node_color(space, n) for n in nodes],
                    "line": {"color": "#333333", "width": 1.5}},
            hoverinfo="text", showlegend=False), row=1, col=col)
    legend = [("op with parameters", _COLOR_PARAM, "solid"), ("parameter-free op", _COLOR_FREE, "solid")]
    if "out" in pos:
        legend.append(("into the cell output (concat)", _COLOR_CONCAT, "dot"))
    for name, color, dash in legend:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=name, line={"color": color, "dash": dash}))
    used = {op for t in cell_types for op, _, _ in getattr(genotype, t)}
    names = sorted(f"{OP_ABBREVIATIONS.get(op, op)} = {op}" for op in used)
    per_line = 6 if len(cell_types) > 1 else 3
    lines = [" · ".join(names[k:k + per_line]) for k in range(0, len(names), per_line)]
    fig.add_annotation(x=0.0, y=-0.2, xref="paper", yref="paper", xanchor="left", yanchor="top", showarrow=False,
                       align="left", name="op legend", text="ops: " + "<br>".join(lines), font={"size": 11})
    return fig
