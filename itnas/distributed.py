"""Data-parallel search and training on `torch.distributed`, started by `torchrun` (one process per device).

Conventions (PyTorch DDP; the DARTS-family recipes assume one device, so a run on N processes is the recipe with an
N-times larger global batch):

- every process holds the whole supernet / final network and the whole architecture; each step it takes its own
  shard of the batch (`itnas.data.shards.shard_indices`: the global batch order of one process, split N ways, so
  the union of the shards is the 1-process batch of N x batch_size images);
- weight gradients are averaged by `DistributedDataParallel` (all-reduce in backward); architecture gradients,
  which the search takes on the architecture parameters only, are averaged by `all_reduce_mean_`; the optimizers
  then take identical steps, so weights, architecture parameters and optimizer states stay identical on every rank
  (tested bitwise with gloo);
- batch norm keeps per-rank statistics (DDP's default; `sync_batchnorm` converts the network to `SyncBatchNorm`,
  CUDA only);
- checkpoints, outputs and metrics are written by rank 0 (`DistContext.is_main`); every rank resumes from the same
  checkpoint file (rank 0 decides whether there is one; on several nodes it must be on a shared file system);
- the averaged gradient is the mean of the ranks' mean-loss gradients: exactly the global batch's gradient when
  the shards are equal, an equal-weight approximation of it when they differ by a sample (a last batch, search-val
  batches);
- final training: after DDP copied rank 0's weights, each rank reseeds its RNG (seed, rank), so augmentation and
  drop-path draw independently per rank; checkpoints keep every rank's RNG state.

`DistContext.from_env()` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); without it (a plain process)
the context is the single-process one and nothing here does any communication.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = ["DistContext", "all_gather_objects", "all_reduce_mean_", "all_reduce_sum_", "broadcast_",
           "broadcast_buffers_", "wrap_ddp"]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a torchrun job. rank in [0, world_size); local_rank: index on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    sync_batchnorm: bool = False

    @property
    def enabled(self) -> bool:
        """True when there is more than one process (a process group is, or will be, initialised)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, outputs and progress."""
        return self.rank == 0

    @classmethod
    def from_env(cls, sync_batchnorm: bool = False) -> DistContext:
        """The context torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK), else a single process.
        `sync_batchnorm`: `wrap_ddp` converts batch norm to SyncBatchNorm (CUDA only).

        Raises:
            ValueError: the variables are set but not integers, or rank outside [0, world_size).
        """
        if "WORLD_SIZE" not in os.environ:
            return cls()
        try:
            ctx = cls(int(os.environ.get("RANK", "0")), int(os.environ["WORLD_SIZE"]),
                      int(os.environ.get("LOCAL_RANK", "0")), sync_batchnorm)
        except ValueError:
            raise ValueError(f"torchrun environment not understood: RANK={os.environ.get('RANK')!r}, WORLD_SIZE="
                             f"{os.environ.get('WORLD_SIZE')!r}, LOCAL_RANK={os.environ.get('LOCAL_RANK')!r}") from None
        if not 0 <= ctx.rank < ctx.world_size:
            raise ValueError(f"RANK={ctx.rank} outside [0, WORLD_SIZE={ctx.world_size})")
        return ctx

    def device(self, requested: torch.device) -> torch.device:
        """The device of this rank: cuda:<local_rank> when `requested` is CUDA and several processes run, else
        `requested` (CPU processes share the CPU)."""
        if self.enabled and requested.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return requested

    def init(self, device: torch.device, backend: str = "auto") -> None:
        """Initialise the default process group (nccl for CUDA, gloo for CPU when backend is "auto"); no-op for a
        single process or when already initialised. Rendezvous: torchrun's MASTER_ADDR / MASTER_PORT."""
        if not self.enabled or dist.is_initialized():
            return
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, rank=self.rank, world_size=self.world_size)

    def barrier(self) -> None:
        """Wait for every rank (no-op for one process)."""
        if self.enabled and dist.is_initialized():
            dist.barrier()

    def close(self) -> None:
        """Destroy the process group (no-op when none)."""
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def all_reduce_mean_(tensors: Iterable[torch.Tensor | None], ctx: DistContext) -> None:
    """Replace every tensor by its mean over the ranks, in place (one all-reduce per tensor; None skipped). Used for
    the architecture gradients, which DDP does not see (they are taken with `torch.autograd.grad` or on parameters
    outside the DDP module). No-op for one process."""
    if not ctx.enabled:
        return
    for t in tensors:
        if t is not None:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t.div_(ctx.world_size)


def broadcast_(tensors: Iterable[torch.Tensor], ctx: DistContext, src: int = 0) -> None:
    """Copy rank `src`'s values of every tensor to all ranks, in place (no-op for one process): the architecture
    parameters start identical on every rank even when their initialisation drew from per-rank RNG streams."""
    if not ctx.enabled:
        return
    for t in tensors:
        dist.broadcast(t.data, src)


def all_reduce_sum_(tensors: Iterable[torch.Tensor], ctx: DistContext) -> None:
    """Replace every tensor by its sum over the ranks, in place (no-op for one process): running loss / accuracy
    sums of an epoch, so that every rank records the epoch's global statistics."""
    if not ctx.enabled:
        return
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)


def broadcast_buffers_(module: nn.Module, ctx: DistContext, src: int = 0) -> None:
    """Copy rank `src`'s buffers of `module` (batch-norm running statistics) to every rank (no-op for one process).
    DDP broadcasts them before each forward, but the forward then updates them with the rank's own shard: called at
    an epoch's end, so that evaluation and the checkpoint see one model on every rank."""
    broadcast_(list(module.buffers()), ctx, src)


def all_gather_objects(obj: Any, ctx: DistContext) -> list[Any]:
    """[rank 0's obj, rank 1's obj, ...] on every rank (pickled; small objects such as RNG states); [obj] for one
    process."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def wrap_ddp(module: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """`module` wrapped in `DistributedDataParallel` for a run of several processes (returned unchanged for one).

    The wrapper all-reduces (averages) the gradients of `module`'s parameters in backward and broadcasts rank 0's
    buffers before each forward; at construction it broadcasts rank 0's parameters and buffers. With
    `ctx.sync_batchnorm` every BatchNorm is first converted, in place, to SyncBatchNorm (statistics over all ranks'
    shards; CUDA only). Parameters keep their identity, so optimizers built on `module` stay valid. Call the
    wrapper for the training forward; evaluate and checkpoint `module` itself.

    Raises:
        ValueError: sync_batchnorm on a CPU device (torch's SyncBatchNorm runs on CUDA only).
    """
    if not ctx.enabled:
        return module
    if ctx.sync_batchnorm:
        if device.type != "cuda":
            raise ValueError(f"distributed.sync_batchnorm needs CUDA devices, got {device}: set it to false")
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        if converted is not module:
            raise ValueError("wrap_ddp: the module itself is a BatchNorm; wrap a network")
    device_ids = [device.index if device.index is not None else ctx.local_rank] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
