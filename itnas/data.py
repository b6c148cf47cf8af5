"""Data for the stages: sources (`itnas.datasets`), splits (`itnas.splits`), and here the samples and loaders.

`ImageDataset` turns an `ImageSplit` into normalised float samples (optionally resized once, augmented; a streamed
split of image files is decoded, cropped and augmented per sample, ImageNet style); `make_loader` into seeded batches
whose order depends only on (seed, epoch), or on a given sampler; training loaders drop a tail batch of one sample
(`drop_single`, `num_batches`).
Everything of the two other modules is re-exported, so `from itnas.data import ...` reaches the whole data API.
"""


from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .datasets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataError,
    ImageFiles,
    ImageSplit,
    SourceData,
    channel_mean_std,
    create_dataset,
    dataset_num_classes,
    list_datasets,
    read_image_folder,
    register_dataset,
)
from .distributed import DistContext, ShardedBatches
from .splits import (
    ContentOverlap,
    SearchData,
    SplitIndices,
    TrainData,
    assert_search_excludes_test,
    find_test_overlap,
    load_search_data,
    load_train_data,
    make_splits,
)

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ContentOverlap", "DataError", "ImageDataset", "ImageFiles", "ImageSplit",
           "SearchData", "SourceData", "SplitIndices", "TrainData", "assert_search_excludes_test", "channel_mean_std",
           "create_dataset", "dataset_num_classes", "find_test_overlap", "list_datasets", "load_search_data",
           "load_train_data", "make_loader", "make_splits", "num_batches", "read_image_folder", "register_dataset"]

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


def num_batches(n: int, batch_size: int, drop_last: bool = False, drop_single: bool = False) -> int:
    """Batches of a loader over `n` samples (see `make_loader`): ceil(n / batch_size), minus the tail when it is
    dropped (`drop_last`: any partial tail; `drop_single`: a tail of exactly one sample after a full batch)."""
    full, tail = divmod(n, batch_size)
    if tail and (drop_last or (drop_single and tail == 1 and full)):
        return full
    return full + (tail > 0)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0,
                drop_last: bool = False, sampler: Sampler | None = None, drop_single: bool = False,
                num_workers: int = 0, shard: DistContext | None = None) -> DataLoader:
    """A loader for one epoch: the order depends only on (seed, epoch), so a resumed run sees the same batches.

    Yields (x (B, C, H, W) float, y (B,) int64, index (B,) int64 into `dataset`) with B = batch_size (the last
    batch smaller unless drop_last). `drop_single` (training loaders) drops the last batch only when it holds a
    single sample after at least one full batch: batch norm in train mode cannot normalise one value per channel
    (a batch of one at a 1x1 map, e.g. the auxiliary head's), and every other size keeps its batches unchanged.
    `sampler` (e.g. a `DistributedSampler`) replaces the seeded shuffle and `shuffle` is ignored; when it has
    `set_epoch` it is called with `epoch`. The loader's own generator is seeded either way, so iterating never
    draws from the global RNG. `num_workers` > 0 decodes in that many worker processes (streamed data sets, whose
    samples are decoded per item); each worker's random augmentation is seeded from the loader's generator, so
    the batches still depend only on (seed, epoch, num_workers).

    `shard` (a `DistContext` of several processes): this rank's share of data-parallel batches
    (`itnas.distributed.ShardedBatches`: global batches of world_size x batch_size from one (seed, epoch)
    permutation, split over the ranks; `drop_single` keeps the last global batch only when every rank gets at least
    2 samples); `batch_size` is then per process and `sampler` and `drop_last` must be left unset.
    """
    sharded = shard is not None and shard.enabled
    # each rank's workers augment differently
    g = torch.Generator().manual_seed(seed * 100_003 + epoch + (7_919 * (shard.rank + 1) if sharded else 0))
    if sharded:
        if sampler is not None or drop_last:
            raise ValueError("make_loader: shard cannot be combined with sampler or drop_last")
        batches = ShardedBatches(len(dataset), batch_size, shard, shuffle, seed, epoch, 2 if drop_single else 1)
        return DataLoader(dataset, batch_sampler=batches, generator=g, num_workers=num_workers)
    n = len(sampler) if sampler is not None else len(dataset)
    drop_last = drop_last or num_batches(n, batch_size, drop_single=drop_single) < num_batches(n, batch_size)
    if sampler is None:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g, drop_last=drop_last,
                          num_workers=num_workers)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, generator=g, drop_last=drop_last,
                      num_workers=num_workers)
