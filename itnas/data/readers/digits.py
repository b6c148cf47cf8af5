"""scikit-learn's bundled 8x8 digits: a tiny data set that needs no files (tests, smoke runs)."""


from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..containers import SourceData
from ..registry import register_dataset

__all__: list[str] = []


@register_dataset("digits", num_classes=10)
def _digits(root: Path, download: bool) -> SourceData:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes; `root` and `download` unused), scaled to uint8
    and split 75/25 into train/test (stratified, seed 0: a fixed test set, like a real data set's)."""
    from sklearn.datasets import load_digits  # scikit-learn imported on use only (~1 s)
    from sklearn.model_selection import train_test_split

    d = load_digits()
    images = torch.from_numpy((d.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(d.target.astype(np.int64))
    idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=0.25, stratify=d.target, random_state=0)
    return SourceData("digits", images[idx_train], labels[idx_train], images[idx_test], labels[idx_test],
                      [str(i) for i in range(10)])
