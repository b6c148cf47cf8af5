"""The named training recipes (itnas.recipes) hold the published values.

Two independent checks per recipe: an exact transcribed table, and the numbers parsed from the recipe sentences of
the project's design page (DESIGN.md sections 3 and 4, which is not in the repository: the sentences are quoted
here verbatim, `DESIGN_SENTENCES`, so the check runs everywhere, CI included).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from itnas.config import ConfigError
from itnas.config_parse import parse_config
from itnas.genotype import PUBLISHED_GENOTYPES
from itnas.networks import FinalNetwork, FinalNetworkImageNet, count_parameters, create_final_network
from itnas.recipes import NEEDS_CONFIG_SUPPORT, RECIPES, get_recipe, list_recipes, unsupported_keys
from itnas.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]

#: The recipe sentences of the design page (DESIGN.md 3 and 4, quoted verbatim; their sources: DARTS, Liu et al.,
#: ICLR 2019, section 3 and cnn/train.py, cnn/train_imagenet.py; RobustDARTS, Zela et al., ICLR 2020).
DESIGN_SENTENCES = (
    "DARTS CIFAR recipe C=36, 20 cells, auxiliary head (weight 0.4) at 2/3 depth, cutout 16, drop-path 0.2, 600 "
    "epochs, batch 96, SGD 0.025 cosine, momentum 0.9, wd 3e-4, grad clip 5. ImageNet",
    "evaluation uses C=36 / 20 cells on CIFAR-10 and C=16 / 8 cells on CIFAR-100 and SVHN",
    "ImageNet (mobile setting, < 600M multiply-adds): C=48, 14 cells, 250 epochs, label smoothing 0.1, auxiliary "
    "0.4. Search",
    "Training: 250 epochs, batch 128, SGD lr 0.1 (decay 0.97 per epoch), momentum 0.9, wd 3e-5, label smoothing "
    "0.1, auxiliary 0.4, grad clip 5 (DARTS)",
)

_CIFAR_COMMON = {
    "epochs": 600,
    "network.stem_stride": 1, "network.auxiliary": True,
    "optimizer.lr": 0.025, "optimizer.lr_min": 0.0, "optimizer.momentum": 0.9, "optimizer.weight_decay": 3e-4,
    "optimizer.grad_clip": 5.0,
    "regularization.auxiliary_weight": 0.4, "regularization.drop_path": 0.2, "regularization.label_smoothing": 0.0,
    "data.batch_size": 96, "data.image_size": 0, "data.cutout": 16, "data.crop_padding": 4, "data.hflip": True,
    "channels_last": False,
    "amp": "off",
    "tf32": False,
    "deterministic": False,
    "compile": False,
}

#: The published values, transcribed from DESIGN.md 3 and 4 and the DARTS / RobustDARTS code (dotted keys).
EXPECTED: dict[str, dict[str, Any]] = {
    "darts_cifar": {**_CIFAR_COMMON, "network.C": 36, "network.layers": 20},
    "robustdarts_cifar10": {**_CIFAR_COMMON, "network.C": 36, "network.layers": 20},
    "robustdarts_cifar100_svhn": {**_CIFAR_COMMON, "network.C": 16, "network.layers": 8},
    "darts_imagenet": {
        "epochs": 250,
        "network.C": 48, "network.layers": 14, "network.stem_stride": 1, "network.auxiliary": True,
        "network.kind": "imagenet",
        "optimizer.lr": 0.1, "optimizer.lr_min": 0.0, "optimizer.momentum": 0.9, "optimizer.weight_decay": 3e-5,
        "optimizer.grad_clip": 5.0, "optimizer.schedule": "exponential", "optimizer.gamma": 0.97,
        "regularization.auxiliary_weight": 0.4, "regularization.drop_path": 0.0,
        "regularization.label_smoothing": 0.1,
        "data.batch_size": 128, "data.image_size": 224, "data.cutout": 0, "data.crop_padding": 0, "data.hflip": True,
        "data.color_jitter": [0.4, 0.4, 0.4, 0.2],
        "channels_last": False, "amp": "off", "tf32": False, "deterministic": False, "compile": False,
    },
}

# DESIGN.md: for each recipe, (regex locating its sentence, {dotted key: regex of the number in that sentence}).
_C_LAYERS = {"network.C": r"C=(\d+), \d+ cells", "network.layers": r"C=\d+, (\d+) cells"}
_ROBUST = r"evaluation uses C=(?P<c10>\d+) / (?P<l10>\d+) cells on CIFAR-10 and C=(?P<c100>\d+) / (?P<l100>\d+) cells"
_CIFAR_SENTENCE = (r"DARTS CIFAR recipe (.*?)\. ImageNet", {
    **_C_LAYERS,
    "regularization.auxiliary_weight": r"auxiliary head \(weight ([\d.]+)\)",
    "data.cutout": r"cutout (\d+)",
    "regularization.drop_path": r"drop-path ([\d.]+)",
    "epochs": r"(\d+) epochs",
    "data.batch_size": r"batch (\d+)",
    "optimizer.lr": r"SGD ([\d.]+) cosine",
    "optimizer.momentum": r"momentum ([\d.]+)",
    "optimizer.weight_decay": r"wd ([\d.e-]+)",
    "optimizer.grad_clip": r"grad clip ([\d.]+)",
})
DESIGN_SPECS: dict[str, list[tuple[str, dict[str, str]]]] = {
    "darts_cifar": [_CIFAR_SENTENCE],
    # the s1-s4 sizes; the rest is "as darts_cifar" (test_robustdarts_recipes_train_as_darts)
    "robustdarts_cifar10": [(f"({_ROBUST})", {"network.C": r"C=(\d+) / \d+ cells on CIFAR-10",
                                               "network.layers": r"C=\d+ / (\d+) cells on CIFAR-10"})],
    "robustdarts_cifar100_svhn": [(f"({_ROBUST} on CIFAR-100 and SVHN)", {
        "network.C": r"C=(\d+) / \d+ cells on CIFAR-100 and SVHN",
        "network.layers": r"C=\d+ / (\d+) cells on CIFAR-100 and SVHN"})],
    "darts_imagenet": [
        (r"ImageNet \(mobile setting, < 600M multiply-adds\): (.*?)\. Search", {
            **_C_LAYERS,
            "epochs": r"(\d+) epochs",
            "regularization.label_smoothing": r"label smoothing ([\d.]+)",
            "regularization.auxiliary_weight": r"auxiliary ([\d.]+)",
        }),
        (r"Training: (.*?) \(DARTS\)", {
            "epochs": r"(\d+) epochs",
            "data.batch_size": r"batch (\d+)",
            "optimizer.lr": r"SGD lr ([\d.]+)",
            "optimizer.gamma": r"decay ([\d.]+) per epoch",
            "optimizer.momentum": r"momentum ([\d.]+)",
            "optimizer.weight_decay": r"wd ([\d.e-]+)",
            "regularization.label_smoothing": r"label smoothing ([\d.]+)",
            "regularization.auxiliary_weight": r"auxiliary ([\d.]+)",
            "optimizer.grad_clip": r"grad clip ([\d.]+)",
        }),
    ],
}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _design_text() -> str:
    """The quoted design-page sentences as one text (`DESIGN_SENTENCES`)."""
    return " | ".join(DESIGN_SENTENCES)


# ------------------------------------------------------------------------------------------------- registry
def test_registry():
    assert list_recipes() == ["darts_cifar", "robustdarts_cifar10", "robustdarts_cifar100_svhn", "darts_imagenet"]
    assert set(EXPECTED) == set(RECIPES) == set(DESIGN_SPECS), "every recipe needs a transcribed and a DESIGN entry"
    with pytest.raises(KeyError, match="valid recipes: darts_cifar, robustdarts_cifar10, "
                                       "robustdarts_cifar100_svhn, darts_imagenet"):
        get_recipe("darts_cifar100")
    with pytest.raises(KeyError, match="unknown recipe"):
        unsupported_keys("nope")


def test_get_recipe_returns_a_copy():
    recipe = get_recipe("darts_cifar")
    recipe["network"]["C"] = 1
    recipe["epochs"] = 1
    assert get_recipe("darts_cifar")["network"]["C"] == 36 and RECIPES["darts_cifar"]["epochs"] == 600


# ------------------------------------------------------------------------------------------------- values
@pytest.mark.parametrize("name", list_recipes())
def test_recipe_values_transcribed(name):
    """Every value of every preset, exactly (no key more, no key less)."""
    recipe = get_recipe(name)
    source = recipe.pop("source")
    assert _flatten(recipe) == EXPECTED[name]
    assert isinstance(source, str) and re.search(r"(ICLR|ICML) 20\d\d", source) and "section" in source.lower()


@pytest.mark.parametrize("name", list_recipes())
def test_recipe_values_match_design(name):
    """The numbers of the recipe sentences of DESIGN.md 3 and 4 (`DESIGN_SENTENCES`) equal the preset's."""
    text = _design_text()
    flat = _flatten(get_recipe(name))
    for sentence_pattern, fields in DESIGN_SPECS[name]:
        m = re.search(sentence_pattern, text)
        assert m, f"{name}: no sentence matching {sentence_pattern!r} in DESIGN.md"
        sentence = m.group(1)
        for key, pattern in fields.items():
            found = re.search(pattern, sentence)
            assert found, f"{name}.{key}: {pattern!r} not in DESIGN.md sentence {sentence!r}"
            assert float(found.group(1)) == float(flat[key]), (
                f"{name}.{key} = {flat[key]!r} but DESIGN.md says {found.group(1)} in {sentence!r}")


def test_robustdarts_recipes_train_as_darts():
    """Only the network size differs from the DARTS CIFAR recipe (DESIGN.md 4)."""
    darts = _flatten(get_recipe("darts_cifar"))
    for name in ("robustdarts_cifar10", "robustdarts_cifar100_svhn"):
        flat = _flatten(get_recipe(name))
        differ = {k for k in darts if flat[k] != darts[k]}
        assert differ <= {"network.C", "network.layers", "source"}, (name, differ)


HOW_IT_COMPUTES = ("amp", "channels_last", "tf32", "deterministic", "compile")
"""`train` keys that say how the training computes, not what: not part of a paper's recipe."""


def test_darts_cifar_equals_paper_config():
    """`configs/paper.yaml`'s train block is the DARTS CIFAR recipe, computed in bf16 autocast and channels-last
    (a GPU config; IEEE float32 outside autocast, cuDNN autotuning)."""
    path = ROOT / "configs" / "paper.yaml"
    if not path.is_file():
        pytest.skip("configs/paper.yaml not found")
    recipe = get_recipe("darts_cifar")
    recipe.pop("source")
    train = yaml.safe_load(path.read_text(encoding="utf-8"))["train"]
    assert {k: train.get(k, False) for k in HOW_IT_COMPUTES} == {"amp": "bf16", "channels_last": True, "tf32": False,
                                                                 "deterministic": False, "compile": False}
    assert {k: v for k, v in train.items() if k not in HOW_IT_COMPUTES} == {
        k: v for k, v in recipe.items() if k not in HOW_IT_COMPUTES}


# ------------------------------------------------------------------------------------------------- config
#: TrainConfig keys the CIFAR recipes leave out (the ImageNet recipe's), at their defaults: what DARTS CIFAR does.
IMAGENET_KEYS_AT_DEFAULT = {"network.kind": "cifar", "optimizer.schedule": "cosine", "optimizer.gamma": 0.97,
                            "data.color_jitter": None}


@pytest.mark.parametrize("name", list_recipes())
def test_recipe_is_a_train_block(name):
    """Each preset has the keys of a `train` block and is a valid TrainConfig (no key needs config support any
    more); a key it leaves out is one of the ImageNet keys, at the default that means the CIFAR recipe."""
    recipe = get_recipe(name)
    recipe.pop("source")
    assert set(recipe) == set(TrainConfig.model_fields)
    assert unsupported_keys(name) == [] and NEEDS_CONFIG_SUPPORT == ()
    config = parse_config(TrainConfig, recipe, "train")
    dumped = _flatten(config.model_dump(mode="json"))
    served = {k: dumped.pop(k) for k in ("data.on_device", "data.num_workers")}  # how batches are made, not what
    assert served == {"data.on_device": "auto", "data.num_workers": "auto"}
    given = _flatten(recipe)
    assert {k: v for k, v in dumped.items() if k not in given} == {
        k: v for k, v in IMAGENET_KEYS_AT_DEFAULT.items() if k not in given}
    assert {k: dumped[k] for k in given} == given


def test_cifar_recipes_need_no_new_config():
    for name in ("darts_cifar", "robustdarts_cifar10", "robustdarts_cifar100_svhn"):
        assert unsupported_keys(name) == []


# ------------------------------------------------------------------------------------------------- networks
@pytest.mark.parametrize("name,num_classes", [("darts_cifar", 10), ("robustdarts_cifar10", 10),
                                              ("robustdarts_cifar100_svhn", 100), ("darts_imagenet", 1000)])
def test_recipe_builds_its_network(name, num_classes):
    """The preset's network block builds the right final network (kind "cifar" unless it says otherwise), with the
    golden DARTS_V2 parameter counts where they are published (3,349,342 at C=36/20 cells; 4,718,752 ImageNet)."""
    n = get_recipe(name)["network"]
    kind = n.get("kind", "cifar")
    torch.manual_seed(0)
    net = create_final_network(PUBLISHED_GENOTYPES["darts_v2"], n["C"], n["layers"], num_classes, n["auxiliary"], 3,
                               n["stem_stride"], kind=kind)
    assert isinstance(net, FinalNetworkImageNet if kind == "imagenet" else FinalNetwork)
    golden = {"darts_cifar": 3_349_342, "robustdarts_cifar10": 3_349_342, "darts_imagenet": 4_718_752}
    if name in golden:
        assert count_parameters(net) == golden[name]
    net.eval()
    with torch.no_grad():
        logits, aux = net(torch.zeros(1, 3, 32, 32))
    assert logits.shape == (1, num_classes) and aux is None


def test_recipes_are_selectable_from_params():
    """`train.recipe` / `benchmarks.<name>.train.recipe` name a preset; keys beside it override it."""
    from itnas.params import Params

    def train_config(params: dict, benchmark: str):
        return Params.from_dict(params).train_config(benchmark)

    bench = {"label": "b", "evaluation": "train", "data": {}, "search": {}, "train": {"recipe": "darts_cifar",
                                                                                    "epochs": 3}}
    params = {"train": {"epochs": 2, "network": {"C": 8}}, "benchmarks": {"b": bench}}
    cfg = train_config(params, "b")
    recipe = get_recipe("darts_cifar")
    assert cfg.epochs == 3 and cfg.network.C == recipe["network"]["C"] == 36  # the shared block is replaced
    assert cfg.regularization.drop_path == recipe["regularization"]["drop_path"]
    params = {"train": {"recipe": "robustdarts_cifar100_svhn", "epochs": 7}, "benchmarks": {"b": {**bench,
                                                                                            "train": {}}}}
    cfg = train_config(params, "b")
    assert (cfg.epochs, cfg.network.C, cfg.network.layers) == (7, 16, 8)
    imagenet_like = {**bench, "data": {"dataset": "imagefolder"}, "train": {}}  # colour jitter: streamed files only
    cfg = train_config({"train": {"recipe": "darts_imagenet", "epochs": 2}, "benchmarks": {"b": imagenet_like}}, "b")
    assert (cfg.epochs, cfg.network.kind, cfg.optimizer.schedule, cfg.optimizer.gamma) == (2, "imagenet",
                                                                                           "exponential", 0.97)
    assert (cfg.regularization.label_smoothing, cfg.data.color_jitter) == (0.1, (0.4, 0.4, 0.4, 0.2))
    with pytest.raises(ConfigError, match="unknown recipe; valid recipes: darts_cifar"):
        train_config({"train": {"recipe": "dart"}, "benchmarks": {"b": {**bench, "train": {}}}}, "b")


def test_paper_config_is_a_valid_params_file():
    """`cp configs/paper.yaml params.yaml && dvc repro` (README) starts: the whole file validates as params, with
    benchmarks and runs, and its float32 search (a GPU job)."""
    from itnas.params import load_params

    params = load_params(ROOT / "configs" / "paper.yaml")
    chains = params.chains()
    assert {b for b, _, _ in chains} == {"cifar10"} and len(chains) == 15
    cfg = params.search_config("cifar10", "itnas", 0)
    assert (cfg.precision.dtype, cfg.base, cfg.data.batch_size, cfg.supernet.C, cfg.supernet.layers) == (
        "float32", "pcdarts", 256, 16, 8)
    for device in ("cpu", "cuda"):  # dtype auto with amp bf16: float32 weights on any device (no GPU needed)
        p = params.search_config("cifar10", "darts", 0, device).precision
        assert (p.amp, p.dtype, p.channels_last, p.tf32, p.deterministic) == ("bf16", "float32", False, False, False)
    nb = params.search_config("nb201", "darts", 0)
    assert (nb.supernet.space, nb.supernet.C, nb.supernet.layers) == ("nb201", 16, 5)
