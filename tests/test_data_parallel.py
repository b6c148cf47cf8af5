"""Data-parallel search and final training (itnas/distributed.py, the engine, SearchTask, FinalTrainTask) with real
gloo process groups of 2 CPU processes: every rank holds bitwise the same weights, architecture parameters,
optimizer states and batch-norm statistics; the ranks' shards cover every sample once per epoch; an interrupted
run resumed under 2 processes equals the uninterrupted one; and one step's DDP-averaged gradient equals the mean
of the per-shard gradients computed in one process (batch-norm statistics per rank, as DDP has them)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from tiny_project import ROOT, CountingDataset, history_curves, live_curves, tiny_params, write_params
from tiny_project import image_split as _split

from itnas.config import SearchConfig
from itnas.config_parse import deep_merge
from itnas.data import ImageDataset, make_loader
from itnas.data.shards import ShardedBatches, shard_indices
from itnas.distributed import DistContext
from itnas.engine import NonFiniteError, run_epochs
from itnas.genotype import PUBLISHED_GENOTYPES, Genotype
from itnas.networks import create_final_network
from itnas.search import SearchTask, arch_step, build_search_model, make_search_optimizers, run_search, weight_step
from itnas.train import train_final
from itnas.train_config import TrainConfig
from itnas.unrolled import unrolled_arch_grads
from pipeline.live import SEARCH_KEYS, TRAIN_KEYS
from tests.test_distributed import spawn

N_TRAIN, N_VAL = 40, 36
XI = 0.05  # the second-order virtual step's size in the gradient test (0 would reduce it to first order)




def _search_cfg(order: str) -> SearchConfig:
    """A tiny itnas search (C=4, 3 cells, 8x8, 4 images per process and step, BN running statistics tracked)."""
    return SearchConfig.model_validate(deep_merge({
        "method": "itnas", "supernet": {"base": "darts", "C": 4, "layers": 3, "track_running_stats": True},
        "schedule": {"epochs": 2, "warmup_epochs": 0, "val_every": 1}, "data": {"batch_size": 4},
        "arch_optimizer": {"lr": 0.03}}, {"arch_optimizer": {"order": order}}))


def _train_cfg() -> TrainConfig:
    return TrainConfig(epochs=2, network={"C": 4, "layers": 3, "auxiliary": True},
                       optimizer={"lr": 0.05, "lr_min": 0.0}, regularization={"drop_path": 0.1},
                       data={"batch_size": 4, "cutout": 0, "crop_padding": 2, "hflip": True})


def _runs(ctx: DistContext, out: str, order: str) -> None:
    """Per rank: an uninterrupted search, the same search interrupted after 1 epoch and resumed, and a final
    training; saves every state and what each rank's datasets served."""
    train, val = CountingDataset(_split(N_TRAIN, 0), [0.5], [0.25]), CountingDataset(_split(N_VAL, 1), [0.5], [0.25])
    cfg = _search_cfg(order)
    full = run_search(cfg, train, val, 3, 1, checkpoint_path=f"{out}/full.pt", ctx=ctx)
    seen_train, seen_val = list(train.seen), list(val.seen)
    run_search(cfg, train, val, 3, 1, checkpoint_path=f"{out}/resumed.pt", stop_after_epochs=1, ctx=ctx)
    resumed = run_search(cfg, train, val, 3, 1, checkpoint_path=f"{out}/resumed.pt", ctx=ctx)
    tcfg = _train_cfg()
    data = ImageDataset(_split(N_TRAIN, 2), [0.5], [0.25], augment=True, crop_padding=2, hflip=True)
    nets = []
    for stop in (None, 1, None):  # uninterrupted; then interrupted after epoch 1 and resumed
        torch.manual_seed(0)
        net = create_final_network(PUBLISHED_GENOTYPES["darts_v2"], 4, 3, 3, True, 1)
        ckpt = f"{out}/train_full.pt" if not nets else f"{out}/train_resumed.pt"
        history = train_final(net, tcfg, data, seed=0, checkpoint_path=ckpt, stop_after_epochs=stop, ctx=ctx)
        nets.append((net, history))
    (net, history), (resumed_net, resumed_history) = nets[0], nets[2]
    torch.save({"train_resumed": resumed_net.state_dict(), "train_resumed_history": resumed_history,
                "search": full.model.state_dict(), "search_history": full.history,
                "resumed": resumed.model.state_dict(), "resumed_history": resumed.history,
                "seen_train": seen_train, "seen_val": seen_val,
                "train": net.state_dict(), "train_history": history}, f"{out}/rank{ctx.rank}.pt")


def _strip_times(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in rec.items() if k != "time_s"} for rec in history]


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow  # two spawned gloo processes
@pytest.mark.parametrize("order", ["first", "second"])
def test_two_processes_hold_one_model_and_resume_exactly(tmp_path, order):
    spawn(_runs, 2, str(tmp_path), order)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    # one model on every rank: weights, architecture parameters, BN running statistics, bitwise
    for key in ("search", "resumed", "train", "train_resumed"):
        _assert_same_state(r0[key], r1[key])
    assert _strip_times(r0["search_history"]) == _strip_times(r1["search_history"])  # global statistics
    assert _strip_times(r0["train_history"]) == _strip_times(r1["train_history"])
    # the search trained: every architecture parameter moved from its initial value
    init = build_search_model(_search_cfg(order), 3, 1).state_dict()
    assert all(not torch.equal(r0["search"][k], init[k]) for k in init if k.startswith("arch."))
    # interrupted after epoch 1 and resumed under 2 processes = uninterrupted
    _assert_same_state(r0["search"], r0["resumed"])
    assert _strip_times(r0["search_history"]) == _strip_times(r0["resumed_history"])
    # the same for the final training, whose augmentation and drop-path draw from each rank's own RNG stream
    # (restored per rank on resume: rank 0's stream on both ranks would train other weights)
    _assert_same_state(r0["train"], r0["train_resumed"])
    assert _strip_times(r0["train_history"]) == _strip_times(r0["train_resumed_history"])
    # the shards are disjoint and together serve every sample once per epoch (2 epochs)
    assert sorted(r0["seen_train"] + r1["seen_train"]) == sorted(list(range(N_TRAIN)) * 2)
    assert set(r0["seen_train"][:N_TRAIN // 2]).isdisjoint(r1["seen_train"][:N_TRAIN // 2])
    assert sorted(r0["seen_val"] + r1["seen_val"]) == sorted(list(range(N_VAL)) * 4)
    # (search-val: once per epoch by the arch steps, once by the val_every=1 evaluation, sharded too)


def _grads(ctx: DistContext, out: str, order: str) -> None:
    """One architecture step and one weight step on this rank's shard of a fixed global batch, with optimizers
    that do not move anything (lr 0), so the averaged gradients stay readable."""
    cfg = _search_cfg(order)
    torch.manual_seed(cfg.seed)
    model = build_search_model(cfg, 3, 1)
    task = SearchTask(cfg, model, None, None, torch.device("cpu"), make_loader, ctx=ctx)
    for group in task.w_opt.param_groups + task.a_opt.param_groups:
        group["lr"], group["weight_decay"] = 0.0, 0.0
    xt, yt, xv, yv = _global_batches()
    mine = shard_indices(list(range(len(yt))), ctx)
    arch_step(model, task.a_opt, (xt[mine], yt[mine]), (xv[mine], yv[mine]), order, XI, task.w_opt, 0.0, 0.0, ctx)
    weight_step(model, task.w_opt, (xt[mine], yt[mine]), 1e9, net=task.net)
    torch.save({"arch": [p.grad for p in model.arch_parameters()],
                "weights": [p.grad for p in model.weight_parameters()]}, f"{out}/grads{ctx.rank}.pt")


def _global_batches():
    g = torch.Generator().manual_seed(5)
    return (torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g),
            torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 3, (8,), generator=g))


@pytest.mark.slow  # two spawned gloo processes
@pytest.mark.parametrize("order", ["first", "second"])
def test_averaged_gradient_is_the_mean_of_the_shard_gradients(tmp_path, order):
    spawn(_grads, 2, str(tmp_path), order)
    ranks = [torch.load(tmp_path / f"grads{r}.pt") for r in (0, 1)]
    for key in ("arch", "weights"):
        for a, b in zip(ranks[0][key], ranks[1][key], strict=True):
            assert (a is None) == (b is None) and (a is None or torch.equal(a, b))
    # the same two shards, one after the other, in one process (fresh model each: BN statistics per shard)
    cfg = _search_cfg(order)
    xt, yt, xv, yv = _global_batches()
    per_shard = {"arch": [], "weights": []}
    for rank in (0, 1):
        torch.manual_seed(cfg.seed)
        model = build_search_model(cfg, 3, 1)
        w_opt, a_opt = make_search_optimizers(model, cfg)
        idx = shard_indices(list(range(8)), DistContext(rank, 2))
        a_opt.zero_grad()
        if order == "first":
            F.cross_entropy(model(xv[idx]), yv[idx]).backward(inputs=model.arch_parameters())
            arch = [p.grad.clone() for p in model.arch_parameters()]
        else:
            arch = unrolled_arch_grads(copy.deepcopy(model), (xt[idx], yt[idx]), (xv[idx], yv[idx]), XI)
        with torch.no_grad():
            state = model.arch()
        F.cross_entropy(model(xt[idx], state), yt[idx]).backward(inputs=model.weight_parameters())
        per_shard["arch"].append(arch)
        per_shard["weights"].append([p.grad for p in model.weight_parameters()])
    n_compared = 0
    for key in ("arch", "weights"):
        for k, got in enumerate(ranks[0][key]):
            shards = [per_shard[key][0][k], per_shard[key][1][k]]
            if got is None:
                assert all(s is None or not s.any() for s in shards)
                continue
            expected = (shards[0] + shards[1]) / 2
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
            assert not torch.allclose(shards[0], shards[1])  # the shards really differ
            n_compared += 1
    assert n_compared > 10


def test_sharded_batches_cover_the_epoch_and_drop_a_too_small_tail():
    # 21 samples, 2 ranks x 4 per rank: 2 full global batches of 8 + a tail of 5 (>= 2 per rank: kept)
    shards = [list(ShardedBatches(21, 4, DistContext(r, 2), shuffle=True, seed=3, epoch=1, min_per_rank=2))
              for r in (0, 1)]
    assert [len(s) for s in shards] == [3, 3]
    flat = [i for s in shards for b in s for i in b]
    assert sorted(flat) == list(range(21))
    assert [len(b) for b in shards[0]] == [4, 4, 3] and [len(b) for b in shards[1]] == [4, 4, 2]
    # a tail of 3 would leave one rank a single sample: dropped for training (min 2), kept for evaluation (min 1)
    assert len(ShardedBatches(19, 4, DistContext(0, 2), shuffle=False, min_per_rank=2)) == 2
    assert len(ShardedBatches(19, 4, DistContext(0, 2), shuffle=False, min_per_rank=1)) == 3
    # the order depends on (seed, epoch) only
    again = list(ShardedBatches(21, 4, DistContext(0, 2), shuffle=True, seed=3, epoch=1, min_per_rank=2))
    other = list(ShardedBatches(21, 4, DistContext(0, 2), shuffle=True, seed=3, epoch=2, min_per_rank=2))
    assert again == shards[0] and other != shards[0]


class _DivergesOnRankOne:
    """A task whose loss turns NaN at step 3 of epoch 1 on rank 1 only (a rank-local divergence, e.g. an fp16 run
    whose loss scaler skips the inf gradient: nothing shared between the ranks becomes non-finite)."""

    def __init__(self, ctx: DistContext):
        self.ctx, self.w = ctx, torch.zeros(1)

    def state_dict(self):
        return {"w": self.w}

    def load_state_dict(self, state):
        self.w = state["w"]

    def set_lr(self, lr):
        pass

    def batches(self, epoch):
        return list(range(8))

    def step(self, batch, metrics):
        loss = torch.tensor(float("nan") if self.ctx.rank == 1 and batch == 2 else 1.0)
        metrics.check_finite("training loss", loss)

    def epoch_stats(self, epoch, metrics):
        return {}

    def record(self, rec):
        return rec


def _diverge(ctx: DistContext, out: str) -> None:
    try:
        run_epochs(_DivergesOnRankOne(ctx), 0.1, 0.0, 2, torch.device("cpu"), ctx=ctx)
        result = "no error"
    except NonFiniteError as err:
        result = (err.what, err.epoch, err.step)
    torch.save(result, f"{out}/diverge{ctx.rank}.pt")


@pytest.mark.slow  # two spawned gloo processes
def test_a_divergence_on_one_rank_stops_every_rank(tmp_path):
    """Every rank raises NonFiniteError at the same step (else the healthy rank would wait in the next collective
    forever): rank 1 names the quantity, rank 0 says it happened on another process."""
    spawn(_diverge, 2, str(tmp_path))
    r0, r1 = (torch.load(tmp_path / f"diverge{r}.pt") for r in (0, 1))
    assert r1 == ("training loss", 0, 2)
    assert r0 == ("value on another process", 0, 2)


@pytest.mark.slow
def test_stages_relaunch_under_torchrun_and_write_once(tmp_path):
    """`distributed.nproc_per_node: 2` in params: the search and evaluate stages relaunch themselves under torchrun
    (2 gloo processes), rank 0 alone prints and writes, and the chain's outputs are complete and valid."""
    params = tiny_params()
    params["distributed"]["nproc_per_node"] = 2
    write_params(tmp_path, params)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

    def stage(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return " ".join((done.stdout + done.stderr).split())  # rich wraps long lines

    stage("prepare", "tiny")
    out = stage("search", "tiny", "darts", "0")
    assert "torch.distributed.run --nproc_per_node=2" in out and "x 2 processes" in out
    assert out.count("search done in") == 1  # rank 0 only
    run = tmp_path / "runs/tiny/darts-s0"
    history = json.loads((run / "search/history.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1, 2]
    assert not (tmp_path / ".itnas_ckpt/tiny/darts-s0/search.pt").exists()
    stage("derive", "tiny", "darts", "0")
    out = stage("train", "tiny", "darts", "0")
    assert "x 2 processes" in out and out.count("trained in") == 1  # rank 0 writes
    out = stage("evaluate", "tiny", "darts", "0")  # one process tests the network of the two
    assert out.count("test accuracy") == 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test_images"] == 100 and 0.0 <= metrics["test_acc"] <= 100.0
    Genotype.load(run / "genotype.json")
    # the DVCLive curves, logged by rank 0 alone: one row per epoch each, the histories' values
    assert live_curves(run / "live/search") == history_curves(history, SEARCH_KEYS)
    train_history = json.loads((run / "train/history.json").read_text())
    assert live_curves(run / "live/train") == history_curves(train_history, TRAIN_KEYS)
    assert len(json.loads((run / "live/evaluate/plots/sklearn/confusion_matrix.json").read_text())) == 100
