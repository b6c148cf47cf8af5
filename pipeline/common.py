"""What every stage shares: the torchrun relaunch, checkpoint identities with the code hashes, progress bars, JSON
writing. The params model and its rules are `itnas.params`; identities `itnas.identity`; the process group of the
data-parallel stages `pipeline.parallel` (imported by search and train only, so that the other stages do not depend
on the data-parallel engine)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from itnas.config import ConfigError
from itnas.errors import ItnasError
from itnas.identity import identity_diff, run_identity
from itnas.params import Chain, Params

console = Console(stderr=True)


def setup_logging(verbose: bool = False) -> None:
    """Log through Rich to stderr; silence DDP's "Grad strides do not match bucket view strides" warning (the
    depthwise weights (C, 1, k, k) have a size-1 dimension whose stride is arbitrary: their gradients differ from
    DDP's bucket view only there, with the same memory layout, so the warning, once per process, is noise)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)], force=True)
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")


def torchrun_command(params: Params, argv: list[str]) -> list[str] | None:
    """The command that reruns `itnas ARGV` under torchrun when `distributed` asks for more than one process and
    this process is not one of torchrun's already (no LOCAL_RANK in the environment); None otherwise. One node:
    `--standalone`; several: c10d rendezvous at distributed.rdzv_endpoint (start the same command on every node)."""
    cfg = params.distributed
    if cfg.world_size <= 1 or "LOCAL_RANK" in os.environ:
        return None
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={cfg.nproc_per_node}",
           f"--nnodes={cfg.nnodes}"]
    if cfg.nnodes == 1:
        cmd.append("--standalone")
    else:
        cmd += ["--rdzv_backend=c10d", f"--rdzv_endpoint={cfg.rdzv_endpoint}", "--rdzv_id=itnas"]
    return [*cmd, "-m", "pipeline.cli", *argv]


RANK_ERRORS_ENV = "ITNAS_RANK_ERRORS"
"""Environment variable naming the folder where a torchrun rank leaves its user error for `launch` to print."""


def launch(cmd: list[str]) -> None:
    """Run the torchrun command `cmd` (`torchrun_command`) in this process and wait for its ranks. A rank that stops
    on a user error leaves its message in a folder named by `RANK_ERRORS_ENV` (`report_rank_error`); when the job
    fails, the message of the lowest such rank is raised here as an ItnasError (the one `error: ...` line, exit code
    2), instead of torchrun's failure summary. A job that fails otherwise (a bug, a killed process) prints torchrun's
    summary and exits with code 1.

    Raises:
        ItnasError: a rank's user error (the message it raised, and which rank).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    for name in list(logging.root.manager.loggerDict):  # the agent's per-worker log lines: its summary says it
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="itnas-ranks-") as folder:
        os.environ[RANK_ERRORS_ENV] = folder  # the ranks inherit it
        try:
            run(get_args_parser().parse_args(cmd[cmd.index("torch.distributed.run") + 1:]))
        except ChildFailedError as err:
            errors = sorted(Path(folder).glob("rank-*.txt"), key=lambda f: int(f.stem.split("-")[1]))
            if errors:
                rank = errors[0].stem.split("-")[1]
                raise ItnasError(f"{errors[0].read_text()} (process {rank} of the torchrun job)") from None
            console.print(err.format_msg(), soft_wrap=True, markup=False, highlight=False)
            sys.exit(1)
        finally:
            os.environ.pop(RANK_ERRORS_ENV, None)


def report_rank_error(message: str) -> bool:
    """In a rank of a job started by `launch`: leave a user error's `message` for the launcher to print (True);
    elsewhere (a plain process, or a torchrun job started by hand) do nothing (False: print it yourself)."""
    folder = os.environ.get(RANK_ERRORS_ENV)
    if not folder or "RANK" not in os.environ or not Path(folder).is_dir():
        return False
    (Path(folder) / f"rank-{int(os.environ['RANK'])}.txt").write_text(message)
    return True


CODE_ROOT = Path(__file__).resolve().parents[1]
"""The source checkout that holds this package (and, in a checkout, dvc.yaml)."""


def code_identity(stage_cmd: str, root: Path = CODE_ROOT) -> dict[str, str]:
    """{file: SHA-256 (16 hex chars)} of every code file that `stage_cmd` (e.g. "itnas search fmnist itnas 0") runs:
    the code deps that `root`/dvc.yaml lists for the stages whose command runs the same `itnas` subcommand (deps in a
    folder holding an __init__.py, i.e. a Python package; folders expanded to their files, byte-code aside). Those
    lists are generated from the imports and checked by `itnas_tools.dvc_deps`, which is not imported here: a dev
    tool is no part of any stage's code. Part of a checkpoint's identity, so that a checkpoint of other code is not
    resumed. Without dvc.yaml or a stage of that command (an installed package), every .py file of itnas/ and
    pipeline/ is hashed.

    Raises:
        ConfigError: dvc.yaml is not valid YAML.
    """
    files = _stage_code_files(stage_cmd.split()[:2], root)
    if not files:
        files = {p for pkg in ("itnas", "pipeline") for p in (root / pkg).rglob("*.py") if "__pycache__" not in p.parts}
    return {f.relative_to(root).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()[:16] for f in sorted(files)}


def _stage_code_files(command: list[str], root: Path) -> set[Path]:
    """The code files that root/dvc.yaml lists as deps of the stages whose `cmd` starts with `command` (e.g. ["itnas",
    "search"]); empty without dvc.yaml or such a stage."""
    import yaml

    dvc_file = root / "dvc.yaml"
    if not dvc_file.is_file():
        return set()
    try:
        dvc = yaml.safe_load(dvc_file.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{dvc_file} is not valid YAML: {err}") from None
    files: set[Path] = set()
    for body in (dvc.get("stages") or {}).values():
        body = body.get("do", body) if isinstance(body, dict) else {}
        if not isinstance(body.get("cmd"), str) or body["cmd"].split()[:len(command)] != command:
            continue
        for dep in body.get("deps") or []:
            path = root / (next(iter(dep)) if isinstance(dep, dict) else str(dep))
            if not (root / path.relative_to(root).parts[0] / "__init__.py").is_file():
                continue  # data, runs, params: not code
            files |= ({f for f in path.rglob("*") if f.is_file() and "__pycache__" not in f.parts
                       and f.suffix not in (".pyc", ".pyo")} if path.is_dir() else {path} if path.is_file() else set())
    return files


STAGE_COMMANDS = {"search": "search", "train": "train"}
"""The `itnas` command of the stage that runs a search / a final training (whose code a checkpoint must match)."""


def use_threads(params: Params, device: Any) -> None:
    """Set this process's intra-op threads on a CPU to the `threads` param (0: leave torch's default, one per
    core). A fixed count makes float32 results independent of the machine's core count (README, "The first
    run")."""
    if device.type == "cpu" and params.threads:
        import torch

        torch.set_num_threads(params.threads)
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # processes on this machine (torchrun)
        cores = os.cpu_count() or 1
        if params.threads * local > cores and os.environ.get("LOCAL_RANK", "0") == "0":
            console.print(f"[yellow]threads={params.threads} x {local} process(es) > the {cores} core(s) of this "
                          "machine: OpenMP threads then wait for each other and a step can take several times longer "
                          "(README \"The first run\"); lower `threads`")


def chain_identity(params: Params, kind: str, chain: Chain, **known) -> dict:
    """The identity (`itnas.identity.run_identity`) of the search (`kind` "search") or final training ("train") of
    `chain` under `params`: its resolved config, the data-parallel layout and the code of the stage that runs it
    (`code_identity`), with the parts only a stage knows passed in `known` (data_fingerprint, network). What the
    stage stores in its checkpoint, and what the `check` stage compares checkpoints with."""
    d = params.distributed
    cfg, seed = (chain.search, None) if kind == "search" else (chain.train, chain.seed)
    code = code_identity(f"itnas {STAGE_COMMANDS[kind]} {chain.benchmark} {chain.method} {chain.seed}")
    return run_identity(cfg, seed=seed, world_size=d.world_size, sync_batchnorm=d.sync_batchnorm,
                        threads=params.cpu_threads(), code=code, **known)


def checkpoint_for(path: Path, config: dict) -> list[dict]:
    """Before a stage runs: keep a checkpoint of the same identity (params, data, code: the run resumes from it),
    discard one of another identity with a message saying what differs, and stop with an error naming an
    unreadable one (CheckpointError). A temporary file of an interrupted checkpoint write is removed.

    Returns:
        The epoch records of the kept checkpoint (its "history", the epochs the run will not rerun, which the
        stage replays into its curves, `pipeline.live.EpochLog`); [] when none is kept.
    """
    from itnas.checkpoint import load_checkpoint

    path.with_suffix(path.suffix + ".tmp").unlink(missing_ok=True)
    if not path.exists():
        return []
    ck = load_checkpoint(path)  # an unreadable one: CheckpointError
    reason = identity_diff(ck["config"], config)
    if reason is None:
        console.print(f"resuming from {path} ({ck['epoch']} epochs done)")
        return list(ck["history"])
    console.print(f"[yellow]{path} holds a run of {reason}; discarding it and starting over")
    path.unlink()
    return []


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


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
