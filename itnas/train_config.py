"""Typed configuration of the final training (params block `train`, deep-merged with `benchmarks.<name>.train`;
DARTS CIFAR recipe, Liu et al. 2019 section 3.3; docs/method.md 4): the network's size, the optimizer and its
schedule, the regularisation and the batches. Strict like every config (`itnas.config`: an unknown key or a bad
value is a `ConfigError` naming the key); the shared pieces (SGD, amp, workers) are `itnas.config`'s.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from .config import AmpMode, SGDConfig, _amp_off_from_yaml, _Strict, _workers

__all__ = ["FinalNetworkKind", "NetworkConfig", "RegularizationConfig", "TrainConfig",
           "TrainDataConfig", "TrainSGDConfig"]

#: Values of `train.network.kind`: the keys of `itnas.networks.FINAL_NETWORK_KINDS` (a literal here, so that the
#: config does not import the networks; tests/test_imagefolder.py checks that the two agree).
FinalNetworkKind = Literal["cifar", "imagenet"]


class NetworkConfig(_Strict):
    """The final network's size and layout (DARTS CIFAR: C=36, 20 cells, stem stride 1, auxiliary head).

    stem_stride: 2 halves H and W before the first cell (~4x cheaper cells; the CPU defaults use it).
    kind: the macro network (`itnas.networks.FINAL_NETWORK_KINDS`): "cifar" (DARTS NetworkCIFAR, the default) or
    "imagenet" (DARTS NetworkImageNet: two stride-2 stems, stride 8 before the first cell, for 224 px images;
    stem_stride must be 1 there, the network says so otherwise).
    """

    C: int = Field(36, ge=1)
    layers: int = Field(20, ge=1)
    stem_stride: int = Field(1, ge=1, le=2)
    auxiliary: bool = True
    kind: FinalNetworkKind = "cifar"


class RegularizationConfig(_Strict):
    """Auxiliary-loss weight, drop-path probability (reached linearly by the last epoch), label smoothing."""

    auxiliary_weight: float = Field(0.4, ge=0)
    drop_path: float = Field(0.2, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)


class TrainDataConfig(_Strict):
    """Final-training batches and augmentation (DARTS CIFAR: crop padding 4, flips, cutout 16 px).

    image_size: resize training and test images to this side in px (0 keeps the data's size).
    on_device, num_workers: as in `SearchDataConfig` (training batches; on the device, the crop, flip and cutout are
    computed per batch there, with DeVries' cutout: `itnas.data.augment`); num_workers also serves the evaluate
    stage's test loader.

    Streamed image files (imagefolder, imagenet) are cut ImageNet style instead (`itnas.data.ImageDataset`; DARTS
    cnn/train_imagenet.py): training images by a random resized crop to image_size (scale 0.08-1) + flip (hflip),
    crop_padding unused; test images are resized and centre cropped by the evaluate stage (`EvalConfig.test_resize`).
    color_jitter: [brightness, contrast, saturation, hue] of torchvision's
    ColorJitter on the training images (DARTS ImageNet: [0.4, 0.4, 0.4, 0.2]); None = off; streamed files only.
    """

    batch_size: int = Field(96, ge=1)
    image_size: int = Field(0, ge=0)
    cutout: int = Field(16, ge=0)
    crop_padding: int = Field(4, ge=0)
    hflip: bool = True
    on_device: bool | Literal["auto"] = "auto"
    num_workers: int | Literal["auto"] = "auto"
    color_jitter: tuple[float, float, float, float] | None = None

    _num_workers = field_validator("num_workers")(_workers)

    @field_validator("color_jitter")
    @classmethod
    def _jitter(cls, v: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if v is not None and (min(v) < 0 or v[3] > 0.5):
            raise ValueError("color_jitter is [brightness, contrast, saturation, hue], each >= 0 and hue <= 0.5 "
                             "(torchvision ColorJitter)")
        return v


class TrainSGDConfig(SGDConfig):
    """`SGDConfig` of the final training: the cosine schedule ends at lr_min = 0 (DARTS CIFAR recipe).

    schedule: cosine (lr -> lr_min over the epochs, PyTorch CosineAnnealingLR; DARTS CIFAR) or exponential (lr *
    gamma^epoch: the learning rate multiplied by gamma after every epoch, PyTorch StepLR(step_size=1, gamma); DARTS
    ImageNet, gamma 0.97, Liu et al. 2019 appendix A.2; lr_min unused).
    """

    lr_min: float = Field(0.0, ge=0)
    schedule: Literal["cosine", "exponential"] = "cosine"
    gamma: float = Field(0.97, gt=0, le=1)


class TrainConfig(_Strict):
    """Final training from scratch (DARTS CIFAR recipe, Liu et al. 2019 section 3.3; docs/method.md 4).

    channels_last: train in the channels-last memory format (faster depthwise convolutions on CPU).
    amp: off | bf16 | fp16: autocast the forward and loss of every training step (fp16 adds a loss scaler and needs
    CUDA; see `PrecisionConfig` and docs/method.md 2.8). The weights are always float32.
    tf32, deterministic: the CUDA backend policy, as in `PrecisionConfig` (no effect on a CPU).
    compile: run the network's training forward through torch.compile, with static shapes: the tail batch shorter
    than batch_size is dropped every epoch (the drop-path probability is a tensor: no recompilation per epoch).
    false (default): eager, and the batches of every run without it.
    """

    epochs: int = Field(600, ge=1)
    network: NetworkConfig = NetworkConfig()
    optimizer: TrainSGDConfig = TrainSGDConfig()
    regularization: RegularizationConfig = RegularizationConfig()
    data: TrainDataConfig = TrainDataConfig()
    channels_last: bool = False
    amp: AmpMode = "off"
    tf32: bool = False
    deterministic: bool = False
    compile: bool = False

    _amp_off = field_validator("amp", mode="before")(_amp_off_from_yaml)
