"""Failures stopped with clear errors (issue 10): divergence (NaN/inf), tail batches of one sample, degenerate
splits, and a search killed with SIGKILL mid-epoch that resumes to the uninterrupted result."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from tiny_project import image_split as _split
from tiny_project import itnas, one_line_error, tiny_params, write_params

from itnas.checkpoint import load_checkpoint
from itnas.config import ConfigError, SearchConfig
from itnas.config_parse import deep_merge
from itnas.data import ImageDataset, make_loader, num_batches
from itnas.engine import NonFiniteError
from itnas.genotype import PUBLISHED_GENOTYPES
from itnas.networks import create_final_network
from itnas.params import load_params
from itnas.search import run_search
from itnas.train import train_final
from itnas.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]



def _search_cfg(**blocks) -> SearchConfig:
    base = {"method": "darts", "supernet": {"base": "darts", "C": 4, "layers": 2, "track_running_stats": False},
            "schedule": {"epochs": 3, "warmup_epochs": 0, "val_every": 0}, "data": {"batch_size": 8}}
    return SearchConfig.model_validate(deep_merge(base, blocks))


def _train_cfg(batch_size: int = 8, epochs: int = 3) -> TrainConfig:
    return TrainConfig(epochs=epochs, network={"C": 4, "layers": 3, "auxiliary": True},
                       optimizer={"lr": 0.05, "lr_min": 0.0}, regularization={"drop_path": 0.0},
                       data={"batch_size": batch_size, "cutout": 0, "crop_padding": 0, "hflip": False})


def _final_net(seed: int = 0):
    torch.manual_seed(seed)
    return create_final_network(PUBLISHED_GENOTYPES["darts_v2"], 4, 3, 3, True, 1)


class Poisoned(ImageDataset):
    """Serves NaN images from its `after`-th sample on (counting every sample served, over all epochs)."""

    def __init__(self, *args, after: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.after, self.served = after, 0

    def __getitem__(self, i):
        x, y, j = super().__getitem__(i)
        self.served += 1
        return (torch.full_like(x, math.nan) if self.served > self.after else x), y, j


# ------------------------------------------------------------------------------------------ NaN / inf (item 4)


def _assert_same_state(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_search_stops_at_a_nan_keeping_the_last_good_epoch(tmp_path):
    """A NaN from the 3rd step of epoch 2 on: the search stops at once naming run, quantity, epoch and step; the
    checkpoint still holds epoch 1, bitwise the state of a clean run stopped after epoch 1."""
    cfg, val = _search_cfg(), ImageDataset(_split(64, 1), [0.5], [0.25])
    clean = tmp_path / "clean.pt"
    run_search(cfg, ImageDataset(_split(64, 0), [0.5], [0.25]), val, 3, 1, checkpoint_path=clean, stop_after_epochs=1)
    ck = tmp_path / "search.pt"
    poisoned = Poisoned(_split(64, 0), [0.5], [0.25], after=64 + 2 * 8)  # epoch 2 (8 steps of 8), step 3
    with pytest.raises(NonFiniteError, match=r"^search \(darts, seed 0\) diverged: non-finite training loss at "
                                             r"epoch 2 of 3, step 3 of 8; .*search\.pt keeps the last good "
                                             r"epoch \(1\)"):
        run_search(cfg, poisoned, val, 3, 1, checkpoint_path=ck)
    assert poisoned.served < 2 * 64  # stopped within the epoch, not at its end
    kept, ref = load_checkpoint(ck), load_checkpoint(clean)
    assert kept["epoch"] == 1 and len(kept["history"]) == 1
    _assert_same_state(kept["state"]["model"], ref["state"]["model"])


def test_final_training_stops_at_a_nan_keeping_the_last_good_epoch(tmp_path):
    cfg = _train_cfg()
    clean = tmp_path / "clean.pt"
    train_final(_final_net(), cfg, ImageDataset(_split(64, 0), [0.5], [0.25]), checkpoint_path=clean,
                stop_after_epochs=1)
    ck = tmp_path / "train.pt"
    poisoned = Poisoned(_split(64, 0), [0.5], [0.25], after=64 + 5 * 8)  # epoch 2, step 6
    with pytest.raises(NonFiniteError, match=r"final training \(seed 0\) diverged: non-finite training loss at "
                                             r"epoch 2 of 3, step 6 of 8"):
        train_final(_final_net(), cfg, poisoned, checkpoint_path=ck)
    kept = load_checkpoint(ck)
    assert kept["epoch"] == 1
    _assert_same_state(kept["state"]["model"], load_checkpoint(clean)["state"]["model"])


def test_diverging_architecture_parameters_are_named():
    """Adam at lr 1e38 drives the architecture logits past the float range within a few steps."""
    train, val = ImageDataset(_split(32, 0), [0.5], [0.25]), ImageDataset(_split(32, 1), [0.5], [0.25])
    with pytest.raises(NonFiniteError, match=r"non-finite architecture parameter at epoch 1 of 3, step \d of 4; "
                                             r"nothing was saved") as err:
        run_search(_search_cfg(arch_optimizer={"lr": 1e38}), train, val, 3, 1)
    assert err.value.what == "architecture parameter" and err.value.epoch == 0


@pytest.mark.parametrize("block,change,where", [
    # the weights blow up: the loss stays finite (batch norm), the running variances overflow in epoch 2
    ("weight_optimizer", {"lr": 1e5}, r"non-finite value in model\.net\..*running_var at the end of epoch 2 of 3"),
    # the architecture logits pass the float range in the first architecture epoch (after a warm-up epoch)
    ("arch_optimizer", {"lr": 1e38}, r"non-finite architecture parameter at epoch 2 of 3, step [1-4] of 4"),
])
def test_search_stage_with_a_huge_lr_ends_in_one_line(tmp_path, monkeypatch, block, change, where):
    """A huge learning rate (the issue's `lr: 1e6` kind): exit 2, one line naming stage, epoch (and step); the
    checkpoint of epoch 1 is intact and finite, and no output is written."""
    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    params["search"][block].update(change)
    params["search"]["schedule"]["warmup_epochs"] = 1
    params["search"]["precision"]["dtype"] = "float32"  # the float32 range: float64 overflows epochs later
    write_params(tmp_path, params)
    assert itnas("prepare", "tiny").exit_code == 0
    result = itnas("search", "tiny", "darts", "0")
    assert result.exit_code == 2, result.output
    line = one_line_error(result)
    assert re.match(rf"error: search tiny/darts-s0 diverged: {where}; \.itnas_ckpt/tiny/darts-s0/search\.pt keeps "
                    rf"the last good epoch \(1\); lower the learning rate", line), line
    kept = load_checkpoint(tmp_path / ".itnas_ckpt/tiny/darts-s0/search.pt")
    assert kept["epoch"] == 1 and math.isfinite(kept["history"][0]["train_loss"])
    assert all(torch.isfinite(v).all() for v in kept["state"]["model"].values() if v.is_floating_point())
    assert not (tmp_path / "runs/tiny/darts-s0/search").exists()


# ------------------------------------------------------------------------------------ tail batches (item 5)


def test_drop_single_drops_only_a_tail_of_one():
    """Every (data size, batch size): the training loader keeps every batch of the plain loader, except a last
    batch of exactly one sample after a full batch; `num_batches` counts them."""
    for n in range(1, 30):
        dataset = list(range(n))
        for bs in range(1, 12):
            plain = [b.tolist() for b in make_loader(dataset, bs, True, seed=1, epoch=2)]
            train = [b.tolist() for b in make_loader(dataset, bs, True, seed=1, epoch=2, drop_single=True)]
            tail_of_one = n % bs == 1 and n > bs
            assert train == (plain[:-1] if tail_of_one else plain), (n, bs)
            assert len(train) == num_batches(n, bs, drop_single=True) and len(plain) == num_batches(n, bs)
            assert all(len(b) > 1 for b in train) or n == 1 or bs == 1


@pytest.mark.parametrize("n,batch_size", [(300, 299), (33, 16), (17, 8)])
def test_final_training_with_a_tail_of_one(n, batch_size):
    """Batch norm after the auxiliary head's 1x1 map raised on a last batch of one sample."""
    history = train_final(_final_net(), _train_cfg(batch_size, epochs=1), ImageDataset(_split(n, 0), [0.5], [0.25]))
    assert len(history) == 1 and math.isfinite(history[0]["train_loss"])


def test_search_with_a_tail_of_one():
    """Search images of 4 px reach 1x1 maps after two reductions: a training batch of one sample raised."""
    cfg = _search_cfg(schedule={"epochs": 1}, data={"batch_size": 8, "image_size": 4})
    train = ImageDataset(_split(17, 0), [0.5], [0.25], image_size=4)
    val = ImageDataset(_split(17, 1), [0.5], [0.25], image_size=4)
    result = run_search(cfg, train, val, 3, 1)
    assert math.isfinite(result.history[0]["train_loss"])


def test_train_stage_with_a_tail_of_one(tmp_path, monkeypatch):
    """The issue's input: `train.data.batch_size: 299` with 300 training images, through the evaluate stage."""
    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    params["train"]["data"]["batch_size"] = 299
    write_params(tmp_path, params)
    assert itnas("prepare", "tiny").exit_code == 0
    (tmp_path / "runs/tiny/darts-s0").mkdir(parents=True)
    PUBLISHED_GENOTYPES["darts_v2"].save(tmp_path / "runs/tiny/darts-s0/genotype.json")
    (tmp_path / "runs/tiny/darts-s0/search_metrics.json").write_text(
        '{"search_time_s": 1.0, "search_val_acc": null, "search_collapse_count": 0}')
    for stage in ("train", "evaluate"):
        result = itnas(stage, "tiny", "darts", "0")
        assert result.exit_code == 0, result.output
    assert (tmp_path / "runs/tiny/darts-s0/train/model.pt").exists()


# --------------------------------------------------------------------------------- degenerate splits (item 6)


def _params_with(tmp_path: Path, **data) -> Path:
    params = tiny_params()
    params["data"].update(data)
    return write_params(tmp_path, params)


@pytest.mark.parametrize("key,value", [("search_val_size", 5), ("search_train_size", 9), ("train_size", 3),
                                       ("test_size", 1)])
def test_split_smaller_than_the_classes_is_a_config_error(tmp_path, key, value):
    with pytest.raises(ConfigError, match=rf"data\.{key}={value}: fewer images than the 10 classes of digits .*"
                                          rf"smallest valid value: 10"):
        load_params(_params_with(tmp_path, **{key: value}))


def test_fewer_val_images_than_search_steps_is_a_config_error(tmp_path):
    """64 search-train images in batches of 4 are 16 steps, each needing a search-val batch."""
    params = tiny_params()
    params["search"]["data"]["batch_size"] = 4
    params["data"]["search_val_size"] = 15
    with pytest.raises(ConfigError, match=r"data\.search_val_size=15: fewer search-val images than 2 x the 16 "
                                          r"search steps per epoch \(data\.search_train_size=64 / "
                                          r"search\.data\.batch_size=4; methods darts, .*\): .*smallest valid "
                                          r"value: 32") as err:
        load_params(write_params(tmp_path, params))
    assert str(err.value).count("search_val_size=15") == 1  # one line for the methods that share the batch size
    params["search"]["data"]["batch_size"] = 64
    params["methods"]["pcdarts"]["data"] = {"batch_size": 4}  # a method's own batch size is named as its key
    with pytest.raises(ConfigError, match=r"methods\.pcdarts\.data\.batch_size=4"):
        load_params(write_params(tmp_path, params))


def test_smallest_valid_splits_run(tmp_path, monkeypatch):
    """At the smallest valid values (2 search-val images per search step: 20 for 10 steps) prepare and an epoch of
    search run, also on 4 px search images, where a search-val batch of one would fail in batch norm."""
    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    params["data"].update(search_train_size=40, search_val_size=20)
    params["search"]["data"]["batch_size"] = 4  # 10 steps: two search-val images each
    params["search"]["data"]["image_size"] = 4
    params["search"]["schedule"]["epochs"] = 1
    params["methods"]["pcdarts"]["schedule"] = {"warmup_epochs": 0}
    write_params(tmp_path, params)
    load_params("params.yaml")
    assert itnas("prepare", "tiny").exit_code == 0
    result = itnas("search", "tiny", "darts", "0")
    assert result.exit_code == 0, result.output
    params["data"]["search_val_size"] = 19
    write_params(tmp_path, params)
    result = itnas("prepare", "tiny")
    assert result.exit_code == 2 and "data.search_val_size=19" in result.stderr
    assert "smallest valid value: 20" in result.stderr


def test_every_registered_dataset_declares_its_classes(tmp_path):
    """The params check relies on the class count a registry entry declares; it is the one the data set has (the
    file-format data sets read from tiny files in their real formats, tests/test_dataset_formats.py)."""
    from test_dataset_formats import write_cifar10, write_cifar100, write_svhn

    from itnas.data import create_dataset, dataset_num_classes, list_datasets

    write_cifar10(tmp_path)
    write_cifar100(tmp_path)
    write_svhn(tmp_path / "svhn")
    for name in list_datasets():
        root = tmp_path
        if name == "imagenet":
            continue  # its reader refuses a tree without the declared 1000 classes (tests/test_imagenet_data.py)
        if name == "imagefolder":  # the user's class folders: no count to declare
            assert dataset_num_classes(name) is None
            continue
        if name == "fashion_mnist":
            if not (ROOT / "data/raw/FashionMNIST/raw").is_dir():
                continue  # read only where already unpacked (no writes into the repository)
            root = ROOT / "data/raw"
        assert dataset_num_classes(name) == len(create_dataset(name, root).classes), name


# ------------------------------------------------------------------------------- SIGKILL mid-epoch, resume

SEARCH_SCRIPT = textwrap.dedent("""
    import sys, time
    import torch
    torch.set_num_threads(1)
    from itnas.config import SearchConfig
    from itnas.data import ImageDataset, ImageSplit
    from itnas.search import run_search

    def split(n, seed):
        g = torch.Generator().manual_seed(seed)
        return ImageSplit(torch.randint(0, 256, (n, 1, 8, 8), generator=g, dtype=torch.uint8),
                          torch.randint(0, 3, (n,), generator=g), "train", torch.arange(n))

    PAUSE = len(sys.argv) > 3  # the run to be killed waits at epoch 2, step 3 until the parent kills it

    def on_step(epoch, step, n_steps, loss):
        print(f"step {epoch} {step}", flush=True)
        if PAUSE and (epoch, step) == (1, 3):
            time.sleep(600)  # handshake: SIGKILL arrives here, mid-epoch, whatever the machine's load

    cfg = SearchConfig.model_validate(CONFIG)
    train, val = ImageDataset(split(32, 0), [0.5], [0.25]), ImageDataset(split(24, 1), [0.5], [0.25])
    r = run_search(cfg, train, val, 3, 1, checkpoint_path=sys.argv[1], on_step=on_step)
    torch.save({"history": r.history, "arch": [p.detach() for p in r.model.arch_parameters()],
                "state": r.model.state_dict()}, sys.argv[2])
""")
KILL_CONFIG = {"method": "itnas", "supernet": {"base": "pcdarts", "C": 4, "layers": 2, "partial_k": 2},
               "schedule": {"epochs": 3, "warmup_epochs": 0, "val_every": 1}, "data": {"batch_size": 4}}


def _search_process(script: Path, ck: Path, out: Path, pause: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, str(script), str(ck), str(out), *(["pause"] if pause else [])],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.slow  # three Python processes (about 20 s on 2 cores)
def test_search_killed_mid_epoch_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGKILL (no handler, no cleanup) during epoch 2, after epoch 1's checkpoint: the rerun resumes from it and
    ends bitwise where an uninterrupted run ends (history without times, architecture and weights)."""
    script = tmp_path / "search.py"
    script.write_text(f"CONFIG = {KILL_CONFIG!r}\n{SEARCH_SCRIPT}")
    ck = tmp_path / "ckpt" / "search.pt"
    full = _search_process(script, tmp_path / "fresh.pt", tmp_path / "full.pt")  # uninterrupted, alongside
    proc = _search_process(script, ck, tmp_path / "never.pt", pause=True)
    try:
        for line in proc.stdout:
            if line.strip() == "step 1 3":  # epoch 2 (0-based 1), 3 of 8 steps done
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert load_checkpoint(ck)["epoch"] == 1  # killed mid-epoch 2: only epoch 1 is saved

    resumed = _search_process(script, ck, tmp_path / "resumed.pt")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert out.splitlines()[0] == "step 1 1"  # resumed at the start of epoch 2
    _, err = full.communicate(timeout=300)
    assert full.returncode == 0, err

    a, b = torch.load(tmp_path / "full.pt"), torch.load(tmp_path / "resumed.pt")
    drop_time = lambda h: [{k: v for k, v in r.items() if k != "time_s"} for r in h]  # noqa: E731
    assert drop_time(a["history"]) == drop_time(b["history"])
    for x, y in zip(a["arch"], b["arch"], strict=True):
        assert torch.equal(x, y)
    _assert_same_state(a["state"], b["state"])
