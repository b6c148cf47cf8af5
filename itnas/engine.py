"""The one epoch loop that both the search and the final training run on.

A `Task` says what one step does (the search: an architecture step on search-val then a weight step on
search-train; the final training: one SGD step with the auxiliary loss); the engine does everything around it:

- the learning rate of every epoch (cosine annealing, `cosine_lr`),
- resume from a full-state checkpoint (task state, history, elapsed seconds, every RNG), written atomically
  after every epoch and refused when it belongs to another run (`identity`),
- running loss / accuracy sums kept on the device (`RunningMetrics`: one host sync per epoch, not per step),
- a divergence guard: the steps flag a non-finite loss, gradient norm or architecture parameter on the device
  (`RunningMetrics.check_finite`); the engine reads the flags a few times per epoch (`CHECKS_PER_EPOCH`), and at
  the epoch's end also checks the statistics and every tensor of the task's state (batch-norm running statistics
  go infinite while the loss stays finite); it stops with `NonFiniteError` (run, epoch, step) before that epoch
  is checkpointed,
- progress callbacks that read the loss on the host at most every `progress_interval_s` seconds,
- `stop_after_epochs` (an interruption on purpose: tests, budgets).

`evaluate` is the one evaluation loop (search-val accuracy during the search, test accuracy of the final network).

`Precision` is how both tasks compute (docs/method.md 2.8), written once here: autocast (`amp`: bf16 or fp16) around
a step's forward and loss, the fp16 loss scaler (its state is part of the task's checkpointed state), the dtype
(float32 or float64) and the memory format (channels-last or contiguous) of the model and of every batch, cast on
the device, and on CUDA the backend policy (TF32, cuDNN autotuning, determinism) that a run sets when it starts
(`Precision.configure_backends`; nothing is set at import).

Data-parallel runs (`itnas.distributed.DistContext` of several torchrun processes): every rank runs the same loop on
its shard of each batch (the task's business: DDP for weight gradients, `all_reduce_mean_` for architecture
gradients); the engine sums the epoch's running statistics over the ranks, so every rank records the global ones,
lets rank 0 alone write the checkpoint (with every rank's RNG state) and report progress, and resumes every rank
from the same checkpoint, each with its own RNG state.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .config import ConfigError
from .distributed import DistContext, all_gather_objects, all_reduce_sum_

__all__ = ["CHECKS_PER_EPOCH", "EngineResult", "EvalResult", "NonFiniteError", "Precision", "RunningMetrics", "Task",
           "check_amp_device", "compile_forward", "cosine_lr", "cuda_backend_flags", "evaluate", "full_batches",
           "optimizer_kwargs", "restore_cuda_backends", "run_epochs", "set_cuda_backends"]

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int, int, "float | None"], None]

CHECKS_PER_EPOCH = 4
"""How often per epoch (besides its end) the engine reads the divergence flags: each read is one host sync."""


class NonFiniteError(RuntimeError):
    """A run diverged: a loss, gradient norm or parameter became NaN or infinite. The message names the run, the
    quantity, the epoch and step (1-based), and what the checkpoint keeps; `epoch` and `step` are 0-based."""

    def __init__(self, message: str, what: str, epoch: int, step: int):
        super().__init__(message)
        self.what, self.epoch, self.step = what, epoch, step


def optimizer_kwargs() -> dict[str, bool]:
    """How every optimizer of a run steps: `foreach` (multi-tensor ops: a handful of kernels per step on any device,
    the same arithmetic as the per-parameter loop). Not `fused`: with an fp16 `GradScaler`, torch 2.14's fused SGD
    allocates its momentum buffers uninitialised and skips an overflowing first step inside the kernel, leaving
    garbage momentum (reproduced on CPU); and a checkpoint's param_groups carry the flag to the resumed run."""
    return {"foreach": True}


def cosine_lr(lr: float, lr_min: float, epoch: int, epochs: int) -> float:
    """Learning rate of `epoch` under cosine annealing from lr to lr_min over `epochs` (PyTorch CosineAnnealingLR
    with T_max=epochs, closed form; the schedule of DARTS search and training, Liu et al. 2019 section 3)."""
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2


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


class RunningMetrics:
    """Per-stream running sums on the device: loss (float64, nats x samples), correct predictions (int64) and the
    sample count (host int). `summary()` is a host sync: `{stream}_loss` (nats) and `{stream}_acc` (%).

    Divergence flags: `check_finite(what, *tensors)` records on the device, without a host sync, the first step
    (`step`, set by the engine before each step) at which one of the tensors held a NaN or an infinity;
    `first_nonfinite()` reads the flags (one host sync)."""

    def __init__(self, device: torch.device):
        self.device = device
        self._loss: dict[str, torch.Tensor] = {}
        self._correct: dict[str, torch.Tensor] = {}
        self._n: dict[str, int] = {}
        self._first_bad: dict[str, torch.Tensor] = {}  # what -> () int64 on the device: first bad step, -1 = none
        self.last_loss: torch.Tensor | None = None
        self.step = 0

    def add(self, stream: str, loss_sum: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Add one batch: loss_sum () summed over the batch, logits (B, classes), y (B,)."""
        self.ensure(stream)
        self._loss[stream] += loss_sum.double()
        self._correct[stream] += (logits.argmax(1) == y).sum()
        self._n[stream] += len(y)

    def check_finite(self, what: str, *values: torch.Tensor) -> None:
        """Flag the current step when any element of `values` (tensors of any shape, on the device) is NaN or
        infinite. A few small device ops, no host sync; the first flagged step per `what` is kept."""
        finite = [v.detach().isfinite().all() for v in values]
        ok = finite[0] if len(finite) == 1 else torch.stack(finite).all()
        first = self._first_bad.get(what)
        if first is None:
            first = torch.full((), -1, dtype=torch.int64, device=ok.device)
        self._first_bad[what] = torch.where(ok | (first >= 0), first, self.step)

    def first_nonfinite(self) -> tuple[str, int] | None:
        """(what, step) of the earliest flagged step (ties: the first `what` checked), or None. One host sync."""
        if not self._first_bad:
            return None
        steps = torch.stack([t.to(self.device) for t in self._first_bad.values()]).tolist()
        bad = [(s, k, what) for k, (what, s) in enumerate(zip(self._first_bad, steps, strict=True)) if s >= 0]
        if not bad:
            return None
        s, _, what = min(bad)
        return what, s

    def ensure(self, stream: str) -> None:
        """Create `stream` with zero sums if it does not exist (so that every rank all-reduces the same streams,
        also a rank that saw no sample of it)."""
        if stream not in self._loss:
            self._loss[stream] = torch.zeros((), dtype=torch.float64, device=self.device)
            self._correct[stream] = torch.zeros((), dtype=torch.int64, device=self.device)
            self._n[stream] = 0

    def all_reduce_(self, ctx: DistContext) -> None:
        """Sum every stream's loss, correct count and sample count over the ranks (in place; one all-reduce of a
        float64 (3,) tensor per stream, exact for counts below 2^53; no-op for one process). Every rank must have
        the same streams (`ensure`)."""
        if not ctx.enabled:
            return
        for stream in sorted(self._loss):
            packed = torch.stack([self._loss[stream], self._correct[stream].double(),
                                  torch.tensor(float(self._n[stream]), dtype=torch.float64, device=self.device)])
            all_reduce_sum_([packed], ctx)
            self._loss[stream] = packed[0].clone()
            self._correct[stream] = packed[1].round().long()
            self._n[stream] = int(packed[2].item())

    def count(self, stream: str) -> int:
        """Samples seen by `stream` (0 when it saw none)."""
        return self._n.get(stream, 0)

    def summary(self, stream: str) -> dict[str, float]:
        """{stream_loss: mean loss (nats), stream_acc: accuracy (%)}; empty when the stream saw no sample."""
        n = self._n.get(stream, 0)
        if not n:
            return {}
        return {f"{stream}_loss": self._loss[stream].item() / n,
                f"{stream}_acc": 100.0 * self._correct[stream].item() / n}


class Task(Protocol):
    """What the engine trains. `batches(epoch)` is called once per epoch (after `set_lr`) and returns a sized
    iterable; `step(batch, metrics)` runs one step and adds to `metrics` (stream "train" at least; it sets
    `metrics.last_loss` for progress); `epoch_stats(epoch, metrics)` returns the epoch's statistics (in record
    order, evaluations included); `record(rec)` may extend the finished record (alphas, genotype, ...)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def set_lr(self, lr: float) -> None: ...

    def batches(self, epoch: int) -> Iterable: ...

    def step(self, batch: Any, metrics: RunningMetrics) -> None: ...

    def epoch_stats(self, epoch: int, metrics: RunningMetrics) -> dict[str, Any]: ...

    def record(self, rec: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class EngineResult:
    """history: one record per epoch; time_s: wall seconds of all epochs (a resumed run adds up its parts)."""

    history: list[dict] = field(default_factory=list)
    time_s: float = 0.0


class _Progress:
    """Calls on_step at every step, with the loss read on the host at most every `interval_s` seconds (None in
    between), and always at the epoch's last step."""

    def __init__(self, on_step: StepCallback | None, interval_s: float):
        self.on_step, self.interval_s, self._last = on_step, interval_s, -math.inf

    def __call__(self, epoch: int, step: int, n_steps: int, loss: torch.Tensor | None) -> None:
        if self.on_step is None:
            return
        now = time.perf_counter()
        value = None
        if loss is not None and (now - self._last >= self.interval_s or step == n_steps):
            value, self._last = float(loss.item()), now
        self.on_step(epoch, step, n_steps, value)


def run_epochs(task: Task, lr: float, lr_min: float, epochs: int, device: torch.device,
               checkpoint_path: str | Path | None = None, identity: dict | None = None,
               stop_after_epochs: int | None = None, on_step: StepCallback | None = None,
               on_epoch: Callable[[dict], None] | None = None, progress_interval_s: float = 0.25,
               name: str = "run", ctx: DistContext | None = None) -> EngineResult:
    """Run `task` for `epochs` epochs (cosine lr from `lr` to `lr_min`), resuming from `checkpoint_path`.

    Args:
        task: the step function and its state (see `Task`).
        identity: what makes the run (resolved config, data fingerprint); stored in the checkpoint, and a
            checkpoint of another identity is refused.
        stop_after_epochs: stop (as if interrupted) after this many epochs in total.
        on_step(epoch, step, n_steps, loss or None): progress; the loss (nats) is read at most every
            `progress_interval_s` seconds. on_epoch(record): after each epoch's checkpoint.
        name: the run in error messages (e.g. "search (itnas, seed 0)").
        ctx: the process's place in a data-parallel run (default: one process). With several, every rank calls
            this with its own task; statistics are summed over ranks, rank 0 writes the checkpoint and calls
            on_step / on_epoch, and all ranks resume from the checkpoint file (which they must all see).

    Returns:
        EngineResult: records {epoch, lr, **task.epoch_stats, time_s (s), **task.record}.

    Raises:
        CheckpointError: the checkpoint is unreadable or of another identity.
        NonFiniteError: a step flagged a non-finite value (`RunningMetrics.check_finite`), or the epoch's
            statistics or the task's state (weights, buffers, optimizer moments) hold one at the epoch's end; raised
            before the epoch is checkpointed, so the checkpoint keeps the last good epoch.
    """
    identity = identity or {}
    ctx = ctx or DistContext()
    if not ctx.is_main:
        on_step = on_epoch = None
    result = EngineResult()
    start = 0
    resume = checkpoint_path is not None and Path(checkpoint_path).exists()
    if ctx.enabled:  # rank 0 decides (every rank must see its checkpoint file: a shared folder on several nodes)
        resume = all_gather_objects(resume, ctx)[0]
    if resume:
        ck = load_checkpoint(checkpoint_path, identity)
        task.load_state_dict(ck["state"])
        result.history, start, result.time_s = ck["history"], ck["epoch"], ck["time_s"]
        ranks = ck.get("rng_ranks")
        restore_rng(ranks[ctx.rank] if ranks is not None and len(ranks) == ctx.world_size else ck["rng"])
        log.info("resumed from %s at epoch %d", checkpoint_path, start)
    progress = _Progress(on_step, progress_interval_s)
    end = epochs if stop_after_epochs is None else min(epochs, stop_after_epochs)
    for epoch in range(start, end):
        t0 = time.perf_counter()
        epoch_lr = cosine_lr(lr, lr_min, epoch, epochs)
        task.set_lr(epoch_lr)
        batches = task.batches(epoch)
        n_steps = len(batches) if isinstance(batches, Sized) else 0
        metrics = RunningMetrics(device)
        check_every = max(1, -(-n_steps // CHECKS_PER_EPOCH)) if n_steps else 64
        for step, batch in enumerate(batches):
            metrics.step = step
            task.step(batch, metrics)
            if (step + 1) % check_every == 0:
                _stop_if_nonfinite(metrics, name, epoch, epochs, n_steps, checkpoint_path, ctx)
            progress(epoch, step + 1, n_steps, metrics.last_loss)
        _stop_if_nonfinite(metrics, name, epoch, epochs, n_steps, checkpoint_path, ctx)
        metrics.all_reduce_(ctx)
        rec = {"epoch": epoch, "lr": epoch_lr, **task.epoch_stats(epoch, metrics)}
        bad = [k for k, v in rec.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise NonFiniteError(f"{name} diverged: non-finite {', '.join(bad)} at the end of epoch {epoch + 1} of "
                                 f"{epochs}; {_kept(checkpoint_path, epoch)}", bad[0], epoch, n_steps)
        rec["time_s"] = time.perf_counter() - t0
        result.time_s += rec["time_s"]
        rec = task.record(rec)
        state = task.state_dict()
        bad_tensor = _first_nonfinite_tensor(state)
        if bad_tensor is not None:
            raise NonFiniteError(f"{name} diverged: non-finite value in {bad_tensor} at the end of epoch {epoch + 1} "
                                 f"of {epochs}; {_kept(checkpoint_path, epoch)}", bad_tensor, epoch, n_steps)
        result.history.append(rec)
        if checkpoint_path is not None:
            rng = all_gather_objects(capture_rng(), ctx)
            if ctx.is_main:
                save_checkpoint(checkpoint_path, {"config": identity, "epoch": epoch + 1, "state": state,
                                                  "history": result.history, "time_s": result.time_s,
                                                  "rng": rng[0], **({"rng_ranks": rng} if ctx.enabled else {})})
            ctx.barrier()
        if on_epoch is not None:
            on_epoch(rec)
    return result


def _kept(checkpoint_path: str | Path | None, epoch: int) -> str:
    """What survives a divergence in `epoch` (0-based): the checkpoint of the epochs before it, if any."""
    advice = "lower the learning rate or the gradient clip"
    if checkpoint_path is None or not epoch:
        return f"nothing was saved; {advice}"
    return f"{checkpoint_path} keeps the last good epoch ({epoch}); {advice}"


def _tensors(obj: Any, prefix: str = "") -> Iterable[tuple[str, torch.Tensor]]:
    """(dotted name, tensor) of every floating-point tensor in a nested state dict (dicts, lists, tuples)."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() or obj.is_complex():
            yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list | tuple):
        for k, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))


def _first_nonfinite_tensor(state: dict[str, Any]) -> str | None:
    """The name of the first tensor of `state` (weights, buffers such as batch-norm running statistics, optimizer
    moments) holding a NaN or an infinity, or None. One host sync (once per epoch, before the checkpoint)."""
    named = list(_tensors(state))
    if not named:
        return None
    flags = torch.stack([t.detach().isfinite().all().to(named[0][1].device) for _, t in named]).tolist()
    return next((name for (name, _), ok in zip(named, flags, strict=True) if not ok), None)


def _stop_if_nonfinite(metrics: RunningMetrics, name: str, epoch: int, epochs: int, n_steps: int,
                       checkpoint_path: str | Path | None, ctx: DistContext) -> None:
    """Read the divergence flags (one host sync); raise NonFiniteError naming the first bad step. With several
    processes the first bad step is agreed over the ranks (an all-reduce MIN), so that every rank stops, not only
    the one whose shard diverged (the others would wait in the next collective forever)."""
    found = metrics.first_nonfinite()
    if ctx.enabled:
        never = torch.iinfo(torch.int64).max
        first = torch.tensor([never if found is None else found[1]], dtype=torch.int64, device=metrics.device)
        dist.all_reduce(first, op=dist.ReduceOp.MIN)
        if int(first) == never:
            return
        if found is None or found[1] != int(first):
            found = ("value on another process", int(first))
    if found is None:
        return
    what, step = found
    of = f" of {n_steps}" if n_steps else ""
    raise NonFiniteError(f"{name} diverged: non-finite {what} at epoch {epoch + 1} of {epochs}, step {step + 1}{of}; "
                         f"{_kept(checkpoint_path, epoch)}", what, epoch, step)


@dataclass
class EvalResult:
    """loss: mean cross-entropy (nats); accuracy (%); n: samples; predictions / labels (N,) int64 on the CPU
    when collected, else None."""

    loss: float
    accuracy: float
    n: int
    predictions: torch.Tensor | None = None
    labels: torch.Tensor | None = None


@torch.no_grad()
def evaluate(forward: Callable[[torch.Tensor], torch.Tensor], loader: Iterable, device: torch.device,
             collect: bool = False, ctx: DistContext | None = None) -> EvalResult:
    """The one evaluation loop: `forward(x (B, C, H, W)) -> logits (B, classes)` over `loader` batches
    (x, y, index). The caller sets eval mode. Sums stay on the device (one host sync at the end). With `ctx` of
    several processes, each rank's loader holds its share of the data and the sums are added over the ranks
    (`RunningMetrics.all_reduce_`): every rank gets the result over the whole data.

    Raises:
        ValueError: the loader yields no sample, or `collect` with several processes (predictions stay per rank).
    """
    ctx = ctx or DistContext()
    if collect and ctx.enabled:
        raise ValueError("evaluate: collect=True needs one process (evaluate on rank 0)")
    metrics = RunningMetrics(device)
    metrics.ensure("eval")  # a rank whose share is empty still takes part in the all-reduce
    preds, labels = [], []
    for x, y, _ in loader:
        x, y = x.to(device), y.to(device)
        logits = forward(x)
        metrics.add("eval", F.cross_entropy(logits, y, reduction="sum"), logits, y)
        if collect:
            preds.append(logits.argmax(1).cpu())
            labels.append(y.cpu())
    metrics.all_reduce_(ctx)
    n = metrics.count("eval")
    if not n:
        raise ValueError("evaluate: the loader yielded no sample")
    s = metrics.summary("eval")
    return EvalResult(s["eval_loss"], s["eval_acc"], n, torch.cat(preds) if collect else None,
                      torch.cat(labels) if collect else None)


# ------------------------------------------------------------------------------- compiled steps (static shapes)
def compile_forward(module: nn.Module) -> Callable:
    """`module`'s forward through torch.compile (static shapes: `dynamic=False`), as a callable only: the run keeps
    checkpointing `module` itself, so the state_dict keys stay those of the eager module (the compiled wrapper's
    own state_dict would prefix every key with `_orig_mod.`). Inductor compiles on the first call (minutes for a
    large network; on a CPU it needs a C++ compiler); a call with a new input shape, dtype or memory format, or in
    the other train/eval mode, compiles again: the compiled runs keep every step's shapes equal (`full_batches`,
    `itnas.search.even_batches(equal=True)`)."""
    return torch.compile(module, dynamic=False)


class _FirstBatches:
    """The first `n` batches of a sized iterable (a loader), as a sized iterable."""

    def __init__(self, batches: Iterable, n: int):
        self.batches, self.n = batches, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        it = iter(self.batches)
        for _ in range(self.n):
            yield next(it)


def full_batches(batches: Iterable, n_samples: int, batch_size: int, world_size: int = 1) -> Iterable:
    """Only the full batches of an epoch's loader over `n_samples` (global batches of world_size x batch_size; each
    rank's shard of a full one is exactly batch_size): a compiled step sees one input shape, the tail batch shorter
    than batch_size is dropped (those samples wait for another epoch's permutation). `batches` itself when it has no
    tail.

    Raises:
        ValueError: fewer samples than one full batch.
    """
    n = n_samples // (batch_size * world_size)
    if not n:
        raise ValueError(f"a compiled run drops partial batches: {n_samples} samples make no full batch of "
                         f"{batch_size * world_size}; lower the batch size or turn compile off")
    return batches if isinstance(batches, Sized) and len(batches) == n else _FirstBatches(batches, n)
