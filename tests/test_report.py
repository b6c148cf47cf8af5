"""Report: one table row per (method, seed), mean ± sample std per method, one self-contained HTML page; the
transition/attention records the search writes (`itnas.records`) and the report draws.

Runs are made by the real library: a tiny search (`run_search`, C=4, 3 cells, 8x8 images), its derived genotype
and history, so the report is tested on the formats the search, derive and evaluate stages write.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from itnas.arch import Architecture, get_method, list_methods
from itnas.config import SearchConfig
from itnas.derive import derive_genotype
from itnas.records import transition_records
from itnas.report import (
    SELECTION_RULE,
    RunFilesMissing,
    RunResult,
    ablation_table,
    load_published,
    load_run,
    method_summary,
    write_html,
    write_markdown,
)
from itnas.search import run_search
from itnas.spaces import create_space

METHODS, SEEDS = ("itnas", "darts"), (0, 1)
TEST_ACC = {("itnas", 0): 81.25, ("itnas", 1): 83.5, ("darts", 0): 79.0, ("darts", 1): 80.75}


class _TinyImages(Dataset):
    """n random 1x8x8 images, 3 classes; yields (x (1, 8, 8), label, index) like `itnas.data.ImageDataset`."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.x, self.y = torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], i


def _fabricate_run(root: Path, method: str, seed: int, test_acc: float, epochs: int = 2) -> Path:
    """Search for `epochs` epochs and write runs/<method>-s<seed>/{metrics.json, genotype.json,
    search/history.json} as the stages would."""
    cfg = SearchConfig(method=method, seed=seed, supernet={"C": 4, "layers": 3, "track_running_stats": False},
                       architecture={"alpha_init_scale": 1.0}, arch_optimizer={"lr": 0.05},
                       schedule={"epochs": epochs, "val_every": 0}, data={"batch_size": 8})
    result = run_search(cfg, _TinyImages(16, seed), _TinyImages(16, seed + 100), 3, 1)
    genotype = derive_genotype(result.model.arch)
    run = root / "runs" / f"{method}-s{seed}"
    (run / "search").mkdir(parents=True)
    genotype.save(run / "genotype.json")
    (run / "search" / "history.json").write_text(json.dumps(result.history))
    (run / "metrics.json").write_text(json.dumps({
        "test_acc": test_acc, "test_loss": 0.5, "test_images": 1000, "params_m": 0.0123, "madds_m": 1.5,
        "params_m_c36_l20": 3.3, "madds_m_c36_l20_32px": 540.2, "collapse_count": genotype.collapse_count,
        "search_time_s": 10.0 + seed, "train_time_s": 5.0}))
    return run


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    for (method, seed), acc in TEST_ACC.items():
        _fabricate_run(root, method, seed, acc)
    return root


@pytest.fixture(scope="module")
def runs(runs_root) -> list[RunResult]:
    return [load_run(runs_root / "runs" / f"{m}-s{s}", m, s) for m in METHODS for s in SEEDS]


# ------------------------------------------------------------------------------------------- transition records
@pytest.mark.parametrize("space_name", ["darts", "nb201"])
@pytest.mark.parametrize("method", list_methods())
def test_transition_records(method, space_name):
    torch.manual_seed(0)
    space = create_space(space_name)
    arch = Architecture(space, method, alpha_init_scale=1.0)
    with torch.no_grad():  # away from the uniform initialisation, so that misaligned records would show
        for p in arch.parameters():
            p.copy_(torch.randn_like(p))
    transitions, attention = transition_records(arch)
    assert json.loads(json.dumps([transitions, attention])) == [transitions, attention]  # JSON-ready
    if get_method(method).inner == "independent":  # darts, pcdarts: no inner edges with transitions
        assert transitions == {} and attention == {}
        return
    assert set(transitions) == set(attention) == set(space.cell_types)
    K, edges = space.n_ops, [list(e) for e in space.edges]
    with torch.no_grad():
        alphas = arch().alphas
    for t, cell in arch.cells.items():
        records = transitions[t]
        assert [(r["pred"], r["edge"]) for r in records] == [(edges[p], edges[e]) for p, e in cell.pairs]
        for r in records:
            assert r["pred"][1] == r["edge"][0]  # the predecessor ends where the inner edge starts
            m = torch.tensor(r["matrix"], dtype=torch.float64)
            assert m.shape == (K, K)
            torch.testing.assert_close(m.sum(1), torch.ones(K, dtype=torch.float64), atol=1e-6, rtol=0)
        assert [a["edge"] for a in attention[t]] == [edges[e] for e in cell.inner_edges]
        for a in attention[t]:
            e = space.edge_index(*a["edge"])
            assert a["preds"] == [edges[p] for p in space.predecessors[e]] == [
                r["pred"] for r in records if r["edge"] == a["edge"]]
            assert len(a["weights"]) == len(a["preds"]) and sum(a["weights"]) == pytest.approx(1.0, abs=1e-6)
            # the records alone rebuild alpha_e = sum_p w_e[p] * alpha_p^T T_{p->e} (docs/method.md 2.3)
            mats = [torch.tensor(r["matrix"]) for r in records if r["edge"] == a["edge"]]
            rebuilt = sum(w * alphas[t][space.edge_index(*p)] @ m
                          for w, p, m in zip(a["weights"], a["preds"], mats, strict=True))
            torch.testing.assert_close(rebuilt, alphas[t][e], atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------- loading
def test_load_run_reads_every_file(runs):
    r = runs[0]
    assert (r.method, r.seed, r.name) == ("itnas", 0, "itnas-s0")
    assert r.test_acc == TEST_ACC[("itnas", 0)]
    assert len(r.history) == 2 and r.collapse_count == r.genotype.collapse_count
    records = r.history[-1]["transitions"]["normal"]
    assert isinstance(records, list) and {"pred", "edge", "matrix"} <= set(records[0])
    assert runs[-1].history[-1]["transitions"] == {}  # darts: nothing to record


@pytest.mark.parametrize("name, stage", [("metrics.json", "evaluate"), ("genotype.json", "derive")])
def test_missing_file_names_the_file(tmp_path, name, stage):
    run = _fabricate_run(tmp_path, "darts", 0, 80.0, epochs=1)
    (run / name).unlink()
    with pytest.raises(RunFilesMissing) as info:
        load_run(run, "darts", 0)
    err = info.value
    assert isinstance(err, FileNotFoundError) and err.path == run / name and err.stage == stage
    assert str(run / name) in str(err)
    assert "dvc" not in str(err) and "itnas " not in str(err)  # the library knows no pipeline commands


def test_report_stage_advises_the_command(tmp_path, monkeypatch):
    from pipeline.report import report

    run = _fabricate_run(tmp_path, "darts", 0, 80.0, epochs=1)
    (run / "metrics.json").unlink()
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text("runs:\n  methods: [darts]\n  seeds: [0]\n")
    with pytest.raises(FileNotFoundError, match=r"metrics\.json.*evaluate stage.*`itnas evaluate darts 0`"):
        report("params.yaml")


def test_history_in_an_older_format_is_refused(tmp_path):
    run = _fabricate_run(tmp_path, "itnas", 0, 80.0, epochs=1)
    history = json.loads((run / "search" / "history.json").read_text())
    history[-1]["transitions"]["normal"] = {"(0, 2)->(2, 3)": [[1.0]]}  # string-keyed dict, as before itnas.records
    (run / "search" / "history.json").write_text(json.dumps(history))
    with pytest.raises(ValueError, match=r"history\.json.*transitions\['normal'\].*pred, edge, matrix"):
        load_run(run, "itnas", 0)


def test_missing_history_gives_empty_history(tmp_path):
    run = _fabricate_run(tmp_path, "darts", 0, 80.0, epochs=1)
    (run / "search" / "history.json").unlink()
    r = load_run(run, "darts", 0)
    assert r.history == []
    write_html([r], tmp_path / "report.html")  # a run without history still renders (search plots left out)


# ----------------------------------------------------------------------------------------------------- tables
def test_table_has_one_row_per_run(runs):
    table = ablation_table(runs)
    for (method, seed), acc in TEST_ACC.items():
        rows = [line for line in table.splitlines() if line.startswith(f"| {method} | {seed} |")]
        assert len(rows) == 1, (method, seed)
        cells = [c.strip() for c in rows[0].strip("|").split("|")]
        assert len(cells) == 13
        assert cells[-1] == f"{acc:.2f}"
        run = next(r for r in runs if (r.method, r.seed) == (method, seed))
        d = run.history[-1]["decisiveness"]
        assert cells[4].strip("*") == f"{d['min_margin']:.2g} / {d['median_margin']:.2g}"
        assert cells[5] == f"{d['max_alpha']:.3f}"


def test_summary_is_mean_and_sample_std(runs):
    table = ablation_table(runs)
    summaries = {s.method: s for s in method_summary(runs)}
    for method in METHODS:
        acc = np.array([TEST_ACC[(method, s)] for s in SEEDS])
        s = summaries[method]
        assert s.n == len(SEEDS)
        assert s.test_acc_mean == pytest.approx(acc.mean())
        assert s.test_acc_std == pytest.approx(acc.std(ddof=1))
        row = next(line for line in table.splitlines() if line.startswith(f"| {method} | 0, 1 |"))
        mean, std = map(float, re.search(r"\| ([\d.]+) ± ([\d.]+) \(n=2\) \|", row).groups())
        assert mean == pytest.approx(acc.mean(), abs=0.005)
        assert std == pytest.approx(acc.std(ddof=1), abs=0.005)
    assert SELECTION_RULE in table


def test_single_seed_has_no_std(runs):
    s = method_summary(runs[:1])[0]
    assert s.n == 1 and s.test_acc_std is None
    row = next(line for line in ablation_table(runs[:1]).splitlines() if line.startswith("| itnas | 0 | 81.25"))
    assert "(n=1)" in row and "±" not in row


def test_published_numbers_have_sources():
    published = load_published()
    assert [e["method"] for e in published["cifar10"]] == ["DARTS (2nd order)", "PC-DARTS", "DrNAS",
                                                           "best cell in NB201"]
    for entry in published["cifar10"]:
        assert entry["nb201"]["source"] and len(entry["nb201"]["test_acc_pct"]) == 3
        assert entry["darts_space"] is None or entry["darts_space"]["source"]
    assert all(e["source"] for e in published["imagenet"])


def test_markdown_report(runs, tmp_path):
    path = tmp_path / "reports" / "report.md"
    write_markdown(runs, path, {"dataset": "fashion_mnist", "test_images": 1000, "commands": ["dvc repro"]})
    text = path.read_text()
    assert "fashion_mnist" in text and "1000 test images" in text and "dvc repro" in text
    assert "(report.html)" in text and SELECTION_RULE in text
    assert "CIFAR-10" in text and "not comparable" in text
    assert "| DARTS (2nd order) | 2.76 ± 0.09 | 3.3 | 1 | 54.30 / 15.61 / 16.32 (collapses to all skip) |" in text
    assert "| best cell in NB201 | – | – | – | 94.37 / 73.51 / 47.31 |" in text
    assert "ImageNet top-1 error (%): DARTS 26.7, PC-DARTS 24.2." in text
    for r in runs:
        assert r.genotype.cell_string("normal") in text


# ------------------------------------------------------------------------------------------------------- page
def test_html_is_one_self_contained_page(runs, tmp_path):
    path = tmp_path / "report.html"
    write_html(runs, path)
    text = path.read_text()
    assert len(re.findall(r"\* plotly\.js v\d", text)) == 1  # the plotly.js bundle, embedded once
    assert not re.search(r"<script[^>]*\ssrc=", text)  # nothing loaded from outside the file
    assert text.count("<html") == 1
    # (a) + (b) and (c) per run + (d) for itnas runs only (2 cell types + attention) + (e)
    assert text.count("Plotly.newPlot(") == 1 + 2 * len(runs) + 3 * len(SEEDS) + 1
    assert "itnas-s0, normal cell: transition matrices" in text
    assert "darts-s0, normal cell: transition matrices" not in text
    # every (predecessor, inner edge) record is one subplot, titled from its [src, dst] lists
    assert len(runs[0].history[-1]["transitions"]["normal"]) == 16  # P pairs of the DARTS cell
    assert re.search(r"\(0,2\) (→|\\u2192) \(2,3\)", text)


def test_report_stage(runs_root, monkeypatch):
    from pipeline.report import report

    monkeypatch.chdir(runs_root)
    Path("params.yaml").write_text(f"runs:\n  methods: {list(METHODS)}\n  seeds: {list(SEEDS)}\n")
    Path("data/prepared/train").mkdir(parents=True, exist_ok=True)
    Path("data/prepared/train/summary.json").write_text(json.dumps({"dataset": "fashion_mnist", "test_size": 1000}))
    report("params.yaml")
    md = Path("reports/report.md").read_text()
    assert "fashion_mnist" in md and all(f"| {m} | {s} |" in md for m in METHODS for s in SEEDS)
    assert Path("reports/report.html").stat().st_size > 1_000_000  # plotly.js is embedded
