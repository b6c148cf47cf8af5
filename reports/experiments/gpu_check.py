"""The GPU check of issue 11, one prepared script: step times, images/s and peak memory of the search step and the
final train step at paper size, in float32, bf16 and bf16 + channels-last, then a 1-epoch paper-size ITNAS search on
CIFAR-10-sized (random) data. Writes one JSON (default reports/bench-gpu.json).

Paper sizes (../shared/DESIGN.md; DARTS, Liu et al. 2019 section 3; PC-DARTS, Xu et al. 2020 section 4):
- search step, darts base: C=16, 8 cells, batch 64, 32x32; pcdarts base: C=16, 8 cells, K=4, batch 256;
- final train step: DARTS_V2, C=36, 20 cells, auxiliary head, batch 96;
- the search: itnas on the pcdarts base, 25,000 + 25,000 images, batch 256, 1 epoch (of 50), no warm-up (so the
  architecture step runs), weight lr 0.1, arch lr 6e-4.

Usage (repository root, venv active, one CUDA device):
    python reports/experiments/gpu_check.py [--out reports/bench-gpu.json]
    python reports/experiments/gpu_check.py --smoke --device cpu --out /tmp/gpu-smoke.json   # tiny sizes, any CPU
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from itnas.config import SearchConfig  # noqa: E402
from itnas.data import ImageDataset, ImageSplit  # noqa: E402
from itnas.search import run_search  # noqa: E402
from pipeline.benchmark import run_bench  # noqa: E402

PRECISIONS = {"float32": {}, "bf16": {"amp": "bf16"}, "bf16_channels_last": {"amp": "bf16", "channels_last": True}}


def sizes(smoke: bool) -> dict:
    """Paper sizes, or tiny ones for a smoke run on any CPU."""
    if smoke:
        return {"C": 4, "layers": 3, "image": 8, "darts_batch": 8, "pcdarts_batch": 8, "final_C": 4,
                "final_layers": 3, "final_batch": 8, "rounds": 1, "warmup": 1, "n_search": 32}
    return {"C": 16, "layers": 8, "image": 32, "darts_batch": 64, "pcdarts_batch": 256, "final_C": 36,
            "final_layers": 20, "final_batch": 96, "rounds": 3, "warmup": 2, "n_search": 25_000}


def step_benchmarks(s: dict, device: str) -> dict:
    """{precision: {"darts_base": configs, "pcdarts_base": configs, "final": final}} from `run_bench` (peak memory on
    CUDA only: on CPU it costs two spawned processes per config)."""
    out = {}
    for name, prec in PRECISIONS.items():
        t0 = time.perf_counter()
        common = dict(C=s["C"], layers=s["layers"], image_size=s["image"], rounds=s["rounds"], warmup=s["warmup"],
                      final_C=s["final_C"], final_layers=s["final_layers"], device=device,
                      measure_memory=device.startswith("cuda"), **prec)
        darts = run_bench(["itnas", "darts"], ["darts"], batch_size=s["darts_batch"], **common)
        pcdarts = run_bench(["itnas", "pcdarts"], ["pcdarts"], batch_size=s["pcdarts_batch"], **common)
        final = run_bench(["darts"], ["darts"], batch_size=s["final_batch"], **common)["final"]
        out[name] = {"darts_base": darts["configs"], "pcdarts_base": pcdarts["configs"], "final": final,
                     "wall_s": round(time.perf_counter() - t0, 1)}
        print(name, json.dumps({"final_step_ms": final.get("final_step_ms"),
                                "final_img_per_s": final.get("final_img_per_s")}), flush=True)
    return out


def random_split(n: int, image: int, seed: int) -> ImageSplit:
    g = torch.Generator().manual_seed(seed)
    return ImageSplit(torch.randint(0, 256, (n, 3, image, image), generator=g, dtype=torch.uint8),
                      torch.randint(0, 10, (n,), generator=g), "train", torch.arange(n))


def one_epoch_search(s: dict, device: str) -> dict:
    """A 1-epoch paper-size itnas search (pcdarts base) on random CIFAR-10-sized data: wall time, peak memory,
    the genotype and its margins (random data: the genotype means nothing; the time and memory do)."""
    cfg = SearchConfig.model_validate({
        "method": "itnas", "supernet": {"base": "pcdarts", "C": s["C"], "layers": s["layers"], "partial_k": 4},
        "weight_optimizer": {"lr": 0.1}, "arch_optimizer": {"lr": 6e-4},
        "schedule": {"epochs": 1, "warmup_epochs": 0, "val_every": 1},
        "data": {"batch_size": s["pcdarts_batch"], "image_size": 0}})
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    train = ImageDataset(random_split(s["n_search"], s["image"], 0), mean, std)
    val = ImageDataset(random_split(s["n_search"], s["image"], 1), mean, std)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = run_search(cfg, train, val, 10, 3, device)
    wall = time.perf_counter() - t0
    last = result.history[-1]
    return {"config": cfg.model_dump(mode="json"), "wall_s": round(wall, 1), "search_time_s": result.search_time_s,
            "train_images": s["n_search"], "peak_mib": (round(torch.cuda.max_memory_allocated() / 2**20, 1)
                                                        if device.startswith("cuda") else None),
            "genotype": last["genotype"], "decisiveness": last["decisiveness"], "val_acc": last.get("val_acc")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="reports/bench-gpu.json")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (a check that the script runs)")
    ap.add_argument("--skip-search", action="store_true", help="only the step benchmarks")
    args = ap.parse_args()
    s = sizes(args.smoke)
    info = {"torch": torch.__version__, "python": platform.python_version(), "device": args.device,
            "device_name": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor(),
            "sizes": s, "command": " ".join(["python", *sys.argv])}
    report = {"info": info, "steps": step_benchmarks(s, args.device)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))  # the step numbers survive a search that runs out of time
    if not args.skip_search:
        report["search_1_epoch"] = one_epoch_search(s, args.device)
        print("search", json.dumps({k: report["search_1_epoch"][k] for k in ("wall_s", "peak_mib")}), flush=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
