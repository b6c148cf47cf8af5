"""Loaders: seeded batches whose order depends only on (seed, epoch), on the CPU or on the device.

`make_loader` turns a dataset into seeded batches whose order depends only on (seed, epoch), or on a given sampler;
training loaders drop a tail batch of one sample (`drop_single`, `num_batches`). A split in RAM can instead live on
the run's device (`itnas.data.augment.DeviceDataset`: uploaded once, batches normalised and augmented there with
tensor ops); `make_dataset` picks one of the two (`data.on_device`), `make_loader` serves both with the same batch
order, and `loader_options` gives the DataLoader's workers and pinned memory (`data.num_workers`).
"""


from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .augment import DeviceDataset, fits_on_device, split_bytes
from .containers import ImageFiles, ImageSplit
from .samples import ImageDataset
from .shards import ShardedBatches

if TYPE_CHECKING:  # annotations only
    from ..distributed import DistContext

__all__ = ["CUDA_NUM_WORKERS", "loader_options", "make_dataset", "make_loader", "num_batches", "resolve_on_device"]


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
    (`itnas.data.shards.ShardedBatches`: global batches of world_size x batch_size from one (seed, epoch)
    permutation, split over the ranks; `drop_single` keeps the last global batch only when every rank gets at least
    2 samples); `batch_size` is then per process and `sampler` and `drop_last` must be left unset.

    `pin_memory`: batches in page-locked memory (faster, asynchronous copies to a CUDA device); with num_workers > 0
    the workers persist until the loader is dropped (`persistent_workers`; the loader is one epoch's).

    A `DeviceDataset` (`itnas.data.augment`): the same batches of indices (the DataLoader's own order, computed by a
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
    `itnas.data.augment.DEVICE_MEMORY_FRACTION` of the free device memory), else an `ImageDataset` (streamed files, or
    data kept in RAM). kwargs: augment, crop_padding, hflip, cutout, image_size (and, for ImageDataset only,
    color_jitter, test_resize)."""
    if resolve_on_device(on_device, device) and not isinstance(split.images, ImageFiles):
        device_kw = {k: v for k, v in kwargs.items() if k not in ("color_jitter", "test_resize")}
        if on_device is True or fits_on_device(split_bytes(split, kwargs.get("image_size", 0)), device):
            return DeviceDataset(split, mean, std, device, **device_kw)
    return ImageDataset(split, mean, std, **kwargs)
