"""Stage `check`: the first stage of dvc.yaml. Validates the whole params file (`itnas.params.load_params`), removes
the checkpoints that no stage of these params and this code can resume (`remove_stale_checkpoints`), and writes a
marker whose bytes never change. The stage depends on params.yaml itself, so any params change reruns it and a bad
key stops `dvc repro` / `dvc exp run` at once; `prepare` depends on the marker, so the check runs before any other
stage, and an unchanged marker reruns nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

from itnas.checkpoint import CheckpointError, load_checkpoint
from itnas.identity import identity_diff
from itnas.params import Params, load_params

from .common import chain_identity, console
from .paths import CKPT_DIR, PARAMS_CHECKED, checkpoint, run_record

MARKER_TEXT = ("params.yaml passed `itnas check-params` (stage `check` of dvc.yaml). This file never changes: the "
               "prepare stage depends on it only to run after the check.\n")


def check_params(params_file: str = "params.yaml") -> None:
    params = load_params(params_file)
    removed = remove_stale_checkpoints(params)
    if not PARAMS_CHECKED.exists() or PARAMS_CHECKED.read_text() != MARKER_TEXT:
        PARAMS_CHECKED.write_text(MARKER_TEXT)
    runs = params.chains()
    console.print(f"{params_file}: valid ({len(runs)} chains: {', '.join(run_record(*r).name for r in runs)})"
                  + (f"; removed {len(removed)} stale checkpoint(s)" if removed else ""))
    stale = stale_figures(params, Path(params_file).parent / "dvc.yaml")
    if stale:
        console.print(f"[yellow]{stale}")


def stale_figures(params: Params, dvc_file: Path) -> str | None:
    """A warning when dvc.yaml's figures (its top-level `plots:`, one series per chain; `itnas_tools.dvc_plots`)
    are not those of `params`' `runs` (e.g. after `dvc exp run -S 'runs.methods=[...]'`), naming the chains
    `dvc plots show` would not draw and those it would draw from the files of an earlier run; else None (None too
    when there is no `dvc_file`)."""
    import yaml

    from .figures import listed_chains, plots_section, rewrite_plots

    if not dvc_file.is_file():
        return None
    text = dvc_file.read_text()
    if rewrite_plots(text, plots_section(params.runs.model_dump())) == text:
        return None
    wanted = {run_record(*c).name for c in params.chains()}
    listed = listed_chains((yaml.safe_load(text) or {}).get("plots"))
    missing, extra = sorted(wanted - listed), sorted(listed - wanted)
    what = "; ".join(part for part in (
        f"chains not drawn: {', '.join(missing)}" if missing else "",
        f"chains drawn from an earlier run's files: {', '.join(extra)}" if extra else "") if part)
    return (f"dvc.yaml's figures (top-level plots) are not those of these runs ({what or 'other figures'}): run "
            "`python -m itnas_tools.dvc_plots --write` (the stages are unaffected)")


def stale_checkpoints(params: Params) -> list[tuple[Path, str]]:
    """(path, reason) of every checkpoint under `CKPT_DIR` that no stage of `params` can resume: chain folders of
    (benchmark, method, seed) that `runs` no longer lists, and search / training checkpoints of other params or code
    (`chain_identity`, compared without the data fingerprint and the network: those are checked when the stage
    starts). An unreadable checkpoint is left for its stage to report."""
    if not CKPT_DIR.is_dir():
        return []
    runs = {run_record(*r).name: r for r in params.chains()}
    stale = []
    for folder in sorted(p for p in CKPT_DIR.glob("*/*") if p.is_dir()):
        name = folder.relative_to(CKPT_DIR).as_posix()
        if name not in runs:
            stale.append((folder, f"chain {name} is not in (runs.benchmarks, runs.tables) x runs.methods x runs.seeds"))
            continue
        run, chain = run_record(*runs[name]), params.chain(*runs[name])
        for kind in ("search", "train"):
            path = checkpoint(run, kind)
            if not path.exists() or (kind == "train" and chain.train is None):
                continue
            try:
                reason = identity_diff(load_checkpoint(path)["config"], chain_identity(params, kind, chain),
                                       partial=True)
            except CheckpointError:
                continue
            if reason is not None:
                stale.append((path, f"a run of {reason}"))
    return stale


def remove_stale_checkpoints(params: Params) -> list[Path]:
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
