"""Stage `check`: the first stage of dvc.yaml. Validates the whole params file (`load_params`) and each benchmark's
evaluator (`check_evaluators`), removes the checkpoints that no stage of these params and this code can resume
(`remove_stale_checkpoints`), and writes a marker whose bytes never change. The stage depends on params.yaml
itself, so any params change reruns it and a bad key stops `dvc repro` / `dvc exp run` at once; `prepare` depends on
the marker, so the check runs before any other stage, and an unchanged marker reruns nothing."""

from __future__ import annotations

from itnas.config import ConfigError
from itnas.evaluators import get_evaluator

from .common import (
    RUN_LISTS,
    benchmark_evaluation,
    benchmark_names,
    console,
    load_params,
    remove_stale_checkpoints,
    run_list,
    search_config,
)
from .paths import PARAMS_CHECKED, run_record

MARKER_TEXT = ("params.yaml passed `itnas check-params` (stage `check` of dvc.yaml). This file never changes: the "
               "prepare stage depends on it only to run after the check.\n")


def check_evaluators(params: dict) -> None:
    """Every benchmark names a registered evaluator that accepts its search space (for every method), and each
    benchmark of `runs` is in the list of its evaluator: runs.benchmarks when it trains a network (a train stage
    per chain), runs.tables otherwise. Raises ConfigError naming the benchmark and the right list."""
    methods = list(dict.fromkeys([m for _, m, _ in run_list(params)] + list(params.get("methods") or {})))
    for benchmark in benchmark_names(params):
        where = f"benchmarks.{benchmark}"
        evaluator = get_evaluator(benchmark_evaluation(params, benchmark), f"{where}.evaluation")
        for method in methods:
            evaluator.check_space(search_config(params, benchmark, method, 0).supernet.space, where)
    runs = params.get("runs") or {}
    for key in RUN_LISTS:
        for benchmark in runs.get(key) or []:
            evaluator = get_evaluator(benchmark_evaluation(params, benchmark))
            right = RUN_LISTS[0] if evaluator.trains else RUN_LISTS[1]
            if key != right:
                trains = "trains a network (a train stage per chain)" if evaluator.trains else "trains no network"
                raise ConfigError(f"runs.{key}: {benchmark} is evaluated by {evaluator.name} ({evaluator.description}"
                                  f"), which {trains}: list it in runs.{right}, e.g. -S 'runs.{right}=[{benchmark}]'")


def check_params(params_file: str = "params.yaml") -> None:
    params = load_params(params_file)
    check_evaluators(params)
    removed = remove_stale_checkpoints(params)
    if not PARAMS_CHECKED.exists() or PARAMS_CHECKED.read_text() != MARKER_TEXT:
        PARAMS_CHECKED.write_text(MARKER_TEXT)
    runs = run_list(params)
    console.print(f"{params_file}: valid ({len(runs)} chains: {', '.join(run_record(*r).name for r in runs)})"
                  + (f"; removed {len(removed)} stale checkpoint(s)" if removed else ""))
