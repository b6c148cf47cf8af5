"""Streamed sources: two ImageFolder trees (`train_dir/<class>/*`, `test_dir/<class>/*`) read as `ImageFiles`
(relative file paths and sizes; each image decoded with PIL only when an item is requested), for data sets too large
for RAM. `read_image_folder` is what a streamed data set's reader returns (`itnas.data.readers.imagenet`).
"""


from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..containers import DataError, ImageFiles, SourceData

__all__ = ["read_image_folder"]


def _names(names: list[str], limit: int = 10) -> str:
    """'a, b, c' (at most `limit` names, then 'and N more'), or '-' for none."""
    if not names:
        return "-"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _scan_image_folder(folder: Path, classes: list[str] | None = None,
                       classes_from: Path | None = None) -> tuple[list[str], ImageFiles, torch.Tensor]:
    """(class names, ImageFiles, labels (N,) int64) of ImageFolder tree `folder`/<class>/**/<image>, in
    ImageFolder's order (classes sorted, then files as torchvision's `make_dataset` walks them: sorted, case-insensitive
    extensions of `IMG_EXTENSIONS`). `classes`: the class folders expected (those of tree `classes_from`, the
    training tree). Each file is stat'ed once for its size; none is opened.

    Raises:
        DataError: `folder` is not a folder, has no class folders (images directly in it get their own advice:
            ImageNet's val tar extracts flat), its class folders differ from `classes` (naming the classes only in
            either tree), or a class folder has no image (naming every such folder).
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    try:
        found, class_to_idx = find_classes(str(folder))
    except FileNotFoundError:
        flat = [p.name for p in folder.iterdir() if p.suffix.lower() in IMG_EXTENSIONS]
        hint = (f" ({len(flat)} images lie directly in it: move them into class folders {folder}/<class>/, for "
                f"ImageNet's val images e.g. with the usual valprep.sh script)") if flat else ""
        raise DataError(f"{folder}: no class folders{hint}") from None
    if classes is not None and found != classes:
        other = classes_from if classes_from is not None else Path("the training tree")
        only_other, only_here = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        raise DataError(f"{folder}: class folders differ from those of {other} ({len(found)} instead of "
                        f"{len(classes)}; missing: {_names(only_other)} (only in {other}); extra: "
                        f"{_names(only_here)} (only in {folder})); both trees need the same class folders")
    samples = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    empty = sorted(set(class_to_idx) - {found[c] for _, c in samples})
    if empty:
        raise DataError(f"{folder}: {len(empty)} class folder(s) without images: "
                        f"{_names([f'{folder / c}/' for c in empty])} (images are files ending in "
                        f"{', '.join(IMG_EXTENSIONS)}, any case); add images or remove the folder")
    prefix = os.path.join(os.path.expanduser(str(folder)), "")
    paths, sizes = [], np.empty(len(samples), dtype=np.int64)
    for k, (path, _) in enumerate(samples):
        paths.append(path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, folder))
        sizes[k] = os.stat(path).st_size
    labels = torch.tensor([c for _, c in samples], dtype=torch.int64)
    return found, ImageFiles(folder, paths, sizes), labels


def read_image_folder(name: str, train_dir: str | Path, test_dir: str | Path,
                      num_classes: int | None = None) -> SourceData:
    """A streamed `SourceData` from two ImageFolder trees: train_dir/<class>/*.<ext> (training images) and
    test_dir/<class>/*.<ext> (test images; for ImageNet the val images) with the same class folders.

    Classes: the class folder names sorted (ImageFolder's order), so label k = the k-th name; images: every file
    with one of torchvision's image extensions (.jpg, .jpeg, .png, ...; any case), in ImageFolder's order, as
    `ImageFiles` relative to their tree (the fingerprint does not depend on where the trees are). Nothing is
    decoded here: a corrupt image raises DataError when it is first requested. Scanning costs one `stat` per
    file (~1.3M for ImageNet).

    Raises:
        DataError: a tree is missing or has no class folders, the trees' class folders differ (the classes only in
            either tree are named), a class folder has no image (named), or the classes are not `num_classes` (when
            given).
    """
    classes, train, y_train = _scan_image_folder(Path(train_dir))
    if num_classes is not None and len(classes) != num_classes:
        raise DataError(f"{train_dir}: {len(classes)} class folders, expected {num_classes} for {name}")
    _, test, y_test = _scan_image_folder(Path(test_dir), classes, Path(train_dir))
    return SourceData(name, train, y_train, test, y_test, classes)
