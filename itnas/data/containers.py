"""What a data set is in memory: `SourceData` (the fixed train and test sets as read from disk), `ImageSplit` (the
images of one split with their provenance), `ImageFiles` (images as files, decoded on request: the streamed stand-in
for a uint8 tensor), and `DataError`, the one error of the data API.

`SourceData.fingerprint()` hashes the images and labels (a streamed source: its files' relative paths and sizes);
`digest` is the hash every fingerprint of the data API uses.
"""


from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ItnasError

__all__ = ["DataError", "ImageFiles", "ImageSplit", "Images", "SourceData", "digest"]


class DataError(ItnasError, RuntimeError):
    """A data set or prepared folder that cannot be found, read or trusted; the message says what and where."""


class ImageFiles:
    """Images as files, decoded one at a time: the streamed stand-in for an (N, C, H, W) uint8 tensor.

    root: the folder the paths are relative to. paths: N relative paths ('/'-separated). sizes: (N,) int64, each
    file's size in bytes when it was scanned (the fingerprint hashes them; decoding does not re-check them).
    Indexing mirrors a tensor's: `files[i]` (an int) decodes image i (`load`), `files[index]` (a 1-D integer tensor
    or array, or a slice) is an `ImageFiles` of those files, in that order, without decoding anything.
    `shape` is (N, 3, 0, 0): every image is decoded to 3 channels (RGB); 0 = height and width vary per image.
    Paths are held as one fixed-width bytes array (~40 MB for ImageNet's 1.28M files), not as Python strings.
    """

    def __init__(self, root: str | Path, paths: Sequence[str], sizes: Sequence[int] | np.ndarray):
        paths = np.array([os.fsencode(p) for p in paths], dtype=np.bytes_)
        self._init(Path(root), paths, np.asarray(sizes, dtype=np.int64))

    def _init(self, root: Path, paths: np.ndarray, sizes: np.ndarray) -> None:
        if sizes.shape != (len(paths),):
            raise ValueError(f"{len(paths)} paths but sizes of shape {sizes.shape}")
        self.root, self._paths, self.sizes = root, paths, sizes

    def _subset(self, index: np.ndarray | slice) -> ImageFiles:
        sub = object.__new__(ImageFiles)
        sub._init(self.root, self._paths[index], self.sizes[index])
        return sub

    def __len__(self) -> int:
        return len(self._paths)

    def __repr__(self) -> str:
        return f"ImageFiles({len(self)} files under {self.root})"

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(N, 3, 0, 0): N images of 3 channels, of varying height and width (0)."""
        return len(self), 3, 0, 0

    @property
    def paths(self) -> list[str]:
        """The N relative paths."""
        return [os.fsdecode(p) for p in self._paths.tolist()]

    def path(self, i: int) -> Path:
        """The file of image i: root / its relative path."""
        return self.root / os.fsdecode(self._paths[i])

    def __getitem__(self, key: int | slice | torch.Tensor | np.ndarray) -> torch.Tensor | ImageFiles:
        if isinstance(key, int | np.integer) or (isinstance(key, torch.Tensor) and key.dim() == 0):
            return self.load(int(key))
        if isinstance(key, slice):
            return self._subset(key)
        index = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
        if index.ndim != 1 or (len(index) and index.dtype.kind not in "iu"):
            raise TypeError(f"ImageFiles index must be an int, a slice or a 1-D integer array, got {index.dtype} "
                            f"of shape {index.shape}")
        return self._subset(index.astype(np.int64, copy=False))

    def load(self, i: int) -> torch.Tensor:
        """Image i decoded with PIL and converted to RGB (grey, CMYK, palette and alpha images alike): uint8
        (3, H, W) at the file's own size.

        Raises:
            DataError: the file is missing or not a readable image (names the file).
        """
        from PIL import Image

        path = self.path(i)
        try:
            with Image.open(path) as im:
                rgb = np.array(im.convert("RGB"))
        except (OSError, Image.DecompressionBombError) as err:
            raise DataError(f"{path}: unreadable image ({type(err).__name__}: {err})") from None
        return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()

    def fingerprint_parts(self) -> list[bytes | str]:
        """What `SourceData.fingerprint` hashes for these files: their number, relative paths and sizes (bytes);
        not the root (a moved tree keeps its fingerprint) and not the pixels (reading every file is too slow)."""
        return [f"files {len(self)};", b"\0".join(self._paths.tolist()), b";", self.sizes.tobytes()]


Images = torch.Tensor | ImageFiles  # (N, C, H, W) uint8 in RAM, or files decoded on request


@dataclass
class ImageSplit:
    """Images of one split. images: (N, C, H, W) uint8, or an `ImageFiles` of N files (streamed sources);
    labels: (N,) int64; source_index: (N,) int64 index into the original `source` set ("train" or "test")."""

    images: Images
    labels: torch.Tensor
    source: str
    source_index: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def digest(*parts: bytes | str) -> str:
    """SHA-256 (hex, 16 chars) of the parts in order."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
    return h.hexdigest()[:16]



@dataclass(frozen=True, eq=False)
class SourceData:
    """A data set as read from disk: the fixed train and test sets.

    train_images: (N, C, H, W) uint8; train_labels: (N,) int64 in [0, len(classes));
    test_images: (M, C, H, W) uint8; test_labels: (M,) int64.
    A streamed source (`streamed`) has `ImageFiles` as train_images and test_images instead (both), of
    `image_shape` (3, 0, 0).

    Raises:
        ValueError: wrong dtype, rank or length, a label without a class name, train and test images of
            different (C, H, W), or one set streamed and the other in RAM.
    """

    name: str
    train_images: Images
    train_labels: torch.Tensor
    test_images: Images
    test_labels: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        if isinstance(self.train_images, ImageFiles) != isinstance(self.test_images, ImageFiles):
            raise ValueError(f"{self.name}: train and test images must both be files (ImageFiles) or both tensors")
        for which in ("train", "test"):
            x, y = getattr(self, f"{which}_images"), getattr(self, f"{which}_labels")
            if not isinstance(x, ImageFiles) and (x.dtype != torch.uint8 or x.dim() != 4):
                raise ValueError(f"{self.name}: {which} images must be (N, C, H, W) uint8, got {tuple(x.shape)} "
                                 f"{x.dtype}")
            if y.dtype != torch.int64 or y.shape != (len(x),):
                raise ValueError(f"{self.name}: {which} labels must be ({len(x)},) int64, got {tuple(y.shape)} "
                                 f"{y.dtype}")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise ValueError(f"{self.name}: {which} labels outside [0, {len(self.classes)}) (one per class name)")
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ValueError(f"{self.name}: train images {tuple(self.train_images.shape[1:])} and test images "
                             f"{tuple(self.test_images.shape[1:])} differ in (C, H, W)")

    @property
    def streamed(self) -> bool:
        """True when the images are files decoded on request (`ImageFiles`), not tensors in RAM."""
        return isinstance(self.train_images, ImageFiles)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of every image; (3, 0, 0) for a streamed source (images of varying size)."""
        return tuple(self.train_images.shape[1:])

    def arrays(self, source: str) -> tuple[Images, torch.Tensor]:
        """(images, labels) of `source` ("train" or "test")."""
        if source not in ("train", "test"):
            raise ValueError(f"source must be 'train' or 'test', got {source!r}")
        return getattr(self, f"{source}_images"), getattr(self, f"{source}_labels")

    def fingerprint(self) -> str:
        """SHA-256 (hex, 16 chars) of the shapes, pixels and labels of the train and test sets (not the name, the
        class names or where the files were read from): equal fingerprints mean the same images and labels.

        A streamed source hashes its files' relative paths and sizes in place of the pixels
        (`ImageFiles.fingerprint_parts`): a renamed, added, removed or resized file or a changed label changes it,
        but a file rewritten in place with as many bytes does not."""
        parts: list[bytes | str] = []
        for t in (self.train_images, self.train_labels, self.test_images, self.test_labels):
            if isinstance(t, ImageFiles):
                parts += t.fingerprint_parts()
            else:
                parts += [f"{tuple(t.shape)}{t.dtype};", t.contiguous().numpy().tobytes()]
        return digest(*parts)

