"""What the stages that run data-parallel (search, train) share: the process group, this process's device and its
share of the progress. Apart from `pipeline.common` so that the other stages (check, prepare, derive, evaluate,
report) do not depend on `itnas.distributed`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from itnas.data import num_batches
from itnas.data.shards import ShardedBatches
from itnas.distributed import DistContext
from itnas.params import Params

from .common import console, use_threads


@contextmanager
def distributed_run(params: Params) -> Iterator[tuple[DistContext, torch.device]]:
    """(this process's `DistContext`, its device) for a stage that can run data-parallel: under torchrun, the
    process group is initialised (backend `distributed.backend`; CUDA: one device per local rank) and destroyed on
    exit; a plain process gets the single-process context and the `device` param's device.

    Raises:
        ConfigError: a bad `distributed` or `device` param.
    """
    cfg = params.distributed
    ctx = DistContext.from_env(cfg.sync_batchnorm)
    device = ctx.device(params.torch_device())
    use_threads(params, device)
    ctx.init(device, cfg.backend)
    try:
        yield ctx, device
    finally:
        ctx.close()


def steps_per_epoch(n: int, batch_size: int, ctx: DistContext) -> int:
    """Training steps of one epoch over n samples at `batch_size` per process (the training loaders drop a last
    batch that would leave a process a single sample; with several processes, one that leaves any process fewer
    than 2), for progress bars."""
    if ctx.enabled:
        return len(ShardedBatches(n, batch_size, ctx, shuffle=False, min_per_rank=2))
    return num_batches(n, batch_size, drop_single=True)


def rank_zero(ctx: DistContext):
    """`console.print` on rank 0, a function that prints nothing on the other ranks."""
    return console.print if ctx.is_main else (lambda *args, **kwargs: None)
