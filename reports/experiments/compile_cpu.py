"""Eager vs torch.compile'd weight step of the search on this CPU, side by side (issue 16, part 2).

The weight step (`itnas.search.weight_step`: forward, loss, backward, clipping, SGD) of the CPU default supernet
(params.yaml: itnas, darts base, C=8, 5 cells, 14x14 images, batch 64; dtype float64, the CPU default, unless
--dtype), once eager and once with the network's forward through `itnas.engine.compile_forward` (inductor, static
shapes), on two copies of one model and the same batches. The compile time is the first compiled step's wall time
minus a compiled step's median (inductor cache in a fresh temporary folder: a cold compile). Then `--rounds` rounds,
each timing `--steps` eager steps and `--steps` compiled steps in turn (the order alternates between rounds), so that
load from other processes falls on both; every per-step time is kept, and the medians are reported, with the load
average before, between and after. Writes reports/experiments/compile_cpu.json.

    python reports/experiments/compile_cpu.py [--dtype float64|float32] [--rounds 5] [--steps 10]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).with_name("compile_cpu.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="inductor-cold-"))

    import torch

    from itnas.config import SearchConfig
    from itnas.engine import compile_forward
    from itnas.search import build_search_model, make_search_optimizers, weight_step

    load = {"start": os.getloadavg()}
    cfg = SearchConfig.model_validate({"method": "itnas", "supernet": {"base": "darts", "C": 8, "layers": 5},
                                       "precision": {"dtype": args.dtype}, "data": {"batch_size": 64}})
    torch.manual_seed(0)
    eager = build_search_model(cfg, 10, 1)
    compiled = copy.deepcopy(eager)
    net = compile_forward(compiled.net)
    opt_e, _ = make_search_optimizers(eager, cfg)
    opt_c, _ = make_search_optimizers(compiled, cfg)
    dtype = getattr(torch, args.dtype)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(64, 1, 14, 14, generator=g, dtype=dtype), torch.randint(0, 10, (64,), generator=g))
               for _ in range(4)]
    clip = cfg.weight_optimizer.grad_clip

    def steps(model, opt, n, **kw) -> list[float]:
        times = []
        for k in range(n):
            t0 = time.perf_counter()
            weight_step(model, opt, batches[k % len(batches)], clip, **kw)
            times.append(time.perf_counter() - t0)
        return times

    t0 = time.perf_counter()
    loss_c, _ = weight_step(compiled, opt_c, batches[0], clip, net=net)
    first_compiled = time.perf_counter() - t0
    loss_e, _ = weight_step(eager, opt_e, batches[0], clip)
    load["after_compile"] = os.getloadavg()
    eager_t, compiled_t, order = [], [], []
    for r in range(args.rounds):
        pair = [("eager", lambda: steps(eager, opt_e, args.steps)),
                ("compiled", lambda: steps(compiled, opt_c, args.steps, net=net))]
        for name, run in (pair if r % 2 == 0 else pair[::-1]):
            (eager_t if name == "eager" else compiled_t).append(run())
            order.append(name)
    load["end"] = os.getloadavg()
    med_e = statistics.median(t for r in eager_t for t in r)
    med_c = statistics.median(t for r in compiled_t for t in r)
    result = {
        "what": "itnas.search.weight_step (forward, loss, backward, clip, SGD), eager vs the network forward through "
                "torch.compile (itnas.engine.compile_forward: inductor, dynamic=False)",
        "config": {"method": "itnas", "base": "darts", "C": 8, "layers": 5, "image": [1, 14, 14], "batch": 64,
                   "dtype": args.dtype, "channels_last": False},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "python": platform.python_version()},
        "load_average_1_5_15": load,
        "compile_s": first_compiled - med_c,
        "first_compiled_step_s": first_compiled,
        "median_step_s": {"eager": med_e, "compiled": med_c},
        "speedup_compiled_over_eager": med_e / med_c,
        "round_medians_s": {"eager": [statistics.median(r) for r in eager_t],
                            "compiled": [statistics.median(r) for r in compiled_t]},
        "round_order": order,
        "steps_per_round": args.steps,
        "first_step_loss": {"eager": loss_e.item(), "compiled": loss_c.item(),
                            "abs_diff": abs(loss_e.item() - loss_c.item())},
        "break_even_steps": (first_compiled - med_c) / (med_e - med_c) if med_e > med_c else None,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
