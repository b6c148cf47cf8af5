"""The data API: sources, splits, prepared data, samples and loaders (`from itnas.data import ...`).

By role, one module each:

- `containers`: `SourceData` (a data set's fixed train and test sets, with its `fingerprint()`), `ImageSplit`,
  `ImageFiles` (streamed images, decoded on request) and `DataError`, the one error of the data API;
- `registry`: the data-set registry (`create_dataset`, `list_datasets`, `register_dataset`,
  `dataset_num_classes`); `readers/`: one module per data set (fashion_mnist, digits, cifar10/cifar100, svhn,
  imagenet, imagefolder: your own ImageFolder trees from params; `read_image_folder` for any pair of ImageFolder
  trees, streamed);
- `normalisation`: `channel_mean_std` of the training images (exact), `IMAGENET_MEAN` / `IMAGENET_STD`;
- `splits`: splits as index arrays (`make_splits`, `SplitIndices`: the prepared folder's bytes);
- `prepared`: a prepared folder read back and checked against its source (`load_search_data`, `load_train_data`);
- `leaks`: no test image in search (`assert_search_excludes_test`, `find_test_overlap`);
- `samples`: `ImageDataset`, samples made on the CPU; `augment`: `DeviceDataset`, batches made on the device
  (docs/method.md 2.10);
- `loaders`: `make_loader` (batches that depend only on (seed, epoch)), `make_dataset` (CPU or device),
  `loader_options`.

The library reads data sets, never the pipeline's params or folders: roots and sizes are arguments.
"""

from . import readers
from .augment import DeviceDataset, fits_on_device, split_bytes
from .containers import DataError, ImageFiles, ImageSplit, SourceData
from .leaks import ContentOverlap, assert_search_excludes_test, find_test_overlap
from .loaders import (
    CUDA_NUM_WORKERS,
    loader_options,
    make_dataset,
    make_loader,
    num_batches,
    resolve_on_device,
)
from .normalisation import IMAGENET_MEAN, IMAGENET_STD, channel_mean_std
from .prepared import SearchData, TrainData, load_search_data, load_train_data
from .readers import read_image_folder
from .registry import create_dataset, dataset_num_classes, dataset_streamed, list_datasets, register_dataset
from .samples import ImageDataset
from .splits import SplitIndices, make_splits

__all__ = ["CUDA_NUM_WORKERS", "IMAGENET_MEAN", "IMAGENET_STD", "ContentOverlap", "DataError", "DeviceDataset",
           "ImageDataset", "ImageFiles", "ImageSplit", "SearchData", "SourceData", "SplitIndices", "TrainData",
           "assert_search_excludes_test", "channel_mean_std", "create_dataset", "dataset_num_classes",
           "dataset_streamed", "find_test_overlap", "fits_on_device", "list_datasets", "load_search_data",
           "load_train_data", "loader_options", "make_dataset", "make_loader", "make_splits", "num_batches",
           "read_image_folder", "readers", "register_dataset", "resolve_on_device", "split_bytes"]
