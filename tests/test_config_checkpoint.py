"""Strict configs (itnas/config.py) and checkpoints (itnas/checkpoint.py): errors that name what is wrong."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from itnas.checkpoint import CheckpointError, capture_rng, load_checkpoint, restore_rng, save_checkpoint
from itnas.config import ConfigError, DataConfig, DeriveConfig, EvalConfig, SearchConfig, SupernetConfig
from itnas.config_parse import deep_merge, parse_config
from itnas.methods import list_methods
from itnas.spaces import list_spaces
from itnas.train_config import RegularizationConfig, TrainConfig


def _valid_keys_listed(msg: str, key: str) -> list[str]:
    """The comma-separated list after `<key>: unknown key; valid keys: ` in a ConfigError message."""
    line = next(ln for ln in msg.splitlines() if ln.strip().startswith(f"{key}: unknown key"))
    return [k.strip() for k in line.split("valid keys:", 1)[1].split(",")]


# ---------------------------------------------------------------------------------------------------- config
def test_defaults_parse():
    cfg = parse_config(SearchConfig, None, "search")
    assert cfg.method == "itnas" and cfg.supernet.space == "darts" and cfg.supernet.base == "auto"
    assert cfg.supernet.partial_k == 4 and cfg.schedule.epochs == 50 and cfg.arch_optimizer.betas == (0.5, 0.999)
    assert cfg.base == "pcdarts"  # "auto" resolves to the method's default base
    darts = parse_config(SearchConfig, {"method": "darts", "supernet": {"C": 8}}, "search")
    assert darts.supernet.C == 8 and darts.supernet.layers == 8 and darts.base == "darts"
    assert parse_config(SearchConfig, {"supernet": {"base": "darts"}}, "search").base == "darts"
    for cls in (DataConfig, DeriveConfig, TrainConfig, EvalConfig):
        assert isinstance(parse_config(cls, {}, "x"), cls)


def test_resolved_config_round_trips_through_json():
    """The JSON dump stored in checkpoints and beside outputs rebuilds the same config (betas: list -> tuple)."""
    cfg = parse_config(SearchConfig, {"method": "darts", "supernet": {"C": 8}, "arch_optimizer": {"order": "second"}},
                       "search")
    assert SearchConfig.model_validate(cfg.model_dump(mode="json")) == cfg
    train = parse_config(TrainConfig, {"network": {"stem_stride": 2}, "channels_last": True}, "train")
    assert TrainConfig.model_validate(train.model_dump(mode="json")) == train


def test_unknown_key_is_named_with_valid_keys():
    with pytest.raises(ConfigError) as exc:
        parse_config(SearchConfig, {"methdo": "itnas"}, "search")
    msg = str(exc.value)
    assert _valid_keys_listed(msg, "search.methdo") == list(SearchConfig.model_fields)
    assert set(SearchConfig.model_fields) >= {"method", "seed", "supernet", "schedule", "arch_optimizer"}


@pytest.mark.parametrize("data,key,cls", [
    ({"supernet": {"spcae": "darts"}}, "search.supernet.spcae", SupernetConfig),
    ({"schedule": {"epocs": 3}}, "search.schedule.epocs", SearchConfig.model_fields["schedule"].annotation),
    ({"arch_optimizer": {"momentum": 0.9}}, "search.arch_optimizer.momentum",
     SearchConfig.model_fields["arch_optimizer"].annotation),
])
def test_unknown_nested_key_lists_the_keys_of_its_level(data, key, cls):
    """A typo inside a nested block names the dotted key and lists that block's keys, not the top level's."""
    with pytest.raises(ConfigError) as exc:
        parse_config(SearchConfig, data, "search")
    listed = _valid_keys_listed(str(exc.value), key)
    assert listed == list(cls.model_fields)
    assert "method" not in listed and "supernet" not in listed


@pytest.mark.parametrize("data,key,bad,valid", [
    ({"method": "enas"}, "search.method", "enas", list_methods),
    ({"supernet": {"space": "nasbench101"}}, "search.supernet.space", "nasbench101", list_spaces),
])
def test_bad_registry_name_is_named_with_valid_names(data, key, bad, valid):
    with pytest.raises(ConfigError) as exc:
        parse_config(SearchConfig, data, "search")
    msg = str(exc.value)
    assert f"{key}={bad!r}" in msg
    assert valid() and all(name in msg for name in valid())


@pytest.mark.parametrize("data,key,bad", [
    ({"supernet": {"C": 0}}, "search.supernet.C", 0),
    ({"supernet": {"C": "wide"}}, "search.supernet.C", "wide"),
    ({"architecture": {"transition_init": "eye"}}, "search.architecture.transition_init", "eye"),
    ({"supernet": {"base": "enas"}}, "search.supernet.base", "enas"),
    ({"arch_optimizer": {"order": "third"}}, "search.arch_optimizer.order", "third"),
    ({"weight_optimizer": {"lr": -1.0}}, "search.weight_optimizer.lr", -1.0),
    ({"schedule": {"epochs": 0}}, "search.schedule.epochs", 0),
    ({"data": {"batch_size": 0}}, "search.data.batch_size", 0),
])
def test_bad_values_name_the_key(data, key, bad):
    with pytest.raises(ConfigError) as exc:
        parse_config(SearchConfig, data, "search")
    assert f"{key}={bad!r}" in str(exc.value)


def test_warmup_must_be_shorter_than_the_search():
    with pytest.raises(ConfigError) as exc:
        parse_config(SearchConfig, {"schedule": {"epochs": 3, "warmup_epochs": 3}}, "search")
    msg = str(exc.value)
    assert "search.schedule" in msg and "warmup_epochs=3 must be < epochs=3" in msg
    ok = parse_config(SearchConfig, {"schedule": {"epochs": 3, "warmup_epochs": 2}}, "search")
    assert ok.schedule.warmup_epochs == 2


@pytest.mark.parametrize("method,base,fails", [
    ("itnas", "auto", True),  # itnas resolves to the pcdarts base
    ("pcdarts", "pcdarts", True),
    ("itnas", "darts", False),  # no partial channels on the darts base
    ("darts", "auto", False),
])
def test_partial_k_must_divide_C_on_the_pcdarts_base(method, base, fails):
    data = {"method": method, "supernet": {"base": base, "C": 6, "partial_k": 4}}
    if not fails:
        assert parse_config(SearchConfig, data, "search").supernet.C == 6
        return
    with pytest.raises(ConfigError) as exc:
        parse_config(SearchConfig, data, "search")
    msg = str(exc.value)
    assert "supernet.C=6" in msg and "supernet.partial_k=4" in msg and f"method {method}" in msg
    assert parse_config(SearchConfig, {**data, "supernet": {"base": base, "C": 8, "partial_k": 4}}, "search").base \
        == "pcdarts"


def test_every_bad_key_is_reported():
    with pytest.raises(ConfigError) as exc:
        parse_config(SearchConfig, {"method": "enas", "foo": 1, "supernet": {"bar": 2, "C": 0}}, "search")
    lines = str(exc.value).splitlines()[1:]
    keys = sorted(ln.strip().split(":")[0].split("=")[0] for ln in lines)
    assert keys == ["search.foo", "search.method", "search.supernet.C", "search.supernet.bar"]


def test_nested_section_names():
    with pytest.raises(ConfigError, match=r"train\.regularization\.drop_path=1\.5"):
        parse_config(TrainConfig, {"regularization": {"drop_path": 1.5}}, "train")
    with pytest.raises(ConfigError, match=r"train\.network\.stem_stride=3"):
        parse_config(TrainConfig, {"network": {"stem_stride": 3}}, "train")
    with pytest.raises(ConfigError, match=r"derive\.mode='greedy'"):
        parse_config(DeriveConfig, {"mode": "greedy"}, "derive")
    with pytest.raises(ConfigError) as exc:
        parse_config(TrainConfig, {"regularization": {"dropout": 0.1}}, "train")
    assert _valid_keys_listed(str(exc.value), "train.regularization.dropout") == list(RegularizationConfig.model_fields)


def test_deep_merge_overrides_nested_keys_only():
    base = {"supernet": {"base": "darts", "C": 8}, "schedule": {"epochs": 3, "warmup_epochs": 0}, "x": 1}
    override = {"supernet": {"base": "pcdarts"}, "schedule": {"warmup_epochs": 1}, "y": {"z": 2}}
    merged = deep_merge(base, override)
    assert merged == {"supernet": {"base": "pcdarts", "C": 8}, "schedule": {"epochs": 3, "warmup_epochs": 1},
                      "x": 1, "y": {"z": 2}}
    # neither input is modified
    assert base == {"supernet": {"base": "darts", "C": 8}, "schedule": {"epochs": 3, "warmup_epochs": 0}, "x": 1}
    assert override == {"supernet": {"base": "pcdarts"}, "schedule": {"warmup_epochs": 1}, "y": {"z": 2}}
    # a non-dict value replaces a dict (and the other way round)
    assert deep_merge({"a": {"b": 1}}, {"a": 2}) == {"a": 2}
    assert deep_merge({"a": 2}, {"a": {"b": 1}}) == {"a": {"b": 1}}


def test_partial_train_optimizer_keeps_the_training_lr_min():
    assert TrainConfig().optimizer.lr_min == 0.0
    assert parse_config(TrainConfig, {"optimizer": {"lr": 0.05}}, "train").optimizer.lr_min == 0.0


def test_configs_are_frozen():
    cfg = parse_config(SearchConfig, {}, "search")
    with pytest.raises(ValidationError, match="frozen"):
        cfg.method = "darts"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        cfg.supernet.C = 4  # type: ignore[misc]


def test_method_block_is_deep_merged_into_search():
    """Params.search_config: `methods.<m>` overrides only the keys it names; method and seed come from the run; an
    error in a method's override names the block it came from (the whole file is checked when it is loaded)."""
    from itnas.params import Params

    bench = {"b": {"label": "b", "evaluation": "train", "data": {}, "search": {}, "train": {}}}
    params = {"search": {"supernet": {"base": "darts", "C": 8, "layers": 5}, "schedule": {"epochs": 3}},
              "methods": {"pcdarts": {"supernet": {"base": "pcdarts"}, "schedule": {"warmup_epochs": 1}},
                          "darts": {"supernet": {"C": 6}}}, "benchmarks": bench}
    pc = Params.from_dict(params).search_config("b", "pcdarts", 2)
    assert (pc.method, pc.seed, pc.base, pc.supernet.C, pc.supernet.layers) == ("pcdarts", 2, "pcdarts", 8, 5)
    assert (pc.schedule.epochs, pc.schedule.warmup_epochs) == (3, 1)
    it = Params.from_dict(params).search_config("b", "itnas", 0)
    assert (it.base, it.schedule.warmup_epochs, it.supernet.C) == ("darts", 0, 8)
    params["methods"]["pcdarts"]["schedule"]["warmup_epochs"] = 3
    with pytest.raises(ConfigError, match=r"search \(with methods\.pcdarts\)\.schedule.*warmup_epochs=3"):
        Params.from_dict(params)
    with pytest.raises(ConfigError, match=r"search: method and seed are set by the run"):
        Params.from_dict({"search": {"seed": 1}, "benchmarks": bench})


# ---------------------------------------------------------------------------------------------------- checkpoint
def _payload(config):
    return {"config": config, "epoch": 3, "weights": torch.arange(10.0), "history": [{"epoch": 0}]}


def test_round_trip(tmp_path):
    config = parse_config(SearchConfig, {"supernet": {"C": 8}}, "search").model_dump(mode="json")
    path = tmp_path / "ck" / "search.pt"
    save_checkpoint(path, _payload(config))
    assert path.exists() and not path.with_suffix(".pt.tmp").exists()
    ck = load_checkpoint(path, config)
    assert ck["epoch"] == 3 and torch.equal(ck["weights"], torch.arange(10.0)) and ck["config"] == config
    assert SearchConfig.model_validate(ck["config"]).supernet.C == 8  # the checkpoint alone rebuilds the config
    assert load_checkpoint(path)["epoch"] == 3


def test_truncated_file_raises_checkpoint_error_naming_it(tmp_path):
    path = tmp_path / "search.pt"
    save_checkpoint(path, _payload({"a": 1}))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path, {"a": 1})
    assert str(path) in str(exc.value) and "unreadable" in str(exc.value)


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
    with pytest.raises(CheckpointError, match="not an itnas checkpoint"):
        load_checkpoint(path)


def test_config_mismatch(tmp_path):
    cfg = parse_config(SearchConfig, {"supernet": {"C": 8}}, "search").model_dump(mode="json")
    path = tmp_path / "search.pt"
    save_checkpoint(path, _payload(cfg))
    other = parse_config(SearchConfig, {"supernet": {"C": 16}, "method": "darts"}, "search").model_dump(mode="json")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path, other)
    msg = str(exc.value)
    # the differing top-level blocks are named, the equal ones are not
    assert str(path) in msg and "keys differ: ['method', 'supernet.C']" in msg
    extra = {**cfg, "new_key": 1}
    with pytest.raises(CheckpointError, match=r"keys differ: \['new_key'\]"):
        load_checkpoint(path, extra)
    assert load_checkpoint(path, dict(cfg))["epoch"] == 3  # an equal config (another object) is accepted


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
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
    c = (torch.rand(3), np.random.rand(3), random.random())
    assert not torch.equal(a[0], c[0])  # the draws move on: equality below comes from the restore
    restore_rng(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
