"""Training from scratch for the evaluate stage of a `train`-evaluation benchmark: the final network of
runs/<chain>/genotype.json trained on the benchmark's training split (resumable from .itnas_ckpt/<chain>/train.pt)."""

from __future__ import annotations

import torch

from itnas.contracts import FinalNetworkConfig
from itnas.data import DeviceDataset, TrainData, make_dataset
from itnas.distributed import DistContext
from itnas.genotype import Genotype
from itnas.networks import final_network_from_config
from itnas.params import Params
from itnas.train import train_final

from .common import (
    chain_identity,
    checkpoint_for,
    console,
    epoch_progress,
    rank_zero,
    steps_per_epoch,
    write_csv,
    write_json,
)
from .paths import RunPaths

CURVE_COLUMNS = ["epoch", "lr", "drop_path_prob", "train_loss", "train_acc", "time_s"]


def train_network(params: Params, run: RunPaths, data: TrainData, ctx: DistContext,
                  device: torch.device) -> tuple[torch.nn.Module, FinalNetworkConfig, list]:
    """Train the final network of `run.genotype` on `data.train` on `device`; write run.model, the curves, history
    and config into run.evaluate_dir. Under torchrun (`ctx` of several processes) every rank trains on its shards
    and rank 0 alone writes. Returns (trained model on the device, its FinalNetworkConfig, per-epoch history)."""
    chain = params.chain(run.benchmark, run.method, run.seed)
    cfg = chain.train
    say = rank_zero(ctx)
    genotype = Genotype.load(run.genotype)
    d = cfg.data
    # on the device (uploaded once, augmented per batch there) or per sample in a DataLoader: train.data.on_device
    train_set = make_dataset(data.train, data.mean, data.std, device, d.on_device, augment=True,
                             crop_padding=d.crop_padding, hflip=d.hflip, cutout=d.cutout, image_size=d.image_size)
    net = FinalNetworkConfig(genotype=genotype.to_dict(), network=cfg.network, num_classes=len(data.classes),
                             in_channels=data.in_channels, image_size=d.image_size or data.image_size,
                             mean=data.mean, std=data.std)
    identity = {"final": net.model_dump(mode="json"), "train": cfg.model_dump(mode="json"), "seed": run.seed,
                "data_fingerprint": data.fingerprint()}
    # the checkpoint also knows the processes and the code of this stage (a checkpoint of other code is discarded);
    # the outputs don't. Built as the check stage builds it when it prunes checkpoints.
    ck_identity = chain_identity(params, "train", chain, network=net, data_fingerprint=identity["data_fingerprint"])
    torch.manual_seed(run.seed)
    model = final_network_from_config(net).to(device)
    if ctx.is_main:
        checkpoint_for(run.train_checkpoint, ck_identity)
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

        history = train_final(model, cfg, train_set, run.seed, device, run.train_checkpoint, ck_identity,
                              on_step=on_step, on_epoch=on_epoch, name=f"train {run.name}", ctx=ctx)
    if not ctx.is_main:
        return model, net, history  # rank 0 writes the outputs
    run.evaluate_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"config": identity, "model": model.state_dict(), "history": history}, run.model)
    write_csv(run.train_curves, history, CURVE_COLUMNS)
    write_json(run.evaluate_dir / "history.json", history)
    write_json(run.evaluate_dir / "config.json", identity)
    run.train_checkpoint.unlink(missing_ok=True)  # outputs written: a later rerun starts fresh
    console.print(f"trained in {sum(r['time_s'] for r in history):.0f} s -> {run.evaluate_dir}")
    return model, net, history
