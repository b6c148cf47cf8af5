"""Strict configs (itnas/config.py) and checkpoints (itnas/checkpoint.py): errors that name what is wrong."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from itnas.arch import list_methods
from itnas.checkpoint import CheckpointError, capture_rng, load_checkpoint, restore_rng, save_checkpoint
from itnas.config import ConfigError, DataConfig, DeriveConfig, EvalConfig, SearchConfig, TrainConfig, parse_config
from itnas.spaces import list_spaces


# ---------------------------------------------------------------------------------------------------- config
def test_defaults_parse():
    cfg = parse_config(SearchConfig, None, "search")
    assert cfg.method == "itnas" and cfg.space == "darts" and cfg.base == "auto" and cfg.partial_k == 4
    assert parse_config(SearchConfig, {"method": "darts", "C": 8}, "search").C == 8
    for cls in (DataConfig, DeriveConfig, TrainConfig, EvalConfig):
        assert isinstance(parse_config(cls, {}, "x"), cls)


def test_unknown_key_is_named_with_valid_keys():
    with pytest.raises(ConfigError) as exc:
        parse_config(SearchConfig, {"methdo": "itnas"}, "search")
    msg = str(exc.value)
    assert "search.methdo" in msg and "unknown key" in msg
    for key in SearchConfig.model_fields:
        assert key in msg
    for key in ("method", "space", "transition_init", "partial_k", "warmup_epochs"):
        assert key in msg


@pytest.mark.parametrize("key,bad,valid", [("method", "enas", list_methods), ("space", "nasbench101", list_spaces)])
def test_bad_registry_name_is_named_with_valid_names(key, bad, valid):
    with pytest.raises(ConfigError) as exc:
        parse_config(SearchConfig, {key: bad}, "search")
    msg = str(exc.value)
    assert f"search.{key}" in msg and bad in msg
    assert valid() and all(name in msg for name in valid())


@pytest.mark.parametrize("data,key", [
    ({"C": 0}, "search.C"),
    ({"C": "wide"}, "search.C"),
    ({"transition_init": "eye"}, "search.transition_init"),
    ({"base": "enas"}, "search.base"),
    ({"order": "third"}, "search.order"),
    ({"lr": -1.0}, "search.lr"),
])
def test_bad_values_name_the_key(data, key):
    with pytest.raises(ConfigError) as exc:
        parse_config(SearchConfig, data, "search")
    assert key in str(exc.value)
    assert repr(next(iter(data.values()))) in str(exc.value)


def test_every_bad_key_is_reported():
    with pytest.raises(ConfigError) as exc:
        parse_config(SearchConfig, {"method": "enas", "foo": 1, "bar": 2}, "search")
    msg = str(exc.value)
    assert "search.method" in msg and "search.foo" in msg and "search.bar" in msg


def test_nested_section_names():
    with pytest.raises(ConfigError, match=r"train\.drop_path"):
        parse_config(TrainConfig, {"drop_path": 1.5}, "train")
    with pytest.raises(ConfigError, match=r"derive\.mode"):
        parse_config(DeriveConfig, {"mode": "greedy"}, "derive")


def test_configs_are_frozen():
    cfg = parse_config(SearchConfig, {}, "search")
    with pytest.raises(ValidationError, match="frozen"):
        cfg.C = 4  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------------- checkpoint
def _payload(config):
    return {"config": config, "epoch": 3, "weights": torch.arange(10.0), "history": [{"epoch": 0}]}


def test_round_trip(tmp_path):
    config = parse_config(SearchConfig, {"C": 8}, "search").model_dump()
    path = tmp_path / "ck" / "search.pt"
    save_checkpoint(path, _payload(config))
    assert path.exists() and not path.with_suffix(".pt.tmp").exists()
    ck = load_checkpoint(path, config)
    assert ck["epoch"] == 3 and torch.equal(ck["weights"], torch.arange(10.0)) and ck["config"] == config
    assert load_checkpoint(path)["epoch"] == 3


def test_truncated_file_raises_checkpoint_error_naming_it(tmp_path):
    path = tmp_path / "search.pt"
    save_checkpoint(path, _payload({"a": 1}))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path, {"a": 1})
    assert str(path) in str(exc.value)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all\n", bytes(range(256)) * 4])
def test_garbage_file_raises_checkpoint_error_naming_it(tmp_path, content):
    path = tmp_path / "garbage.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert str(path) in str(exc.value)


def test_foreign_file_without_config(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert str(path) in str(exc.value) and "config" in str(exc.value)
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_config_mismatch(tmp_path):
    cfg = parse_config(SearchConfig, {"C": 8}, "search").model_dump()
    path = tmp_path / "search.pt"
    save_checkpoint(path, _payload(cfg))
    other = parse_config(SearchConfig, {"C": 16, "method": "darts"}, "search").model_dump()
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path, other)
    msg = str(exc.value)
    assert str(path) in msg and "'C'" in msg and "'method'" in msg and "'seed'" not in msg
    extra = {**cfg, "new_key": 1}
    with pytest.raises(CheckpointError, match="new_key"):
        load_checkpoint(path, extra)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.pt")


def test_save_overwrites_atomically(tmp_path):
    path = tmp_path / "search.pt"
    save_checkpoint(path, _payload({"a": 1}))
    save_checkpoint(path, {**_payload({"a": 1}), "epoch": 4})
    assert load_checkpoint(path)["epoch"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search.pt"]


def test_rng_capture_restore():
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    state = capture_rng()
    a = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
