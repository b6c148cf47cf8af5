"""Splits as index arrays: which images of a source each split holds, and the folder that records them.

`make_splits` picks search-train / search-val (disjoint, stratified, from the training images), the
final-training subset (training images) and the test subset (test images) with scikit-learn's
`train_test_split`. It returns two `SplitIndices`: the *search* splits and the *train* splits (final training +
test), each with the source fingerprint and what a model needs to know (classes, mean/std, image shape).
`SplitIndices.save` writes a folder whose bytes depend only on those computed values (JSON + `.npy`; no config,
paths or timestamps), so a change of the final-training sizes leaves the search folder unchanged and a new
`root` holding the same images leaves both unchanged. `itnas.data.prepared` reads such a folder back into images.

Streamed sources (`itnas.data.ImageFiles`, e.g. ImageNet) go through the same functions: splits index the
files, and `materialize` cuts sub-lists of files (nothing is decoded).
"""


from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .containers import DataError, ImageFiles, ImageSplit, SourceData, digest
from .normalisation import channel_mean_std

__all__ = ["FORMAT_VERSION", "KIND_SPLITS", "SPLITS_FILE", "SPLIT_SOURCES", "SplitIndices", "make_splits"]

#: Which set of the source each split indexes into.
SPLIT_SOURCES = {"search_train": "train", "search_val": "train", "train": "train", "test": "test"}
#: The splits of each prepared folder (`SplitIndices.kind`).
KIND_SPLITS = {"search": ("search_train", "search_val"), "train": ("train", "test")}
SPLITS_FILE = "splits.json"  # metadata of a prepared folder; the index arrays are <split>.npy beside it
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class SplitIndices:
    """The splits of one prepared folder as index arrays, plus what a model needs to know about the data.

    kind: "search" (search_train, search_val) or "train" (train, test). indices: split name -> (n,) int64, sorted,
    unique, into the source set `SPLIT_SOURCES[split]`. source_fingerprint: `SourceData.fingerprint()` of the
    source the indices were drawn from; source_sizes: {"train": N, "test": M} of that source. mean/std: per
    channel, of all the source's training images / 255 (a streamed source: the standard ImageNet statistics, see
    `channel_mean_std`). image_shape: (C, H, W); (3, 0, 0) for a streamed source (images of varying size).
    """

    kind: str
    dataset: str
    source_fingerprint: str
    source_sizes: dict[str, int]
    image_shape: tuple[int, int, int]
    classes: list[str]
    mean: list[float]
    std: list[float]
    indices: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        if self.kind not in KIND_SPLITS or tuple(self.indices) != KIND_SPLITS[self.kind]:
            raise ValueError(f"kind {self.kind!r} with splits {list(self.indices)}; valid: {KIND_SPLITS}")

    def save(self, directory: str | Path) -> None:
        """Write `splits.json` and one `<split>.npy` per split into `directory` (created if missing).

        The bytes depend only on the fields (sorted JSON keys, float repr round trips, `.npy` has no timestamp).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {k: np.ascontiguousarray(v, dtype=np.int64) for k, v in self.indices.items()}
        meta = {"format": FORMAT_VERSION, "kind": self.kind, "dataset": self.dataset,
                "source_fingerprint": self.source_fingerprint, "source_sizes": self.source_sizes,
                "image_shape": list(self.image_shape), "classes": self.classes, "mean": self.mean, "std": self.std,
                "splits": {k: {"source": SPLIT_SOURCES[k], "size": len(v), "sha256": digest(v.tobytes())}
                           for k, v in arrays.items()}}
        for k, v in arrays.items():
            with open(directory / f"{k}.npy", "wb") as f:
                np.save(f, v, allow_pickle=False)
        (directory / SPLITS_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: str | Path, kind: str) -> SplitIndices:
        """Read a folder written by `save`.

        Raises:
            DataError: the folder or a file is missing or unreadable, it holds the other kind of splits, or an index
                array does not match its recorded size and checksum.
        """
        directory = Path(directory)
        meta_file = directory / SPLITS_FILE
        if not meta_file.exists():
            what = "does not exist" if not directory.exists() else f"has no {SPLITS_FILE}"
            raise DataError(f"prepared data folder {directory} {what}")
        try:
            meta = json.loads(meta_file.read_text())
            if meta.get("format") != FORMAT_VERSION:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT_VERSION}")
            if meta["kind"] != kind:
                raise DataError(f"prepared data folder {directory} holds {meta['kind']} splits, not {kind} splits")
            indices = {}
            for k in KIND_SPLITS[kind]:
                v = np.load(directory / f"{k}.npy", allow_pickle=False)
                rec = meta["splits"][k]
                if v.dtype != np.int64 or v.shape != (rec["size"],) or digest(v.tobytes()) != rec["sha256"]:
                    raise ValueError(f"{k}.npy does not match its size and checksum in {SPLITS_FILE}")
                indices[k] = v
            return cls(kind, meta["dataset"], meta["source_fingerprint"], meta["source_sizes"],
                       tuple(meta["image_shape"]), meta["classes"], meta["mean"], meta["std"], indices)
        except DataError:
            raise
        except Exception as err:  # noqa: BLE001  (json, numpy, KeyError, TypeError: all mean a broken folder)
            raise DataError(f"prepared data folder {directory} is unreadable ({type(err).__name__}: {err})") from None

    def check_source(self, source: SourceData, root: str | Path) -> None:
        """Check that `source` is the data these splits were drawn from.

        Raises:
            DataError: naming the data set, `root` and what differs (name, sizes, image shape, classes, or the
                pixels/labels themselves via the fingerprint).
        """
        diffs = []
        if source.name != self.dataset:
            diffs.append(f"data set {source.name!r} instead of {self.dataset!r}")
        sizes = {"train": len(source.train_labels), "test": len(source.test_labels)}
        if sizes != self.source_sizes:
            diffs.append(f"{sizes['train']} train / {sizes['test']} test images instead of "
                         f"{self.source_sizes['train']} / {self.source_sizes['test']}")
        if source.image_shape != self.image_shape:
            diffs.append(f"images of (C, H, W) {source.image_shape} instead of {self.image_shape}")
        if source.classes != self.classes:
            diffs.append(f"classes {source.classes} instead of {self.classes}")
        fingerprint = source.fingerprint()
        if fingerprint != self.source_fingerprint:
            diffs.append(f"images/labels fingerprint {fingerprint} instead of {self.source_fingerprint}")
        if diffs:
            raise DataError(f"{self.dataset} read from root {root} is not the data its {self.kind} splits were "
                            f"prepared from: " + "; ".join(diffs))

    def materialize(self, source: SourceData) -> dict[str, ImageSplit]:
        """split name -> `ImageSplit` of the source's images at the indices (no fingerprint check: see
        `check_source`). A streamed source's splits hold `ImageFiles` of the indexed files (nothing decoded).

        Raises:
            DataError: an index is out of range of its source set.
        """
        out = {}
        for k, idx in self.indices.items():
            x, y = source.arrays(SPLIT_SOURCES[k])
            if len(idx) and (idx.min() < 0 or idx.max() >= len(y)):
                raise DataError(f"{self.dataset}: {k} indices outside the {len(y)} {SPLIT_SOURCES[k]} images")
            t = torch.from_numpy(idx)
            images = x[t] if isinstance(x, ImageFiles) else x[t].contiguous()
            out[k] = ImageSplit(images, y[t].long(), SPLIT_SOURCES[k], t)
        return out


def _stratified_subset(labels: np.ndarray, pool: np.ndarray, size: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import train_test_split  # on use only: importing it takes ~1 s

    if size == 0 or size >= len(pool):
        return np.sort(pool)
    picked, _ = train_test_split(pool, train_size=size, stratify=labels[pool], random_state=seed)
    return np.sort(picked)


def make_splits(source: SourceData, search_train_size: int, search_val_size: int, train_size: int = 0,
                test_size: int = 0, split_seed: int = 0) -> tuple[SplitIndices, SplitIndices]:
    """Draw the four splits of `source`; returns (search splits, train splits).

    search_train and search_val are disjoint stratified subsets of the training images (sizes in images): a pool
    of search_train_size + search_val_size images (seed split_seed; all when that is every image), split in two
    (seed split_seed + 1). train is a stratified subset of the training images for the final network (0 = all;
    seed split_seed + 2); test a stratified subset of the test images (0 or >= M = all; seed split_seed + 3).
    Every index array is sorted. Mean/std: per channel over all training images (`channel_mean_std`).

    Raises:
        DataError: search_train_size + search_val_size exceeds the training images, or a size scikit-learn
            cannot stratify (e.g. fewer images than classes).
    """
    from sklearn.model_selection import train_test_split  # on use only: importing it takes ~1 s

    n = len(source.train_labels)
    if search_train_size + search_val_size > n:
        raise DataError(f"search_train_size + search_val_size = {search_train_size + search_val_size} exceeds the "
                        f"{n} training images of {source.name}")
    y = source.train_labels.numpy()
    try:
        idx_search, _ = (np.arange(n), None) if search_train_size + search_val_size == n else train_test_split(
            np.arange(n), train_size=search_train_size + search_val_size, stratify=y, random_state=split_seed)
        idx_st, idx_sv = train_test_split(idx_search, train_size=search_train_size, stratify=y[idx_search],
                                          random_state=split_seed + 1)
        idx_train = _stratified_subset(y, np.arange(n), train_size, split_seed + 2)
        idx_test = _stratified_subset(source.test_labels.numpy(), np.arange(len(source.test_labels)), test_size,
                                      split_seed + 3)
    except ValueError as err:
        raise DataError(f"cannot split {source.name} (search_train_size={search_train_size}, search_val_size="
                        f"{search_val_size}, train_size={train_size}, test_size={test_size}): {err}") from None
    mean, std = channel_mean_std(source.train_images)
    common = dict(dataset=source.name, source_fingerprint=source.fingerprint(),
                  source_sizes={"train": n, "test": len(source.test_labels)}, image_shape=source.image_shape,
                  classes=list(source.classes), mean=mean, std=std)
    as_int64 = lambda a: np.ascontiguousarray(a, dtype=np.int64)  # noqa: E731
    search = SplitIndices("search", **common,
                          indices={"search_train": as_int64(np.sort(idx_st)), "search_val": as_int64(np.sort(idx_sv))})
    final = SplitIndices("train", **common, indices={"train": as_int64(idx_train), "test": as_int64(idx_test)})
    return search, final
