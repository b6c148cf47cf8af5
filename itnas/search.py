"""The bi-level search loop (DARTS, Liu et al. 2019, Algorithm 1; PC-DARTS warm-up, Xu et al. 2020, section 4).

Per step: one architecture step on a search-val batch (first order: grad of L_val at w; second order: the
unrolled gradient of `unrolled_arch_grads`), then one weight step on a search-train batch with the alphas held
constant (computed once under no_grad: the weight step never back-propagates into the architecture).
Architecture steps start after `warmup_epochs`. Every search-val sample is used once per epoch (one iterator per
epoch over one permutation cut into as many batches as search-train has). Weights: SGD with momentum, cosine
to lr_min; architecture: Adam. A checkpoint after every epoch makes
an interrupted search resume where it stopped; a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .config import SearchConfig
from .derive import derive_genotype
from .supernet import SearchModel, create_search_model
from .train import cosine_lr
from .spaces import create_space

__all__ = ["SearchResult", "alpha_entropy", "arch_step", "build_search_model", "even_batches", "run_search",
           "unrolled_arch_grads", "weight_step"]

log = logging.getLogger(__name__)
Batch = tuple[torch.Tensor, torch.Tensor]


def build_search_model(cfg: SearchConfig, num_classes: int, in_channels: int) -> SearchModel:
    """The supernet + architecture of a search config (device: CPU; move it with `.to`)."""
    return create_search_model(create_space(cfg.space), cfg.method, cfg.base, cfg.C, cfg.layers, num_classes,
                               in_channels, cfg.partial_k, cfg.track_running_stats, cfg.alpha_init_scale,
                               cfg.transition_init, cfg.transition_gamma)


def alpha_entropy(alpha: torch.Tensor) -> list[float]:
    """Entropy (nats) of every edge's alpha: (E, K) -> E floats. log(K) = uniform, 0 = one-hot."""
    return (-(alpha * alpha.clamp_min(1e-12).log()).sum(-1)).tolist()


def _grads_or_zeros(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def unrolled_arch_grads(model: SearchModel, train_batch: Batch, val_batch: Batch, xi: float,
                        weight_decay: float = 0.0, momentum_buffers: list[torch.Tensor | None] | None = None,
                        momentum: float = 0.0, eps_scale: float = 0.01) -> list[torch.Tensor]:
    """Second-order architecture gradient (DARTS section 2.3, eq. 7-8), for every architecture parameter.

        w' = w - xi * (momentum * buf + grad_w L_train(w, A) + weight_decay * w)       (the virtual step)
        grad_A = grad_A L_val(w', A) - xi * [grad_A L_train(w+, A) - grad_A L_train(w-, A)] / (2 eps)
        w+- = w +- eps * grad_w' L_val(w', A),  eps = eps_scale / ||grad_w' L_val(w', A)||

    A = all architecture parameters (outer logits, transition and attention logits, betas). Weights without a
    gradient (parameter-free paths, `none` edges) count as zero. Weights are restored on return.

    Args:
        model: the supernet with its architecture (weights and arch parameters are read, weights restored).
        train_batch: (x (B, C, H, W), y (B,)) from search-train. val_batch: the same from search-val.
        xi: learning rate of the virtual step (DARTS: the current weight learning rate).
        weight_decay, momentum, momentum_buffers: the weight optimizer's decay, momentum and per-weight
            momentum buffers (aligned with `model.weight_parameters()`; None = no momentum term).
        eps_scale: the finite-difference step is eps_scale / ||grad_w' L_val|| (DARTS: 0.01).

    Returns:
        one gradient tensor per `model.arch_parameters()` entry.
    """
    weights, arch = model.weight_parameters(), model.arch_parameters()
    (xt, yt), (xv, yv) = train_batch, val_batch
    g_train = _grads_or_zeros(F.cross_entropy(model(xt), yt), weights)
    backup = [w.detach().clone() for w in weights]
    with torch.no_grad():
        for k, (w, g) in enumerate(zip(weights, g_train)):
            step = g + weight_decay * w
            buf = momentum_buffers[k] if momentum_buffers is not None else None
            if buf is not None and momentum:
                step = step + momentum * buf
            w.sub_(xi * step)
    grads = _grads_or_zeros(F.cross_entropy(model(xv), yv), arch + weights)
    d_arch, d_w = grads[: len(arch)], grads[len(arch):]
    norm = torch.sqrt(sum((g * g).sum() for g in d_w))
    eps = eps_scale / norm.clamp_min(1e-12)
    hvp_terms = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for w, b, d in zip(weights, backup, d_w):
                w.copy_(b + sign * eps * d)
        hvp_terms.append(_grads_or_zeros(F.cross_entropy(model(xt), yt), arch))
    with torch.no_grad():
        for w, b in zip(weights, backup):
            w.copy_(b)
    return [da - xi * (gp - gm) / (2 * eps) for da, gp, gm in zip(d_arch, *hvp_terms)]


def arch_step(model: SearchModel, a_opt: torch.optim.Optimizer, train_batch: Batch, val_batch: Batch,
              order: str, xi: float, w_opt: torch.optim.Optimizer | None = None, weight_decay: float = 0.0,
              momentum: float = 0.0) -> torch.Tensor | None:
    """One architecture step (DARTS Algorithm 1, line 1) and its Adam step.

    First order: grad_A L_val(w, A) (backward into the architecture parameters only: no weight gradients are
    computed). Second order: `unrolled_arch_grads` with step size xi (the current weight lr, as DARTS), the
    momentum buffers of `w_opt` and `weight_decay`. Batches: (x (B, C, H, W), y (B,)).

    Returns:
        the val logits (B, classes) of the first-order step (detached), None for second order.
    """
    a_opt.zero_grad(set_to_none=True)
    logits = None
    if order == "second":
        weights = model.weight_parameters()
        bufs = [w_opt.state.get(w, {}).get("momentum_buffer") for w in weights] if w_opt is not None else None
        grads = unrolled_arch_grads(model, train_batch, val_batch, xi, weight_decay, bufs, momentum)
        for p, g in zip(model.arch_parameters(), grads):
            p.grad = g
    else:
        xv, yv = val_batch
        logits = model(xv)
        F.cross_entropy(logits, yv).backward(inputs=model.arch_parameters())
        logits = logits.detach()
    a_opt.step()
    return logits


def weight_step(model: SearchModel, w_opt: torch.optim.Optimizer, train_batch: Batch, grad_clip: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One weight step (DARTS Algorithm 1, line 2) with the alphas held constant (computed once, under no_grad,
    so nothing back-propagates into the architecture). Returns (loss (), logits (B, classes)), detached."""
    x, y = train_batch
    with torch.no_grad():
        state = model.arch()
    w_opt.zero_grad(set_to_none=True)
    logits = model(x, state)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    nn.utils.clip_grad_norm_(model.weight_parameters(), grad_clip)
    w_opt.step()
    return loss.detach(), logits.detach()


def even_batches(n: int, n_batches: int, generator: torch.Generator) -> list[list[int]]:
    """One random permutation of range(n) cut into `n_batches` batches of near-equal size: every index exactly
    once. Used for search-val, so that each val sample is seen once per epoch whatever the split sizes."""
    perm = torch.randperm(n, generator=generator).tolist()
    bounds = [round(k * n / n_batches) for k in range(n_batches + 1)]
    return [perm[bounds[k]:bounds[k + 1]] for k in range(n_batches)]


@dataclass
class SearchResult:
    """model: the trained supernet (on the run's device). history: one record per epoch (see `run_search`).
    search_time_s: wall seconds of all epochs (resumed runs add up their parts)."""

    model: SearchModel
    history: list[dict]
    search_time_s: float


@torch.no_grad()
def _evaluate(model: SearchModel, loader, device) -> tuple[float, float]:
    model.eval()
    state = model.arch()
    loss_sum, correct, n = 0.0, 0, 0
    for x, y, _ in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x, state)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
    model.train()
    return loss_sum / max(n, 1), 100.0 * correct / max(n, 1)


def _epoch_record(model: SearchModel, epoch: int, lr: float, stats: dict, last: bool) -> dict:
    """History record: losses (nats), accuracies (%), alphas, entropies, genotype, collapse count."""
    with torch.no_grad():
        state = model.arch()
        genotype = derive_genotype(model.arch, "marginal")
    rec = {"epoch": epoch, "lr": lr, **stats,
           "alphas": {t: a.cpu().tolist() for t, a in state.alphas.items()},
           "alpha_entropy": {t: alpha_entropy(a) for t, a in state.alphas.items()},
           "edge_weights": None if state.edge_weights is None else {t: w.cpu().tolist()
                                                                     for t, w in state.edge_weights.items()},
           "genotype": genotype.to_dict(), "collapse_count": genotype.collapse_count}
    if last:
        rec["transitions"], rec["attention"] = {}, {}
        for t, cell in model.arch.cells.items():
            if cell.inner_edges:
                T = cell.transitions().cpu()
                rec["transitions"][t] = {f"{cell.space.edges[p]}->{cell.space.edges[e]}": T[k].tolist()
                                         for k, (p, e) in enumerate(cell.pairs)}
                rec["attention"][t] = {str(cell.space.edges[e]): cell.attention(e).cpu().tolist()
                                       for e in cell.inner_edges}
    return rec


def run_search(cfg: SearchConfig, train_set, val_set, num_classes: int, in_channels: int,
               device: torch.device | str = "cpu", checkpoint_path: str | Path | None = None,
               stop_after_epochs: int | None = None, make_loader=None, identity: dict | None = None,
               on_step: Callable[[int, int, int, float], None] | None = None,
               on_epoch: Callable[[dict], None] | None = None) -> SearchResult:
    """Search an architecture.

    Args:
        cfg: search config (stored in the checkpoint; a checkpoint of another config is an error).
        train_set / val_set: search-train / search-val datasets yielding (x (C, H, W), label, index).
        num_classes, in_channels: of the data. device: where to run.
        checkpoint_path: written after every epoch; if it exists, the search resumes from it.
        stop_after_epochs: stop (as if interrupted) after this many epochs in total; for tests and budgets.
        make_loader: `itnas.data.make_loader`-compatible factory (one fresh loader per epoch).
        identity: more of what makes the run (e.g. a data fingerprint), stored with the config in the checkpoint;
            a checkpoint of another config or identity is refused.
        on_step(epoch, step, n_steps, train_loss) / on_epoch(record): progress callbacks.

    Returns:
        SearchResult. History records hold epoch, lr, train/val loss (nats) and accuracy (%), time_s, alphas,
        alpha entropies, edge weights, the epoch's genotype and collapse count; the last also transition
        matrices and attention weights.

    Raises:
        CheckpointError: the checkpoint is unreadable or from another config.
    """
    if make_loader is None:
        from .data import make_loader
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    model = build_search_model(cfg, num_classes, in_channels).to(device)
    w_opt = torch.optim.SGD(model.weight_parameters(), cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    a_opt = torch.optim.Adam(model.arch_parameters(), cfg.arch_lr, betas=cfg.arch_betas,
                             weight_decay=cfg.arch_weight_decay)
    history: list[dict] = []
    start_epoch, elapsed = 0, 0.0
    config = {**cfg.model_dump(), **(identity or {})}
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        ck = load_checkpoint(checkpoint_path, config)
        model.load_state_dict(ck["model"])
        w_opt.load_state_dict(ck["w_opt"])
        a_opt.load_state_dict(ck["a_opt"])
        history, start_epoch, elapsed = ck["history"], ck["epoch"], ck["search_time_s"]
        restore_rng(ck["rng"])
        log.info("resumed search from %s at epoch %d", checkpoint_path, start_epoch)
    end_epoch = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, stop_after_epochs)
    for epoch in range(start_epoch, end_epoch):
        t0 = time.perf_counter()
        lr = cosine_lr(cfg.lr, cfg.lr_min, epoch, cfg.epochs)
        for group in w_opt.param_groups:
            group["lr"] = lr
        train_loader = make_loader(train_set, cfg.batch_size, True, cfg.seed, epoch)
        n_steps = len(train_loader)
        search_arch = epoch >= cfg.warmup_epochs
        val_iter = None
        if search_arch:  # one iterator per epoch: every search-val sample exactly once
            g = torch.Generator().manual_seed((cfg.seed + 7919) * 100_003 + epoch)
            val_iter = iter(DataLoader(val_set, batch_sampler=even_batches(len(val_set), n_steps, g), num_workers=0))
        model.train()
        # running sums stay on the device (float64, exact counts): one host sync per epoch, not per step
        loss_sum, val_loss_sum = (torch.zeros((), dtype=torch.float64, device=device) for _ in range(2))
        correct, val_correct = (torch.zeros((), dtype=torch.int64, device=device) for _ in range(2))
        n, val_n = 0, 0
        for step, (x, y, _) in enumerate(train_loader):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if search_arch:
                xv, yv, _ = next(val_iter)
                xv, yv = xv.to(device, non_blocking=True), yv.to(device, non_blocking=True)
                logits_v = arch_step(model, a_opt, (x, y), (xv, yv), cfg.order, lr, w_opt, cfg.weight_decay,
                                     cfg.momentum)
                if logits_v is not None:
                    val_loss_sum += F.cross_entropy(logits_v.detach(), yv, reduction="sum").double()
                    val_correct += (logits_v.argmax(1) == yv).sum()
                    val_n += len(yv)
            loss, logits = weight_step(model, w_opt, (x, y), cfg.grad_clip)
            loss_sum += loss.detach().double() * len(y)
            correct += (logits.argmax(1) == y).sum()
            n += len(y)
            if on_step is not None:
                on_step(epoch, step + 1, n_steps, loss.item())
        stats = {"train_loss": loss_sum.item() / n, "train_acc": 100.0 * correct.item() / n,
                 "arch_updated": search_arch}
        if val_n:
            stats.update(arch_step_val_loss=val_loss_sum.item() / val_n,
                         arch_step_val_acc=100.0 * val_correct.item() / val_n)
        if cfg.val_every and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs):
            stats["val_loss"], stats["val_acc"] = _evaluate(
                model, make_loader(val_set, max(cfg.batch_size, 256), False), device)
        epoch_s = time.perf_counter() - t0
        elapsed += epoch_s
        rec = _epoch_record(model, epoch, lr, {**stats, "time_s": epoch_s}, last=epoch + 1 == cfg.epochs)
        history.append(rec)
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, {"config": config, "epoch": epoch + 1, "model": model.state_dict(),
                                              "w_opt": w_opt.state_dict(), "a_opt": a_opt.state_dict(),
                                              "history": history, "search_time_s": elapsed, "rng": capture_rng()})
        if on_epoch is not None:
            on_epoch(rec)
    return SearchResult(model, history, elapsed)
