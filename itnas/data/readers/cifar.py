"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009).

CIFAR-10 is found as (1) the python batches in `root/cifar-10-batches-py/`, read with pickle directly (no MD5 check,
so re-encoded copies load), (2) ImageFolder trees `root/cifar10/{train,test}/<class>/*.png|jpg`, (3) a torchvision
download into (1). CIFAR-100 (`root/cifar-100-python/`) is read the same way, else downloaded. A data set not found,
or a file unreadable or of the wrong shape, raises one `DataError` naming the paths looked for and the ways to
provide the data.
"""


from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..containers import DataError, SourceData
from ..registry import register_dataset
from .common import absent, not_found, partly

__all__ = ["CIFAR100_FILES", "CIFAR10_CLASSES", "CIFAR10_FILES"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta")
CIFAR100_FILES = ("train", "test", "meta")


def _unpickle(path: Path) -> dict[str, object]:
    """The dict in CIFAR pickle `path`, keys as str (the CIFAR site's Python 2 pickles load with bytes keys and
    values under encoding="bytes"). Raises DataError when unreadable or not a dict."""
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except Exception as err:  # noqa: BLE001  (pickle raises UnpicklingError, EOFError, ValueError, ...)
        raise DataError(f"{path}: not a readable pickle ({type(err).__name__}: {err})") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(d).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def _cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3, 32, 32) uint8, labels (N,) int64) of a CIFAR batch: `data` rows of 3072 bytes (the R, G, B
    planes, each 32x32 row-major) and `label_key` a list of N labels. Raises DataError on a missing key, wrong
    shape or dtype, or a label outside [0, num_classes)."""
    d = _unpickle(path)
    try:
        x, y = np.asarray(d["data"]), np.asarray(d[label_key], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: no usable data and {label_key} entries ({type(err).__name__}: {err}; keys: "
                        f"{', '.join(map(str, d))})") from None
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or y.shape != (len(x),):
        raise DataError(f"{path}: expected data (N, 3072) uint8 and {label_key} (N,), got data {x.shape} {x.dtype} "
                        f"and {label_key} {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"{path}: {label_key} outside [0, {num_classes})")
    return x.reshape(-1, 3, 32, 32), y


def _cifar_pickles(name: str, folder: Path, files: tuple[str, ...], label_key: str, names_key: str,
                   num_classes: int) -> SourceData:
    """SourceData from CIFAR pickles in `folder`: files = (*train batches, test batch, meta); train = the train
    batches concatenated in order; class names = meta[names_key]."""
    train = [_cifar_batch(folder / f, label_key, num_classes) for f in files[:-2]]
    test = _cifar_batch(folder / files[-2], label_key, num_classes)
    names = _unpickle(folder / files[-1]).get(names_key)
    if not isinstance(names, list | tuple) or len(names) != num_classes:
        raise DataError(f"{folder / files[-1]}: expected {names_key} to list {num_classes} class names")
    return SourceData(name, torch.from_numpy(np.concatenate([x for x, _ in train])),
                      torch.from_numpy(np.concatenate([y for _, y in train])), torch.from_numpy(test[0].copy()),
                      torch.from_numpy(test[1]), [n.decode() if isinstance(n, bytes) else str(n) for n in names])


def _cifar10_image_folders(folder: Path) -> SourceData:
    """CIFAR-10 from ImageFolder trees folder/{train,test}/<class>/*.png|jpg of 32x32 images (RGB after PIL's
    convert; JPEG is lossy). Classes in ImageFolder's sorted order, which for the standard class folder names is the
    standard CIFAR-10 order (they are alphabetical); images sorted by file name within a class. Raises DataError on
    an unreadable or non-32x32 image, or class folders that differ between train and test or are not 10."""
    from PIL import Image
    from torchvision.datasets import ImageFolder

    arrays, classes = [], None
    for split in ("train", "test"):
        try:
            ds = ImageFolder(str(folder / split))
        except (FileNotFoundError, OSError) as err:
            raise DataError(f"{folder / split}: not a usable ImageFolder tree ({err})") from None
        if (classes is not None and ds.classes != classes) or len(ds.classes) != 10:
            raise DataError(f"{folder / split}: class folders {ds.classes} must be 10, the same in train and test")
        classes, images = ds.classes, []
        for path, _ in ds.samples:
            try:
                with Image.open(path) as im:
                    images.append(np.asarray(im.convert("RGB")))
            except OSError as err:
                raise DataError(f"{path}: unreadable image ({err})") from None
            if images[-1].shape != (32, 32, 3):
                raise DataError(f"{path}: image is {images[-1].shape[1]}x{images[-1].shape[0]}, expected 32x32")
        arrays += [torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy()), torch.tensor(ds.targets)]
    return SourceData("cifar10", *arrays, classes)


@register_dataset("cifar10", num_classes=10)
def _cifar10(root: Path, download: bool) -> SourceData:
    """CIFAR-10 (Krizhevsky 2009): 50,000 + 10,000 images of 3x32x32, 10 classes (airplane ... truck).

    Found as (1) the python batches root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}, read with
    pickle directly (torchvision's reader checks MD5 sums and refuses re-encoded copies); train = data_batch_1..5
    concatenated in order; (2) ImageFolder trees root/cifar10/{train,test}/<class>/; (3) a torchvision download into
    (1) when `download`.

    Raises:
        DataError: none found (the message names the paths and the ways), or a file unreadable or of wrong shape.
    """
    batches, folders = root / "cifar-10-batches-py", root / "cifar10"
    if not absent(batches, CIFAR10_FILES):
        return _cifar_pickles("cifar10", batches, CIFAR10_FILES, "labels", "label_names", 10)
    if (folders / "train").is_dir() and (folders / "test").is_dir():
        return _cifar10_image_folders(folders)
    from torchvision.datasets import CIFAR10

    not_found("CIFAR-10", root, [
        f"put the python batches {', '.join(CIFAR10_FILES)} in {batches}/{partly(batches, CIFAR10_FILES)} "
        f"(cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, extracted)",
        f"put 32x32 PNG/JPEG images in ImageFolder trees {folders / 'train'}/<class>/ and {folders / 'test'}/<class>/ "
        f"(class folders {', '.join(CIFAR10_CLASSES)} keep the standard label order)"],
        download, lambda: CIFAR10(str(root), train=True, download=True))
    return _cifar_pickles("cifar10", batches, CIFAR10_FILES, "labels", "label_names", 10)


@register_dataset("cifar100", num_classes=100)
def _cifar100(root: Path, download: bool) -> SourceData:
    """CIFAR-100 (Krizhevsky 2009): 50,000 + 10,000 images of 3x32x32, 100 classes (the fine labels).

    Found as (1) the python pickles root/cifar-100-python/{train, test, meta} (keys data, fine_labels;
    fine_label_names), read with pickle directly (no MD5 check); (2) a torchvision download into (1) when `download`.

    Raises:
        DataError: not found (the message names the paths and the ways), or a file unreadable or of wrong shape.
    """
    folder = root / "cifar-100-python"
    if absent(folder, CIFAR100_FILES):
        from torchvision.datasets import CIFAR100

        not_found("CIFAR-100", root, [
            f"put the python pickles {', '.join(CIFAR100_FILES)} in {folder}/{partly(folder, CIFAR100_FILES)} "
            f"(cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, extracted)"],
            download, lambda: CIFAR100(str(root), train=True, download=True))
    return _cifar_pickles("cifar100", folder, CIFAR100_FILES, "fine_labels", "fine_label_names", 100)
