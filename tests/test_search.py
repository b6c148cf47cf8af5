"""The search loop: data order (every search-val sample once per epoch), exact resume, no test data in search."""

from __future__ import annotations

import pytest
import torch

from itnas.checkpoint import CheckpointError, CheckpointMismatch
from itnas.config import SearchConfig
from itnas.data import ImageDataset, ImageSplit, PreparedData, assert_search_excludes_test, prepare_dataset
from itnas.search import run_search


class CountingDataset(ImageDataset):
    """Records every index it serves."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[int] = []

    def __getitem__(self, i):
        self.seen.append(i)
        return super().__getitem__(i)


def _split(n: int, seed: int, source: str = "train") -> ImageSplit:
    g = torch.Generator().manual_seed(seed)
    return ImageSplit(torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8),
                      torch.randint(0, 3, (n,), generator=g), source, torch.arange(n))


def _cfg(**kw) -> SearchConfig:
    base = dict(method="itnas", C=4, layers=3, epochs=2, warmup_epochs=0, batch_size=8, val_every=0,
                track_running_stats=False)
    base.update(kw)
    return SearchConfig(**base)


@pytest.mark.parametrize("n_train,n_val", [(32, 32), (40, 28), (24, 40)])
def test_every_search_val_sample_once_per_epoch(n_train, n_val):
    train = CountingDataset(_split(n_train, 0), [0.5], [0.25])
    val = CountingDataset(_split(n_val, 1), [0.5], [0.25])
    cfg = _cfg(epochs=2)
    run_search(cfg, train, val, 3, 1)
    # every training sample and every search-val sample exactly once per epoch, also when the sizes differ
    assert sorted(train.seen) == sorted(list(range(n_train)) * 2)
    counts = torch.bincount(torch.tensor(val.seen), minlength=n_val)
    assert counts.tolist() == [2] * n_val


def test_warmup_epochs_skip_arch_updates():
    train, val = ImageDataset(_split(16, 0), [0.5], [0.25]), CountingDataset(_split(16, 1), [0.5], [0.25])
    res = run_search(_cfg(epochs=2, warmup_epochs=1), train, val, 3, 1)
    assert [r["arch_updated"] for r in res.history] == [False, True]
    assert len(val.seen) == 16  # val data only drawn in the epoch with arch steps


@pytest.mark.parametrize("order", ["first", "second"])
def test_resume_equals_uninterrupted(tmp_path, order):
    train, val = ImageDataset(_split(24, 0), [0.5], [0.25]), ImageDataset(_split(24, 1), [0.5], [0.25])
    cfg = _cfg(epochs=3, order=order, method="itnas", base="pcdarts", partial_k=2)
    full = run_search(cfg, train, val, 3, 1)
    ck = tmp_path / "search.pt"
    run_search(cfg, train, val, 3, 1, checkpoint_path=ck, stop_after_epochs=1)  # "interrupted" after epoch 1
    resumed = run_search(cfg, train, val, 3, 1, checkpoint_path=ck)
    assert len(resumed.history) == 3
    for (k, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k
    assert [r["train_loss"] for r in full.history] == [r["train_loss"] for r in resumed.history]


def test_checkpoint_of_other_config_is_refused(tmp_path):
    train, val = ImageDataset(_split(8, 0), [0.5], [0.25]), ImageDataset(_split(8, 1), [0.5], [0.25])
    ck = tmp_path / "search.pt"
    run_search(_cfg(epochs=1), train, val, 3, 1, checkpoint_path=ck)
    with pytest.raises(CheckpointMismatch, match="different config"):
        run_search(_cfg(epochs=1, C=8), train, val, 3, 1, checkpoint_path=ck)
    ck.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        run_search(_cfg(epochs=1), train, val, 3, 1, checkpoint_path=ck)


def test_search_splits_exclude_test_images():
    data = prepare_dataset("digits", "unused", 300, 300, 0, 0, split_seed=0)
    assert data.search_train.source == data.search_val.source == "train" and data.test.source == "test"
    st, sv = set(data.search_train.source_index.tolist()), set(data.search_val.source_index.tolist())
    assert not st & sv
    assert len(st) == 300 and len(sv) == 300
    # stratified: class proportions of search-train within one image of the training set's
    counts = torch.bincount(data.search_train.labels, minlength=10).float()
    assert (counts - 30).abs().max() <= 2
    bad = PreparedData(data.name, data.classes, data.mean, data.std, data.search_train,
                       ImageSplit(data.test.images, data.test.labels, "test", data.test.source_index),
                       data.train, data.test)
    with pytest.raises(AssertionError, match="search_val must come from the training images"):
        assert_search_excludes_test(bad)
