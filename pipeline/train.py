"""Stage `train` (chains of runs.benchmarks, whose evaluator trains a network): the final network of
runs/<chain>/genotype.json trained from scratch on the benchmark's training split -> runs/<chain>/train/ (model.pt
with its `TrainedNetwork` config, config.json, history.json; `itnas.run`) and its per-epoch curves (DVCLive,
runs/<chain>/live/train/, logged as the epochs finish), resumable from .itnas_ckpt/<chain>/train.pt. The evaluate
stage tests it: a change of how it is tested retrains nothing."""

from __future__ import annotations

import torch

from itnas.config import ConfigError
from itnas.contracts import FinalNetworkConfig
from itnas.data import DeviceDataset, load_train_data, make_dataset
from itnas.networks import final_network_from_config
from itnas.params import load_params
from itnas.run import TrainedNetwork
from itnas.train import train_final

from .common import chain_identity, checkpoint_for, console, epoch_progress
from .live import TRAIN_KEYS, EpochLog
from .parallel import distributed_run, rank_zero, steps_per_epoch
from .paths import checkpoint, prepared_dirs, run_record


def train(benchmark: str, method: str, seed: int, params_file: str = "params.yaml") -> None:
    """Train one chain's network. Under torchrun (`distributed.nproc_per_node` > 1) every rank trains on its shards
    of each batch; rank 0 alone checkpoints and writes."""
    params = load_params(params_file)
    run = run_record(benchmark, method, seed)
    chain = params.chain(benchmark, method, seed)
    if chain.train is None:
        raise ConfigError(f"benchmark {benchmark!r} is evaluated by {chain.evaluation}, which trains no network: it "
                          f"has no train stage (run `itnas evaluate {benchmark} {method} {seed}`)")
    cfg, dcfg = chain.train, chain.data
    genotype = run.genotype_of()  # a genotype that cannot be trained stops here, before any data is read
    data = load_train_data(prepared_dirs(benchmark)[1], dcfg.root, dcfg.download)
    d = cfg.data  # colour jitter only on streamed files: checked with the params (`itnas.params.Params`)
    jitter = {"color_jitter": list(d.color_jitter)} if d.color_jitter is not None else {}
    with distributed_run(params) as (ctx, device):
        say = rank_zero(ctx)
        # on the device (uploaded once, augmented per batch there) or per sample in a DataLoader: train.data.on_device
        train_set = make_dataset(data.train, data.mean, data.std, device, d.on_device, augment=True,
                                 crop_padding=d.crop_padding, hflip=d.hflip, cutout=d.cutout, image_size=d.image_size,
                                 **jitter)
        net = FinalNetworkConfig(genotype=genotype.to_dict(), network=cfg.network, num_classes=len(data.classes),
                                 in_channels=data.in_channels, image_size=d.image_size or data.image_size,
                                 mean=data.mean, std=data.std)
        trained = TrainedNetwork(final=net, train=cfg.model_dump(mode="json"), seed=seed,
                                 data_fingerprint=data.fingerprint())
        identity = trained.model_dump(mode="json")
        # the checkpoint also knows the processes and the code of this stage (a checkpoint of other code is
        # discarded); the outputs don't. Built as the check stage builds it when it prunes checkpoints.
        ck_identity = chain_identity(params, "train", chain, network=net, data_fingerprint=trained.data_fingerprint)
        ck_path = checkpoint(run, "train")
        torch.manual_seed(seed)
        model = final_network_from_config(net).to(device)
        # rank 0 logs the curves: the epochs of the checkpoint it resumes from, then each epoch as it finishes
        curves = EpochLog(run.live_train, TRAIN_KEYS, checkpoint_for(ck_path, ck_identity)) if ctx.is_main else None
        ctx.barrier()  # every rank resumes from the checkpoint rank 0 kept, or none
        amp = f", amp {cfg.amp}" if cfg.amp != "off" else ""
        procs = f" x {ctx.world_size} processes" if ctx.enabled else ""
        say(f"train {run.name} on {device}{procs}: C={cfg.network.C}, {cfg.network.layers} cells, {cfg.epochs} "
            f"epochs, {len(train_set)} images of {net.image_size} px{amp}"
            f"{', batches made on the device' if isinstance(train_set, DeviceDataset) else ''}")
        steps = steps_per_epoch(len(train_set), d.batch_size, ctx)
        with epoch_progress(f"train {run.name}", cfg.epochs, steps, enabled=ctx.is_main) as (on_step, print_):

            def on_epoch(rec):
                print_(f"epoch {rec['epoch'] + 1}: train {rec['train_acc']:.1f}% ({rec['time_s']:.0f} s)")
                curves(rec)  # the engine calls on_epoch on rank 0 only

            history = train_final(model, cfg, train_set, seed, device, ck_path, ck_identity, on_step=on_step,
                                  on_epoch=on_epoch, name=f"train {run.name}", ctx=ctx)
        if not ctx.is_main:
            return  # rank 0 writes the outputs
    curves.end()
    run.train_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"config": identity, "model": model.state_dict(), "history": history}, run.model)
    run.write_json("train_history", history)
    run.write_json("train_config", trained)
    ck_path.unlink(missing_ok=True)  # outputs written: a later rerun starts fresh
    console.print(f"trained in {sum(r['time_s'] for r in history):.0f} s -> {run.train_dir}")
