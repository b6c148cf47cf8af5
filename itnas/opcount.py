"""Counting the aten ops a piece of code dispatches (the unit of kernel launches in eager mode).

In eager PyTorch every dispatched aten op is at least one kernel launch on a GPU (views excepted), so the count per
search step bounds how fast a launch-bound step can run (issue 16: ~5-10 us per launch). `count_ops(fn)` runs fn
under a `TorchDispatchMode` and returns the count of every op, the same way on CPU and GPU.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["OpCounter", "count_ops"]


class OpCounter(TorchDispatchMode):
    """A dispatch mode that counts every aten op called under it (forward, autograd backward, optimizer), by name
    (`counts`: op overload name -> calls). `total` is the number of dispatched ops."""

    def __init__(self):
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def count_ops(fn: Callable[[], Any]) -> tuple[int, Counter[str]]:
    """(total aten ops dispatched by fn(), per-op counts). fn runs once, for real (its side effects happen)."""
    with OpCounter() as counter:
        fn()
    return counter.total, counter.counts
