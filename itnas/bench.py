"""Speed and memory benchmark: the search step of every (method, base) supernet, and the final-network train step.

What is timed (wall clock, `time.perf_counter`; `torch.cuda.synchronize` before and after each timed call on
CUDA), on random inputs, step for step as `itnas.search.run_search` does it (hyperparameters: `SearchConfig`
defaults):

- weight step: alphas computed once under no_grad, forward on a train batch, backward, gradient clipping,
  SGD step (the alphas are constant: nothing flows into the architecture);
- architecture step: first order: forward on a val batch, backward into the architecture parameters only
  (`loss.backward(inputs=arch_parameters)`), Adam step; second order: `unrolled_arch_grads` (DARTS eq. 7-8),
  Adam step;
- alphas: `model.arch()` alone, under no_grad (the alpha cost inside the weight step);
- search step = weight step + architecture step (one `run_search` step), as the sum of the two medians.

Noise control: the configs are measured side by side. After `warmup` untimed steps of each, round r runs every
config once (in an order rotated by r, so that no config always follows the same neighbour), and each config
reports the median over the rounds. The final network is one more entry of the same rounds.

Peak memory (2 search steps, or 2 final train steps):
- CUDA: `torch.cuda.max_memory_allocated` above what was allocated just before the model was built;
- CPU: peak RSS (VmHWM, see `_peak_rss_mib`) of a fresh spawned process that builds the model and runs
  the steps, minus the peak RSS of a baseline spawned process that imports the same modules, builds the same
  random inputs and pays the size-independent costs (`_load_runtime`) only.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .arch import BASES, ArchState, get_method
from .config import SearchConfig, TrainConfig
from .genotype import PUBLISHED_GENOTYPES, Genotype
from .networks import count_parameters, create_final_network
from .search import arch_step, build_search_model, weight_step

__all__ = ["FinalBenchSpec", "FinalStepper", "SearchBenchSpec", "SearchStepper", "check_bench_args",
           "peak_memory_mib", "random_batches", "run_bench", "time_ms"]

log = logging.getLogger(__name__)
Batch = tuple[torch.Tensor, torch.Tensor]

RATIO_TARGET_MAX = 1.05  # spec: the ITNAS parameterisation costs at most 5 % over darts on the same base
MEMORY_STEPS = 2


@dataclass(frozen=True)
class SearchBenchSpec:
    """One search configuration: a (method, base) supernet and its input size.

    Attributes:
        method, base: see `itnas.arch.list_methods()` and `itnas.arch.BASES`.
        C: initial channels. layers: cells. partial_k: PC-DARTS K (pcdarts base only). space: search space.
        batch_size (B), image_size (H = W, px), in_channels, num_classes: of the random inputs.
        order: "first" or "second" (unrolled) architecture step.
    """

    method: str
    base: str
    C: int = 16
    layers: int = 8
    batch_size: int = 32
    image_size: int = 32
    in_channels: int = 3
    num_classes: int = 10
    order: str = "first"
    partial_k: int = 4
    space: str = "darts"

    def search_config(self) -> SearchConfig:
        return SearchConfig(method=self.method, base=self.base, space=self.space, C=self.C, layers=self.layers,
                            partial_k=self.partial_k, batch_size=self.batch_size, order=self.order)


@dataclass(frozen=True)
class FinalBenchSpec:
    """The final network of `genotype` (CIFAR layout, auxiliary head) at C channels and `layers` cells."""

    genotype: Genotype
    C: int = 36
    layers: int = 20
    batch_size: int = 32
    image_size: int = 32
    in_channels: int = 3
    num_classes: int = 10


def check_bench_args(methods: list[str], bases: list[str], order: str, rounds: int, warmup: int, C: int = 16,
                     partial_k: int = 4) -> None:
    """Raises KeyError (unknown method, naming the valid ones) or ValueError (unknown base / order, bad counts,
    C not divisible by partial_k on the pcdarts base)."""
    for m in methods:
        get_method(m)
    bad = [b for b in bases if b not in BASES]
    if bad:
        raise ValueError(f"unknown bases {bad}; valid bases: {', '.join(BASES)}")
    if order not in ("first", "second"):
        raise ValueError(f"order={order!r}; valid orders: first, second")
    if not methods or not bases:
        raise ValueError("need at least one method and one base")
    if rounds < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1 and warmup >= 0, got rounds={rounds}, warmup={warmup}")
    if "pcdarts" in bases and C % partial_k:
        raise ValueError(f"the pcdarts base needs C divisible by partial_k={partial_k}, got C={C}")


def random_batches(batch_size: int, image_size: int, in_channels: int, num_classes: int,
                   device: torch.device | str = "cpu", seed: int = 0) -> tuple[Batch, Batch]:
    """(train, val) batches: x (B, in_channels, H, W) ~ N(0, 1), y (B,) uniform labels; the same for a seed."""
    g = torch.Generator().manual_seed(seed)

    def one() -> Batch:
        x = torch.randn(batch_size, in_channels, image_size, image_size, generator=g)
        y = torch.randint(0, num_classes, (batch_size,), generator=g)
        return x.to(device), y.to(device)

    return one(), one()


class SearchStepper:
    """A supernet and its two optimizers, stepping exactly as `run_search` does (first epoch's lr, no warm-up)."""

    def __init__(self, spec: SearchBenchSpec, device: torch.device, train_batch: Batch, val_batch: Batch,
                 seed: int = 0):
        cfg = spec.search_config()
        torch.manual_seed(seed)
        self.cfg, self.train_batch, self.val_batch = cfg, train_batch, val_batch
        self.model = build_search_model(cfg, spec.num_classes, spec.in_channels).to(device)
        self.model.train()
        self.weights = self.model.weight_parameters()
        self.w_opt = torch.optim.SGD(self.weights, cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.a_opt = torch.optim.Adam(self.model.arch_parameters(), cfg.arch_lr, betas=cfg.arch_betas,
                                      weight_decay=cfg.arch_weight_decay)

    def alphas(self) -> ArchState:
        """`model.arch()` under no_grad (as in the weight step)."""
        with torch.no_grad():
            return self.model.arch()

    def arch_step(self) -> None:
        """One architecture step on the val batch (first or second order) and an Adam step (`search.arch_step`)."""
        arch_step(self.model, self.a_opt, self.train_batch, self.val_batch, self.cfg.order, self.cfg.lr, self.w_opt,
                  self.cfg.weight_decay, self.cfg.momentum)

    def weight_step(self) -> None:
        """One weight step on the train batch, alphas held constant (`search.weight_step`)."""
        weight_step(self.model, self.w_opt, self.train_batch, self.cfg.grad_clip)

    def step(self) -> None:
        """One search step: architecture step, then weight step."""
        self.arch_step()
        self.weight_step()


class FinalStepper:
    """A final network and its optimizer, stepping as `itnas.train.train_final` does (`TrainConfig` defaults,
    auxiliary loss, drop-path at its last-epoch probability)."""

    def __init__(self, spec: FinalBenchSpec, device: torch.device, batch: Batch, seed: int = 0):
        cfg = TrainConfig()
        torch.manual_seed(seed)
        self.cfg, self.batch = cfg, batch
        self.model = create_final_network(spec.genotype, spec.C, spec.layers, spec.num_classes, True,
                                          spec.in_channels).to(device)
        self.model.train()
        self.model.drop_path_prob = cfg.drop_path
        self.opt = torch.optim.SGD(self.model.parameters(), cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)

    def step(self) -> None:
        x, y = self.batch
        logits, aux = self.model(x)
        loss = F.cross_entropy(logits, y) + self.cfg.auxiliary_weight * F.cross_entropy(aux, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of `fn()` in ms, with device sync before and after."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1e3


# ---------------------------------------------------------------------------------------------- peak memory
def _peak_rss_mib() -> float:
    """Peak resident set size of this process's own address space, MiB.

    Linux: VmHWM of /proc/self/status (kB). Not `getrusage(RUSAGE_SELF).ru_maxrss`: exec() folds the peak RSS of
    the address space it replaces into ru_maxrss, so a spawned child reports at least its parent's peak (seen
    here: a child of a 1.7 GiB parent reported 1.7 GiB, however small its own use). Elsewhere: ru_maxrss (KiB;
    bytes on macOS), with that caveat.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _make_stepper(spec: SearchBenchSpec | FinalBenchSpec, device: torch.device, batches: tuple[Batch, Batch]):
    if isinstance(spec, SearchBenchSpec):
        return SearchStepper(spec, device, *batches)
    return FinalStepper(spec, device, batches[0])


def _load_runtime() -> None:
    """What every model pays once, whatever its size, done on a 1-weight model: the lazy imports of optimizer
    construction (torch._dynamo, sympy, triton: ~160 MiB RSS with torch 2.14) and autograd / conv kernel setup."""
    w = torch.zeros(1, 1, 3, 3, requires_grad=True)
    F.conv2d(torch.zeros(1, 1, 4, 4), w).sum().backward()
    for opt in (torch.optim.SGD([w], 0.1, momentum=0.9), torch.optim.Adam([w])):
        opt.step()


def _rss_worker(spec: SearchBenchSpec | FinalBenchSpec, baseline: bool, steps: int, num_threads: int) -> float:
    """Body of a spawned process: random inputs (+ the model and `steps` steps unless baseline) -> peak RSS MiB."""
    torch.set_num_threads(num_threads)
    cpu = torch.device("cpu")
    batches = random_batches(spec.batch_size, spec.image_size, spec.in_channels, spec.num_classes, cpu)
    if baseline:
        _load_runtime()
    else:
        stepper = _make_stepper(spec, cpu, batches)
        for _ in range(steps):
            stepper.step()
    return _peak_rss_mib()


def _in_fresh_process(fn: Callable, *args):
    """Run fn(*args) in a new 'spawn' process (nothing inherited from this one's heap) and return its result."""
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _cpu_baseline_mib(spec: SearchBenchSpec | FinalBenchSpec) -> float:
    return _in_fresh_process(_rss_worker, spec, True, 0, torch.get_num_threads())


def peak_memory_mib(spec: SearchBenchSpec | FinalBenchSpec, device: torch.device, steps: int = MEMORY_STEPS,
                    cpu_baseline_mib: float | None = None) -> float:
    """Peak memory (MiB) of building `spec`'s model and running `steps` steps (see the module docstring).

    On CPU, `cpu_baseline_mib` (peak RSS of the baseline process) is measured when not given.
    """
    if device.type == "cuda":
        batches = random_batches(spec.batch_size, spec.image_size, spec.in_channels, spec.num_classes, device)
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        stepper = _make_stepper(spec, device, batches)
        for _ in range(steps):
            stepper.step()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        del stepper
        return peak / 2**20
    if cpu_baseline_mib is None:
        cpu_baseline_mib = _cpu_baseline_mib(spec)
    return _in_fresh_process(_rss_worker, spec, False, steps, torch.get_num_threads()) - cpu_baseline_mib


def _memory_method(device: torch.device, measure_memory: bool) -> str:
    if not measure_memory:
        return "not measured"
    if device.type == "cuda":
        return (f"torch.cuda.max_memory_allocated over build + {MEMORY_STEPS} steps, minus memory allocated "
                "before the build (peak stats reset per config)")
    return (f"peak RSS (VmHWM of /proc/self/status) of a fresh spawned process that builds the model and runs "
            f"{MEMORY_STEPS} steps, minus the peak RSS of a spawned baseline process that imports torch and "
            "itnas, builds the same random inputs and steps a 1-weight conv with SGD and Adam (lazy imports)")


# ---------------------------------------------------------------------------------------------- environment
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_average() -> list[float] | None:
    """1, 5, 15 min load averages (runnable processes), or None where the OS has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------- the benchmark
def _ratios(configs: list[dict], samples: dict[tuple[str, str], dict[str, list[float]]]) -> dict:
    """Per base, every method over the `darts` method on the same base: step, weight step, arch step (ratios of
    the medians), and the median over rounds of the per-round search-step ratio (paired: same round)."""
    by_key = {(c["method"], c["base"]): c for c in configs}
    out: dict[str, dict] = {}
    for (method, base), c in by_key.items():
        ref = by_key.get(("darts", base))
        if method == "darts" or ref is None:
            continue
        s, r = samples[(method, base)], samples[("darts", base)]
        paired = [(sw + sa) / (rw + ra) for sw, sa, rw, ra in
                  zip(s["weight_step_ms"], s["arch_step_ms"], r["weight_step_ms"], r["arch_step_ms"])]
        d = out.setdefault(base, {})
        d[f"{method}_over_darts_step"] = c["search_step_ms"] / ref["search_step_ms"]
        d[f"{method}_over_darts_weight_step"] = c["weight_step_ms"] / ref["weight_step_ms"]
        d[f"{method}_over_darts_arch_step"] = c["arch_step_ms"] / ref["arch_step_ms"]
        d[f"{method}_over_darts_alphas"] = c["alphas_ms"] / ref["alphas_ms"]
        d[f"{method}_over_darts_step_paired"] = statistics.median(paired)
        if method == "itnas":
            d["itnas_within_target"] = d["itnas_over_darts_step"] <= RATIO_TARGET_MAX
    return out


def run_bench(methods: list[str], bases: list[str], C: int = 16, layers: int = 8, batch_size: int = 32,
              image_size: int = 32, in_channels: int = 3, num_classes: int = 10, rounds: int = 5, warmup: int = 1,
              order: str = "first", final_C: int = 36, final_layers: int = 20, genotype: Genotype | None = None,
              device: torch.device | str = "cpu", measure_memory: bool = True, partial_k: int = 4,
              space: str = "darts",
              on_progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Benchmark the search step of every (method, base) and the final-network train step.

    Args:
        methods, bases: the configs are their product. C, layers, partial_k, space: the supernets.
        batch_size (B), image_size (H = W, px), in_channels, num_classes: the random inputs (search and final).
        rounds: timed rounds (the median is reported). warmup: untimed steps of every config first.
        order: "first" or "second" architecture step.
        final_C, final_layers, genotype: the final network (default: PUBLISHED_GENOTYPES["darts_v2"]).
        device: where to run. measure_memory: also measure peak memory (on CPU: 2 spawned processes per config).
        on_progress(done, total, label): called after every warm-up and timed round and memory measurement.

    Returns:
        JSON-ready {"settings", "configs", "final", "ratios"}; see the module docstring for what is timed.
        configs: one per (method, base): weight_step_ms, arch_step_ms, search_step_ms (= weight + arch),
        alphas_ms, search_img_per_s (B / search step s), search_peak_mib (None when not measured),
        weight_params_m (millions), arch_params (count), samples (every round's ms).
        final: final_step_ms, final_img_per_s, final_peak_mib, params_m (without the auxiliary head), genotype.
        ratios: per base, `<method>_over_darts_*` (see `_ratios`), and itnas_within_target (<= 1.05).

    Raises:
        KeyError: unknown method. ValueError: unknown base or order, bad counts, C not divisible by partial_k.
        GenotypeError: the genotype does not fit its space.
    """
    methods, bases = list(dict.fromkeys(methods)), list(dict.fromkeys(bases))  # a repeat would share its key
    check_bench_args(methods, bases, order, rounds, warmup, C, partial_k)
    device = torch.device(device)
    genotype = genotype if genotype is not None else PUBLISHED_GENOTYPES["darts_v2"]
    sizes = {"batch_size": batch_size, "image_size": image_size, "in_channels": in_channels,
             "num_classes": num_classes}
    specs = [SearchBenchSpec(m, b, C, layers, order=order, partial_k=partial_k, space=space, **sizes)
             for m in methods for b in bases]
    final_spec = FinalBenchSpec(genotype, final_C, final_layers, **sizes)
    total = (len(specs) + 1) * (warmup + rounds + (1 if measure_memory else 0))
    done = 0

    def tick(label: str) -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total, label)

    load_start = _load_average()
    # memory first, one config at a time (nothing else resident on the device)
    peaks: dict[object, float | None] = {s: None for s in [*specs, final_spec]}
    if measure_memory:
        baseline = _cpu_baseline_mib(final_spec) if device.type == "cpu" else None
        for s in peaks:
            peaks[s] = peak_memory_mib(s, device, MEMORY_STEPS, baseline)
            tick(f"memory {_label(s)}")

    train_batch, val_batch = random_batches(batch_size, image_size, in_channels, num_classes, device)
    steppers = {s: SearchStepper(s, device, train_batch, val_batch) for s in specs}
    final = FinalStepper(final_spec, device, train_batch)
    # every entry: (key, [(measure name, fn)])
    entries: list[tuple[object, list[tuple[str, Callable]]]] = [
        (s, [("alphas_ms", st.alphas), ("arch_step_ms", st.arch_step), ("weight_step_ms", st.weight_step)])
        for s, st in steppers.items()]
    entries.append((final_spec, [("final_step_ms", final.step)]))
    samples: dict[object, dict[str, list[float]]] = {key: {name: [] for name, _ in fns} for key, fns in entries}

    for _ in range(warmup):
        for key, fns in entries:
            for _name, fn in fns:
                fn()
            _sync(device)
            tick(f"warm-up {_label(key)}")
    for r in range(rounds):
        t0 = time.perf_counter()
        shift = r % len(entries)
        for key, fns in entries[shift:] + entries[:shift]:
            for name, fn in fns:
                samples[key][name].append(time_ms(fn, device))
            tick(f"round {r + 1}/{rounds} {_label(key)}")
        log.info("bench round %d/%d: %.1f s", r + 1, rounds, time.perf_counter() - t0)

    configs = []
    for s, st in steppers.items():
        med = {name: statistics.median(v) for name, v in samples[s].items()}
        search_ms = med["weight_step_ms"] + med["arch_step_ms"]
        configs.append({
            "method": s.method, "base": s.base, "order": s.order,
            "weight_step_ms": med["weight_step_ms"], "arch_step_ms": med["arch_step_ms"],
            "search_step_ms": search_ms, "alphas_ms": med["alphas_ms"],
            "search_img_per_s": batch_size / (search_ms / 1e3), "search_peak_mib": peaks[s],
            "weight_params_m": sum(p.numel() for p in st.model.weight_parameters()) / 1e6,
            "arch_params": sum(p.numel() for p in st.model.arch_parameters()),
            "samples": samples[s]})
    final_ms = statistics.median(samples[final_spec]["final_step_ms"])
    final_rec = {"C": final_C, "layers": final_layers, "auxiliary": True, "drop_path_prob": final.model.drop_path_prob,
                 "final_step_ms": final_ms, "final_img_per_s": batch_size / (final_ms / 1e3),
                 "final_peak_mib": peaks[final_spec], "params_m": count_parameters(final.model) / 1e6,
                 "genotype": genotype.to_dict(), "samples": samples[final_spec]}
    settings = {
        **{k: v for k, v in asdict(specs[0]).items() if k not in ("method", "base")},
        "methods": list(methods), "bases": list(bases), "rounds": rounds, "warmup": warmup,
        "statistic": "median over rounds; configs interleaved per round (rotated order)",
        "timer": "time.perf_counter" + (" with torch.cuda.synchronize" if device.type == "cuda" else ""),
        "memory_method": _memory_method(device, measure_memory), "ratio_target_max": RATIO_TARGET_MAX,
        "device": str(device), "torch": torch.__version__, "python": platform.python_version(),
        "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "load_average_start": load_start, "load_average_end": _load_average(),
    }
    return {"settings": settings, "configs": configs, "final": final_rec,
            "ratios": _ratios(configs, {(s.method, s.base): samples[s] for s in specs})}


def _label(spec: object) -> str:
    if isinstance(spec, SearchBenchSpec):
        return f"{spec.method}/{spec.base}"
    return "final"
