"""Streamed image-file data sets (ImageNet): a tiny ImageFolder of JPEGs of varying size read as `ImageFiles`
(nothing decoded until an item is requested), its fingerprint, splits and prepared folders, the ImageNet-style
train / eval transforms, the `imagenet` registry entry and its errors, the test-overlap check on files, and one
prepare -> search -> derive -> evaluate chain through the stage commands.

The registry's `imagenet` declares 1000 classes, so the lazy path is tested through `read_image_folder` and a
3-class entry `imagenet_tiny` (root/imagenet_tiny/{train,val}/), registered per test with monkeypatch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from tiny_project import itnas, one_line_error, prepare_splits, tiny_params, write_params

import itnas.data.leaks as leaks_mod
import itnas.data.registry as registry_mod
from itnas.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataError,
    ImageDataset,
    ImageFiles,
    ImageSplit,
    SourceData,
    create_dataset,
    dataset_num_classes,
    find_test_overlap,
    list_datasets,
    load_search_data,
    load_train_data,
    make_loader,
    make_splits,
    read_image_folder,
)
from pipeline.paths import run_record

TINY = "imagenet_tiny"
CLASSES = ["n03", "n01", "n02"]  # written in this order; the labels follow the sorted names
SIZES = [(40, 30), (50, 60), (33, 47), (64, 20)]  # (width, height) of the k-th image of each class


def write_tree(folder: Path, n_train: int = 4, n_val: int = 2, seed: int = 0) -> dict[str, tuple[int, int]]:
    """folder/{train,val}/<class>/<class>_<k>.JPEG of random pixels (every image distinct), sizes from SIZES; the
    last training image of n02 is a greyscale PNG. Returns "<split>/<class>/<file>" -> (height, width)."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in (("train", n_train), ("val", n_val)):
        for c in CLASSES:
            (folder / split / c).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                w, h = SIZES[(k + len(split)) % len(SIZES)]
                grey = split == "train" and c == "n02" and k == n - 1
                name = f"{c}_{split}_{k}.png" if grey else f"{c}_{split}_{k}.JPEG"
                pixels = rng.integers(0, 256, (h, w) if grey else (h, w, 3), dtype=np.uint8)
                PIL.Image.fromarray(pixels).save(folder / split / c / name)
                written[f"{split}/{c}/{name}"] = (h, w)
    return written


def _read(folder: Path) -> SourceData:
    return read_image_folder(TINY, folder / "train", folder / "val")


def _tiny_reader(root: Path, download: bool) -> SourceData:
    return read_image_folder(TINY, root / TINY / "train", root / TINY / "val", num_classes=3)


@pytest.fixture
def tiny_registered(monkeypatch):
    """Registry entry `imagenet_tiny` (3 classes) reading root/imagenet_tiny/; removed after the test."""
    monkeypatch.setitem(registry_mod._DATASETS, TINY, _tiny_reader)
    monkeypatch.setitem(registry_mod._NUM_CLASSES, TINY, 3)


@pytest.fixture
def opened(monkeypatch) -> list[Path]:
    """The files PIL.Image.open is called on from now on (every decode opens its file once)."""
    calls: list[Path] = []
    real = PIL.Image.open

    def counting(fp, *args, **kwargs):
        calls.append(Path(fp))
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", counting)
    return calls


# ------------------------------------------------------------------------------------------------ the container
def test_nothing_is_decoded_until_an_item_is_requested(tmp_path, opened):
    write_tree(tmp_path)
    src = _read(tmp_path)
    src.fingerprint()
    search, final = prepare_splits(src, 6, 6)
    sets = [ImageDataset(search.search_train, search.mean, search.std, image_size=16),
            ImageDataset(final.train, final.mean, final.std, augment=True, image_size=16),
            ImageDataset(final.test, final.mean, final.std, image_size=16)]
    sub = src.train_images[torch.tensor([3, 1])]
    assert isinstance(sub, ImageFiles) and len(sub) == 2 and isinstance(final.test.images, ImageFiles)
    assert opened == [] and search.in_channels == 3 and search.image_size == 0
    x, y, i = sets[0][2]
    assert opened == [search.search_train.images.path(2)] and (y, i) == (int(search.search_train.labels[2]), 2)
    sub[0]
    assert opened[-1] == src.train_images.path(3) and len(opened) == 2


def test_items_decode_to_rgb_uint8_at_their_own_size(tmp_path):
    written = write_tree(tmp_path)
    src = _read(tmp_path)
    files = src.train_images
    assert files.shape == (12, 3, 0, 0) and src.image_shape == (3, 0, 0) and src.streamed
    for i, rel in enumerate(files.paths):
        x = files[i]
        assert x.dtype == torch.uint8 and x.shape == (3, *written[f"train/{rel}"]), rel
        if rel.endswith(".png"):  # greyscale, converted to RGB: three equal channels
            assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    assert torch.equal(files[torch.tensor(5)], files.load(5))
    picked = files[torch.tensor([5, 0, 5])]
    assert picked.paths == [files.paths[5], files.paths[0], files.paths[5]] and picked.sizes.tolist() == [
        files.sizes[5], files.sizes[0], files.sizes[5]]
    assert files[2:4].paths == files.paths[2:4]
    with pytest.raises(TypeError, match="1-D integer"):
        files[torch.tensor([0.5])]


def test_classes_and_labels_follow_the_sorted_class_folders(tmp_path):
    write_tree(tmp_path)
    src = _read(tmp_path)
    assert src.classes == sorted(CLASSES) == ["n01", "n02", "n03"]
    for which in ("train", "test"):
        files, labels = src.arrays(which)
        folders = [p.split("/")[0] for p in files.paths]
        assert labels.tolist() == [src.classes.index(f) for f in folders]
        assert folders == sorted(folders)  # ImageFolder's order: class by class
        assert all(not Path(p).is_absolute() for p in files.paths)
    assert (len(src.train_labels), len(src.test_labels)) == (12, 6)


def test_fingerprint_sees_file_sizes_and_labels_not_the_root_or_pixels(tmp_path):
    write_tree(tmp_path / "a")
    src = _read(tmp_path / "a")
    fp = src.fingerprint()
    assert len(fp) == 16 and _read(tmp_path / "a").fingerprint() == fp  # read twice: the same
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert _read(tmp_path / "b").fingerprint() == fp  # a moved tree: the same (relative paths)
    y = src.train_labels.clone()
    y[0] = 2
    assert SourceData(TINY, src.train_images, y, src.test_images, src.test_labels, src.classes).fingerprint() != fp
    path = tmp_path / "b" / "val" / "n01" / "n01_val_0.JPEG"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # one byte changed in place, same size: not seen (the pixels are not hashed)
    path.write_bytes(bytes(data))
    assert _read(tmp_path / "b").fingerprint() == fp
    path.write_bytes(bytes(data) + b"\0")  # one byte longer: seen
    assert _read(tmp_path / "b").fingerprint() != fp


def test_sources_in_ram_and_streamed_do_not_mix(tmp_path):
    write_tree(tmp_path)
    src = _read(tmp_path)
    pixels = torch.zeros(6, 3, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="both be files"):
        SourceData("mixed", src.train_images, src.train_labels, pixels, src.test_labels, src.classes)
    assert not SourceData("ram", pixels, src.test_labels, pixels, src.test_labels, src.classes).streamed


# -------------------------------------------------------------------------------------------- splits and folders
def test_prepared_folders_round_trip(tmp_path, tiny_registered):
    write_tree(tmp_path / "raw" / TINY)
    src = create_dataset(TINY, tmp_path / "raw")
    search_idx, train_idx = make_splits(src, 6, 6)
    search_idx.save(tmp_path / "prep" / "search")
    train_idx.save(tmp_path / "prep" / "train")
    meta = json.loads((tmp_path / "prep" / "search" / "splits.json").read_text())
    assert meta["image_shape"] == [3, 0, 0] and meta["mean"] == IMAGENET_MEAN and meta["std"] == IMAGENET_STD
    assert meta["classes"] == ["n01", "n02", "n03"]

    search = load_search_data(tmp_path / "prep" / "search", tmp_path / "raw")
    final = load_train_data(tmp_path / "prep" / "train", tmp_path / "raw")
    direct = {**search_idx.materialize(src), **train_idx.materialize(src)}
    for k, s in {**search.splits(), **final.splits()}.items():
        assert isinstance(s.images, ImageFiles) and s.images.paths == direct[k].images.paths, k
        assert torch.equal(s.labels, direct[k].labels) and torch.equal(s.source_index, direct[k].source_index), k
    st, sv = search.search_train.source_index.tolist(), search.search_val.source_index.tolist()
    assert not set(st) & set(sv) and sorted(search.search_train.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert (len(final.train), len(final.test), final.test.source) == (12, 6, "test")
    assert final.test.images.paths == src.test_images.paths

    shutil.copytree(tmp_path / "raw", tmp_path / "moved")  # the same files under another root: the same bytes
    prepare_splits(create_dataset(TINY, tmp_path / "moved"), 6, 6, out=tmp_path / "prep2")
    for kind in ("search", "train"):
        for f in (tmp_path / "prep" / kind).iterdir():
            assert f.read_bytes() == (tmp_path / "prep2" / kind / f.name).read_bytes(), f
    assert load_train_data(tmp_path / "prep" / "train", tmp_path / "moved").fingerprint() == final.fingerprint()

    victim = tmp_path / "raw" / TINY / "train" / "n03" / "n03_train_1.JPEG"
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(DataError, match="fingerprint"):
        load_search_data(tmp_path / "prep" / "search", tmp_path / "raw")


# ------------------------------------------------------------------------------------------------- transforms
@pytest.mark.parametrize("size", [16, 24])
def test_train_and_eval_transforms_give_normalised_squares(tmp_path, size):
    write_tree(tmp_path)
    src = _read(tmp_path)
    _, final = prepare_splits(src, 6, 6)
    train = ImageDataset(final.train, final.mean, final.std, augment=True, hflip=True, cutout=4, image_size=size,
                         color_jitter=[0.4, 0.4, 0.4, 0.2])
    test = ImageDataset(final.test, final.mean, final.std, image_size=size)
    for ds in (train, test):
        for i in range(len(ds)):
            x, y, j = ds[i]
            assert x.shape == (3, size, size) and x.dtype == torch.float32 and torch.isfinite(x).all()
            assert (y, j) == (int(ds.split.labels[i]), i)
    assert test.transform.transforms[0].size == [int(size * 256 / 224)]  # resize the shorter side, then crop
    torch.manual_seed(0)
    a = train[0][0]
    torch.manual_seed(1)
    assert not torch.equal(a, train[0][0])  # random crops
    assert torch.equal(test[0][0], test[0][0])  # evaluation: deterministic
    xb, yb, ib = next(iter(make_loader(train, 4, shuffle=True, seed=0)))
    assert xb.shape == (4, 3, size, size) and yb.dtype == torch.int64


def test_eval_transform_normalises_exactly(tmp_path):
    """A uniform image (PNG: lossless) of 37x23 px -> every pixel (value / 255 - mean) / std."""
    colour = (10, 128, 250)
    (tmp_path / "u").mkdir()
    PIL.Image.new("RGB", (37, 23), colour).save(tmp_path / "u" / "a.png")
    files = ImageFiles(tmp_path / "u", ["a.png"], [(tmp_path / "u" / "a.png").stat().st_size])
    split = ImageSplit(files, torch.tensor([0]), "test", torch.tensor([0]))
    x = ImageDataset(split, IMAGENET_MEAN, IMAGENET_STD, image_size=8)[0][0]
    want = (torch.tensor(colour) / 255.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert x.shape == (3, 8, 8)
    torch.testing.assert_close(x, want.view(3, 1, 1).expand(3, 8, 8), atol=1e-6, rtol=0)


def test_streamed_split_needs_an_image_size_and_jitter_needs_files(tmp_path):
    write_tree(tmp_path)
    src = _read(tmp_path)
    split = ImageSplit(src.test_images, src.test_labels, "test", torch.arange(6))
    with pytest.raises(DataError, match="varying size.*set an image_size"):
        ImageDataset(split, IMAGENET_MEAN, IMAGENET_STD)
    ram = ImageSplit(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]), "train", torch.arange(2))
    with pytest.raises(ValueError, match="color_jitter"):
        ImageDataset(ram, [0.5] * 3, [0.5] * 3, augment=True, color_jitter=[0.4, 0.4, 0.4, 0.2])


def test_unreadable_image_is_a_data_error_naming_it(tmp_path):
    write_tree(tmp_path)
    bad = tmp_path / "train" / "n01" / "n01_train_0.JPEG"
    bad.write_bytes(b"not a jpeg")
    src = _read(tmp_path)  # listed without being opened
    with pytest.raises(DataError, match=f"{bad}: unreadable image"):
        src.train_images[0]


# ----------------------------------------------------------------------------------------- registry and errors
def test_imagenet_is_registered_with_1000_classes():
    assert "imagenet" in list_datasets() and dataset_num_classes("imagenet") == 1000


def test_missing_imagenet_names_the_folders_and_how_to_get_it(tmp_path):
    raw = tmp_path / "raw"
    with pytest.raises(DataError) as err:
        create_dataset("imagenet", raw)
    msg = str(err.value)
    for part in (f"{raw / 'imagenet' / 'train'}/", f"{raw / 'imagenet' / 'val'}/", f"{raw / 'train'}/",
                 f"{raw / 'val'}/", "cannot download", "image-net.org", "ILSVRC2012_img_train.tar",
                 "ILSVRC2012_img_val.tar", "valprep.sh", "class folders"):
        assert part in msg, part
    (raw / "imagenet" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=r"only train/ is there"):
        create_dataset("imagenet", raw)


@pytest.mark.parametrize("layout", ["root/imagenet", "root"])
def test_imagenet_folder_rule(tmp_path, layout):
    """root/imagenet/{train,val} is read when present, else root/{train,val}; here both are found and refused for
    their 3 classes (not 1000), which names the tree that was read."""
    folder = tmp_path / "raw" / "imagenet" if layout == "root/imagenet" else tmp_path / "raw"
    write_tree(folder)
    with pytest.raises(DataError, match=f"{folder / 'train'}: 3 class folders, expected 1000 for imagenet"):
        create_dataset("imagenet", tmp_path / "raw")


def test_flat_val_folder_and_mismatched_classes_are_explained(tmp_path):
    write_tree(tmp_path)
    val = tmp_path / "val"
    for f in list(val.rglob("*.JPEG")):  # the val tar as extracted: images directly in val/
        f.rename(val / f.name)
    for d in val.iterdir():
        if d.is_dir():
            d.rmdir()
    with pytest.raises(DataError, match=r"val: no class folders \(6 images lie directly in it.*valprep\.sh"):
        _read(tmp_path)
    shutil.rmtree(val)
    shutil.copytree(tmp_path / "train", val)
    shutil.rmtree(val / "n02")
    with pytest.raises(DataError, match=r"class folders differ .* missing: n02"):
        _read(tmp_path)


# ------------------------------------------------------------------------------------------------ test overlap
def test_test_overlap_compares_same_size_files_only(tmp_path, monkeypatch):
    write_tree(tmp_path)
    shutil.copy(tmp_path / "val" / "n02" / "n02_val_1.JPEG", tmp_path / "train" / "n02" / "n02_train_copy.JPEG")
    src = _read(tmp_path)
    search, final = prepare_splits(src, 6, 7)  # every training image in search, the copy included
    hashed = []
    real = leaks_mod._file_sha256
    monkeypatch.setattr(leaks_mod, "_file_sha256", lambda path: hashed.append(path) or real(path))

    overlap = find_test_overlap(search.splits(), final.test)
    assert overlap.compared == "file bytes" and overlap.leaks == []
    copy_at = src.train_images.paths.index("n02/n02_train_copy.JPEG")
    val_at = src.test_images.paths.index("n02/n02_val_1.JPEG")
    [(name, i, (source, j), t)] = overlap.duplicates
    assert (source, j, t) == ("train", copy_at, val_at) and search.splits()[name].source_index[i] == copy_at
    assert 2 <= len(hashed) < len(src.train_images) + len(src.test_images)  # only files of a shared size
    with pytest.raises(DataError, match="same pixels as a test image"):
        overlap.check()

    hashed.clear()
    cheap = find_test_overlap(search.splits(), final.test, max_read_bytes=0)
    assert (cheap.compared, cheap.leaks, cheap.duplicates, hashed) == ("provenance", [], [], [])
    leaked = {"search_val": final.test}  # a test split passed as a search split: a leak, by provenance
    assert len(find_test_overlap(leaked, final.test, max_read_bytes=0).leaks) == len(final.test)
    in_ram = {"search_train": ImageSplit(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]), "train",
                                         torch.arange(2))}
    assert find_test_overlap(in_ram, final.test).compared == "provenance"  # a transfer: nothing to compare


# -------------------------------------------------------------------------------------------------- the chain
@pytest.mark.slow
def test_chain_on_a_streamed_image_folder(tmp_path, monkeypatch, tiny_registered):
    """prepare -> search -> derive -> evaluate through the stage commands, search and final training on the tiny
    ImageFolder at 16 px (decoded per sample); a train block without image_size fails with one line."""
    monkeypatch.chdir(tmp_path)
    write_tree(tmp_path / "data" / "raw" / TINY)
    params = tiny_params()
    params["data"].update(root="data/raw", search_train_size=6, search_val_size=6, train_size=0, test_size=0)
    params["runs"] = {"benchmarks": ["inet"], "methods": ["darts"], "seeds": [0]}
    search = {"supernet": {"C": 4, "layers": 3}, "data": {"image_size": 16, "batch_size": 16},
              "schedule": {"epochs": 2, "val_every": 0}}
    train = {"epochs": 1, "network": {"C": 4, "layers": 3, "stem_stride": 2},
             "data": {"image_size": 16, "batch_size": 8, "hflip": True}}
    params["benchmarks"] = {"inet": {"label": "tiny ImageFolder (streamed)", "evaluation": "train",
                                     "data": {"dataset": TINY}, "search": search, "train": train}}
    write_params(tmp_path, params)
    for args in (["check-params"], ["prepare", "inet"], ["search", "inet", "darts", "0"],
                 ["derive", "inet", "darts", "0"], ["train", "inet", "darts", "0"], ["evaluate", "inet", "darts", "0"]):
        result = itnas(*args)
        assert result.exit_code == 0, (args, result.output)
    summary = json.loads(Path("data/prepared/inet/search/summary.json").read_text())
    assert (summary["dataset"], summary["in_channels"], summary["image_size"]) == (TINY, 3, 0)
    run = run_record("inet", "darts", 0)
    metrics = json.loads(run.metrics.read_text())
    details = json.loads(run.details.read_text())
    assert metrics["test_images"] == 6 and details["classes"] == ["n01", "n02", "n03"]

    params["benchmarks"]["inet"]["train"]["data"]["image_size"] = 0
    write_params(tmp_path, params)
    result = itnas("train", "inet", "darts", "0")
    assert result.exit_code == 2 and "set an image_size" in one_line_error(result)
