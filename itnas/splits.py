"""Splits as index arrays, prepared folders, and the check that no test image reaches the search.

`make_splits` picks search-train / search-val (disjoint, stratified, from the training images), the
final-training subset (training images) and the test subset (test images) with scikit-learn's
`train_test_split`. It returns two `SplitIndices`: the *search* splits and the *train* splits (final training +
test), each with the source fingerprint and what a model needs to know (classes, mean/std, image shape).
`SplitIndices.save` writes a folder whose bytes depend only on those computed values (JSON + `.npy`; no config,
paths or timestamps), so a change of the final-training sizes leaves the search folder unchanged and a new
`root` holding the same images leaves both unchanged. `load_search_data` / `load_train_data` read one folder,
re-read the source through the registry, check its fingerprint and return `SearchData` / `TrainData`.

No test image in search: every sample carries its provenance (`source`, `source_index`);
`assert_search_excludes_test` checks the provenance and `find_test_overlap` compares image bytes (it tells a
leaked test image from an image the source itself holds twice, in its train and in its test set).

Streamed sources (`itnas.datasets.ImageFiles`, e.g. ImageNet) go through the same functions: splits index the
files, `materialize` cuts sub-lists of files (nothing is decoded), and `find_test_overlap` compares file bytes
where that is cheap, else provenance only (see there).
"""


from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from .datasets import (
    DataError,
    ImageFiles,
    ImageSplit,
    SourceData,
    _digest,
    channel_mean_std,
    create_dataset,
    list_datasets,
)

__all__ = ["ContentOverlap", "SearchData", "SplitIndices", "TrainData", "assert_search_excludes_test",
           "find_test_overlap", "load_search_data", "load_train_data", "make_splits"]

#: Which set of the source each split indexes into.
SPLIT_SOURCES = {"search_train": "train", "search_val": "train", "train": "train", "test": "test"}
#: The splits of each prepared folder (`SplitIndices.kind`).
KIND_SPLITS = {"search": ("search_train", "search_val"), "train": ("train", "test")}
SPLITS_FILE = "splits.json"  # metadata of a prepared folder; the index arrays are <split>.npy beside it
FORMAT_VERSION = 1
#: `find_test_overlap` reads and hashes files of streamed sources only when the candidates total at most this.
MAX_OVERLAP_READ_BYTES = 1 << 30

log = logging.getLogger(__name__)


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
        """Channels of the images (3 for a streamed source: decoded as RGB)."""
        return next(iter(self.splits().values())).images.shape[1]

    @property
    def image_size(self) -> int:
        """Side (px) of the images; 0 for a streamed source (varying sizes: `ImageDataset` needs an image_size)."""
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
    training images). Images (N, C, H, W) uint8, or `ImageFiles` for a streamed source; mean/std per channel of
    all training images / 255."""

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
    compared: what was compared (`find_test_overlap`): "pixels" (the images' bytes), "file bytes" (the files of
    streamed sources) or "provenance" (source and source index only: no duplicates can be found).
    """

    leaks: list[tuple[str, int, int]]
    duplicates: list[tuple[str, int, tuple[str, int], int]]
    compared: str = "pixels"

    def check(self, allow_duplicates: bool = False) -> None:
        """Raises AssertionError when a test image is in a search split (a leak), and DataError when a search image
        has the same pixels as a test image although it is another image of the source (the data set's own
        duplicates: the search would still see test content), unless `allow_duplicates`."""
        if self.leaks:
            first = ", ".join(f"{s}[{i}] = test[{t}]" for s, i, t in self.leaks[:5])
            raise AssertionError(f"{len(self.leaks)} test images in the search splits: {first}")
        if self.duplicates and not allow_duplicates:
            first = ", ".join(f"{s}[{i}] ({src}[{j}]) = test[{t}]" for s, i, (src, j), t in self.duplicates[:5])
            raise DataError(f"{len(self.duplicates)} search images have the same pixels as a test image (the data "
                            f"set holds them twice): {first}; the search would see test content. Remove the "
                            f"duplicates from the source's training images")


def find_test_overlap(search_splits: Mapping[str, ImageSplit], test: ImageSplit,
                      max_read_bytes: int = MAX_OVERLAP_READ_BYTES) -> ContentOverlap:
    """Hash every image (SHA-256 of its bytes) of `search_splits` and of `test`; list the byte-identical pairs.

    search_splits: name -> ImageSplit, images (N, C, H, W) uint8; test: (M, C, H, W) uint8. A test image present
    k times in the test split yields k entries per search image equal to it. Runs in O(N + M) (~0.2 s for 70k
    28x28 images).

    Streamed splits (`ImageFiles`; compared "file bytes" or "provenance"): nothing is decoded. Two files can only
    be byte-identical when their sizes (known from the scan) are equal, so only the search files whose size some
    test file has, and those test files, are read and hashed, when they total at most `max_read_bytes` (default
    1 GiB). Beyond that (e.g. an ImageNet search against its 50k val images), or when search and test are not both
    streamed (e.g. CIFAR-10 search -> ImageNet test: a 32x32 array is never a JPEG file), leaks are found by
    provenance alone (a search sample with the test split's source and one of its source indices) and no
    duplicates are reported; a warning is logged in the first case. File bytes miss re-encoded or resized
    copies, as pixel bytes miss shifted ones.

    Raises:
        DataError: a candidate file cannot be read.
    """
    if any(isinstance(s.images, ImageFiles) for s in (test, *search_splits.values())):
        return _file_overlap(search_splits, test, max_read_bytes)
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


def _file_sha256(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").digest()
    except OSError as err:
        raise DataError(f"{path}: unreadable ({type(err).__name__}: {err})") from None


def _file_overlap(search_splits: Mapping[str, ImageSplit], test: ImageSplit, max_read_bytes: int) -> ContentOverlap:
    """`find_test_overlap` where a split is streamed: provenance leaks always; duplicates by the bytes of the
    same-size files when search and test are both streamed and the candidates total <= max_read_bytes."""
    test_index = test.source_index.tolist()
    position = {}  # test source index -> positions in the test split
    for j, t in enumerate(test_index):
        position.setdefault(t, []).append(j)
    leaks = [(name, i, test_index[j]) for name, split in search_splits.items() if split.source == test.source
             for i, t in enumerate(split.source_index.tolist()) for j in position.get(t, ())]
    splits = {k: s for k, s in search_splits.items() if isinstance(s.images, ImageFiles)}
    if not isinstance(test.images, ImageFiles) or len(splits) < len(search_splits):
        return ContentOverlap(leaks, [], "provenance")
    test_sizes = test.images.sizes
    candidates = {k: np.flatnonzero(np.isin(s.images.sizes, test_sizes)) for k, s in splits.items()}
    hit_sizes = np.concatenate([s.images.sizes[candidates[k]] for k, s in splits.items()] + [np.zeros(0, np.int64)])
    test_candidates = np.flatnonzero(np.isin(test_sizes, hit_sizes))
    total = int(hit_sizes.sum()) + int(test_sizes[test_candidates].sum())
    if total > max_read_bytes:
        log.warning("test overlap by provenance only: comparing file bytes would read %.1f GiB of same-size files "
                    "(limit %.1f GiB)", total / 2**30, max_read_bytes / 2**30)
        return ContentOverlap(leaks, [], "provenance")
    by_hash: dict[bytes, list[int]] = {}
    for j in test_candidates.tolist():
        by_hash.setdefault(_file_sha256(test.images.path(j)), []).append(j)
    duplicates = []
    for name, split in splits.items():
        index = split.source_index.tolist()
        for i in candidates[name].tolist():
            for j in by_hash.get(_file_sha256(split.images.path(i)), ()):
                if not (split.source == test.source and index[i] == test_index[j]):  # that one is a leak
                    duplicates.append((name, i, (split.source, index[i]), test_index[j]))
    return ContentOverlap(leaks, duplicates, "file bytes")
