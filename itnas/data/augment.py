"""Batches made on the device: a split held as one tensor there, augmented a whole batch at a time.

`ImageDataset` + `make_loader` (itnas.data) build every sample in Python, one at a time, on the thread that also
launches the GPU kernels (normalise, crop, flip, erase per image, then collate and copy to the device). For a split
in RAM (every data set but streamed image files) `DeviceDataset` does the same work with a few tensor ops per batch:

- the split's images are uploaded once (uint8, 1 byte per pixel; or, with `image_size`, resized once for the whole
  split, antialiased, on the device, and kept as normalised float32, as `ImageDataset` keeps them);
- a batch is a gather of its indices, normalised ((x / 255 - mean) / std, the same float32 ops as `ImageDataset`),
  then augmented (DARTS CIFAR recipe): random crop from the image padded with `crop_padding` zeros (zeros of the
  normalised image, i.e. the mean colour, as `ImageDataset`'s RandomCrop after Normalize) and horizontal flip, both
  one pair of gathers (`crop_flip`), then cutout (`cutout`);
- the random parameters of an epoch are drawn at its start, one set per sample of the split, from a generator on the
  data's device seeded from (seed, epoch) (`draw_params`): the augmentation of image i in epoch e depends only on
  (seed, e, i) and the device type (a CUDA generator draws other numbers than a CPU one), not on the batch size,
  the order or the number of processes, and nothing is carried from one epoch to the next, so a run resumed at epoch
  k makes the same batches as an uninterrupted one with no RNG state saved;
- the batch order is not decided here: `DeviceDataset.batches` takes the epoch's index batches from
  `itnas.data.make_loader` (the very order its DataLoader would use: the same (seed, epoch) permutation, the same
  data-parallel shards) or from the search's `even_batches`; the indices go to the device once per epoch.

Cutout differs from `ImageDataset`'s: there it is torchvision's `RandomErasing` with a fixed square (scale =
(cutout / size)^2, ratio 1), whose square always lies inside the image (cutout^2 pixels erased; a cutout >= the
image side erases nothing); here it is DeVries & Taylor's (2017) and DARTS's (cnn/utils.py `Cutout`): the centre
uniform over the image's pixels, the square [cy - L // 2, cy + L // 2) x [cx - L // 2, cx + L // 2) clipped at the
borders (fewer pixels near them: 14^2 = 196 on average for L = 16 on 32 px instead of 256; an odd L erases
(L - 1)^2 at most, as DARTS's code does). Both set the erased pixels to 0 of the normalised image.

Memory: N x C x H x W bytes for uint8 images (150 MB for CIFAR-10's 50,000 images), 4x that when resized (float32),
plus 8 N bytes of labels and, per augmented epoch, at most 5 x 8 N bytes of parameters. `fits_on_device` says
whether a split may be uploaded (`DEVICE_MEMORY_FRACTION` of the free memory of a CUDA device).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["DEVICE_MEMORY_FRACTION", "AugmentParams", "DeviceBatches", "DeviceDataset", "crop_flip", "cutout",
           "draw_params", "fits_on_device", "split_bytes"]

DEVICE_MEMORY_FRACTION = 0.25
"""A split goes to a CUDA device (on_device auto) only when it takes at most this fraction of its free memory."""

RESIZE_CHUNK = 4096
"""Images normalised and resized at a time when a split is resized once (as `ImageDataset`)."""


@dataclass(frozen=True)
class AugmentParams:
    """One epoch's random augmentation, one entry per sample of the split (int64 (N,) tensors on the data's device;
    None = that augmentation is off). top / left: the crop's corner in the padded image, in [0, 2 * padding];
    flip: bool, mirror left-right; cy / cx: the cutout's centre, in [0, size)."""

    top: torch.Tensor | None = None
    left: torch.Tensor | None = None
    flip: torch.Tensor | None = None
    cy: torch.Tensor | None = None
    cx: torch.Tensor | None = None

    def take(self, index: torch.Tensor) -> AugmentParams:
        """The parameters of the samples `index` (B,), in that order."""
        return AugmentParams(*(None if t is None else t[index] for t in (self.top, self.left, self.flip, self.cy,
                                                                         self.cx)))


def draw_params(n: int, size: int, crop_padding: int, hflip: bool, cutout_size: int,
                generator: torch.Generator) -> AugmentParams:
    """Draw one epoch's parameters for `n` samples of side `size` from `generator` (on the data's device), in a fixed
    order: crop top, crop left (when crop_padding), flip (when hflip), cutout centre y, x (when cutout_size)."""
    dev = generator.device

    def randint(high: int) -> torch.Tensor:
        return torch.randint(0, high, (n,), generator=generator, device=dev)

    top = left = flip = cy = cx = None
    if crop_padding:
        top, left = randint(2 * crop_padding + 1), randint(2 * crop_padding + 1)
    if hflip:
        flip = randint(2).bool()
    if cutout_size:
        cy, cx = randint(size), randint(size)
    return AugmentParams(top, left, flip, cy, cx)


def crop_flip(x: torch.Tensor, padding: int, top: torch.Tensor | None, left: torch.Tensor | None,
              flip: torch.Tensor | None) -> torch.Tensor:
    """Random crop with zero padding, then horizontal flip, of a batch x (B, C, S, S) -> (B, C, S, S), new tensor.

    Sample b is cut from x[b] padded with `padding` zeros on every side, at rows top[b] .. top[b] + S - 1 and columns
    left[b] .. left[b] + S - 1 of the padded image (top, left (B,) in [0, 2 * padding]; None = no crop), then
    mirrored left-right where flip[b] (bool (B,); None = no flip): output column j reads crop column S - 1 - j.
    Two gathers (rows, then columns) on the padded batch.
    """
    b, c, s, w = x.shape
    ar = torch.arange(s, device=x.device)
    cols = ar.expand(b, s)
    if flip is not None:
        cols = torch.where(flip[:, None], s - 1 - ar, ar)
    if top is None:
        if flip is None:
            return x.clone()
        return x.gather(3, cols[:, None, None, :].expand(b, c, s, w))
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = top[:, None] + ar  # (B, S) rows of the padded image
    cols = left[:, None] + cols  # (B, S) its columns, mirrored where flipped
    out = padded.gather(2, rows[:, None, :, None].expand(b, c, s, w + 2 * padding))
    return out.gather(3, cols[:, None, None, :].expand(b, c, s, w))


def cutout(x: torch.Tensor, length: int, cy: torch.Tensor, cx: torch.Tensor) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017; DARTS cnn/utils.py) of a batch x (B, C, H, W): rows
    [cy - length // 2, cy + length // 2) and columns [cx - length // 2, cx + length // 2), clipped to the image, set
    to 0, per sample (cy, cx (B,) int). Returns a new tensor."""
    h, w = x.shape[-2:]
    half = length // 2
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    y1, y2 = (cy - half).clamp(0, h), (cy + half).clamp(0, h)
    x1, x2 = (cx - half).clamp(0, w), (cx + half).clamp(0, w)
    in_rows = (rows >= y1[:, None]) & (rows < y2[:, None])  # (B, H)
    in_cols = (cols >= x1[:, None]) & (cols < x2[:, None])  # (B, W)
    mask = in_rows[:, :, None] & in_cols[:, None, :]  # (B, H, W)
    return x.masked_fill(mask[:, None], 0.0)


def split_bytes(split, image_size: int = 0) -> int:
    """Bytes a `DeviceDataset` of `split` (images (N, C, H, W) uint8) holds on its device: the images (uint8, or
    float32 at image_size^2 when resized) and the labels (int64)."""
    n, c, h, w = split.images.shape
    pixels = n * c * (image_size * image_size if image_size and image_size != w else h * w)
    return pixels * (4 if image_size and image_size != w else 1) + 8 * n


def fits_on_device(nbytes: int, device: torch.device | str) -> bool:
    """Whether `nbytes` may be uploaded to `device`: always on a CPU; on CUDA at most `DEVICE_MEMORY_FRACTION` of the
    device's free memory (the rest is the network's)."""
    device = torch.device(device)
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= DEVICE_MEMORY_FRACTION * free


class DeviceDataset:
    """A split in RAM (`ImageSplit` with images (N, C, S, S) uint8) held on `device`, serving whole batches.

    Same arguments and the same samples as `itnas.data.ImageDataset` for such a split (image_size: resized once,
    antialiased; augment: crop with crop_padding, hflip, cutout of `cutout` px), but computed per batch on the
    device, with the cutout of DeVries & Taylor (module docstring). Without augmentation a batch equals
    `ImageDataset`'s samples stacked, bitwise on a CPU. `split` stays referenced (its source indices: provenance).

    Raises:
        ValueError: images that are not a (N, C, S, S) uint8 tensor (streamed files stay with `ImageDataset`).
    """

    def __init__(self, split, mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu",
                 augment: bool = False, crop_padding: int = 4, hflip: bool = True, cutout: int = 0,
                 image_size: int = 0):
        images = split.images
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.dtype != torch.uint8 \
                or images.shape[-1] != images.shape[-2]:
            raise ValueError("DeviceDataset needs square images in a (N, C, S, S) uint8 tensor; streamed image "
                             "files are decoded per sample by ImageDataset")
        self.split, self.device = split, torch.device(device)
        self.mean = torch.tensor(list(mean), dtype=torch.float32, device=self.device).view(-1, 1, 1)
        self.std = torch.tensor(list(std), dtype=torch.float32, device=self.device).view(-1, 1, 1)
        self.labels = split.labels.to(self.device, torch.int64)
        self.size = image_size or images.shape[-1]
        self.augment, self.crop_padding, self.hflip, self.cutout = augment, crop_padding, hflip, cutout
        self.images: torch.Tensor | None = None  # (N, C, S, S) uint8, or None when resized
        self.resized: torch.Tensor | None = None  # (N, C, size, size) float32, normalised
        if image_size and image_size != images.shape[-1]:
            from torchvision.transforms.v2.functional import resize

            n, c = images.shape[:2]
            self.resized = torch.empty(n, c, self.size, self.size, device=self.device)
            for start in range(0, n, RESIZE_CHUNK):
                chunk = self._normalise(images[start:start + RESIZE_CHUNK].to(self.device))
                self.resized[start:start + RESIZE_CHUNK] = resize(chunk, [self.size, self.size], antialias=True)
        else:
            self.images = images.to(self.device)

    def __len__(self) -> int:
        return len(self.labels)

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255.0 - self.mean) / self.std

    def epoch_params(self, seed: int, epoch: int) -> AugmentParams | None:
        """The epoch's augmentation parameters (`draw_params`, generator on the device seeded from (seed, epoch)),
        or None without augmentation."""
        if not self.augment or not (self.crop_padding or self.hflip or self.cutout):
            return None
        g = torch.Generator(device=self.device).manual_seed((seed * 100_003 + epoch) * 7_919 + 11)
        return draw_params(len(self), self.size, self.crop_padding, self.hflip, self.cutout, g)

    def batch(self, index: torch.Tensor, params: AugmentParams | None = None) -> tuple[torch.Tensor, ...]:
        """(x (B, C, size, size) float32 normalised and augmented, y (B,) int64, index (B,)) of the samples
        `index` (int64 (B,) on the device); `params`: the epoch's parameters of every sample (None: no
        augmentation)."""
        if self.resized is not None:
            x = self.resized[index]
        else:
            x = self._normalise(self.images[index])
        if params is not None:
            p = params.take(index)
            if p.top is not None or p.flip is not None:
                x = crop_flip(x, self.crop_padding, p.top, p.left, p.flip)
            if p.cy is not None:
                x = cutout(x, self.cutout, p.cy, p.cx)
        return x, self.labels[index], index

    def batches(self, index_batches: Sequence[Sequence[int]], seed: int = 0, epoch: int = 0) -> DeviceBatches:
        """One epoch's batches of the given indices (lists of indices into the split, in order), augmented with the
        parameters of (seed, epoch) when augmenting."""
        return DeviceBatches(self, index_batches, self.epoch_params(seed, epoch))


class DeviceBatches:
    """The batches of one epoch of a `DeviceDataset` (a sized iterable of (x, y, index), all on the device): the
    indices are uploaded once, each batch is a slice of them (no host sync per batch)."""

    def __init__(self, data: DeviceDataset, index_batches: Sequence[Sequence[int]], params: AugmentParams | None):
        self.data, self.params = data, params
        self.sizes = [len(b) for b in index_batches]
        flat = [int(i) for b in index_batches for i in b]
        self.index = torch.tensor(flat, dtype=torch.int64).to(data.device)

    def __len__(self) -> int:
        return len(self.sizes)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        start = 0
        for size in self.sizes:
            yield self.data.batch(self.index[start:start + size], self.params)
            start += size
