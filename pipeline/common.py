"""What every stage shares: params loading (strict), run naming, output paths, device choice, progress bars."""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from itnas.arch import list_methods
from itnas.config import (
    ConfigError,
    DataConfig,
    DeriveConfig,
    EvalConfig,
    SearchConfig,
    TrainConfig,
    deep_merge,
    parse_config,
    resolve_search_config,
    unknown_keys,
)
from itnas.data import dataset_num_classes, num_batches
from itnas.distributed import DistContext, DistributedConfig, ShardedBatches

from .paths import CKPT_DIR, checkpoint, run_record

console = Console(stderr=True)


TOP_KEYS = ("device", "data", "runs", "benchmarks", "search", "methods", "derive", "train", "evaluate",
            "distributed")
#: Keys of a `benchmarks.<name>` block; data / search / train are overrides deep-merged over the top-level blocks.
BENCHMARK_KEYS = ("label", "evaluation", "data", "search", "train")
#: Lists of `runs`: the benchmarks whose evaluator trains a network (a train stage per chain), the table look-ups.
RUN_LISTS = ("benchmarks", "tables")


def setup_logging(verbose: bool = False) -> None:
    """Log through Rich to stderr; silence DDP's "Grad strides do not match bucket view strides" warning (the
    depthwise weights (C, 1, k, k) have a size-1 dimension whose stride is arbitrary: their gradients differ from
    DDP's bucket view only there, with the same memory layout, so the warning, once per process, is noise)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)], force=True)
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read params.yaml. Raises ConfigError for a missing file, bad YAML or an unknown top-level key."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"params file {path} does not exist")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path} must hold a mapping of blocks ({', '.join(TOP_KEYS)}), got {type(params).__name__}")
    unknown = sorted(set(params) - set(TOP_KEYS), key=str)
    if unknown:
        hints = [f"{m[0]!r} for {k!r}" for k in unknown if (m := difflib.get_close_matches(str(k), TOP_KEYS, 1))]
        hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
        raise ConfigError(f"{path}: unknown top-level keys {unknown}{hint}; valid keys: {', '.join(TOP_KEYS)}")
    validate_params(params)
    return params


def benchmark_names(params: dict) -> list[str]:
    """Names of the `benchmarks` blocks, in file order."""
    return list(params.get("benchmarks") or {})


def benchmark_block(params: dict, benchmark: str) -> dict:
    """The `benchmarks.<benchmark>` block, checked: known name, known keys, every key present (DVC tracks
    `benchmarks.<name>.data`, `.search`, `.train` as params, which must exist; `{}` = no override), a valid
    evaluation name (checked against the evaluator registry by the check stage). Raises ConfigError naming the bad
    key or value and what is allowed."""
    blocks = params.get("benchmarks") or {}
    if benchmark not in blocks:
        hint = difflib.get_close_matches(str(benchmark), list(blocks), 1)
        raise ConfigError(f"unknown benchmark {benchmark!r}{f' (did you mean {hint[0]!r}?)' if hint else ''}; "
                          f"benchmarks defined in params.yaml: {', '.join(blocks) or 'none'}")
    block = blocks[benchmark]
    where = f"benchmarks.{benchmark}"
    if not isinstance(block, dict):
        raise ConfigError(f"{where} must be a mapping with keys {', '.join(BENCHMARK_KEYS)}")
    unknown = sorted(set(block) - set(BENCHMARK_KEYS), key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; valid keys: {', '.join(BENCHMARK_KEYS)}")
    missing = [k for k in BENCHMARK_KEYS if k not in block]
    if missing:
        raise ConfigError(f"{where}: missing keys {missing} (every benchmark names all of {', '.join(BENCHMARK_KEYS)}; "
                          f"write {{}} for no override)")
    for key in ("data", "search", "train"):
        if not isinstance(block[key] or {}, dict):
            raise ConfigError(f"{where}.{key} must be a mapping of overrides of the `{key}` block (or {{}})")
    if not isinstance(block["evaluation"], str):
        raise ConfigError(f"{where}.evaluation must be the name of an evaluator, got {block['evaluation']!r}")
    return block


def benchmark_label(params: dict, benchmark: str) -> str:
    """The benchmark's label for reports (e.g. "CIFAR-10 (JPEG copy)"); its name when the label is empty."""
    return str(benchmark_block(params, benchmark).get("label") or benchmark)


def benchmark_evaluation(params: dict, benchmark: str) -> str:
    """The name of the benchmark's evaluator (`itnas.evaluators`)."""
    return benchmark_block(params, benchmark)["evaluation"]


def data_config(params: dict, benchmark: str) -> DataConfig:
    """The `data` block deep-merged with `benchmarks.<benchmark>.data`. Raises ConfigError."""
    override = benchmark_block(params, benchmark)["data"] or {}
    unknown = _unknown_keys(DataConfig, override, f"benchmarks.{benchmark}.data")
    if unknown:
        raise ConfigError("invalid parameters:\n  " + "\n  ".join(unknown))
    return parse_config(DataConfig, deep_merge(params.get("data") or {}, override),
                        f"data (with benchmarks.{benchmark}.data)")


def run_list(params: dict) -> list[tuple[str, str, int]]:
    """(benchmark, method, seed) of every chain: (runs.benchmarks, then runs.tables) x runs.methods x runs.seeds.
    runs.benchmarks lists the benchmarks whose evaluator trains a network, runs.tables the table look-ups (DVC
    matrices cannot filter: the train stage iterates over runs.benchmarks only); the check stage checks that each
    benchmark is in the list of its evaluator.

    Raises ConfigError on unknown keys, benchmarks or methods."""
    runs = params.get("runs") or {}
    unknown_keys = sorted(set(runs) - {*RUN_LISTS, "methods", "seeds"})
    if unknown_keys:
        raise ConfigError(f"runs: unknown keys {unknown_keys}; valid keys: {', '.join(RUN_LISTS)}, methods, seeds")
    lists = {key: runs.get(key, []) for key in RUN_LISTS}
    if not any(key in runs for key in RUN_LISTS):
        lists["benchmarks"] = benchmark_names(params)[:1]  # no list given: the first benchmark
    methods, seeds = runs.get("methods", ["itnas"]), runs.get("seeds", [0])
    for key, value in (*lists.items(), ("methods", methods), ("seeds", seeds)):
        if not isinstance(value, list) or (not value and key not in RUN_LISTS):
            raise ConfigError(f"runs.{key} must be a {'' if key in RUN_LISTS else 'non-empty '}list, got {value!r}")
    benchmarks = [b for key in RUN_LISTS for b in lists[key]]
    if not benchmarks:
        raise ConfigError(f"runs: no benchmark to run; list some in runs.{' or runs.'.join(RUN_LISTS)}")
    bad_b = [b for b in benchmarks if b not in benchmark_names(params)]
    if bad_b:
        raise ConfigError(f"runs: unknown benchmarks {bad_b}; benchmarks defined in params.yaml: "
                          f"{', '.join(benchmark_names(params)) or 'none'}")
    twice = sorted({b for b in benchmarks if benchmarks.count(b) > 1})
    if twice:
        raise ConfigError(f"runs: benchmarks {twice} are listed twice (each in runs.benchmarks or runs.tables, once)")
    bad = [m for m in methods if m not in list_methods()]
    if bad:
        raise ConfigError(f"runs.methods: unknown methods {bad}; valid methods: {', '.join(list_methods())}")
    bad_seeds = [s for s in seeds if not isinstance(s, int) or isinstance(s, bool)]
    if bad_seeds:
        raise ConfigError(f"runs.seeds: {bad_seeds} are not integers")
    unknown = sorted(set(params.get("methods") or {}) - set(list_methods()))
    if unknown:
        raise ConfigError(f"methods: unknown method blocks {unknown}; valid methods: {', '.join(list_methods())}")
    return [(b, m, s) for b in benchmarks for m in methods for s in seeds]


def _unknown_keys(model: type, block: object, where: str, skip: tuple[str, ...] = ()) -> list[str]:
    """`itnas.config.unknown_keys` as messages 'where.path: unknown key; valid keys: ...'."""
    return [f"{where}.{key}: unknown key; valid keys: {', '.join(valid)}"
            for key, valid in unknown_keys(model, block, skip)]


def search_config(params: dict, benchmark: str, method: str, seed: int,
                  device: torch.device | str | None = None) -> SearchConfig:
    """The `search` block deep-merged with `benchmarks.<benchmark>.search`, then `methods.<method>`, with method
    and seed set by the run, resolved for `device` (default: the `device` param's, `resolve_device`):
    `precision.dtype: auto` becomes float64 on a CPU and float32 on a GPU or with amp, and an explicit float64 on a
    GPU warns (`itnas.config.resolve_search_config`; pure config resolution: "cuda" resolves without a GPU). The
    resolved config is what the run stores (checkpoint identity, outputs): never "auto".

    Raises ConfigError (unknown benchmark or method, unknown key, bad value). Whether the benchmark's evaluator
    accepts the space is the check stage's question (`pipeline.check`, `itnas.evaluators.Evaluator.check_space`)."""
    if method not in list_methods():
        raise ConfigError(f"unknown method {method!r}; valid methods: {', '.join(list_methods())}")
    shared = params.get("search") or {}
    bench = benchmark_block(params, benchmark)["search"] or {}
    overrides = (params.get("methods") or {}).get(method) or {}
    layers = ((shared, "search"), (bench, f"benchmarks.{benchmark}.search"), (overrides, f"methods.{method}"))
    for block, where_block in layers:
        if "method" in block or "seed" in block:
            raise ConfigError(f"{where_block}: method and seed are set by the run (runs.methods / runs.seeds)")
        unknown = _unknown_keys(SearchConfig, block, where_block, skip=("method", "seed"))
        if unknown:
            raise ConfigError("invalid parameters:\n  " + "\n  ".join(unknown))
    merged = {**deep_merge(deep_merge(shared, bench), overrides), "method": method, "seed": seed}
    used = [w for b, w in layers[1:] if b]
    where = f"search (with {', '.join(used)})" if used else "search"
    cfg = resolve_search_config(parse_config(SearchConfig, merged, where),
                                resolve_device(params) if device is None else device)
    return cfg


def derive_config(params: dict) -> DeriveConfig:
    """The `derive` block. Raises ConfigError."""
    return parse_config(DeriveConfig, params.get("derive"), "derive")


def _recipe(name: object, where: str) -> dict:
    """The training recipe `name` of `itnas.recipes` as a `train` block. Raises ConfigError for an unknown name
    or a recipe that needs settings the training does not support yet (listed)."""
    from itnas.recipes import get_recipe, list_recipes, unsupported_keys

    if name not in list_recipes():
        raise ConfigError(f"{where}.recipe={name!r}: unknown recipe; valid recipes: {', '.join(list_recipes())}")
    missing = unsupported_keys(name)
    if missing:
        raise ConfigError(f"{where}.recipe={name!r} needs settings the final training does not support yet: "
                          f"{', '.join(missing)}; recipes that run: "
                          f"{', '.join(r for r in list_recipes() if not unsupported_keys(r))}")
    recipe = get_recipe(name)
    recipe.pop("source", None)
    return recipe


def train_config(params: dict, benchmark: str) -> TrainConfig:
    """The `train` block deep-merged with `benchmarks.<benchmark>.train`. Either block may name a recipe of
    `itnas.recipes` (`recipe: darts_cifar`): the recipe's values replace everything before it (the shared block,
    when the benchmark names it), and the keys beside it override the recipe. Raises ConfigError."""
    shared = dict(params.get("train") or {})
    override = dict(benchmark_block(params, benchmark)["train"] or {})
    unknown = _unknown_keys(TrainConfig, {k: v for k, v in override.items() if k != "recipe"},
                            f"benchmarks.{benchmark}.train")
    if unknown:
        raise ConfigError("invalid parameters:\n  " + "\n  ".join(unknown))
    if "recipe" in shared:
        shared = deep_merge(_recipe(shared.pop("recipe"), "train"), shared)
    if "recipe" in override:
        shared = _recipe(override.pop("recipe"), f"benchmarks.{benchmark}.train")
    return parse_config(TrainConfig, deep_merge(shared, override),
                        "train" + (f" (with benchmarks.{benchmark}.train)" if override else ""))


def distributed_config(params: dict) -> DistributedConfig:
    """The `distributed` block (processes per node, nodes, rendezvous). Raises ConfigError."""
    cfg = parse_config(DistributedConfig, params.get("distributed"), "distributed")
    if cfg.nnodes > 1 and ":" not in cfg.rdzv_endpoint:
        raise ConfigError(f"distributed.nnodes={cfg.nnodes} needs distributed.rdzv_endpoint 'host:port' (torchrun's "
                          f"rendezvous, reachable from every node), got {cfg.rdzv_endpoint!r}")
    return cfg


def torchrun_command(params: dict, argv: list[str]) -> list[str] | None:
    """The command that reruns `itnas ARGV` under torchrun when `distributed` asks for more than one process and
    this process is not one of torchrun's already (no LOCAL_RANK in the environment); None otherwise. One node:
    `--standalone`; several: c10d rendezvous at distributed.rdzv_endpoint (start the same command on every node)."""
    cfg = distributed_config(params)
    if cfg.world_size <= 1 or "LOCAL_RANK" in os.environ:
        return None
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={cfg.nproc_per_node}",
           f"--nnodes={cfg.nnodes}"]
    if cfg.nnodes == 1:
        cmd.append("--standalone")
    else:
        cmd += ["--rdzv_backend=c10d", f"--rdzv_endpoint={cfg.rdzv_endpoint}", "--rdzv_id=itnas"]
    return [*cmd, "-m", "pipeline.cli", *argv]


def eval_config(params: dict) -> EvalConfig:
    """The `evaluate` block. Raises ConfigError."""
    return parse_config(EvalConfig, params.get("evaluate"), "evaluate")


def validate_params(params: dict) -> None:
    """Check the whole params file at once (every benchmark block, every (benchmark, method) resolved search config,
    the split sizes against the data set's classes and the search steps), so that a typo in a block that the
    current stage does not read still stops it, and a degenerate split stops before any work. Benchmarks defined
    but not listed in `runs.benchmarks` are checked too. Raises ConfigError."""
    resolve_device(params)
    distributed_config(params)
    if not benchmark_names(params):
        raise ConfigError("params.yaml defines no benchmarks: add a `benchmarks` block (see the README)")
    methods = list(dict.fromkeys([m for _, m, _ in run_list(params)] + list(params.get("methods") or {})))
    problems = []
    for benchmark in benchmark_names(params):
        data = data_config(params, benchmark)
        searches = {method: search_config(params, benchmark, method, 0) for method in methods}
        train_config(params, benchmark)
        problems += _split_problems(params, benchmark, data, searches)
    derive_config(params)
    eval_config(params)
    if problems:
        raise ConfigError("invalid parameters:\n  " + "\n  ".join(problems))


def _split_problems(params: dict, benchmark: str, data: DataConfig, searches: dict[str, SearchConfig]) -> list[str]:
    """Split sizes that cannot work, each naming its keys and the smallest valid value: a stratified split needs an
    image of every class (fewer makes scikit-learn fail in prepare); every architecture step of an epoch needs a
    search-val batch of at least 2 images (fewer leaves empty batches, and a batch of one fails in the supernet's
    batch norm on small maps): search_val_size >= 2 x search steps."""
    problems = []
    override = benchmark_block(params, benchmark)["data"] or {}

    def key_of(name: str) -> str:  # where the value is set: the benchmark's override or the shared block
        return f"benchmarks.{benchmark}.data.{name}" if name in override else f"data.{name}"

    for key in ("search_train_size", "search_val_size", "train_size", "test_size"):
        search_key = key.startswith("search")
        name = data.dataset if search_key else data.target_dataset or data.dataset  # transfer: the target's classes
        k = dataset_num_classes(name)
        size = getattr(data, key)
        if k is not None and (size or search_key) and size < k:
            also = "" if search_key else " (or 0 = all)"
            problems.append(f"{key_of(key)}={size}: fewer images than the {k} classes of {name} (the split is "
                            f"stratified: every class needs an image in it); smallest valid value: {k}{also}")
    too_few: dict[tuple[str, int], list[str]] = {}  # (batch-size key, batch size) -> methods
    for method, cfg in searches.items():
        steps = num_batches(data.search_train_size, cfg.data.batch_size, drop_single=True)
        if data.search_val_size < 2 * steps:
            overrides = ((params.get("methods") or {}).get(method) or {}).get("data") or {}
            bench = (benchmark_block(params, benchmark)["search"] or {}).get("data") or {}
            where = (f"methods.{method}.data.batch_size" if "batch_size" in overrides else
                     f"benchmarks.{benchmark}.search.data.batch_size" if "batch_size" in bench else
                     "search.data.batch_size")
            too_few.setdefault((where, cfg.data.batch_size), []).append(method)
    for (where, batch_size), methods in too_few.items():
        steps = num_batches(data.search_train_size, batch_size, drop_single=True)
        problems.append(f"{key_of('search_val_size')}={data.search_val_size}: fewer search-val images than 2 x the "
                        f"{steps} search steps per epoch ({key_of('search_train_size')}={data.search_train_size} / "
                        f"{where}={batch_size}; method{'s' if len(methods) > 1 else ''} {', '.join(methods)}): every "
                        f"architecture step needs a search-val batch of at least 2 images (batch norm); smallest "
                        f"valid value: {2 * steps} (or a larger {where})")
    return problems


def resolve_device(params: dict) -> torch.device:
    """`device` param: auto (CUDA when present, else CPU), cpu, cuda, cuda:N. Raises ConfigError otherwise."""
    name = str(params.get("device", "auto"))
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu" or name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device={name!r} but CUDA is not available; use auto or cpu")
        return torch.device(name)
    raise ConfigError(f"device={name!r}; valid values: auto, cpu, cuda, cuda:N")


def code_identity(stage_cmd: str) -> dict[str, str]:
    """{file: SHA-256 (16 hex chars)} of every repository file that `stage_cmd` (e.g. "itnas search itnas 0") runs:
    its import closure (`itnas_tools.dvc_deps.stage_closure`, the files dvc.yaml lists as the stage's code deps).
    Part of a checkpoint's identity, so that a checkpoint of other code is not resumed. Without a source checkout (no
    pyproject.toml), every file of the two packages is hashed."""
    from itnas_tools.dvc_deps import REPO_ROOT, DepsError, stage_closure

    try:
        files = sorted(stage_closure(stage_cmd, REPO_ROOT))
    except (DepsError, OSError):
        files = sorted(p.relative_to(REPO_ROOT) for pkg in ("itnas", "pipeline")
                       for p in (REPO_ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts)
    return {f.as_posix(): hashlib.sha256((REPO_ROOT / f).read_bytes()).hexdigest()[:16] for f in files}


def search_identity(params: dict, benchmark: str, method: str, seed: int,
                    device: torch.device | str | None = None) -> dict:
    """What a search checkpoint must match besides the data fingerprint: the search config resolved for `device`
    (default: the `device` param's; `search_config`), the number of processes (another count is another batch) and
    the code."""
    return {**search_config(params, benchmark, method, seed, device).model_dump(mode="json"),
            "data_parallel": _data_parallel_identity(params),
            "code": code_identity(f"itnas search {benchmark} {method} {seed}")}


def train_identity(params: dict, benchmark: str, method: str, seed: int) -> dict:
    """What a training checkpoint must match besides the network (genotype, data shape) and the data fingerprint:
    the training config, the seed, the number of processes and the code."""
    return {"train": train_config(params, benchmark).model_dump(mode="json"), "seed": seed,
            "data_parallel": _data_parallel_identity(params),
            "code": code_identity(f"itnas train {benchmark} {method} {seed}")}


def _data_parallel_identity(params: dict) -> dict:
    """The part of `distributed` that changes what a run computes: processes in all and batch-norm sync."""
    cfg = distributed_config(params)
    return {"world_size": cfg.world_size, "sync_batchnorm": cfg.sync_batchnorm}


def identity_diff(stored: dict, expected: dict) -> str | None:
    """Why a checkpoint of identity `stored` is not a run of `expected` (keys of `expected` only), or None.
    Names the changed code files when the code differs."""
    keys = sorted(k for k in expected if stored.get(k) != expected[k])
    if not keys:
        return None
    parts = []
    if "code" in keys:
        old, new = stored.get("code") or {}, expected["code"]
        changed = sorted(f for f in set(old) | set(new) if old.get(f) != new.get(f))
        shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        parts.append(f"other code ({shown} changed)")
        keys.remove("code")
    if keys:
        parts.append(f"other params or data (keys differ: {keys})")
    return " and ".join(parts)


@contextmanager
def distributed_run(params: dict) -> Iterator[tuple[DistContext, torch.device]]:
    """(this process's `DistContext`, its device) for a stage that can run data-parallel: under torchrun, the
    process group is initialised (backend `distributed.backend`; CUDA: one device per local rank) and destroyed on
    exit; a plain process gets the single-process context and the `device` param's device.

    Raises:
        ConfigError: a bad `distributed` or `device` param.
    """
    cfg = distributed_config(params)
    ctx = DistContext.from_env(cfg.sync_batchnorm)
    device = ctx.device(resolve_device(params))
    ctx.init(device, cfg.backend)
    try:
        yield ctx, device
    finally:
        ctx.close()


def steps_per_epoch(n: int, batch_size: int, ctx: DistContext) -> int:
    """Training steps of one epoch over n samples at `batch_size` per process (the training loaders drop a last
    batch that would leave a process a single sample; with several processes, one that leaves any process fewer
    than 2), for progress bars."""
    if ctx.enabled:
        return len(ShardedBatches(n, batch_size, ctx, shuffle=False, min_per_rank=2))
    return num_batches(n, batch_size, drop_single=True)


def rank_zero(ctx: DistContext):
    """`console.print` on rank 0, a function that prints nothing on the other ranks."""
    return console.print if ctx.is_main else (lambda *args, **kwargs: None)


def checkpoint_for(path: Path, config: dict) -> None:
    """Before a stage runs: keep a checkpoint of the same identity (params, data, code: the run resumes from it),
    discard one of another identity with a message saying what differs, and stop with an error naming an
    unreadable one (CheckpointError). A temporary file of an interrupted checkpoint write is removed."""
    from itnas.checkpoint import load_checkpoint

    path.with_suffix(path.suffix + ".tmp").unlink(missing_ok=True)
    if not path.exists():
        return
    ck = load_checkpoint(path)
    reason = identity_diff(ck["config"], config) or (None if ck["config"] == config else "another run")
    if reason is None:
        console.print(f"resuming from {path} ({ck['epoch']} epochs done)")
        return
    console.print(f"[yellow]{path} holds a run of {reason}; discarding it and starting over")
    path.unlink()


def stale_checkpoints(params: dict) -> list[tuple[Path, str]]:
    """(path, reason) of every checkpoint under `CKPT_DIR` that no stage of `params` can resume: chain folders of
    (benchmark, method, seed) that `runs` no longer lists, and search / training checkpoints of other params or code
    (`search_identity`, `train_identity`; the data fingerprint and the genotype are checked when the stage
    starts). An unreadable checkpoint is left for its stage to report."""
    from itnas.checkpoint import CheckpointError, load_checkpoint

    if not CKPT_DIR.is_dir():
        return []
    runs = {run_record(b, m, s).name: (b, m, s) for b, m, s in run_list(params)}
    stale = []
    for folder in sorted(p for p in CKPT_DIR.glob("*/*") if p.is_dir()):
        name = folder.relative_to(CKPT_DIR).as_posix()
        if name not in runs:
            stale.append((folder, f"chain {name} is not in (runs.benchmarks, runs.tables) x runs.methods x runs.seeds"))
            continue
        run = run_record(*runs[name])
        for stage, identity in (("search", search_identity), ("train", train_identity)):
            path = checkpoint(run, stage)
            if not path.exists():
                continue
            try:
                reason = identity_diff(load_checkpoint(path)["config"], identity(params, *runs[name]))
            except CheckpointError:
                continue
            if reason is not None:
                stale.append((path, f"a run of {reason}"))
    return stale


def remove_stale_checkpoints(params: dict) -> list[Path]:
    """Delete `stale_checkpoints(params)` with a message each; returns the removed paths."""
    removed = []
    for path, reason in stale_checkpoints(params):
        console.print(f"[yellow]removing {path}: {reason}")
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path)
    return removed


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    """Per-epoch curves for `dvc plots` (missing values left empty)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(columns)]
    for r in rows:
        lines.append(",".join("" if r.get(c) is None else f"{r[c]:.6g}" if isinstance(r[c], float) else str(r[c])
                              for c in columns))
    path.write_text("\n".join(lines) + "\n")


@contextmanager
def epoch_progress(description: str, epochs: int, steps_per_epoch: int, enabled: bool = True) -> Iterator[tuple]:
    """A progress bar over all steps of an epoch loop; yields (on_step, print) for the library's callbacks.
    enabled=False (ranks other than 0 of a torchrun job): (None, a print that prints nothing)."""
    if not enabled:
        yield None, (lambda *args, **kwargs: None)
        return
    with progress_bar(description) as progress:
        task = progress.add_task(description, total=epochs * steps_per_epoch, info="")

        info = {"loss": ""}

        def on_step(epoch: int, step: int, n_steps: int, loss: float | None) -> None:
            if loss is not None:  # the library reads the loss a few times per second, not every step
                info["loss"] = f" loss {loss:.3f}"
            progress.update(task, completed=epoch * n_steps + step, info=f"epoch {epoch + 1}/{epochs}{info['loss']}")

        yield on_step, progress.console.print


@contextmanager
def progress_bar(description: str) -> Iterator[Progress]:
    """A Rich progress bar with ETA (to stderr)."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, transient=False) as progress:
        yield progress


def one_line(err: Exception) -> str:
    """`TypeName: message` on one line; a pydantic ValidationError as its first fields and messages."""
    from pydantic import ValidationError

    if isinstance(err, ValidationError):
        errors = err.errors()
        shown = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in errors[:4])
        more = f"; and {len(errors) - 4} more" if len(errors) > 4 else ""
        return f"{err.title}: {shown}{more}"
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def load_output(path: Path) -> dict:
    """torch.load a stage output (a DVC output: the advice is `dvc checkout` / `dvc repro`, never deleting it)."""
    from itnas.checkpoint import CheckpointError, read_torch_file

    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run `dvc repro` (or `dvc checkout` to restore it)")
    payload = read_torch_file(path, "restore it with `dvc checkout` or rebuild it with `dvc repro`")
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not an itnas stage output; restore it with `dvc checkout`")
    return payload
