"""Experiments in parallel on one machine (README "Many processes, many GPUs, many experiments"): two seeds queued
with `dvc exp run --queue` and run by `dvc queue start -j 2` (two workers) in a scratch git + DVC project of this
repo's code and dvc.yaml (digits, one tiny chain). Each experiment runs in its own workspace: both succeed and
`dvc exp show` holds each one's metrics, with its own seed's run folder. (That the two ran at the same time is not
asserted: on 2 busy cores the workers may well take turns.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
import yaml
from test_pipeline_e2e import ROOT, _run
from tiny_project import tiny_params


@pytest.mark.slow
def test_two_queued_seed_experiments_run_in_parallel(tmp_path):
    for name in ("itnas", "itnas_tools", "pipeline"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    params = tiny_params()  # one chain (tiny, darts), 300 training images for 1 epoch: the queue is under test
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "test"],  # dvc exp commits: an identity
                ["git", "config", "user.email", "test@example.invalid"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "init"]):
        _run(cmd, tmp_path)
    for seed in (1, 2):
        _run(["dvc", "exp", "run", "--queue", "-S", f"runs.seeds=[{seed}]"], tmp_path)
    _run(["dvc", "queue", "start", "-j", "2"], tmp_path)
    deadline = time.time() + 600
    try:
        while True:
            status = _run(["dvc", "queue", "status"], tmp_path).stdout
            if status.count("Success") == 2 or "Failed" in status or time.time() > deadline:
                break
            time.sleep(3)
    finally:  # never leave queue workers behind
        subprocess.run(["dvc", "queue", "stop", "--kill"], cwd=tmp_path, capture_output=True)
    assert status.count("Success") == 2, status
    rows = json.loads(_run(["dvc", "exp", "show", "--json"], tmp_path).stdout)
    found = {}
    for row in rows:
        for exp in row.get("experiments") or []:
            for revision in exp.get("revs", []):
                data = revision.get("data") or {}
                seeds = data["params"]["params.yaml"]["data"]["runs"]["seeds"]
                metrics = data.get("metrics") or {}
                found[seeds[0]] = metrics[f"runs/tiny/darts-s{seeds[0]}/metrics.json"]["data"]["test_acc"]
    assert sorted(found) == [1, 2] and all(0.0 < acc <= 100.0 for acc in found.values()), found
