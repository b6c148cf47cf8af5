"""Evaluator ``train``: the final network of the derived genotype, trained from scratch by the `train` stage
(train/model.pt), tested once on the benchmark's test split (images that search, derivation and training never
see). metrics.json: `TrainMetrics` (top-1 and, for more than 5 classes, top-5 accuracy); evaluate/details.json:
`TrainDetails` (per-class accuracy, confusion matrix).

This module is the evaluate stage's side (contracts and the test pass); how the report shows the results is in
`itnas.evaluators.train_report`, which only the report stage imports.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import model_serializer

from ..config import ConfigError
from ..contracts import Contract
from . import EvalJob, Evaluator, register_evaluator

__all__ = ["TOP5_MIN_CLASSES", "TrainDetails", "TrainEvaluator", "TrainMetrics", "test_network"]

#: Top-5 accuracy is measured (and reported) for data sets of more than this many classes (with 5 or fewer every
#: prediction is in the top 5).
TOP5_MIN_CLASSES = 5

PAPER_C, PAPER_LAYERS = 36, 20  # DARTS CIFAR final-network size (docs/method.md 4)


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
        if job.test_resize and job.test_resize < net.image_size:
            raise ConfigError(f"evaluate.test_resize={job.test_resize} must be >= the image size of {run.name}'s "
                              f"trained network ({net.image_size} px): the test images are resized to test_resize "
                              f"px, then centre cropped to the image size (0 = image size * 256 / 224)")
        genotype = Genotype.from_dict(net.genotype)
        data = job.load_data()
        model = final_network_from_config(net)
        model.load_state_dict(state)
        model.to(job.device)
        if trained.train.get("channels_last"):  # tested in the memory format it was trained in
            model.to(memory_format=torch.channels_last)
        # streamed files: resized to test_resize px (0: image_size * 256 / 224), centre cropped (itnas.data.samples)
        test_set = ImageDataset(data.test, data.mean, data.std, image_size=net.image_size,
                                test_resize=job.test_resize)
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
