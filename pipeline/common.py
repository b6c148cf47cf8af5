"""What every stage shares: params loading (strict), run naming, output paths, device choice, progress bars."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
import yaml
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from itnas.arch import list_methods
from itnas.config import (ConfigError, DataConfig, DeriveConfig, EvalConfig, SearchConfig, TrainConfig,
                          parse_config)

console = Console(stderr=True)

TOP_KEYS = ("device", "data", "runs", "search", "methods", "derive", "train", "evaluate")
DATA_FILE = Path("data/prepared/dataset.pt")
RUNS_DIR = Path("runs")
CKPT_DIR = Path(".itnas_ckpt")


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
    unknown = sorted(set(params) - set(TOP_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {unknown}; valid keys: {', '.join(TOP_KEYS)}")
    return params


def data_config(params: dict) -> DataConfig:
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
    """`search` params, overridden by `methods.<method>`, with method and seed set.

    Raises ConfigError (unknown method, unknown key, bad value)."""
    if method not in list_methods():
        raise ConfigError(f"unknown method {method!r}; valid methods: {', '.join(list_methods())}")
    merged = dict(params.get("search") or {})
    overrides = (params.get("methods") or {}).get(method) or {}
    for key in ("method", "seed"):
        if key in merged or key in overrides:
            raise ConfigError(f"search.{key} is set by the run (runs.methods / runs.seeds), not in search or methods")
    merged.update(overrides)
    merged.update(method=method, seed=seed)
    cfg = parse_config(SearchConfig, merged, f"search+methods.{method}")
    if cfg.space == "nb201":
        raise ConfigError("search.space=nb201: the train stage builds DARTS-space networks; NB201 cells are looked up "
                          "in the benchmark table, not trained (not in this pipeline yet). Valid here: darts, s1-s4")
    if cfg.warmup_epochs >= cfg.epochs:
        raise ConfigError(f"search.warmup_epochs={cfg.warmup_epochs} >= epochs={cfg.epochs} ({method}): the search "
                          f"would never update the architecture")
    return cfg


def derive_config(params: dict) -> DeriveConfig:
    return parse_config(DeriveConfig, params.get("derive"), "derive")


def train_config(params: dict) -> TrainConfig:
    return parse_config(TrainConfig, params.get("train"), "train")


def eval_config(params: dict) -> EvalConfig:
    return parse_config(EvalConfig, params.get("evaluate"), "evaluate")


def run_name(method: str, seed: int) -> str:
    return f"{method}-s{seed}"


def run_dir(method: str, seed: int) -> Path:
    return RUNS_DIR / run_name(method, seed)


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

        def on_step(epoch: int, step: int, n_steps: int, loss: float) -> None:
            progress.update(task, completed=epoch * n_steps + step, info=f"epoch {epoch + 1}/{epochs} loss {loss:.3f}")

        yield on_step, progress.console.print


@contextmanager
def progress_bar(description: str) -> Iterator[Progress]:
    """A Rich progress bar with ETA (to stderr)."""
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, transient=False) as progress:
        yield progress
