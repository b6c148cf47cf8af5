"""How every optimizer of a run steps (`optimizer_kwargs`) and the learning rate of each epoch (`cosine_lr`)."""


from __future__ import annotations

import math

__all__ = ["cosine_lr", "optimizer_kwargs"]


def optimizer_kwargs() -> dict[str, bool]:
    """How every optimizer of a run steps: `foreach` (multi-tensor ops: a handful of kernels per step on any device,
    the same arithmetic as the per-parameter loop). Not `fused`: with an fp16 `GradScaler`, torch 2.14's fused SGD
    allocates its momentum buffers uninitialised and skips an overflowing first step inside the kernel, leaving
    garbage momentum (reproduced on CPU); and a checkpoint's param_groups carry the flag to the resumed run."""
    return {"foreach": True}


def cosine_lr(lr: float, lr_min: float, epoch: int, epochs: int) -> float:
    """Learning rate of `epoch` under cosine annealing from lr to lr_min over `epochs` (PyTorch CosineAnnealingLR
    with T_max=epochs, closed form; the schedule of DARTS search and training, Liu et al. 2019 section 3)."""
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2
