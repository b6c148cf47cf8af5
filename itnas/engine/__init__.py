"""The engine both the search and the final training run on, by role:

- `loop`: the one epoch loop (`run_epochs`): a `Task` says what one step does, the loop does the learning rate of
  every epoch, resume from a full-state checkpoint, the divergence guard (`NonFiniteError`), progress and the
  data-parallel bookkeeping;
- `metrics`: running sums on the device (`RunningMetrics`) and the one evaluation loop (`evaluate`);
- `precision`: how a run computes (`Precision`: autocast, dtype, memory format, fp16 loss scaler, CUDA backend
  policy; docs/method.md 2.8);
- `optim`: how every optimizer steps (`optimizer_kwargs`) and the learning rate of each epoch (`cosine_lr`,
  `exponential_lr`);
- `compiled`: compiled forwards with static shapes (`compile_forward`, `full_batches`).

`from itnas.engine import ...` reaches every public name.
"""

from .compiled import compile_forward, full_batches
from .loop import CHECKS_PER_EPOCH, EngineResult, NonFiniteError, StepCallback, Task, run_epochs
from .metrics import EvalResult, RunningMetrics, evaluate
from .optim import cosine_lr, exponential_lr, optimizer_kwargs
from .precision import (
    AMP_DTYPES,
    DTYPES,
    Precision,
    check_amp_device,
    cuda_backend_flags,
    restore_cuda_backends,
    set_cuda_backends,
)

__all__ = ["AMP_DTYPES", "CHECKS_PER_EPOCH", "DTYPES", "EngineResult", "EvalResult", "NonFiniteError", "Precision",
           "RunningMetrics", "StepCallback", "Task", "check_amp_device", "compile_forward", "cosine_lr",
           "exponential_lr",
           "cuda_backend_flags", "evaluate", "full_batches", "optimizer_kwargs", "restore_cuda_backends",
           "run_epochs", "set_cuda_backends"]
