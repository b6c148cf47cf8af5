"""The bi-level search (DARTS, Liu et al. 2019, Algorithm 1; PC-DARTS warm-up, Xu et al. 2020, section 4), as a
step function on the shared epoch loop of `itnas.engine`.

Per step (`SearchTask.step`): one architecture step on a search-val batch (first order: grad of L_val at w; second
order: the unrolled gradient of `itnas.unrolled.unrolled_arch_grads`), then one weight step on a search-train batch
with the alphas held constant (computed once under no_grad: the weight step never back-propagates into the
architecture). Precision (`cfg.precision`, `itnas.engine.Precision`; dtype auto resolved for the device: float64 on
a CPU, float32 on a GPU): the weight step's forward and loss run under autocast when `amp` is on; the alphas are
computed outside it and the architecture step (first and second order) never autocasts, so the architecture
parameters, their gradients and Adam state stay float32
(docs/method.md 2.8). Architecture steps start after `schedule.warmup_epochs`. Every search-val sample is used once per
epoch (one iterator per epoch over one permutation cut into as many batches as search-train has). Weights: SGD
with momentum, cosine to lr_min; architecture: Adam. The engine checkpoints every epoch: an interrupted search
resumes where it stopped and equals an uninterrupted one.

Data-parallel (`ctx`, several torchrun processes; docs/method.md 2.9): each rank takes its shard of every search-train
and search-val batch (global batch = ranks x `data.batch_size`); the weight step runs the supernet's network through
`DistributedDataParallel` (weight gradients averaged in backward); the architecture step runs on the plain model and
averages the architecture gradients with `all_reduce_mean_` before Adam's step (second order: the mean of the ranks'
unrolled gradients, each on its own shards). Weights, architecture parameters and both optimizers' states thus stay
identical on every rank; at each epoch's end rank 0's batch-norm statistics are broadcast, so that search-val
evaluation, the record and the checkpoint are the same everywhere.

Sampling methods (gdas, drnas; docs/method.md 2.12): the task owns an `itnas.samplers.ArchSampler` (a
`torch.Generator` on the device, seeded from the run's seed, its state saved in every checkpoint: a resumed search
draws what the uninterrupted one would), set as `model.sampler`: the architecture step and the weight step each draw
their architecture from it (`SearchModel.arch_state`); gdas's temperature is set at each epoch's start
(`gumbel_tau`); drnas's architecture loss adds `Architecture.regularizer()`. The search-val evaluation uses
`Architecture.eval_state()` (gdas: the argmax op of every edge; drnas: the Dirichlet mean).

Compiled (`cfg.compile`): the weight step's forward runs through torch.compile (`itnas.engine.compile_forward`; the
model, its checkpoint and the architecture step stay eager) with static shapes: full search-train batches only and
search-val batches of one size (`even_batches(equal=True)`), so a few search-val samples wait for another epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .config import SearchConfig, resolve_dtype, resolve_search_config
from .data import DeviceDataset, loader_options
from .data.shards import shard_indices
from .distributed import DistContext, all_reduce_mean_, broadcast_, broadcast_buffers_, wrap_ddp
from .engine import (
    Precision,
    RunningMetrics,
    check_amp_device,
    compile_forward,
    evaluate,
    full_batches,
    optimizer_kwargs,
    run_epochs,
)
from .identity import run_identity
from .records import epoch_arch_record, transition_records
from .samplers import ArchSampler, gumbel_tau
from .spaces import create_space
from .supernet import SearchModel, create_search_model
from .unrolled import Batch, grads_or_zeros, unrolled_arch_grads

__all__ = ["SearchResult", "SearchTask", "arch_step", "build_search_model", "even_batches",
           "make_search_optimizers", "run_search", "search_precision", "weight_step"]


def build_search_model(cfg: SearchConfig, num_classes: int, in_channels: int) -> SearchModel:
    """The supernet + architecture of a search config (device: CPU; move it with `.to`), in the config's dtype
    (`precision.dtype`: a float64 search's supernet is rebuilt in float64, so that loading it loses nothing). The
    memory format is the run's business (`search_precision(cfg, device).prepare`).

    Raises:
        KeyError: unknown method or space. ValueError: C not divisible by partial_k on the pcdarts base, or
            `precision.dtype` "auto" (it depends on the device: resolve the config first, `resolve_search_config`).
    """
    if cfg.precision.dtype == "auto":
        raise ValueError("build_search_model: precision.dtype 'auto' depends on the device; resolve the config "
                         "first (itnas.config.resolve_search_config(cfg, device))")
    s, a = cfg.supernet, cfg.architecture
    model = create_search_model(create_space(s.space), cfg.method, base=cfg.base, C=s.C, layers=s.layers,
                                num_classes=num_classes, in_channels=in_channels, partial_k=s.partial_k,
                                track_running_stats=s.track_running_stats, alpha_init_scale=a.alpha_init_scale,
                                transition_init=a.transition_init, transition_gamma=a.transition_gamma,
                                dirichlet_kl=a.dirichlet_kl, dirichlet_anchor=a.dirichlet_anchor)
    if cfg.precision.dtype == "float64":
        model.to(dtype=torch.float64)  # initialised in float32 (the same values as a float32 search), then widened
    return model


def search_precision(cfg: SearchConfig, device: torch.device | str) -> Precision:
    """The `Precision` of a search config on `device` (dtype auto resolved for the device, `resolve_dtype`; no device
    check: see `check_amp_device`)."""
    p = cfg.precision
    dtype = resolve_dtype(p.dtype, p.amp, device) if p.dtype == "auto" else p.dtype
    return Precision(device, p.amp, dtype, p.channels_last, p.tf32, p.deterministic)


def make_search_optimizers(model: SearchModel, cfg: SearchConfig) -> tuple[torch.optim.SGD, torch.optim.Adam]:
    """(weight optimizer: SGD with momentum on the network weights, arch optimizer: Adam on every architecture
    parameter) of DARTS Algorithm 1; the two parameter sets never overlap. Both take their multi-tensor path
    (`optimizer_kwargs`): a handful of kernels per step instead of a few per parameter."""
    w, a = cfg.weight_optimizer, cfg.arch_optimizer
    weights = model.weight_parameters()
    w_opt = torch.optim.SGD(weights, w.lr, momentum=w.momentum, weight_decay=w.weight_decay,
                            **optimizer_kwargs())
    a_opt = torch.optim.Adam(model.arch_parameters(), a.lr, betas=a.betas, weight_decay=a.weight_decay,
                             foreach=True)
    return w_opt, a_opt


def arch_step(model: SearchModel, a_opt: torch.optim.Optimizer, train_batch: Batch, val_batch: Batch,
              order: str, xi: float, w_opt: torch.optim.Optimizer | None = None, weight_decay: float = 0.0,
              momentum: float = 0.0, ctx: DistContext | None = None) -> torch.Tensor | None:
    """One architecture step (DARTS Algorithm 1, line 1) and its Adam step.

    First order: grad_A L_val(w, A) (backward into the architecture parameters only: no weight gradients are
    computed). Second order: `unrolled_arch_grads` with step size xi (the current weight lr, as DARTS), the
    momentum buffers of `w_opt` and `weight_decay`. Batches: (x (B, C, H, W), y (B,)). Never under autocast (the
    search's amp covers the weight step only): architecture gradients, first or second order, are computed in the
    model's dtype (float32 or float64), so they need no loss scaler, and the finite differences of the second order
    are not drowned by bf16/fp16 rounding. With `ctx` of several processes, the architecture gradients are averaged
    over the ranks (`all_reduce_mean_`) before the Adam step, so every rank takes the same step. A regulariser of
    the architecture (`Architecture.regularizer()`, drnas) is added to the loss (second order: its gradient to
    the unrolled one). A sampling method with `model.sampler` set draws its architecture in every forward.

    Returns:
        the val logits (B, classes) of the first-order step (detached), None for second order.
    """
    a_opt.zero_grad(set_to_none=True)
    logits = None
    if order == "second":
        weights = model.weight_parameters()
        bufs = [w_opt.state.get(w, {}).get("momentum_buffer") for w in weights] if w_opt is not None else None
        grads = unrolled_arch_grads(model, train_batch, val_batch, xi, weight_decay, bufs, momentum)
        reg = model.arch.regularizer()
        if reg is not None:
            grads = [g + r for g, r in zip(grads, grads_or_zeros(reg, model.arch_parameters()), strict=True)]
        for p, g in zip(model.arch_parameters(), grads, strict=True):
            p.grad = g
    else:
        xv, yv = val_batch
        logits = model(xv)
        loss = F.cross_entropy(logits, yv)
        reg = model.arch.regularizer()
        (loss if reg is None else loss + reg).backward(inputs=model.arch_parameters())
        logits = logits.detach()
    if ctx is not None and ctx.enabled:  # one process: not even the parameter list is built (the hot path)
        all_reduce_mean_([p.grad for p in model.arch_parameters()], ctx)
    a_opt.step()
    return logits


def weight_step(model: SearchModel, w_opt: torch.optim.Optimizer, train_batch: Batch, grad_clip: float, *,
                metrics: RunningMetrics | None = None, precision: Precision | None = None,
                net: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One weight step (DARTS Algorithm 1, line 2) with the alphas held constant (computed once, under no_grad and
    outside autocast, in the architecture's dtype: nothing back-propagates into the architecture; drawn from
    `model.sampler` for a sampling method, `SearchModel.arch_state`). With `precision`
    (default: plain, in the model's dtype), the forward and the loss run under its autocast and the backward and the
    SGD step go through its loss scaler (fp16). With `metrics`, the loss and the gradient norm (before clipping) are
    checked for NaN/inf on the device (`RunningMetrics.check_finite`, no host sync); under fp16 loss scaling an
    inf/NaN gradient only skips the step (the scaler's business), so only the loss is checked.
    `net`: what runs the network's forward (default `model.net`; a data-parallel run passes its DDP wrapper of
    `model.net`, which averages the weight gradients over the ranks in backward).
    Batches: x (B, C, H, W) in the model's dtype and device, y (B,). Returns (loss (), logits (B, classes)),
    detached (the loss float32 under amp, the logits in the autocast type)."""
    precision = precision or Precision()
    x, y = train_batch
    with torch.no_grad():
        state = model.arch_state()  # a sampling method draws here (gdas: only the sampled ops are computed)
    w_opt.zero_grad(set_to_none=True)
    with precision.autocast():
        logits = (model.net if net is None else net)(x, state)
        loss = F.cross_entropy(logits, y)
    precision.backward(loss)
    precision.unscale_(w_opt)
    grad_norm = nn.utils.clip_grad_norm_(model.weight_parameters(), grad_clip, foreach=True)
    if metrics is not None:
        metrics.check_finite("training loss", loss)
        if not precision.skips_overflow:
            metrics.check_finite("weight gradient norm", grad_norm)
    precision.step(w_opt)
    return loss.detach(), logits.detach()


def even_batches(n: int, n_batches: int, generator: torch.Generator, equal: bool = False,
                 multiple: int = 1) -> list[list[int]]:
    """One random permutation of range(n) cut into `n_batches` batches of near-equal size: every index exactly
    once. Used for search-val, so that each val sample is seen once per epoch whatever the split sizes.

    equal (compiled searches: static shapes): every batch has exactly m = floor(n / n_batches) samples, rounded down
    to a multiple of `multiple` (the process count: equal shards); the permutation's last n - n_batches * m indices
    are left out (a different few each epoch). Raises ValueError when m is 0."""
    perm = torch.randperm(n, generator=generator).tolist()
    if equal:
        m = n // n_batches // multiple * multiple
        if not m:
            raise ValueError(f"{n} search-val samples cannot make {n_batches} equal batches of a multiple of "
                             f"{multiple} samples (a compiled search): more search-val samples or compile off")
        return [perm[k * m:(k + 1) * m] for k in range(n_batches)]
    bounds = [round(k * n / n_batches) for k in range(n_batches + 1)]
    return [perm[bounds[k]:bounds[k + 1]] for k in range(n_batches)]


class SearchTask:
    """The search as an `itnas.engine.Task`: the model, both optimizers and the data of one search.

    Args:
        cfg: the search config. model: the supernet (on `device`). train_set / val_set: search-train /
        search-val datasets yielding (x (C, H, W), label, index), or `itnas.data.augment.DeviceDataset`s (batches made
        on the device). make_loader: `itnas.data.make_loader`-compatible (with several processes it is called with
        `shard=ctx`; on CUDA, or with `data.num_workers` set, with `itnas.data.loader_options`). ctx: the
        data-parallel context (default: one process; see the module docstring).
    """

    def __init__(self, cfg: SearchConfig, model: SearchModel, train_set, val_set, device: torch.device,
                 make_loader: Callable, precision: Precision | None = None, ctx: DistContext | None = None):
        self.cfg, self.model, self.device, self.make_loader = cfg, model, device, make_loader
        self.train_set, self.val_set = train_set, val_set
        self.ctx = ctx or DistContext()
        self.precision = precision if precision is not None else search_precision(cfg, device)
        self.precision.prepare(model)  # dtype and memory format, before the optimizers see the parameters
        broadcast_(model.arch_parameters(), self.ctx)  # rank 0's architecture everywhere (DDP: rank 0's weights)
        self.net = wrap_ddp(model.net, self.ctx, device)  # the weight step's forward (model.net for one process)
        if cfg.compile:  # only the callable: the model, its state_dict and the architecture step stay eager
            self.net = compile_forward(self.net)
        self.w_opt, self.a_opt = make_search_optimizers(model, cfg)
        self.lr, self.search_arch, self.val_iter = cfg.weight_optimizer.lr, False, None
        if model.arch.spec.sampler is not None:  # gdas, drnas: the search owns the generator of every draw
            generator = torch.Generator(device).manual_seed((cfg.seed + 104_729) * 1_000_003)
            model.sampler = ArchSampler(generator, cfg.architecture.tau_max)
        self.loader_kw = loader_options(cfg.data.num_workers, device)  # {} on a CPU by default

    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "w_opt": self.w_opt.state_dict(), "a_opt": self.a_opt.state_dict()}
        if self.model.sampler is not None:  # the sampler's generator: a resumed search draws the same architectures
            state["sampler"] = self.model.sampler.generator.get_state()
        return {**state, **self.precision.state_dict()}  # + the fp16 loss scaler's state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.w_opt.load_state_dict(state["w_opt"])
        self.a_opt.load_state_dict(state["a_opt"])
        if self.model.sampler is not None:
            self.model.sampler.generator.set_state(state["sampler"])
        self.precision.load_state_dict(state)

    def set_lr(self, lr: float) -> None:
        self.lr = lr
        for group in self.w_opt.param_groups:
            group["lr"] = lr

    def batches(self, epoch: int):
        cfg = self.cfg
        shard = {"shard": self.ctx} if self.ctx.enabled else {}
        loader = self.make_loader(self.train_set, cfg.data.batch_size, True, cfg.seed, epoch, drop_single=True,
                                  **shard, **self.loader_kw)
        if cfg.compile:  # static shapes: full search-train batches only
            loader = full_batches(loader, len(self.train_set), cfg.data.batch_size, self.ctx.world_size)
        self.search_arch = epoch >= cfg.schedule.warmup_epochs
        if self.model.sampler is not None:  # gdas's temperature of this epoch (drnas ignores it)
            a = cfg.architecture
            self.model.sampler.tau = gumbel_tau(epoch, cfg.schedule.epochs, a.tau_max, a.tau_min)
        self.val_iter = None
        if self.search_arch:  # one iterator per epoch: every search-val sample exactly once (over all ranks)
            g = torch.Generator().manual_seed((cfg.seed + 7919) * 100_003 + epoch)
            val_batches = even_batches(len(self.val_set), len(loader), g, cfg.compile, self.ctx.world_size)
            if self.ctx.enabled:
                val_batches = [shard_indices(b, self.ctx) for b in val_batches]
            if isinstance(self.val_set, DeviceDataset):
                self.val_iter = iter(self.val_set.batches(val_batches))
            else:
                self.val_iter = iter(DataLoader(self.val_set, batch_sampler=val_batches,
                                                **({"num_workers": 0} | self.loader_kw)))
        self.model.train()
        return loader

    def step(self, batch, metrics: RunningMetrics) -> None:
        cfg, dev, p = self.cfg, self.device, self.precision
        x, y, _ = batch
        x, y = p.batch(x), y.to(dev, non_blocking=True)  # x in the run's dtype and memory format
        if self.search_arch:
            xv, yv, _ = next(self.val_iter)
            xv, yv = p.batch(xv), yv.to(dev, non_blocking=True)
            w = cfg.weight_optimizer
            logits_v = arch_step(self.model, self.a_opt, (x, y), (xv, yv), cfg.arch_optimizer.order, self.lr,
                                 self.w_opt, w.weight_decay, w.momentum, self.ctx)
            metrics.check_finite("architecture parameter", *self.model.arch_parameters())
            if logits_v is not None:
                metrics.add("arch_step_val", F.cross_entropy(logits_v, yv, reduction="sum"), logits_v, yv)
        loss, logits = weight_step(self.model, self.w_opt, (x, y), cfg.weight_optimizer.grad_clip, metrics=metrics,
                                   precision=p, net=self.net)
        metrics.add("train", loss.double() * len(y), logits, y)
        metrics.last_loss = loss

    def epoch_stats(self, epoch: int, metrics: RunningMetrics) -> dict[str, Any]:
        broadcast_buffers_(self.model, self.ctx)  # one model on every rank from here to the checkpoint
        stats = {**metrics.summary("train"), "arch_updated": self.search_arch, **metrics.summary("arch_step_val")}
        s = self.cfg.schedule
        if s.val_every and ((epoch + 1) % s.val_every == 0 or epoch + 1 == s.epochs):
            self.model.eval()
            with torch.no_grad():
                state = self.model.arch.eval_state()  # arch() but for gdas (its argmax ops)
            ctx = self.ctx  # several processes: rank r evaluates samples r, r + N, ...; the sums are all-reduced
            share = {"sampler": range(ctx.rank, len(self.val_set), ctx.world_size)} if ctx.enabled else {}
            loader = self.make_loader(self.val_set, max(self.cfg.data.batch_size, 256), False, **share,
                                      **self.loader_kw)
            r = evaluate(lambda x: self.model(self.precision.batch(x), state), loader, self.device,
                         ctx=ctx)  # no autocast
            self.model.train()
            stats["val_loss"], stats["val_acc"] = r.loss, r.accuracy
        return stats

    def record(self, rec: dict[str, Any]) -> dict[str, Any]:
        rec.update(epoch_arch_record(self.model))
        if self.model.arch.spec.sampler == "gumbel":
            rec["tau"] = self.model.sampler.tau
        if rec["epoch"] + 1 == self.cfg.schedule.epochs:
            rec["transitions"], rec["attention"] = transition_records(self.model.arch)
        return rec


@dataclass
class SearchResult:
    """model: the trained supernet (on the run's device). history: one record per epoch (see `run_search`).
    search_time_s: wall seconds of all epochs (resumed runs add up their parts)."""

    model: SearchModel
    history: list[dict]
    search_time_s: float


def run_search(cfg: SearchConfig, train_set, val_set, num_classes: int, in_channels: int,
               device: torch.device | str = "cpu", checkpoint_path: str | Path | None = None,
               stop_after_epochs: int | None = None, make_loader=None, identity: dict | None = None,
               on_step: Callable[[int, int, int, float | None], None] | None = None,
               on_epoch: Callable[[dict], None] | None = None, name: str | None = None,
               ctx: DistContext | None = None) -> SearchResult:
    """Search an architecture.

    Args:
        cfg: search config, resolved for `device` first (`resolve_search_config`: dtype auto -> float64 on a CPU,
            float32 on a GPU; an explicit float64 on a GPU warns); the resolved config is stored in the checkpoint
            (a checkpoint of another config is an error).
        train_set / val_set: search-train / search-val datasets yielding (x (C, H, W), label, index).
        num_classes, in_channels: of the data. device: where to run.
        checkpoint_path: written after every epoch; if it exists, the search resumes from it.
        stop_after_epochs: stop (as if interrupted) after this many epochs in total; for tests and budgets.
        make_loader: `itnas.data.make_loader`-compatible factory (one fresh loader per epoch).
        identity: the run's identity (`itnas.identity.run_identity` of the config resolved for `device`, with the
            data fingerprint, data-parallel layout and code where known), stored in the checkpoint: a checkpoint of
            another identity is refused. Default: the resolved config's alone.
        on_step(epoch, step, n_steps, train_loss or None) / on_epoch(record): progress callbacks (the loss is
            read on the host a few times per second at most).
        name: the run in error messages (default "search (<method>, seed <seed>)").
        ctx: data-parallel context (torchrun; default one process): every rank calls run_search with the same
            arguments; batches are sharded, gradients averaged, rank 0 checkpoints (module docstring).

    Returns:
        SearchResult. History records hold epoch, lr, train/val loss (nats) and accuracy (%), time_s, alphas,
        alpha entropies, edge weights, the epoch's genotype and collapse count; the last also the transition
        matrices and attention weights (`itnas.records.transition_records`).

    Raises:
        ConfigError: `precision.amp` cannot run on `device` (fp16 on a CPU; `itnas.engine.check_amp_device`).
        CheckpointError: the checkpoint is unreadable or from another config.
        NonFiniteError: a training loss, weight gradient norm or architecture parameter became NaN/inf (the
            checkpoint keeps the last good epoch).
    """
    if make_loader is None:
        from .data import make_loader
    device = torch.device(device)
    cfg = resolve_search_config(cfg, device)
    check_amp_device(cfg.precision.amp, device, "search.precision.amp")
    if identity is None:
        identity = run_identity(cfg)
    elif identity.get("config") != cfg.model_dump(mode="json"):
        raise ValueError("run_search: identity['config'] is not the search config resolved for the device")
    torch.manual_seed(cfg.seed)
    model = build_search_model(cfg, num_classes, in_channels).to(device)
    task = SearchTask(cfg, model, train_set, val_set, device, make_loader, ctx=ctx)
    task.precision.configure_backends()  # CUDA: TF32 and cuDNN policy of this run (a CPU: nothing)
    w = cfg.weight_optimizer
    result = run_epochs(task, w.lr, w.lr_min, cfg.schedule.epochs, device, checkpoint_path,
                        identity, stop_after_epochs, on_step, on_epoch,
                        name=name or f"search ({cfg.method}, seed {cfg.seed})", ctx=task.ctx)
    return SearchResult(model, result.history, result.time_s)
