"""The whole `params.yaml` as one typed model, and its resolution into the configs of a chain.

`Params` holds every top-level block: `benchmarks` (a dict of `BenchmarkParams`: label, evaluation, and overrides of
the `data`, `search`, `train` blocks), `runs` (`RunsParams`: the chains (benchmarks, then tables) x methods x seeds),
`methods`
(per-method overrides of `search`, keys registered methods), `derive`, `evaluate`, `distributed` (typed configs), and
the shared `data`, `search`, `train` blocks (raw mappings: a benchmark's or a method's overrides are deep-merged
into them before they are validated as `DataConfig`, `SearchConfig`, `TrainConfig`).

Validating a `Params` checks the whole file at once, so a typo in a block the current stage does not read still
stops it: every benchmark block, every (benchmark, method) search config resolved, every training config, the
compatibility of a benchmark's space with its evaluator, the run list of each benchmark (runs.benchmarks for an
evaluator that trains a network, runs.tables for a table look-up), and the feasibility of its split sizes
(`_split_problems`). What an evaluator accepts comes from the light evaluator registry (`itnas.evaluators`, which
imports no evaluator module: every stage imports this module).
Every problem is a `ConfigError` that names the dotted key, the bad value, what is allowed and, for a misspelt name,
the closest valid one.

A stage resolves what it needs once: `Params.chain(benchmark, method, seed, device)` gives the `Chain` of resolved
configs (data, search for the device, training); `Params.data_config(benchmark)` the data config of `prepare`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from .config import (
    ConfigError,
    DataConfig,
    DeriveConfig,
    DistributedConfig,
    EvalConfig,
    SearchConfig,
    resolve_search_config,
)
from .config_parse import config_error, deep_merge, parse_config, problems_error
from .data import dataset_num_classes, dataset_streamed, list_datasets, num_batches
from .evaluators import EvaluatorKind, evaluator_kind, list_evaluators
from .methods import get_method, list_methods
from .params_blocks import (
    RUN_LISTS,
    TOP_KEYS,
    benchmark_block,
    check_keys,
    did_you_mean,
    recipe_block,
    runs_block,
)
from .train_config import TrainConfig

__all__ = ["BenchmarkParams", "Chain", "Params", "RunsParams", "load_params", "resolve_device"]


def resolve_device(name: str) -> Any:
    """The torch.device of a `device` param: auto (CUDA when present, else CPU), cpu, cuda, cuda:N.

    Raises:
        ConfigError: another value, or cuda on a machine without CUDA.
    """
    import torch

    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu" or name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device={name!r} but CUDA is not available; use auto or cpu")
        return torch.device(name)
    raise ConfigError(f"device={name!r}; valid values: auto, cpu, cuda, cuda:N")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunsParams(_Strict):
    """The chains: every benchmark (of `benchmarks`, whose evaluator trains a network, then of `tables`, the table
    look-ups) x method x seed (without either list: the first benchmark defined)."""

    benchmarks: list[str]
    tables: list[str] = []
    methods: list[str] = ["itnas"]
    seeds: list[int] = [0]


class BenchmarkParams(_Strict):
    """One `benchmarks.<name>` block: the report's label (the name when empty), the evaluation (an evaluator of
    `itnas.evaluators.list_evaluators`), and overrides of the shared `data`, `search`, `train` blocks (`{}` = none)."""

    label: str | None
    evaluation: Literal[tuple(list_evaluators())]  # type: ignore[valid-type]
    data: dict[str, Any]
    search: dict[str, Any]
    train: dict[str, Any]


@dataclass(frozen=True)
class Chain:
    """The resolved configs of one (benchmark, method, seed) chain, as its stages use them.

    search: resolved for the run's device (`precision.dtype: auto` made concrete). train: None for an evaluator
    that trains nothing (a table look-up)."""

    benchmark: str
    method: str
    seed: int
    label: str
    evaluation: str
    data: DataConfig
    search: SearchConfig
    train: TrainConfig | None
    derive: DeriveConfig
    evaluate: EvalConfig
    distributed: DistributedConfig


class Params(_Strict):
    """The whole params file, validated (module docstring). Build with `load_params(path)` or `Params.from_dict`;
    both raise ConfigError."""

    device: str = "auto"
    threads: int = 0
    data: dict[str, Any] = {}
    runs: RunsParams
    benchmarks: dict[str, BenchmarkParams]
    search: dict[str, Any] = {}
    methods: dict[str, dict[str, Any]] = {}
    derive: DeriveConfig = DeriveConfig()
    train: dict[str, Any] = {}
    evaluate: EvalConfig = EvalConfig()
    distributed: DistributedConfig = DistributedConfig()

    @classmethod
    def from_dict(cls, raw: object, source: str = "params") -> Params:
        """Validate a parsed params file (`source`: its name in messages). Raises ConfigError."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source} must hold a mapping of blocks ({', '.join(TOP_KEYS)}), got "
                              f"{type(raw).__name__}")
        unknown = sorted(set(raw) - set(TOP_KEYS), key=str)
        if unknown:
            hints = [f"{m[0]!r} for {k!r}" for k in unknown if (m := difflib.get_close_matches(str(k), TOP_KEYS, 1))]
            hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
            raise ConfigError(f"{source}: unknown top-level keys {unknown}{hint}; valid keys: {', '.join(TOP_KEYS)}")
        try:
            return cls.model_validate(raw)
        except ValidationError as err:
            raise config_error(err, cls, "") from None

    # ------------------------------------------------------------------------------------------- structure
    @model_validator(mode="before")
    @classmethod
    def _structure(cls, raw: Any) -> Any:
        """Empty blocks as {}; every benchmark block and `runs` checked with messages naming the key (before the
        typed fields, which would say less)."""
        if not isinstance(raw, dict):
            return raw
        raw = {k: {} if v is None and k != "device" else v for k, v in raw.items()}  # an empty YAML block
        benchmarks = raw.get("benchmarks") or {}
        if not isinstance(benchmarks, dict) or not benchmarks:
            raise ConfigError("params.yaml defines no benchmarks: add a `benchmarks` block (see the README)")
        raw["benchmarks"] = {name: benchmark_block(name, block) for name, block in benchmarks.items()}
        raw["runs"] = runs_block(raw.get("runs"), list(benchmarks))
        methods = raw.get("methods") or {}
        if isinstance(methods, dict):
            unknown = sorted(set(methods) - set(list_methods()), key=str)
            if unknown:
                raise ConfigError(f"methods: unknown method blocks {unknown}; valid methods: "
                                  f"{', '.join(list_methods())}")
            raw["methods"] = {k: v or {} for k, v in methods.items()}
        return raw

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        resolve_device(v)
        return v

    @field_validator("threads", mode="before")
    @classmethod
    def _threads(cls, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(f"threads={v!r}; valid values: 0 (torch's default: one per core) or a thread count >= 1")
        return v

    def cpu_threads(self, device: Any = None) -> int | None:
        """The `threads` param of a stage process on `device` (default: the `device` param's; 0 = torch's default
        count, which differs between a plain process, one per core, and a torchrun rank, 1), or None on CUDA (the
        count does not change what a GPU computes). In a run's identity: on a CPU the thread count changes how float32
        sums are split, hence the bits. The param, not the count, so that the `check` stage, a plain process, and a
        torchrun rank build the same identity."""
        device = self.torch_device() if device is None else device
        return None if device.type != "cpu" else self.threads

    # ---------------------------------------------------------------------------------- whole-file rules
    @model_validator(mode="after")
    def _feasible(self) -> Params:
        """Every benchmark's data, search (every method of `runs` or `methods`) and training configs resolve (the
        training config of every benchmark: the report reads it), its space fits its evaluator, it is in the run list
        of its evaluator, its split sizes can work (`_split_problems`), colour jitter is asked for streamed image
        files only, and the data-parallel layout suits the methods run (`_parallel_problem`)."""
        methods = list(dict.fromkeys([*self.runs.methods, *self.methods]))
        problems = []
        for benchmark in self.benchmarks:
            data = self.data_config(benchmark)
            searches = {method: self.search_config(benchmark, method, 0) for method in methods}
            train = self.train_config(benchmark)
            if self.evaluator(benchmark).trains:
                _check_jitter(benchmark, data, train)
            problems += self._split_problems(benchmark, data, searches)
        problem = self._parallel_problem()
        if problem:
            raise ConfigError(problem)
        for key in RUN_LISTS:
            for benchmark in getattr(self.runs, key):
                kind = self.evaluator(benchmark)
                right = RUN_LISTS[0] if kind.trains else RUN_LISTS[1]
                if key != right:
                    trains = "trains a network (a train stage per chain)" if kind.trains else "trains no network"
                    raise ConfigError(f"runs.{key}: {benchmark} is evaluated by {kind.name} ({kind.description}), "
                                      f"which {trains}: list it in runs.{right}, e.g. -S 'runs.{right}=[{benchmark}]'")
        if problems:
            raise problems_error(problems)
        return self

    def _parallel_problem(self) -> str | None:
        """Why the `distributed` layout cannot run a method of runs.methods, or None: a search of the Gumbel-softmax
        sampler (gdas) is not data-parallel yet (docs/method.md 2.12: each rank's one-hot sample leaves the other ops
        of an edge without a gradient, which DDP refuses without find_unused_parameters, and the SyncBatchNorm of a
        sampled subset is not implemented)."""
        d = self.distributed
        gumbel = [m for m in self.runs.methods if get_method(m).sampler == "gumbel"]
        if d.world_size > 1 and gumbel:
            return (f"distributed: nproc_per_node={d.nproc_per_node} x nnodes={d.nnodes} = {d.world_size} processes, "
                    f"but method{'s' if len(gumbel) > 1 else ''} {', '.join(gumbel)} (Gumbel-softmax sampling) cannot "
                    f"search data-parallel yet (docs/method.md 2.12): set distributed.nproc_per_node and "
                    f"distributed.nnodes to 1, or remove {', '.join(gumbel)} from runs.methods")
        return None

    def _split_problems(self, benchmark: str, data: DataConfig, searches: dict[str, SearchConfig]) -> list[str]:
        """Split sizes that cannot work, each naming its keys and the smallest valid value: a stratified split needs
        an image of every class (fewer makes scikit-learn fail in prepare); every architecture step of an epoch
        needs a search-val batch of at least 2 images (fewer leaves empty batches, and a batch of one fails in the
        supernet's batch norm on small maps): search_val_size >= 2 x search steps."""
        problems = []
        block = self.benchmarks[benchmark]

        def key_of(name: str) -> str:  # where the value is set: the benchmark's override or the shared block
            return f"benchmarks.{benchmark}.data.{name}" if name in block.data else f"data.{name}"

        for key in ("search_train_size", "search_val_size", "train_size", "test_size"):
            search_key = key.startswith("search")
            name = data.dataset if search_key else data.target_dataset or data.dataset  # transfer: the target's
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
                overrides = self.methods.get(method, {}).get("data") or {}
                bench = block.search.get("data") or {}
                where = (f"methods.{method}.data.batch_size" if "batch_size" in overrides else
                         f"benchmarks.{benchmark}.search.data.batch_size" if "batch_size" in bench else
                         "search.data.batch_size")
                too_few.setdefault((where, cfg.data.batch_size), []).append(method)
        for (where, batch_size), methods in too_few.items():
            steps = num_batches(data.search_train_size, batch_size, drop_single=True)
            problems.append(f"{key_of('search_val_size')}={data.search_val_size}: fewer search-val images than 2 x "
                            f"the {steps} search steps per epoch ({key_of('search_train_size')}="
                            f"{data.search_train_size} / {where}={batch_size}; method{'s' if len(methods) > 1 else ''} "
                            f"{', '.join(methods)}): every architecture step needs a search-val batch of at least 2 "
                            f"images (batch norm); smallest valid value: {2 * steps} (or a larger {where})")
        return problems

    # ------------------------------------------------------------------------------------------ resolution
    def chains(self) -> list[tuple[str, str, int]]:
        """(benchmark, method, seed) of every chain: (runs.benchmarks, then runs.tables) x runs.methods x runs.seeds."""
        r = self.runs
        return [(b, m, s) for b in [*r.benchmarks, *r.tables] for m in r.methods for s in r.seeds]

    def benchmark(self, name: str) -> BenchmarkParams:
        """The `benchmarks.<name>` block. Raises ConfigError for an unknown name (with the closest one)."""
        if name not in self.benchmarks:
            raise ConfigError(f"unknown benchmark {name!r}{did_you_mean(name, list(self.benchmarks))}; "
                              f"benchmarks defined in params.yaml: {', '.join(self.benchmarks) or 'none'}")
        return self.benchmarks[name]

    def label(self, benchmark: str) -> str:
        """The benchmark's label for reports (e.g. "CIFAR-10 (JPEG copy)"); its name when the label is empty."""
        return str(self.benchmark(benchmark).label or benchmark)

    def evaluation(self, benchmark: str) -> str:
        """The name of the benchmark's evaluator (`itnas.evaluators`)."""
        return self.benchmark(benchmark).evaluation

    def evaluator(self, benchmark: str) -> EvaluatorKind:
        """The benchmark's evaluator as the light registry knows it (accepted spaces, whether it trains)."""
        return evaluator_kind(self.evaluation(benchmark))

    def torch_device(self) -> Any:
        """The torch.device of the `device` param (`resolve_device`)."""
        return resolve_device(self.device)

    def data_config(self, benchmark: str) -> DataConfig:
        """The `data` block deep-merged with `benchmarks.<benchmark>.data`. Raises ConfigError."""
        override = self.benchmark(benchmark).data
        check_keys(DataConfig, override, f"benchmarks.{benchmark}.data")
        return parse_config(DataConfig, deep_merge(self.data, override), f"data (with benchmarks.{benchmark}.data)")

    def search_config(self, benchmark: str, method: str, seed: int, device: Any = None) -> SearchConfig:
        """The `search` block deep-merged with `benchmarks.<benchmark>.search`, then `methods.<method>`, with method
        and seed set by the run, resolved for `device` (default: the `device` param's): `precision.dtype: auto`
        becomes float64 on a CPU and float32 on a GPU or with amp, and an explicit float64 on a GPU warns
        (`itnas.config.resolve_search_config`; pure config resolution: "cuda" resolves without a GPU). The resolved
        config is what the run stores (checkpoint identity, outputs): never "auto".

        Raises ConfigError (unknown benchmark or method, unknown key, bad value, a space the benchmark's evaluator
        does not accept: `itnas.evaluators.EvaluatorKind.space_problem`)."""
        if method not in list_methods():
            raise ConfigError(f"unknown method {method!r}{did_you_mean(method, list_methods())}; valid methods: "
                              f"{', '.join(list_methods())}")
        block = self.benchmark(benchmark)
        layers = ((self.search, "search"), (block.search, f"benchmarks.{benchmark}.search"),
                  (self.methods.get(method, {}), f"methods.{method}"))
        for layer, where_layer in layers:
            if "method" in layer or "seed" in layer:
                raise ConfigError(f"{where_layer}: method and seed are set by the run (runs.methods / runs.seeds)")
            check_keys(SearchConfig, layer, where_layer, skip=("method", "seed"))
        merged = {**deep_merge(deep_merge(layers[0][0], layers[1][0]), layers[2][0]), "method": method, "seed": seed}
        used = [w for b, w in layers[1:] if b]
        where = f"search (with {', '.join(used)})" if used else "search"
        cfg = resolve_search_config(parse_config(SearchConfig, merged, where),
                                    self.torch_device() if device is None else device)
        problem = self.evaluator(benchmark).space_problem(cfg.supernet.space, f"benchmarks.{benchmark}")
        if problem:
            raise ConfigError(problem)
        return cfg

    def train_config(self, benchmark: str) -> TrainConfig:
        """The `train` block deep-merged with `benchmarks.<benchmark>.train`. Either block may name a recipe of
        `itnas.recipes` (`recipe: darts_cifar`): the recipe's values replace everything before it (the shared block,
        when the benchmark names it), and the keys beside it override the recipe. Raises ConfigError."""
        shared = dict(self.train)
        override = dict(self.benchmark(benchmark).train)
        check_keys(TrainConfig, {k: v for k, v in override.items() if k != "recipe"}, f"benchmarks.{benchmark}.train")
        if "recipe" in shared:
            shared = deep_merge(recipe_block(shared.pop("recipe"), "train"), shared)
        if "recipe" in override:
            shared = recipe_block(override.pop("recipe"), f"benchmarks.{benchmark}.train")
        return parse_config(TrainConfig, deep_merge(shared, override),
                            "train" + (f" (with benchmarks.{benchmark}.train)" if override else ""))

    def chain(self, benchmark: str, method: str, seed: int, device: Any = None) -> Chain:
        """Every resolved config of the chain (benchmark, method, seed), the search one for `device` (default: the
        `device` param's). Raises ConfigError."""
        kind = self.evaluator(benchmark)
        return Chain(benchmark=benchmark, method=method, seed=seed, label=self.label(benchmark),
                     evaluation=kind.name, data=self.data_config(benchmark),
                     search=self.search_config(benchmark, method, seed, device),
                     train=self.train_config(benchmark) if kind.trains else None,
                     derive=self.derive, evaluate=self.evaluate, distributed=self.distributed)


def _check_jitter(benchmark: str, data: DataConfig, train: TrainConfig) -> None:
    """Colour jitter (train.data.color_jitter) applies to streamed image files only (`itnas.data.ImageDataset`; the
    batches of a data set in RAM are augmented as tensors without it). Raises ConfigError naming the benchmark, its
    training data set and the data sets that stream."""
    jitter, name = train.data.color_jitter, data.target_dataset or data.dataset
    if jitter is not None and not dataset_streamed(name):
        streamed = " or ".join(d for d in list_datasets() if dataset_streamed(d))
        raise ConfigError(f"train.data.color_jitter={list(jitter)} (benchmark {benchmark!r}): colour jitter applies to "
                          f"streamed image files (dataset {streamed}) only; benchmark {benchmark!r} trains on {name}, "
                          f"held in RAM: remove color_jitter")


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file (`Params`). Raises ConfigError for a missing file, bad YAML or any problem
    of `Params` validation."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"params file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    return Params.from_dict(raw, str(path))


