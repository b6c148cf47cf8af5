"""Data sets, splits and loaders.

Three layers, each usable alone:

1. **Sources** (a registry, timm style): `create_dataset(name, root, download)` reads a data set into a
   `SourceData` (uint8 train and test images with labels and class names); `list_datasets()` names the entries,
   `register_dataset` adds one. `SourceData.fingerprint()` hashes its images and labels.
2. **Splits as indices**: `make_splits` picks search-train / search-val (disjoint, stratified, from the training
   images), the final-training subset (training images) and the test subset (test images) with scikit-learn's
   `train_test_split`. It returns two `SplitIndices`: the *search* splits and the *train* splits (final training
   + test), each with the source fingerprint and what a model needs to know (classes, mean/std, image shape).
   `SplitIndices.save` writes a folder whose bytes depend only on those computed values (JSON + `.npy`; no
   config, paths or timestamps), so a change of the final-training sizes leaves the search folder unchanged and
   a new `root` holding the same images leaves both unchanged.
3. **Loading**: `load_search_data` / `load_train_data` read one folder, re-read the source through the registry,
   check its fingerprint and return `SearchData` / `TrainData` holding `ImageSplit`s. `ImageDataset` turns a
   split into normalised float samples, `make_loader` into seeded batches.

No test image in search: every sample carries its provenance (`source`, `source_index`);
`assert_search_excludes_test` checks the provenance and `find_test_overlap` compares image bytes (it tells a
leaked test image from an image the source itself holds twice, in its train and in its test set).

Fashion-MNIST is found, in order: (1) the torchvision layout under `root` (`root/FashionMNIST/raw/`),
(2) the Debian package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/*.gz`, decompressed into
(1)), (3) torchvision `download=True` when `download` is set.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = ["ContentOverlap", "DataError", "ImageDataset", "ImageSplit", "SearchData", "SourceData", "SplitIndices",
           "TrainData", "assert_search_excludes_test", "channel_mean_std", "create_dataset", "find_test_overlap",
           "list_datasets", "load_search_data", "load_train_data", "make_loader", "make_splits", "register_dataset"]

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                       "t10k-labels-idx1-ubyte")

#: Which set of the source each split indexes into.
SPLIT_SOURCES = {"search_train": "train", "search_val": "train", "train": "train", "test": "test"}
#: The splits of each prepared folder (`SplitIndices.kind`).
KIND_SPLITS = {"search": ("search_train", "search_val"), "train": ("train", "test")}
SPLITS_FILE = "splits.json"  # metadata of a prepared folder; the index arrays are <split>.npy beside it
FORMAT_VERSION = 1


class DataError(RuntimeError):
    """A data set or prepared folder that cannot be found, read or trusted; the message says what and where."""


@dataclass
class ImageSplit:
    """Images of one split. images: (N, C, H, W) uint8; labels: (N,) int64; source_index: (N,) int64 index into
    the original `source` set ("train" or "test")."""

    images: torch.Tensor
    labels: torch.Tensor
    source: str
    source_index: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict:
        return {"images": self.images, "labels": self.labels, "source": self.source, "source_index": self.source_index}


def _digest(*parts: bytes | str) -> str:
    """SHA-256 (hex, 16 chars) of the parts in order."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------- sources
@dataclass(frozen=True, eq=False)
class SourceData:
    """A data set as read from disk: the fixed train and test sets.

    train_images: (N, C, H, W) uint8; train_labels: (N,) int64 in [0, len(classes));
    test_images: (M, C, H, W) uint8; test_labels: (M,) int64.

    Raises:
        ValueError: wrong dtype, rank or length, a label without a class name, or train and test images of
            different (C, H, W).
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        for which in ("train", "test"):
            x, y = getattr(self, f"{which}_images"), getattr(self, f"{which}_labels")
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise ValueError(f"{self.name}: {which} images must be (N, C, H, W) uint8, got {tuple(x.shape)} "
                                 f"{x.dtype}")
            if y.dtype != torch.int64 or y.shape != (len(x),):
                raise ValueError(f"{self.name}: {which} labels must be ({len(x)},) int64, got {tuple(y.shape)} "
                                 f"{y.dtype}")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise ValueError(f"{self.name}: {which} labels outside [0, {len(self.classes)}) (one per class name)")
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ValueError(f"{self.name}: train images {tuple(self.train_images.shape[1:])} and test images "
                             f"{tuple(self.test_images.shape[1:])} differ in (C, H, W)")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image."""
        return tuple(self.train_images.shape[1:])

    def arrays(self, source: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of `source` ("train" or "test")."""
        if source not in ("train", "test"):
            raise ValueError(f"source must be 'train' or 'test', got {source!r}")
        return getattr(self, f"{source}_images"), getattr(self, f"{source}_labels")

    def fingerprint(self) -> str:
        """SHA-256 (hex, 16 chars) of the shapes, pixels and labels of the train and test sets (not the name, the
        class names or where the files were read from): equal fingerprints mean the same images and labels."""
        parts: list[bytes | str] = []
        for t in (self.train_images, self.train_labels, self.test_images, self.test_labels):
            parts += [f"{tuple(t.shape)}{t.dtype};", t.contiguous().numpy().tobytes()]
        return _digest(*parts)


DatasetReader = Callable[[Path, bool], SourceData]  # (root, download) -> SourceData
_DATASETS: dict[str, DatasetReader] = {}


def register_dataset(name: str) -> Callable[[DatasetReader], DatasetReader]:
    """Decorator: register `reader(root: Path, download: bool) -> SourceData` under `name`.

    Raises:
        ValueError: `name` is already registered.
    """

    def add(reader: DatasetReader) -> DatasetReader:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        _DATASETS[name] = reader
        return reader

    return add


def list_datasets() -> list[str]:
    """Names of the registered data sets, in registration order."""
    return list(_DATASETS)


def create_dataset(name: str, root: str | Path, download: bool = False) -> SourceData:
    """Read data set `name` (files under `root` where the data set has files; `download` lets it fetch them).

    Raises:
        KeyError: unknown name; the message lists the valid ones.
        DataError: the data set is not found or unreadable (the message says how to provide it).
    """
    try:
        reader = _DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; valid datasets: {', '.join(list_datasets())}") from None
    return reader(Path(root), download)


@register_dataset("fashion_mnist")
def _fashion_mnist(root: Path, download: bool) -> SourceData:
    """Fashion-MNIST (Xiao et al. 2017): 60,000 + 10,000 images of 1x28x28, 10 classes, via torchvision."""
    from torchvision.datasets import FashionMNIST

    raw = root / "FashionMNIST" / "raw"
    if not all((raw / f).exists() for f in FASHION_MNIST_FILES) and DEBIAN_FASHION_MNIST.is_dir():
        raw.mkdir(parents=True, exist_ok=True)
        for f in FASHION_MNIST_FILES:
            src = DEBIAN_FASHION_MNIST / f"{f}.gz"
            if src.exists() and not (raw / f).exists():
                log.info("decompressing %s -> %s", src, raw / f)
                with gzip.open(src, "rb") as fin, open(raw / f, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
    try:
        train = FashionMNIST(str(root), train=True, download=download)
        test = FashionMNIST(str(root), train=False, download=download)
    except Exception as err:  # noqa: BLE001  (torchvision raises RuntimeError, OSError, ValueError, ...)
        raise DataError(
            f"Fashion-MNIST not found ({err}). Provide it in one of three ways:\n"
            f"  1. put the four IDX files ({', '.join(FASHION_MNIST_FILES)}) in {raw}/ (torchvision layout);\n"
            f"  2. install the Debian package: apt-get install -y dataset-fashion-mnist "
            f"(files in {DEBIAN_FASHION_MNIST}/);\n"
            f"  3. set data.download: true in params.yaml (needs internet).") from None
    return SourceData("fashion_mnist", train.data.unsqueeze(1), train.targets.long(), test.data.unsqueeze(1),
                      test.targets.long(), list(train.classes))


@register_dataset("digits")
def _digits(root: Path, download: bool) -> SourceData:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes; `root` and `download` unused), scaled to uint8
    and split 75/25 into train/test (stratified, seed 0: a fixed test set, like a real data set's)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy((d.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(d.target.astype(np.int64))
    idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=0.25, stratify=d.target, random_state=0)
    return SourceData("digits", images[idx_train], labels[idx_train], images[idx_test], labels[idx_test],
                      [str(i) for i in range(10)])


# ------------------------------------------------------------------------------------------------------ splits
def channel_mean_std(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation (unbiased, as `torch.std`) of images / 255.

    images: (N, C, H, W) uint8. Computed exactly from integer pixel histograms, then correctly rounded to float64,
    so the result does not depend on the thread count (a float32 `mean` over 47M pixels does in its last bit).
    Returns two lists of C floats; std is nan when there is a single pixel per channel.
    """
    x = images.numpy()
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean, std = [], []
    values = np.arange(256, dtype=object)  # Python ints: exact sums
    for c in range(x.shape[1]):
        counts = np.bincount(x[:, c].ravel(), minlength=256).astype(object)
        s, q = int((counts * values).sum()), int((counts * values * values).sum())
        mean.append(s / (255 * n))  # int / int is correctly rounded
        std.append(math.sqrt((n * q - s * s) / (n * (n - 1) * 255 * 255)) if n > 1 else float("nan"))
    return mean, std


@dataclass(frozen=True, eq=False)
class SplitIndices:
    """The splits of one prepared folder as index arrays, plus what a model needs to know about the data.

    kind: "search" (search_train, search_val) or "train" (train, test). indices: split name -> (n,) int64, sorted,
    unique, into the source set `SPLIT_SOURCES[split]`. source_fingerprint: `SourceData.fingerprint()` of the
    source the indices were drawn from; source_sizes: {"train": N, "test": M} of that source. mean/std: per
    channel, of all the source's training images / 255. image_shape: (C, H, W).
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
                "splits": {k: {"source": SPLIT_SOURCES[k], "size": len(v), "sha256": _digest(v.tobytes())}
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
                if v.dtype != np.int64 or v.shape != (rec["size"],) or _digest(v.tobytes()) != rec["sha256"]:
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
        `check_source`).

        Raises:
            DataError: an index is out of range of its source set.
        """
        out = {}
        for k, idx in self.indices.items():
            x, y = source.arrays(SPLIT_SOURCES[k])
            if len(idx) and (idx.min() < 0 or idx.max() >= len(y)):
                raise DataError(f"{self.dataset}: {k} indices outside the {len(y)} {SPLIT_SOURCES[k]} images")
            t = torch.from_numpy(idx)
            out[k] = ImageSplit(x[t].contiguous(), y[t].long(), SPLIT_SOURCES[k], t)
        return out


def _stratified_subset(labels: np.ndarray, pool: np.ndarray, size: int, seed: int) -> np.ndarray:
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


# ---------------------------------------------------------------------------------------------- prepared data
@dataclass(frozen=True, eq=False)
class _PreparedData:
    """Splits of one prepared folder with what a model needs to know about the data (see subclasses)."""

    name: str
    classes: list[str]
    mean: list[float]
    std: list[float]
    source_fingerprint: str

    kind: ClassVar[str] = ""

    def splits(self) -> dict[str, ImageSplit]:
        """split name -> ImageSplit, in `KIND_SPLITS` order."""
        return {k: getattr(self, k) for k in KIND_SPLITS[self.kind]}

    @property
    def in_channels(self) -> int:
        return next(iter(self.splits().values())).images.shape[1]

    @property
    def image_size(self) -> int:
        return next(iter(self.splits().values())).images.shape[-1]

    def fingerprint(self) -> str:
        """SHA-256 (hex, 16 chars) of the source fingerprint and every split's name, source and indices: equal
        fingerprints mean the same images and labels in the same splits."""
        parts: list[bytes | str] = [f"{self.kind};{self.source_fingerprint};"]
        for k, s in self.splits().items():
            parts += [f"{k};{s.source};", s.source_index.contiguous().numpy().tobytes()]
        return _digest(*parts)

    @classmethod
    def from_indices(cls, indices: SplitIndices, source: SourceData) -> Self:
        """The splits of `indices` cut from `source` (already checked with `indices.check_source`).

        Raises:
            ValueError: `indices` is of the other kind. DataError: an index out of range.
        """
        if indices.kind != cls.kind:
            raise ValueError(f"{cls.__name__} needs {cls.kind} splits, got {indices.kind} splits")
        return cls(indices.dataset, list(indices.classes), list(indices.mean), list(indices.std),
                   indices.source_fingerprint, **indices.materialize(source))


@dataclass(frozen=True, eq=False)
class SearchData(_PreparedData):
    """What search, derivation and model selection see: search_train and search_val (disjoint, both from the
    training images). Images (N, C, H, W) uint8; mean/std per channel of all training images / 255."""

    search_train: ImageSplit
    search_val: ImageSplit

    kind: ClassVar[str] = "search"


@dataclass(frozen=True, eq=False)
class TrainData(_PreparedData):
    """What final training and evaluation see: train (training images) and test (test images)."""

    train: ImageSplit
    test: ImageSplit

    kind: ClassVar[str] = "train"


def _load(cls, prepared_dir: str | Path, root: str | Path, download: bool):
    indices = SplitIndices.load(prepared_dir, cls.kind)
    try:
        source = create_dataset(indices.dataset, root, download)
    except KeyError:
        raise DataError(f"prepared data folder {prepared_dir} names data set {indices.dataset!r}; valid datasets: "
                        f"{', '.join(list_datasets())}") from None
    indices.check_source(source, root)
    return cls.from_indices(indices, source)


def load_search_data(prepared_dir: str | Path, root: str | Path, download: bool = False) -> SearchData:
    """The search splits of a folder written by `SplitIndices.save`, cut from the source re-read under `root`.

    Raises:
        DataError: the folder is missing, unreadable or holds train splits; the source is not found; or the
            source under `root` is not the one the splits were drawn from (names the data set, root, difference).
    """
    return _load(SearchData, prepared_dir, root, download)


def load_train_data(prepared_dir: str | Path, root: str | Path, download: bool = False) -> TrainData:
    """The final-training and test splits of a prepared folder; see `load_search_data` (same errors)."""
    return _load(TrainData, prepared_dir, root, download)


# ------------------------------------------------------------------------------------------- no test in search
def assert_search_excludes_test(search: SearchData, test: ImageSplit | None = None) -> None:
    """No test image in search, by provenance: the search splits come from the training set and are disjoint.

    Raises:
        AssertionError: a search split has source "test", search-train and search-val overlap, or `test` (when
            given) does not have source "test".
    """
    if test is not None and test.source != "test":
        raise AssertionError(f"the test split must have source 'test', got {test.source!r}")
    for name in ("search_train", "search_val"):
        s = getattr(search, name)
        if s.source != "train":
            raise AssertionError(f"{name} must come from the training images, got source {s.source!r}")
    overlap = set(search.search_train.source_index.tolist()) & set(search.search_val.source_index.tolist())
    if overlap:
        raise AssertionError(f"search-train and search-val share {len(overlap)} images")


@dataclass(frozen=True)
class ContentOverlap:
    """Search images whose bytes equal a test image's.

    leaks: (search split, position in it, test source index) where the search image *is* that test image (same
    source and source index). duplicates: (search split, position, search image's (source, source index), test
    source index) where two different source images hold the same pixels: the data set's own duplicates.
    """

    leaks: list[tuple[str, int, int]]
    duplicates: list[tuple[str, int, tuple[str, int], int]]

    def check(self) -> None:
        """Raises AssertionError when a test image is in a search split."""
        if self.leaks:
            first = ", ".join(f"{s}[{i}] = test[{t}]" for s, i, t in self.leaks[:5])
            raise AssertionError(f"{len(self.leaks)} test images in the search splits: {first}")


def find_test_overlap(search_splits: Mapping[str, ImageSplit], test: ImageSplit) -> ContentOverlap:
    """Hash every image (SHA-256 of its bytes) of `search_splits` and of `test`; list the byte-identical pairs.

    search_splits: name -> ImageSplit, images (N, C, H, W) uint8; test: (M, C, H, W) uint8. A test image present
    k times in the test split yields k entries per search image equal to it. Runs in O(N + M) (~0.2 s for 70k
    28x28 images).
    """
    by_hash: dict[bytes, list[int]] = {}
    for j, img in enumerate(test.images.contiguous().numpy()):
        by_hash.setdefault(hashlib.sha256(img.tobytes()).digest(), []).append(j)
    test_index = test.source_index.tolist()
    leaks, duplicates = [], []
    for name, split in search_splits.items():
        index = split.source_index.tolist()
        for i, img in enumerate(split.images.contiguous().numpy()):
            for j in by_hash.get(hashlib.sha256(img.tobytes()).digest(), ()):
                if split.source == test.source and index[i] == test_index[j]:
                    leaks.append((name, i, test_index[j]))
                else:
                    duplicates.append((name, i, (split.source, index[i]), test_index[j]))
    return ContentOverlap(leaks, duplicates)


# ------------------------------------------------------------------------------------------- datasets, loaders
class ImageDataset(Dataset):
    """(image, label, index) samples from an `ImageSplit`: float (C, H, W), normalised; optional augmentation.

    `image_size` > 0 resizes (antialiased) to that side once for the whole split at construction, into
    `resized` (N, C, size, size) float32: 4 * N * C * size^2 bytes (45 MiB for 60k 1x28x28 images at 14 px).
    Samples are views of it; every transform here returns a new tensor, so the cache is never modified.
    Augmentation (DARTS CIFAR recipe): random crop with `crop_padding`, horizontal flip, cutout of `cutout` px
    (DeVries & Taylor 2017), from torchvision transforms v2 (cutout = a fixed-size `RandomErasing` square).
    """

    def __init__(self, split: ImageSplit, mean: list[float], std: list[float], augment: bool = False,
                 crop_padding: int = 4, hflip: bool = True, cutout: int = 0, image_size: int = 0):
        from torchvision.transforms import v2

        self.split = split
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.transform = None
        size = image_size or split.images.shape[-1]
        self.resized = None  # (N, C, size, size) float32, normalised: resized once, not per sample
        if image_size and image_size != split.images.shape[-1]:
            n, c = split.images.shape[:2]
            self.resized = torch.empty(n, c, size, size)
            for start in range(0, n, 4096):
                chunk = (split.images[start:start + 4096].float() / 255.0 - self.mean) / self.std
                self.resized[start:start + 4096] = v2.functional.resize(chunk, [size, size], antialias=True)
        steps = []
        if augment:
            if crop_padding:
                steps.append(v2.RandomCrop(size, padding=crop_padding))
            if hflip:
                steps.append(v2.RandomHorizontalFlip())
            if cutout:
                area = min(1.0, (cutout / size) ** 2)
                steps.append(v2.RandomErasing(p=1.0, scale=(area, area), ratio=(1.0, 1.0), value=0))
        self.transform = v2.Compose(steps) if steps else None

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        if self.resized is not None:
            x = self.resized[i]
        else:
            x = (self.split.images[i].float() / 255.0 - self.mean) / self.std
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.split.labels[i]), i


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0,
                drop_last: bool = False, sampler: Sampler | None = None) -> DataLoader:
    """A loader for one epoch: the order depends only on (seed, epoch), so a resumed run sees the same batches.

    Yields (x (B, C, H, W) float, y (B,) int64, index (B,) int64 into `dataset`) with B = batch_size (the last
    batch smaller unless drop_last). `sampler` (e.g. a `DistributedSampler`) replaces the seeded shuffle and
    `shuffle` is ignored; when it has `set_epoch` it is called with `epoch`. The loader's own generator is seeded
    either way, so iterating never draws from the global RNG.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    if sampler is None:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g, drop_last=drop_last,
                          num_workers=0)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, generator=g, drop_last=drop_last,
                      num_workers=0)
