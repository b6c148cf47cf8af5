"""Stage `train`: the final network of runs/<run>/genotype.json trained from scratch -> runs/<run>/train/."""

from __future__ import annotations

import torch

from itnas.data import ImageDataset, PreparedData
from itnas.genotype import Genotype
from itnas.networks import final_network_from_config
from itnas.train import train_final

from .common import (CKPT_DIR, DATA_FILE, checkpoint_for, console, epoch_progress, load_params,
                     resolve_device, run_dir, run_name, train_config, write_csv, write_json)

CURVE_COLUMNS = ["epoch", "lr", "drop_path_prob", "train_loss", "train_acc", "time_s"]


def train(method: str, seed: int, params_file: str = "params.yaml") -> None:
    params = load_params(params_file)
    cfg = train_config(params)
    device = resolve_device(params)
    out = run_dir(method, seed)
    genotype = Genotype.load(out / "genotype.json")
    data = PreparedData.load(DATA_FILE)
    train_set = ImageDataset(data.train, data.mean, data.std, augment=True, crop_padding=cfg.crop_padding,
                             hflip=cfg.hflip, cutout=cfg.cutout, image_size=cfg.image_size)
    config = {"train": cfg.model_dump(), "genotype": genotype.to_dict(), "seed": seed,
              "num_classes": len(data.classes), "in_channels": data.in_channels,
              "image_size": cfg.image_size or data.image_size,
              "mean": data.mean, "std": data.std, "data_fingerprint": data.fingerprint()}
    torch.manual_seed(seed)
    model = final_network_from_config(config).to(device)
    ckpt = CKPT_DIR / run_name(method, seed) / "train.pt"
    checkpoint_for(ckpt, config)
    console.print(f"train {out.name} on {device}: C={cfg.C}, {cfg.layers} cells, {cfg.epochs} epochs, "
                  f"{len(train_set)} images of {config['image_size']} px")
    steps = -(-len(train_set) // cfg.batch_size)
    with epoch_progress(f"train {out.name}", cfg.epochs, steps) as (on_step, say):

        def on_epoch(rec):
            say(f"epoch {rec['epoch'] + 1}: train {rec['train_acc']:.1f}% ({rec['time_s']:.0f} s)")

        history = train_final(model, cfg, train_set, seed, device, ckpt, config, on_step=on_step, on_epoch=on_epoch)
    (out / "train").mkdir(parents=True, exist_ok=True)
    torch.save({"config": config, "model": model.state_dict(), "history": history}, out / "train" / "model.pt")
    write_csv(out / "train_curves.csv", history, CURVE_COLUMNS)
    write_json(out / "train" / "history.json", history)
    write_json(out / "train" / "config.json", config)
    ckpt.unlink(missing_ok=True)  # outputs written: a later rerun starts fresh
    console.print(f"trained in {sum(r['time_s'] for r in history):.0f} s -> {out / 'train'}")
