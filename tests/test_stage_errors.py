"""Bad stage inputs end in one clear line and exit code 2 (issue 10, items 8 and 9): a genotype that can never
compute, and a truncated or foreign DVC output (the advice is `dvc checkout` / `dvc repro`, never deleting it)."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_project import itnas, one_line_error, tiny_params, write_params

from itnas.genotype import PUBLISHED_GENOTYPES, Genotype, GenotypeError

# --------------------------------------------------------------------------- a node that never computes (item 8)


def _with_none(cell: str, edges: int = 2) -> dict:
    """DARTS_V2 with `none` on the first `edges` inputs of node 3 of `cell` (both: the node is always zero)."""
    g = PUBLISHED_GENOTYPES["darts_v2"].to_dict()
    into3 = [k for k, (_, _, d) in enumerate(g[cell]) if d == 3][:edges]
    g[cell] = [["none", s, d] if k in into3 else [op, s, d] for k, (op, s, d) in enumerate(g[cell])]
    return g


@pytest.mark.parametrize("cell,edges", [("normal", 2), ("reduce", 2), ("normal", 1)])
def test_train_stage_refuses_a_none_edge(tmp_path, monkeypatch, cell, edges):
    """`none` on both inputs of a node (always zero), or on one (the DARTS rule never keeps `none`): refused."""
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, tiny_params())
    run = tmp_path / "runs/tiny/darts-s0"
    run.mkdir(parents=True)
    (run / "genotype.json").write_text(json.dumps(_with_none(cell, edges)))
    result = itnas("train", "tiny", "darts", "0")
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = one_line_error(result)
    assert line.startswith(f"error: runs/tiny/darts-s0/genotype.json: {cell} cell: op 'none' on edge (")
    assert ", 3) of a darts-space cell" in line
    assert not (run / "evaluate").exists()


def test_nb201_dead_output_is_a_table_entry_not_a_trained_cell():
    """NB201 cells are table entries, so a dead output is accepted there, and `dead_outputs` names it."""
    g = Genotype.from_nb201_string("|none~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|")
    assert g.dead_outputs() == [3]
    with pytest.raises(GenotypeError, match="edge .* is not in space nb201"):
        Genotype("nb201", (("none", 0, 5),), (3,)).validate()


# ------------------------------------------------------------------- truncated DVC outputs (item 9)


def _truncate(path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_output_advises_dvc_checkout(tmp_path, monkeypatch):
    """The one output a later stage reads as a torch file (derive reads the supernet; evaluate reads JSON only)."""
    stage, output = "derive", "runs/tiny/darts-s0/search/supernet.pt"
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, tiny_params())
    _truncate(tmp_path / output, {"meta": {}, "model": {"w": torch.randn(4096)}})
    result = itnas(stage, "tiny", "darts", "0")
    assert result.exit_code == 2
    line = one_line_error(result)
    assert line.startswith(f"error: {output} is unreadable (")
    assert line.endswith("restore it with `dvc checkout` or rebuild it with `dvc repro`")
    assert "delete" not in line


def test_foreign_output_advises_dvc_checkout_in_one_line(tmp_path, monkeypatch):
    """A readable file of another version: one line (not pydantic's multi-line report), same advice."""
    stage, output, what = "derive", "runs/tiny/darts-s0/search/supernet.pt", "a supernet"
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, tiny_params())
    path = tmp_path / output
    path.parent.mkdir(parents=True)
    torch.save({"meta": {"config": {}}, "config": {"final": {"genotype": {}}}, "model": {}}, path)
    result = itnas(stage, "tiny", "darts", "0")
    assert result.exit_code == 2
    line = one_line_error(result)
    assert line.startswith(f"error: {output} is not {what} of this version (")
    assert line.endswith("restore it with `dvc checkout` or rebuild it with `dvc repro`")


def _report_of(tmp_path, metrics: str, details: str | None = None) -> str:
    """`itnas report` over the tiny project's one chain whose metrics.json (and evaluate/details.json) hold the given
    text; asserts exit code 2 and returns its one error line."""
    write_params(tmp_path, tiny_params())
    run = tmp_path / "runs" / "tiny" / "darts-s0"
    (run / "evaluate").mkdir(parents=True)
    PUBLISHED_GENOTYPES["darts_v2"].save(run / "genotype.json")
    (run / "metrics.json").write_text(metrics)
    if details is not None:
        (run / "evaluate" / "details.json").write_text(details)
    result = itnas("report")
    assert result.exit_code == 2, result.output
    return one_line_error(result)


TRAIN_METRICS = {"evaluation": "train", "test_acc": 90.0, "test_loss": 0.3, "test_images": 100, "params_m": 0.1,
                 "madds_m": 1.0, "params_m_c36_l20": 3.3, "madds_m_c36_l20_32px": 500.0, "collapse_count": 0,
                 "train_time_s": 1.0}


@pytest.mark.parametrize("metrics,details,expected", [
    ("{not json", None, "error: runs/tiny/darts-s0/metrics.json is not valid JSON: Expecting property name enclosed "
                        "in double quotes: line 1 column 2 (char 1)"),
    (json.dumps({"evaluation": "nb201"}), None,
     "error: runs/tiny/darts-s0/metrics.json holds nb201 metrics, but benchmark tiny is evaluated by train; rerun its "
     "evaluate step"),
    (json.dumps({"evaluation": "train", "test_acc": 90.0}), None,
     "error: runs/tiny/darts-s0/metrics.json is not of its evaluator's model (test_loss: Field required; 8 errors); "
     "rerun the evaluate step"),
    (json.dumps(TRAIN_METRICS), json.dumps({"evaluation": "nb201"}),
     "error: runs/tiny/darts-s0/evaluate/details.json holds nb201 details, but runs/tiny/darts-s0/metrics.json holds "
     "train metrics; rerun the evaluate step"),
], ids=["not-json", "other-evaluator", "not-its-model", "details-of-another-evaluator"])
def test_a_run_file_the_report_cannot_use_is_one_line(tmp_path, monkeypatch, metrics, details, expected):
    """A stage output that exists but cannot be used (review defect 7): `StageOutputError`, one line and exit 2,
    naming the file and the stage to rerun (no traceback)."""
    monkeypatch.chdir(tmp_path)
    assert _report_of(tmp_path, metrics, details) == expected


def test_stage_output_error_is_a_user_error_and_a_value_error():
    from itnas.errors import ItnasError, StageOutputError

    assert issubclass(StageOutputError, ItnasError) and issubclass(StageOutputError, ValueError)
