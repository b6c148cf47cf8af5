"""Data-parallel primitives and the torchrun launch (itnas/distributed.py, pipeline.common.torchrun_command), with
real gloo process groups of 2 CPU processes (torch.multiprocessing)."""

from __future__ import annotations

import os
import socket
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tiny_project import tiny_params

from itnas.config import ConfigError, DistributedConfig
from itnas.data.shards import shard_indices
from itnas.distributed import DistContext, all_reduce_mean_, broadcast_
from itnas.params import Params
from pipeline.common import torchrun_command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(fn, world_size: int, *args) -> None:
    """Run fn(rank, world_size, *args) in `world_size` processes joined in a gloo group (torchrun's environment)."""
    port = free_port()
    mp.start_processes(_worker, args=(fn, world_size, port, args), nprocs=world_size, start_method="spawn")


def _worker(rank: int, fn, world_size: int, port: int, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    ctx = DistContext.from_env()
    ctx.init(torch.device("cpu"))
    try:
        fn(ctx, *args)
    finally:
        ctx.close()


def _primitives(ctx: DistContext, out: str) -> None:
    t = torch.tensor([float(ctx.rank + 1), 10.0 * (ctx.rank + 1)])
    all_reduce_mean_([t, None], ctx)
    b = torch.full((3,), float(ctx.rank))
    broadcast_([b], ctx)
    torch.save({"mean": t, "broadcast": b, "shard": shard_indices(list(range(7)), ctx)}, f"{out}/{ctx.rank}.pt")


@pytest.mark.slow  # two spawned gloo processes
def test_primitives_with_two_gloo_processes(tmp_path):
    spawn(_primitives, 2, str(tmp_path))
    r0, r1 = (torch.load(tmp_path / f"{r}.pt") for r in (0, 1))
    for r in (r0, r1):
        assert torch.equal(r["mean"], torch.tensor([1.5, 15.0]))  # (1 + 2) / 2, (10 + 20) / 2
        assert torch.equal(r["broadcast"], torch.zeros(3))  # rank 0's values everywhere
    assert r0["shard"] == [0, 2, 4, 6] and r1["shard"] == [1, 3, 5]


def test_single_process_context_does_nothing(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    ctx = DistContext.from_env()
    assert (ctx.rank, ctx.world_size, ctx.enabled, ctx.is_main) == (0, 1, False, True)
    t = torch.tensor([3.0])
    all_reduce_mean_([t], ctx)
    assert t.item() == 3.0 and shard_indices([5, 6], ctx) == [5, 6]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ValueError, match=r"RANK=2 outside \[0, WORLD_SIZE=2\)"):
        DistContext.from_env()


def test_shards_cover_the_batch_and_refuse_too_few():
    batch = list(range(10))
    shards = [shard_indices(batch, DistContext(r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == batch and [len(s) for s in shards] == [4, 3, 3]
    with pytest.raises(ValueError, match="a batch of 2 samples cannot be split over 3 processes"):
        shard_indices([0, 1], DistContext(0, 3))


def test_torchrun_command(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    def params(**distributed) -> Params:
        return Params.from_dict({**tiny_params(), "distributed": distributed})

    assert torchrun_command(params(), ["search", "fmnist", "itnas", "0"]) is None  # one process: no relaunch
    cmd = torchrun_command(params(nproc_per_node=2), ["search", "fmnist", "itnas", "0"])
    assert cmd == [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1", "--standalone",
                   "-m", "pipeline.cli", "search", "fmnist", "itnas", "0"]
    multi = torchrun_command(params(nproc_per_node=4, nnodes=2, rdzv_endpoint="node0:29400"),
                             ["evaluate", "cifar10", "darts", "1"])
    assert "--rdzv_endpoint=node0:29400" in multi and "--nnodes=2" in multi and "--standalone" not in multi
    monkeypatch.setenv("LOCAL_RANK", "0")  # already one of torchrun's processes
    assert torchrun_command(params(nproc_per_node=2), ["search", "fmnist", "itnas", "0"]) is None
    with pytest.raises(ConfigError, match="distributed.nnodes=2 needs distributed.rdzv_endpoint 'host:port'"):
        params(nnodes=2)
    with pytest.raises(ConfigError, match="distributed.backend"):
        params(backend="mpi")
    assert DistributedConfig(nproc_per_node=3, nnodes=2, rdzv_endpoint="node0:29400").world_size == 6
    assert not dist.is_initialized()
