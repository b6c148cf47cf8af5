"""SVHN (Netzer et al. 2011), cropped digits: `*_32x32.mat` in `root/svhn/` or `root/`, else downloaded."""


from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..containers import DataError, SourceData
from ..registry import register_dataset
from .common import absent, not_found, partly

__all__ = ["SVHN_FILES"]

SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")


def _svhn_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 3, 32, 32) uint8, labels (N,) int64) of an SVHN .mat file: X (32, 32, 3, N) uint8 and y (N, 1)
    in 1..10, where 10 is the digit 0 (mapped to 0; 0 is accepted too). Raises DataError when unreadable, a key is
    missing, or a shape, dtype or label is wrong."""
    from scipy.io import loadmat

    try:
        d = loadmat(path)
        x, y = d["X"], np.asarray(d["y"]).astype(np.int64).ravel()
    except Exception as err:  # noqa: BLE001  (scipy raises MatReadError, ValueError, KeyError, ...)
        raise DataError(f"{path}: not a readable SVHN .mat file ({type(err).__name__}: {err})") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.shape != (x.shape[3],):
        raise DataError(f"{path}: expected X (32, 32, 3, N) uint8 and y (N, 1), got X {x.shape} {x.dtype} and y "
                        f"{np.shape(d['y'])}")
    if len(y) and (y.min() < 0 or y.max() > 10):
        raise DataError(f"{path}: labels y outside 1..10")
    y[y == 10] = 0
    return torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1))), torch.from_numpy(y)


@register_dataset("svhn", num_classes=10)
def _svhn(root: Path, download: bool) -> SourceData:
    """SVHN (Netzer et al. 2011), cropped digits: 73,257 + 26,032 images of 3x32x32, classes "0".."9".

    Found as root/svhn/ or root/ holding train_32x32.mat and test_32x32.mat (read with scipy; extra_32x32.mat is
    not used), else a torchvision download into root/svhn/ when `download`.

    Raises:
        DataError: not found (the message names the paths and the ways), or a file unreadable or of wrong shape.
    """
    folder = next((f for f in (root / "svhn", root) if not absent(f, SVHN_FILES)), None)
    if folder is None:
        from torchvision.datasets import SVHN

        folder = root / "svhn"
        not_found("SVHN", root, [
            f"put {', '.join(SVHN_FILES)} in {folder}/{partly(folder, SVHN_FILES)} or in {root}/"
            f"{partly(root, SVHN_FILES)} (format 2, cropped digits, from http://ufldl.stanford.edu/housenumbers/)"],
            download, lambda: [SVHN(str(folder), split=s, download=True) for s in ("train", "test")])
    return SourceData("svhn", *_svhn_mat(folder / SVHN_FILES[0]), *_svhn_mat(folder / SVHN_FILES[1]),
                      [str(i) for i in range(10)])
