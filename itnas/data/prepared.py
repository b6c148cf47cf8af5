"""Prepared data: the splits of one prepared folder cut from the source, re-read and checked.

`load_search_data` / `load_train_data` read one folder written by `SplitIndices.save`, re-read the source through
the registry, check its fingerprint (`SplitIndices.check_source`) and return `SearchData` / `TrainData`: the
splits as `ImageSplit`s with the classes and normalisation a model needs. Every sample carries its provenance
(`source`, `source_index`), which `itnas.data.leaks` checks.
"""


from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

from .containers import DataError, ImageSplit, SourceData, digest
from .registry import create_dataset, list_datasets
from .splits import KIND_SPLITS, SplitIndices

__all__ = ["SearchData", "TrainData", "load_search_data", "load_train_data"]


@dataclass(frozen=True, eq=False)
class _PreparedData:
    """Splits of one prepared folder with what a model needs to know about the data (see subclasses)."""

    name: str
    classes: list[str]
    mean: list[float]
    std: list[float]
    source_fingerprint: str

    kind: ClassVar[str] = ""

    def splits(self) -> dict[str, ImageSplit]:
        """split name -> ImageSplit, in `KIND_SPLITS` order."""
        return {k: getattr(self, k) for k in KIND_SPLITS[self.kind]}

    @property
    def in_channels(self) -> int:
        """Channels of the images (3 for a streamed source: decoded as RGB)."""
        return next(iter(self.splits().values())).images.shape[1]

    @property
    def image_size(self) -> int:
        """Side (px) of the images; 0 for a streamed source (varying sizes: `ImageDataset` needs an image_size)."""
        return next(iter(self.splits().values())).images.shape[-1]

    def fingerprint(self) -> str:
        """SHA-256 (hex, 16 chars) of the source fingerprint and every split's name, source and indices: equal
        fingerprints mean the same images and labels in the same splits."""
        parts: list[bytes | str] = [f"{self.kind};{self.source_fingerprint};"]
        for k, s in self.splits().items():
            parts += [f"{k};{s.source};", s.source_index.contiguous().numpy().tobytes()]
        return digest(*parts)

    @classmethod
    def from_indices(cls, indices: SplitIndices, source: SourceData) -> Self:
        """The splits of `indices` cut from `source` (already checked with `indices.check_source`).

        Raises:
            ValueError: `indices` is of the other kind. DataError: an index out of range.
        """
        if indices.kind != cls.kind:
            raise ValueError(f"{cls.__name__} needs {cls.kind} splits, got {indices.kind} splits")
        return cls(indices.dataset, list(indices.classes), list(indices.mean), list(indices.std),
                   indices.source_fingerprint, **indices.materialize(source))


@dataclass(frozen=True, eq=False)
class SearchData(_PreparedData):
    """What search, derivation and model selection see: search_train and search_val (disjoint, both from the
    training images). Images (N, C, H, W) uint8, or `ImageFiles` for a streamed source; mean/std per channel of
    all training images / 255."""

    search_train: ImageSplit
    search_val: ImageSplit

    kind: ClassVar[str] = "search"


@dataclass(frozen=True, eq=False)
class TrainData(_PreparedData):
    """What final training and evaluation see: train (training images) and test (test images)."""

    train: ImageSplit
    test: ImageSplit

    kind: ClassVar[str] = "train"


def _load(cls, prepared_dir: str | Path, root: str | Path, download: bool):
    indices = SplitIndices.load(prepared_dir, cls.kind)
    try:
        source = create_dataset(indices.dataset, root, download)
    except KeyError:
        raise DataError(f"prepared data folder {prepared_dir} names data set {indices.dataset!r}; valid datasets: "
                        f"{', '.join(list_datasets())}") from None
    indices.check_source(source, root)
    return cls.from_indices(indices, source)


def load_search_data(prepared_dir: str | Path, root: str | Path, download: bool = False) -> SearchData:
    """The search splits of a folder written by `SplitIndices.save`, cut from the source re-read under `root`.

    Raises:
        DataError: the folder is missing, unreadable or holds train splits; the source is not found; or the
            source under `root` is not the one the splits were drawn from (names the data set, root, difference).
    """
    return _load(SearchData, prepared_dir, root, download)


def load_train_data(prepared_dir: str | Path, root: str | Path, download: bool = False) -> TrainData:
    """The final-training and test splits of a prepared folder; see `load_search_data` (same errors)."""
    return _load(TrainData, prepared_dir, root, download)

