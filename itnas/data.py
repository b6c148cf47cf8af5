"""Data for the stages: sources (`itnas.datasets`), splits (`itnas.splits`), and here the samples and loaders.

`ImageDataset` turns an `ImageSplit` into normalised float samples (optionally resized once, augmented; a streamed
split of image files is decoded, cropped and augmented per sample, ImageNet style); `make_loader` into seeded batches
whose order depends only on (seed, epoch), or on a given sampler; training loaders drop a tail batch of one sample
(`drop_single`, `num_batches`). A split in RAM can instead live on the run's device (`itnas.augment.DeviceDataset`:
uploaded once, batches normalised and augmented there with tensor ops); `make_dataset` picks one of the two
(`data.on_device`), `make_loader` serves both with the same batch order, and `loader_options`
gives the DataLoader's workers and pinned memory (`data.num_workers`).
Everything of the two other modules is re-exported, so `from itnas.data import ...` reaches the whole data API.
"""


from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .augment import DeviceDataset, fits_on_device, split_bytes
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

__all__ = ["CUDA_NUM_WORKERS", "IMAGENET_MEAN", "IMAGENET_STD", "ContentOverlap", "DataError", "DeviceDataset",
           "ImageDataset", "ImageFiles", "ImageSplit", "SearchData", "SourceData", "SplitIndices", "TrainData",
           "assert_search_excludes_test", "channel_mean_std", "create_dataset", "dataset_num_classes",
           "find_test_overlap", "list_datasets", "load_search_data", "load_train_data", "loader_options",
           "make_dataset", "make_loader", "make_splits", "num_batches", "read_image_folder", "register_dataset",
           "resolve_on_device"]

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


def make_loader(dataset: Dataset | DeviceDataset, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0,
                drop_last: bool = False, sampler: Sampler | None = None, drop_single: bool = False,
                num_workers: int = 0, shard: DistContext | None = None, pin_memory: bool = False):
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

    `pin_memory`: batches in page-locked memory (faster, asynchronous copies to a CUDA device); with num_workers > 0
    the workers persist until the loader is dropped (`persistent_workers`; the loader is one epoch's).

    A `DeviceDataset` (`itnas.augment`): the same batches of indices (the DataLoader's own order, computed by a
    DataLoader over the indices), served by `DeviceDataset.batches` on its device with the augmentation of
    (seed, epoch); num_workers and pin_memory do not apply.
    """
    if isinstance(dataset, DeviceDataset):  # the order of the DataLoader below, over the indices 0..n-1 (as lists)
        indices = make_loader(range(len(dataset)), batch_size, shuffle, seed, epoch, drop_last, sampler,
                              drop_single, 0, shard)
        indices.collate_fn = list
        return dataset.batches(list(indices), seed, epoch)
    workers = {"num_workers": num_workers, "pin_memory": pin_memory, "persistent_workers": num_workers > 0}
    sharded = shard is not None and shard.enabled
    # each rank's workers augment differently
    g = torch.Generator().manual_seed(seed * 100_003 + epoch + (7_919 * (shard.rank + 1) if sharded else 0))
    if sharded:
        if sampler is not None or drop_last:
            raise ValueError("make_loader: shard cannot be combined with sampler or drop_last")
        batches = ShardedBatches(len(dataset), batch_size, shard, shuffle, seed, epoch, 2 if drop_single else 1)
        return DataLoader(dataset, batch_sampler=batches, generator=g, **workers)
    n = len(sampler) if sampler is not None else len(dataset)
    drop_last = drop_last or num_batches(n, batch_size, drop_single=drop_single) < num_batches(n, batch_size)
    if sampler is None:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g, drop_last=drop_last,
                          **workers)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, generator=g, drop_last=drop_last,
                      **workers)


#: Loader worker processes of `num_workers: auto` on CUDA (0 on a CPU: the run's threads compute there).
CUDA_NUM_WORKERS = 8


def loader_options(num_workers: int | str, device: torch.device | str) -> dict:
    """`make_loader` keywords of a run on `device` for the DataLoader path (streamed files, or data kept off the
    device): {} on a CPU with 0 workers (the loader of before); else num_workers ("auto": `CUDA_NUM_WORKERS` on
    CUDA, 0 on a CPU) and pin_memory on CUDA. The workers' count is part of what makes augmented batches (each
    worker augments from its own seed), so it is a config value, not the machine's core count."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    workers = (CUDA_NUM_WORKERS if cuda else 0) if num_workers == "auto" else int(num_workers)
    if not workers and not cuda:
        return {}
    return {"num_workers": workers, "pin_memory": cuda}


def resolve_on_device(on_device: bool | str, device: torch.device | str) -> bool:
    """`data.on_device` on `device`: "auto" = True on CUDA, False on a CPU; a bool as given."""
    if on_device == "auto":
        return torch.device(device).type == "cuda"
    return bool(on_device)


def make_dataset(split: ImageSplit, mean: list[float], std: list[float], device: torch.device | str = "cpu",
                 on_device: bool | str = False, **kwargs) -> ImageDataset | DeviceDataset:
    """The dataset of a split for a run on `device`: a `DeviceDataset` on `device` when `on_device`
    (`resolve_on_device`) and the split's images are a tensor in RAM (and, for "auto", take at most
    `itnas.augment.DEVICE_MEMORY_FRACTION` of the free device memory), else an `ImageDataset` (streamed files, or
    data kept in RAM). kwargs: augment, crop_padding, hflip, cutout, image_size (and, for ImageDataset only,
    color_jitter, test_resize)."""
    if resolve_on_device(on_device, device) and not isinstance(split.images, ImageFiles):
        device_kw = {k: v for k, v in kwargs.items() if k not in ("color_jitter", "test_resize")}
        if on_device is True or fits_on_device(split_bytes(split, kwargs.get("image_size", 0)), device):
            return DeviceDataset(split, mean, std, device, **device_kw)
    return ImageDataset(split, mean, std, **kwargs)
