"""Compiled steps (static shapes): the forward through torch.compile, and only the full batches of an epoch."""


from __future__ import annotations

from collections.abc import Callable, Iterable, Sized

import torch
import torch.nn as nn

__all__ = ["compile_forward", "full_batches"]


def compile_forward(module: nn.Module) -> Callable:
    """`module`'s forward through torch.compile (static shapes: `dynamic=False`), as a callable only: the run keeps
    checkpointing `module` itself, so the state_dict keys stay those of the eager module (the compiled wrapper's
    own state_dict would prefix every key with `_orig_mod.`). Inductor compiles on the first call (minutes for a
    large network; on a CPU it needs a C++ compiler); a call with a new input shape, dtype or memory format, or in
    the other train/eval mode, compiles again: the compiled runs keep every step's shapes equal (`full_batches`,
    `itnas.search.even_batches(equal=True)`)."""
    return torch.compile(module, dynamic=False)


class _FirstBatches:
    """The first `n` batches of a sized iterable (a loader), as a sized iterable."""

    def __init__(self, batches: Iterable, n: int):
        self.batches, self.n = batches, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        it = iter(self.batches)
        for _ in range(self.n):
            yield next(it)


def full_batches(batches: Iterable, n_samples: int, batch_size: int, world_size: int = 1) -> Iterable:
    """Only the full batches of an epoch's loader over `n_samples` (global batches of world_size x batch_size; each
    rank's shard of a full one is exactly batch_size): a compiled step sees one input shape, the tail batch shorter
    than batch_size is dropped (those samples wait for another epoch's permutation). `batches` itself when it has no
    tail.

    Raises:
        ValueError: fewer samples than one full batch.
    """
    n = n_samples // (batch_size * world_size)
    if not n:
        raise ValueError(f"a compiled run drops partial batches: {n_samples} samples make no full batch of "
                         f"{batch_size * world_size}; lower the batch size or turn compile off")
    return batches if isinstance(batches, Sized) and len(batches) == n else _FirstBatches(batches, n)
