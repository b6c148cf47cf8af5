"""Evaluator ``train``: the final network of the derived genotype, trained from scratch by the `train` stage
(train/model.pt), tested once on the benchmark's test split (images that search, derivation and training never
see). metrics.json: `TrainMetrics` (top-1 and, for more than 5 classes, top-5 accuracy); evaluate/details.json:
`TrainDetails` (per-class accuracy, confusion matrix).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import model_serializer

from ..contracts import Contract
from . import EvalJob, Evaluator, register_evaluator

__all__ = ["TOP5_MIN_CLASSES", "TrainDetails", "TrainEvaluator", "TrainMetrics", "test_network"]

#: Top-5 accuracy is measured (and reported) for data sets of more than this many classes (with 5 or fewer every
#: prediction is in the top 5).
TOP5_MIN_CLASSES = 5

PAPER_C, PAPER_LAYERS = 36, 20  # DARTS CIFAR final-network size (docs/method.md 4)
#: (C, cells) of the paper final trainings (600 epochs): DARTS CIFAR-10 (36, 20), RobustDARTS CIFAR-100 / SVHN (16, 8)
PAPER_TRAIN = {(36, 20), (16, 8)}
PAPER_TRAIN_EPOCHS = 600


class TrainMetrics(Contract):
    """metrics.json of a trained chain: test accuracy (top-1, %), top-5 accuracy (`test_top5_acc`, %: the true
    class among the 5 largest logits, as ImageNet results are reported; only for more than `TOP5_MIN_CLASSES`
    classes, else left out of the file) and loss (nats) on `test_images` images, parameters (M,
    without the auxiliary head) and multiply-adds (M) of the trained network and of the same genotype at the DARTS
    CIFAR size (C=36, 20 cells, 32x32), collapse count and train time (s).

    evaluation: absent in files written before it was recorded. search_time_s: not written any more (the search
    time is `SearchMetrics.search_time_s`, so that a new search of the same genotype retrains nothing); optional so
    that metrics files written before still validate."""

    evaluation: Literal["train"] = "train"
    test_acc: float
    test_top5_acc: float | None = None
    test_loss: float
    test_images: int
    params_m: float
    madds_m: float
    params_m_c36_l20: float
    madds_m_c36_l20_32px: float
    collapse_count: int
    search_time_s: float | None = None
    train_time_s: float

    @model_serializer(mode="wrap")
    def _without_absent_top5(self, handler: Any) -> dict[str, Any]:
        """The fields, without test_top5_acc when it was not measured (<= 5 classes): such files stay as before."""
        out = handler(self)
        if out.get("test_top5_acc", 0) is None:
            del out["test_top5_acc"]
        return out


class TrainDetails(Contract):
    """evaluate/details.json of a trained chain: the classes, accuracy (%), mean loss (nats), n test images,
    per-class accuracy (%) and the confusion matrix (rows: true class, columns: predicted)."""

    evaluation: Literal["train"] = "train"
    classes: list[str]
    accuracy: float
    loss: float
    n: int
    per_class_accuracy: list[float]
    confusion_matrix: list[list[int]]


@torch.no_grad()
def test_network(model: torch.nn.Module, dataset, batch_size: int = 500, device: torch.device | str = "cpu",
                 num_classes: int | None = None, loader_kw: dict | None = None) -> dict:
    """The test pass: accuracy (top-1, %), top-5 accuracy (%), mean cross-entropy (nats), per-class accuracy (%)
    and confusion matrix (scikit-learn) of a final network on `dataset` (once, in eval mode). `model(x)` may return
    logits or (logits, aux). `loader_kw`: more `itnas.data.make_loader` keywords (workers, pinned memory).
    num_classes: the classes (default: the largest label or prediction + 1).

    Returns a JSON-ready dict {accuracy, top5_accuracy, loss, n, per_class_accuracy, confusion_matrix};
    top5_accuracy: % of images whose label is among the 5 largest logits (ties broken by `torch.topk`), None for
    `TOP5_MIN_CLASSES` classes or fewer (or a model with fewer logits).
    """
    import numpy as np
    from sklearn.metrics import accuracy_score, confusion_matrix

    from ..data import make_loader
    from ..engine import evaluate as evaluate_loop

    device = torch.device(device)
    model.eval()
    top5: list[torch.Tensor] = []  # (B, 5) label indices per batch, in the loader's order (that of r.labels)

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        logits = out[0] if isinstance(out, tuple) else out
        if (num_classes is None or num_classes > TOP5_MIN_CLASSES) and logits.shape[1] > TOP5_MIN_CLASSES:
            top5.append(logits.topk(5, dim=1).indices.cpu())
        return logits

    r = evaluate_loop(forward, make_loader(dataset, batch_size, False, **(loader_kw or {})), device, collect=True)
    y_pred, y_true = r.predictions.numpy(), r.labels.numpy()
    k = num_classes or int(max(y_true.max(), y_pred.max()) + 1)
    cm = confusion_matrix(y_true, y_pred, labels=np.arange(k))
    per_class = (100.0 * cm.diagonal() / np.maximum(cm.sum(1), 1)).tolist()
    top5_acc = None
    if top5 and k > TOP5_MIN_CLASSES:
        hits = int((torch.cat(top5) == r.labels[:, None]).any(1).sum())
        top5_acc = 100.0 * hits / r.n
    return {"accuracy": 100.0 * accuracy_score(y_true, y_pred), "top5_accuracy": top5_acc, "loss": r.loss,
            "n": r.n, "per_class_accuracy": per_class, "confusion_matrix": cm.tolist()}


@register_evaluator
class TrainEvaluator(Evaluator):
    name = "train"
    metrics_model = TrainMetrics
    details_model = TrainDetails

    # ------------------------------------------------------------------------------------------ running
    def evaluate(self, job: EvalJob) -> tuple[TrainMetrics, TrainDetails, str]:
        """Test the network of the train stage (train/model.pt) on the test split, once."""
        from ..data import ImageDataset
        from ..genotype import Genotype
        from ..networks import (
            count_multiply_adds,
            count_parameters,
            create_final_network,
            final_network_from_config,
        )
        run = job.record
        trained, state, history = run.trained_network()
        net = trained.final
        genotype = Genotype.from_dict(net.genotype)
        data = job.load_data()
        model = final_network_from_config(net)
        model.load_state_dict(state)
        model.to(job.device)
        if trained.train.get("channels_last"):  # tested in the memory format it was trained in
            model.to(memory_format=torch.channels_last)
        # streamed files: resized to test_resize px (0: image_size * 256 / 224), centre cropped (itnas.data.samples)
        test_resize = (trained.train.get("data") or {}).get("test_resize", 0)
        test_set = ImageDataset(data.test, data.mean, data.std, image_size=net.image_size, test_resize=test_resize)
        result = test_network(model, test_set, job.batch_size, job.device, len(data.classes), loader_kw=job.loader_kw)
        top5 = result.pop("top5_accuracy")
        paper_net = create_final_network(genotype, PAPER_C, PAPER_LAYERS, 10, False, 3)
        model.cpu()
        metrics = TrainMetrics(
            test_acc=round(result["accuracy"], 2),
            test_top5_acc=None if top5 is None else round(top5, 2),
            test_loss=round(result["loss"], 4),
            test_images=result["n"],
            params_m=round(count_parameters(model) / 1e6, 4),
            madds_m=round(count_multiply_adds(model, (net.in_channels, net.image_size, net.image_size)) / 1e6, 2),
            params_m_c36_l20=round(count_parameters(paper_net) / 1e6, 3),
            madds_m_c36_l20_32px=round(count_multiply_adds(paper_net, (3, 32, 32)) / 1e6, 1),
            collapse_count=genotype.collapse_count,
            train_time_s=round(sum(r["time_s"] for r in history), 1),
        )
        details = TrainDetails(classes=data.classes, **result)
        top5_text = "" if top5 is None else f" (top-5 {metrics.test_top5_acc:.2f}%)"
        line = (f"{run.name}: test accuracy {metrics.test_acc:.2f}%{top5_text} on {result['n']} test images "
                f"({metrics.params_m:.3f} M params)")
        return metrics, details, line

    # ------------------------------------------------------------------------------------------ report
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

    def settings(self, train_cfg: Any) -> dict[str, str]:
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
        if d.test_resize:
            extra += f", test resize {d.test_resize} px"
        return {"final training": (f"C={n.C}, {n.layers} cells, stem stride {n.stem_stride}, {train_cfg.epochs} "
                                   f"epochs, batch {d.batch_size}, images {d.image_size or 'native'} px, auxiliary "
                                   f"{n.auxiliary}, drop-path {train_cfg.regularization.drop_path}, cutout {d.cutout}"
                                   f"{extra}")}
