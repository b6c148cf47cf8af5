"""Batches made on the device (`itnas.data.augment`): the batched crop, flip and cutout against per-sample references,
the same batches as the DataLoader path, batches that depend only on (seed, epoch), every sample once per epoch, no
test image in search batches, and a search and a final training on the device path that resume bitwise."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_project import image_split, itnas, tiny_params, write_params

from itnas.config import ConfigError, SearchConfig, SearchDataConfig
from itnas.config_parse import parse_config
from itnas.data import (
    ImageDataset,
    ImageFiles,
    ImageSplit,
    SearchData,
    TrainData,
    create_dataset,
    find_test_overlap,
    loader_options,
    make_dataset,
    make_loader,
    make_splits,
    resolve_on_device,
)
from itnas.data.augment import DeviceDataset, crop_flip, cutout
from itnas.distributed import DistContext
from itnas.genotype import PUBLISHED_GENOTYPES
from itnas.networks import create_final_network
from itnas.search import even_batches, run_search
from itnas.train import train_final
from itnas.train_config import TrainConfig, TrainDataConfig

MEAN, STD = [0.5], [0.25]


# ------------------------------------------------------------------------------------------ per-sample references
def _crop_flip_reference(x: torch.Tensor, padding: int, top: int, left: int, flip: bool) -> torch.Tensor:
    """One image (C, S, S): padded with zeros, cut at (top, left), mirrored left-right when flip."""
    s = x.shape[-1]
    out = F.pad(x, (padding,) * 4)[:, top:top + s, left:left + s]
    return out.flip(-1) if flip else out


def _cutout_reference(x: torch.Tensor, length: int, cy: int, cx: int) -> torch.Tensor:
    """DARTS cnn/utils.py `Cutout.__call__` for one image (C, H, W) at a given centre: the mask is 1, 0 on
    [clip(cy - L//2), clip(cy + L//2)) x [clip(cx - L//2), clip(cx + L//2)); erased pixels are +0."""
    h, w = x.shape[-2:]
    y1, y2 = min(max(cy - length // 2, 0), h), min(max(cy + length // 2, 0), h)
    x1, x2 = min(max(cx - length // 2, 0), w), min(max(cx + length // 2, 0), w)
    out = x.clone()
    out[:, y1:y2, x1:x2] = 0.0
    return out


@pytest.mark.parametrize("padding,crop,flip", [(4, True, True), (2, True, False), (0, False, True), (3, True, None)])
def test_crop_flip_equals_the_per_sample_reference(padding, crop, flip):
    g = torch.Generator().manual_seed(0)
    b, c, s = 12, 3, 10
    x = torch.randn(b, c, s, s, generator=g)
    top = torch.randint(0, 2 * padding + 1, (b,), generator=g) if crop else None
    left = torch.randint(0, 2 * padding + 1, (b,), generator=g) if crop else None
    flips = torch.randint(0, 2, (b,), generator=g).bool() if flip else None
    if crop:  # the extreme offsets are in the batch: the whole padding on either side
        top[0], left[0], top[1], left[1] = 0, 0, 2 * padding, 2 * padding
    got = crop_flip(x, padding, top, left, flips)
    for k in range(b):
        want = _crop_flip_reference(x[k], padding, int(top[k]) if crop else padding,
                                    int(left[k]) if crop else padding, bool(flips[k]) if flip else False)
        assert torch.equal(got[k], want), k
    if crop:  # zero padding really entered: sample 0 has `padding` zero rows on top
        assert (got[0, :, :padding] == 0).all() and not (x[0, :, :padding] == 0).any()


@pytest.mark.parametrize("length", [4, 5, 16])
def test_cutout_equals_darts_cutout(length):
    g = torch.Generator().manual_seed(1)
    b, s = 16, 10
    x = torch.randn(b, 2, s, s, generator=g)
    cy, cx = torch.randint(0, s, (b,), generator=g), torch.randint(0, s, (b,), generator=g)
    cy[:4] = torch.tensor([0, s - 1, 0, s - 1])  # centres in the corners: clipped squares
    cx[:4] = torch.tensor([0, s - 1, s - 1, 0])
    got = cutout(x, length, cy, cx)
    for k in range(b):
        assert torch.equal(got[k], _cutout_reference(x[k], length, int(cy[k]), int(cx[k]))), k
    erased = (got == 0).all(1).sum((1, 2))  # pixels erased per sample
    side = 2 * (length // 2)
    assert erased[0] == min(length // 2, s) ** 2 and erased.max() <= side ** 2
    if length < s:  # a centre away from the borders erases the full square
        assert (erased == side ** 2).any()


# ------------------------------------------------------------------------------ the same batches as the DataLoader
def _batches(loader) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    return [(x, y, i) for x, y, i in loader]


def _assert_same_batches(a, b) -> None:
    assert len(a) == len(b)
    for (xa, ya, ia), (xb, yb, ib) in zip(a, b, strict=True):
        assert torch.equal(ia, ib) and torch.equal(ya, yb) and torch.equal(xa, xb)


@pytest.mark.parametrize("image_size", [0, 5])
def test_unaugmented_device_batches_equal_the_dataloader_batches(image_size):
    """Same indices, labels and bitwise the same images as ImageDataset + DataLoader: shuffled (a tail of one is
    dropped), in order, with a sampler, and each rank's shard of a 2-process run; resized once or not."""
    split = image_split(37, seed=3)
    ref, dev = ImageDataset(split, MEAN, STD, image_size=image_size), DeviceDataset(split, MEAN, STD,
                                                                                    image_size=image_size)
    assert len(dev) == len(ref) == 37
    for kw in ({"shuffle": True, "seed": 2, "epoch": 3, "drop_single": True}, {"shuffle": False},
               {"shuffle": True, "sampler": [19, 3, 5, 0, 7, 36, 11]}):
        _assert_same_batches(_batches(make_loader(ref, 4 if "sampler" in kw else 9, **kw)),
                             _batches(make_loader(dev, 4 if "sampler" in kw else 9, **kw)))
    for rank in (0, 1):
        shard = DistContext(rank, 2)
        _assert_same_batches(_batches(make_loader(ref, 6, True, 1, 4, drop_single=True, shard=shard)),
                             _batches(make_loader(dev, 6, True, 1, 4, drop_single=True, shard=shard)))


def test_batches_depend_only_on_seed_and_epoch():
    """Fresh datasets, any epoch order, any global RNG state: the batches of (seed, epoch) are the same; another
    epoch or seed gives other batches. Nothing is drawn from the global RNG."""
    split = image_split(40, seed=4)

    def epoch(seed: int, e: int) -> list:
        data = DeviceDataset(split, MEAN, STD, augment=True, crop_padding=2, hflip=True, cutout=3)
        return _batches(make_loader(data, 8, True, seed, e, drop_single=True))

    torch.manual_seed(0)
    a = epoch(5, 2)
    state = torch.get_rng_state()
    epoch(5, 0)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    torch.manual_seed(123)
    _assert_same_batches(a, epoch(5, 2))  # after another epoch, under another global seed
    for other in (epoch(5, 3), epoch(6, 2)):
        assert not all(torch.equal(p[2], q[2]) for p, q in zip(a, other, strict=True))  # another order
    # the augmentation of a sample depends on (seed, epoch, sample), not on the batch size or the rank's shard
    data = DeviceDataset(split, MEAN, STD, augment=True, crop_padding=2, hflip=True, cutout=3)
    by_index = {int(i): x for xs, _, idx in a for i, x in zip(idx, xs, strict=True)}
    for loader in (make_loader(data, 16, True, 5, 2), make_loader(data, 4, True, 5, 2, shard=DistContext(1, 3))):
        for xs, _, idx in loader:
            for i, x in zip(idx.tolist(), xs, strict=True):
                assert torch.equal(x, by_index[i]), i


def test_augmented_batches_equal_the_per_sample_reference():
    """Each sample of an augmented batch is its normalised image, padded-cropped, flipped and cut out with the
    epoch's parameters of that sample (`DeviceDataset.epoch_params`)."""
    split = image_split(20, seed=5, side=8)
    data = DeviceDataset(split, MEAN, STD, augment=True, crop_padding=3, hflip=True, cutout=4)
    params = data.epoch_params(7, 1)
    assert params.flip.any() and not params.flip.all() and params.top.max() <= 6
    seen = 0
    for xs, ys, idx in make_loader(data, 6, True, 7, 1):
        for x, y, i in zip(xs, ys, idx.tolist(), strict=True):
            plain = (split.images[i].float() / 255.0 - 0.5) / 0.25
            want = _crop_flip_reference(plain, 3, int(params.top[i]), int(params.left[i]), bool(params.flip[i]))
            want = _cutout_reference(want, 4, int(params.cy[i]), int(params.cx[i]))
            assert torch.equal(x, want) and y == split.labels[i]
            seen += 1
    assert seen == 20


@pytest.mark.parametrize("n,batch_size,world", [(37, 8, 1), (33, 16, 1), (40, 6, 2), (41, 5, 3)])
def test_every_sample_exactly_once_per_epoch(n, batch_size, world):
    """Training batches (drop_single): every sample once per epoch over all ranks, except a dropped tail of one
    (one process) or a last global batch too small for every rank to get 2 samples."""
    data = DeviceDataset(image_split(n, seed=6), MEAN, STD, augment=True, crop_padding=1, hflip=True)
    for epoch in (0, 1):
        seen = [int(i) for rank in range(world)
                for _, _, idx in make_loader(data, batch_size, True, 0, epoch, drop_single=True,
                                             **({"shard": DistContext(rank, world)} if world > 1 else {}))
                for i in idx]
        assert len(seen) == len(set(seen))
        global_batch = batch_size * world
        full, tail = divmod(n, global_batch)
        kept = n if tail >= 2 * world or not tail else full * global_batch
        assert len(seen) == kept


def test_search_val_batches_on_the_device_use_every_sample_once():
    split = image_split(29, seed=7)
    data = DeviceDataset(split, MEAN, STD)
    batches = even_batches(len(data), 4, torch.Generator().manual_seed(0))
    seen = torch.cat([idx for _, _, idx in data.batches(batches)])
    assert sorted(seen.tolist()) == list(range(29)) and len(data.batches(batches)) == 4


# ------------------------------------------------------------------------------------ no test image in search
def test_search_batches_on_the_device_hold_no_test_image():
    """The device copy of a search split is the split (training images, by index array), and one epoch of
    search-train and search-val batches serves exactly those images: none is a test image, by provenance and by
    content."""
    source = create_dataset("digits", "unused")
    search_idx, train_idx = make_splits(source, 200, 150, 0, 0, split_seed=0)
    search, final = SearchData.from_indices(search_idx, source), TrainData.from_indices(train_idx, source)
    served = {}
    for name, split in search.splits().items():
        assert split.source == "train"
        data = DeviceDataset(split, search.mean, search.std)
        assert torch.equal(data.images, split.images)  # nothing but the split is uploaded
        idx = torch.cat([i for _, _, i in make_loader(data, 16, True, 0, 0)])
        assert sorted(idx.tolist()) == list(range(len(split)))
        # the served images: their source indices are training images', their pixels the training images'
        source_index = split.source_index[idx]
        assert torch.equal(data.images[idx], source.train_images[source_index])
        served[name] = ImageSplit(data.images[idx], data.labels[idx], "train", source_index)
    assert not set(served["search_train"].source_index.tolist()) & set(served["search_val"].source_index.tolist())
    overlap = find_test_overlap(served, final.test)
    overlap.check(allow_duplicates=True)
    assert overlap.duplicates == []


# ------------------------------------------------------------------------------- search and training, resumed
def _search_cfg() -> SearchConfig:
    return SearchConfig(method="itnas", supernet={"C": 4, "layers": 3, "track_running_stats": False},
                        schedule={"epochs": 3, "warmup_epochs": 0, "val_every": 1}, data={"batch_size": 8})


def _same_run(a_model, a_history, b_model, b_history) -> None:
    sa, sb = a_model.state_dict(), b_model.state_dict()
    assert list(sa) == list(sb)
    for k, v in sa.items():
        assert torch.equal(v, sb[k]), k
    for a, b in zip(a_history, b_history, strict=True):
        assert {k: v for k, v in a.items() if k != "time_s"} == {k: v for k, v in b.items() if k != "time_s"}


def test_search_on_the_device_resumes_bitwise_and_equals_the_dataloader_search(tmp_path):
    train_split, val_split = image_split(24, seed=0), image_split(24, seed=1)
    train, val = DeviceDataset(train_split, MEAN, STD), DeviceDataset(val_split, MEAN, STD)
    cfg = _search_cfg()
    full = run_search(cfg, train, val, 3, 1)
    ck = tmp_path / "search.pt"
    run_search(cfg, train, val, 3, 1, checkpoint_path=ck, stop_after_epochs=1)
    torch.manual_seed(999)
    resumed = run_search(cfg, DeviceDataset(train_split, MEAN, STD), DeviceDataset(val_split, MEAN, STD), 3, 1,
                         checkpoint_path=ck)
    assert len(resumed.history) == 3 and "val_acc" in resumed.history[-1]
    _same_run(full.model, full.history, resumed.model, resumed.history)
    # the search has no augmentation: the device path is the DataLoader path's computation, bitwise
    loader = run_search(cfg, ImageDataset(train_split, MEAN, STD), ImageDataset(val_split, MEAN, STD), 3, 1)
    _same_run(full.model, full.history, loader.model, loader.history)


def _train_cfg() -> TrainConfig:
    return TrainConfig(epochs=2, network={"C": 4, "layers": 3, "stem_stride": 1, "auxiliary": True},
                       optimizer={"lr": 0.05, "lr_min": 0.0}, regularization={"drop_path": 0.1},
                       data={"batch_size": 8, "cutout": 3, "crop_padding": 2, "hflip": True})


def _net(seed: int):
    torch.manual_seed(seed)
    return create_final_network(PUBLISHED_GENOTYPES["darts_v2"], 4, 3, 3, True, 1, 1)


def test_final_training_on_the_device_resumes_bitwise(tmp_path):
    """Augmented on the device (crop, flip, cutout) and stopped after epoch 1: the resumed training ends with the
    weights and history of the uninterrupted one; no augmentation RNG state is saved (the parameters are drawn per
    epoch from (seed, epoch)), drop-path's comes from the checkpoint."""
    split, cfg = image_split(24, seed=2), _train_cfg()

    def data() -> DeviceDataset:
        d = cfg.data
        return DeviceDataset(split, MEAN, STD, augment=True, crop_padding=d.crop_padding, hflip=d.hflip,
                             cutout=d.cutout)

    full = _net(0)
    h_full = train_final(full, cfg, data(), seed=3)
    ck = tmp_path / "train.pt"
    train_final(_net(0), cfg, data(), seed=3, checkpoint_path=ck, stop_after_epochs=1)
    resumed = _net(99)
    torch.manual_seed(12345)
    h_resumed = train_final(resumed, cfg, data(), seed=3, checkpoint_path=ck)
    assert [r["epoch"] for r in h_resumed] == [0, 1]
    _same_run(full, h_full, resumed, h_resumed)


# ------------------------------------------------------------------------------------------- config and choice
def test_on_device_and_num_workers_keys():
    assert SearchDataConfig().on_device == TrainDataConfig().on_device == "auto"
    assert parse_config(TrainDataConfig, {"on_device": False, "num_workers": 4}, "train.data").num_workers == 4
    for bad in ({"on_device": "sometimes"}, {"num_workers": -1}, {"num_workers": "many"}):
        with pytest.raises(ConfigError, match="train.data"):
            parse_config(TrainDataConfig, bad, "train.data")
    assert resolve_on_device("auto", "cpu") is False and resolve_on_device("auto", "cuda") is True
    assert resolve_on_device(True, "cpu") is True and resolve_on_device(False, "cuda") is False
    assert loader_options("auto", "cpu") == {} and loader_options(0, "cpu") == {}  # the CPU loader of before
    assert loader_options(2, "cpu") == {"num_workers": 2, "pin_memory": False}
    assert loader_options("auto", "cuda") == {"num_workers": 8, "pin_memory": True}


def test_make_dataset_picks_the_device_only_for_splits_in_ram(tmp_path):
    split = image_split(10)
    assert isinstance(make_dataset(split, MEAN, STD, "cpu", "auto"), ImageDataset)  # CPU default: DataLoader
    assert isinstance(make_dataset(split, MEAN, STD, "cpu", False), ImageDataset)
    dev = make_dataset(split, MEAN, STD, "cpu", True, augment=True, crop_padding=1, hflip=False, cutout=2)
    assert isinstance(dev, DeviceDataset) and (dev.crop_padding, dev.hflip, dev.cutout) == (1, False, 2)
    files = ImageFiles(tmp_path, [f"{k}.png" for k in range(3)], [0, 0, 0])  # never decoded here
    streamed = ImageSplit(files, torch.zeros(3, dtype=torch.int64), "train", torch.arange(3))
    assert isinstance(make_dataset(streamed, MEAN, STD, "cpu", True, image_size=8), ImageDataset)


def test_search_and_train_stages_on_the_device(tmp_path, monkeypatch):
    """The stages with `on_device: true` on a CPU: search, derive, and the final training (crop, flip, cutout on
    the device) run and test."""
    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    params["search"]["data"]["on_device"] = True
    params["train"]["data"].update(crop_padding=2, hflip=True, cutout=4, on_device=True)
    write_params(tmp_path, params)
    assert itnas("prepare", "tiny").exit_code == 0
    for stage in ("search", "derive", "train", "evaluate"):
        result = itnas(stage, "tiny", "darts", "0")
        assert result.exit_code == 0, result.output
        if stage in ("search", "train"):  # the stages that make batches (evaluate tests the trained network)
            assert "batches made on the device" in " ".join(result.stderr.split())
    assert (tmp_path / "runs/tiny/darts-s0/metrics.json").exists()
