"""Data: the dataset registry, splits as indices (the same images as the former all-pixel format), prepared folders
whose bytes depend only on what is computed, loading with a source check, no test image in search, loaders."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.model_selection import train_test_split
from tiny_project import prepare_splits
from torch.utils.data import DataLoader, DistributedSampler

import itnas.data.readers.fashion_mnist as fashion_mnist_mod
import itnas.data.registry as registry_mod
from itnas.data import (
    DataError,
    ImageDataset,
    ImageSplit,
    SearchData,
    SourceData,
    TrainData,
    assert_search_excludes_test,
    channel_mean_std,
    create_dataset,
    find_test_overlap,
    list_datasets,
    load_search_data,
    load_train_data,
    make_loader,
    make_splits,
    register_dataset,
)

HAVE_FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists()
SPLITS = ("search_train", "search_val", "train", "test")


def _tree(directory: Path) -> dict[str, bytes]:
    """relative path -> bytes of every file under `directory`."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _synthetic(n: int = 60, m: int = 20, channels: int = 2, seed: int = 0) -> SourceData:
    """Random (n + m) x C x 6 x 6 images of 3 classes, every image distinct."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n + m, channels, 6, 6), generator=g, dtype=torch.uint8)
    y = torch.arange(n + m) % 3
    return SourceData("synthetic", x[:n], y[:n], x[n:], y[n:], ["a", "b", "c"])


@pytest.fixture
def synthetic_registered(monkeypatch):
    """A `synthetic` registry entry that reads root/images.pt (restored after the test)."""

    def reader(root: Path, download: bool) -> SourceData:
        path = root / "images.pt"
        if not path.exists():
            raise DataError(f"synthetic: {path} missing")
        return SourceData("synthetic", *torch.load(path), ["a", "b", "c"])

    def write(root: Path, source: SourceData) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        torch.save([source.train_images, source.train_labels, source.test_images, source.test_labels],
                   root / "images.pt")
        return root

    monkeypatch.setitem(registry_mod._DATASETS, "synthetic", reader)
    return write


@pytest.fixture(scope="module")
def digits() -> SourceData:
    return create_dataset("digits", "unused")


# ---------------------------------------------------------------------------------------------------- registry
def test_registry_names_and_errors():
    assert list_datasets()[:2] == ["fashion_mnist", "digits"]
    with pytest.raises(KeyError, match="unknown dataset 'cifar'; valid datasets: fashion_mnist, digits"):
        create_dataset("cifar", "data/raw")
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("digits")(lambda root, download: None)


@pytest.mark.parametrize("name", ["fashion_mnist", "digits"])  # file formats: tests/test_dataset_formats.py
def test_every_registered_dataset_reads_a_valid_source(name, tmp_path):
    if name == "fashion_mnist" and not HAVE_FMNIST:
        pytest.skip("Fashion-MNIST Debian package not installed")
    src = create_dataset(name, tmp_path)
    assert src.name == name
    for x, y in (src.arrays("train"), src.arrays("test")):
        assert x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1:] == src.image_shape
        assert y.dtype == torch.int64 and y.shape == (len(x),)
        assert set(y.unique().tolist()) == set(range(len(src.classes)))
    fp = src.fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert create_dataset(name, tmp_path).fingerprint() == fp  # reading twice: the same data


def test_fashion_mnist_not_found_lists_the_three_ways(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion_mnist_mod, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian-package")
    with pytest.raises(DataError) as err:
        create_dataset("fashion_mnist", tmp_path / "raw", download=False)
    msg = str(err.value)
    for way in ("1. put the four IDX files", "2. install the Debian package", "3. set data.download: true"):
        assert way in msg
    assert str(tmp_path / "raw" / "FashionMNIST" / "raw") in msg


def test_fingerprint_sees_one_pixel_and_one_label():
    src = _synthetic()
    fp = src.fingerprint()
    x, y = src.train_images.clone(), src.test_labels.clone()
    x[5, 1, 2, 3] ^= 1
    y[0] = (y[0] + 1) % 3
    assert SourceData("s", x, src.train_labels, src.test_images, src.test_labels, src.classes).fingerprint() != fp
    assert SourceData("s", src.train_images, src.train_labels, src.test_images, y, src.classes).fingerprint() != fp
    renamed = SourceData("renamed", src.train_images, src.train_labels, src.test_images, src.test_labels, list("xyz"))
    assert renamed.fingerprint() == fp  # the pixels and labels only


def test_source_data_validates_dtypes_and_shapes():
    src = _synthetic()
    with pytest.raises(ValueError, match="train images must be"):
        SourceData("s", src.train_images.float(), src.train_labels, src.test_images, src.test_labels, src.classes)
    with pytest.raises(ValueError, match="test labels must be"):
        SourceData("s", src.train_images, src.train_labels, src.test_images, src.test_labels.int(), src.classes)
    with pytest.raises(ValueError, match=r"labels outside \[0, 2\)"):
        SourceData("s", src.train_images, src.train_labels, src.test_images, src.test_labels, ["a", "b"])
    with pytest.raises(ValueError, match="differ in"):
        SourceData("s", src.train_images, src.train_labels, src.test_images[:, :1], src.test_labels, src.classes)


# ------------------------------------------------------------------------------------------------------ splits
def _former_prepare_dataset(search_train_size, search_val_size, train_size, test_size, split_seed, digits_seed):
    """The digits path of the former `prepare_dataset` (itnas/data.py before splits became indices), verbatim
    except that the 75/25 train/test partition of the 1,797 digits used `split_seed`; it is `digits_seed` here.
    Returns split name -> (images, labels, source, source_index), and mean, std."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy((d.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(d.target.astype(np.int64))
    idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=0.25, stratify=d.target,
                                           random_state=digits_seed)
    xtr, ytr, xte, yte = images[idx_train], labels[idx_train], images[idx_test], labels[idx_test]

    def stratified_subset(labels, pool, size, seed):
        if size == 0 or size >= len(pool):
            return np.sort(pool)
        picked, _ = train_test_split(pool, train_size=size, stratify=labels[pool], random_state=seed)
        return np.sort(picked)

    n = len(ytr)
    y = ytr.numpy()
    idx_search, _ = (np.arange(n), None) if search_train_size + search_val_size == n else train_test_split(
        np.arange(n), train_size=search_train_size + search_val_size, stratify=y, random_state=split_seed)
    idx_st, idx_sv = train_test_split(idx_search, train_size=search_train_size, stratify=y[idx_search],
                                      random_state=split_seed + 1)
    idx_st, idx_sv = np.sort(idx_st), np.sort(idx_sv)
    idx_train = stratified_subset(y, np.arange(n), train_size, split_seed + 2)
    idx_test = stratified_subset(yte.numpy(), np.arange(len(yte)), test_size, split_seed + 3)

    def split(x, labels, source, idx):
        idx = torch.from_numpy(idx)
        return x[idx].contiguous(), labels[idx].long(), source, idx

    xf = xtr.float() / 255.0
    splits = {"search_train": split(xtr, ytr, "train", idx_st), "search_val": split(xtr, ytr, "train", idx_sv),
              "train": split(xtr, ytr, "train", idx_train), "test": split(xte, yte, "test", idx_test)}
    return splits, xf.mean(dim=(0, 2, 3)).tolist(), xf.std(dim=(0, 2, 3)).tolist()


# source_index of the four splits of digits (300, 300, 500, 150, split_seed 0), from the former code (commit 1d6944b)
GOLDEN_DIGITS = "9cc91d32df15bf89"


@pytest.mark.parametrize("sizes,split_seed", [((300, 300, 0, 0), 0), ((200, 100, 500, 150), 0),
                                              ((1047, 300, 0, 0), 0), ((64, 64, 256, 200), 1)])
def test_splits_hold_the_same_images_as_the_former_format(digits, sizes, split_seed):
    search_idx, train_idx = make_splits(digits, *sizes, split_seed=split_seed)
    new = {**SearchData.from_indices(search_idx, digits).splits(), **TrainData.from_indices(train_idx, digits).splits()}
    # the digits train/test partition is fixed now (seed 0); before, it moved with split_seed
    former, mean, std = _former_prepare_dataset(*sizes, split_seed=split_seed, digits_seed=0)
    for k in SPLITS:
        images, labels, source, index = former[k]
        s = new[k]
        assert torch.equal(s.images, images) and torch.equal(s.labels, labels), k
        assert s.source == source and torch.equal(s.source_index, index), k
        assert s.images.dtype == torch.uint8 and s.labels.dtype == torch.int64 and s.source_index.dtype == torch.int64
    # mean/std are exact now: equal to the former float32 values within one float32 rounding step
    assert torch.allclose(torch.tensor(search_idx.mean), torch.tensor(mean), rtol=2e-7, atol=0)
    assert torch.allclose(torch.tensor(search_idx.std), torch.tensor(std), rtol=2e-7, atol=0)


def test_digits_golden_indices(digits):
    search_idx, train_idx = make_splits(digits, 300, 300, 500, 150, split_seed=0)
    h = hashlib.sha256()
    for idx in (*search_idx.indices.values(), *train_idx.indices.values()):
        h.update(idx.astype(np.int64).tobytes())
    assert h.hexdigest()[:16] == GOLDEN_DIGITS


def test_split_sizes_disjointness_and_stratification(digits):
    search_idx, train_idx = make_splits(digits, 300, 200, 400, 100, split_seed=3)
    st, sv = search_idx.indices["search_train"], search_idx.indices["search_val"]
    assert (len(st), len(sv), len(train_idx.indices["train"]), len(train_idx.indices["test"])) == (300, 200, 400, 100)
    assert not set(st.tolist()) & set(sv.tolist())
    for idx in (*search_idx.indices.values(), *train_idx.indices.values()):
        assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)  # sorted, unique
    counts = torch.bincount(digits.train_labels[torch.from_numpy(st)], minlength=10).float()
    assert (counts - 30).abs().max() <= 2
    with pytest.raises(DataError, match="exceeds the 1347 training images of digits"):
        make_splits(digits, 1000, 348)
    with pytest.raises(DataError, match="cannot split digits"):
        make_splits(digits, 5, 100)  # 5 images cannot hold 10 classes


def test_channel_mean_std_is_exact():
    x = torch.randint(0, 256, (50, 3, 7, 5), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    mean, std = channel_mean_std(x)
    x64 = x.double() / 255.0
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), x64.mean(dim=(0, 2, 3)), rtol=1e-14, atol=0)
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), x64.std(dim=(0, 2, 3)), rtol=1e-14, atol=0)


# ------------------------------------------------------------------------------------------- prepared folders
def test_prepared_bytes_depend_only_on_computed_values(tmp_path, synthetic_registered):
    src = _synthetic()
    root_a, root_b = synthetic_registered(tmp_path / "a", src), synthetic_registered(tmp_path / "b", src)
    prepare_splits(create_dataset("synthetic", root_a), 12, 12, 0, 0, out=tmp_path / "p1")
    prepare_splits(create_dataset("synthetic", root_a), 12, 12, 30, 0, out=tmp_path / "p2")  # other final-training size
    prepare_splits(create_dataset("synthetic", root_b), 12, 12, 0, 0, out=tmp_path / "p3")  # other root, same images
    search, train = [[_tree(tmp_path / p / k) for p in ("p1", "p2", "p3")] for k in ("search", "train")]
    assert search[0] == search[1] == search[2]
    assert train[0] == train[2] and train[0] != train[1]
    assert set(search[0]) == {"splits.json", "search_train.npy", "search_val.npy"}
    text = (tmp_path / "p1" / "search" / "splits.json").read_text()
    assert str(tmp_path) not in text and "root" not in text


def _write_params(path: Path, **data) -> Path:
    """A params file with one benchmark `b` reading the shared `data` block."""
    bench = {"label": "b", "evaluation": "train", "data": {}, "search": {}, "train": {}}
    path.write_text(yaml.safe_dump({"data": data, "benchmarks": {"b": bench}, "runs": {"benchmarks": ["b"]}}))
    return path


@pytest.mark.parametrize("dataset", ["digits", "fashion_mnist"])
def test_prepare_stage_outputs_are_byte_identical(tmp_path, monkeypatch, dataset):
    """The stage's two folders: a new train_size leaves search/ unchanged, a new root (same images) both."""
    if dataset == "fashion_mnist" and not HAVE_FMNIST:
        pytest.skip("Fashion-MNIST Debian package not installed")
    from pipeline.prepare import prepare

    monkeypatch.chdir(tmp_path)
    base = dict(dataset=dataset, search_train_size=64, search_val_size=64, test_size=200, split_seed=0)
    trees = []
    for i, (root, train_size) in enumerate([("raw_a", 256), ("raw_a", 300), ("raw_b", 256)]):
        prepare("b", str(_write_params(tmp_path / f"params{i}.yaml", root=str(tmp_path / root), train_size=train_size,
                                  **base)))
        trees.append({k: _tree(tmp_path / "data" / "prepared" / "b" / k) for k in ("search", "train")})
    assert trees[0]["search"] == trees[1]["search"] == trees[2]["search"]
    assert trees[0]["train"] == trees[2]["train"] and trees[0]["train"] != trees[1]["train"]
    summary = json.loads(trees[0]["train"]["summary.json"])
    assert summary["dataset"] == dataset and summary["train_size"] == 256 and summary["test_size"] == 200
    assert set(json.loads(trees[0]["search"]["summary.json"])) == {
        "dataset", "classes", "in_channels", "image_size", "mean", "std", "search_train_size", "search_val_size"}
    search = load_search_data(tmp_path / "data" / "prepared" / "b" / "search", tmp_path / "raw_b")
    assert len(search.search_train) == len(search.search_val) == 64


def test_load_returns_the_prepared_splits(tmp_path, digits):
    search, train = prepare_splits(digits, 100, 50, 200, 80, out=tmp_path)
    loaded_s = load_search_data(tmp_path / "search", "unused")
    loaded_t = load_train_data(tmp_path / "train", "unused")
    for a, b in ((search, loaded_s), (train, loaded_t)):
        for k, s in a.splits().items():
            t = b.splits()[k]
            assert torch.equal(s.images, t.images) and torch.equal(s.labels, t.labels)
            assert torch.equal(s.source_index, t.source_index) and s.source == t.source
        assert (b.name, b.classes, b.in_channels, b.image_size) == ("digits", [str(i) for i in range(10)], 1, 8)
        assert b.mean == a.mean and b.std == a.std and b.fingerprint() == a.fingerprint()
    assert loaded_s.fingerprint() != loaded_t.fingerprint()
    # the search fingerprint ignores the final-training splits
    search2, train2 = prepare_splits(digits, 100, 50, 300, 80, out=tmp_path / "other")
    assert search2.fingerprint() == search.fingerprint() and train2.fingerprint() != train.fingerprint()


def test_load_errors_name_the_folder(tmp_path, digits):
    prepare_splits(digits, 100, 50, 200, 80, out=tmp_path)
    with pytest.raises(DataError, match=f"prepared data folder {tmp_path / 'nope'} does not exist"):
        load_search_data(tmp_path / "nope", "unused")
    with pytest.raises(DataError, match="holds search splits, not train splits"):
        load_train_data(tmp_path / "search", "unused")
    meta_file = tmp_path / "search" / "splits.json"
    meta = meta_file.read_text()
    meta_file.write_text(json.dumps({**json.loads(meta), "dataset": "cifar"}))
    with pytest.raises(DataError, match="names data set 'cifar'; valid datasets: fashion_mnist, digits"):
        load_search_data(tmp_path / "search", "unused")
    meta_file.write_text(meta)
    np.save(tmp_path / "search" / "search_val.npy", np.arange(50, dtype=np.int64))
    with pytest.raises(DataError, match=r"search.* is unreadable .*search_val.npy does not match"):
        load_search_data(tmp_path / "search", "unused")
    (tmp_path / "train" / "splits.json").write_text("{not json")
    with pytest.raises(DataError, match="is unreadable"):
        load_train_data(tmp_path / "train", "unused")
    (tmp_path / "train" / "splits.json").unlink()
    with pytest.raises(DataError, match="has no splits.json"):
        load_train_data(tmp_path / "train", "unused")


def test_load_refuses_other_images_under_root(tmp_path, synthetic_registered):
    src = _synthetic()
    root = synthetic_registered(tmp_path / "raw", src)
    prepare_splits(create_dataset("synthetic", root), 12, 12, 0, 0, out=tmp_path / "p")
    x = src.train_images.clone()
    x[0, 0, 0, 0] ^= 255
    synthetic_registered(root, SourceData("synthetic", x, src.train_labels, src.test_images, src.test_labels,
                                          src.classes))
    for load in (load_search_data, load_train_data):
        with pytest.raises(DataError, match=rf"synthetic read from root {root} is not the data .* fingerprint"):
            load(tmp_path / "p" / load.__name__.split("_")[1], root)
    fewer = SourceData("synthetic", src.train_images[:50], src.train_labels[:50], src.test_images, src.test_labels,
                       src.classes)
    synthetic_registered(root, fewer)
    with pytest.raises(DataError, match="50 train / 20 test images instead of 60 / 20"):
        load_search_data(tmp_path / "p" / "search", root)


# ---------------------------------------------------------------------------------------- no test in search
def test_provenance_check(digits):
    search, train = prepare_splits(digits, 300, 300, 0, 0)
    assert_search_excludes_test(search, train.test)
    t = train.test
    bad = SearchData(search.name, search.classes, search.mean, search.std, search.source_fingerprint,
                     search.search_train, ImageSplit(t.images, t.labels, "test", t.source_index))
    with pytest.raises(AssertionError, match="search_val must come from the training images"):
        assert_search_excludes_test(bad)
    same = SearchData(search.name, search.classes, search.mean, search.std, search.source_fingerprint,
                      search.search_train, search.search_train)
    with pytest.raises(AssertionError, match="search-train and search-val share 300 images"):
        assert_search_excludes_test(same)


def test_no_test_image_content_in_digits_search(digits):
    """Every search image against every test image, by bytes (digits holds no image twice across train/test)."""
    search, train = prepare_splits(digits, 1047, 300, 0, 0)
    overlap = find_test_overlap(search.splits(), train.test)
    assert overlap.leaks == [] and overlap.duplicates == []
    overlap.check()


def test_content_overlap_tells_leaks_from_source_duplicates():
    src = _synthetic()
    x_test = src.test_images.clone()
    x_test[4] = src.train_images[7]  # the data set itself holds train image 7 again as test image 4
    src = SourceData("synthetic", src.train_images, src.train_labels, x_test, src.test_labels, src.classes)
    search = {"search_train": ImageSplit(src.train_images[[3, 7]], src.train_labels[[3, 7]], "train",
                                         torch.tensor([3, 7]))}
    test = ImageSplit(src.test_images, src.test_labels, "test", torch.arange(20))
    overlap = find_test_overlap(search, test)
    assert overlap.leaks == [] and overlap.duplicates == [("search_train", 1, ("train", 7), 4)]
    overlap.check(allow_duplicates=True)  # duplicates in the source are not a leak ...
    with pytest.raises(DataError, match="1 search images have the same pixels as a test image"):
        overlap.check()  # ... but the search would see test content: refused by default (the prepare stage)
    search["search_val"] = ImageSplit(src.test_images[[9]], src.test_labels[[9]], "test", torch.tensor([9]))
    overlap = find_test_overlap(search, test)
    assert overlap.leaks == [("search_val", 0, 9)]
    with pytest.raises(AssertionError, match=r"1 test images in the search splits: search_val\[0\] = test\[9\]"):
        overlap.check()


# --------------------------------------------------------------------------------------------------- loaders
def test_image_dataset_normalises_as_before(digits):
    split = ImageSplit(digits.train_images[:10], digits.train_labels[:10], "train", torch.arange(10))
    ds = ImageDataset(split, [0.3], [0.2])
    x, y, i = ds[4]
    assert torch.equal(x, (split.images[4].float() / 255.0 - torch.tensor([0.3]).view(-1, 1, 1))
                       / torch.tensor([0.2]).view(-1, 1, 1))
    assert (y, i) == (int(split.labels[4]), 4)


def _batches(loader) -> list[list[int]]:
    return [b[2].tolist() for b in loader]


def test_make_loader_without_sampler_is_the_former_loader(digits):
    split = ImageSplit(digits.train_images[:37], digits.train_labels[:37], "train", torch.arange(37))
    ds = ImageDataset(split, [0.3], [0.2])
    torch.manual_seed(123)
    state = torch.get_rng_state()
    got = _batches(make_loader(ds, 8, True, seed=2, epoch=3))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    g = torch.Generator().manual_seed(2 * 100_003 + 3)
    assert got == _batches(DataLoader(ds, batch_size=8, shuffle=True, generator=g, num_workers=0))
    assert sorted(sum(got, [])) == list(range(37))
    assert _batches(make_loader(ds, 8, False)) == [list(range(k, min(k + 8, 37))) for k in range(0, 37, 8)]
    assert len(_batches(make_loader(ds, 8, True, drop_last=True))) == 4


def test_make_loader_with_sampler(digits):
    split = ImageSplit(digits.train_images[:20], digits.train_labels[:20], "train", torch.arange(20))
    ds = ImageDataset(split, [0.3], [0.2])
    order = [19, 3, 5, 0, 7]
    assert _batches(make_loader(ds, 2, True, sampler=order)) == [[19, 3], [5, 0], [7]]
    # a DistributedSampler gets the epoch: same (seed, epoch) -> same shard order, another epoch -> another
    state = torch.get_rng_state()
    shard = [_batches(make_loader(ds, 4, True, epoch=e, sampler=DistributedSampler(ds, num_replicas=2, rank=1,
                                                                                  seed=5)))
             for e in (0, 0, 1)]
    assert torch.equal(torch.get_rng_state(), state)
    assert shard[0] == shard[1] != shard[2] and len(sum(shard[0], [])) == 10
