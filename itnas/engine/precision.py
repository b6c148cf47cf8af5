"""How a run computes (docs/method.md 2.8), written once for the search and the final training.

`Precision`: autocast (`amp`: bf16 or fp16) around a step's forward and loss, the fp16 loss scaler (its state is part
of the task's checkpointed state), the dtype (float32 or float64) and the memory format (channels-last or contiguous)
of the model and of every batch, cast on the device, and on CUDA the backend policy (TF32, cuDNN autotuning,
determinism) that a run sets when it starts (`Precision.configure_backends`; nothing is set at import).
`check_amp_device` refuses an amp type the device cannot run.
"""


from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

import torch
import torch.nn as nn

from ..config import ConfigError

__all__ = ["AMP_DTYPES", "DTYPES", "Precision", "check_amp_device", "cuda_backend_flags", "restore_cuda_backends",
           "set_cuda_backends"]

log = logging.getLogger(__name__)

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def check_amp_device(amp: str, device: torch.device | str, key: str) -> None:
    """Raise ConfigError naming `key` when `amp` cannot run on `device`: fp16 needs CUDA (torch's CPU autocast has
    slow fp16 kernels, and the loss scaler exists for GPUs); bf16 needs a CUDA device that supports it (compute
    capability 8.0 or newer) or a CPU (AVX-512 BF16 or AMX run it natively; others emulate it, slowly)."""
    device = torch.device(device)
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError(f"{key}='fp16' needs a CUDA device, got {device}: use bf16 (CPU autocast) or off")
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{key}='bf16' needs a GPU with bfloat16 support ({torch.cuda.get_device_name(device)} "
                          f"has none): use fp16 or off")


def cuda_backend_flags() -> dict[str, bool]:
    """The process-wide CUDA backend flags that `set_cuda_backends` sets (readable without a GPU)."""
    return {"matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled()}


def restore_cuda_backends(flags: dict[str, bool]) -> None:
    """Set the flags of a `cuda_backend_flags()` dict (undo `set_cuda_backends`)."""
    torch.backends.cuda.matmul.allow_tf32 = flags["matmul_allow_tf32"]
    torch.backends.cudnn.allow_tf32 = flags["cudnn_allow_tf32"]
    torch.backends.cudnn.benchmark = flags["cudnn_benchmark"]
    torch.backends.cudnn.deterministic = flags["cudnn_deterministic"]
    torch.use_deterministic_algorithms(flags["deterministic_algorithms"], warn_only=flags["deterministic_warn_only"])


def set_cuda_backends(tf32: bool = False, deterministic: bool = False) -> dict[str, bool]:
    """Set the CUDA backend policy of a run (process-wide flags; see `Precision`); returns the previous flags.

    tf32: float32 matmuls (cuBLAS) and convolutions (cuDNN) may use TF32 tensor cores; False (the default) means
    IEEE float32 for both (torch's own default allows TF32 in cuDNN convolutions, so it is set explicitly).
    deterministic: cuDNN picks deterministic algorithms without autotuning (`cudnn.deterministic`, benchmark off)
    and `torch.use_deterministic_algorithms(True, warn_only=True)` (an op without a deterministic version warns);
    CUBLAS_WORKSPACE_CONFIG=:4096:8 is set unless the environment has it (deterministic cuBLAS; it takes effect when
    set before the process's first cuBLAS call, which a run's start is). False: cuDNN benchmarks the algorithms of
    every new input shape (`cudnn.benchmark`; faster, results may differ in the last bits from run to run).
    """
    before = cuda_backend_flags()
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    return before


class Precision:
    """How a run computes: autocast, dtype and memory format, the fp16 loss scaler, and on CUDA the backend policy
    (docs/method.md 2.8).

    Args:
        device: where the run computes (autocast's device type; where batches go).
        amp: "off", "bf16" or "fp16": `autocast()` runs the step's forward and loss under torch.autocast in that
            type (weights, gradients and optimizer state stay float32). fp16 adds a `torch.amp.GradScaler`: the
            loss is scaled before backward, the gradients unscaled before clipping, and a step with an inf/NaN
            gradient is skipped (the scale is halved); its state is in `state_dict()`.
        dtype: "float32" or "float64": of the model (`prepare`) and of every floating-point batch (`batch`). A
            config's "auto" is resolved before (`itnas.config.resolve_dtype`).
        channels_last: model and 4-d batches in the channels-last memory format.
        tf32, deterministic: the CUDA backend policy, set by `configure_backends()` when a run starts (search and
            final training), never at import:
            - TF32: float32 means IEEE float32 unless `tf32` is True. Both `torch.backends.cuda.matmul.allow_tf32`
              and `torch.backends.cudnn.allow_tf32` are set to `tf32` (torch's default allows TF32 in cuDNN
              convolutions but not in matmuls). Under bf16/fp16 autocast this concerns only what stays float32
              (the architecture step, the alphas).
            - cuDNN autotuning: `torch.backends.cudnn.benchmark = True` (the DARTS networks have a few fixed input
              shapes), unless `deterministic`: then benchmark off, `cudnn.deterministic = True` and
              `torch.use_deterministic_algorithms(True, warn_only=True)`.
            On a CPU `configure_backends` changes nothing.

    With the defaults every method is a no-op (no cast, no copy, no context): a float32 run computes exactly what
    it computed before precision existed. fp16 on a CPU is refused by `check_amp_device`, not here (tests run the
    scaler on CPU).
    """

    def __init__(self, device: torch.device | str = "cpu", amp: str = "off", dtype: str = "float32",
                 channels_last: bool = False, tf32: bool = False, deterministic: bool = False):
        if amp not in ("off", *AMP_DTYPES):
            raise ValueError(f"amp must be off, {', '.join(AMP_DTYPES)}; got {amp!r}")
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)} (resolve a config's auto with "
                             f"itnas.config.resolve_dtype); got {dtype!r}")
        if amp != "off" and dtype != "float32":
            raise ValueError(f"amp={amp!r} needs dtype float32, got {dtype!r}")
        self.device, self.amp, self.dtype = torch.device(device), amp, DTYPES[dtype]
        self.channels_last, self.tf32, self.deterministic = channels_last, tf32, deterministic
        self.scaler = torch.amp.GradScaler(self.device.type) if amp == "fp16" else None

    def __repr__(self) -> str:
        return (f"Precision(device={str(self.device)!r}, amp={self.amp!r}, dtype={str(self.dtype)[6:]!r}, "
                f"channels_last={self.channels_last}, tf32={self.tf32}, deterministic={self.deterministic})")

    def configure_backends(self) -> dict[str, bool] | None:
        """Set the CUDA backend policy (class docstring; `set_cuda_backends`) when the device is CUDA, and return
        the previous flags (`restore_cuda_backends` undoes it); on any other device change nothing and return None.
        Called by `itnas.search.run_search` and `itnas.train.train_final` when the run starts; the flags stay set
        afterwards (an evaluation that follows in the same process computes under the same policy)."""
        if self.device.type != "cuda":
            return None
        before = set_cuda_backends(self.tf32, self.deterministic)
        log.info("CUDA backends: %s, cuDNN %s", "TF32 allowed" if self.tf32 else "IEEE float32 (TF32 off)",
                 "deterministic" if self.deterministic else "benchmark (autotuned)")
        return before

    @property
    def is_default(self) -> bool:
        """amp off, float32, contiguous: nothing to do."""
        return self.amp == "off" and self.dtype == torch.float32 and not self.channels_last

    def prepare(self, model: nn.Module) -> nn.Module:
        """Convert `model` in place to the dtype and memory format (returned for chaining; untouched by default)."""
        if self.dtype != torch.float32:
            model.to(dtype=self.dtype)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """x on the device, in the dtype (floating-point x only) and memory format (4-d x only); x itself when
        nothing changes."""
        dtype = self.dtype if x.is_floating_point() else None
        if self.channels_last and x.dim() == 4:
            return x.to(self.device, dtype, non_blocking=True, memory_format=torch.channels_last)
        return x.to(self.device, dtype, non_blocking=True)

    def autocast(self) -> contextlib.AbstractContextManager:
        """torch.autocast in the amp type, or a context that does nothing (amp off)."""
        if self.amp == "off":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.amp])

    def backward(self, loss: torch.Tensor) -> None:
        """loss.backward(), the loss scaled first under fp16."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide the gradients of `optimizer`'s parameters by the loss scale (fp16; before clipping)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """optimizer.step(); under fp16 skipped when a gradient is inf/NaN, and the scale updated."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    @property
    def skips_overflow(self) -> bool:
        """An inf/NaN gradient is expected now and then (fp16 loss scaling): the step is skipped, not a divergence."""
        return self.scaler is not None

    def state_dict(self) -> dict[str, Any]:
        """{"scaler": GradScaler state} under fp16, else {} (nothing to resume)."""
        return {} if self.scaler is None else {"scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()`'s output (the scaler's scale and growth tracker)."""
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
