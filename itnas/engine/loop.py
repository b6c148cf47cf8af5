"""The one epoch loop that both the search and the final training run on (`run_epochs`).

A `Task` says what one step does (the search: an architecture step on search-val then a weight step on
search-train; the final training: one SGD step with the auxiliary loss); the engine does everything around it:

- the learning rate of every epoch (cosine annealing, `cosine_lr`),
- resume from a full-state checkpoint (task state, history, elapsed seconds, every RNG), written atomically
  after every epoch and refused when it belongs to another run (`identity`),
- running loss / accuracy sums kept on the device (`RunningMetrics`: one host sync per epoch, not per step),
- a divergence guard: the steps flag a non-finite loss, gradient norm or architecture parameter on the device
  (`RunningMetrics.check_finite`); the engine reads the flags a few times per epoch (`CHECKS_PER_EPOCH`), and at
  the epoch's end also checks the statistics and every tensor of the task's state (batch-norm running statistics
  go infinite while the loss stays finite); it stops with `NonFiniteError` (run, epoch, step) before that epoch
  is checkpointed,
- progress callbacks that read the loss on the host at most every `progress_interval_s` seconds,
- `stop_after_epochs` (an interruption on purpose: tests, budgets).

Data-parallel runs (`itnas.distributed.DistContext` of several torchrun processes): every rank runs the same loop on
its shard of each batch (the task's business: DDP for weight gradients, `all_reduce_mean_` for architecture
gradients); the engine sums the epoch's running statistics over the ranks, so every rank records the global ones,
lets rank 0 alone write the checkpoint (with every rank's RNG state) and report progress, and resumes every rank
from the same checkpoint, each with its own RNG state.
"""


from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist

from ..checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from ..distributed import DistContext, all_gather_objects
from ..errors import ItnasError
from .metrics import RunningMetrics
from .optim import cosine_lr

__all__ = ["CHECKS_PER_EPOCH", "EngineResult", "NonFiniteError", "StepCallback", "Task", "run_epochs"]

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int, int, "float | None"], None]

CHECKS_PER_EPOCH = 4
"""How often per epoch (besides its end) the engine reads the divergence flags: each read is one host sync."""


class NonFiniteError(ItnasError, RuntimeError):
    """A run diverged: a loss, gradient norm or parameter became NaN or infinite. The message names the run, the
    quantity, the epoch and step (1-based), and what the checkpoint keeps; `epoch` and `step` are 0-based."""

    def __init__(self, message: str, what: str, epoch: int, step: int):
        super().__init__(message)
        self.what, self.epoch, self.step = what, epoch, step


class Task(Protocol):
    """What the engine trains. `batches(epoch)` is called once per epoch (after `set_lr`) and returns a sized
    iterable; `step(batch, metrics)` runs one step and adds to `metrics` (stream "train" at least; it sets
    `metrics.last_loss` for progress); `epoch_stats(epoch, metrics)` returns the epoch's statistics (in record
    order, evaluations included); `record(rec)` may extend the finished record (alphas, genotype, ...)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def set_lr(self, lr: float) -> None: ...

    def batches(self, epoch: int) -> Iterable: ...

    def step(self, batch: Any, metrics: RunningMetrics) -> None: ...

    def epoch_stats(self, epoch: int, metrics: RunningMetrics) -> dict[str, Any]: ...

    def record(self, rec: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class EngineResult:
    """history: one record per epoch; time_s: wall seconds of all epochs (a resumed run adds up its parts)."""

    history: list[dict] = field(default_factory=list)
    time_s: float = 0.0


class _Progress:
    """Calls on_step at every step, with the loss read on the host at most every `interval_s` seconds (None in
    between), and always at the epoch's last step."""

    def __init__(self, on_step: StepCallback | None, interval_s: float):
        self.on_step, self.interval_s, self._last = on_step, interval_s, -math.inf

    def __call__(self, epoch: int, step: int, n_steps: int, loss: torch.Tensor | None) -> None:
        if self.on_step is None:
            return
        now = time.perf_counter()
        value = None
        if loss is not None and (now - self._last >= self.interval_s or step == n_steps):
            value, self._last = float(loss.item()), now
        self.on_step(epoch, step, n_steps, value)


def run_epochs(task: Task, lr: float, lr_min: float, epochs: int, device: torch.device,
               checkpoint_path: str | Path | None = None, identity: dict | None = None,
               stop_after_epochs: int | None = None, on_step: StepCallback | None = None,
               on_epoch: Callable[[dict], None] | None = None, progress_interval_s: float = 0.25,
               name: str = "run", ctx: DistContext | None = None,
               lr_at: Callable[[int], float] | None = None) -> EngineResult:
    """Run `task` for `epochs` epochs (cosine lr from `lr` to `lr_min`, or `lr_at(epoch)`), resuming from
    `checkpoint_path`.

    Args:
        task: the step function and its state (see `Task`).
        identity: what makes the run (resolved config, data fingerprint); stored in the checkpoint, and a
            checkpoint of another identity is refused.
        stop_after_epochs: stop (as if interrupted) after this many epochs in total.
        on_step(epoch, step, n_steps, loss or None): progress; the loss (nats) is read at most every
            `progress_interval_s` seconds. on_epoch(record): after each epoch's checkpoint.
        name: the run in error messages (e.g. "search (itnas, seed 0)").
        ctx: the process's place in a data-parallel run (default: one process). With several, every rank calls
            this with its own task; statistics are summed over ranks, rank 0 writes the checkpoint and calls
            on_step / on_epoch, and all ranks resume from the checkpoint file (which they must all see).
        lr_at(epoch) -> the learning rate of that epoch (0-based), replacing the cosine schedule (e.g.
            `exponential_lr`); lr and lr_min are then unused.

    Returns:
        EngineResult: records {epoch, lr, **task.epoch_stats, time_s (s), **task.record}.

    Raises:
        CheckpointError: the checkpoint is unreadable or of another identity.
        NonFiniteError: a step flagged a non-finite value (`RunningMetrics.check_finite`), or the epoch's
            statistics or the task's state (weights, buffers, optimizer moments) hold one at the epoch's end; raised
            before the epoch is checkpointed, so the checkpoint keeps the last good epoch.
    """
    identity = identity or {}
    ctx = ctx or DistContext()
    if not ctx.is_main:
        on_step = on_epoch = None
    result = EngineResult()
    start = 0
    resume = checkpoint_path is not None and Path(checkpoint_path).exists()
    if ctx.enabled:  # rank 0 decides (every rank must see its checkpoint file: a shared folder on several nodes)
        resume = all_gather_objects(resume, ctx)[0]
    if resume:
        ck = load_checkpoint(checkpoint_path, identity)
        task.load_state_dict(ck["state"])
        result.history, start, result.time_s = ck["history"], ck["epoch"], ck["time_s"]
        ranks = ck.get("rng_ranks")
        restore_rng(ranks[ctx.rank] if ranks is not None and len(ranks) == ctx.world_size else ck["rng"])
        log.info("resumed from %s at epoch %d", checkpoint_path, start)
    progress = _Progress(on_step, progress_interval_s)
    end = epochs if stop_after_epochs is None else min(epochs, stop_after_epochs)
    for epoch in range(start, end):
        t0 = time.perf_counter()
        epoch_lr = cosine_lr(lr, lr_min, epoch, epochs) if lr_at is None else lr_at(epoch)
        task.set_lr(epoch_lr)
        batches = task.batches(epoch)
        n_steps = len(batches) if isinstance(batches, Sized) else 0
        metrics = RunningMetrics(device)
        check_every = max(1, -(-n_steps // CHECKS_PER_EPOCH)) if n_steps else 64
        for step, batch in enumerate(batches):
            metrics.step = step
            task.step(batch, metrics)
            if (step + 1) % check_every == 0:
                _stop_if_nonfinite(metrics, name, epoch, epochs, n_steps, checkpoint_path, ctx)
            progress(epoch, step + 1, n_steps, metrics.last_loss)
        _stop_if_nonfinite(metrics, name, epoch, epochs, n_steps, checkpoint_path, ctx)
        metrics.all_reduce_(ctx)
        rec = {"epoch": epoch, "lr": epoch_lr, **task.epoch_stats(epoch, metrics)}
        bad = [k for k, v in rec.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise NonFiniteError(f"{name} diverged: non-finite {', '.join(bad)} at the end of epoch {epoch + 1} of "
                                 f"{epochs}; {_kept(checkpoint_path, epoch)}", bad[0], epoch, n_steps)
        rec["time_s"] = time.perf_counter() - t0
        result.time_s += rec["time_s"]
        rec = task.record(rec)
        state = task.state_dict()
        bad_tensor = _first_nonfinite_tensor(state)
        if bad_tensor is not None:
            raise NonFiniteError(f"{name} diverged: non-finite value in {bad_tensor} at the end of epoch {epoch + 1} "
                                 f"of {epochs}; {_kept(checkpoint_path, epoch)}", bad_tensor, epoch, n_steps)
        result.history.append(rec)
        if checkpoint_path is not None:
            rng = all_gather_objects(capture_rng(), ctx)
            if ctx.is_main:
                save_checkpoint(checkpoint_path, {"config": identity, "epoch": epoch + 1, "state": state,
                                                  "history": result.history, "time_s": result.time_s,
                                                  "rng": rng[0], **({"rng_ranks": rng} if ctx.enabled else {})})
            ctx.barrier()
        if on_epoch is not None:
            on_epoch(rec)
    return result


def _kept(checkpoint_path: str | Path | None, epoch: int) -> str:
    """What survives a divergence in `epoch` (0-based): the checkpoint of the epochs before it, if any."""
    advice = "lower the learning rate or the gradient clip"
    if checkpoint_path is None or not epoch:
        return f"nothing was saved; {advice}"
    return f"{checkpoint_path} keeps the last good epoch ({epoch}); {advice}"


def _tensors(obj: Any, prefix: str = "") -> Iterable[tuple[str, torch.Tensor]]:
    """(dotted name, tensor) of every floating-point tensor in a nested state dict (dicts, lists, tuples)."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() or obj.is_complex():
            yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list | tuple):
        for k, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))


def _first_nonfinite_tensor(state: dict[str, Any]) -> str | None:
    """The name of the first tensor of `state` (weights, buffers such as batch-norm running statistics, optimizer
    moments) holding a NaN or an infinity, or None. One host sync (once per epoch, before the checkpoint)."""
    named = list(_tensors(state))
    if not named:
        return None
    flags = torch.stack([t.detach().isfinite().all().to(named[0][1].device) for _, t in named]).tolist()
    return next((name for (name, _), ok in zip(named, flags, strict=True) if not ok), None)


def _stop_if_nonfinite(metrics: RunningMetrics, name: str, epoch: int, epochs: int, n_steps: int,
                       checkpoint_path: str | Path | None, ctx: DistContext) -> None:
    """Read the divergence flags (one host sync); raise NonFiniteError naming the first bad step. With several
    processes the first bad step is agreed over the ranks (an all-reduce MIN), so that every rank stops, not only
    the one whose shard diverged (the others would wait in the next collective forever)."""
    found = metrics.first_nonfinite()
    if ctx.enabled:
        never = torch.iinfo(torch.int64).max
        first = torch.tensor([never if found is None else found[1]], dtype=torch.int64, device=metrics.device)
        dist.all_reduce(first, op=dist.ReduceOp.MIN)
        if int(first) == never:
            return
        if found is None or found[1] != int(first):
            found = ("value on another process", int(first))
    if found is None:
        return
    what, step = found
    of = f" of {n_steps}" if n_steps else ""
    raise NonFiniteError(f"{name} diverged: non-finite {what} at epoch {epoch + 1} of {epochs}, step {step + 1}{of}; "
                         f"{_kept(checkpoint_path, epoch)}", what, epoch, step)
