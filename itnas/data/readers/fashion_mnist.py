"""Fashion-MNIST (Xiao et al. 2017), found in order: (1) the torchvision layout under `root`
(`root/FashionMNIST/raw/`), (2) the Debian package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/*.gz`,
decompressed into (1)), (3) torchvision `download=True` when `download` is set."""


from __future__ import annotations

import gzip
import logging
import shutil
from pathlib import Path

from ..containers import DataError, SourceData
from ..registry import register_dataset

__all__ = ["DEBIAN_FASHION_MNIST", "FASHION_MNIST_FILES"]

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                       "t10k-labels-idx1-ubyte")


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
