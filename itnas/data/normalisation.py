"""Per-channel normalisation statistics of a source's training images (`channel_mean_std`): exact, from integer
pixel histograms; for streamed sources (`ImageFiles`) the standard ImageNet statistics."""


from __future__ import annotations

import math

import numpy as np

from .containers import ImageFiles, Images

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "channel_mean_std"]

#: Per-channel (R, G, B) mean and std of ImageNet's training images / 255: the statistics torchvision's ImageNet
#: models and the DARTS ImageNet recipe (cnn/train_imagenet.py) normalise with; used for every streamed source.
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def channel_mean_std(images: Images) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation (unbiased, as `torch.std`) of images / 255.

    images: (N, C, H, W) uint8. Computed exactly from integer pixel histograms, then correctly rounded to float64,
    so the result does not depend on the thread count (a float32 `mean` over 47M pixels does in its last bit).
    Returns two lists of C floats; std is nan when there is a single pixel per channel.

    For `ImageFiles` (a streamed source) nothing is decoded: the standard ImageNet statistics `IMAGENET_MEAN`,
    `IMAGENET_STD` (torchvision's) are returned, the convention for natural RGB photographs; an exact pass would
    decode every training image (hours for ImageNet) and normalise differently from every published model.
    """
    if isinstance(images, ImageFiles):
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
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


