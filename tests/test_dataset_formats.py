"""Data-set readers on tiny files in each real format: CIFAR-10 (python batches and ImageFolder trees), CIFAR-100
(python pickles) and SVHN (.mat), read through `create_dataset`: exact pixels, labels, class names and shapes, and
the DataError for missing or corrupt files. No network: downloads are replaced by fakes."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torchvision.datasets
from fake_datasets import dump_pickle, random_images, write_cifar10, write_cifar100, write_svhn
from PIL import Image

from itnas.data import DataError, create_dataset, dataset_num_classes
from itnas.data.readers.cifar import CIFAR10_CLASSES, CIFAR10_FILES


def write_image_folders(folder: Path, classes: list[str], jpeg_last: bool = False) -> tuple[np.ndarray, ...]:
    """folder/{train,test}/<class>/NNN.png (3 and 2 per class). Returns (train images, labels, test images, labels)
    in ImageFolder order (classes sorted, files sorted); with `jpeg_last` the last train image is a .jpg, and its
    expected pixels are its decoded JPEG."""
    rng, out = np.random.default_rng(3), []
    for split, n in (("train", 3), ("test", 2)):
        xs, ys = [], []
        for label, name in enumerate(sorted(classes)):
            (folder / split / name).mkdir(parents=True)
            for i in range(n):
                x = random_images(rng, 1)[0]
                path = folder / split / name / f"{i:03d}.png"
                if jpeg_last and split == "train" and label == len(classes) - 1 and i == n - 1:
                    path = path.with_suffix(".jpg")
                    Image.fromarray(x.transpose(1, 2, 0)).save(path, quality=95)
                    x = np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)
                else:
                    Image.fromarray(x.transpose(1, 2, 0)).save(path)
                xs.append(x)
                ys.append(label)
        out += [np.stack(xs), np.array(ys)]
    return tuple(out)


def assert_source(src, name, x_train, y_train, x_test, y_test, classes):
    assert src.name == name and src.classes == list(classes) and len(classes) == dataset_num_classes(name)
    for got, want in ((src.train_images, x_train), (src.test_images, x_test)):
        assert got.dtype == torch.uint8 and got.shape == (len(want), 3, 32, 32)
        assert torch.equal(got, torch.from_numpy(want))
    for got, want in ((src.train_labels, y_train), (src.test_labels, y_test)):
        assert got.dtype == torch.int64 and torch.equal(got, torch.from_numpy(want.astype(np.int64)))


# ------------------------------------------------------------------------------------------------------ reading
def test_cifar10_python_batches(tmp_path):
    expected = write_cifar10(tmp_path)
    assert_source(create_dataset("cifar10", tmp_path), "cifar10", *expected, CIFAR10_CLASSES)


def test_cifar10_batches_that_are_not_the_original_files_load_without_md5(tmp_path):
    """torchvision's CIFAR10 refuses files whose MD5 is not the original's (a re-encoded copy); the reader does not."""
    x_train, *_ = write_cifar10(tmp_path)
    with pytest.raises(RuntimeError, match="not found or corrupted"):
        torchvision.datasets.CIFAR10(str(tmp_path), train=True, download=False)
    assert torch.equal(create_dataset("cifar10", tmp_path).train_images, torch.from_numpy(x_train))


@pytest.mark.parametrize("jpeg_last", [False, True], ids=["png", "png+jpg"])
def test_cifar10_image_folders_in_standard_class_order(tmp_path, jpeg_last):
    classes = list(CIFAR10_CLASSES)
    expected = write_image_folders(tmp_path / "cifar10", classes[::-1], jpeg_last)  # created in reverse order
    assert_source(create_dataset("cifar10", tmp_path), "cifar10", *expected, CIFAR10_CLASSES)


def test_cifar10_image_folders_with_other_names_use_sorted_order(tmp_path):
    classes = [f"class_{c}" for c in "jihgfedcba"]
    expected = write_image_folders(tmp_path / "cifar10", classes)
    assert_source(create_dataset("cifar10", tmp_path), "cifar10", *expected, sorted(classes))


def test_cifar10_batches_come_before_image_folders(tmp_path):
    expected = write_cifar10(tmp_path)
    write_image_folders(tmp_path / "cifar10", list(CIFAR10_CLASSES))
    assert_source(create_dataset("cifar10", tmp_path), "cifar10", *expected, CIFAR10_CLASSES)


def test_cifar100_fine_labels(tmp_path):
    *expected, names = write_cifar100(tmp_path)
    assert_source(create_dataset("cifar100", tmp_path), "cifar100", *expected, names)


@pytest.mark.parametrize("where", ["svhn", "."])
def test_svhn_mat_files_map_label_10_to_0(tmp_path, where):
    x_train, y_train, x_test, y_test = write_svhn(tmp_path / where)
    src = create_dataset("svhn", tmp_path)
    assert_source(src, "svhn", x_train, y_train, x_test, y_test, [str(d) for d in range(10)])
    assert int((src.train_labels == 0).sum()) == 2  # the two y == 10 images


def test_download_fetches_into_the_standard_layout(tmp_path, monkeypatch):
    """With `download`, torchvision's CIFAR10 (here a fake writing tiny batches) fills root/cifar-10-batches-py/."""
    written = {}
    monkeypatch.setattr(torchvision.datasets, "CIFAR10",
                        lambda root, train, download: written.setdefault("x", write_cifar10(Path(root))))
    src = create_dataset("cifar10", tmp_path, True)  # `download` on, with torchvision's class faked: no network
    assert_source(src, "cifar10", *written["x"], CIFAR10_CLASSES)


# ------------------------------------------------------------------------------------------------------- errors
NOT_FOUND = {
    "cifar10": ["cifar-10-batches-py", *CIFAR10_FILES, "cifar10/train", "cifar10/test", "ImageFolder"],
    "cifar100": ["cifar-100-python", "train, test, meta"],
    "svhn": ["svhn/", "train_32x32.mat", "test_32x32.mat"],
}


@pytest.mark.parametrize("name", sorted(NOT_FOUND))
def test_missing_data_names_every_path_and_way(tmp_path, name):
    with pytest.raises(DataError) as err:
        create_dataset(name, tmp_path / "raw")
    msg = str(err.value)
    assert str(tmp_path / "raw") in msg and "data.download: true" in msg and "needs internet" in msg
    for part in NOT_FOUND[name]:
        assert part in msg, part


@pytest.mark.parametrize("name, tv_class", [("cifar10", "CIFAR10"), ("cifar100", "CIFAR100"), ("svhn", "SVHN")])
def test_failed_download_is_one_data_error(tmp_path, monkeypatch, name, tv_class):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.datasets, tv_class, offline)
    with pytest.raises(DataError, match=r"download failed: OSError: no network") as err:
        create_dataset(name, tmp_path, True)  # `download` on, with torchvision's class faked: no network
    assert NOT_FOUND[name][0] in str(err.value)


def test_partly_present_batches_name_the_missing_files(tmp_path):
    write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"\(missing: data_batch_3\)"):
        create_dataset("cifar10", tmp_path)


def _garbage(path: Path) -> None:
    path.write_bytes(b"not a pickle or a mat file")


def _cifar_data(path: Path, data: np.ndarray) -> None:
    d = pickle.loads(path.read_bytes(), encoding="bytes")
    dump_pickle(path, {**d, b"data": data})


CORRUPT = {  # name: (writer, file to damage, damage, message pattern)
    "cifar10-bad-pickle": ("cifar10", "cifar-10-batches-py/data_batch_3", _garbage, "not a readable pickle"),
    "cifar10-wrong-shape": ("cifar10", "cifar-10-batches-py/test_batch",
                            lambda p: _cifar_data(p, np.zeros((20, 3000), np.uint8)), r"expected data \(N, 3072\)"),
    "cifar10-no-labels": ("cifar10", "cifar-10-batches-py/data_batch_1",
                          lambda p: dump_pickle(p, {b"data": np.zeros((6, 3072), np.uint8)}),
                          "no usable data and labels"),
    "cifar100-wrong-dtype": ("cifar100", "cifar-100-python/train",
                             lambda p: _cifar_data(p, np.zeros((12, 3072), np.float32)), "uint8"),
    "cifar100-bad-meta": ("cifar100", "cifar-100-python/meta",
                          lambda p: dump_pickle(p, {b"fine_label_names": [b"a"]}), "100 class names"),
    "svhn-bad-mat": ("svhn", "svhn/test_32x32.mat", _garbage, "not a readable SVHN .mat"),
    "svhn-wrong-shape": ("svhn", "svhn/train_32x32.mat",
                         lambda p: scipy.io.savemat(p, {"X": np.zeros((28, 28, 3, 2), np.uint8), "y": np.ones((2, 1))}),
                         r"expected X \(32, 32, 3, N\)"),
}
WRITERS = {"cifar10": write_cifar10, "cifar100": write_cifar100, "svhn": lambda root: write_svhn(root / "svhn")}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_corrupt_file_is_a_data_error_naming_it(tmp_path, case):
    name, rel, damage, pattern = CORRUPT[case]
    WRITERS[name](tmp_path)
    damage(tmp_path / rel)
    with pytest.raises(DataError, match=pattern) as err:
        create_dataset(name, tmp_path)
    assert str(tmp_path / rel) in str(err.value)


@pytest.mark.parametrize("problem", ["size", "classes"])
def test_bad_image_folders_are_a_data_error(tmp_path, problem):
    folder = tmp_path / "cifar10"
    write_image_folders(folder, list(CIFAR10_CLASSES))
    if problem == "size":
        bad = folder / "train" / "cat" / "001.png"
        Image.new("RGB", (28, 32)).save(bad)
        pattern = "28x32, expected 32x32"
    else:
        bad = folder / "test"
        (bad / "truck").rename(bad / "lorry")
        pattern = "must be 10, the same in train and test"
    with pytest.raises(DataError, match=pattern) as err:
        create_dataset("cifar10", tmp_path)
    assert str(bad) in str(err.value)
