"""Data sets, splits and loaders.

`prepare_dataset` loads a data set through torchvision (Fashion-MNIST) or scikit-learn (digits), splits the
training images into search-train / search-val (stratified, seeded; scikit-learn `train_test_split`), picks the
final-training subset, and keeps the test images apart. Every sample carries its provenance (`source`,
`source_index`), and `assert_search_excludes_test` checks that no test image reaches search, derivation or
model selection.

Fashion-MNIST is found, in order: (1) the torchvision layout under `root` (`root/FashionMNIST/raw/`),
(2) the Debian package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/*.gz`, decompressed into
(1)), (3) torchvision `download=True` when `download` is set.
"""

from __future__ import annotations

import gzip
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset

__all__ = ["DataError", "ImageSplit", "ImageDataset", "PreparedData", "assert_search_excludes_test", "make_loader",
           "prepare_dataset"]

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                       "t10k-labels-idx1-ubyte")


class DataError(RuntimeError):
    """A data set that cannot be found or read; the message says how to provide it."""


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


@dataclass
class PreparedData:
    """The output of the prepare stage: four splits plus what a model needs to know about the data."""

    name: str
    classes: list[str]
    mean: list[float]
    std: list[float]
    search_train: ImageSplit
    search_val: ImageSplit
    train: ImageSplit
    test: ImageSplit

    @property
    def in_channels(self) -> int:
        return self.train.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.train.images.shape[-1]

    def fingerprint(self) -> str:
        """SHA-256 (hex, 16 chars) of the name and every split's provenance, labels and pixels: two prepared data
        sets with the same fingerprint hold the same images in the same splits."""
        import hashlib

        h = hashlib.sha256(self.name.encode())
        for k in ("search_train", "search_val", "train", "test"):
            s = getattr(self, k)
            for t in (s.source_index, s.labels, s.images):
                h.update(t.contiguous().numpy().tobytes())
            h.update(s.source.encode())
        return h.hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        payload = {k: getattr(self, k) for k in ("name", "classes", "mean", "std")}
        payload.update({k: getattr(self, k).to_dict() for k in ("search_train", "search_val", "train", "test")})
        torch.save(payload, path)

    @classmethod
    def load(cls, path: str | Path) -> "PreparedData":
        """Raises DataError when the file is missing or unreadable."""
        path = Path(path)
        if not path.exists():
            raise DataError(f"prepared data {path} does not exist; run the prepare stage (`itnas prepare`)")
        try:
            p = torch.load(path, weights_only=False)
            return cls(p["name"], p["classes"], p["mean"], p["std"],
                       *(ImageSplit(**p[k]) for k in ("search_train", "search_val", "train", "test")))
        except Exception as err:
            raise DataError(f"prepared data {path} is unreadable ({err}); rerun the prepare stage") from None


def _fashion_mnist(root: Path, download: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list]:
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
    except Exception as err:
        raise DataError(
            f"Fashion-MNIST not found ({err}). Provide it in one of three ways:\n"
            f"  1. put the four IDX files ({', '.join(FASHION_MNIST_FILES)}) in {raw}/ (torchvision layout);\n"
            f"  2. install the Debian package: apt-get install -y dataset-fashion-mnist "
            f"(files in {DEBIAN_FASHION_MNIST}/);\n"
            f"  3. set data.download: true in params.yaml (needs internet).") from None
    return train.data.unsqueeze(1), train.targets, test.data.unsqueeze(1), test.targets, list(train.classes)


def _digits(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list]:
    """scikit-learn's bundled 8x8 digits (1,797 images), scaled to uint8 and split 75/25 into train/test."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy((d.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(d.target.astype(np.int64))
    idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=0.25, stratify=d.target, random_state=seed)
    return images[idx_train], labels[idx_train], images[idx_test], labels[idx_test], [str(i) for i in range(10)]


def _stratified_subset(labels: np.ndarray, pool: np.ndarray, size: int, seed: int) -> np.ndarray:
    if size == 0 or size >= len(pool):
        return np.sort(pool)
    picked, _ = train_test_split(pool, train_size=size, stratify=labels[pool], random_state=seed)
    return np.sort(picked)


def prepare_dataset(dataset: str, root: str | Path, search_train_size: int, search_val_size: int,
                    train_size: int = 0, test_size: int = 0, split_seed: int = 0, download: bool = False) -> PreparedData:
    """Load `dataset` and build the four splits.

    search_train and search_val are disjoint stratified subsets of the training images (sizes in images);
    train is a stratified subset of the training images for the final network (0 = all); test is the test set
    (0 = all, else a stratified subset). Mean/std (per channel, of the training images) go with the data.

    Raises:
        DataError: data set not found (message lists the ways to provide it), or sizes too large.
        ValueError: unknown dataset name.
    """
    if dataset == "fashion_mnist":
        xtr, ytr, xte, yte, classes = _fashion_mnist(Path(root), download)
    elif dataset == "digits":
        xtr, ytr, xte, yte, classes = _digits(split_seed)
    else:
        raise ValueError(f"unknown dataset {dataset!r}; valid datasets: fashion_mnist, digits")
    n = len(ytr)
    if search_train_size + search_val_size > n:
        raise DataError(f"search_train_size + search_val_size = {search_train_size + search_val_size} exceeds the "
                        f"{n} training images of {dataset}")
    y = ytr.numpy()
    idx_search, _ = (np.arange(n), None) if search_train_size + search_val_size == n else train_test_split(
        np.arange(n), train_size=search_train_size + search_val_size, stratify=y, random_state=split_seed)
    idx_st, idx_sv = train_test_split(idx_search, train_size=search_train_size, stratify=y[idx_search],
                                      random_state=split_seed + 1)
    idx_st, idx_sv = np.sort(idx_st), np.sort(idx_sv)
    idx_train = _stratified_subset(y, np.arange(n), train_size, split_seed + 2)
    idx_test = _stratified_subset(yte.numpy(), np.arange(len(yte)), test_size, split_seed + 3)

    def split(x, labels, source, idx):
        idx = torch.from_numpy(idx)
        return ImageSplit(x[idx].contiguous(), labels[idx].long(), source, idx)

    xf = xtr.float() / 255.0
    mean = xf.mean(dim=(0, 2, 3)).tolist()
    std = xf.std(dim=(0, 2, 3)).tolist()
    data = PreparedData(dataset, classes, mean, std, split(xtr, ytr, "train", idx_st), split(xtr, ytr, "train", idx_sv),
                        split(xtr, ytr, "train", idx_train), split(xte, yte, "test", idx_test))
    assert_search_excludes_test(data)
    return data


def assert_search_excludes_test(data: PreparedData) -> None:
    """No test image in search: the search splits come from the training set and are disjoint.

    Raises:
        AssertionError: a search split has source "test", or search-train and search-val overlap.
    """
    if data.test.source != "test":
        raise AssertionError(f"the test split must have source 'test', got {data.test.source!r}")
    for name in ("search_train", "search_val"):
        s = getattr(data, name)
        if s.source != "train":
            raise AssertionError(f"{name} must come from the training images, got source {s.source!r}")
    overlap = set(data.search_train.source_index.tolist()) & set(data.search_val.source_index.tolist())
    if overlap:
        raise AssertionError(f"search-train and search-val share {len(overlap)} images")


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
                drop_last: bool = False) -> DataLoader:
    """A loader for one epoch: the order depends only on (seed, epoch), so a resumed run sees the same batches.

    Yields (x (B, C, H, W) float, y (B,) int64, index (B,) int64 into `dataset`) with B = batch_size (the last
    batch smaller unless drop_last).
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g, drop_last=drop_last,
                      num_workers=0)
