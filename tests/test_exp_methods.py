"""Issue 19's end-to-end check with the real DVC: on a table benchmark (the nb201 space, looked up in the
NAS-Bench-201 table), `dvc exp run -S 'runs.methods=[itnas,gdas,drnas]'` runs the gdas and drnas chains beside
itnas (search -> derive -> evaluate-table) and `dvc exp show` holds their metrics. A scratch git + DVC project of
this repo's code and dvc.yaml, digits, tiny sizes (about a minute on 2 cores)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from test_pipeline_e2e import ROOT, _run, tiny_params

from itnas.evaluators.nb201 import NB201Metrics
from itnas.genotype import Genotype
from itnas.nb201 import NB201_METRICS, load_nb201_table
from pipeline.paths import run_record

pytestmark = pytest.mark.slow


def test_dvc_exp_run_with_gdas_and_drnas_on_the_nb201_table(tmp_path, monkeypatch):
    for name in ("itnas", "itnas_tools", "pipeline"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    params = tiny_params()
    params["runs"] = {"benchmarks": [], "tables": ["nbtiny"], "methods": ["itnas"], "seeds": [0]}
    del params["benchmarks"]["tiny"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "test"],
                ["git", "config", "user.email", "test@example.invalid"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "init"]):
        _run(cmd, tmp_path)
    _run(["dvc", "exp", "run", "-S", "runs.methods=[itnas,gdas,drnas]"], tmp_path)
    monkeypatch.chdir(tmp_path)
    table = load_nb201_table()
    for method in ("itnas", "gdas", "drnas"):
        run = run_record("nbtiny", method, 0)
        metrics = NB201Metrics.model_validate(json.loads(run.metrics.read_text()))
        assert {k: getattr(metrics, k) for k in NB201_METRICS} == table.lookup(Genotype.load(run.genotype))
        details = json.loads(run.details.read_text())
        assert len(details["trajectory"]) == params["search"]["schedule"]["epochs"]
    summary = json.loads((tmp_path / "reports/summary.json").read_text())
    assert set(summary["nbtiny"]) == {"itnas", "gdas", "drnas"}
    shown = _run(["dvc", "exp", "show", "--json"], tmp_path).stdout
    assert "gdas" in shown and "drnas" in shown
