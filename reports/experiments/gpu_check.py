"""The GPU check (issues 11 and 16), one prepared script for one run on a lent H100 / H200: what the GPU
precision of configs/paper.yaml (bf16 autocast, channels-last final training) is to be confirmed by.

Measures at paper size, on random CIFAR-10-sized batches already on the device (no data loading), each as ms per
step, images per second and peak memory (`torch.cuda.max_memory_allocated`, MiB), timed between
`torch.cuda.synchronize()` calls after warm-up steps (cuDNN autotuning and compilation happen there):

1. search step (first-order architecture step on a search-val batch + weight step on a search-train batch, as
   `itnas.search.SearchTask.step`; itnas, DARTS space, C=16, 8 cells, 32x32), darts base batch 64 and pcdarts base
   (K=4) batch 256, eager, in float32 and in bf16 autocast; images/s counts the search-train batch of a step;
2. final-training step (DARTS_V2, C=36, 20 cells, auxiliary head, drop-path 0.1, batch 96): float32, float32 with
   TF32 allowed, bf16, bf16 + channels-last;
3. the search step with the supernet's network `torch.compile`d (`nn.Module.compile`, inductor: both steps run the
   compiled forward), bf16 and float32, pcdarts base first (paper.yaml's itnas): each in a child process with a
   timeout (`--compile-timeout-s`); compile_s = the wall time of the first two steps (the first compiles the
   architecture-step and the weight-step graphs) minus two steady steps. Dynamo traces the whole supernet: on a
   busy 2-core CPU the tiny smoke supernet (3 cells) took 35-50 s to trace (aot_eager), so expect minutes per
   variant at 8 cells;
4. last and optional: a 1-epoch paper-size search (configs/paper.yaml's itnas config on this device: pcdarts base,
   batch 256, bf16; 25,000 + 25,000 random images; warm-up 0 so the architecture step runs; search-val
   evaluation included), in a child process, only when its estimate (from 1.) fits the time left.

Every measurement applies the run's CUDA backend policy (`itnas.engine.Precision.configure_backends`: IEEE float32
unless tf32, cuDNN benchmark). The JSON is rewritten after every measurement (a timeout loses nothing); a failed
measurement records its error and the script goes on. Whatever does not fit `--budget-s` is recorded as skipped.

Usage (repository root, venv active, one CUDA device; ~7 min with the default budget):
    python reports/experiments/gpu_check.py --out $OUT/gpu.json
    python reports/experiments/gpu_check.py --smoke --out /tmp/gpu-smoke.json   # tiny sizes on the CPU, < 60 s
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from itnas.config import SearchConfig  # noqa: E402
from itnas.config_parse import deep_merge  # noqa: E402
from itnas.engine import cuda_backend_flags  # noqa: E402
from itnas.genotype import PUBLISHED_GENOTYPES  # noqa: E402
from itnas.networks import create_final_network  # noqa: E402
from itnas.search import arch_step, build_search_model, make_search_optimizers, search_precision, weight_step  # noqa: E402
from itnas.train import final_train_step, make_final_optimizer, train_precision  # noqa: E402
from itnas.train_config import TrainConfig  # noqa: E402

PAPER = {"C": 16, "layers": 8, "image": 32, "batch": {"darts": 64, "pcdarts": 256}, "final_C": 36,
         "final_layers": 20, "final_batch": 96, "warmup": 3, "steps": 10, "final_steps": 20, "search_images": 25_000}
SMOKE = {"C": 4, "layers": 2, "image": 8, "batch": {"darts": 8, "pcdarts": 8}, "final_C": 4, "final_layers": 3,
         "final_batch": 8, "warmup": 1, "steps": 2, "final_steps": 2, "search_images": 64}
SEARCH_PRECISIONS = {"fp32": "off", "bf16": "bf16"}
FINAL_PRECISIONS = {"fp32": {}, "fp32_tf32": {"tf32": True}, "bf16": {"amp": "bf16"},
                    "bf16_channels_last": {"amp": "bf16", "channels_last": True}}
# in priority order: configs/paper.yaml searches itnas on the pcdarts base in bf16
COMPILED = [("pcdarts", "bf16"), ("darts", "bf16"), ("pcdarts", "fp32"), ("darts", "fp32")]
RESULT = "GPU_CHECK_RESULT "
NUM_CLASSES, IN_CHANNELS = 10, 3


# ------------------------------------------------------------------------------------------------ measurement
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def time_steps(step, n: int, device: torch.device) -> float:
    """Seconds per step over n steps, between two synchronizations."""
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    sync(device)
    return (time.perf_counter() - t0) / n


def batch(n: int, side: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, IN_CHANNELS, side, side, generator=g), torch.randint(0, NUM_CLASSES, (n,), generator=g)


def search_cfg(s: dict, base: str, amp: str) -> SearchConfig:
    """The itnas search config of the step measurements (float32 weights; amp off or bf16)."""
    return SearchConfig.model_validate({
        "method": "itnas", "supernet": {"space": "darts", "base": base, "C": s["C"], "layers": s["layers"],
                                        "partial_k": 4},
        "data": {"batch_size": s["batch"][base]}, "precision": {"amp": amp, "dtype": "float32"}})


def search_step(s: dict, base: str, prec: str, device: torch.device, compile_spec: dict | None = None) -> dict:
    """ms/step, images/s (search-train images) and peak MiB of the search step; with `compile_spec` the supernet's
    network is compiled in place (`nn.Module.compile(**compile_spec)`) and the compile time is reported."""
    cfg = search_cfg(s, base, SEARCH_PRECISIONS[prec])
    precision = search_precision(cfg, device)
    precision.configure_backends()
    torch.manual_seed(0)
    model = build_search_model(cfg, NUM_CLASSES, IN_CHANNELS).to(device)
    precision.prepare(model)
    w_opt, a_opt = make_search_optimizers(model, cfg)
    n = cfg.data.batch_size
    (x, y), (xv, yv) = batch(n, s["image"], 0), batch(n, s["image"], 1)
    x, xv, y, yv = precision.batch(x), precision.batch(xv), y.to(device), yv.to(device)
    w = cfg.weight_optimizer

    def step() -> None:
        arch_step(model, a_opt, (x, y), (xv, yv), "first", w.lr, w_opt, w.weight_decay, w.momentum)
        weight_step(model, w_opt, (x, y), w.grad_clip, precision=precision)

    out: dict[str, Any] = {"base": base, "precision": prec, "batch": n, "compiled": compile_spec is not None}
    reset_memory(device)
    warmup = s["warmup"]
    if compile_spec is not None:
        from torch import _dynamo

        _dynamo.reset()
        model.net.compile(**compile_spec)
        first = [time_steps(step, 1, device) for _ in range(2)]  # the arch-step graph, then the weight-step graph
        out["first_steps_s"] = [round(t, 2) for t in first]
        warmup = max(1, warmup - 2)
    for _ in range(warmup):
        step()
    t = time_steps(step, s["steps"], device)
    out.update(ms_per_step=round(1e3 * t, 2), img_per_s=round(n / t, 1), peak_mib=peak_mib(device), steps=s["steps"])
    if compile_spec is not None:
        out["compile_s"] = round(sum(first) - 2 * t, 2)
        out["compile"] = compile_spec
        try:
            from torch._dynamo.utils import counters

            out["unique_graphs"] = counters["stats"]["unique_graphs"]
            out["graph_breaks"] = dict(counters["graph_break"])
        except Exception:  # noqa: BLE001 - counters are private API: informative only
            pass
    return out


def final_step(s: dict, name: str, device: torch.device) -> dict:
    """ms/step, images/s and peak MiB of the final-training step (DARTS_V2, auxiliary head, drop-path 0.1)."""
    cfg = TrainConfig.model_validate({"network": {"C": s["final_C"], "layers": s["final_layers"]},
                                      "data": {"batch_size": s["final_batch"]}, **FINAL_PRECISIONS[name]})
    precision = train_precision(cfg, device)
    precision.configure_backends()
    torch.manual_seed(0)
    model = create_final_network(PUBLISHED_GENOTYPES["darts_v2"], cfg.network.C, cfg.network.layers, NUM_CLASSES,
                                 True, IN_CHANNELS).to(device)
    precision.prepare(model)
    model.train()
    model.drop_path_prob = cfg.regularization.drop_path / 2  # mid-training
    opt = make_final_optimizer(model, cfg)
    x, y = batch(cfg.data.batch_size, s["image"], 2)
    x, y = precision.batch(x), y.to(device)

    def step() -> None:
        final_train_step(model, opt, (x, y), cfg, precision=precision)

    reset_memory(device)
    for _ in range(s["warmup"]):
        step()
    t = time_steps(step, s["final_steps"], device)
    n = cfg.data.batch_size
    out = {"precision": name, "amp": cfg.amp, "channels_last": cfg.channels_last, "tf32": cfg.tf32, "batch": n,
           "ms_per_step": round(1e3 * t, 2), "img_per_s": round(n / t, 1), "peak_mib": peak_mib(device),
           "steps": s["final_steps"]}
    return out


def random_dataset(n: int, side: int, seed: int):
    from itnas.data import ImageDataset, ImageSplit

    g = torch.Generator().manual_seed(seed)
    split = ImageSplit(torch.randint(0, 256, (n, IN_CHANNELS, side, side), generator=g, dtype=torch.uint8),
                       torch.randint(0, NUM_CLASSES, (n,), generator=g), "train", torch.arange(n))
    return ImageDataset(split, [0.49, 0.48, 0.45], [0.25, 0.24, 0.26])


def one_epoch_search(s: dict, device: torch.device, smoke: bool) -> dict:
    """configs/paper.yaml's itnas search resolved for `device` (`itnas.params.Params.search_config`), 1 epoch, no
    warm-up, on random data: wall time, peak memory, per-step time (search-val evaluation included)."""
    import yaml

    from itnas.params import Params
    from itnas.search import run_search

    params = yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text(encoding="utf-8"))
    cfg = Params.from_dict(params, "configs/paper.yaml").search_config("cifar10", "itnas", 0, device)
    override: dict[str, Any] = {"schedule": {"epochs": 1, "warmup_epochs": 0, "val_every": 1}}
    if smoke:
        override |= {"supernet": {"C": s["C"], "layers": s["layers"]}, "data": {"batch_size": s["batch"]["pcdarts"]}}
    cfg = SearchConfig.model_validate(deep_merge(cfg.model_dump(mode="json"), override))
    n = s["search_images"]
    train, val = random_dataset(n, s["image"], 0), random_dataset(n, s["image"], 1)
    reset_memory(device)
    t0 = time.perf_counter()
    result = run_search(cfg, train, val, NUM_CLASSES, IN_CHANNELS, device)
    wall = time.perf_counter() - t0
    last = result.history[-1]
    steps = n // cfg.data.batch_size
    return {"precision": cfg.precision.model_dump(), "base": cfg.base, "batch": cfg.data.batch_size,
            "C": cfg.supernet.C, "layers": cfg.supernet.layers, "train_images": n, "val_images": n, "steps": steps,
            "wall_s": round(wall, 1), "search_time_s": round(result.search_time_s, 1),
            "ms_per_step_incl_eval": round(1e3 * result.search_time_s / steps, 1),
            "est_50_epochs_h": round(50 * result.search_time_s / 3600, 2), "peak_mib": peak_mib(device),
            "val_acc": last.get("val_acc"), "collapse_count": last["collapse_count"]}


# ----------------------------------------------------------------------------------------- child processes
def child(spec: dict) -> None:
    """Run one measurement of `spec` in this (child) process and print its result as one JSON line."""
    device = torch.device(spec["device"])
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    if spec["kind"] == "compiled_search":
        out = search_step(spec["sizes"], spec["base"], spec["prec"], device, spec["compile"])
    else:
        out = one_epoch_search(spec["sizes"], device, spec["smoke"])
    print(RESULT + json.dumps(out), flush=True)


def run_child(spec: dict, timeout_s: float) -> dict:
    """`child(spec)` in a fresh process (its own CUDA context and compile caches), killed after timeout_s."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                              capture_output=True, text=True, timeout=max(1.0, timeout_s), cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout: killed after {timeout_s:.0f} s"}
    wall = round(time.perf_counter() - t0, 1)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)]
    if proc.returncode or not lines:
        return {"error": f"exit {proc.returncode}", "stderr_tail": proc.stderr[-3000:], "child_wall_s": wall}
    return {**json.loads(lines[-1][len(RESULT):]), "child_wall_s": wall}


# ------------------------------------------------------------------------------------------------------ main
class Report:
    """The JSON document, rewritten (atomically) after every measurement."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data, self.t0 = path, data, time.perf_counter()
        path.parent.mkdir(parents=True, exist_ok=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def write(self) -> None:
        self.data["elapsed_s"] = round(self.elapsed(), 1)
        self.data["summary"] = summary(self.data)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1) + "\n")
        tmp.replace(self.path)


def guarded(fn, *args) -> dict:
    """fn(*args), or {"error": ...} (an out-of-memory or any other failure must not stop the script)."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 - recorded, the next measurement runs
        return {"error": f"{type(err).__name__}: {err}"[:2000], "traceback": traceback.format_exc()[-3000:]}
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def ratio(a: dict | None, b: dict | None) -> float | None:
    """a's step time / b's step time (b's speed-up over a), when both were measured."""
    if not a or not b or "ms_per_step" not in a or "ms_per_step" not in b:
        return None
    return round(a["ms_per_step"] / b["ms_per_step"], 3)


def summary(data: dict) -> dict:
    """Speed-ups over eager float32 (search) and float32 (final); > 1 = faster."""
    out: dict[str, Any] = {}
    for base, runs in (data.get("search_step") or {}).items():
        ref = runs.get("eager_fp32")
        out[f"search_{base}"] = {k: ratio(ref, v) for k, v in runs.items() if k != "eager_fp32"}
    final = data.get("final_step") or {}
    out["final"] = {k: ratio(final.get("fp32"), v) for k, v in final.items() if k != "fp32"}
    return out


def info(device: torch.device, args: argparse.Namespace, s: dict) -> dict:
    out: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
                           "device": str(device), "cpu_count": os.cpu_count(), "sizes": s, "smoke": args.smoke,
                           "budget_s": args.budget_s, "command": " ".join(["python", *sys.argv]),
                           "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "backend_flags_at_start": cuda_backend_flags()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        out.update(device_name=p.name, capability=f"{p.major}.{p.minor}", memory_mib=round(p.total_memory / 2**20),
                   multiprocessors=p.multi_processor_count, bf16_supported=torch.cuda.is_bf16_supported(),
                   cudnn=torch.backends.cudnn.version())
    else:
        out["device_name"] = platform.processor() or platform.machine()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="reports/bench-gpu.json")
    ap.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, CPU by default: checks that the script runs")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="wall-time budget of all measurements; what does not fit is recorded as skipped")
    ap.add_argument("--compile-timeout-s", type=float, default=200.0, help="per compiled measurement (child process)")
    ap.add_argument("--compile-backend", default=None, help="torch.compile backend (default inductor; smoke: eager, "
                                                             "which runs dynamo's tracing without code generation)")
    ap.add_argument("--compiled-variants", type=int, default=None,
                    help=f"how many of {COMPILED} (base, precision) to compile, in this order (default all; smoke 1)")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode (default, reduce-overhead, ...)")
    ap.add_argument("--search-budget-s", type=float, default=240.0,
                    help="at most this long for the optional 1-epoch search (0: skip it)")
    ap.add_argument("--search-images", type=int, default=None, help="search-train (= search-val) images")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        child(json.loads(args.child))
        return
    s = dict(SMOKE if args.smoke else PAPER)
    if args.search_images:
        s["search_images"] = args.search_images
    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    threads = 1 if args.smoke else None
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: CUDA is not available (use --smoke for a CPU check)")
    backend = args.compile_backend or ("eager" if args.smoke else "inductor")
    n_compiled = args.compiled_variants if args.compiled_variants is not None else (1 if args.smoke else len(COMPILED))
    compile_spec = {"backend": backend, **({"mode": args.compile_mode} if args.compile_mode else {})}
    report = Report(Path(args.out), {"info": info(device, args, s), "search_step": {}, "final_step": {},
                                     "complete": False})
    report.write()
    left = lambda: args.budget_s - report.elapsed()  # noqa: E731

    def say(what: str, r: dict) -> None:
        shown = {k: r[k] for k in ("ms_per_step", "img_per_s", "peak_mib", "compile_s", "wall_s", "error", "skipped")
                 if k in r}
        print(f"[{report.elapsed():6.1f} s] {what}: {json.dumps(shown)}", flush=True)

    # 1. eager search steps, 2. final steps: in this process, cheap (seconds each)
    for base in ("darts", "pcdarts"):
        runs = report.data["search_step"].setdefault(f"{base}_base", {})
        for prec in SEARCH_PRECISIONS:
            r = guarded(search_step, s, base, prec, device) if left() > 0 else {"skipped": "time budget"}
            runs[f"eager_{prec}"] = r
            report.write()
            say(f"search step {base} base eager {prec}", r)
    for name in FINAL_PRECISIONS:
        r = guarded(final_step, s, name, device) if left() > 0 else {"skipped": "time budget"}
        report.data["final_step"][name] = r
        report.write()
        say(f"final step {name}", r)
    # 3. compiled search steps: child processes with a timeout, most useful first
    for k, (base, prec) in enumerate(COMPILED):
        key = f"compiled_{prec}"
        if k >= n_compiled:
            r = {"skipped": f"--compiled-variants {n_compiled}"}
        elif left() < 30:
            r = {"skipped": f"time budget ({left():.0f} s left)"}
        else:
            spec = {"kind": "compiled_search", "sizes": s, "base": base, "prec": prec, "device": str(device),
                    "compile": compile_spec, "threads": threads}
            r = run_child(spec, min(args.compile_timeout_s, left()))
        report.data["search_step"][f"{base}_base"][key] = r
        report.write()
        say(f"search step {base} base {key}", r)
    # 4. last, optional: a 1-epoch paper-size search, when its estimate fits
    eager = report.data["search_step"]["pcdarts_base"].get("eager_bf16", {})
    steps = s["search_images"] // s["batch"]["pcdarts"]
    estimate = 20 + 1.6 * steps * eager.get("ms_per_step", 0) / 1e3  # + start-up; x1.6: evaluation and loading
    budget = min(args.search_budget_s, left())
    if args.search_budget_s <= 0:
        r = {"skipped": "--search-budget-s 0"}
    elif "ms_per_step" not in eager:
        r = {"skipped": "no eager bf16 pcdarts step time to estimate it from"}
    elif estimate > budget:
        r = {"skipped": f"estimated {estimate:.0f} s > {budget:.0f} s left", "estimate_s": round(estimate)}
    elif args.smoke:  # in this process: a second child start would double the smoke run's time
        r = {**guarded(one_epoch_search, s, device, True), "estimate_s": round(estimate)}
    else:
        spec = {"kind": "search_1_epoch", "sizes": s, "device": str(device), "smoke": False, "threads": threads}
        r = {**run_child(spec, budget), "estimate_s": round(estimate)}
    report.data["search_1_epoch"] = r
    report.data["complete"] = True
    report.data["backend_flags_at_end"] = cuda_backend_flags()
    report.write()
    say("1-epoch search", r)
    print(f"wrote {args.out} ({report.elapsed():.0f} s)", flush=True)


if __name__ == "__main__":
    main()
