"""One side of a side-by-side benchmark (`itnas_bench.benchmark.run_side_by_side`, `itnas bench --against PATH`):
times the search steps (or the final train step) of one checkout in a fresh process and prints one line
``SIDE_RESULT {json}``.

Run as ``python -m itnas_bench.side_worker ARGS_JSON`` with the side's checkout as the working directory (`-m` puts
it first on `sys.path`), so that `itnas` and the harness are that checkout's: a checkout that has `itnas_bench/`
runs its own copy of this worker; an older one (its harness in `pipeline/benchmark.py`) runs this one, found on
PYTHONPATH, which then imports that checkout's `pipeline.benchmark`. Only the standard library is imported before
the side's root is first on the path.

ARGS_JSON keys: root (the checkout), threads, kind ("search" or "final"), batch_size, image_size, in_channels,
num_classes, precision (the non-default keys of SearchBenchSpec / FinalBenchSpec only: an old checkout has no
precision fields), warmup (untimed steps), steps (timed steps); search: method, base, C, layers, order, partial_k;
final: final_C, final_layers.

Output: search: {arch_step_ms, weight_step_ms (means over the timed steps), arch_step_ops, weight_step_ops (aten ops
of one more step)}; final: {final_step_ms}.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

RESULT_PREFIX = "SIDE_RESULT "


def harness_module(root: str) -> str:
    """The module of the steppers in checkout `root`: `itnas_bench.benchmark`, or `pipeline.benchmark` in a checkout
    from before the harness left `pipeline/`."""
    return "itnas_bench.benchmark" if (Path(root) / "itnas_bench" / "benchmark.py").is_file() else "pipeline.benchmark"


def _count_ops(fn) -> int:
    """Aten ops dispatched by fn() (inline rather than `itnas.opcount.count_ops`: an old checkout has none)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.n


def measure(args: dict) -> dict[str, float]:
    """Build the side's stepper of `args` (see the module docstring) and time it; its measures."""
    sys.path.insert(0, args["root"])
    import torch

    torch.set_num_threads(args["threads"])
    bench = importlib.import_module(harness_module(args["root"]))
    from itnas.genotype import PUBLISHED_GENOTYPES

    size = {k: args[k] for k in ("batch_size", "image_size", "in_channels", "num_classes")}
    extra = args["precision"]
    dev = torch.device("cpu")
    train, val = bench.random_batches(device=dev, **size)
    if args["kind"] == "search":
        spec = bench.SearchBenchSpec(args["method"], args["base"], args["C"], args["layers"], order=args["order"],
                                     partial_k=args["partial_k"], **size, **extra)
        st = bench.SearchStepper(spec, dev, train, val)
        for _ in range(args["warmup"]):
            st.arch_step()
            st.weight_step()
        arch, weight = [], []
        for _ in range(args["steps"]):
            t0 = time.perf_counter()
            st.arch_step()
            t1 = time.perf_counter()
            st.weight_step()
            t2 = time.perf_counter()
            arch.append((t1 - t0) * 1e3)
            weight.append((t2 - t1) * 1e3)
        return {"arch_step_ms": sum(arch) / len(arch), "weight_step_ms": sum(weight) / len(weight),
                "arch_step_ops": _count_ops(st.arch_step), "weight_step_ops": _count_ops(st.weight_step)}
    spec = bench.FinalBenchSpec(PUBLISHED_GENOTYPES["darts_v2"], args["final_C"], args["final_layers"], **size,
                                **extra)
    st = bench.FinalStepper(spec, dev, train)
    for _ in range(args["warmup"]):
        st.step()
    times = []
    for _ in range(args["steps"]):
        t0 = time.perf_counter()
        st.step()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"final_step_ms": sum(times) / len(times)}


def main(argv: list[str] | None = None) -> None:
    """`python -m itnas_bench.side_worker ARGS_JSON`: print ``SIDE_RESULT {measures}``."""
    argv = sys.argv[1:] if argv is None else argv
    print(RESULT_PREFIX + json.dumps(measure(json.loads(argv[0]))))


if __name__ == "__main__":
    main()
