"""Data sources: a registry of data sets (timm style) read into `SourceData`.

`create_dataset(name, root, download)` reads a data set into a `SourceData` (uint8 train and test images with
labels and class names); `list_datasets()` names the entries, `register_dataset` adds one, `dataset_num_classes`
gives an entry's number of classes without reading it (the params check needs it before any data is loaded).
`SourceData.fingerprint()` hashes its images and labels. `channel_mean_std` gives the per-channel
normalisation of the training images (exact, from integer pixel histograms).

Fashion-MNIST is found, in order: (1) the torchvision layout under `root` (`root/FashionMNIST/raw/`),
(2) the Debian package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/*.gz`, decompressed into
(1)), (3) torchvision `download=True` when `download` is set.
"""


from __future__ import annotations

import gzip
import hashlib
import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

__all__ = ["DataError", "ImageSplit", "SourceData", "channel_mean_std", "create_dataset", "dataset_num_classes",
           "list_datasets", "register_dataset"]

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                       "t10k-labels-idx1-ubyte")


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
_NUM_CLASSES: dict[str, int] = {}  # what each entry declares, known before reading it


def register_dataset(name: str, num_classes: int | None = None) -> Callable[[DatasetReader], DatasetReader]:
    """Decorator: register `reader(root: Path, download: bool) -> SourceData` under `name`, with the number of
    classes it yields (`num_classes`; lets the params check reject split sizes before any data is read).

    Raises:
        ValueError: `name` is already registered.
    """

    def add(reader: DatasetReader) -> DatasetReader:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        _DATASETS[name] = reader
        if num_classes is not None:
            _NUM_CLASSES[name] = num_classes
        return reader

    return add


def dataset_num_classes(name: str) -> int | None:
    """The number of classes registered data set `name` declares, or None (unknown name, or none declared)."""
    return _NUM_CLASSES.get(name)


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


@register_dataset("fashion_mnist", num_classes=10)
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


@register_dataset("digits", num_classes=10)
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


# -------------------------------------------------------------------------------------------- normalisation
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


