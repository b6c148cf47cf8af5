"""Tiny data-set files in each real on-disk format, for tests (not a test module): CIFAR-10 python batches,
CIFAR-100 python pickles and SVHN .mat files of random pixels. Each writer returns what it wrote, in file order,
so a reader can be checked pixel for pixel; each draws from its own seeded generator (the same files every call)."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.io

from itnas.data.readers.cifar import CIFAR10_CLASSES


def random_images(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random images (n, 3, 32, 32) uint8."""
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def dump_pickle(path: Path, d: dict) -> None:
    """`d` pickled (protocol 2, as the CIFAR python files) to `path`, its folder created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


def _cifar_batch(x: np.ndarray, y: list[int], label_key: bytes) -> dict:
    """A batch dict as in the CIFAR python files: bytes keys, data (N, 3072) uint8 rows of CHW pixels."""
    return {b"batch_label": b"tiny batch", label_key: y, b"data": x.reshape(len(x), 3072),
            b"filenames": [f"img_{i}.png".encode() for i in range(len(x))]}


def write_cifar10(root: Path, per_class: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """root/cifar-10-batches-py/ with 5 data batches of 2 * per_class images (per_class of each class over the 5)
    and a test batch of 20 (2 per class). Returns (train images, train labels, test images, test labels)."""
    rng, folder, xs, ys = np.random.default_rng(0), root / "cifar-10-batches-py", [], []
    for b in range(1, 6):
        x, y = random_images(rng, 2 * per_class), [(2 * b + i) % 10 for i in range(2 * per_class)]
        dump_pickle(folder / f"data_batch_{b}", _cifar_batch(x, y, b"labels"))
        xs.append(x)
        ys += y
    x_test, y_test = random_images(rng, 20), [i % 10 for i in range(20)]
    dump_pickle(folder / "test_batch", _cifar_batch(x_test, y_test, b"labels"))
    dump_pickle(folder / "batches.meta", {b"num_cases_per_batch": 2 * per_class, b"num_vis": 3072,
                                          b"label_names": [c.encode() for c in CIFAR10_CLASSES]})
    return np.concatenate(xs), np.array(ys), x_test, np.array(y_test)


def write_cifar100(root: Path, present: Sequence[int] = (0, 5, 42, 99), per_class: int = 3,
                   test_per_class: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """root/cifar-100-python/{train,test,meta} with the fine classes `present` (per_class train and test_per_class
    test images each). Returns (train images, labels, test images, labels, the 100 class names)."""
    rng, folder = np.random.default_rng(1), root / "cifar-100-python"
    y_train = [c for c in present for _ in range(per_class)]
    y_test = [c for c in present for _ in range(test_per_class)]
    x_train, x_test = random_images(rng, len(y_train)), random_images(rng, len(y_test))
    names = [f"fine_{i:02d}" for i in range(100)]
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        dump_pickle(folder / split, {**_cifar_batch(x, y, b"fine_labels"), b"coarse_labels": [c // 5 for c in y]})
    dump_pickle(folder / "meta", {b"fine_label_names": [n.encode() for n in names],
                                  b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)]})
    return x_train, np.array(y_train), x_test, np.array(y_test), names


def write_svhn(folder: Path, per_class: int = 2, test_per_class: int = 1) -> tuple[np.ndarray, ...]:
    """train_32x32.mat (per_class per digit) and test_32x32.mat (test_per_class per digit) in `folder`:
    X (32, 32, 3, N) uint8, y (N, 1) uint8 with 10 for the digit 0. Returns (train images, digits, test images,
    digits)."""
    rng = np.random.default_rng(2)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for split, n in (("train", 10 * per_class), ("test", 10 * test_per_class)):
        x, digits = random_images(rng, n), np.arange(n) % 10
        y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(n, 1)
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x.transpose(2, 3, 1, 0), "y": y})
        out += [x, digits]
    return tuple(out)
