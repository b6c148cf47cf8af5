"""Final training from scratch (DARTS CIFAR recipe, Liu et al. 2019, section 3.3; docs/method.md 4),
as a step function on the shared epoch loop of `itnas.engine`.

SGD with momentum and a cosine schedule (or, `optimizer.schedule: exponential`, the DARTS ImageNet decay: lr x
gamma after every epoch, `final_lr`), auxiliary loss (weight `regularization.auxiliary_weight`), drop-path
probability growing linearly to `regularization.drop_path` over the epochs, gradient clipping, optional label
smoothing; `amp` (bf16 / fp16 autocast of the forward and loss, fp16 with a loss scaler) and `channels_last` through
`itnas.engine.Precision` (docs/method.md 2.8). No test image is used during training or for any selection: the model
of the last epoch is the one evaluated (its test pass: `itnas.evaluators.train.test_network`). The engine
checkpoints every epoch: an interrupted training resumes where it
stopped.

Data-parallel (`ctx`, several torchrun processes): each rank trains on its shard of every batch (global batch =
ranks x `data.batch_size`) through `DistributedDataParallel` (gradients averaged in backward); at each epoch's end
rank 0's batch-norm statistics are broadcast, so that every rank holds the same network.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import loader_options
from .distributed import DistContext, broadcast_buffers_, wrap_ddp
from .engine import (
    Precision,
    RunningMetrics,
    check_amp_device,
    compile_forward,
    cosine_lr,
    exponential_lr,
    full_batches,
    optimizer_kwargs,
    run_epochs,
)
from .identity import run_identity
from .train_config import TrainConfig

__all__ = ["FinalTrainTask", "cosine_lr", "final_lr", "final_train_step", "make_final_optimizer", "train_final",
           "train_precision"]

Batch = tuple[torch.Tensor, torch.Tensor]


def make_final_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with momentum and weight decay on every parameter of the final network (DARTS CIFAR recipe), on its
    multi-tensor path (`itnas.engine.optimizer_kwargs`)."""
    o = cfg.optimizer
    return torch.optim.SGD(model.parameters(), o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                           **optimizer_kwargs())


def final_lr(cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of `epoch` (0-based) of a final training: `optimizer.schedule` cosine (lr -> lr_min over
    `cfg.epochs`, `cosine_lr`; DARTS CIFAR) or exponential (lr * gamma^epoch, `exponential_lr`; DARTS ImageNet,
    gamma 0.97)."""
    o = cfg.optimizer
    if o.schedule == "exponential":
        return exponential_lr(o.lr, o.gamma, epoch)
    return cosine_lr(o.lr, o.lr_min, epoch, cfg.epochs)


def train_precision(cfg: TrainConfig, device: torch.device | str) -> Precision:
    """The `Precision` of a training config on `device`: amp, channels_last and the CUDA backend policy (tf32,
    deterministic); float32 weights; no device check: see `check_amp_device`."""
    return Precision(device, cfg.amp, "float32", cfg.channels_last, cfg.tf32, cfg.deterministic)


def final_train_step(model: nn.Module, opt: torch.optim.Optimizer, batch: Batch, cfg: TrainConfig, *,
                     metrics: RunningMetrics | None = None, precision: Precision | None = None,
                     net: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One training step of the final network: cross-entropy (+ auxiliary_weight x the auxiliary head's loss when
    the model returns one), backward, gradient-norm clipping, SGD step. batch: (x (B, C, H, W), y (B,)) on the
    model's device. With `precision` (default: plain float32), the forward and the loss run under its autocast and
    the backward and step go through its loss scaler (fp16). With `metrics`, the loss and the gradient norm (before
    clipping) are checked for NaN/inf on the device (no host sync; under fp16 loss scaling only the loss: an inf
    gradient skips the step). `net`: what runs the forward (default `model`; a data-parallel run passes its DDP
    wrapper of `model`). Returns (loss () nats, logits (B, classes)), detached."""
    precision = precision or Precision()
    x, y = batch
    r = cfg.regularization
    with precision.autocast():
        logits, aux = (model if net is None else net)(x)
        loss = F.cross_entropy(logits, y, label_smoothing=r.label_smoothing)
        if aux is not None:
            loss = loss + r.auxiliary_weight * F.cross_entropy(aux, y, label_smoothing=r.label_smoothing)
    opt.zero_grad(set_to_none=True)
    precision.backward(loss)
    precision.unscale_(opt)
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.optimizer.grad_clip, foreach=True)
    if metrics is not None:
        metrics.check_finite("training loss", loss)
        if not precision.skips_overflow:
            metrics.check_finite("gradient norm", grad_norm)
    precision.step(opt)
    return loss.detach(), logits.detach()


class FinalTrainTask:
    """Final training as an `itnas.engine.Task`. model: a `FinalNetwork` on `device` (channels-last when
    `cfg.channels_last`: every input batch (B, C, H, W) is converted too; autocast when `cfg.amp`: `train_precision`).
    train_set yields (x, label, index), or is an `itnas.data.augment.DeviceDataset` (batches augmented on the device).
    ctx: data-parallel context (default one process; module docstring). The loader gets
    `itnas.data.loader_options(cfg.data.num_workers, device)` (nothing extra on a CPU by default)."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, train_set, seed: int, device: torch.device,
                 make_loader: Callable, precision: Precision | None = None, ctx: DistContext | None = None):
        self.model, self.cfg, self.train_set, self.seed, self.device = model, cfg, train_set, seed, device
        self.make_loader, self.ctx = make_loader, ctx or DistContext()
        self.precision = precision if precision is not None else train_precision(cfg, device)
        self.precision.prepare(model)
        self.net = wrap_ddp(model, self.ctx, device)  # the training forward (the model itself for one process)
        if cfg.compile:  # only the callable: the checkpoint saves `model` itself (same state_dict keys)
            self.net = compile_forward(self.net)
        if self.ctx.enabled:  # after DDP copied rank 0's weights: each rank draws its own augmentation, drop-path
            torch.manual_seed(seed * 1_000_003 + self.ctx.rank)
        self.opt = make_final_optimizer(model, cfg)
        self.loader_kw = loader_options(cfg.data.num_workers, device)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), **self.precision.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.precision.load_state_dict(state)

    def set_lr(self, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = lr

    def batches(self, epoch: int):
        self.model.drop_path_prob = self.cfg.regularization.drop_path * epoch / self.cfg.epochs
        self.model.train()
        shard = {"shard": self.ctx} if self.ctx.enabled else {}
        loader = self.make_loader(self.train_set, self.cfg.data.batch_size, True, self.seed, epoch, drop_single=True,
                                  **shard, **self.loader_kw)
        if self.cfg.compile:  # static shapes: the tail batch shorter than batch_size is dropped
            loader = full_batches(loader, len(self.train_set), self.cfg.data.batch_size, self.ctx.world_size)
        return loader

    def step(self, batch, metrics: RunningMetrics) -> None:
        x, y, _ = batch
        x, y = self.precision.batch(x), y.to(self.device, non_blocking=True)
        loss, logits = final_train_step(self.model, self.opt, (x, y), self.cfg, metrics=metrics,
                                        precision=self.precision, net=self.net)
        metrics.add("train", loss.double() * len(y), logits, y)
        metrics.last_loss = loss

    def epoch_stats(self, epoch: int, metrics: RunningMetrics) -> dict[str, Any]:
        broadcast_buffers_(self.model, self.ctx)  # one network on every rank from here to the checkpoint
        return {"drop_path_prob": self.model.drop_path_prob, **metrics.summary("train")}

    def record(self, rec: dict[str, Any]) -> dict[str, Any]:
        return rec


def train_final(model: nn.Module, cfg: TrainConfig, train_set, seed: int = 0, device: torch.device | str = "cpu",
                checkpoint_path: str | Path | None = None, config: dict | None = None,
                stop_after_epochs: int | None = None, make_loader=None,
                on_step: Callable[[int, int, int, float | None], None] | None = None,
                on_epoch: Callable[[dict], None] | None = None, name: str | None = None,
                ctx: DistContext | None = None) -> list[dict]:
    """Train `model` (a `FinalNetwork`, already on `device`) in place; with `cfg.channels_last` the model and every
    input batch are converted to the channels-last memory format (the model stays so afterwards); with `cfg.amp`
    every step's forward and loss run under autocast (`final_train_step`); on CUDA the backend policy (`cfg.tf32`,
    `cfg.deterministic`; `itnas.engine.Precision.configure_backends`) is set when the training starts.

    Args:
        cfg: the training recipe. train_set: yields (x (C, H, W), label, index). seed: data order.
        checkpoint_path: written each epoch; resumed from when present. config: the run's identity
            (`itnas.identity.run_identity` of cfg, the seed, the network, the data and code where known), stored in
            the checkpoint (a checkpoint of another identity is an error); default: cfg's and the seed's alone.
        stop_after_epochs: stop (as if interrupted) after this many epochs in total.
        on_step(epoch, step, n_steps, loss or None) / on_epoch(record): progress callbacks.
        name: the run in error messages (default "final training (seed <seed>)").
        ctx: data-parallel context (torchrun; default one process): every rank calls train_final with the same
            arguments; batches are sharded, gradients averaged by DDP, rank 0 checkpoints.

    Returns:
        history: per epoch {epoch, lr, drop_path_prob, train_loss (nats), train_acc (%), time_s}.

    Raises:
        ConfigError: `cfg.amp` cannot run on `device` (fp16 on a CPU; `itnas.engine.check_amp_device`).
        CheckpointError: unreadable checkpoint or one of another config.
        NonFiniteError: the training loss or gradient norm became NaN/inf (the checkpoint keeps the last good
            epoch).
    """
    if make_loader is None:
        from .data import make_loader
    device = torch.device(device)
    check_amp_device(cfg.amp, device, "train.amp")
    task = FinalTrainTask(model, cfg, train_set, seed, device, make_loader, ctx=ctx)
    task.precision.configure_backends()  # CUDA: TF32 and cuDNN policy of this run (a CPU: nothing)
    config = config if config is not None else run_identity(cfg, seed=seed)
    o = cfg.optimizer
    lr_at = None if o.schedule == "cosine" else (lambda epoch: final_lr(cfg, epoch))  # cosine: the loop's own
    return run_epochs(task, o.lr, o.lr_min, cfg.epochs, device, checkpoint_path, config, stop_after_epochs,
                      on_step, on_epoch, name=name or f"final training (seed {seed})", ctx=task.ctx,
                      lr_at=lr_at).history
