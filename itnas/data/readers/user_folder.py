"""`imagefolder`: your own image data set from params alone, as ImageFolder trees under `data.root`.

    data: {dataset: imagefolder, root: path/to/my_images}   # in params.yaml or a benchmark's data block

reads `root/train/<class>/*` (training images) and `root/test/<class>/*` (test images; `root/val/<class>/*` when
there is no test/), streamed (`read_image_folder`: nothing is decoded until a sample is requested). The classes are
the class folder names, sorted (label k = the k-th name); both trees need the same class folders. Images may be of
any size and mode (PNG, JPEG, ... as PIL reads them; decoded to RGB): every stage cuts them to its image_size
(search.data.image_size, train.data.image_size; required) the way streamed data sets are cut
(`itnas.data.ImageDataset`: resize + centre crop for search and test, random resized crop + flip for training), and
normalises them with the ImageNet statistics (`itnas.data.IMAGENET_MEAN`, `IMAGENET_STD`).

The leak checks are those of every data set (`itnas.data.leaks`): search splits are cut from train/ only, and a test
image whose bytes equal a search image's is refused. `download` has no effect (there is nothing to download).
"""


from __future__ import annotations

from pathlib import Path

from ..containers import DataError, SourceData
from ..registry import register_dataset
from .image_folder import read_image_folder

__all__ = ["TEST_FOLDERS", "read_user_folder"]

#: The test tree's folder under root, in order of preference.
TEST_FOLDERS = ("test", "val")


def read_user_folder(root: Path, name: str = "imagefolder") -> SourceData:
    """`root/train/<class>/*` and `root/test/<class>/*` (else `root/val/<class>/*`) as a streamed `SourceData`
    named `name` (module docstring).

    Raises:
        DataError: root is not a folder, or lacks train/ or a test tree (naming what was looked for and what is
            there); a tree without class folders, a class folder without images (named), class folders that differ
            between train/ and the test tree (the classes only in either named); an unreadable image raises when it
            is first decoded, naming its file.
    """
    layout = f"{root}/train/<class>/ and {root}/test/<class>/ (or {root}/val/<class>/)"
    if not root.is_dir():
        raise DataError(f"imagefolder data set not found: {root} is not a folder; looked for {layout}. Set data.root "
                        f"(in params.yaml or the benchmark's data block) to the folder holding train/ and test/")
    test = next((root / t for t in TEST_FOLDERS if (root / t).is_dir()), None)
    if not (root / "train").is_dir() or test is None:
        there = sorted(p.name + "/" for p in root.iterdir() if p.is_dir())
        raise DataError(f"imagefolder data set not found under {root}: looked for {layout}; the folder holds "
                        f"{', '.join(there) or 'no folders'}")
    return read_image_folder(name, root / "train", test)


@register_dataset("imagefolder", streamed=True)
def _imagefolder(root: Path, download: bool) -> SourceData:
    """Your own images: ImageFolder trees `root/train/<class>/` and `root/test/<class>/` (or `root/val/<class>/`),
    streamed (`read_user_folder`); the number of classes is that of the class folders. `download` has no effect."""
    return read_user_folder(root)
