"""Stage `check`: the first stage of dvc.yaml. Validates the whole params file (`load_params`), removes the
checkpoints that no stage of these params and this code can resume (`remove_stale_checkpoints`), and writes a
marker whose bytes never change. The stage depends on params.yaml itself, so any params change reruns it and a bad
key stops `dvc repro` / `dvc exp run` at once; `prepare` depends on the marker, so the check runs before any other
stage, and an unchanged marker reruns nothing."""

from __future__ import annotations

from .common import console, load_params, remove_stale_checkpoints, run_list
from .paths import PARAMS_CHECKED, run_name

MARKER_TEXT = ("params.yaml passed `itnas check-params` (stage `check` of dvc.yaml). This file never changes: the "
               "prepare stage depends on it only to run after the check.\n")


def check_params(params_file: str = "params.yaml") -> None:
    params = load_params(params_file)
    removed = remove_stale_checkpoints(params)
    if not PARAMS_CHECKED.exists() or PARAMS_CHECKED.read_text() != MARKER_TEXT:
        PARAMS_CHECKED.write_text(MARKER_TEXT)
    runs = run_list(params)
    console.print(f"{params_file}: valid ({len(runs)} chains: {', '.join(run_name(*r) for r in runs)})"
                  + (f"; removed {len(removed)} stale checkpoint(s)" if removed else ""))
