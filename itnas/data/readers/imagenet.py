"""ImageNet (ILSVRC-2012), *streamed*: too large for RAM (~150 GB of JPEGs), its images are an `ImageFiles` in place
of uint8 tensors. Read from ImageFolder trees `root/imagenet/{train,val}/<wnid>/*.JPEG`, or, when `root/imagenet/`
has no such pair, `root/{train,val}/<wnid>/` (`root` itself is the ImageNet folder); its test set is the 50,000 val
images. torchvision cannot download it. Its `fingerprint()` hashes the relative paths, file sizes and labels (not the
pixels), `channel_mean_std` gives the standard ImageNet statistics (`IMAGENET_MEAN`, `IMAGENET_STD`), and
`image_shape` is (3, 0, 0): 0 = height and width vary per image (the side is chosen later:
`itnas.data.ImageDataset`'s image_size).
"""


from __future__ import annotations

from pathlib import Path

from ..containers import DataError, SourceData
from ..registry import register_dataset
from .image_folder import read_image_folder

__all__ = ["IMAGENET_URL"]

IMAGENET_URL = "https://image-net.org/download-images.php"


@register_dataset("imagenet", num_classes=1000, streamed=True)
def _imagenet(root: Path, download: bool) -> SourceData:
    """ImageNet (ILSVRC-2012, Russakovsky et al. 2015): 1,281,167 training and 50,000 val images (JPEG, of
    varying size) of 1000 classes named by their WordNet ids (n01440764 ...), streamed (`read_image_folder`); the
    val images are the test set.

    Found as root/imagenet/{train,val}/<wnid>/*.JPEG, else as root/{train,val}/<wnid>/ (`root` is itself the
    ImageNet folder): the first of the two holding both train/ and val/ is read. `download` cannot help:
    torchvision does not download ImageNet (its terms of access require an account at image-net.org).

    Raises:
        DataError: neither folder holds train/ and val/ (names the folders looked for and how to provide them), or
            the trees are not 1000 matching class folders (e.g. val images not yet sorted into class folders).
    """
    candidates = [root / "imagenet", root]
    for folder in candidates:
        if (folder / "train").is_dir() and (folder / "val").is_dir():
            return read_image_folder("imagenet", folder / "train", folder / "val", num_classes=1000)

    def state(folder: Path) -> str:
        have = [s for s in ("train", "val") if (folder / s).is_dir()]
        return f" (only {have[0]}/ is there)" if have else ""

    looked = " and ".join(f"{f / 'train'}/ + {f / 'val'}/{state(f)}" for f in candidates)
    raise DataError(
        f"ImageNet (ILSVRC-2012) not found under {root}: looked for {looked}. torchvision cannot download it "
        f"(data.download has no effect); provide it by hand:\n"
        f"  1. download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from image-net.org "
        f"({IMAGENET_URL}; needs an account and accepting the terms of access);\n"
        f"  2. extract the train tar, then each of its 1000 class tars into {root / 'imagenet' / 'train'}/<wnid>/"
        f"*.JPEG;\n"
        f"  3. extract the val tar into {root / 'imagenet' / 'val'}/ and move its 50,000 images into class folders "
        f"val/<wnid>/ (e.g. with the usual valprep.sh script, as in PyTorch's ImageNet example);\n"
        f"  or put train/ and val/ directly in {root}/ when that folder is itself the ImageNet folder.")
