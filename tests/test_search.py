"""The search loop: data order (every search-val sample once per epoch), warm-up, exact resume, no test data in
search."""

from __future__ import annotations

import hashlib

import pytest
import torch
from tiny_project import CountingDataset

from itnas.checkpoint import CheckpointError, CheckpointMismatch, load_checkpoint
from itnas.config import SearchConfig, resolve_search_config
from itnas.config_parse import deep_merge
from itnas.data import (
    DataError,
    ImageDataset,
    ImageSplit,
    SearchData,
    TrainData,
    assert_search_excludes_test,
    create_dataset,
    find_test_overlap,
    make_splits,
)
from itnas.identity import run_identity
from itnas.search import run_search


def _split(n: int, seed: int, source: str = "train") -> ImageSplit:
    g = torch.Generator().manual_seed(seed)
    return ImageSplit(torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8),
                      torch.randint(0, 3, (n,), generator=g), source, torch.arange(n))


def _cfg(method: str = "itnas", **blocks) -> SearchConfig:
    """A tiny search (C=4, 3 cells, 8x8, batch 8; the method's default base); `blocks` deep-merge nested overrides."""
    base = {"method": method,
            "supernet": {"C": 4, "layers": 3, "track_running_stats": False},
            "schedule": {"epochs": 2, "warmup_epochs": 0, "val_every": 0},
            "data": {"batch_size": 8}}
    return SearchConfig.model_validate(deep_merge(base, blocks))


@pytest.mark.parametrize("n_train,n_val", [(32, 32), (40, 28), (24, 40)])
def test_every_search_val_sample_once_per_epoch(n_train, n_val):
    train = CountingDataset(_split(n_train, 0), [0.5], [0.25])
    val = CountingDataset(_split(n_val, 1), [0.5], [0.25])
    run_search(_cfg(schedule={"epochs": 2}), train, val, 3, 1)
    # every training sample and every search-val sample exactly once per epoch, also when the sizes differ
    assert sorted(train.seen) == sorted(list(range(n_train)) * 2)
    counts = torch.bincount(torch.tensor(val.seen), minlength=n_val)
    assert counts.tolist() == [2] * n_val


def _arch(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.arch_parameters()]


def _weights(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.weight_parameters()]


@pytest.mark.parametrize("method,base,order", [("itnas", "pcdarts", "first"), ("itnas", "darts", "second"),
                                               ("darts", "darts", "first")])
def test_warmup_epochs_leave_the_architecture_untouched(tmp_path, method, base, order):
    """During the warm-up epochs every architecture parameter stays bitwise at its initial value while the weights
    train; the first epoch after the warm-up moves every architecture parameter. (Adam's weight decay alone would
    move them if the arch optimizer stepped at all during warm-up.)"""
    cfg = _cfg(method, supernet={"base": base, "partial_k": 2}, arch_optimizer={"order": order},
               schedule={"epochs": 3, "warmup_epochs": 2})
    train, val = ImageDataset(_split(16, 0), [0.5], [0.25]), CountingDataset(_split(16, 1), [0.5], [0.25])
    initial = run_search(cfg, train, val, 3, 1, stop_after_epochs=0).model  # built, not trained
    arch0, weights0 = _arch(initial), _weights(initial)
    assert len(arch0) >= 2 and any(a.abs().sum() > 0 for a in arch0)  # random init: a nontrivial starting point

    ck = tmp_path / "search.pt"
    warm = run_search(cfg, train, val, 3, 1, checkpoint_path=ck, stop_after_epochs=2)
    assert len(warm.history) == 2
    for k, (a0, a) in enumerate(zip(arch0, _arch(warm.model), strict=True)):
        assert torch.equal(a0, a), f"architecture parameter {k} changed during warm-up"
    assert any(not torch.equal(w0, w) for w0, w in zip(weights0, _weights(warm.model), strict=True))
    assert val.seen == []  # no search-val batch is drawn without architecture steps

    after = run_search(cfg, train, val, 3, 1, checkpoint_path=ck)  # resumes at epoch 2, the first arch epoch
    assert len(after.history) == 3
    for k, (a0, a) in enumerate(zip(arch0, _arch(after.model), strict=True)):
        assert not torch.equal(a0, a), f"architecture parameter {k} unchanged after the first search epoch"
    assert sorted(val.seen) == list(range(16))


@pytest.mark.parametrize("order", ["first", "second"])
def test_resume_equals_uninterrupted(tmp_path, order):
    train, val = ImageDataset(_split(24, 0), [0.5], [0.25]), ImageDataset(_split(24, 1), [0.5], [0.25])
    cfg = _cfg("itnas", supernet={"base": "pcdarts", "partial_k": 2}, arch_optimizer={"order": order},
               schedule={"epochs": 3})
    full = run_search(cfg, train, val, 3, 1)
    ck = tmp_path / "search.pt"
    run_search(cfg, train, val, 3, 1, checkpoint_path=ck, stop_after_epochs=1)  # "interrupted" after epoch 1
    payload = load_checkpoint(ck, run_identity(cfg))
    assert set(payload) == {"config", "epoch", "state", "history", "time_s", "rng"}
    assert payload["epoch"] == 1 and len(payload["history"]) == 1
    assert set(payload["state"]) == {"model", "w_opt", "a_opt"}
    torch.manual_seed(12345)  # the RNG state must come from the checkpoint
    resumed = run_search(cfg, train, val, 3, 1, checkpoint_path=ck)
    assert len(resumed.history) == 3
    full_state, resumed_state = full.model.state_dict(), resumed.model.state_dict()
    assert list(full_state) == list(resumed_state)
    for k, a in full_state.items():
        assert torch.equal(a, resumed_state[k]), k
    for a, b in zip(full.history, resumed.history, strict=True):
        assert {k: v for k, v in a.items() if k != "time_s"} == {k: v for k, v in b.items() if k != "time_s"}


def test_checkpoint_of_other_config_is_refused(tmp_path):
    train, val = ImageDataset(_split(8, 0), [0.5], [0.25]), ImageDataset(_split(8, 1), [0.5], [0.25])
    ck = tmp_path / "search.pt"
    run_search(_cfg(schedule={"epochs": 1}), train, val, 3, 1, checkpoint_path=ck)
    with pytest.raises(CheckpointMismatch, match=r"written by a run of other params or data \(keys differ: "
                                                 r"\['config.supernet.C'\]\)"):
        run_search(_cfg(schedule={"epochs": 1}, supernet={"C": 8}), train, val, 3, 1, checkpoint_path=ck)
    with pytest.raises(CheckpointMismatch, match=r"keys differ: \['data_fingerprint'\]"):
        run_search(_cfg(schedule={"epochs": 1}), train, val, 3, 1, checkpoint_path=ck,
                   identity=run_identity(resolve_search_config(_cfg(schedule={"epochs": 1}), "cpu"),
                                         data_fingerprint="other"))
    ck.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        run_search(_cfg(schedule={"epochs": 1}), train, val, 3, 1, checkpoint_path=ck)


# ------------------------------------------------------------------------------------------- no test in search
def _sha256(images: torch.Tensor) -> list[str]:
    """Content hash of every image of (N, C, H, W) uint8."""
    return [hashlib.sha256(img.tobytes()).hexdigest() for img in images.contiguous().numpy()]


def _assert_no_test_content(splits: dict[str, ImageSplit], test: ImageSplit) -> None:
    """No search image has the bytes of a test image, whatever provenance it claims (digits holds no image twice
    across its train and test sets, so any byte-equal pair is a test image in search)."""
    overlap = find_test_overlap(splits, test)
    overlap.check(allow_duplicates=True)  # leaks: test images by provenance and content
    assert overlap.duplicates == [], f"search images with a test image's bytes: {overlap.duplicates[:5]}"
    test_hashes = set(_sha256(test.images))
    for name, split in splits.items():  # the same by plain hashes, independent of find_test_overlap
        shared = test_hashes.intersection(_sha256(split.images))
        assert not shared, f"{name} holds {len(shared)} test images"


@pytest.fixture(scope="module")
def digits_splits() -> tuple[SearchData, TrainData]:
    """Every training image of digits in the search splits (1047 + 300), every test image in the test split."""
    source = create_dataset("digits", "unused")
    search_idx, train_idx = make_splits(source, 1047, 300, 0, 0, split_seed=0)
    return SearchData.from_indices(search_idx, source), TrainData.from_indices(train_idx, source)


def test_search_splits_hold_no_test_image(digits_splits):
    search, final = digits_splits
    assert (len(search.search_train), len(search.search_val), len(final.test)) == (1047, 300, 450)
    assert search.search_train.source == search.search_val.source == "train" and final.test.source == "test"
    st, sv = set(search.search_train.source_index.tolist()), set(search.search_val.source_index.tolist())
    assert not st & sv and len(st | sv) == 1347
    assert_search_excludes_test(search, final.test)
    _assert_no_test_content(search.splits(), final.test)
    # stratified: every class holds 10 % of search-val within one image (30 per class)
    counts = torch.bincount(search.search_val.labels, minlength=10)
    assert (counts - 30).abs().max() <= 1


@pytest.mark.parametrize("claimed_source", ["test", "train"])
def test_planted_test_image_is_found(digits_splits, claimed_source):
    """The content check fails when one test image is planted in search-val, also when it claims to be a training
    image (provenance alone would miss that)."""
    search, final = digits_splits
    sv, t = search.search_val, final.test
    images = torch.cat([sv.images[:100], t.images[17:18], sv.images[100:]])
    labels = torch.cat([sv.labels[:100], t.labels[17:18], sv.labels[100:]])
    index = torch.cat([sv.source_index[:100], t.source_index[17:18] if claimed_source == "test"
                       else sv.source_index[:1], sv.source_index[100:]])
    planted = {"search_train": search.search_train, "search_val": ImageSplit(images, labels, claimed_source, index)}
    overlap = find_test_overlap(planted, t)
    if claimed_source == "test":
        assert overlap.leaks == [("search_val", 100, int(t.source_index[17]))] and overlap.duplicates == []
    else:
        assert overlap.leaks == [] and overlap.duplicates == [("search_val", 100, ("train", int(sv.source_index[0])),
                                                               int(t.source_index[17]))]
    with pytest.raises(AssertionError, match="search_val"):
        _assert_no_test_content(planted, t)
    # the production check (`ContentOverlap.check`, called by the prepare stage) refuses both
    err = AssertionError if claimed_source == "test" else DataError
    with pytest.raises(err, match="search_val"):
        overlap.check()


@pytest.mark.parametrize("method,base", [("gdas", "darts"), ("drnas", "darts"), ("gdas", "pcdarts")])
def test_sampling_search_resumes_bitwise_with_the_sampler_state(tmp_path, method, base):
    """gdas / drnas draw every architecture from the search's own generator, saved in the checkpoint: a search
    interrupted after epoch 1 and resumed (global RNG scrambled in between) equals the uninterrupted one, and a
    resume that lost the generator's state would not (the next epoch's draws differ)."""
    train, val = ImageDataset(_split(24, 0), [0.5], [0.25]), ImageDataset(_split(24, 1), [0.5], [0.25])
    cfg = _cfg(method, supernet={"base": base, "partial_k": 2}, schedule={"epochs": 3})
    full = run_search(cfg, train, val, 3, 1)
    ck = tmp_path / "search.pt"
    run_search(cfg, train, val, 3, 1, checkpoint_path=ck, stop_after_epochs=1)
    payload = load_checkpoint(ck, run_identity(cfg))
    assert set(payload["state"]) == {"model", "w_opt", "a_opt", "sampler"}
    torch.manual_seed(12345)  # neither the global RNG nor anything but the checkpoint may decide the draws
    resumed = run_search(cfg, train, val, 3, 1, checkpoint_path=ck)
    full_state, resumed_state = full.model.state_dict(), resumed.model.state_dict()
    assert list(full_state) == list(resumed_state)
    for k, a in full_state.items():
        assert torch.equal(a, resumed_state[k]), k
    for a, b in zip(full.history, resumed.history, strict=True):
        assert {k: v for k, v in a.items() if k != "time_s"} == {k: v for k, v in b.items() if k != "time_s"}
    # the generator state matters: the same resume from a fresh generator ends elsewhere
    payload["state"]["sampler"] = torch.Generator().manual_seed(99).get_state()
    torch.save(payload, ck)
    other = run_search(cfg, train, val, 3, 1, checkpoint_path=ck)
    assert not all(torch.equal(a, other.model.state_dict()[k]) for k, a in full_state.items())


def test_gdas_search_anneals_tau_and_keeps_the_global_rng():
    """The history records the epoch's temperature (tau_max -> tau_min linearly over the epochs); the draws come from
    the search's generator only: the same search started from another global RNG state ends equal (initialisation
    is seeded by the run); the architecture moves between epochs."""
    train, val = ImageDataset(_split(24, 0), [0.5], [0.25]), ImageDataset(_split(24, 1), [0.5], [0.25])
    cfg = _cfg("gdas", schedule={"epochs": 3}, architecture={"tau_max": 4.0, "tau_min": 1.0})
    a = run_search(cfg, train, val, 3, 1)
    assert [r["tau"] for r in a.history] == [4.0, 2.5, 1.0]
    torch.manual_seed(777)
    b = run_search(cfg, train, val, 3, 1)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert a.history[0]["alphas"] != a.history[-1]["alphas"]
