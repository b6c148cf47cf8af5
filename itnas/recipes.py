"""Named final-training recipes: the published settings as presets (docs/method.md 4.1, 4.3, 4.4).

Each preset is a dict shaped like the `train` block of params.yaml (`itnas.train_config.TrainConfig`: epochs, network{C,
layers, stem_stride, auxiliary[, kind]}, optimizer{lr, lr_min, momentum, weight_decay, grad_clip[, schedule,
gamma]}, regularization{auxiliary_weight, drop_path, label_smoothing}, data{batch_size, image_size, cutout,
crop_padding, hflip[, color_jitter]}; a key left out takes TrainConfig's default), channels_last, amp,
tf32, deterministic, compile: how it computes, not part of the papers' recipes, at the float32 defaults) plus
"source", a string naming the paper, its section and the reference code. Units: epochs, images per batch, learning
rates per step, pixels (cutout side, crop padding, image side).

Presets (`RECIPES`; `get_recipe(name)` returns a copy, `list_recipes()` the names):

- `darts_cifar`: DARTS CIFAR-10 evaluation (Liu et al., DARTS, ICLR 2019, section 3 architecture evaluation and
  appendix; DARTS repo cnn/train.py): C=36, 20 cells, 600 epochs, batch 96, SGD 0.025 cosine to 0, momentum 0.9,
  wd 3e-4, grad clip 5, auxiliary 0.4, drop-path 0.2, cutout 16, random crop (padding 4), horizontal flip.
- `robustdarts_cifar10`: spaces s1-s4 on CIFAR-10 (Zela et al., RobustDARTS, ICLR 2020; Chen & Hsieh, SDARTS,
  ICML 2020): C=36, 20 cells, the rest as `darts_cifar`.
- `robustdarts_cifar100_svhn`: s1-s4 on CIFAR-100 and SVHN (same papers): C=16, 8 cells, the rest as
  `darts_cifar`, horizontal flips included also for SVHN: RobustDARTS' own SVHN transform (repo automl/RobustDARTS,
  src/utils.py `_data_transforms_svhn`) is RandomCrop(32, padding 4) + RandomHorizontalFlip, as for CIFAR, although
  flipping digits is unusual elsewhere. (Its evaluation script, scripts/DARTS_eval.sh, passes --cutout --auxiliary,
  so both are on, as here; it leaves the width at the argument defaults 16 channels / 8 cells for every data set;
  the C=36 / 20 cells of CIFAR-10 follow docs/method.md 4.1 and the papers' reported evaluation.)
- `darts_imagenet`: the DARTS ImageNet mobile setting (DARTS section 3, ImageNet transfer; DARTS repo
  cnn/train_imagenet.py): network kind "imagenet" (`itnas.networks.FinalNetworkImageNet`), C=48, 14 cells, 250 epochs,
  batch 128, SGD lr 0.1 decayed by 0.97 after every epoch, momentum 0.9, wd 3e-5, grad clip 5, label smoothing 0.1
  (main and auxiliary loss, as train_imagenet.py's CrossEntropyLabelSmooth), auxiliary 0.4, 224 px images: training
  random resized crop 224 + flip + ColorJitter(0.4, 0.4, 0.4, 0.2); drop-path 0
  (train_imagenet.py's default; the paper names none); no cutout or crop padding; stem_stride 1 (the ImageNet stem has
  a fixed stride of 8; the network rejects any other value). Its test images (resize 256 + centre crop 224) are
  the evaluate stage's default (`evaluate.test_resize: 0` = image_size * 256 / 224 = 256 px at 224 px), a test-pass
  setting outside the `train` block, so the recipe has no key for them.

Keys beyond the CIFAR recipes (`darts_imagenet`), all `TrainConfig` keys now:

- `network.kind`: "imagenet" (final-network macro, `itnas.networks.FINAL_NETWORK_KINDS`).
- `optimizer.schedule`: "exponential" with `optimizer.gamma`: 0.97, the learning rate multiplied by gamma after
  every epoch (`itnas.train.final_lr`; PyTorch StepLR(step_size=1, gamma=0.97); lr_min unused).
- `data.color_jitter`: [brightness, contrast, saturation, hue] = [0.4, 0.4, 0.4, 0.2] (torchvision ColorJitter, as
  train_imagenet.py).
  The random resized crop (RandomResizedCrop(image_size) + flip) is how every streamed data set (ImageFolder trees:
  imagenet, imagefolder) is cut for training (`itnas.data.ImageDataset`), so it needs no key; colour jitter applies
  to streamed data sets only (the train stage refuses it for a data set in RAM).

`unsupported_keys(name)` lists the keys of a preset that the current TrainConfig does not know (none today; the
params refuse a recipe that has some).
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import UnknownNameError

__all__ = ["NEEDS_CONFIG_SUPPORT", "RECIPES", "get_recipe", "list_recipes", "unsupported_keys"]

_DARTS_CIFAR: dict[str, Any] = {
    "epochs": 600,
    "network": {"C": 36, "layers": 20, "stem_stride": 1, "auxiliary": True},
    "optimizer": {"lr": 0.025, "lr_min": 0.0, "momentum": 0.9, "weight_decay": 3e-4, "grad_clip": 5.0},
    "regularization": {"auxiliary_weight": 0.4, "drop_path": 0.2, "label_smoothing": 0.0},
    "data": {"batch_size": 96, "image_size": 0, "cutout": 16, "crop_padding": 4, "hflip": True},
    "channels_last": False,
    "amp": "off",
    "tf32": False,
    "deterministic": False,
    "compile": False,
}


def _with(base: dict[str, Any], source: str, epochs: int | None = None, **blocks: dict[str, Any]) -> dict[str, Any]:
    """`base` with another number of epochs and some keys of its blocks replaced or added, and a source."""
    out = copy.deepcopy(base)
    if epochs is not None:
        out["epochs"] = epochs
    for block, values in blocks.items():
        out[block].update(values)
    out["source"] = source
    return out


RECIPES: dict[str, dict[str, Any]] = {
    "darts_cifar": _with(
        _DARTS_CIFAR,
        "Liu et al., DARTS, ICLR 2019, section 3 (architecture evaluation on CIFAR-10) and appendix; DARTS repo "
        "cnn/train.py defaults"),
    "robustdarts_cifar10": _with(
        _DARTS_CIFAR,
        "Zela et al., RobustDARTS, ICLR 2020 (spaces S1-S4, evaluation on CIFAR-10) and Chen & Hsieh, SDARTS, ICML "
        "2020: C=36, 20 cells; training as DARTS (Liu et al., ICLR 2019, section 3)",
        network={"C": 36, "layers": 20}),
    "robustdarts_cifar100_svhn": _with(
        _DARTS_CIFAR,
        "Zela et al., RobustDARTS, ICLR 2020 (spaces S1-S4, evaluation on CIFAR-100 and SVHN) and Chen & Hsieh, "
        "SDARTS, ICML 2020: C=16, 8 cells; training as DARTS (Liu et al., ICLR 2019, section 3); SVHN flips as "
        "RobustDARTS src/utils.py",
        network={"C": 16, "layers": 8}),
    "darts_imagenet": _with(
        _DARTS_CIFAR,
        "Liu et al., DARTS, ICLR 2019, section 3 (ImageNet transfer, mobile setting: < 600M multiply-adds at "
        "224x224); DARTS repo cnn/train_imagenet.py and cnn/model.py NetworkImageNet",
        epochs=250,
        network={"C": 48, "layers": 14, "stem_stride": 1, "auxiliary": True, "kind": "imagenet"},
        optimizer={"lr": 0.1, "lr_min": 0.0, "momentum": 0.9, "weight_decay": 3e-5, "grad_clip": 5.0,
                   "schedule": "exponential", "gamma": 0.97},
        regularization={"auxiliary_weight": 0.4, "drop_path": 0.0, "label_smoothing": 0.1},
        data={"batch_size": 128, "image_size": 224, "cutout": 0, "crop_padding": 0, "hflip": True,
              "color_jitter": [0.4, 0.4, 0.4, 0.2]}),
}
"""Named final-training presets (the `train` block of params.yaml plus "source"); see the module docstring."""

NEEDS_CONFIG_SUPPORT: tuple[str, ...] = ()
"""Dotted preset keys that TrainConfig cannot express (none: the ImageNet keys are config keys now)."""


def list_recipes() -> list[str]:
    """Names of the registered recipes, in registration order."""
    return list(RECIPES)


def get_recipe(name: str) -> dict[str, Any]:
    """A deep copy of recipe `name` (editing it leaves the registry unchanged).

    Raises:
        KeyError: unknown name; the message lists the valid names.
    """
    if name not in RECIPES:
        raise UnknownNameError(f"unknown recipe {name!r}; valid recipes: {', '.join(RECIPES)}")
    return copy.deepcopy(RECIPES[name])


def unsupported_keys(name: str) -> list[str]:
    """Dotted keys of recipe `name` (besides "source") that the current `itnas.train_config.TrainConfig` does not
    define, i.e. the values a training run built from the preset's `train` block would reject today. Computed against
    the config's fields, so a key disappears from this list once the config supports it.

    Raises:
        KeyError: unknown recipe name.
    """
    from .config_parse import unknown_keys
    from .train_config import TrainConfig

    recipe = get_recipe(name)
    recipe.pop("source")
    return [key for key, _ in unknown_keys(TrainConfig, recipe)]
