"""Stage `prepare`: load the data set, split it, and write data/prepared/dataset.pt (+ a JSON summary)."""

from __future__ import annotations

import time

from itnas.data import prepare_dataset

from .common import DATA_FILE, console, data_config, load_params, write_json


def prepare(params_file: str = "params.yaml") -> None:
    cfg = data_config(load_params(params_file))
    t0 = time.perf_counter()
    data = prepare_dataset(cfg.dataset, cfg.root, cfg.search_train_size, cfg.search_val_size, cfg.train_size,
                           cfg.test_size, cfg.split_seed, cfg.download)
    DATA_FILE.parent.mkdir(parents=True, exist_ok=True)
    data.save(DATA_FILE)
    summary = {"dataset": data.name, "classes": data.classes, "image_size": data.image_size,
               "in_channels": data.in_channels, "mean": data.mean, "std": data.std,
               **{f"{k}_size": len(getattr(data, k)) for k in ("search_train", "search_val", "train", "test")},
               "config": cfg.model_dump()}
    write_json(DATA_FILE.with_name("summary.json"), summary)
    console.print(f"prepared {data.name}: search-train {len(data.search_train)}, search-val {len(data.search_val)}, "
                  f"train {len(data.train)}, test {len(data.test)} images of {data.in_channels}x{data.image_size}"
                  f"x{data.image_size} in {time.perf_counter() - t0:.1f} s -> {DATA_FILE}")
