"""Data-parallel batches: a rank's share of each global batch of sample indices (`shard_indices`) and the sampler
of a data-parallel epoch (`ShardedBatches`). Index maths only, no communication (`itnas.distributed` holds the
process group and the collectives), so that the data package does not depend on the data-parallel engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch.utils.data import Sampler

if TYPE_CHECKING:  # annotations only: a context is anything with `rank` and `world_size`
    from ..distributed import DistContext

__all__ = ["ShardedBatches", "shard_indices"]


def shard_indices(batch: list[int] | torch.Tensor, ctx: DistContext) -> list[int]:
    """This rank's share of a global batch of sample indices: positions rank, rank + N, ... (N = world_size), so the
    shards are disjoint, cover the batch, and differ in size by at most one.

    Raises:
        ValueError: the batch has fewer samples than ranks (a rank would get none).
    """
    items = batch.tolist() if isinstance(batch, torch.Tensor) else list(batch)
    if len(items) < ctx.world_size:
        raise ValueError(f"a batch of {len(items)} samples cannot be split over {ctx.world_size} processes")
    return items[ctx.rank::ctx.world_size]


class ShardedBatches(Sampler[list[int]]):
    """This rank's batches of a data-parallel epoch: one permutation of range(n) drawn from (seed, epoch) (or the
    order 0..n-1 without shuffle), cut into global batches of world_size x batch_size indices, each split over the
    ranks by `shard_indices`. Every rank draws the same permutation, so the ranks' shards of one step are disjoint
    and together are the step's global batch; every rank has the same number of steps.

    The last global batch is kept only when every rank gets at least `min_per_rank` samples (2 for training:
    batch norm in train mode needs more than one value per channel; 1 otherwise).
    """

    def __init__(self, n: int, batch_size: int, ctx: DistContext, shuffle: bool, seed: int = 0, epoch: int = 0,
                 min_per_rank: int = 1):
        self.n, self.batch_size, self.ctx, self.shuffle = n, batch_size, ctx, shuffle
        self.seed, self.epoch, self.min_per_rank = seed, epoch, min_per_rank
        global_batch = batch_size * ctx.world_size
        full, last = divmod(n, global_batch)
        self._n_batches = full + (1 if last >= min_per_rank * ctx.world_size else 0)

    def __len__(self) -> int:
        return self._n_batches

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed((self.seed * 100_003 + self.epoch) * 31 + 17)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        global_batch = self.batch_size * self.ctx.world_size
        for k in range(self._n_batches):
            yield shard_indices(order[k * global_batch:(k + 1) * global_batch], self.ctx)
