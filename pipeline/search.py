"""Stage `search`: supernet search of one (benchmark, method, seed) chain; writes runs/<chain>/search/,
search_metrics.json and the per-epoch curves (DVCLive, runs/<chain>/live/search/, logged as the epochs finish)."""

from __future__ import annotations

import torch

from itnas.contracts import SearchMetrics, SupernetMeta
from itnas.data import DeviceDataset, assert_search_excludes_test, load_search_data, make_dataset
from itnas.derive import NOISE_MARGIN
from itnas.distributed import DistContext
from itnas.params import Chain, Params, load_params
from itnas.run import RunRecord
from itnas.search import run_search

from .common import chain_identity, checkpoint_for, console, epoch_progress
from .live import SEARCH_KEYS, EpochLog
from .parallel import distributed_run, rank_zero, steps_per_epoch
from .paths import checkpoint, prepared_dirs, run_record


def search(benchmark: str, method: str, seed: int, params_file: str = "params.yaml") -> None:
    """Search one chain. Under torchrun (`distributed.nproc_per_node` > 1) every rank runs this; the batches are
    sharded over the ranks and rank 0 alone writes checkpoints, outputs and progress."""
    params = load_params(params_file)
    with distributed_run(params) as (ctx, device):
        chain = params.chain(benchmark, method, seed, device)  # search dtype auto resolved for this device
        _search(params, chain, run_record(benchmark, method, seed), ctx, device)


def _search(params: Params, chain: Chain, run: RunRecord, ctx: DistContext, device: torch.device) -> None:
    say = rank_zero(ctx)
    cfg, dcfg = chain.search, chain.data
    data = load_search_data(prepared_dirs(run.benchmark)[0], dcfg.root, dcfg.download)
    assert_search_excludes_test(data)  # search sees search-train and search-val only
    size = cfg.data.image_size
    # on the device (uploaded once, batches made there) or per sample in a DataLoader: search.data.on_device
    on_device = {"device": device, "on_device": cfg.data.on_device}
    train_set = make_dataset(data.search_train, data.mean, data.std, image_size=size, **on_device)
    val_set = make_dataset(data.search_val, data.mean, data.std, image_size=size, **on_device)
    # the checkpoint's identity: resolved config, data, processes and the code of this stage (a checkpoint of other
    # code is discarded), as the check stage builds it when it prunes checkpoints
    identity = chain_identity(params, "search", chain, data_fingerprint=data.fingerprint())
    ck_path = checkpoint(run, "search")
    # rank 0 logs the curves: the epochs of the checkpoint it resumes from first, then each epoch as it finishes
    curves = EpochLog(run.live_search, SEARCH_KEYS, checkpoint_for(ck_path, identity)) if ctx.is_main else None
    ctx.barrier()  # every rank resumes from the checkpoint rank 0 kept, or none
    s, sched, prec = cfg.supernet, cfg.schedule, cfg.precision
    amp = f", amp {prec.amp}" if prec.amp != "off" else ""
    layout = ", channels-last" if prec.channels_last else ""
    procs = f" x {ctx.world_size} processes" if ctx.enabled else ""
    say(f"search {run.name} on {device}{procs}: space {s.space}, base {cfg.base}, C={s.C}, {s.layers} cells, "
                  f"{sched.epochs} epochs ({sched.warmup_epochs} warm-up), {cfg.arch_optimizer.order} order, "
                  f"{prec.dtype}{amp}{layout}"
                  f"{', batches made on the device' if isinstance(train_set, DeviceDataset) else ''}")
    steps = steps_per_epoch(len(train_set), cfg.data.batch_size, ctx)
    with epoch_progress(f"search {run.name}", sched.epochs, steps, enabled=ctx.is_main) as (on_step, print_):

        def on_epoch(rec):
            val = f"val {rec['val_acc']:.1f}%" if "val_acc" in rec else ""
            print_(f"epoch {rec['epoch'] + 1}: train {rec['train_acc']:.1f}% {val} "
                   f"collapse {rec['collapse_count']} ({rec['time_s']:.0f} s)")
            curves(rec)  # the engine calls on_epoch on rank 0 only

        result = run_search(cfg, train_set, val_set, len(data.classes), data.in_channels, device,
                            ck_path, identity=identity, on_step=on_step, on_epoch=on_epoch,
                            name=f"search {run.name}", ctx=ctx)
    if not ctx.is_main:
        return  # rank 0 writes the outputs
    curves.end()
    meta = SupernetMeta(config=cfg, num_classes=len(data.classes), in_channels=data.in_channels,
                        base=result.model.arch.base, data_fingerprint=identity["data_fingerprint"],
                        device=str(device), torch=torch.__version__)
    run.search_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"meta": meta.model_dump(mode="json"), "model": result.model.state_dict()}, run.supernet)
    run.write_json("search_config", meta)
    run.write_json("search_history", result.history)
    last = result.history[-1]
    d = last["decisiveness"]
    metrics = SearchMetrics(search_time_s=round(result.search_time_s, 1), search_val_acc=last.get("val_acc"),
                            search_collapse_count=last["collapse_count"], search_min_margin=d["min_margin"],
                            search_median_margin=d["median_margin"], search_margins_within_noise=d["n_within_noise"],
                            search_max_alpha=d["max_alpha"])
    run.write_json("search_metrics", metrics)
    ck_path.unlink(missing_ok=True)  # outputs written: a later rerun (new data, code, -f) starts fresh
    console.print(f"search done in {result.search_time_s:.0f} s -> {run.search_dir}; genotype margins: smallest "
                  f"{_fmt(d['min_margin'])}, median {_fmt(d['median_margin'])} (alpha units), largest alpha "
                  f"{d['max_alpha']:.3f}")
    if d["n_within_noise"]:
        console.print(f"[yellow]warning: {d['n_within_noise']} of {d['n_decisions']} choices of this genotype are "
                      f"decided by less than {NOISE_MARGIN:g}, i.e. by float rounding: another CPU type or thread "
                      f"count may derive another genotype. Search longer or with a larger arch_optimizer.lr.")


def _fmt(margin: float | None) -> str:
    return "-" if margin is None else f"{margin:.2e}"
