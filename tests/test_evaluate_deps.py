"""The evaluate stage depends on the derived genotypes only, not on the search: no search folder (supernet.pt), no
search_metrics.json (its search_time_s differs on every search run) and not the search loop or the supernet (itnas/
search.py, supernet.py), so a new search, or an edit of that code, that derives the same genotypes retrains no final
network. (The method registry is itnas/methods.py, light: itnas/config.py imports it, not the alpha maths of
itnas/arch.py.) The derive stage writes both
derivations (derivations.json) for the nb201 look-up; the report takes the search time from search_metrics.json.

The chains run in-process on the tiny digits project (tests/tiny_project.py), with the search outputs moved away
before `itnas evaluate`, which must not need them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from tiny_project import itnas, one_line_error, tiny_params, write_params

from itnas.contracts import SearchMetrics
from itnas.evaluators.nb201 import NB201Metrics
from itnas.evaluators.train import TrainMetrics as RunMetrics
from itnas.genotype import Genotype
from itnas.report import load_run
from itnas.run import RunRecord
from itnas_tools.dvc_deps import stage_closure
from pipeline.paths import run_record

ROOT = Path(__file__).resolve().parents[1]
CHAIN = "runs/${item.benchmark}/${item.method}-s${item.seed}"
SEARCH_CODE = ("itnas/search.py", "itnas/supernet.py", "pipeline/search.py", "pipeline/derive.py")


def _stage(name: str) -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][name]


def _deps(name: str) -> list[str]:
    return [d if isinstance(d, str) else next(iter(d)) for d in _stage(name)["deps"]]


# ----------------------------------------------------------------------------------------------------- dvc.yaml


@pytest.mark.parametrize("stage,runs_deps", [
    ("train", [f"{CHAIN}/genotype.json"]),
    ("evaluate", [f"{CHAIN}/train"]),  # the trained network (train/model.pt holds its genotype)
    ("evaluate-table", [f"{CHAIN}/genotype.json", f"{CHAIN}/derivations.json", f"{CHAIN}/epoch_genotypes.json"])])
def test_train_and_evaluate_deps_hold_no_search_output_and_no_search_code(stage, runs_deps):
    deps = _deps(stage)
    assert [d for d in deps if d.startswith("runs")] == runs_deps
    assert not [d for d in deps if d in SEARCH_CODE or d in ("itnas", "pipeline")]  # nor a package covering them
    closure = {p.as_posix() for p in stage_closure(_stage(stage)["cmd"], ROOT)}
    assert not closure & set(SEARCH_CODE), f"the {stage} stage imports search code"


def test_the_test_pass_is_no_dependency_of_the_train_stage():
    """How a trained network is tested (the train evaluator's `test_network`, itnas/evaluators/) is a dep of
    evaluate, not of train (nor is the report): a change of the test pass re-evaluates without retraining. Every
    stage reads the light evaluator registry (itnas/evaluators/__init__.py, through the params model), which
    imports no evaluator."""
    light = "itnas/evaluators/__init__.py"
    for stage in ("check", "prepare", "search", "derive", "train"):
        closure = {p.as_posix() for p in stage_closure(_stage(stage)["cmd"], ROOT)}
        assert {p for p in closure if p.startswith(("itnas/evaluators", "itnas/report"))} == {light}, stage
        assert [d for d in _deps(stage) if d.startswith(("itnas/evaluators", "itnas/report"))] == [light], stage
        assert "pipeline/evaluate.py" not in closure
    evaluate = {p.as_posix() for p in stage_closure(_stage("evaluate")["cmd"], ROOT)}
    assert {"itnas/evaluators/train.py", "itnas/evaluators/registry.py", "pipeline/evaluate.py"} <= evaluate


@pytest.mark.parametrize("stage", ["evaluate", "evaluate-table"])
def test_the_report_code_is_no_dependency_of_the_evaluate_stages(stage):
    """How the report shows a result (itnas/report/*, the evaluators' *_report modules) is a dep of the report stage
    only (review defect 4): editing it reruns the report, never an evaluate stage."""
    report_side = ("itnas/report", "itnas/evaluators/train_report.py", "itnas/evaluators/nb201_report.py",
                   "itnas/evaluators/reports.py")
    closure = {p.as_posix() for p in stage_closure(_stage(stage)["cmd"], ROOT)}
    assert {"itnas/evaluators/train.py", "itnas/evaluators/nb201.py", "itnas/evaluators/registry.py"} <= closure
    assert not {p for p in closure if p.startswith(report_side)}, stage
    assert not [d for d in _deps(stage) if d.startswith(report_side)], stage
    report = _deps("report")
    assert "itnas/report" in report and set(report_side[1:]) <= set(report)


def test_the_test_resize_is_an_evaluate_param_not_a_train_param():
    """How test images are resized (`evaluate.test_resize`, review defect 3) is a key of the evaluate block, which the
    evaluate stages list as a param and train does not; no train key holds it (so it is in no train config,
    model.pt or train checkpoint identity), and a change of it leaves every resolved train config unchanged."""
    from itnas.config import EvalConfig
    from itnas.params import Params
    from itnas.train_config import TrainConfig

    def keys(model: type) -> set[str]:
        out = set()
        for name, field in model.model_fields.items():
            sub = field.annotation
            out |= {f"{name}.{k}" for k in keys(sub)} if isinstance(sub, type) and hasattr(sub, "model_fields") \
                else {name}
        return out

    assert "test_resize" in EvalConfig.model_fields
    assert not [k for k in keys(TrainConfig) if "test_resize" in k]
    for stage in ("evaluate", "evaluate-table"):
        assert "evaluate" in _stage(stage)["params"]
    assert not [p for p in _stage("train")["params"] if str(p).startswith("evaluate")]
    params = tiny_params()
    before = Params.from_dict(params)
    params["evaluate"] = {"test_resize": 64}
    after = Params.from_dict(params)
    assert after.evaluate.test_resize == 64 and before.evaluate.test_resize == 0
    assert after.train_config("tiny") == before.train_config("tiny")


def test_derive_writes_derivations_and_the_report_reads_search_metrics():
    outs = [o if isinstance(o, str) else next(iter(o)) for o in _stage("derive")["outs"]]
    assert f"{CHAIN}/genotype.json" in outs and f"{CHAIN}/derivations.json" in outs
    assert f"{CHAIN}/epoch_genotypes.json" in outs
    assert "runs" in _deps("report")  # covers every chain's search_metrics.json: a new search time reruns the report


# ------------------------------------------------------------------------------------------- chains in-process


def _run(*args: str) -> None:
    result = itnas(*args)
    assert result.exit_code == 0, result.output


def _search_and_derive(benchmark: str, method: str) -> RunRecord:
    for args in (["check-params"], ["prepare", benchmark], ["search", benchmark, method, "0"],
                 ["derive", benchmark, method, "0"]):
        _run(*args)
    return run_record(benchmark, method, 0)


def _derivations(run: RunRecord) -> dict[str, Genotype]:
    data = json.loads(run.derivations.read_text())
    assert set(data) == {"marginal", "sequential"}
    return {mode: Genotype.from_dict(g) for mode, g in data.items()}


def _hide_search_outputs(run: RunRecord, away: Path) -> None:
    """Move the search folder and search_metrics.json out of the run: evaluate must not read them."""
    away.mkdir()
    shutil.move(run.search_dir, away / "search")
    shutil.move(run.search_metrics, away / "search_metrics.json")


def _restore_search_metrics(run: RunRecord, away: Path) -> None:
    shutil.move(away / "search_metrics.json", run.search_metrics)


def test_train_chain_evaluates_without_search_outputs(tmp_path, monkeypatch):
    """derivations.json holds both modes, the `derive.mode` one is genotype.json; the trained chain's metrics hold no
    search time, and the report takes it from search_metrics.json."""
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, tiny_params())
    run = _search_and_derive("tiny", "darts")
    cells = _derivations(run)
    assert cells["marginal"] == Genotype.load(run.genotype)  # derive.mode: marginal (params.yaml)

    _hide_search_outputs(run, tmp_path / "away")
    _run("train", "tiny", "darts", "0")
    _run("evaluate", "tiny", "darts", "0")
    metrics = json.loads(run.metrics.read_text())
    assert metrics.get("search_time_s") is None
    assert RunMetrics.model_validate(metrics).test_images == 100

    # evaluate.test_resize below the trained network's image size (8 px digits): one line, nothing retrained
    params = tiny_params()
    params["evaluate"] = {"test_resize": 4}
    write_params(tmp_path, params)
    model_bytes = run.model.read_bytes()
    result = itnas("evaluate", "tiny", "darts", "0")
    assert result.exit_code == 2
    assert one_line_error(result).startswith("error: evaluate.test_resize=4 must be >= the image size of "
                                             "tiny/darts-s0's trained network (8 px): the test images are resized")
    assert run.model.read_bytes() == model_bytes
    write_params(tmp_path, tiny_params())

    _restore_search_metrics(run, tmp_path / "away")
    search_time = SearchMetrics.model_validate_json(run.search_metrics.read_text()).search_time_s
    assert load_run(run, "train").search_time_s == search_time
    _run("report")
    assert "darts" in json.loads(Path("reports/summary.json").read_text())["tiny"]


def _nb201_params(mode: str) -> dict:
    params = tiny_params()
    params["derive"] = {"mode": mode}
    params["benchmarks"] = {"nbtiny": {"label": "NB201 look-up (tests)", "evaluation": "nb201", "data": {},
                                       "search": {"supernet": {"space": "nb201", "C": 4, "layers": 1}}, "train": {}}}
    params["runs"] = {"tables": ["nbtiny"], "methods": ["itnas"], "seeds": [0]}
    return params


def test_nb201_lookup_reads_derivations_not_the_supernet(tmp_path, monkeypatch):
    """Both derivations of one supernet, derived once (derive.mode only picks genotype.json), looked up without the
    supernet; a genotype.json that is not derivations.json's `derive.mode` cell is refused, and a missing
    derivations.json names the command that writes it."""
    from itnas.nb201 import NB201_METRICS, load_nb201_table

    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, _nb201_params("marginal"))
    run = _search_and_derive("nbtiny", "itnas")
    marginal = _derivations(run)
    assert marginal["marginal"] == Genotype.load(run.genotype)
    write_params(tmp_path, _nb201_params("sequential"))
    _run("derive", "nbtiny", "itnas", "0")
    cells = _derivations(run)
    assert cells == marginal and cells["sequential"] == Genotype.load(run.genotype)

    _hide_search_outputs(run, tmp_path / "away")
    _run("evaluate", "nbtiny", "itnas", "0")
    table = load_nb201_table()
    metrics = json.loads(run.metrics.read_text())
    assert metrics.get("search_time_s") is None
    m = NB201Metrics.model_validate(metrics)
    assert m.derivation == "sequential" and m.arch == cells["sequential"].to_nb201_string()
    assert {k: getattr(m, k) for k in NB201_METRICS} == table.lookup(cells["sequential"])
    details = json.loads(run.details.read_text())
    for mode, cell in cells.items():
        assert details["cells"][mode]["arch"] == cell.to_nb201_string()
    epochs = run.epoch_genotypes_of()  # the trajectory, looked up without the search history
    assert [e for e, _ in epochs] == list(range(3)) and epochs[-1][1] == cells["marginal"]
    assert [{k: p[k] for k in NB201_METRICS} for p in details["trajectory"]] == [table.lookup(g) for _, g in epochs]

    other = next(g for g in (cells["marginal"], Genotype.from_nb201_string(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"))
        if g != cells["sequential"])
    other.save(run.genotype)
    result = itnas("evaluate", "nbtiny", "itnas", "0")
    assert result.exit_code == 2
    assert "genotype.json is not the sequential genotype of runs/nbtiny/itnas-s0/derivations.json" in \
        one_line_error(result)

    run.derivations.unlink()
    result = itnas("evaluate", "nbtiny", "itnas", "0")
    assert result.exit_code == 2
    assert one_line_error(result).endswith("`itnas derive nbtiny itnas 0`")
    cells["sequential"].save(run.genotype)
    shutil.move(tmp_path / "away" / "search", run.search_dir)
    _run("derive", "nbtiny", "itnas", "0")
    run.epoch_genotypes.unlink()
    result = itnas("evaluate", "nbtiny", "itnas", "0")
    assert result.exit_code == 2
    assert "epoch_genotypes.json does not exist (the run's genotype of every search epoch, written by its derive " \
           "stage); run `dvc repro` or `itnas derive nbtiny itnas 0`" in one_line_error(result)

    history = json.loads(run.search_history.read_text())  # a history written before the epoch genotype was kept
    del history[1]["genotype"]
    run.search_history.write_text(json.dumps(history))
    result = itnas("derive", "nbtiny", "itnas", "0")
    assert result.exit_code == 2
    assert "runs/nbtiny/itnas-s0/search/history.json: epoch 1 records no genotype" in one_line_error(result)


@pytest.mark.parametrize("text,match", [("[]", "must map marginal and sequential"),
                                        ('{"marginal": {}}', "must map marginal and sequential"),
                                        ("{", "is not valid JSON")])
def test_a_bad_derivations_file_is_one_line(tmp_path, monkeypatch, text, match):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, _nb201_params("marginal"))
    run = run_record("nbtiny", "itnas", 0)
    run.root.mkdir(parents=True)
    Genotype.from_nb201_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
                               "nor_conv_3x3~2|").save(run.genotype)
    run.derivations.write_text(text)
    result = itnas("evaluate", "nbtiny", "itnas", "0")
    assert result.exit_code == 2 and match in one_line_error(result)
