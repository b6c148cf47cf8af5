"""Data sources: a registry of data sets (timm style) read into `SourceData`.

`create_dataset(name, root, download)` reads a data set into a `SourceData` (uint8 train and test images with
labels and class names); `list_datasets()` names the entries, `register_dataset` adds one, `dataset_num_classes`
gives an entry's number of classes without reading it (the params check needs it before any data is loaded).
`SourceData.fingerprint()` hashes its images and labels. `channel_mean_std` gives the per-channel
normalisation of the training images (exact, from integer pixel histograms).

Fashion-MNIST is found, in order: (1) the torchvision layout under `root` (`root/FashionMNIST/raw/`),
(2) the Debian package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/*.gz`, decompressed into
(1)), (3) torchvision `download=True` when `download` is set.

CIFAR-10 is found as (1) the python batches in `root/cifar-10-batches-py/`, read with pickle directly (no MD5 check,
so re-encoded copies load), (2) ImageFolder trees `root/cifar10/{train,test}/<class>/*.png|jpg`, (3) a torchvision
download into (1). CIFAR-100 (`root/cifar-100-python/`) and SVHN (`*_32x32.mat` in `root/svhn/` or `root/`) are read
the same way, else downloaded. A data set not found, or a file unreadable or of the wrong shape, raises one
`DataError` naming the paths looked for and the ways to provide the data.

ImageNet (ILSVRC-2012) is *streamed*: too large for RAM (~150 GB of JPEGs), its images are an `ImageFiles` (relative
file paths and sizes; each image decoded with PIL only when an item is requested) in place of the uint8 tensors.
It is read from ImageFolder trees `root/imagenet/{train,val}/<wnid>/*.JPEG`, or, when `root/imagenet/` has no such
pair, `root/{train,val}/<wnid>/` (`root` itself is the ImageNet folder); its test set is the 50,000 val images.
torchvision cannot download it. `read_image_folder` streams any pair of ImageFolder trees the same way. For a
streamed source, `fingerprint()` hashes the relative paths, file sizes and labels (not the pixels),
`channel_mean_std` gives the standard ImageNet statistics (`IMAGENET_MEAN`, `IMAGENET_STD`), and `image_shape` is
(3, 0, 0): 0 = height and width vary per image (the side is chosen later: `itnas.data.ImageDataset`'s image_size).
"""


from __future__ import annotations

import gzip
import hashlib
import logging
import math
import os
import pickle
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "DataError", "ImageFiles", "ImageSplit", "SourceData", "channel_mean_std",
           "create_dataset", "dataset_num_classes", "list_datasets", "read_image_folder", "register_dataset"]

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                       "t10k-labels-idx1-ubyte")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta")
CIFAR100_FILES = ("train", "test", "meta")
SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")
DOWNLOAD_WAY = "set data.download: true in params.yaml or the benchmark's data block (needs internet)"
#: Per-channel (R, G, B) mean and std of ImageNet's training images / 255: the statistics torchvision's ImageNet
#: models and the DARTS ImageNet recipe (cnn/train_imagenet.py) normalise with; used for every streamed source.
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
IMAGENET_URL = "https://image-net.org/download-images.php"


class DataError(RuntimeError):
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


def _digest(*parts: bytes | str) -> str:
    """SHA-256 (hex, 16 chars) of the parts in order."""
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------- sources
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
        return _digest(*parts)


DatasetReader = Callable[[Path, bool], SourceData]  # (root, download) -> SourceData
_DATASETS: dict[str, DatasetReader] = {}
_NUM_CLASSES: dict[str, int] = {}  # what each entry declares, known before reading it


def register_dataset(name: str, num_classes: int | None = None) -> Callable[[DatasetReader], DatasetReader]:
    """Decorator: register `reader(root: Path, download: bool) -> SourceData` under `name`, with the number of
    classes it yields (`num_classes`; lets the params check reject split sizes before any data is read).

    Raises:
        ValueError: `name` is already registered.
    """

    def add(reader: DatasetReader) -> DatasetReader:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is already registered")
        _DATASETS[name] = reader
        if num_classes is not None:
            _NUM_CLASSES[name] = num_classes
        return reader

    return add


def dataset_num_classes(name: str) -> int | None:
    """The number of classes registered data set `name` declares, or None (unknown name, or none declared)."""
    return _NUM_CLASSES.get(name)


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
        raise KeyError(f"unknown dataset {name!r}; valid datasets: {', '.join(list_datasets())}") from None
    return reader(Path(root), download)


@register_dataset("fashion_mnist", num_classes=10)
def _fashion_mnist(root: Path, download: bool) -> SourceData:
    """Fashion-MNIST (Xiao et al. 2017): 60,000 + 10,000 images of 1x28x28, 10 classes, via torchvision."""
    from torchvision.datasets import FashionMNIST

    raw = root / "FashionMNIST" / "raw"
    if not all((raw / f).exists() for f in FASHION_MNIST_FILES) and DEBIAN_FASHION_MNIST.is_dir():
        raw.mkdir(parents=True, exist_ok=True)
        for f in FASHION_MNIST_FILES:
            src = DEBIAN_FASHION_MNIST / f"{f}.gz"
            if src.exists() and not (raw / f).exists():
                log.info("decompressing %s -> %s", src, raw / f)
                with gzip.open(src, "rb") as fin, open(raw / f, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
    try:
        train = FashionMNIST(str(root), train=True, download=download)
        test = FashionMNIST(str(root), train=False, download=download)
    except Exception as err:  # noqa: BLE001  (torchvision raises RuntimeError, OSError, ValueError, ...)
        raise DataError(
            f"Fashion-MNIST not found ({err}). Provide it in one of three ways:\n"
            f"  1. put the four IDX files ({', '.join(FASHION_MNIST_FILES)}) in {raw}/ (torchvision layout);\n"
            f"  2. install the Debian package: apt-get install -y dataset-fashion-mnist "
            f"(files in {DEBIAN_FASHION_MNIST}/);\n"
            f"  3. set data.download: true in params.yaml (needs internet).") from None
    return SourceData("fashion_mnist", train.data.unsqueeze(1), train.targets.long(), test.data.unsqueeze(1),
                      test.targets.long(), list(train.classes))


@register_dataset("digits", num_classes=10)
def _digits(root: Path, download: bool) -> SourceData:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes; `root` and `download` unused), scaled to uint8
    and split 75/25 into train/test (stratified, seed 0: a fixed test set, like a real data set's)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy((d.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(d.target.astype(np.int64))
    idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=0.25, stratify=d.target, random_state=0)
    return SourceData("digits", images[idx_train], labels[idx_train], images[idx_test], labels[idx_test],
                      [str(i) for i in range(10)])


def _not_found(title: str, root: Path, ways: list[str], download: bool, fetch: Callable[[], object]) -> None:
    """Run `fetch()` (a torchvision download into `root`) when `download` is set; otherwise, or when it fails, raise
    one DataError naming `ways` (which name the folders and files looked for) and the download."""
    failed = ""
    if download:
        try:
            fetch()
            return
        except Exception as err:  # noqa: BLE001  (torchvision raises URLError, RuntimeError, OSError, ...)
            failed = f" (download failed: {type(err).__name__}: {err})"
    ways = [*ways, DOWNLOAD_WAY]
    raise DataError(f"{title} not found under {root}{failed}. Provide it in one of {len(ways)} ways:\n"
                    + ";\n".join(f"  {i}. {way}" for i, way in enumerate(ways, 1)) + ".")


def _absent(folder: Path, files: tuple[str, ...]) -> list[str]:
    """The names in `files` that are not files in `folder`."""
    return [f for f in files if not (folder / f).is_file()]


def _partly(folder: Path, files: tuple[str, ...]) -> str:
    """' (missing: a, b)' for the message when `folder` exists but lacks some of `files`, else ''."""
    absent = _absent(folder, files)
    return f" (missing: {', '.join(absent)})" if folder.is_dir() and absent else ""


def _unpickle(path: Path) -> dict[str, object]:
    """The dict in CIFAR pickle `path`, keys as str (the CIFAR site's Python 2 pickles load with bytes keys and
    values under encoding="bytes"). Raises DataError when unreadable or not a dict."""
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except Exception as err:  # noqa: BLE001  (pickle raises UnpicklingError, EOFError, ValueError, ...)
        raise DataError(f"{path}: not a readable pickle ({type(err).__name__}: {err})") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(d).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}


def _cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 3, 32, 32) uint8, labels (N,) int64) of a CIFAR batch: `data` rows of 3072 bytes (the R, G, B
    planes, each 32x32 row-major) and `label_key` a list of N labels. Raises DataError on a missing key, wrong
    shape or dtype, or a label outside [0, num_classes)."""
    d = _unpickle(path)
    try:
        x, y = np.asarray(d["data"]), np.asarray(d[label_key], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: no usable data and {label_key} entries ({type(err).__name__}: {err}; keys: "
                        f"{', '.join(map(str, d))})") from None
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or y.shape != (len(x),):
        raise DataError(f"{path}: expected data (N, 3072) uint8 and {label_key} (N,), got data {x.shape} {x.dtype} "
                        f"and {label_key} {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"{path}: {label_key} outside [0, {num_classes})")
    return x.reshape(-1, 3, 32, 32), y


def _cifar_pickles(name: str, folder: Path, files: tuple[str, ...], label_key: str, names_key: str,
                   num_classes: int) -> SourceData:
    """SourceData from CIFAR pickles in `folder`: files = (*train batches, test batch, meta); train = the train
    batches concatenated in order; class names = meta[names_key]."""
    train = [_cifar_batch(folder / f, label_key, num_classes) for f in files[:-2]]
    test = _cifar_batch(folder / files[-2], label_key, num_classes)
    names = _unpickle(folder / files[-1]).get(names_key)
    if not isinstance(names, list | tuple) or len(names) != num_classes:
        raise DataError(f"{folder / files[-1]}: expected {names_key} to list {num_classes} class names")
    return SourceData(name, torch.from_numpy(np.concatenate([x for x, _ in train])),
                      torch.from_numpy(np.concatenate([y for _, y in train])), torch.from_numpy(test[0].copy()),
                      torch.from_numpy(test[1]), [n.decode() if isinstance(n, bytes) else str(n) for n in names])


def _cifar10_image_folders(folder: Path) -> SourceData:
    """CIFAR-10 from ImageFolder trees folder/{train,test}/<class>/*.png|jpg of 32x32 images (RGB after PIL's
    convert; JPEG is lossy). Classes in ImageFolder's sorted order, which for the standard class folder names is the
    standard CIFAR-10 order (they are alphabetical); images sorted by file name within a class. Raises DataError on
    an unreadable or non-32x32 image, or class folders that differ between train and test or are not 10."""
    from PIL import Image
    from torchvision.datasets import ImageFolder

    arrays, classes = [], None
    for split in ("train", "test"):
        try:
            ds = ImageFolder(str(folder / split))
        except (FileNotFoundError, OSError) as err:
            raise DataError(f"{folder / split}: not a usable ImageFolder tree ({err})") from None
        if (classes is not None and ds.classes != classes) or len(ds.classes) != 10:
            raise DataError(f"{folder / split}: class folders {ds.classes} must be 10, the same in train and test")
        classes, images = ds.classes, []
        for path, _ in ds.samples:
            try:
                with Image.open(path) as im:
                    images.append(np.asarray(im.convert("RGB")))
            except OSError as err:
                raise DataError(f"{path}: unreadable image ({err})") from None
            if images[-1].shape != (32, 32, 3):
                raise DataError(f"{path}: image is {images[-1].shape[1]}x{images[-1].shape[0]}, expected 32x32")
        arrays += [torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2).copy()), torch.tensor(ds.targets)]
    return SourceData("cifar10", *arrays, classes)


@register_dataset("cifar10", num_classes=10)
def _cifar10(root: Path, download: bool) -> SourceData:
    """CIFAR-10 (Krizhevsky 2009): 50,000 + 10,000 images of 3x32x32, 10 classes (airplane ... truck).

    Found as (1) the python batches root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}, read with
    pickle directly (torchvision's reader checks MD5 sums and refuses re-encoded copies); train = data_batch_1..5
    concatenated in order; (2) ImageFolder trees root/cifar10/{train,test}/<class>/; (3) a torchvision download into
    (1) when `download`.

    Raises:
        DataError: none found (the message names the paths and the ways), or a file unreadable or of wrong shape.
    """
    batches, folders = root / "cifar-10-batches-py", root / "cifar10"
    if not _absent(batches, CIFAR10_FILES):
        return _cifar_pickles("cifar10", batches, CIFAR10_FILES, "labels", "label_names", 10)
    if (folders / "train").is_dir() and (folders / "test").is_dir():
        return _cifar10_image_folders(folders)
    from torchvision.datasets import CIFAR10

    _not_found("CIFAR-10", root, [
        f"put the python batches {', '.join(CIFAR10_FILES)} in {batches}/{_partly(batches, CIFAR10_FILES)} "
        f"(cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, extracted)",
        f"put 32x32 PNG/JPEG images in ImageFolder trees {folders / 'train'}/<class>/ and {folders / 'test'}/<class>/ "
        f"(class folders {', '.join(CIFAR10_CLASSES)} keep the standard label order)"],
        download, lambda: CIFAR10(str(root), train=True, download=True))
    return _cifar_pickles("cifar10", batches, CIFAR10_FILES, "labels", "label_names", 10)


@register_dataset("cifar100", num_classes=100)
def _cifar100(root: Path, download: bool) -> SourceData:
    """CIFAR-100 (Krizhevsky 2009): 50,000 + 10,000 images of 3x32x32, 100 classes (the fine labels).

    Found as (1) the python pickles root/cifar-100-python/{train, test, meta} (keys data, fine_labels;
    fine_label_names), read with pickle directly (no MD5 check); (2) a torchvision download into (1) when `download`.

    Raises:
        DataError: not found (the message names the paths and the ways), or a file unreadable or of wrong shape.
    """
    folder = root / "cifar-100-python"
    if _absent(folder, CIFAR100_FILES):
        from torchvision.datasets import CIFAR100

        _not_found("CIFAR-100", root, [
            f"put the python pickles {', '.join(CIFAR100_FILES)} in {folder}/{_partly(folder, CIFAR100_FILES)} "
            f"(cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, extracted)"],
            download, lambda: CIFAR100(str(root), train=True, download=True))
    return _cifar_pickles("cifar100", folder, CIFAR100_FILES, "fine_labels", "fine_label_names", 100)


def _svhn_mat(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 3, 32, 32) uint8, labels (N,) int64) of an SVHN .mat file: X (32, 32, 3, N) uint8 and y (N, 1)
    in 1..10, where 10 is the digit 0 (mapped to 0; 0 is accepted too). Raises DataError when unreadable, a key is
    missing, or a shape, dtype or label is wrong."""
    from scipy.io import loadmat

    try:
        d = loadmat(path)
        x, y = d["X"], np.asarray(d["y"]).astype(np.int64).ravel()
    except Exception as err:  # noqa: BLE001  (scipy raises MatReadError, ValueError, KeyError, ...)
        raise DataError(f"{path}: not a readable SVHN .mat file ({type(err).__name__}: {err})") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or y.shape != (x.shape[3],):
        raise DataError(f"{path}: expected X (32, 32, 3, N) uint8 and y (N, 1), got X {x.shape} {x.dtype} and y "
                        f"{np.shape(d['y'])}")
    if len(y) and (y.min() < 0 or y.max() > 10):
        raise DataError(f"{path}: labels y outside 1..10")
    y[y == 10] = 0
    return torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1))), torch.from_numpy(y)


@register_dataset("svhn", num_classes=10)
def _svhn(root: Path, download: bool) -> SourceData:
    """SVHN (Netzer et al. 2011), cropped digits: 73,257 + 26,032 images of 3x32x32, classes "0".."9".

    Found as root/svhn/ or root/ holding train_32x32.mat and test_32x32.mat (read with scipy; extra_32x32.mat is
    not used), else a torchvision download into root/svhn/ when `download`.

    Raises:
        DataError: not found (the message names the paths and the ways), or a file unreadable or of wrong shape.
    """
    folder = next((f for f in (root / "svhn", root) if not _absent(f, SVHN_FILES)), None)
    if folder is None:
        from torchvision.datasets import SVHN

        folder = root / "svhn"
        _not_found("SVHN", root, [
            f"put {', '.join(SVHN_FILES)} in {folder}/{_partly(folder, SVHN_FILES)} or in {root}/"
            f"{_partly(root, SVHN_FILES)} (format 2, cropped digits, from http://ufldl.stanford.edu/housenumbers/)"],
            download, lambda: [SVHN(str(folder), split=s, download=True) for s in ("train", "test")])
    return SourceData("svhn", *_svhn_mat(folder / SVHN_FILES[0]), *_svhn_mat(folder / SVHN_FILES[1]),
                      [str(i) for i in range(10)])


# ------------------------------------------------------------------------------------------ streamed sources
def _scan_image_folder(folder: Path, classes: list[str] | None = None) -> tuple[list[str], ImageFiles, torch.Tensor]:
    """(class names, ImageFiles, labels (N,) int64) of ImageFolder tree `folder`/<class>/**/<image>, in
    ImageFolder's order (classes sorted, then files as torchvision's `make_dataset` walks them: sorted, case-insensitive
    extensions of `IMG_EXTENSIONS`). `classes`: the class folders expected (those of another tree). Each file is
    stat'ed once for its size; none is opened.

    Raises:
        DataError: `folder` is not a folder, has no class folders (images directly in it get their own advice:
            ImageNet's val tar extracts flat), its class folders differ from `classes`, or a class has no image.
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
        missing, extra = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        raise DataError(f"{folder}: class folders differ from the training tree's ({len(found)} instead of "
                        f"{len(classes)}; missing: {', '.join(missing[:5]) or '-'}; extra: "
                        f"{', '.join(extra[:5]) or '-'})")
    try:
        samples = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as err:  # a class folder without images
        raise DataError(f"{folder}: {err}") from None
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
        DataError: a tree is missing or has no class folders, the trees' class folders differ, a class has no
            image, or the classes are not `num_classes` (when given).
    """
    classes, train, y_train = _scan_image_folder(Path(train_dir))
    if num_classes is not None and len(classes) != num_classes:
        raise DataError(f"{train_dir}: {len(classes)} class folders, expected {num_classes} for {name}")
    _, test, y_test = _scan_image_folder(Path(test_dir), classes)
    return SourceData(name, train, y_train, test, y_test, classes)


@register_dataset("imagenet", num_classes=1000)
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


# -------------------------------------------------------------------------------------------- normalisation
def channel_mean_std(images: Images) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation (unbiased, as `torch.std`) of images / 255.

    images: (N, C, H, W) uint8. Computed exactly from integer pixel histograms, then correctly rounded to float64,
    so the result does not depend on the thread count (a float32 `mean` over 47M pixels does in its last bit).
    Returns two lists of C floats; std is nan when there is a single pixel per channel.

    For `ImageFiles` (a streamed source) nothing is decoded: the standard ImageNet statistics `IMAGENET_MEAN`,
    `IMAGENET_STD` (torchvision's) are returned, the convention for natural RGB photographs; an exact pass would
    decode every training image (hours for ImageNet) and normalise differently from every published model.
    """
    if isinstance(images, ImageFiles):
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    x = images.numpy()
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean, std = [], []
    values = np.arange(256, dtype=object)  # Python ints: exact sums
    for c in range(x.shape[1]):
        counts = np.bincount(x[:, c].ravel(), minlength=256).astype(object)
        s, q = int((counts * values).sum()), int((counts * values * values).sum())
        mean.append(s / (255 * n))  # int / int is correctly rounded
        std.append(math.sqrt((n * q - s * s) / (n * (n - 1) * 255 * 255)) if n > 1 else float("nan"))
    return mean, std


