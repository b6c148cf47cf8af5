"""Training from scratch for the evaluate stage of a `train`-evaluation benchmark: the final network of
runs/<chain>/genotype.json trained on the benchmark's training split (resumable from .itnas_ckpt/<chain>/train.pt)."""

from __future__ import annotations

import torch

from itnas.contracts import FinalNetworkConfig
from itnas.data import ImageDataset, TrainData, num_batches
from itnas.genotype import Genotype
from itnas.networks import final_network_from_config
from itnas.train import train_final

from .common import (
    checkpoint_for,
    console,
    epoch_progress,
    resolve_device,
    train_config,
    train_identity,
    write_csv,
    write_json,
)
from .paths import RunPaths

CURVE_COLUMNS = ["epoch", "lr", "drop_path_prob", "train_loss", "train_acc", "time_s"]


def train_network(params: dict, run: RunPaths, data: TrainData) -> tuple[torch.nn.Module, FinalNetworkConfig, list]:
    """Train the final network of `run.genotype` on `data.train`; write run.model, the curves, history and config
    into run.evaluate_dir. Returns (trained model on the device, its FinalNetworkConfig, per-epoch history)."""
    cfg = train_config(params, run.benchmark)
    device = resolve_device(params)
    genotype = Genotype.load(run.genotype)
    d = cfg.data
    train_set = ImageDataset(data.train, data.mean, data.std, augment=True, crop_padding=d.crop_padding,
                             hflip=d.hflip, cutout=d.cutout, image_size=d.image_size)
    net = FinalNetworkConfig(genotype=genotype.to_dict(), network=cfg.network, num_classes=len(data.classes),
                             in_channels=data.in_channels, image_size=d.image_size or data.image_size,
                             mean=data.mean, std=data.std)
    identity = {"final": net.model_dump(mode="json"), "train": cfg.model_dump(mode="json"), "seed": run.seed,
                "data_fingerprint": data.fingerprint()}
    # the checkpoint also knows the code of this stage (a checkpoint of other code is discarded); the outputs don't
    ck_identity = {**train_identity(params, run.benchmark, run.method, run.seed), **identity}  # as `check` builds it
    torch.manual_seed(run.seed)
    model = final_network_from_config(net).to(device)
    checkpoint_for(run.train_checkpoint, ck_identity)
    amp = f", amp {cfg.amp}" if cfg.amp != "off" else ""
    console.print(f"train {run.name} on {device}: C={cfg.network.C}, {cfg.network.layers} cells, {cfg.epochs} "
                  f"epochs, {len(train_set)} images of {net.image_size} px{amp}")
    steps = num_batches(len(train_set), d.batch_size, drop_single=True)
    with epoch_progress(f"train {run.name}", cfg.epochs, steps) as (on_step, say):

        def on_epoch(rec):
            say(f"epoch {rec['epoch'] + 1}: train {rec['train_acc']:.1f}% ({rec['time_s']:.0f} s)")

        history = train_final(model, cfg, train_set, run.seed, device, run.train_checkpoint, ck_identity,
                              on_step=on_step, on_epoch=on_epoch, name=f"train {run.name}")
    run.evaluate_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"config": identity, "model": model.state_dict(), "history": history}, run.model)
    write_csv(run.train_curves, history, CURVE_COLUMNS)
    write_json(run.evaluate_dir / "history.json", history)
    write_json(run.evaluate_dir / "config.json", identity)
    run.train_checkpoint.unlink(missing_ok=True)  # outputs written: a later rerun starts fresh
    console.print(f"trained in {sum(r['time_s'] for r in history):.0f} s -> {run.evaluate_dir}")
    return model, net, history
