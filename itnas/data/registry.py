"""The data-set registry (timm style): a name -> a reader `(root, download) -> SourceData`.

`create_dataset(name, root, download)` reads a data set into a `SourceData`; `list_datasets()` names the entries,
`register_dataset` adds one, `dataset_num_classes` gives an entry's number of classes without reading it (the
params check needs it before any data is loaded). The readers of the built-in data sets are the modules of
`itnas.data.readers` (one per data set), registered when `itnas.data` is imported; a new data set is one new module
there.
"""


from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import UnknownNameError
from .containers import SourceData

__all__ = ["DatasetReader", "create_dataset", "dataset_num_classes", "dataset_streamed", "list_datasets",
           "register_dataset"]

DatasetReader = Callable[[Path, bool], SourceData]  # (root, download) -> SourceData
_DATASETS: dict[str, DatasetReader] = {}
_NUM_CLASSES: dict[str, int] = {}  # what each entry declares, known before reading it
_STREAMED: set[str] = set()  # entries whose images are files read per sample (`ImageFiles`), not held in RAM


def register_dataset(name: str, num_classes: int | None = None,
                     streamed: bool = False) -> Callable[[DatasetReader], DatasetReader]:
    """Decorator: register `reader(root: Path, download: bool) -> SourceData` under `name`, with the number of
    classes it yields (`num_classes`; lets the params check reject split sizes before any data is read) and whether
    its images are streamed files (`streamed`: `itnas.data.ImageFiles`, read per sample, e.g. ImageNet; else held in
    RAM; lets the params check reject file-only augmentation such as colour jitter).

    Raises:
        ValueError: `name` is already registered.
    """

    def add(reader: DatasetReader) -> DatasetReader:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        _DATASETS[name] = reader
        if num_classes is not None:
            _NUM_CLASSES[name] = num_classes
        if streamed:
            _STREAMED.add(name)
        return reader

    return add


def dataset_num_classes(name: str) -> int | None:
    """The number of classes registered data set `name` declares, or None (unknown name, or none declared)."""
    return _NUM_CLASSES.get(name)


def dataset_streamed(name: str) -> bool:
    """Whether registered data set `name` streams its images from files (`itnas.data.ImageFiles`) instead of holding
    them in RAM (False for an unknown name)."""
    return name in _STREAMED


def list_datasets() -> list[str]:
    """Names of the registered data sets, in registration order."""
    return list(_DATASETS)


def create_dataset(name: str, root: str | Path, download: bool = False) -> SourceData:
    """Read data set `name` (files under `root` where the data set has files; `download` lets it fetch them).

    Raises:
        KeyError: unknown name; the message lists the valid ones.
        DataError: the data set is not found or unreadable (the message says how to provide it).
    """
    try:
        reader = _DATASETS[name]
    except KeyError:
        raise UnknownNameError(f"unknown dataset {name!r}; valid datasets: {', '.join(list_datasets())}") from None
    return reader(Path(root), download)
