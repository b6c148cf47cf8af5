"""Samples on the CPU: `ImageDataset` turns an `ImageSplit` into normalised float samples (optionally resized once,
augmented; a streamed split of image files is decoded, cropped and augmented per sample, ImageNet style), built one
at a time in a DataLoader. `itnas.data.augment.DeviceDataset` is the same on the device, a batch at a time.
"""


from __future__ import annotations

import torch
from torch.utils.data import Dataset

from .containers import DataError, ImageFiles, ImageSplit

__all__ = ["EVAL_RESIZE_RATIO", "ImageDataset"]

#: Evaluation resize of streamed images: the shorter side to image_size * 256 / 224 (256 px for 224), then a centre
#: crop of image_size (the standard ImageNet evaluation, DARTS cnn/train_imagenet.py).
EVAL_RESIZE_RATIO = 256 / 224


class ImageDataset(Dataset):
    """(image, label, index) samples from an `ImageSplit`: float (C, H, W), normalised; optional augmentation.

    `image_size` > 0 resizes (antialiased) to that side once for the whole split at construction, into
    `resized` (N, C, size, size) float32: 4 * N * C * size^2 bytes (45 MiB for 60k 1x28x28 images at 14 px).
    Samples are views of it; every transform here returns a new tensor, so the cache is never modified.
    Augmentation (DARTS CIFAR recipe): random crop with `crop_padding`, horizontal flip, cutout of `cutout` px
    (DeVries & Taylor 2017), from torchvision transforms v2 (cutout = a fixed-size `RandomErasing` square).

    A streamed split (`split.images` an `ImageFiles`, e.g. ImageNet) is decoded per sample (PIL, RGB) and cut to
    (3, image_size, image_size), ImageNet style (DARTS cnn/train_imagenet.py), with torchvision transforms v2:
    augment=True: `RandomResizedCrop(image_size)` (scale 0.08-1, aspect 3/4-4/3) + horizontal flip (`hflip`) +
    `ColorJitter(*color_jitter)` when given ([brightness, contrast, saturation, hue], e.g. [0.4, 0.4, 0.4, 0.2]);
    augment=False: shorter side resized to `test_resize` px (0 = int(image_size * 256 / 224)) + `CenterCrop`.
    Then float / 255, normalised, and cutout when augmenting; `crop_padding` is not used (the crop is random-resized).
    Nothing is cached: every epoch reads the files again.

    Raises:
        DataError: a streamed split without an image_size (its images have no common size), or (when a sample is
            requested) an unreadable file.
        ValueError: color_jitter for a split in RAM (it applies to decoded images only).
    """

    def __init__(self, split: ImageSplit, mean: list[float], std: list[float], augment: bool = False,
                 crop_padding: int = 4, hflip: bool = True, cutout: int = 0, image_size: int = 0,
                 color_jitter: list[float] | None = None, test_resize: int = 0):
        from torchvision.transforms import v2

        self.split = split
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.transform = None
        self.resized = None  # (N, C, size, size) float32, normalised: resized once, not per sample (tensors only)
        self.streamed = isinstance(split.images, ImageFiles)
        if self.streamed:
            self.transform = self._file_transform(v2, mean, std, augment, hflip, cutout, image_size, color_jitter,
                                                  test_resize)
            return
        if color_jitter is not None and any(color_jitter):
            raise ValueError("color_jitter applies to streamed image files (e.g. ImageNet) only; the split's images "
                             "are a tensor in RAM")
        size = image_size or split.images.shape[-1]
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

    @staticmethod
    def _file_transform(v2, mean: list[float], std: list[float], augment: bool, hflip: bool, cutout: int,
                        image_size: int, color_jitter: list[float] | None, test_resize: int):
        """The per-sample transform of a streamed split: uint8 (3, H, W) -> float (3, image_size, image_size)."""
        if image_size <= 0:
            raise DataError("the images of this split are files of varying size (a streamed data set such as "
                            "imagenet): set an image_size (search.data.image_size, train.data.image_size), e.g. "
                            "224")
        if augment:
            steps = [v2.RandomResizedCrop(image_size, antialias=True)]
            if hflip:
                steps.append(v2.RandomHorizontalFlip())
            if color_jitter is not None and any(color_jitter):
                steps.append(v2.ColorJitter(*color_jitter))
        else:
            steps = [v2.Resize(test_resize or int(image_size * EVAL_RESIZE_RATIO), antialias=True),
                     v2.CenterCrop(image_size)]
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
        if augment and cutout:
            area = min(1.0, (cutout / image_size) ** 2)
            steps.append(v2.RandomErasing(p=1.0, scale=(area, area), ratio=(1.0, 1.0), value=0))
        return v2.Compose(steps)

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        if self.streamed:
            return self.transform(self.split.images.load(i)), int(self.split.labels[i]), i
        if self.resized is not None:
            x = self.resized[i]
        else:
            x = (self.split.images[i].float() / 255.0 - self.mean) / self.std
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.split.labels[i]), i

