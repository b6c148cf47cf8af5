"""Stage `prepare` (once per benchmark): read the benchmark's data set, draw the splits, and write two outputs whose
bytes depend only on them: data/prepared/<benchmark>/search/ (search-train / search-val) and
data/prepared/<benchmark>/train/ (final training / test), each with the index arrays (`itnas.data.SplitIndices`)
and a human-readable summary.json."""

from __future__ import annotations

import time
from pathlib import Path

from itnas.data import (
    SearchData,
    SplitIndices,
    TrainData,
    assert_search_excludes_test,
    create_dataset,
    find_test_overlap,
    make_splits,
)
from itnas.params import load_params

from .common import console, write_json
from .paths import prepared_dirs


def _write(indices: SplitIndices, data: SearchData | TrainData, directory: Path) -> None:
    """The index arrays plus summary.json: computed facts only (no config, paths or times)."""
    indices.save(directory)
    write_json(directory / "summary.json", {
        "dataset": data.name, "classes": data.classes, "in_channels": data.in_channels, "image_size": data.image_size,
        "mean": data.mean, "std": data.std, **{f"{k}_size": len(s) for k, s in data.splits().items()}})


def prepare(benchmark: str, params_file: str = "params.yaml") -> None:
    cfg = load_params(params_file).data_config(benchmark)
    search_dir, train_dir = prepared_dirs(benchmark)
    t0 = time.perf_counter()
    source = create_dataset(cfg.dataset, cfg.root, cfg.download)
    search_idx, train_idx = make_splits(source, cfg.search_train_size, cfg.search_val_size, cfg.train_size,
                                        cfg.test_size, cfg.split_seed)
    target = source
    if cfg.target_dataset not in (None, cfg.dataset):  # transfer: train and test on another data set
        target = create_dataset(cfg.target_dataset, cfg.root, cfg.download)
        k = len(target.classes)  # the smallest stratified search split; only its train/test splits are kept
        _, train_idx = make_splits(target, k, k, cfg.train_size, cfg.test_size, cfg.split_seed)
    search, final = SearchData.from_indices(search_idx, source), TrainData.from_indices(train_idx, target)
    assert_search_excludes_test(search, final.test)
    overlap = find_test_overlap(search.splits(), final.test)
    overlap.check()  # a test image (or its pixels) in search: stop before writing anything
    _write(search_idx, search, search_dir)
    _write(train_idx, final, train_dir)
    on = source.name if target is source else f"search on {source.name}, train and test on {target.name}"
    console.print(f"prepared {benchmark} ({on}): search-train {len(search.search_train)}, search-val "
                  f"{len(search.search_val)}, train {len(final.train)}, test {len(final.test)} images of "
                  f"{search.in_channels}x{search.image_size}x{search.image_size} in {time.perf_counter() - t0:.1f} s "
                  f"-> {search_dir}, {train_dir}")
