"""Running statistics kept on the device, and the one evaluation loop.

`RunningMetrics`: per-stream loss / accuracy sums on the device (one host sync per epoch, not per step), summed over
the ranks of a data-parallel run, and the divergence flags the steps set (`check_finite`). `evaluate`: the one
evaluation loop (search-val accuracy during the search, test accuracy of the final network).
"""


from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..distributed import DistContext, all_reduce_sum_

__all__ = ["EvalResult", "RunningMetrics", "evaluate"]


class RunningMetrics:
    """Per-stream running sums on the device: loss (float64, nats x samples), correct predictions (int64) and the
    sample count (host int). `summary()` is a host sync: `{stream}_loss` (nats) and `{stream}_acc` (%).

    Divergence flags: `check_finite(what, *tensors)` records on the device, without a host sync, the first step
    (`step`, set by the engine before each step) at which one of the tensors held a NaN or an infinity;
    `first_nonfinite()` reads the flags (one host sync)."""

    def __init__(self, device: torch.device):
        self.device = device
        self._loss: dict[str, torch.Tensor] = {}
        self._correct: dict[str, torch.Tensor] = {}
        self._n: dict[str, int] = {}
        self._first_bad: dict[str, torch.Tensor] = {}  # what -> () int64 on the device: first bad step, -1 = none
        self.last_loss: torch.Tensor | None = None
        self.step = 0

    def add(self, stream: str, loss_sum: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Add one batch: loss_sum () summed over the batch, logits (B, classes), y (B,)."""
        self.ensure(stream)
        self._loss[stream] += loss_sum.double()
        self._correct[stream] += (logits.argmax(1) == y).sum()
        self._n[stream] += len(y)

    def check_finite(self, what: str, *values: torch.Tensor) -> None:
        """Flag the current step when any element of `values` (tensors of any shape, on the device) is NaN or
        infinite. A few small device ops, no host sync; the first flagged step per `what` is kept."""
        finite = [v.detach().isfinite().all() for v in values]
        ok = finite[0] if len(finite) == 1 else torch.stack(finite).all()
        first = self._first_bad.get(what)
        if first is None:
            first = torch.full((), -1, dtype=torch.int64, device=ok.device)
        self._first_bad[what] = torch.where(ok | (first >= 0), first, self.step)

    def first_nonfinite(self) -> tuple[str, int] | None:
        """(what, step) of the earliest flagged step (ties: the first `what` checked), or None. One host sync."""
        if not self._first_bad:
            return None
        steps = torch.stack([t.to(self.device) for t in self._first_bad.values()]).tolist()
        bad = [(s, k, what) for k, (what, s) in enumerate(zip(self._first_bad, steps, strict=True)) if s >= 0]
        if not bad:
            return None
        s, _, what = min(bad)
        return what, s

    def ensure(self, stream: str) -> None:
        """Create `stream` with zero sums if it does not exist (so that every rank all-reduces the same streams,
        also a rank that saw no sample of it)."""
        if stream not in self._loss:
            self._loss[stream] = torch.zeros((), dtype=torch.float64, device=self.device)
            self._correct[stream] = torch.zeros((), dtype=torch.int64, device=self.device)
            self._n[stream] = 0

    def all_reduce_(self, ctx: DistContext) -> None:
        """Sum every stream's loss, correct count and sample count over the ranks (in place; one all-reduce of a
        float64 (3,) tensor per stream, exact for counts below 2^53; no-op for one process). Every rank must have
        the same streams (`ensure`)."""
        if not ctx.enabled:
            return
        for stream in sorted(self._loss):
            packed = torch.stack([self._loss[stream], self._correct[stream].double(),
                                  torch.tensor(float(self._n[stream]), dtype=torch.float64, device=self.device)])
            all_reduce_sum_([packed], ctx)
            self._loss[stream] = packed[0].clone()
            self._correct[stream] = packed[1].round().long()
            self._n[stream] = int(packed[2].item())

    def count(self, stream: str) -> int:
        """Samples seen by `stream` (0 when it saw none)."""
        return self._n.get(stream, 0)

    def summary(self, stream: str) -> dict[str, float]:
        """{stream_loss: mean loss (nats), stream_acc: accuracy (%)}; empty when the stream saw no sample."""
        n = self._n.get(stream, 0)
        if not n:
            return {}
        return {f"{stream}_loss": self._loss[stream].item() / n,
                f"{stream}_acc": 100.0 * self._correct[stream].item() / n}


@dataclass
class EvalResult:
    """loss: mean cross-entropy (nats); accuracy (%); n: samples; predictions / labels (N,) int64 on the CPU
    when collected, else None."""

    loss: float
    accuracy: float
    n: int
    predictions: torch.Tensor | None = None
    labels: torch.Tensor | None = None


@torch.no_grad()
def evaluate(forward: Callable[[torch.Tensor], torch.Tensor], loader: Iterable, device: torch.device,
             collect: bool = False, ctx: DistContext | None = None) -> EvalResult:
    """The one evaluation loop: `forward(x (B, C, H, W)) -> logits (B, classes)` over `loader` batches
    (x, y, index). The caller sets eval mode. Sums stay on the device (one host sync at the end). With `ctx` of
    several processes, each rank's loader holds its share of the data and the sums are added over the ranks
    (`RunningMetrics.all_reduce_`): every rank gets the result over the whole data.

    Raises:
        ValueError: the loader yields no sample, or `collect` with several processes (predictions stay per rank).
    """
    ctx = ctx or DistContext()
    if collect and ctx.enabled:
        raise ValueError("evaluate: collect=True needs one process (evaluate on rank 0)")
    metrics = RunningMetrics(device)
    metrics.ensure("eval")  # a rank whose share is empty still takes part in the all-reduce
    preds, labels = [], []
    for x, y, _ in loader:
        x, y = x.to(device), y.to(device)
        logits = forward(x)
        metrics.add("eval", F.cross_entropy(logits, y, reduction="sum"), logits, y)
        if collect:
            preds.append(logits.argmax(1).cpu())
            labels.append(y.cpu())
    metrics.all_reduce_(ctx)
    n = metrics.count("eval")
    if not n:
        raise ValueError("evaluate: the loader yielded no sample")
    s = metrics.summary("eval")
    return EvalResult(s["eval_loss"], s["eval_acc"], n, torch.cat(preds) if collect else None,
                      torch.cat(labels) if collect else None)
