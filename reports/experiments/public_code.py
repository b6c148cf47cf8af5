"""This project's search step against the public DARTS and PC-DARTS code, side by side in one run (CPU).

Measured per configuration (first-order search step, float32, DARTS space = the public code's default PRIMITIVES,
C=16, 8 cells, 32x32 images, 10 classes, batch 32):

- aten ops dispatched by one weight step, one architecture step and their sum (the search step), counted with
  `itnas.opcount.count_ops` after one warm-up step (so the optimizers' state exists). In eager mode every
  dispatched op is at least one kernel launch on a GPU, so the count bounds a launch-bound step. Ops do not depend
  on the batch size.
- CPU ms per weight step and per architecture step: the median over `--rounds` interleaved rounds (each round runs
  every configuration, in an order rotated by one each round); a round's measurement of a configuration is the
  mean of `--steps` search steps (architecture step then weight step, each timed) after one untimed warm-up step.

Configurations:

- public DARTS (`Network(16, 10, 8, criterion)` of quark0/darts cnn/model_search.py) and public PC-DARTS (the same
  of yuhuixu1993/PC-DARTS model_search.py, its own partial channels K=4, edge betas), stepped as their own
  scripts step them: weight step as train_search.py (optimizer.zero_grad, forward, cross-entropy, backward,
  clip_grad_norm_(model.parameters(), 5), SGD(lr 0.025, momentum 0.9, weight decay 3e-4).step()), architecture
  step as architect.py's first-order `step` (Adam(arch_parameters, 3e-4, betas (0.5, 0.999), weight decay
  1e-3).zero_grad(), model._loss(valid).backward(), .step()). Their optimizers are built without a `foreach`
  argument, as published: torch then loops over the parameters on a CPU but takes its multi-tensor (foreach) path
  on CUDA, so the ops of the public steps are also counted with foreach optimizers (`ops_foreach_optimizers`,
  what their code dispatches on a GPU); times are of the code as published.
- this project (itnas.search: `build_search_model`, `make_search_optimizers`, `weight_step(..., 5.0)`,
  `arch_step(..., "first", 0.025)`): darts method on the darts base, itnas on the darts base, pcdarts method on
  the pcdarts base (K=4), itnas on the pcdarts base; each with the fused supernet (the default, itnas/fused.py)
  and with the reference supernet (`create_search_model(..., fused=False)`, the `MixedOp` cells).

The public code is never part of this repository: it is imported at run time from the folders given on the command
line. Get it with

    git clone https://github.com/quark0/darts          # pass --darts-dir darts/cnn
    git clone https://github.com/yuhuixu1993/PC-DARTS  # pass --pcdarts-dir PC-DARTS (the repository root)

Only model_search.py, operations.py and genotypes.py of each are imported (both use these module names, so they are
imported one after the other under distinct names). The public code calls `.cuda()`: while it is imported and its
networks are built, `torch.Tensor.cuda` and `torch.nn.Module.cuda` return self (restored afterwards). Its
`Variable` is a plain tensor in current torch.

Usage (repository root, venv active; a few minutes on 2 cores):

    python reports/experiments/public_code.py --darts-dir darts/cnn --pcdarts-dir PC-DARTS \
        [--rounds 5] [--steps 3] [--batch 32] [--threads 2] [--reference darts_darts ...] \
        [--out reports/experiments/public_code.json]

--reference: which of this project's configurations also run on the reference supernet (default: all four).

Prints a table and writes the JSON to --out (machine, torch, threads, load average at start and end and per round,
the git commit of this checkout and which itnas files differed from it).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from itnas.config import SearchConfig  # noqa: E402
from itnas.opcount import count_ops  # noqa: E402
from itnas.search import arch_step, build_search_model, make_search_optimizers, weight_step  # noqa: E402
from itnas.spaces import create_space  # noqa: E402
from itnas.supernet import create_search_model  # noqa: E402

C, LAYERS, IMAGE, CLASSES, IN_CHANNELS, PARTIAL_K = 16, 8, 32, 10, 3, 4
GRAD_CLIP, W_LR, W_MOMENTUM, W_DECAY = 5.0, 0.025, 0.9, 3e-4     # train_search.py defaults
A_LR, A_BETAS, A_DECAY = 3e-4, (0.5, 0.999), 1e-3               # architect.py / train_search.py defaults
PUBLIC_MODULES = ("model_search", "operations", "genotypes")

Step = Callable[[], None]


# --------------------------------------------------------------------------------------------------- public code

@contextlib.contextmanager
def cuda_is_identity() -> Iterator[None]:
    """`tensor.cuda()` and `module.cuda()` return self inside the block (the public code runs on the CPU)."""
    saved = torch.Tensor.cuda, nn.Module.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    nn.Module.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.Tensor.cuda, nn.Module.cuda = saved


def import_public(tag: str, directory: Path) -> ModuleType:
    """Import directory/model_search.py (with its operations.py and genotypes.py) and return it. Afterwards the three
    modules live in sys.modules as `<tag>_model_search` etc., so that the other code base's modules of the same names
    are imported from scratch."""
    missing = [m for m in PUBLIC_MODULES if not (directory / f"{m}.py").is_file()]
    if missing:
        raise SystemExit(f"{directory}: no {', '.join(m + '.py' for m in missing)} (see this script's docstring)")
    for name in PUBLIC_MODULES:
        sys.modules.pop(name, None)
    sys.path.insert(0, str(directory))
    try:
        with cuda_is_identity():
            module = importlib.import_module("model_search")
    finally:
        sys.path.remove(str(directory))
        for name in PUBLIC_MODULES:
            loaded = sys.modules.pop(name, None)
            if loaded is not None:
                sys.modules[f"{tag}_{name}"] = loaded
    return module


def public_source(directory: Path, module: ModuleType) -> dict[str, Any]:
    """Where the public code came from: its folder, sha256 of its three files, its PRIMITIVES."""
    return {"dir": str(directory.resolve()),
            "sha256": {f"{m}.py": hashlib.sha256((directory / f"{m}.py").read_bytes()).hexdigest()
                       for m in PUBLIC_MODULES},
            "primitives": list(module.PRIMITIVES)}


def public_steps(module: ModuleType, batches) -> tuple[nn.Module, Step, Step, tuple[torch.optim.Optimizer, ...]]:
    """(model, weight step, architecture step, (SGD, Adam)) of a public `Network`, stepped as its train_search.py
    and its architect.py (first order), the optimizers as published (torch's default path for the device)."""
    (x, y), (xv, yv) = batches
    criterion = nn.CrossEntropyLoss()
    with cuda_is_identity():
        model = module.Network(C, CLASSES, LAYERS, criterion)
    model.train()
    w_opt = torch.optim.SGD(model.parameters(), W_LR, momentum=W_MOMENTUM, weight_decay=W_DECAY)
    a_opt = torch.optim.Adam(model.arch_parameters(), lr=A_LR, betas=A_BETAS, weight_decay=A_DECAY)

    def weight() -> None:  # train_search.py, train()
        w_opt.zero_grad()
        logits = model(x)
        loss = criterion(logits, y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        w_opt.step()

    def arch() -> None:  # architect.py, Architect.step(unrolled=False)
        a_opt.zero_grad()
        loss = model._loss(xv, yv)
        loss.backward()
        a_opt.step()

    return model, weight, arch, (w_opt, a_opt)


# -------------------------------------------------------------------------------------------------- this project

def project_config(method: str, base: str) -> SearchConfig:
    return SearchConfig.model_validate({"method": method, "seed": 0, "precision": {"dtype": "float32"},
                                        "supernet": {"space": "darts", "base": base, "C": C, "layers": LAYERS,
                                                     "partial_k": PARTIAL_K}})


def project_steps(method: str, base: str, fused: bool, batches) -> tuple[nn.Module, Step, Step, tuple]:
    """(model, weight step, architecture step, (SGD, Adam)) of this project's search (first order), the fused
    supernet or the reference one (`fused=False`, built like `build_search_model` builds the fused one)."""
    (x, y), (xv, yv) = batches
    cfg = project_config(method, base)
    if fused:
        model = build_search_model(cfg, CLASSES, IN_CHANNELS)
    else:
        s, a = cfg.supernet, cfg.architecture
        model = create_search_model(create_space("darts"), method, base, C=C, layers=LAYERS, num_classes=CLASSES,
                                    in_channels=IN_CHANNELS, partial_k=s.partial_k,
                                    track_running_stats=s.track_running_stats, alpha_init_scale=a.alpha_init_scale,
                                    transition_init=a.transition_init, transition_gamma=a.transition_gamma,
                                    fused=False)
    model.train()
    w_opt, a_opt = make_search_optimizers(model, cfg)
    xi = cfg.weight_optimizer.lr

    def weight() -> None:
        weight_step(model, w_opt, (x, y), cfg.weight_optimizer.grad_clip)

    def arch() -> None:
        arch_step(model, a_opt, (x, y), (xv, yv), "first", xi)

    return model, weight, arch, (w_opt, a_opt)


# --------------------------------------------------------------------------------------------------- measurement

@dataclass
class Config:
    name: str
    label: str
    code: str                                 # "public" or "itnas"
    method: str
    base: str
    fused: bool | None
    build: Callable[..., tuple[nn.Module, Step, Step, tuple]]
    weight: Step | None = None
    arch: Step | None = None
    result: dict[str, Any] = field(default_factory=dict)
    ms_weight: list[float] = field(default_factory=list)
    ms_arch: list[float] = field(default_factory=list)

    def step(self) -> None:
        """One search step: architecture step, then weight step (DARTS Algorithm 1; train_search.py)."""
        self.arch()
        self.weight()


def count_step_ops(weight: Step, arch: Step) -> dict[str, Any]:
    """Ops of one architecture step and one weight step, after a warm-up step (optimizer state exists)."""
    arch()
    weight()
    n_arch, per_arch = count_ops(arch)
    n_weight, per_weight = count_ops(weight)
    return {"weight": n_weight, "arch": n_arch, "step": n_weight + n_arch,
            "per_op_step": dict((per_weight + per_arch).most_common())}


@contextlib.contextmanager
def foreach_optimizers(*optimizers: torch.optim.Optimizer) -> Iterator[None]:
    """The optimizers take torch's multi-tensor (foreach) path inside the block (their default on CUDA; the same
    state and arithmetic)."""
    saved = [[g.get("foreach") for g in o.param_groups] for o in optimizers]
    for o in optimizers:
        for g in o.param_groups:
            g["foreach"] = True
    try:
        yield
    finally:
        for o, flags in zip(optimizers, saved, strict=True):
            for g, f in zip(o.param_groups, flags, strict=True):
                g["foreach"] = f


def time_steps(cfg: Config, steps: int) -> tuple[float, float]:
    """(mean ms per weight step, mean ms per architecture step) over `steps` search steps after one warm-up step."""
    cfg.step()
    t_weight = t_arch = 0.0
    for _ in range(steps):
        t0 = time.perf_counter()
        cfg.arch()
        t1 = time.perf_counter()
        cfg.weight()
        t2 = time.perf_counter()
        t_arch += t1 - t0
        t_weight += t2 - t1
    return 1e3 * t_weight / steps, 1e3 * t_arch / steps


def make_batches(batch: int) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)

    def one():
        return (torch.randn(batch, IN_CHANNELS, IMAGE, IMAGE, generator=g),
                torch.randint(0, CLASSES, (batch,), generator=g))
    return one(), one()


# ------------------------------------------------------------------------------------------------------- context

def machine() -> dict[str, Any]:
    model_name = platform.processor()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model_name = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return {"cpu": model_name, "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "python": platform.python_version()}


def checkout() -> dict[str, Any]:
    """The git commit of this checkout and the itnas files that differ from it (their state was measured)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""
    return {"commit": git("rev-parse", "HEAD"),
            "itnas_changed": [line[3:] for line in git("status", "--porcelain", "--", "itnas").splitlines()]}


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


# ---------------------------------------------------------------------------------------------------------- main

RATIOS = [  # (numerator, denominator, what)
    ("public_darts", "darts_darts", "public DARTS / this darts on darts"),
    ("public_darts", "darts_darts_ref", "public DARTS / this darts on darts, reference supernet"),
    ("public_pcdarts", "pcdarts_pcdarts", "public PC-DARTS / this pcdarts on pcdarts"),
    ("public_pcdarts", "pcdarts_pcdarts_ref", "public PC-DARTS / this pcdarts on pcdarts, reference supernet"),
    ("itnas_darts", "public_darts", "this itnas on darts / public DARTS"),
    ("itnas_pcdarts", "public_pcdarts", "this itnas on pcdarts / public PC-DARTS"),
    ("darts_darts_ref", "darts_darts", "this darts on darts: reference / fused"),
    ("itnas_darts_ref", "itnas_darts", "this itnas on darts: reference / fused"),
    ("pcdarts_pcdarts_ref", "pcdarts_pcdarts", "this pcdarts on pcdarts: reference / fused"),
    ("itnas_pcdarts_ref", "itnas_pcdarts", "this itnas on pcdarts: reference / fused"),
]


PROJECT = (("darts", "darts"), ("itnas", "darts"), ("pcdarts", "pcdarts"), ("itnas", "pcdarts"))


def configs(darts: ModuleType, pcdarts: ModuleType, reference: list[str]) -> list[Config]:
    """The public DARTS and PC-DARTS code, this project's fused supernets, and its reference supernets of the
    (method_base) names in `reference`."""
    out = [Config("public_darts", "public DARTS", "public", "darts", "darts", None,
                  lambda batches: public_steps(darts, batches)),
           Config("public_pcdarts", "public PC-DARTS", "public", "pcdarts", "pcdarts", None,
                  lambda batches: public_steps(pcdarts, batches))]
    for method, base in PROJECT:
        for fused in (True, False) if f"{method}_{base}" in reference else (True,):
            name = f"{method}_{base}" + ("" if fused else "_ref")
            label = f"itnas {method} on {base}" + ("" if fused else " (ref)")
            out.append(Config(name, label, "itnas", method, base, fused,
                              lambda batches, m=method, b=base, f=fused: project_steps(m, b, f, batches)))
    return out


def print_table(cfgs: list[Config], ratios: dict[str, dict[str, Any]]) -> None:
    head = (f"{'config':28} {'ops w':>7} {'ops a':>7} {'ops step':>8} {'(foreach)':>9} {'ms w':>8} {'ms a':>8} "
            f"{'ms step':>8}")
    print(head)
    print("-" * len(head))
    for c in cfgs:
        r = c.result
        fe = r.get("ops_foreach_optimizers", {}).get("step", "")
        print(f"{c.label:28} {r['ops']['weight']:>7} {r['ops']['arch']:>7} {r['ops']['step']:>8} {fe:>9} "
              f"{r['ms']['weight']:>8.1f} {r['ms']['arch']:>8.1f} {r['ms']['step']:>8.1f}")
    print()
    print(f"{'ratio':62} {'ops step':>8} {'(foreach)':>9} {'ms w':>6} {'ms a':>6} {'ms step':>7}")
    for what, r in ratios.items():
        fe = r.get("ops_step_foreach_optimizers")
        print(f"{what:62} {r['ops_step']:>8} {'' if fe is None else fe:>9} {r['ms_weight']:>6} {r['ms_arch']:>6} "
              f"{r['ms_step']:>7}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--darts-dir", type=Path, required=True, help="quark0/darts cnn/ folder")
    p.add_argument("--pcdarts-dir", type=Path, required=True, help="yuhuixu1993/PC-DARTS repository root")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (median over them)")
    p.add_argument("--steps", type=int, default=3, help="timed search steps per configuration and round (mean)")
    p.add_argument("--batch", type=int, default=32, help="batch size (search-train and search-val)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--reference", nargs="*", default=[f"{m}_{b}" for m, b in PROJECT],
                   choices=[f"{m}_{b}" for m, b in PROJECT],
                   help="method_base configs also run on the reference (unfused) supernet (default: all)")
    p.add_argument("--out", type=Path, default=ROOT / "reports/experiments/public_code.json")
    args = p.parse_args()
    if args.rounds < 1 or args.steps < 1:
        p.error("--rounds and --steps must be >= 1")

    torch.set_num_threads(args.threads)
    started, load_start = time.time(), loadavg()
    darts = import_public("public_darts", args.darts_dir)
    pcdarts = import_public("public_pcdarts", args.pcdarts_dir)
    space_ops = list(create_space("darts").ops["normal"][0])
    for tag, module in (("DARTS", darts), ("PC-DARTS", pcdarts)):
        if list(module.PRIMITIVES) != space_ops:
            raise SystemExit(f"public {tag} PRIMITIVES {module.PRIMITIVES} != this project's darts space {space_ops}")

    batches = make_batches(args.batch)
    cfgs = configs(darts, pcdarts, args.reference)
    for c in cfgs:
        torch.manual_seed(0)
        model, c.weight, c.arch, optimizers = c.build(batches)
        weights = [p for n, p in model.named_parameters() if not n.startswith("arch.")]
        c.result = {"name": c.name, "label": c.label, "code": c.code, "method": c.method, "base": c.base,
                    "fused": c.fused, "weight_tensors": len(weights),
                    "weight_params": sum(p.numel() for p in weights),
                    "ops": count_step_ops(c.weight, c.arch)}
        if c.code == "public":  # the same code with the optimizers' path torch takes on CUDA (foreach)
            with foreach_optimizers(*optimizers):
                c.result["ops_foreach_optimizers"] = {k: v for k, v in count_step_ops(c.weight, c.arch).items()
                                                      if k != "per_op_step"}
        ops = c.result["ops"]
        print(f"{c.label:28} ops: weight {ops['weight']}, arch {ops['arch']}, step {ops['step']} "
              f"({time.time() - started:.0f} s)", flush=True)

    load_rounds = []
    for r in range(args.rounds):
        order = cfgs[r % len(cfgs):] + cfgs[: r % len(cfgs)]
        for c in order:
            ms_w, ms_a = time_steps(c, args.steps)
            c.ms_weight.append(ms_w)
            c.ms_arch.append(ms_a)
        load_rounds.append(loadavg())
        print(f"round {r + 1}/{args.rounds} done ({time.time() - started:.0f} s, load {load_rounds[-1]})", flush=True)

    for c in cfgs:
        steps = [w + a for w, a in zip(c.ms_weight, c.ms_arch, strict=True)]
        c.result["ms"] = {"weight": statistics.median(c.ms_weight), "arch": statistics.median(c.ms_arch),
                          "step": statistics.median(steps)}
        c.result["ms_rounds"] = {"weight": [round(v, 2) for v in c.ms_weight],
                                 "arch": [round(v, 2) for v in c.ms_arch]}
    by = {c.name: c.result for c in cfgs}
    ratios = {}
    for num, den, what in RATIOS:
        if num not in by or den not in by:
            continue
        a, b = by[num], by[den]
        ratios[what] = {"of": [num, den], "ops_weight": ratio(a["ops"]["weight"], b["ops"]["weight"]),
                        "ops_arch": ratio(a["ops"]["arch"], b["ops"]["arch"]),
                        "ops_step": ratio(a["ops"]["step"], b["ops"]["step"]),
                        **{f"ms_{k}": ratio(a["ms"][k], b["ms"][k]) for k in ("weight", "arch", "step")}}
        fa, fb = (x.get("ops_foreach_optimizers", x["ops"]) for x in (a, b))
        if "ops_foreach_optimizers" in a or "ops_foreach_optimizers" in b:
            ratios[what]["ops_step_foreach_optimizers"] = ratio(fa["step"], fb["step"])

    out = {
        "what": "first-order search step, this project vs the public DARTS and PC-DARTS code (CPU): aten ops per "
                "weight / architecture / search step (after one warm-up step) and ms per step (median over "
                "interleaved rounds of the mean of `steps` steps); public code's ops also with foreach optimizers "
                "(torch's default on CUDA; as published on a CPU they loop over the parameters)",
        "settings": {"space": "darts", "C": C, "layers": LAYERS, "image": IMAGE, "classes": CLASSES,
                     "batch": args.batch, "dtype": "float32", "order": "first", "partial_k": PARTIAL_K,
                     "rounds": args.rounds, "steps": args.steps},
        "public": {"darts": public_source(args.darts_dir, darts), "pcdarts": public_source(args.pcdarts_dir, pcdarts)},
        "checkout": checkout(),
        "machine": machine(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "loadavg_start": load_start, "loadavg_end": loadavg(), "loadavg_after_round": load_rounds,
        "seconds": round(time.time() - started, 1),
        "configs": [c.result for c in cfgs],
        "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print()
    print_table(cfgs, ratios)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
