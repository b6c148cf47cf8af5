"""Final training from scratch and evaluation (DARTS CIFAR recipe, Liu et al. 2019, section 3.3; DESIGN.md 3).

SGD with momentum and cosine schedule, auxiliary loss (weight `auxiliary_weight`), drop-path probability
growing linearly to `drop_path` over the epochs, gradient clipping, optional label smoothing. No test image is
used during training or for any selection: the model of the last epoch is the one evaluated.
A checkpoint after every epoch makes an interrupted training resume where it stopped.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, confusion_matrix

from .checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .config import TrainConfig

__all__ = ["cosine_lr", "evaluate", "train_final"]

log = logging.getLogger(__name__)


def cosine_lr(lr: float, lr_min: float, epoch: int, epochs: int) -> float:
    """Learning rate of `epoch` under cosine annealing from lr to lr_min over `epochs` (PyTorch CosineAnnealingLR
    with T_max=epochs, closed form; the schedule of DARTS search and training)."""
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def train_final(model: nn.Module, cfg: TrainConfig, train_set, seed: int = 0, device: torch.device | str = "cpu",
                checkpoint_path: str | Path | None = None, config: dict | None = None,
                stop_after_epochs: int | None = None, make_loader=None,
                on_step: Callable[[int, int, int, float], None] | None = None,
                on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Train `model` (a `FinalNetwork`, already on `device`) in place; with `cfg.channels_last` the model and every
    input batch (B, C, H, W) are converted to the channels-last memory format (the model stays so afterwards).

    Args:
        cfg: the training recipe. train_set: yields (x (C, H, W), label, index). seed: data order and init.
        checkpoint_path: written each epoch; resumed from when present. config: the run's full resolved config,
            stored in the checkpoint (a checkpoint of another config is an error); defaults to cfg.
        stop_after_epochs: stop (as if interrupted) after this many epochs in total.
        on_step(epoch, step, n_steps, loss) / on_epoch(record): progress callbacks.

    Returns:
        history: per epoch {epoch, lr, drop_path_prob, train_loss (nats), train_acc (%), time_s}.

    Raises:
        CheckpointError: unreadable checkpoint or one of another config.
    """
    if make_loader is None:
        from .data import make_loader
    device = torch.device(device)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    opt = torch.optim.SGD(model.parameters(), cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    config = config if config is not None else cfg.model_dump()
    history: list[dict] = []
    start = 0
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        ck = load_checkpoint(checkpoint_path, config)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        history, start = ck["history"], ck["epoch"]
        restore_rng(ck["rng"])
        log.info("resumed training from %s at epoch %d", checkpoint_path, start)
    end = cfg.epochs if stop_after_epochs is None else min(cfg.epochs, stop_after_epochs)
    for epoch in range(start, end):
        t0 = time.perf_counter()
        lr = cosine_lr(cfg.lr, cfg.lr_min, epoch, cfg.epochs)
        for g in opt.param_groups:
            g["lr"] = lr
        model.drop_path_prob = cfg.drop_path * epoch / cfg.epochs
        model.train()
        loader = make_loader(train_set, cfg.batch_size, True, seed, epoch)
        # running sums stay on the device (float64, exact counts): one host sync per epoch, not per step
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct, n = torch.zeros((), dtype=torch.int64, device=device), 0
        for step, (x, y, _) in enumerate(loader):
            x = x.to(device, non_blocking=True, memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            logits, aux = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
            if aux is not None:
                loss = loss + cfg.auxiliary_weight * F.cross_entropy(aux, y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            loss_sum += loss.detach().double() * len(y)
            correct += (logits.argmax(1) == y).sum()
            n += len(y)
            if on_step is not None:
                on_step(epoch, step + 1, len(loader), loss.item())
        rec = {"epoch": epoch, "lr": lr, "drop_path_prob": model.drop_path_prob, "train_loss": loss_sum.item() / n,
               "train_acc": 100.0 * correct.item() / n, "time_s": time.perf_counter() - t0}
        history.append(rec)
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, {"config": config, "epoch": epoch + 1, "model": model.state_dict(),
                                              "opt": opt.state_dict(), "history": history, "rng": capture_rng()})
        if on_epoch is not None:
            on_epoch(rec)
    return history


@torch.no_grad()
def evaluate(model: nn.Module, dataset, batch_size: int = 500, device: torch.device | str = "cpu",
             num_classes: int | None = None, make_loader=None) -> dict:
    """Accuracy (%), mean cross-entropy (nats), per-class accuracy (%) and confusion matrix (scikit-learn).

    `model(x)` may return logits or (logits, aux). Returns a JSON-ready dict.
    """
    if make_loader is None:
        from .data import make_loader
    device = torch.device(device)
    model.eval()
    preds, labels, loss_sum = [], [], 0.0
    for x, y, _ in make_loader(dataset, batch_size, False):
        out = model(x.to(device))
        logits = out[0] if isinstance(out, tuple) else out
        loss_sum += F.cross_entropy(logits, y.to(device), reduction="sum").item()
        preds.append(logits.argmax(1).cpu())
        labels.append(y)
    y_pred, y_true = torch.cat(preds).numpy(), torch.cat(labels).numpy()
    k = num_classes or int(max(y_true.max(), y_pred.max()) + 1)
    cm = confusion_matrix(y_true, y_pred, labels=np.arange(k))
    per_class = (100.0 * cm.diagonal() / np.maximum(cm.sum(1), 1)).tolist()
    return {"accuracy": 100.0 * accuracy_score(y_true, y_pred), "loss": loss_sum / len(y_true), "n": int(len(y_true)),
            "per_class_accuracy": per_class, "confusion_matrix": cm.tolist()}
