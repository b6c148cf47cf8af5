"""Speed and memory harness: the search step of every (method, base) supernet, and the final-network train step.

Outside the core library, it times the library's own optimizers and steps (`make_search_optimizers`,
`arch_step`, `weight_step`; `make_final_optimizer`, `final_train_step`) on random inputs, with `SearchConfig` /
`TrainConfig` defaults (first epoch's lr). Measures: weight step, architecture step (first or second order),
alphas (`model.arch()` alone, under no_grad), search step (= weight + arch medians), final step (auxiliary loss,
drop-path at its last-epoch probability). Timing, rounds and ratios: `itnas_bench.bench_timing` (interleaved rounds
in rotated order, median per config, device sync around each call). The final network is one more entry of the
same rounds.

Peak memory (2 search steps, or 2 final train steps): on CUDA, `torch.cuda.max_memory_allocated` above what was
allocated just before the model was built; on CPU, peak RSS (VmHWM, `_peak_rss_mib`) of a fresh spawned process
that builds the model and runs the steps, minus that of a baseline spawned process that imports the same
modules, builds the same random inputs and pays the size-independent costs (`_load_runtime`) only.

Aten ops per weight / arch / search step (`itnas.opcount.count_ops`, one step after the warm-up): in eager mode each is
at least one kernel launch on a GPU, so they bound a launch-bound step (the count does not depend on B).

Precision (`amp`, `dtype`, `channels_last`): every stepper computes as a run with that `itnas.engine.Precision` does
(the search's `precision` block, the final training's `amp` and `channels_last`).

Side by side (`run_side_by_side`, `itnas bench --against PATH`): the search steps (and optionally the final step) of
several *sides*, each a code checkout and a precision, timed in interleaved rounds; every (round, config, side) runs
in its own fresh subprocess that imports that side's checkout (`python -m itnas_bench.side_worker`), so two code
versions never share a process (nor a heap, an allocator cache or a oneDNN primitive cache). Each side reports per
round the mean of `steps` arch and weight steps after `warmup` full search steps; ratios are medians over the rounds.
"""

from __future__ import annotations

import gc
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from itnas.arch import ArchState
from itnas.config import SearchConfig
from itnas.config_parse import parse_config
from itnas.engine import compile_forward
from itnas.genotype import PUBLISHED_GENOTYPES, Genotype
from itnas.methods import BASES
from itnas.networks import count_parameters, create_final_network
from itnas.opcount import count_ops
from itnas.search import arch_step, build_search_model, make_search_optimizers, search_precision, weight_step
from itnas.train import final_train_step, make_final_optimizer, train_precision
from itnas.train_config import TrainConfig

from .bench_timing import RATIO_TARGET_MAX, Measures, search_times, step_ratios, time_ms, time_rounds
from .side_worker import RESULT_PREFIX

__all__ = ["FinalBenchSpec", "FinalStepper", "SearchBenchSpec", "SearchStepper", "Side", "check_bench_args",
           "peak_memory_mib", "random_batches", "run_bench", "run_side_by_side"]

Batch = tuple[torch.Tensor, torch.Tensor]
MEMORY_STEPS = 2
_REPO_ROOT = Path(__file__).resolve().parents[1]  # this checkout (the "working tree" side)


# ---------------------------------------------------------------------------------------------- what is stepped
@dataclass(frozen=True)
class SearchBenchSpec:
    """One search configuration: a (method, base) supernet and its input size.

    Attributes:
        method, base: see `itnas.methods.list_methods()` and `itnas.methods.BASES`.
        C: initial channels. layers: cells. partial_k: PC-DARTS K (pcdarts base only). space: search space.
        batch_size (B), image_size (H = W, px), in_channels, num_classes: of the random inputs.
        order: "first" or "second" (unrolled) architecture step.
        amp, dtype, channels_last: the search's `precision` block.
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
    amp: str = "off"
    dtype: str = "float32"
    channels_last: bool = False

    def search_config(self) -> SearchConfig:
        """The `SearchConfig` of this spec, every other field at its default. Raises ConfigError (a ValueError)
        naming the bad key, its value and the valid ones: unknown method, space or order, C not divisible by
        partial_k on the pcdarts base, ..."""
        supernet = {"space": self.space, "base": self.base, "C": self.C, "layers": self.layers,
                    "partial_k": self.partial_k}
        precision = {"amp": self.amp, "dtype": self.dtype, "channels_last": self.channels_last}
        return parse_config(SearchConfig, {"method": self.method, "supernet": supernet,
                                           "arch_optimizer": {"order": self.order},
                                           "data": {"batch_size": self.batch_size, "image_size": self.image_size},
                                           "precision": precision},
                            "bench")


@dataclass(frozen=True)
class FinalBenchSpec:
    """The final network of `genotype` (CIFAR layout, auxiliary head) at C channels and `layers` cells, trained with
    `amp` and `channels_last` (TrainConfig)."""

    genotype: Genotype
    C: int = 36
    layers: int = 20
    batch_size: int = 32
    image_size: int = 32
    in_channels: int = 3
    num_classes: int = 10
    amp: str = "off"
    channels_last: bool = False

    def train_config(self) -> TrainConfig:
        """The `TrainConfig` of this spec (stem stride 1, auxiliary head; every other field at its default).
        Raises ConfigError naming a bad key (e.g. C < 1)."""
        return parse_config(TrainConfig, {"network": {"C": self.C, "layers": self.layers, "stem_stride": 1,
                                                      "auxiliary": True},
                                          "data": {"batch_size": self.batch_size, "image_size": self.image_size},
                                          "amp": self.amp, "channels_last": self.channels_last},
                            "bench.final")


def check_bench_args(methods: list[str], bases: list[str], order: str, rounds: int, warmup: int, C: int = 16,
                     partial_k: int = 4, space: str = "darts", layers: int = 8) -> None:
    """Raises ValueError naming the bad value and the valid ones: no method or base, a base not in BASES (the
    bench compares methods on one explicit base: no "auto"), rounds < 1 or warmup < 0, or any (method, base)
    whose `SearchConfig` is invalid (ConfigError: unknown method, order or space, C % partial_k on pcdarts)."""
    if not methods or not bases:
        raise ValueError(f"need at least one method and one base, got methods={methods}, bases={bases}")
    bad = [b for b in bases if b not in BASES]
    if bad:
        raise ValueError(f"unknown bases {bad}; valid bases: {', '.join(BASES)}")
    if rounds < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1 and warmup >= 0, got rounds={rounds}, warmup={warmup}")
    for m in methods:
        for b in bases:
            SearchBenchSpec(m, b, C, layers, order=order, partial_k=partial_k, space=space).search_config()


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
    """A supernet and its two optimizers (`make_search_optimizers`), stepping as the search task does (in the spec's
    precision: model and batches converted once, the weight step autocast when amp is on)."""

    def __init__(self, spec: SearchBenchSpec, device: torch.device, train_batch: Batch, val_batch: Batch,
                 seed: int = 0, compiled: bool = False):
        cfg = spec.search_config()
        torch.manual_seed(seed)
        self.precision = search_precision(cfg, device)
        self.cfg = cfg
        self.train_batch = (self.precision.batch(train_batch[0]), train_batch[1])
        self.val_batch = (self.precision.batch(val_batch[0]), val_batch[1])
        self.model = self.precision.prepare(build_search_model(cfg, spec.num_classes, spec.in_channels).to(device))
        self.model.train()
        self.w_opt, self.a_opt = make_search_optimizers(self.model, cfg)
        # compiled: the weight step's forward through torch.compile, as a compiled search runs it (SearchTask)
        self.net = compile_forward(self.model.net) if compiled else None

    def alphas(self) -> ArchState:
        """`model.arch()` under no_grad (as in the weight step)."""
        with torch.no_grad():
            return self.model.arch()

    def arch_step(self) -> None:
        """One architecture step on the val batch and its Adam step (`itnas.search.arch_step`, xi = weight lr)."""
        w = self.cfg.weight_optimizer
        arch_step(self.model, self.a_opt, self.train_batch, self.val_batch, self.cfg.arch_optimizer.order, w.lr,
                  self.w_opt, w.weight_decay, w.momentum)

    def weight_step(self) -> None:
        """One weight step on the train batch, alphas held constant (`itnas.search.weight_step`)."""
        weight_step(self.model, self.w_opt, self.train_batch, self.cfg.weight_optimizer.grad_clip,
                    precision=self.precision, net=self.net)

    def step(self) -> None:
        """One search step: architecture step, then weight step."""
        self.arch_step()
        self.weight_step()


class FinalStepper:
    """A final network and its optimizer (`make_final_optimizer`), stepping with `final_train_step` (drop-path at
    its last-epoch probability)."""

    def __init__(self, spec: FinalBenchSpec, device: torch.device, batch: Batch, seed: int = 0):
        cfg = spec.train_config()
        n = cfg.network
        torch.manual_seed(seed)
        self.precision = train_precision(cfg, device)
        self.cfg, self.batch = cfg, (self.precision.batch(batch[0]), batch[1])
        self.model = create_final_network(spec.genotype, n.C, n.layers, spec.num_classes, n.auxiliary,
                                          spec.in_channels, n.stem_stride).to(device)
        self.precision.prepare(self.model)
        self.model.train()
        self.model.drop_path_prob = cfg.regularization.drop_path
        self.opt = make_final_optimizer(self.model, cfg)

    def step(self) -> None:
        final_train_step(self.model, self.opt, self.batch, self.cfg, precision=self.precision)


def _make_stepper(spec: SearchBenchSpec | FinalBenchSpec, device: torch.device, batches: tuple[Batch, Batch]):
    if isinstance(spec, SearchBenchSpec):
        return SearchStepper(spec, device, *batches)
    return FinalStepper(spec, device, batches[0])


# ---------------------------------------------------------------------------------------------- peak memory
def _peak_rss_mib() -> float:
    """Peak resident set size of this process's own address space, MiB: VmHWM of /proc/self/status (Linux).
    Not `ru_maxrss`: exec() folds the peak RSS of the address space it replaces into it, so a spawned child
    reports at least its parent's peak (seen: 1.7 GiB in a child of a 1.7 GiB parent). Elsewhere: ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


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
        cpu_baseline_mib = _in_fresh_process(_rss_worker, spec, True, 0, torch.get_num_threads())
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


def _label(spec: SearchBenchSpec | FinalBenchSpec) -> str:
    return f"{spec.method}/{spec.base}" if isinstance(spec, SearchBenchSpec) else "final"


# ---------------------------------------------------------------------------------------------- the benchmark
def run_bench(methods: list[str], bases: list[str], C: int = 16, layers: int = 8, batch_size: int = 32,
              image_size: int = 32, in_channels: int = 3, num_classes: int = 10, rounds: int = 5, warmup: int = 1,
              order: str = "first", final_C: int = 36, final_layers: int = 20, genotype: Genotype | None = None,
              device: torch.device | str = "cpu", measure_memory: bool = True, partial_k: int = 4,
              space: str = "darts", on_progress: Callable[[int, int, str], None] | None = None, amp: str = "off",
              dtype: str = "float32", channels_last: bool = False, compiled: bool = False) -> dict:
    """Benchmark the search step of every (method, base) and the final-network train step.

    Args:
        methods, bases: the configs are their product. C, layers, partial_k, space: the supernets.
        batch_size (B), image_size (H = W, px), in_channels, num_classes: the random inputs (search and final).
        rounds: timed rounds (the median is reported). warmup: untimed steps of every config first.
        order: "first" or "second" architecture step.
        final_C, final_layers, genotype: the final network (default: PUBLISHED_GENOTYPES["darts_v2"]).
        device: where to run. measure_memory: also measure peak memory (on CPU: 2 spawned processes per config).
        amp, dtype, channels_last: the precision of every search stepper (the final one: amp, channels_last).
        compiled: also time every search config with its weight step's forward compiled (`torch.compile`,
            `itnas.engine.compile_forward`), in the same interleaved rounds as the eager one; the first compiled
            weight step (the compilation) is timed apart as `compile_s`.
        on_progress(done, total, label): called after every warm-up and timed round and memory measurement.

    Returns:
        JSON-ready {"settings", "configs", "final", "ratios"}; see the module docstring for what is timed.
        configs: one per (method, base): `search_times` (weight_step_ms, arch_step_ms, search_step_ms, alphas_ms,
        search_img_per_s), search_peak_mib (None when not measured), weight_params_m (millions), arch_params
        (count), samples (every round's ms).
        final: final_step_ms, final_img_per_s, final_peak_mib, params_m (without the auxiliary head), genotype.
        ratios: per base, `<method>_over_darts_*` (see `step_ratios`), and itnas_within_target (<= 1.05).

    Raises:
        ValueError: see `check_bench_args`. GenotypeError: the genotype does not fit its space.
    """
    methods, bases = list(dict.fromkeys(methods)), list(dict.fromkeys(bases))  # a repeat would share its key
    check_bench_args(methods, bases, order, rounds, warmup, C, partial_k, space, layers)
    device = torch.device(device)
    genotype = genotype if genotype is not None else PUBLISHED_GENOTYPES["darts_v2"]
    sizes = {"batch_size": batch_size, "image_size": image_size, "in_channels": in_channels,
             "num_classes": num_classes}
    specs = [SearchBenchSpec(m, b, C, layers, order=order, partial_k=partial_k, space=space, amp=amp, dtype=dtype,
                             channels_last=channels_last, **sizes) for m in methods for b in bases]
    specs[0].search_config()  # a bad precision fails now
    final_spec = FinalBenchSpec(genotype, final_C, final_layers, amp=amp, channels_last=channels_last, **sizes)
    final_spec.train_config()  # a bad final size fails now, not after the memory measurements
    total = (len(specs) + 1) * (warmup + rounds + (1 if measure_memory else 0))
    total += len(specs) * (1 + warmup + rounds) if compiled else 0
    done = 0

    def tick(label: str) -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, total, label)

    load_start = _load_average()
    # memory first, one config at a time (nothing else resident on the device)
    peaks: dict[str, float | None] = {_label(s): None for s in [*specs, final_spec]}
    if measure_memory:
        threads = torch.get_num_threads()  # one baseline process for every config:
        baseline = _in_fresh_process(_rss_worker, final_spec, True, 0, threads) if device.type == "cpu" else None
        for s in [*specs, final_spec]:
            peaks[_label(s)] = peak_memory_mib(s, device, MEMORY_STEPS, baseline)
            tick(f"memory {_label(s)}")

    train_batch, val_batch = random_batches(batch_size, image_size, in_channels, num_classes, device)
    steppers = {s: SearchStepper(s, device, train_batch, val_batch) for s in specs}
    final = FinalStepper(final_spec, device, train_batch)
    entries: dict[str, Measures] = {
        _label(s): {"alphas_ms": st.alphas, "arch_step_ms": st.arch_step, "weight_step_ms": st.weight_step}
        for s, st in steppers.items()}
    entries["final"] = {"final_step_ms": final.step}
    compiled_steppers, compile_s = {}, {}
    if compiled:
        for s in specs:
            st = SearchStepper(s, device, train_batch, val_batch, compiled=True)
            compile_s[s] = time_ms(st.weight_step, device) / 1e3  # the first call compiles
            compiled_steppers[s] = st
            entries[_label(s) + "+compile"] = {"alphas_ms": st.alphas, "arch_step_ms": st.arch_step,
                                               "weight_step_ms": st.weight_step}
            tick(f"compile {_label(s)}")
    samples = time_rounds(entries, rounds, warmup, device, tick=tick)
    ops = {s: {"weight_step_ops": count_ops(st.weight_step)[0], "arch_step_ops": count_ops(st.arch_step)[0]}
           for s, st in steppers.items()}  # after the warm-up: the optimizers' state exists

    configs = [{"method": s.method, "base": s.base, "order": s.order, **search_times(samples[_label(s)], batch_size),
                **ops[s], "search_step_ops": sum(ops[s].values()),
                "search_peak_mib": peaks[_label(s)],
                "weight_params_m": sum(p.numel() for p in st.model.weight_parameters()) / 1e6,
                "arch_params": sum(p.numel() for p in st.model.arch_parameters()), "samples": samples[_label(s)]}
               for s, st in steppers.items()]
    for s in compiled_steppers:
        eager = next(c for c in configs if (c["method"], c["base"]) == (s.method, s.base))
        times = search_times(samples[_label(s) + "+compile"], batch_size)
        eager["compiled"] = {"compile_s": compile_s[s], **times,
                             "eager_over_compiled_weight_step": eager["weight_step_ms"] / times["weight_step_ms"],
                             "eager_over_compiled_search_step": eager["search_step_ms"] / times["search_step_ms"],
                             "samples": samples[_label(s) + "+compile"]}
    final_ms = statistics.median(samples["final"]["final_step_ms"])
    final_rec = {"C": final_C, "layers": final_layers, "auxiliary": True, "drop_path_prob": final.model.drop_path_prob,
                 "final_step_ms": final_ms, "final_img_per_s": batch_size / (final_ms / 1e3),
                 "final_peak_mib": peaks["final"], "params_m": count_parameters(final.model) / 1e6,
                 "genotype": genotype.to_dict(), "samples": samples["final"]}
    settings = {
        **{k: v for k, v in asdict(specs[0]).items() if k not in ("method", "base")},
        "methods": list(methods), "bases": list(bases), "rounds": rounds, "warmup": warmup,
        "statistic": "median over rounds; configs interleaved per round (rotated order)",
        "timer": "time.perf_counter" + (" with torch.cuda.synchronize" if device.type == "cuda" else ""),
        "memory_method": _memory_method(device, measure_memory), "ratio_target_max": RATIO_TARGET_MAX,
        "compiled": compiled, "device": str(device), "torch": torch.__version__, "python": platform.python_version(),
        "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "load_average_start": load_start, "load_average_end": _load_average(),
    }
    return {"settings": settings, "configs": configs, "final": final_rec,
            "ratios": step_ratios(configs, {(s.method, s.base): samples[_label(s)] for s in specs})}


# ---------------------------------------------------------------------------------------------- side by side


@dataclass(frozen=True)
class Side:
    """One side of a side-by-side benchmark: the checkout whose `itnas` and harness (`itnas_bench`, or `pipeline` in
    a checkout from before the harness moved) run (`root`) and the
    precision its steppers use (non-default keys of SearchBenchSpec / FinalBenchSpec: amp, dtype, channels_last;
    empty for an old checkout, which has no such fields)."""

    label: str
    root: str
    precision: tuple[tuple[str, object], ...] = ()


def _git_revision(root: str) -> str | None:
    """`git rev-parse HEAD` of `root` (None when it is not a git checkout); uncommitted changes are not seen. This
    checkout itself is reported as "working tree" (its changes are what is measured)."""
    if Path(root).resolve() == _REPO_ROOT:
        return "working tree"
    try:
        run = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return run.stdout.strip() or None


def _run_side(side: Side, job: dict, timeout_s: float) -> dict[str, float]:
    """One fresh process of `side` for `job` (the worker's JSON args); its measures (ms)."""
    args = {**job, "root": side.root, "precision": dict(side.precision)}
    if job["kind"] == "final":
        args["precision"] = {k: v for k, v in args["precision"].items() if k != "dtype"}
    # cwd = the side's root, first on sys.path under -m; this checkout on PYTHONPATH for an old side (no worker)
    path = os.pathsep.join(p for p in (str(_REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"), "PYTHONPATH": path}
    run = subprocess.run([sys.executable, "-m", "itnas_bench.side_worker", json.dumps(args)], cwd=side.root, env=env,
                         capture_output=True, text=True, timeout=timeout_s)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if run.returncode or not lines:
        raise RuntimeError(f"bench side {side.label} ({side.root}) failed on {job.get('method', 'final')}/"
                           f"{job.get('base', '')}: {run.stderr.strip()[-2000:]}")
    return json.loads(lines[-1].removeprefix(RESULT_PREFIX))


def run_side_by_side(sides: list[Side], methods: list[str], bases: list[str], C: int = 16, layers: int = 8,
                     batch_size: int = 32, image_size: int = 32, in_channels: int = 3, num_classes: int = 10,
                     rounds: int = 3, warmup: int = 1, steps: int = 2, order: str = "first", partial_k: int = 4,
                     threads: int = 2, final: bool = False, final_C: int = 36, final_layers: int = 20,
                     timeout_s: float = 900.0, on_progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Time the search steps of every (method, base) (and the final step when `final`) for every side, side by side.

    Round r runs every config (rotated by r) and, within a config, every side (rotated by r), each in its own
    subprocess (`itnas_bench.side_worker`, CPU, `threads` intra-op threads, passive OpenMP waiting unless
    OMP_WAIT_POLICY is set): `warmup` untimed search steps (arch + weight), then `steps` timed ones; the round's
    sample is their mean.

    Returns:
        JSON-ready {"settings", "sides": [{label, root, revision, precision}], "configs": [{method, base, <side>:
        {weight_step_ms, arch_step_ms, search_step_ms (medians over rounds), samples}}], "final" (or None),
        "ratios": {"<base>": {"<method>": {"<side>_over_<last side>_{weight_step,arch_step,search_step}": median
        ratio, "..._search_step_paired": median over rounds of the same-round ratio}}}}: with sides (old, new),
        old_over_new > 1 means the new code is faster.

    Raises:
        ValueError: see `check_bench_args`; fewer than 2 sides. RuntimeError: a side's process failed (its stderr).
    """
    if len(sides) < 2:
        raise ValueError(f"need at least 2 sides, got {len(sides)}")
    check_bench_args(methods, bases, order, rounds, warmup, C, partial_k, "darts", layers)
    size = {"batch_size": batch_size, "image_size": image_size, "in_channels": in_channels,
            "num_classes": num_classes}
    jobs = [{"kind": "search", "method": m, "base": b, "C": C, "layers": layers, "order": order,
             "partial_k": partial_k, **size} for m in methods for b in bases]
    if final:
        jobs.append({"kind": "final", "final_C": final_C, "final_layers": final_layers, **size})
    for j in jobs:
        j.update(threads=threads, warmup=warmup, steps=steps)
    samples: dict[int, dict[str, dict[str, list[float]]]] = {k: {s.label: {} for s in sides} for k in range(len(jobs))}
    total, done = rounds * len(jobs) * len(sides), 0
    load_start = _load_average()
    for r in range(rounds):
        order_jobs = list(range(len(jobs)))
        order_jobs = order_jobs[r % len(jobs):] + order_jobs[:r % len(jobs)]
        for k in order_jobs:
            for side in sides[r % len(sides):] + sides[:r % len(sides)]:
                for name, ms in _run_side(side, jobs[k], timeout_s).items():
                    samples[k][side.label].setdefault(name, []).append(ms)
                done += 1
                if on_progress is not None:
                    on_progress(done, total, f"round {r + 1}/{rounds} {_job_label(jobs[k])} {side.label}")
    ref = sides[-1].label
    configs, ratios, final_rec = [], {}, None
    for k, job in enumerate(jobs):
        per_side = {}
        for side in sides:
            s = samples[k][side.label]
            if job["kind"] == "search":
                s["search_step_ms"] = [w + a for w, a in zip(s["weight_step_ms"], s["arch_step_ms"], strict=True)]
                s["search_step_ops"] = [w + a for w, a in zip(s["weight_step_ops"], s["arch_step_ops"], strict=True)]
            per_side[side.label] = {**{name: statistics.median(v) for name, v in s.items()}, "samples": s}
        if job["kind"] == "final":
            final_rec = {"C": final_C, "layers": final_layers, **per_side}
            names = ("final_step",)
        else:
            configs.append({"method": job["method"], "base": job["base"], **per_side})
            names = ("weight_step", "arch_step", "search_step")
        key = ratios.setdefault(job.get("base", "final"), {}).setdefault(job.get("method", "final"), {})
        for side in sides[:-1]:
            for name in names:
                a, b = samples[k][side.label][f"{name}_ms"], samples[k][ref][f"{name}_ms"]
                key[f"{side.label}_over_{ref}_{name}"] = statistics.median(a) / statistics.median(b)
                key[f"{side.label}_over_{ref}_{name}_paired"] = statistics.median(
                    [x / y for x, y in zip(a, b, strict=True)])
                if f"{name}_ops" in samples[k][ref]:
                    key[f"{side.label}_over_{ref}_{name}_ops"] = (samples[k][side.label][f"{name}_ops"][0]
                                                                  / samples[k][ref][f"{name}_ops"][0])
    settings = {"C": C, "layers": layers, "partial_k": partial_k, "order": order, **size, "threads": threads,
                "rounds": rounds, "warmup": warmup, "steps_per_round": steps, "methods": list(methods),
                "bases": list(bases), "device": "cpu", "torch": torch.__version__, "cpu": _cpu_name(),
                "cpu_count": os.cpu_count(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
                "statistic": "per round: mean of the timed steps of one fresh process per (config, side); reported: "
                             "median over rounds; configs and sides interleaved (rotated order per round)",
                "load_average_start": load_start, "load_average_end": _load_average()}
    return {"settings": settings,
            "sides": [{"label": s.label, "root": str(Path(s.root).resolve()), "revision": _git_revision(s.root),
                       "precision": dict(s.precision)} for s in sides],
            "configs": configs, "final": final_rec, "ratios": ratios}


def _job_label(job: dict) -> str:
    return f"{job['method']}/{job['base']}" if job["kind"] == "search" else "final"
