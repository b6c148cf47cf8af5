"""Stage `search`: supernet search for one (method, seed); writes runs/<run>/search/ and per-epoch curves."""

from __future__ import annotations


import torch

from itnas.data import ImageDataset, PreparedData, assert_search_excludes_test
from itnas.search import run_search

from .common import (CKPT_DIR, DATA_FILE, checkpoint_for, console, epoch_progress, load_params,
                     resolve_device, run_dir, run_name, search_config, write_csv, write_json)

CURVE_COLUMNS = ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "collapse_count", "time_s"]


def search(method: str, seed: int, params_file: str = "params.yaml") -> None:
    params = load_params(params_file)
    cfg = search_config(params, method, seed)
    device = resolve_device(params)
    data = PreparedData.load(DATA_FILE)
    assert_search_excludes_test(data)  # search sees search-train and search-val only
    train_set = ImageDataset(data.search_train, data.mean, data.std, image_size=cfg.image_size)
    val_set = ImageDataset(data.search_val, data.mean, data.std, image_size=cfg.image_size)
    ckpt = CKPT_DIR / run_name(method, seed) / "search.pt"
    identity = {"data_fingerprint": data.fingerprint()}
    checkpoint_for(ckpt, {**cfg.model_dump(), **identity})
    console.print(f"search {run_name(method, seed)} on {device}: space {cfg.space}, base {cfg.base}, "
                  f"C={cfg.C}, {cfg.layers} cells, {cfg.epochs} epochs ({cfg.warmup_epochs} warm-up), "
                  f"{cfg.order} order")
    steps = -(-len(train_set) // cfg.batch_size)
    with epoch_progress(f"search {run_name(method, seed)}", cfg.epochs, steps) as (on_step, say):

        def on_epoch(rec):
            val = f"val {rec['val_acc']:.1f}%" if "val_acc" in rec else ""
            say(f"epoch {rec['epoch'] + 1}: train {rec['train_acc']:.1f}% {val} "
                                   f"collapse {rec['collapse_count']} ({rec['time_s']:.0f} s)")

        result = run_search(cfg, train_set, val_set, len(data.classes), data.in_channels, device, ckpt,
                            identity=identity, on_step=on_step, on_epoch=on_epoch)
    out = run_dir(method, seed)
    (out / "search").mkdir(parents=True, exist_ok=True)
    meta = {"config": cfg.model_dump(), "num_classes": len(data.classes), "in_channels": data.in_channels,
            "bn": {"affine": False, "track_running_stats": cfg.track_running_stats},
            "base": result.model.arch.base, **identity, "device": str(device), "torch": torch.__version__}
    torch.save({**meta, "model": result.model.state_dict()}, out / "search" / "supernet.pt")
    write_json(out / "search" / "config.json", meta)
    write_json(out / "search" / "history.json", result.history)
    write_csv(out / "search_curves.csv", result.history, CURVE_COLUMNS)
    last = result.history[-1]
    write_json(out / "search_metrics.json", {"search_time_s": round(result.search_time_s, 1),
                                             "search_val_acc": last.get("val_acc"),
                                             "search_collapse_count": last["collapse_count"]})
    ckpt.unlink(missing_ok=True)  # outputs written: a later rerun (new data, code, -f) starts fresh
    console.print(f"search done in {result.search_time_s:.0f} s -> {out / 'search'}")
