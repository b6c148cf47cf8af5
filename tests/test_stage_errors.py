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
