"""Report stage: one table row per (method, seed), mean ± sample std per method, one self-contained HTML page.

Runs are fabricated from real library objects (tiny supernets, real history records and derived genotypes),
so the report is tested on the formats the search, derive and evaluate stages write.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from itnas.config import SearchConfig
from itnas.derive import derive_genotype
from itnas.report import SELECTION_RULE, RunResult, ablation_table, load_run, method_summary, write_html, write_markdown
from itnas.search import _epoch_record, build_search_model

METHODS, SEEDS = ("itnas", "darts"), (0, 1)
TEST_ACC = {("itnas", 0): 81.25, ("itnas", 1): 83.5, ("darts", 0): 79.0, ("darts", 1): 80.75}


def _fabricate_run(root: Path, method: str, seed: int, test_acc: float, epochs: int = 2) -> Path:
    """Write runs/<method>-s<seed>/{metrics.json, genotype.json, search/history.json} as the stages would."""
    torch.manual_seed(seed)
    model = build_search_model(SearchConfig(method=method, C=4, layers=3, epochs=epochs), 10, 1)
    history = []
    for epoch in range(epochs):
        with torch.no_grad():  # move the architecture a little, so epochs differ
            for p in model.arch_parameters():
                p.add_(0.3 * torch.randn_like(p))
        history.append(_epoch_record(model, epoch, 0.01, {"train_loss": 1.0, "train_acc": 50.0, "time_s": 1.5,
                                                          "arch_updated": epoch > 0}, last=epoch == epochs - 1))
    genotype = derive_genotype(model.arch)
    run = root / "runs" / f"{method}-s{seed}"
    (run / "search").mkdir(parents=True)
    genotype.save(run / "genotype.json")
    (run / "search" / "history.json").write_text(json.dumps(history))
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


def test_load_run_reads_every_file(runs):
    r = runs[0]
    assert (r.method, r.seed, r.name) == ("itnas", 0, "itnas-s0")
    assert r.test_acc == TEST_ACC[("itnas", 0)]
    assert len(r.history) == 2 and "transitions" in r.history[-1]
    assert r.collapse_count == r.genotype.collapse_count


@pytest.mark.parametrize("name, stage", [("metrics.json", "evaluate"), ("genotype.json", "derive")])
def test_missing_file_names_the_stage(tmp_path, name, stage):
    run = _fabricate_run(tmp_path, "darts", 0, 80.0, epochs=1)
    (run / name).unlink()
    with pytest.raises(FileNotFoundError, match=f"{re.escape(name)}.*{stage} stage"):
        load_run(run, "darts", 0)


def test_missing_history_gives_empty_history(tmp_path):
    run = _fabricate_run(tmp_path, "darts", 0, 80.0, epochs=1)
    (run / "search" / "history.json").unlink()
    r = load_run(run, "darts", 0)
    assert r.history == []
    write_html([r], tmp_path / "report.html")  # a run without history still renders (search plots left out)


def test_table_has_one_row_per_run(runs):
    table = ablation_table(runs)
    for (method, seed), acc in TEST_ACC.items():
        rows = [line for line in table.splitlines() if line.startswith(f"| {method} | {seed} |")]
        assert len(rows) == 1, (method, seed)
        cells = [c.strip() for c in rows[0].strip("|").split("|")]
        assert len(cells) == 11
        assert cells[-1] == f"{acc:.2f}"


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


def test_markdown_report(runs, tmp_path):
    path = tmp_path / "reports" / "report.md"
    write_markdown(runs, path, {"dataset": "fashion_mnist", "test_images": 1000, "commands": ["dvc repro"]})
    text = path.read_text()
    assert "fashion_mnist" in text and "1000 test images" in text and "dvc repro" in text
    assert "(report.html)" in text and SELECTION_RULE in text
    assert "CIFAR-10" in text and "not comparable" in text
    for r in runs:
        assert r.genotype.cell_string("normal") in text


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


def test_report_stage(runs_root, monkeypatch):
    from pipeline.report import report

    monkeypatch.chdir(runs_root)
    Path("params.yaml").write_text(f"runs:\n  methods: {list(METHODS)}\n  seeds: {list(SEEDS)}\n")
    Path("data/prepared").mkdir(parents=True, exist_ok=True)
    Path("data/prepared/summary.json").write_text(json.dumps({"dataset": "fashion_mnist", "test_size": 1000}))
    report("params.yaml")
    md = Path("reports/report.md").read_text()
    assert "fashion_mnist" in md and all(f"| {m} | {s} |" in md for m in METHODS for s in SEEDS)
    assert Path("reports/report.html").stat().st_size > 1_000_000  # plotly.js is embedded
