"""What every stage shares: params loading (strict), run naming, output paths, device choice, progress bars."""

from __future__ import annotations

import json
import logging
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
)
from itnas.networks import has_final_network
from itnas.spaces import list_spaces

from .paths import RunPaths

console = Console(stderr=True)


def run_dir(method: str, seed: int) -> Path:
    """runs/<method>-s<seed> (see `pipeline.paths.RunPaths`)."""
    return RunPaths(method, seed).root

TOP_KEYS = ("device", "data", "runs", "search", "methods", "derive", "train", "evaluate")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)], force=True)


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
    unknown = sorted(set(params) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {unknown}; valid keys: {', '.join(TOP_KEYS)}")
    validate_params(params)
    return params


def data_config(params: dict) -> DataConfig:
    """The `data` block. Raises ConfigError."""
    return parse_config(DataConfig, params.get("data"), "data")


def run_list(params: dict) -> list[tuple[str, int]]:
    """(method, seed) of every run: runs.methods x runs.seeds. Raises ConfigError on unknown methods."""
    runs = params.get("runs") or {}
    unknown_keys = sorted(set(runs) - {"methods", "seeds"})
    if unknown_keys:
        raise ConfigError(f"runs: unknown keys {unknown_keys}; valid keys: methods, seeds")
    methods, seeds = runs.get("methods", ["itnas"]), runs.get("seeds", [0])
    bad = [m for m in methods if m not in list_methods()]
    if bad:
        raise ConfigError(f"runs.methods: unknown methods {bad}; valid methods: {', '.join(list_methods())}")
    bad_seeds = [s for s in seeds if not isinstance(s, int) or isinstance(s, bool)]
    if bad_seeds:
        raise ConfigError(f"runs.seeds: {bad_seeds} are not integers")
    unknown = sorted(set(params.get("methods") or {}) - set(list_methods()))
    if unknown:
        raise ConfigError(f"methods: unknown method blocks {unknown}; valid methods: {', '.join(list_methods())}")
    return [(m, s) for m in methods for s in seeds]


def search_config(params: dict, method: str, seed: int) -> SearchConfig:
    """The `search` block deep-merged with `methods.<method>`, with method and seed set by the run.

    Raises ConfigError (unknown method, unknown key, bad value, a space without a final network or table)."""
    if method not in list_methods():
        raise ConfigError(f"unknown method {method!r}; valid methods: {', '.join(list_methods())}")
    shared = params.get("search") or {}
    overrides = (params.get("methods") or {}).get(method) or {}
    for key in ("method", "seed"):
        if key in shared or key in overrides:
            raise ConfigError(f"search.{key} is set by the run (runs.methods / runs.seeds), not in search or methods")
    merged = {**deep_merge(shared, overrides), "method": method, "seed": seed}
    where = f"search (with methods.{method})" if overrides else "search"
    cfg = parse_config(SearchConfig, merged, where)
    if not has_final_network(cfg.supernet.space):
        raise ConfigError(f"search.supernet.space={cfg.supernet.space!r}: the train stage has no final network for "
                          f"this space and no table evaluator is installed yet; spaces with a final network: "
                          f"{', '.join(s for s in list_spaces() if has_final_network(s))}")
    return cfg


def derive_config(params: dict) -> DeriveConfig:
    """The `derive` block. Raises ConfigError."""
    return parse_config(DeriveConfig, params.get("derive"), "derive")


def train_config(params: dict) -> TrainConfig:
    """The `train` block. Raises ConfigError."""
    return parse_config(TrainConfig, params.get("train"), "train")


def eval_config(params: dict) -> EvalConfig:
    """The `evaluate` block. Raises ConfigError."""
    return parse_config(EvalConfig, params.get("evaluate"), "evaluate")


def validate_params(params: dict) -> None:
    """Check the whole params file at once (every block, every method's resolved search config), so that a typo
    in a block that the current stage does not read still stops it. Raises ConfigError."""
    resolve_device(params)
    data_config(params)
    pairs = run_list(params)
    for method in dict.fromkeys([m for m, _ in pairs] + list(params.get("methods") or {})):
        search_config(params, method, 0)
    derive_config(params)
    train_config(params)
    eval_config(params)


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


def checkpoint_for(path: Path, config: dict) -> None:
    """Before a stage runs: keep a checkpoint of the same config (the run resumes from it), discard one of other
    params or data, and stop with an error naming an unreadable one (CheckpointError)."""
    from itnas.checkpoint import CheckpointMismatch, load_checkpoint

    if not path.exists():
        return
    try:
        ck = load_checkpoint(path, config)
        console.print(f"resuming from {path} ({ck['epoch']} epochs done)")
    except CheckpointMismatch:
        console.print(f"[yellow]{path} holds a run of other params or data; starting over")
        path.unlink()


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
def epoch_progress(description: str, epochs: int, steps_per_epoch: int) -> Iterator[tuple]:
    """A progress bar over all steps of an epoch loop; yields (on_step, print) for the library's callbacks."""
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


def load_output(path: Path) -> dict:
    """torch.load a stage output (a DVC output: the advice is `dvc checkout` / `dvc repro`, never deleting it)."""
    from itnas.checkpoint import LOAD_ERRORS, CheckpointError

    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run `dvc repro` (or `dvc checkout` to restore it)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except LOAD_ERRORS as err:
        raise CheckpointError(f"{path} is unreadable ({type(err).__name__}: {err}); restore it with `dvc checkout` "
                              f"or rebuild it with `dvc repro`") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not an itnas stage output; restore it with `dvc checkout`")
    return payload
