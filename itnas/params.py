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
from .config_parse import config_error, deep_merge, parse_config, unknown_keys
from .data import dataset_num_classes, num_batches
from .evaluators import EvaluatorKind, evaluator_kind, list_evaluators
from .methods import list_methods
from .train_config import TrainConfig

__all__ = ["BENCHMARK_KEYS", "RUN_LISTS", "TOP_KEYS", "BenchmarkParams", "Chain", "Params", "RunsParams",
           "load_params", "resolve_device"]

TOP_KEYS = ("device", "data", "runs", "benchmarks", "search", "methods", "derive", "train", "evaluate",
            "distributed")
#: Keys of a `benchmarks.<name>` block; data / search / train are overrides deep-merged over the top-level blocks.
BENCHMARK_KEYS = ("label", "evaluation", "data", "search", "train")
_OVERRIDES = ("data", "search", "train")
#: Lists of `runs`: the benchmarks whose evaluator trains a network (a train stage per chain), the table look-ups.
#: DVC matrices cannot filter, so the train stage iterates over runs.benchmarks only.
RUN_LISTS = ("benchmarks", "tables")
_RUNS_KEYS = (*RUN_LISTS, "methods", "seeds")


def _did_you_mean(name: object, valid: list[str] | tuple[str, ...]) -> str:
    """' (did you mean 'x'?)' for the valid name closest to `name`, '' when none is close."""
    hint = difflib.get_close_matches(str(name), list(valid), 1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


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
        raw["benchmarks"] = {name: _benchmark_block(name, block) for name, block in benchmarks.items()}
        raw["runs"] = _runs_block(raw.get("runs"), list(benchmarks))
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

    # ---------------------------------------------------------------------------------- whole-file rules
    @model_validator(mode="after")
    def _feasible(self) -> Params:
        """Every benchmark's data, search (every method of `runs` or `methods`) and training configs resolve (the
        training config of every benchmark: the report reads it), its space fits its evaluator, it is in the run list
        of its evaluator, and its split sizes can work (`_split_problems`)."""
        methods = list(dict.fromkeys([*self.runs.methods, *self.methods]))
        problems = []
        for benchmark in self.benchmarks:
            data = self.data_config(benchmark)
            searches = {method: self.search_config(benchmark, method, 0) for method in methods}
            self.train_config(benchmark)
            problems += self._split_problems(benchmark, data, searches)
        for key in RUN_LISTS:
            for benchmark in getattr(self.runs, key):
                kind = self.evaluator(benchmark)
                right = RUN_LISTS[0] if kind.trains else RUN_LISTS[1]
                if key != right:
                    trains = "trains a network (a train stage per chain)" if kind.trains else "trains no network"
                    raise ConfigError(f"runs.{key}: {benchmark} is evaluated by {kind.name} ({kind.description}), "
                                      f"which {trains}: list it in runs.{right}, e.g. -S 'runs.{right}=[{benchmark}]'")
        if problems:
            raise ConfigError("invalid parameters:\n  " + "\n  ".join(problems))
        return self

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
            raise ConfigError(f"unknown benchmark {name!r}{_did_you_mean(name, list(self.benchmarks))}; "
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
        _check_keys(DataConfig, override, f"benchmarks.{benchmark}.data")
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
            raise ConfigError(f"unknown method {method!r}{_did_you_mean(method, list_methods())}; valid methods: "
                              f"{', '.join(list_methods())}")
        block = self.benchmark(benchmark)
        layers = ((self.search, "search"), (block.search, f"benchmarks.{benchmark}.search"),
                  (self.methods.get(method, {}), f"methods.{method}"))
        for layer, where_layer in layers:
            if "method" in layer or "seed" in layer:
                raise ConfigError(f"{where_layer}: method and seed are set by the run (runs.methods / runs.seeds)")
            _check_keys(SearchConfig, layer, where_layer, skip=("method", "seed"))
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
        _check_keys(TrainConfig, {k: v for k, v in override.items() if k != "recipe"}, f"benchmarks.{benchmark}.train")
        if "recipe" in shared:
            shared = deep_merge(_recipe(shared.pop("recipe"), "train"), shared)
        if "recipe" in override:
            shared = _recipe(override.pop("recipe"), f"benchmarks.{benchmark}.train")
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


# ------------------------------------------------------------------------------------------------- helpers
def _check_keys(model: type[BaseModel], block: object, where: str, skip: tuple[str, ...] = ()) -> None:
    """Raise ConfigError naming every key of the override `block` that `model` has no field for (`where.path:
    unknown key; valid keys: ...`), before the merge hides where it came from."""
    unknown = [f"{where}.{key}: unknown key; valid keys: {', '.join(valid)}"
               for key, valid in unknown_keys(model, block, skip)]
    if unknown:
        raise ConfigError("invalid parameters:\n  " + "\n  ".join(unknown))


def _benchmark_block(name: str, block: object) -> object:
    """One `benchmarks.<name>` block checked: known keys, every key present (DVC tracks `benchmarks.<name>.data`,
    `.search`, `.train` as params, which must exist; `{}` = no override), overrides that are mappings, a valid
    evaluation. Raises ConfigError naming the bad key or value and what is allowed."""
    where = f"benchmarks.{name}"
    if not isinstance(block, dict):
        raise ConfigError(f"{where} must be a mapping with keys {', '.join(BENCHMARK_KEYS)}")
    unknown = sorted(set(block) - set(BENCHMARK_KEYS), key=str)
    if unknown:
        hints = "".join(_did_you_mean(k, BENCHMARK_KEYS) for k in unknown[:1])
        raise ConfigError(f"{where}: unknown keys {unknown}{hints}; valid keys: {', '.join(BENCHMARK_KEYS)}")
    missing = [k for k in BENCHMARK_KEYS if k not in block]
    if missing:
        raise ConfigError(f"{where}: missing keys {missing} (every benchmark names all of {', '.join(BENCHMARK_KEYS)}; "
                          f"write {{}} for no override)")
    for key in _OVERRIDES:
        if not isinstance(block[key] or {}, dict):
            raise ConfigError(f"{where}.{key} must be a mapping of overrides of the `{key}` block (or {{}})")
    evaluator_kind(block["evaluation"], f"{where}.evaluation")  # a registered evaluator, else ConfigError
    return {**block, **{key: block[key] or {} for key in _OVERRIDES}}


def _runs_block(runs: object, benchmarks: list[str]) -> dict:
    """The `runs` block checked, with `benchmarks` defaulting to the first benchmark when neither `RUN_LISTS` list
    is given. Raises ConfigError on unknown keys, non-list values (empty methods or seeds; empty run lists are fine
    while one of them lists a benchmark), unknown or twice-listed benchmarks, unknown methods, seeds that are not
    integers. (Which list a benchmark belongs in is checked with its evaluator, `Params._feasible`.)"""
    runs = runs or {}
    if not isinstance(runs, dict):
        raise ConfigError(f"runs must be a mapping with keys {', '.join(_RUNS_KEYS)}")
    unknown = sorted(set(runs) - set(_RUNS_KEYS), key=str)
    if unknown:
        raise ConfigError(f"runs: unknown keys {unknown}{_did_you_mean(unknown[0], _RUNS_KEYS)}; valid keys: "
                          f"{', '.join(_RUNS_KEYS)}")
    given_list = any(key in runs for key in RUN_LISTS)
    runs = {"benchmarks": [] if given_list else benchmarks[:1], "tables": [], "methods": ["itnas"], "seeds": [0],
            **runs}
    for key in _RUNS_KEYS:
        if not isinstance(runs[key], list) or (not runs[key] and key not in RUN_LISTS):
            raise ConfigError(f"runs.{key} must be a {'' if key in RUN_LISTS else 'non-empty '}list, got "
                              f"{runs[key]!r}")
    listed = [b for key in RUN_LISTS for b in runs[key]]
    if not listed:
        raise ConfigError(f"runs: no benchmark to run; list some in runs.{' or runs.'.join(RUN_LISTS)}")
    bad = [b for b in listed if b not in benchmarks]
    if bad:
        raise ConfigError(f"runs: unknown benchmarks {bad}; benchmarks defined in params.yaml: {', '.join(benchmarks)}"
                          f"{_did_you_mean(bad[0], benchmarks)}")
    twice = sorted({b for b in listed if listed.count(b) > 1})
    if twice:
        raise ConfigError(f"runs: benchmarks {twice} are listed twice (each in runs.benchmarks or runs.tables, once)")
    bad = [m for m in runs["methods"] if m not in list_methods()]
    if bad:
        raise ConfigError(f"runs.methods: unknown methods {bad}{_did_you_mean(bad[0], list_methods())}; valid "
                          f"methods: {', '.join(list_methods())}")
    bad = [s for s in runs["seeds"] if not isinstance(s, int) or isinstance(s, bool)]
    if bad:
        raise ConfigError(f"runs.seeds: {bad} are not integers")
    return runs


def _recipe(name: object, where: str) -> dict:
    """The training recipe `name` of `itnas.recipes` as a `train` block. Raises ConfigError for an unknown name
    or a recipe that needs settings the training does not support yet (listed)."""
    from .recipes import get_recipe, list_recipes, unsupported_keys

    if name not in list_recipes():
        raise ConfigError(f"{where}.recipe={name!r}: unknown recipe{_did_you_mean(name, list_recipes())}; valid "
                          f"recipes: {', '.join(list_recipes())}")
    missing = unsupported_keys(name)
    if missing:
        raise ConfigError(f"{where}.recipe={name!r} needs settings the final training does not support yet: "
                          f"{', '.join(missing)}; recipes that run: "
                          f"{', '.join(r for r in list_recipes() if not unsupported_keys(r))}")
    recipe = get_recipe(name)
    recipe.pop("source", None)
    return recipe
