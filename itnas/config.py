"""Typed, strict configuration (pydantic): an unknown key or a wrong type is an error naming the key.

The stage commands build these from `params.yaml`; the resolved config is stored in every checkpoint and
written beside every output, so that a checkpoint alone rebuilds its model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .arch import list_methods
from .spaces import list_spaces

__all__ = ["ConfigError", "DataConfig", "DeriveConfig", "EvalConfig", "SearchConfig", "TrainConfig", "parse_config"]


class ConfigError(ValueError):
    """Invalid parameters; the message names every bad key, its value and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Data preparation. Sizes are numbers of images; 0 = all."""

    dataset: Literal["fashion_mnist", "digits"] = "fashion_mnist"
    root: str = "data/raw"
    download: bool = False
    search_train_size: int = Field(5000, ge=1)
    search_val_size: int = Field(5000, ge=1)
    train_size: int = Field(0, ge=0)
    test_size: int = Field(0, ge=0)
    split_seed: int = 0


class SearchConfig(_Strict):
    """Supernet search (DESIGN.md 2-3). Defaults are the DARTS-base paper values.

    image_size: resize search images to this side (px) to save time; 0 keeps the data's size.
    """

    method: str = "itnas"
    space: str = "darts"
    base: Literal["auto", "darts", "pcdarts"] = "auto"
    seed: int = 0
    C: int = Field(16, ge=1)
    layers: int = Field(8, ge=1)
    partial_k: int = Field(4, ge=1)
    image_size: int = Field(0, ge=0)
    epochs: int = Field(50, ge=1)
    warmup_epochs: int = Field(0, ge=0)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(0.025, gt=0)
    lr_min: float = Field(0.001, ge=0)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(3e-4, ge=0)
    grad_clip: float = Field(5.0, gt=0)
    arch_lr: float = Field(3e-4, gt=0)
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = Field(1e-3, ge=0)
    order: Literal["first", "second"] = "first"
    alpha_init_scale: float = Field(1e-3, ge=0)
    transition_init: Literal["uniform", "identity"] = "uniform"
    transition_gamma: float = 1.0
    track_running_stats: bool = True
    val_every: int = Field(1, ge=0)

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        if v not in list_methods():
            raise ValueError(f"unknown method {v!r}; valid methods: {', '.join(list_methods())}")
        return v

    @field_validator("space")
    @classmethod
    def _space(cls, v: str) -> str:
        if v not in list_spaces():
            raise ValueError(f"unknown space {v!r}; valid spaces: {', '.join(list_spaces())}")
        return v


class DeriveConfig(_Strict):
    mode: Literal["marginal", "sequential"] = "marginal"


class TrainConfig(_Strict):
    """Final training from scratch (DARTS CIFAR recipe, DESIGN.md 3, except the sizes).

    image_size: resize training and test images to this side (px) to save time; 0 keeps the data's size.
    stem_stride: stride of the stem convolution (DARTS CIFAR: 1; 2 makes every cell ~4x cheaper).
    channels_last: train in the channels-last memory format (faster depthwise convolutions on CPU).
    """

    C: int = Field(36, ge=1)
    layers: int = Field(20, ge=1)
    image_size: int = Field(0, ge=0)
    stem_stride: int = Field(1, ge=1, le=2)
    epochs: int = Field(600, ge=1)
    batch_size: int = Field(96, ge=1)
    lr: float = Field(0.025, gt=0)
    lr_min: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(3e-4, ge=0)
    grad_clip: float = Field(5.0, gt=0)
    auxiliary: bool = True
    auxiliary_weight: float = Field(0.4, ge=0)
    drop_path: float = Field(0.2, ge=0, lt=1)
    cutout: int = Field(16, ge=0)
    crop_padding: int = Field(4, ge=0)
    hflip: bool = True
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    channels_last: bool = False


class EvalConfig(_Strict):
    batch_size: int = Field(500, ge=1)


def parse_config(cls: type[_Strict], data: dict | None, where: str) -> _Strict:
    """Validate `data` into `cls`; raise ConfigError naming `where.key`, the bad value and the valid choices."""
    try:
        return cls.model_validate(data or {})
    except ValidationError as err:
        lines = []
        for e in err.errors():
            key = ".".join([where, *map(str, e["loc"])])
            if e["type"] == "extra_forbidden":
                lines.append(f"{key}: unknown key; valid keys: {', '.join(cls.model_fields)}")
            else:
                lines.append(f"{key}={e.get('input')!r}: {e['msg']}")
        raise ConfigError("invalid parameters:\n  " + "\n  ".join(lines)) from None
