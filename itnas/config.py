"""Typed, strict configuration (pydantic), nested by concern and validated in one place.

An unknown key, a wrong type or a bad value is a `ConfigError` that names the dotted key, the value and what is
allowed. Cross-field rules (warm-up shorter than the search, channels divisible by the PC-DARTS K, ...) are
validators of the models that hold both fields. Every valid-name list comes from its registry (methods from
`itnas.methods`, spaces from `itnas.spaces`, bases from `itnas.methods.BASES`): defined once.

The resolved config is stored in every checkpoint and beside every output, so a checkpoint alone rebuilds its
model. Defaults are the paper recipes (docs/method.md 4); `params.yaml` shrinks them for the CPU.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import ItnasError
from .methods import (
    BASES,
    DEFAULT_DIRICHLET_ANCHOR,
    DEFAULT_DIRICHLET_KL,
    DEFAULT_TAU_MAX,
    DEFAULT_TAU_MIN,
    DEFAULT_TRANSITION_GAMMA,
    DEFAULT_TRANSITION_INIT,
    get_base,
    get_method,
    list_methods,
)
from .spaces import list_spaces

__all__ = ["AMP_MODES", "ArchOptimizerConfig", "ArchitectureConfig", "ConfigError", "DataConfig", "DeriveConfig",
           "DistributedConfig", "EvalConfig", "PrecisionConfig", "PrecisionWarning", "ScheduleConfig", "SearchConfig",
           "SearchDataConfig", "SGDConfig", "SupernetConfig", "resolve_dtype", "resolve_search_config"]

AMP_MODES = ("off", "bf16", "fp16")
"""Values of `amp` (search.precision.amp, train.amp): off, or autocast to bfloat16 / float16
(`itnas.engine.Precision`)."""
AmpMode = Literal["off", "bf16", "fp16"]


def _amp_off_from_yaml(v: Any) -> Any:
    """YAML 1.1 reads an unquoted `off` as False: take False as "off" (True stays an error naming the choices)."""
    return "off" if v is False else v


class ConfigError(ItnasError, ValueError):
    """Invalid parameters; the message names every bad key, its value and what is allowed."""


class PrecisionWarning(UserWarning):
    """A valid but costly precision choice for the device (float64 on a GPU)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------------------------------------------- data
class DataConfig(_Strict):
    """Data preparation. Sizes are numbers of images; 0 = all.

    target_dataset: transfer (DARTS 3.3): the search runs on `dataset`, the final network is trained and tested on
    this data set instead (train_size / test_size then count its images); None = `dataset` itself.
    """

    dataset: str = "fashion_mnist"
    target_dataset: str | None = None
    root: str = "data/raw"
    download: bool = False
    search_train_size: int = Field(5000, ge=1)
    search_val_size: int = Field(5000, ge=1)
    train_size: int = Field(0, ge=0)
    test_size: int = Field(0, ge=0)
    split_seed: int = 0

    @field_validator("dataset", "target_dataset")
    @classmethod
    def _dataset(cls, v: str | None) -> str | None:
        from .data import list_datasets

        if v is not None and v not in list_datasets():
            raise ValueError(f"unknown dataset {v!r}; valid datasets: {', '.join(list_datasets())}")
        return v


# ----------------------------------------------------------------------------------------------------- search
class SupernetConfig(_Strict):
    """The supernet: search space, base (darts | pcdarts | auto = the method's default), width and depth.

    C: initial channels. layers: cells (DARTS space) or cells per stage (NB201). partial_k: PC-DARTS K (1/K of
    the channels through each mixed op; pcdarts base only). track_running_stats: of the affine-free search BNs.
    """

    space: str = "darts"
    base: str = "auto"
    C: int = Field(16, ge=1)
    layers: int = Field(8, ge=1)
    partial_k: int = Field(4, ge=1)
    track_running_stats: bool = True

    @field_validator("space")
    @classmethod
    def _space(cls, v: str) -> str:
        if v not in list_spaces():
            raise ValueError(f"unknown space {v!r}; valid spaces: {', '.join(list_spaces())}")
        return v

    @field_validator("base")
    @classmethod
    def _base(cls, v: str) -> str:
        if v != "auto" and v not in BASES:
            raise ValueError(f"unknown base {v!r}; valid bases: auto, {', '.join(BASES)}")
        return v


class ArchitectureConfig(_Strict):
    """Initialisation of the architecture parameters (docs/method.md 2.3): a_e ~ alpha_init_scale * N(0, 1);
    transitions Theta = gamma * I (`identity`, matched by op name; the default) or Theta = 0 (`uniform`).

    Why identity, gamma = 2 (measured, docs/method.md 2.3): with uniform rows every inner alpha is uniform
    whatever its predecessors, so the attention and the outer edges get no gradient through the inner edges (the
    attention-logit gradient measured 4e-9 at initialisation, below Adam's eps 1e-8). With gamma * I the
    attention gradient is 2e-6 (gamma 1), 5e-6 (gamma 2), 8e-6 (gamma 3) and the transition-logit gradient peaks
    at gamma 2 (3.5e-3 vs 2.6e-3 at gamma 1, 2.8e-3 at gamma 3; itnas, darts base, C=8, 5 cells, Fashion-MNIST).

    The sampling baselines (docs/method.md 2.12; read by these methods only): `gdas` anneals its Gumbel-softmax
    temperature linearly from tau_max (first epoch) to tau_min (last epoch), defaults 10 and 0.1 (xautodl's GDAS);
    `drnas` adds dirichlet_kl * sum_e KL(Dir(elu(a_e) + 1) || Dir(dirichlet_anchor * 1)) to the architecture loss,
    defaults 1e-3 and 1 (the public DrNAS code's `--reg_scale` and its all-ones anchor; 0 turns the term off).
    """

    alpha_init_scale: float = Field(1e-3, ge=0)
    transition_init: Literal["uniform", "identity"] = DEFAULT_TRANSITION_INIT
    transition_gamma: float = Field(DEFAULT_TRANSITION_GAMMA, gt=0)
    tau_max: float = Field(DEFAULT_TAU_MAX, gt=0)
    tau_min: float = Field(DEFAULT_TAU_MIN, gt=0)
    dirichlet_kl: float = Field(DEFAULT_DIRICHLET_KL, ge=0)
    dirichlet_anchor: float = Field(DEFAULT_DIRICHLET_ANCHOR, gt=0)

    @model_validator(mode="after")
    def _tau_falls(self) -> ArchitectureConfig:
        if self.tau_min > self.tau_max:
            raise ValueError(f"tau_min={self.tau_min} must be <= tau_max={self.tau_max} (the temperature falls)")
        return self


class SGDConfig(_Strict):
    """SGD with momentum, cosine schedule from lr to lr_min over the epochs, gradient-norm clipping."""

    lr: float = Field(0.025, gt=0)
    lr_min: float = Field(0.001, ge=0)
    momentum: float = Field(0.9, ge=0)
    weight_decay: float = Field(3e-4, ge=0)
    grad_clip: float = Field(5.0, gt=0)


class ArchOptimizerConfig(_Strict):
    """Adam on the architecture parameters (search-val split); order: first (grad at w) or second (unrolled)."""

    lr: float = Field(3e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = Field(1e-3, ge=0)
    order: Literal["first", "second"] = "first"


class ScheduleConfig(_Strict):
    """Search epochs; architecture steps start after warmup_epochs; search-val accuracy every val_every epochs
    and at the end (0 = never)."""

    epochs: int = Field(50, ge=1)
    warmup_epochs: int = Field(0, ge=0)
    val_every: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _warmup_shorter(self) -> ScheduleConfig:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs={self.warmup_epochs} must be < epochs={self.epochs}: the search would "
                             f"never update the architecture")
        return self


def _workers(v: int | str) -> int | str:
    """num_workers: "auto" or a count >= 0."""
    if v != "auto" and v < 0:
        raise ValueError("num_workers must be auto or >= 0")
    return v


class SearchDataConfig(_Strict):
    """Search batches: batch_size images (search-train and search-val alike); image_size resizes the search
    images to this side in px (0 keeps the data's size).

    on_device: auto | true | false: a split in RAM (every data set but streamed image files) is uploaded once to the
    run's device and its batches are made there (`itnas.data.DeviceDataset`; docs/method.md 2.10); auto = true on
    CUDA (when the split takes at most a quarter of the free memory), false on a CPU (the per-sample DataLoader).
    num_workers: auto | N: DataLoader worker processes where batches are made by the DataLoader (streamed files, or
    on_device false); auto = 8 on CUDA, 0 on a CPU; on CUDA the loader also pins its batches' memory.
    """

    batch_size: int = Field(64, ge=1)
    image_size: int = Field(0, ge=0)
    on_device: bool | Literal["auto"] = "auto"
    num_workers: int | Literal["auto"] = "auto"

    _num_workers = field_validator("num_workers")(_workers)


class PrecisionConfig(_Strict):
    """How the search computes (docs/method.md 2.8; `itnas.engine.Precision`).

    amp: off | bf16 | fp16: autocast the weight step's forward and loss (fp16 adds a loss scaler, and needs CUDA:
    torch's CPU autocast runs fp16 poorly; CPUs with AVX-512 BF16 run bf16 natively). The architecture step (first
    and second order), the alphas and the architecture parameters and their Adam state stay float32.
    dtype: auto | float32 | float64: of the weights, the architecture and the batches (cast on the device). auto is
    resolved for the run's device by `resolve_dtype` (float64 on a CPU, float32 on a GPU or with amp); a run stores
    and reports the resolved dtype, never "auto". float64 makes a CPU search whose genotype does not depend on float32
    rounding (thread count, CPU type); it is ~2-4x slower on a CPU, slower still on GPUs (an explicit float64 on a
    GPU warns), and excludes amp. Default float32 (the paper recipes; params.yaml says auto).
    channels_last: the supernet and the batches in the channels-last memory format (faster on CPU and with amp on
    GPUs; the CPU batch norm then sums its statistics less accurately: docs/method.md 2.8).
    tf32: CUDA only: let float32 matmuls and convolutions use TF32 tensor cores (10-bit mantissa). Default false:
    float32 means IEEE float32 (`itnas.engine.Precision.configure_backends`).
    deterministic: CUDA only: deterministic algorithms (cuDNN autotuning off); default false: cuDNN benchmarks its
    convolution algorithms (faster, not bitwise reproducible).
    """

    amp: AmpMode = "off"
    dtype: Literal["auto", "float32", "float64"] = "float32"
    channels_last: bool = False
    tf32: bool = False
    deterministic: bool = False

    _amp_off = field_validator("amp", mode="before")(_amp_off_from_yaml)

    @model_validator(mode="after")
    def _amp_needs_float32(self) -> PrecisionConfig:
        if self.amp != "off" and self.dtype == "float64":
            raise ValueError(f"amp={self.amp!r} autocasts float32 weights; it cannot be combined with "
                             f"dtype={self.dtype!r} (use amp: off with float64)")
        return self


class SearchConfig(_Strict):
    """One search run (docs/method.md 2-4). `method` and `seed` are set by the run, the rest by params.

    compile: run the weight step's forward (the supernet's network) through torch.compile, with static shapes: the
    search-train tail batch shorter than batch_size is dropped and the search-val batches of an epoch all have one
    size (`itnas.search.even_batches(equal=True)`: up to n_batches - 1 search-val samples wait for another epoch).
    false (default): eager, and the batches of every run without it.
    """

    method: str = "itnas"
    seed: int = 0
    supernet: SupernetConfig = SupernetConfig()
    architecture: ArchitectureConfig = ArchitectureConfig()
    weight_optimizer: SGDConfig = SGDConfig()
    arch_optimizer: ArchOptimizerConfig = ArchOptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    data: SearchDataConfig = SearchDataConfig()
    precision: PrecisionConfig = PrecisionConfig()
    compile: bool = False

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        if v not in list_methods():
            raise ValueError(f"unknown method {v!r}; valid methods: {', '.join(list_methods())}")
        return v

    @property
    def base(self) -> str:
        """The resolved base ("darts" or "pcdarts"): `supernet.base`, or the method's default for "auto"."""
        b = self.supernet.base
        return get_method(self.method).default_base if b == "auto" else b

    @model_validator(mode="after")
    def _compile_static_sample(self) -> SearchConfig:
        if self.compile and get_method(self.method).sampler == "gumbel":
            raise ConfigError(f"compile=true with method {self.method!r}: its Gumbel-softmax sample (the op chosen on "
                              f"every edge) is a Python value of the compiled forward, so torch.compile would compile "
                              f"again for every new sample; set compile: false for {self.method} (search.compile or "
                              f"methods.{self.method}.compile)")
        return self

    @model_validator(mode="after")
    def _partial_channels(self) -> SearchConfig:
        s = self.supernet
        if get_base(self.base).partial_channels and s.C % s.partial_k:
            raise ValueError(f"supernet.C={s.C} must be divisible by supernet.partial_k={s.partial_k} on the pcdarts "
                             f"base (method {self.method})")
        return self


# ------------------------------------------------------------------------------------------------------ derive
class DeriveConfig(_Strict):
    """Genotype derivation (docs/method.md 2.6)."""

    mode: Literal["marginal", "sequential"] = "marginal"


class EvalConfig(_Strict):
    """How the evaluate stage tests a trained network: batch size (images) and, for streamed image files
    (imagefolder, imagenet), test_resize: the test images' shorter side is resized to test_resize px, then centre
    cropped to the network's image_size (0 = image_size * 256 / 224, e.g. 256 for 224: DARTS cnn/train_imagenet.py;
    must be >= image_size, checked by the evaluate stage). Test-pass settings live here, not in `train`, so that
    changing them re-evaluates without retraining."""

    batch_size: int = Field(500, ge=1)
    test_resize: int = Field(0, ge=0)


# ------------------------------------------------------------------------------------------------ distributed
class DistributedConfig(_Strict):
    """How many processes run a search or a final training (params block `distributed`).

    nproc_per_node: processes per machine (1 = a plain process; N > 1: the stage relaunches itself under
    `torchrun --nproc_per_node=N`); nnodes: machines (> 1 needs rdzv_endpoint "host:port" reachable from all of
    them, torchrun's c10d rendezvous, and the same command started on each); backend: auto (nccl on CUDA, gloo on
    CPU), gloo or nccl; sync_batchnorm: synchronise batch-norm statistics over ranks (CUDA only), else each rank
    keeps its own (DDP's default).
    """

    nproc_per_node: int = Field(1, ge=1)
    nnodes: int = Field(1, ge=1)
    rdzv_endpoint: str = ""
    backend: str = Field("auto", pattern="^(auto|gloo|nccl)$")
    sync_batchnorm: bool = False

    @property
    def world_size(self) -> int:
        """Processes in all: nproc_per_node x nnodes."""
        return self.nproc_per_node * self.nnodes

    @model_validator(mode="after")
    def _rendezvous(self) -> DistributedConfig:
        if self.nnodes > 1 and ":" not in self.rdzv_endpoint:
            raise ConfigError(f"distributed.nnodes={self.nnodes} needs distributed.rdzv_endpoint 'host:port' "
                              f"(torchrun's rendezvous, reachable from every node), got {self.rdzv_endpoint!r}")
        return self


# ------------------------------------------------------------------------------------------------------ helpers
def _device_type(device: Any) -> str:
    """"cpu", "cuda", ... of a torch.device or a device string ("cuda:1" -> "cuda"), without importing torch."""
    return getattr(device, "type", None) or str(device).split(":", 1)[0]


def resolve_dtype(dtype: str, amp: str, device: Any, key: str = "search.precision.dtype") -> str:
    """The concrete dtype ("float32" | "float64") of a `PrecisionConfig.dtype` for a run on `device` (a torch.device
    or a string such as "cpu", "cuda:0"; nothing is checked on the machine: this is pure config resolution).

    auto: float32 with amp (autocast needs float32 weights); else float64 on a CPU (the CPU default: the genotype
    does not depend on the thread count, docs/method.md 2.8) and float32 on any other device (GPUs run float64 at
    1/2 (H100) to 1/64 (consumer cards) of their float32 rate, and without tensor cores). An explicit float64 on a
    device other than a CPU is kept, with a `PrecisionWarning` naming `key`.
    """
    kind = _device_type(device)
    if dtype == "auto":
        return "float32" if amp != "off" or kind != "cpu" else "float64"
    if dtype == "float64" and kind != "cpu":
        warnings.warn(f"{key}='float64' on {kind}: float64 is slow on GPUs (no tensor cores; 1/2 to 1/64 of the "
                      f"float32 rate); it is meant for CPU searches. Use dtype: auto (float32 on {kind}), with "
                      f"amp: bf16 for speed", PrecisionWarning, stacklevel=2)
    return dtype


def resolve_search_config(cfg: SearchConfig, device: Any) -> SearchConfig:
    """`cfg` with `precision.dtype` resolved for `device` (`resolve_dtype`: auto -> float64 on a CPU, float32 on a
    GPU or with amp; an explicit float64 on a GPU warns). What a run stores in its identity and outputs, so a CPU
    run of `dtype: auto` is the same run as one of `dtype: float64`. `cfg` itself when nothing changes."""
    p = cfg.precision
    dtype = resolve_dtype(p.dtype, p.amp, device)
    if dtype == p.dtype:
        return cfg
    return cfg.model_copy(update={"precision": p.model_copy(update={"dtype": dtype})})
