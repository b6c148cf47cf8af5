"""The second-order (unrolled) architecture gradient of DARTS (Liu et al. 2019, section 2.3, eq. 7-8), used by the
search's architecture step when `arch_optimizer.order` is "second" (`itnas.search.arch_step`).

A sampling method (gdas, drnas; docs/method.md 2.12) draws its architecture in every forward of the model, so each of
the four forwards below draws its own sample from `model.sampler` (docs/method.md 2.12: as in the public code).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # annotations only
    from .supernet import SearchModel

__all__ = ["Batch", "grads_or_zeros", "unrolled_arch_grads"]

Batch = tuple[torch.Tensor, torch.Tensor]
"""(x (B, C, H, W), y (B,)): images in the model's dtype and device, integer labels."""


def grads_or_zeros(loss: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """d loss / d p for every p of `params` (a zero tensor where `loss` does not depend on p); no .grad is touched."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


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
    g_train = grads_or_zeros(F.cross_entropy(model(xt), yt), weights)
    backup = [w.detach().clone() for w in weights]
    with torch.no_grad():
        for k, (w, g) in enumerate(zip(weights, g_train, strict=True)):
            step = g + weight_decay * w
            buf = momentum_buffers[k] if momentum_buffers is not None else None
            if buf is not None and momentum:
                step = step + momentum * buf
            w.sub_(xi * step)
    grads = grads_or_zeros(F.cross_entropy(model(xv), yv), arch + weights)
    d_arch, d_w = grads[: len(arch)], grads[len(arch):]
    norm = torch.sqrt(sum((g * g).sum() for g in d_w))
    eps = eps_scale / norm.clamp_min(1e-12)
    hvp_terms = []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for w, b, d in zip(weights, backup, d_w, strict=True):
                w.copy_(b + sign * eps * d)
        hvp_terms.append(grads_or_zeros(F.cross_entropy(model(xt), yt), arch))
    with torch.no_grad():
        for w, b in zip(weights, backup, strict=True):
            w.copy_(b)
    return [da - xi * (gp - gm) / (2 * eps) for da, gp, gm in zip(d_arch, *hvp_terms, strict=True)]
