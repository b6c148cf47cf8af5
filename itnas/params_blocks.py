"""The structural checks of the blocks of a params file (`itnas.params.Params` validates the whole file with them):
the top-level, `benchmarks.<name>` and `runs` keys, the override keys of a block, and the training recipes a `train`
block names. Each problem is a `ConfigError` that names the key, the bad value, what is allowed and, for a misspelt
name, the closest valid one (`did_you_mean`).
"""

from __future__ import annotations

import difflib

from pydantic import BaseModel

from .config import ConfigError
from .config_parse import problems_error, unknown_keys
from .evaluators import evaluator_kind
from .methods import list_methods

__all__ = ["BENCHMARK_KEYS", "RUN_LISTS", "TOP_KEYS", "benchmark_block", "check_keys", "did_you_mean",
           "recipe_block", "runs_block"]

TOP_KEYS = ("device", "threads", "data", "runs", "benchmarks", "search", "methods", "derive", "train", "evaluate",
            "distributed")
#: Keys of a `benchmarks.<name>` block; data / search / train are overrides deep-merged over the top-level blocks.
BENCHMARK_KEYS = ("label", "evaluation", "data", "search", "train")
_OVERRIDES = ("data", "search", "train")
#: Lists of `runs`: the benchmarks whose evaluator trains a network (a train stage per chain), the table look-ups.
#: DVC matrices cannot filter, so the train stage iterates over runs.benchmarks only.
RUN_LISTS = ("benchmarks", "tables")
_RUNS_KEYS = (*RUN_LISTS, "methods", "seeds")



def did_you_mean(name: object, valid: list[str] | tuple[str, ...]) -> str:
    """' (did you mean 'x'?)' for the valid name closest to `name`, '' when none is close."""
    hint = difflib.get_close_matches(str(name), list(valid), 1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def check_keys(model: type[BaseModel], block: object, where: str, skip: tuple[str, ...] = ()) -> None:
    """Raise ConfigError naming every key of the override `block` that `model` has no field for (`where.path:
    unknown key; valid keys: ...`), before the merge hides where it came from."""
    unknown = [f"{where}.{key}: unknown key; valid keys: {', '.join(valid)}"
               for key, valid in unknown_keys(model, block, skip)]
    if unknown:
        raise problems_error(unknown)


def benchmark_block(name: str, block: object) -> object:
    """One `benchmarks.<name>` block checked: known keys, every key present (DVC tracks `benchmarks.<name>.data`,
    `.search`, `.train` as params, which must exist; `{}` = no override), overrides that are mappings, a valid
    evaluation. Raises ConfigError naming the bad key or value and what is allowed."""
    where = f"benchmarks.{name}"
    if not isinstance(block, dict):
        raise ConfigError(f"{where} must be a mapping with keys {', '.join(BENCHMARK_KEYS)}")
    unknown = sorted(set(block) - set(BENCHMARK_KEYS), key=str)
    if unknown:
        hints = "".join(did_you_mean(k, BENCHMARK_KEYS) for k in unknown[:1])
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


def runs_block(runs: object, benchmarks: list[str]) -> dict:
    """The `runs` block checked, with `benchmarks` defaulting to the first benchmark when neither `RUN_LISTS` list
    is given. Raises ConfigError on unknown keys, non-list values (empty methods or seeds; empty run lists are fine
    while one of them lists a benchmark), unknown or twice-listed benchmarks, unknown methods, seeds that are not
    integers. (Which list a benchmark belongs in is checked with its evaluator, `itnas.params.Params`.)"""
    runs = runs or {}
    if not isinstance(runs, dict):
        raise ConfigError(f"runs must be a mapping with keys {', '.join(_RUNS_KEYS)}")
    unknown = sorted(set(runs) - set(_RUNS_KEYS), key=str)
    if unknown:
        raise ConfigError(f"runs: unknown keys {unknown}{did_you_mean(unknown[0], _RUNS_KEYS)}; valid keys: "
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
                          f"{did_you_mean(bad[0], benchmarks)}")
    twice = sorted({b for b in listed if listed.count(b) > 1})
    if twice:
        raise ConfigError(f"runs: benchmarks {twice} are listed twice (each in runs.benchmarks or runs.tables, once)")
    bad = [m for m in runs["methods"] if m not in list_methods()]
    if bad:
        raise ConfigError(f"runs.methods: unknown methods {bad}{did_you_mean(bad[0], list_methods())}; valid "
                          f"methods: {', '.join(list_methods())}")
    bad = [s for s in runs["seeds"] if not isinstance(s, int) or isinstance(s, bool)]
    if bad:
        raise ConfigError(f"runs.seeds: {bad} are not integers")
    return runs


def recipe_block(name: object, where: str) -> dict:
    """The training recipe `name` of `itnas.recipes` as a `train` block. Raises ConfigError for an unknown name
    or a recipe that needs settings the training does not support yet (listed)."""
    from .recipes import get_recipe, list_recipes, unsupported_keys

    if name not in list_recipes():
        raise ConfigError(f"{where}.recipe={name!r}: unknown recipe{did_you_mean(name, list_recipes())}; valid "
                          f"recipes: {', '.join(list_recipes())}")
    missing = unsupported_keys(name)
    if missing:
        raise ConfigError(f"{where}.recipe={name!r} needs settings the final training does not support yet: "
                          f"{', '.join(missing)}; recipes that run: "
                          f"{', '.join(r for r in list_recipes() if not unsupported_keys(r))}")
    recipe = get_recipe(name)
    recipe.pop("source", None)
    return recipe
