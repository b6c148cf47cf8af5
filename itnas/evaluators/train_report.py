"""The report side of evaluator ``train`` (`itnas.evaluators.train`): the headline (test accuracy, top-5 when
measured), per-method statistics and summary rows, the method x metric and every-run tables (with the published
DARTS-space CIFAR-10 numbers beside a CIFAR-10 DARTS-space benchmark), the test-accuracy figure, and the size and
final-training lines of the report.

Only the report stage imports this module (through `itnas.evaluators.reports`), so editing it reruns the report,
never an evaluate stage.
"""

from __future__ import annotations

import math
from typing import Any

from . import EvaluatorReport, register_report
from .train import TrainEvaluator

__all__ = ["TrainReport"]

#: (C, cells) of the paper final trainings (600 epochs): DARTS CIFAR-10 (36, 20), RobustDARTS CIFAR-100 / SVHN (16, 8)
PAPER_TRAIN = {(36, 20), (16, 8)}
PAPER_TRAIN_EPOCHS = 600


@register_report
class TrainReport(TrainEvaluator, EvaluatorReport):
    @staticmethod
    def test_acc(run: Any) -> float:
        """Test accuracy (%) of a run's trained final network."""
        return float(run.metrics["test_acc"])

    @staticmethod
    def test_top5_acc(run: Any) -> float | None:
        """Top-5 test accuracy (%) of a run's trained final network; None when not measured (<= 5 classes, or a
        metrics file written before top-5 was)."""
        value = run.metrics.get("test_top5_acc")
        return None if value is None else float(value)

    @classmethod
    def has_top5(cls, runs: list) -> bool:
        """Whether any of `runs` has a top-5 accuracy (the report then shows a top-5 column)."""
        return any(cls.test_top5_acc(r) is not None for r in runs)

    def headline(self, run: Any) -> str:
        top5 = self.test_top5_acc(run)
        return f"test acc {self.test_acc(run):.2f} %" + ("" if top5 is None else f", top-5 {top5:.2f} %")

    def method_stats(self, group: list) -> dict[str, Any]:
        """n, min_margin / median_margin (alpha units), test_acc and test_top5_acc (%), params_m (M),
        collapse_count (`Stat`), collapsed (number of collapsed searches)."""
        from ..report.stats import margin_stats, stat

        out = margin_stats(group)
        out["test_acc"] = stat(self.test_acc(r) for r in group)
        out["test_top5_acc"] = stat(self.test_top5_acc(r) for r in group)
        out["params_m"] = stat(r.metrics.get("params_m") for r in group)
        out["collapse_count"] = stat(r.collapse_count for r in group)
        out["collapsed"] = sum(r.collapsed() for r in group)
        return out

    def summary(self, group: list) -> dict[str, Any]:
        """``test_acc``, ``test_top5_acc`` (when measured: more than 5 classes) and ``collapsed`` = {"count",
        "n"}."""
        from ..report.stats import stat

        top5 = {"test_top5_acc": stat(self.test_top5_acc(r) for r in group).rounded()} if self.has_top5(group) else {}
        return {"test_acc": stat(self.test_acc(r) for r in group).rounded(), **top5,
                "collapsed": {"count": sum(r.collapsed() for r in group), "n": len(group)}}

    def tables(self, info: Any, runs: list) -> list:
        """Method x metric, the published DARTS-space CIFAR-10 numbers beside a CIFAR-10 DARTS-space benchmark
        (else a note saying why none), one row per run."""
        from ..derive import NOISE_MARGIN
        from ..report.tables import (
            SELECTION_RULE,
            Table,
            compact_cell,
            fmt,
            margin_text,
            margins,
            method_groups,
            published_table,
            seeds_text,
        )

        top5 = self.has_top5(runs)  # a top-5 column beside the test accuracy (more than 5 classes)
        header = ["method", "seeds", "test acc (%)", *(["top-5 acc (%)"] if top5 else []), "params (M)",
                  "smallest margin", "median margin", "collapse count", "collapsed searches"]
        rows = []
        for method, group in method_groups(runs).items():
            s = self.method_stats(group)
            rows.append([method, seeds_text(group), s["test_acc"].text(),
                         *([s["test_top5_acc"].text()] if top5 else []), s["params_m"].text(".3f"),
                         margin_text(s["min_margin"]), margin_text(s["median_margin"]),
                         s["collapse_count"].text(".1f"), f"{s['collapsed']} of {s['n']}"])
        notes = [
            f"Mean ± sample std over seeds (ddof=1); one seed: the value and n=1. Selection rule: {SELECTION_RULE}.",
            ("Test accuracy of the final network trained from scratch, on test images that search, derivation and "
             "training never see"
             + ("; top-5: the true class among the network's 5 largest outputs" if top5 else "")
             + ". Margins (docs/method.md 2.6; alpha units): for every choice of the last search "
             "epoch's marginal genotype, the gap to the runner-up; the smallest and the median per search, averaged "
             f"over seeds (a choice within float rounding is < {NOISE_MARGIN:g}). Collapse count: parameter-free ops "
             "(skip, pools, none, noise) in the normal cell; a search collapsed when all of them are.")]
        tables = [Table(f"{info.label}: results per method", info.size, header, rows, notes)]
        if info.dataset == "cifar10" and info.space in (None, "darts"):
            tables.append(published_table(info))
        else:
            tables[0].notes.append(f"No published numbers are shown beside {info.label}: the published DARTS-family "
                                   "results are for CIFAR-10 (DARTS space) and NAS-Bench-201 at paper size.")
        header = ["method", "seed", "normal cell", "reduction cell", "smallest / median margin", "params (M)",
                  "collapse count", "search time (s)", "test acc (%)", *(["top-5 acc (%)"] if top5 else [])]
        rows = [[r.method, str(r.seed), compact_cell(r.genotype, "normal"), compact_cell(r.genotype, "reduce"),
                 margins(r.decisiveness), fmt(r.metrics.get("params_m"), ".3f"), str(r.collapse_count),
                 fmt(r.search_time_s, ".1f"), fmt(self.test_acc(r)), *([fmt(self.test_top5_acc(r))] if top5 else [])]
                for r in runs]
        notes = ["Edges are written op(src->dst) (node ids of docs/method.md 2.1); * = a choice within float "
                 "rounding."]
        return [*tables, Table(f"{info.label}: every run", info.size, header, rows, notes, code_columns=(2, 3))]

    def figure(self, runs: list) -> tuple[str, Any]:
        """Test accuracy (%) of every run, and mean ± sample std (ddof=1) per method."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        from ..report.figures import method_colors
        from ..report.stats import group_runs, stat

        colors = method_colors(runs)
        groups = group_runs(runs)
        fig = make_subplots(rows=1, cols=2, column_widths=[0.62, 0.38], horizontal_spacing=0.08,
                            subplot_titles=("every run", "per method: mean ± sample std over seeds"))
        values = []
        for method, color in colors.items():
            group = [r for methods in groups.values() for r in methods.get(method, [])]
            accs = [self.test_acc(r) for r in group]
            fig.add_trace(go.Bar(x=[f"{r.method}-s{r.seed}" for r in group], y=accs, name=method,
                                 marker_color=color, legendgroup=method, text=[f"{a:.2f}" for a in accs],
                                 textposition="outside"), row=1, col=1)
            s = stat(accs)
            label = s.text() + f"<br>n={s.n}"
            fig.add_trace(go.Bar(x=[f"{method}<br>{label}"], y=[s.mean], marker_color=color, showlegend=False,
                                 legendgroup=method,
                                 error_y={"type": "data", "array": [s.std or 0.0], "visible": s.std is not None},
                                 hovertemplate=f"{method}: {label.replace('<br>', ', ')} %<extra></extra>"),
                          row=1, col=2)
            values += accs + [s.mean + sign * (s.std or 0.0) for sign in (-1, 1)]
        lo, hi = min(values), max(values)
        pad = max(1.0, 0.25 * (hi - lo))
        y_lo, y_hi = max(0.0, math.floor(lo - pad)), min(100.0, hi + pad) + 0.5
        title = "test accuracy (%)" + (f" (axis starts at {y_lo:g})" if y_lo > 0 else "")
        for col in (1, 2):
            fig.update_yaxes(range=[y_lo, y_hi], title_text=title if col == 1 else None, row=1, col=col)
        fig.update_layout(height=460, margin={"t": 40, "b": 40}, legend_title_text="method")
        return "test accuracy", fig

    def size_text(self, train_cfg: Any) -> str:
        n, epochs = train_cfg.network, train_cfg.epochs
        if (n.C, n.layers) in PAPER_TRAIN and epochs >= PAPER_TRAIN_EPOCHS:
            return f"training: paper recipe (C={n.C}, {n.layers} cells, {epochs} epochs)"
        return f"training: C={n.C}, {n.layers} cells, {epochs} epochs"

    def settings(self, train_cfg: Any, eval_cfg: Any = None) -> dict[str, str]:
        n, d, o = train_cfg.network, train_cfg.data, train_cfg.optimizer
        extra = ""  # what the CIFAR defaults leave out (the DARTS ImageNet recipe's settings), only when set
        if n.kind != "cifar":
            extra += f", {n.kind} network"
        if o.schedule != "cosine":
            extra += f", lr x {o.gamma:g} per epoch"
        if train_cfg.regularization.label_smoothing:
            extra += f", label smoothing {train_cfg.regularization.label_smoothing:g}"
        if d.color_jitter is not None:
            extra += f", colour jitter {'/'.join(f'{v:g}' for v in d.color_jitter)}"
        if eval_cfg is not None and eval_cfg.test_resize:
            extra += f", test resize {eval_cfg.test_resize} px"
        return {"final training": (f"C={n.C}, {n.layers} cells, stem stride {n.stem_stride}, {train_cfg.epochs} "
                                   f"epochs, batch {d.batch_size}, images {d.image_size or 'native'} px, auxiliary "
                                   f"{n.auxiliary}, drop-path {train_cfg.regularization.drop_path}, cutout {d.cutout}"
                                   f"{extra}")}
