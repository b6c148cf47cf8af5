"""How every optimizer of a run steps (`optimizer_kwargs`) and the learning rate of each epoch (`cosine_lr`,
`exponential_lr`)."""


from __future__ import annotations

import math

__all__ = ["cosine_lr", "exponential_lr", "optimizer_kwargs"]


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


def exponential_lr(lr: float, gamma: float, epoch: int) -> float:
    """Learning rate of `epoch` (0-based) under exponential decay: lr * gamma^epoch, i.e. multiplied by gamma after
    every epoch (PyTorch StepLR(step_size=1, gamma) stepped at each epoch's end; the DARTS ImageNet schedule, gamma
    0.97: Liu et al. 2019 appendix A.2, DARTS repo cnn/train_imagenet.py). The DARTS script, written for PyTorch 0.3,
    steps its scheduler at each epoch's start and so trains epoch e at lr * gamma^(e+1); this closed form follows
    the current PyTorch order, as `cosine_lr` does (the first epoch at lr)."""
    return lr * gamma ** epoch
