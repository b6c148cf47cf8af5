"""End to end: the real `dvc repro` of this repo's dvc.yaml on a tiny real subset, in a scratch copy.

Fashion-MNIST (Debian package) when present, else scikit-learn's bundled digits. Checks every stage's outputs,
`dvc metrics show`, the report, that a params change of one method reruns only that method, and that a bad key is
named. (Exact resume of an interrupted search is tested in test_search.py.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from itnas.genotype import Genotype

ROOT = Path(__file__).resolve().parents[1]
HAVE_FMNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists()

pytestmark = pytest.mark.slow


def tiny_params() -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(dataset="fashion_mnist" if HAVE_FMNIST else "digits", root="data/raw",
                          search_train_size=64, search_val_size=64, train_size=256, test_size=200)
    params["runs"] = {"methods": ["itnas", "darts"], "seeds": [0]}
    params["search"].update(C=4, layers=3, epochs=2, warmup_epochs=1, batch_size=32, image_size=8)
    params["train"].update(C=4, layers=3, epochs=1, batch_size=64)
    return params


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env_bin = str(Path(sys.executable).parent)
    import os
    env = {**os.environ, "PATH": env_bin + os.pathsep + os.environ.get("PATH", "")}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A scratch git + DVC project holding this repo's code, dvc.yaml and tiny params; `dvc repro` done."""
    root = tmp_path_factory.mktemp("proj")
    for name in ("itnas", "pipeline"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    _run(["git", "init", "-q"], root)
    _run(["dvc", "init", "-q"], root)
    _run(["dvc", "repro"], root)
    return root


def test_every_stage_writes_its_outputs(project):
    for run in ("itnas-s0", "darts-s0"):
        d = project / "runs" / run
        g = Genotype.load(d / "genotype.json")
        assert g.space == "darts" and len(g.normal) == 8 and len(g.reduce) == 8
        history = json.loads((d / "search" / "history.json").read_text())
        assert [r["epoch"] for r in history] == [0, 1]
        assert history[-1]["genotype"]["space"] == "darts"
        metrics = json.loads((d / "metrics.json").read_text())
        assert metrics["test_images"] == 200 and 0.0 <= metrics["test_acc"] <= 100.0
        assert (d / "train" / "model.pt").exists() and (d / "search_curves.csv").read_text().startswith("epoch,")
    assert "transitions" in json.loads((project / "runs/itnas-s0/search/history.json").read_text())[-1]
    md = (project / "reports" / "report.md").read_text()
    assert "itnas" in md and "darts" in md
    assert (project / "reports" / "report.html").stat().st_size > 10_000


def test_metrics_show_lists_both_methods(project):
    out = _run(["dvc", "metrics", "show", "--json"], project).stdout
    files = json.dumps(json.loads(out))
    assert "runs/itnas-s0/metrics.json" in files and "runs/darts-s0/metrics.json" in files


def test_changing_one_method_reruns_only_it(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["methods"]["darts"] = {"arch_lr": 0.001}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _run(["dvc", "status", "--json"], project).stdout
    changed = set(json.loads(status))
    assert "search@darts-0" in changed
    assert not any(s.startswith(("search@itnas", "train@itnas", "derive@itnas")) for s in changed), changed


def test_bad_params_name_the_key(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["search"]["epocs"] = 3
    bad = project / "bad.yaml"
    bad.write_text(yaml.safe_dump(params))
    proc = subprocess.run([str(Path(sys.executable).parent / "itnas"), "search", "itnas", "0", "--params", str(bad)],
                          cwd=project, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "epocs" in proc.stderr and "valid keys" in proc.stderr
