"""Report: per benchmark a method x metric table (mean ± sample std, n), published numbers for scale, one HTML page,
summary.json; the transition/attention records the search writes (`itnas.records`) and the report draws; the cell
graphs' edge labels (no two label boxes overlap).

Train runs are made by the real library: a tiny search (`run_search`, C=4, 3 cells, 8x8 images), its derived
genotype and history, so the report is tested on the formats the search and derive stages write. NB201 runs are
hand-made (an architecture's records as the search writes them, and details.json with chosen numbers), so that
the tables can be checked against exact values.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from itnas.arch import Architecture
from itnas.config import ConfigError, SearchConfig
from itnas.derive import derive_genotype, derive_with_margins, margin_summary
from itnas.evaluators.nb201_report import nb201_cell
from itnas.genotype import PUBLISHED_GENOTYPES, Genotype
from itnas.methods import get_method, list_methods
from itnas.records import alpha_entropy, transition_records
from itnas.report import (
    BenchmarkInfo,
    RunFilesMissing,
    RunResult,
    benchmark_tables,
    genotype_figure,
    label_boxes,
    load_published,
    load_run,
    summary_metrics,
    write_html,
    write_markdown,
)
from itnas.report.cellgraph import boxes_overlap
from itnas.run import RunRecord
from itnas.search import run_search
from itnas.spaces import create_space

METHODS, SEEDS = ("itnas", "darts"), (0, 1)
TEST_ACC = {("itnas", 0): 81.25, ("itnas", 1): 83.5, ("darts", 0): 79.0, ("darts", 1): 80.75}
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
#: NB201 look-ups per (method, seed) and derivation: (arch, CIFAR-10, CIFAR-100, ImageNet16-120 test (%)).
NB201_CELLS = {
    ("itnas", 0): {"marginal": ("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_1x1~1|"
                                "nor_conv_3x3~2|", 93.5, 70.25, 44.0),
                   "sequential": ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
                                  "nor_conv_3x3~2|", 94.0, 72.0, 46.5)},
    ("itnas", 1): {"marginal": ("|nor_conv_1x1~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
                                "nor_conv_3x3~2|", 92.0, 68.75, 43.0),
                   "sequential": (ALL_SKIP, 54.3, 15.61, 16.32)},
    ("darts", 0): {"marginal": (ALL_SKIP, 54.3, 15.61, 16.32), "sequential": (ALL_SKIP, 54.3, 15.61, 16.32)},
    ("darts", 1): {"marginal": (ALL_SKIP, 54.3, 15.61, 16.32),
                   "sequential": ("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|skip_connect~1|"
                                  "nor_conv_1x1~2|", 88.0, 60.0, 30.0)},
}
#: NB201 test accuracies (CIFAR-10, CIFAR-100, ImageNet16-120 (%)) of the cell derived after each of the 2 search
#: epochs, per (method, seed): the search trajectory of details.json (the last epoch's is the marginal cell's).
NB201_TRAJECTORY = {("itnas", 0): [(90.0, 65.0, 40.0), (93.5, 70.25, 44.0)],
                    ("itnas", 1): [(88.0, 60.0, 38.0), (92.0, 68.75, 43.0)],
                    ("darts", 0): [(85.0, 55.0, 30.0), (54.3, 15.61, 16.32)],
                    ("darts", 1): [(87.0, 58.0, 35.0), (54.3, 15.61, 16.32)]}
TABLE_BEST = {"nb201_c10_test": 94.37, "nb201_c100_test": 73.51, "nb201_in16_test": 47.31}
NB201_KEYS = ("nb201_c10_test", "nb201_c100_test", "nb201_in16_test")
TRAIN = BenchmarkInfo("tiny", "digits (tests)", "train", "CPU-reduced search: space darts, C=4, 3 cells",
                      dataset="digits", space="darts")
NB201 = BenchmarkInfo("nb", "NAS-Bench-201 (tests)", "nb201", "CPU-reduced search: space nb201, C=4",
                      dataset="cifar10", space="nb201")


class _TinyImages(Dataset):
    """n random 1x8x8 images, 3 classes; yields (x (1, 8, 8), label, index) like `itnas.data.ImageDataset`."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.x, self.y = torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], i


# ----------------------------------------------------------------------------------------- hand-made run folders
def arch_history(space: str, method: str, seed: int, epochs: int = 2) -> tuple[list[dict], Genotype]:
    """Per-epoch search records as `itnas.search` writes them (alphas, entropies, marginal genotype, collapse count,
    decisiveness, transitions, attention), from an architecture moved at random each epoch; and its genotype."""
    torch.manual_seed(seed)
    arch = Architecture(create_space(space), method, alpha_init_scale=1.0)
    history = []
    for epoch in range(epochs):
        with torch.no_grad():
            for p in arch.parameters():
                p.add_(torch.randn_like(p))
            alphas = arch().alphas
        genotype, decisions = derive_with_margins(arch, "marginal")
        transitions, attention = transition_records(arch)
        history.append({
            "epoch": epoch, "time_s": 1.5, "arch_updated": True, "alphas": {t: a.tolist() for t, a in alphas.items()},
            "alpha_entropy": {t: alpha_entropy(a) for t, a in alphas.items()}, "genotype": genotype.to_dict(),
            "collapse_count": genotype.collapse_count, "transitions": transitions, "attention": attention,
            "decisiveness": {**margin_summary(decisions), "max_alpha": max(float(a.max()) for a in alphas.values())}})
    return history, genotype


def _record(run_dir: Path) -> RunRecord:
    """The RunRecord of <runs>/<benchmark>/<method>-s<seed>."""
    method, seed = run_dir.name.rsplit("-s", 1)
    return RunRecord(run_dir.parent.name, method, int(seed), run_dir.parent.parent)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def write_train_run(run: Path, genotype: Genotype, history: list[dict] | None, test_acc: float, seed: int) -> Path:
    """runs/<benchmark>/<method>-s<seed>/ of a train evaluation, as the stages write it."""
    run.mkdir(parents=True, exist_ok=True)
    genotype.save(run / "genotype.json")
    if history is not None:
        write_json(run / "search" / "history.json", history)
    write_json(run / "metrics.json", {
        "evaluation": "train", "test_acc": test_acc, "test_loss": 0.5, "test_images": 1000,
        "params_m": 0.0123 + 0.001 * seed,
        "madds_m": 1.5, "params_m_c36_l20": 3.3, "madds_m_c36_l20_32px": 540.2,
        "collapse_count": genotype.collapse_count, "search_time_s": 10.0 + seed, "train_time_s": 5.0})
    write_json(run / "evaluate" / "details.json", {"evaluation": "train", "classes": ["a", "b", "c"],
                                                   "accuracy": test_acc, "loss": 0.5, "n": 1000,
                                                   "per_class_accuracy": [test_acc] * 3,
                                                   "confusion_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]})
    return run


def write_nb201_run(run: Path, cells: dict, history: list[dict] | None, derivation: str = "marginal",
                    trajectory: list[tuple[float, float, float]] | None = None) -> Path:
    """runs/<benchmark>/<method>-s<seed>/ of an nb201 evaluation: genotype.json (the `derivation` cell),
    evaluate/details.json with both cells' look-ups (`cells`: mode -> (arch, c10, c100, in16)) and, given
    `trajectory` ((c10, c100, in16) per search epoch) and a history, the look-up of every epoch's cell (the
    history's genotype), metrics.json."""
    looked_up = {}
    for mode, (arch, *values) in cells.items():
        g = Genotype.from_nb201_string(arch)
        looked_up[mode] = {"arch": arch, "collapse_count": g.collapse_count,
                           **dict(zip(NB201_KEYS, values, strict=True)),
                           "nb201_c10_valid": 1.0, "nb201_c100_valid": 2.0, "nb201_in16_valid": 3.0}
    run.mkdir(parents=True, exist_ok=True)
    Genotype.from_nb201_string(cells[derivation][0]).save(run / "genotype.json")
    if history is not None:
        write_json(run / "search" / "history.json", history)
    details = {"evaluation": "nb201", "derivation": derivation, "cells": looked_up,
               "table_best": {k: {"arch": "|nor_conv_3x3~0|+|...|", "value": v} for k, v in TABLE_BEST.items()}}
    if trajectory is not None and history is not None:
        details["trajectory"] = []
        for rec, values in zip(history, trajectory, strict=True):
            g = Genotype.from_dict(rec["genotype"])
            details["trajectory"].append({"epoch": rec["epoch"], "arch": g.to_nb201_string(),
                                          "collapse_count": g.collapse_count,
                                          **dict(zip(NB201_KEYS, values, strict=True)), "nb201_c10_valid": 1.0,
                                          "nb201_c100_valid": 2.0, "nb201_in16_valid": 3.0})
    write_json(run / "evaluate" / "details.json", details)
    write_json(run / "metrics.json", {"evaluation": "nb201", **looked_up[derivation], "derivation": derivation,
                                      "search_time_s": 12.0})
    return run


def _searched_run(root: Path, method: str, seed: int, test_acc: float, epochs: int = 2) -> Path:
    """A tiny real search for `epochs` epochs, written as runs/tiny/<method>-s<seed>/."""
    cfg = SearchConfig(method=method, seed=seed, supernet={"C": 4, "layers": 3, "track_running_stats": False},
                       architecture={"alpha_init_scale": 1.0}, arch_optimizer={"lr": 0.05},
                       schedule={"epochs": epochs, "val_every": 0}, data={"batch_size": 8})
    result = run_search(cfg, _TinyImages(16, seed), _TinyImages(16, seed + 100), 3, 1)
    return write_train_run(root / "runs" / "tiny" / f"{method}-s{seed}", derive_genotype(result.model.arch),
                           result.history, test_acc, seed)


def _handmade_train_run(root: Path, method: str = "darts", seed: int = 0) -> Path:
    history, genotype = arch_history("darts", method, seed, epochs=1)
    return write_train_run(root / "runs" / "tiny" / f"{method}-s{seed}", genotype, history, 80.0, seed)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    for (method, seed), acc in TEST_ACC.items():
        _searched_run(root, method, seed, acc)
    for (method, seed), cells in NB201_CELLS.items():
        history, _ = arch_history("nb201", method, seed)
        write_nb201_run(root / "runs" / "nb" / f"{method}-s{seed}", cells, history,
                        trajectory=NB201_TRAJECTORY[(method, seed)])
    return root


@pytest.fixture(scope="module")
def runs(project) -> list[RunResult]:
    return [load_run(_record(project / "runs" / "tiny" / f"{m}-s{s}")) for m in METHODS for s in SEEDS]


@pytest.fixture(scope="module")
def nb_runs(project) -> list[RunResult]:
    return [load_run(_record(project / "runs" / "nb" / f"{m}-s{s}"), "nb201") for m in METHODS for s in SEEDS]


def _table(tables: list, title_end: str):
    """The table of `tables` whose title ends with `title_end`."""
    found = [t for t in tables if t.title.endswith(title_end)]
    assert len(found) == 1, [t.title for t in tables]
    return found[0]


def _rows(table) -> dict[str, dict[str, str]]:
    """{first cell: {header: cell}} of a `Table`."""
    return {row[0]: dict(zip(table.header, row, strict=True)) for row in table.rows}


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
    assert (r.benchmark, r.method, r.seed, r.name, r.evaluation) == ("tiny", "itnas", 0, "tiny/itnas-s0", "train")
    assert r.metrics["test_acc"] == TEST_ACC[("itnas", 0)] and r.details["evaluation"] == "train"
    assert r.headline == f"test acc {TEST_ACC[('itnas', 0)]:.2f} %"
    assert len(r.history) == 2 and r.collapse_count == r.genotype.collapse_count
    records = r.history[-1]["transitions"]["normal"]
    assert isinstance(records, list) and {"pred", "edge", "matrix"} <= set(records[0])
    assert runs[-1].history[-1]["transitions"] == {}  # darts: nothing to record


def test_load_nb201_run(nb_runs):
    r = nb_runs[1]  # itnas-s1: sequential cell all skip
    assert (r.name, r.evaluation, r.derivation) == ("nb/itnas-s1", "nb201", "marginal")
    for mode, (arch, *values) in NB201_CELLS[("itnas", 1)].items():
        cell = nb201_cell(r, mode)
        assert cell["arch"] == arch and [cell[k] for k in NB201_KEYS] == values
    assert r.genotype.to_nb201_string() == NB201_CELLS[("itnas", 1)]["marginal"][0]
    assert not r.collapsed() and r.collapsed(nb201_cell(r, "sequential")["collapse_count"])
    assert nb_runs[2].collapsed() and nb_runs[2].n_cell_edges == 6  # darts-s0: all skip


def test_nb201_run_without_details_uses_its_metrics(tmp_path):
    run = write_nb201_run(tmp_path / "nb" / "darts-s0", NB201_CELLS[("itnas", 0)], None)
    (run / "evaluate" / "details.json").unlink()
    r = load_run(_record(run))
    assert r.details == {} and r.history == []
    assert nb201_cell(r, "marginal")["nb201_c10_test"] == 93.5 and nb201_cell(r, "sequential") is None
    table = _rows(benchmark_tables(NB201, [r])[0])["darts"]
    assert table["CIFAR-10 test (%), marginal"] == "93.50 (n=1)" and table["CIFAR-10 test (%), sequential"] == "n/a"


def test_metrics_are_read_by_the_evaluator_they_name(tmp_path):
    run = _handmade_train_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    del metrics["evaluation"]  # a file written before the evaluator was recorded: read as the benchmark's
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert load_run(_record(run), "train").evaluation == "train"
    with pytest.raises(ValueError, match=r"names no evaluation"):
        load_run(_record(run))
    (run / "metrics.json").write_text(json.dumps({"evaluation": "train", "accuracy": 1.0}))
    with pytest.raises(ValueError, match=r"metrics.json is not of its evaluator's model \(test_acc: Field required"):
        load_run(_record(run))
    (run / "metrics.json").write_text(json.dumps({**metrics, "evaluation": "nb2O1"}))
    with pytest.raises(ConfigError, match=r"evaluation='nb2O1' \(did you mean 'nb201'\?\); valid values: train, nb201"):
        load_run(_record(run))


def test_metrics_of_the_other_evaluation_are_refused(tmp_path):
    run = _handmade_train_run(tmp_path)
    with pytest.raises(ValueError, match=r"holds train metrics, but benchmark tiny is evaluated by nb201"):
        load_run(_record(run), evaluation="nb201")


@pytest.mark.parametrize("name, stage", [("metrics.json", "evaluate"), ("genotype.json", "derive")])
def test_missing_file_names_the_file(tmp_path, name, stage):
    run = _handmade_train_run(tmp_path)
    (run / name).unlink()
    with pytest.raises(RunFilesMissing) as info:
        load_run(_record(run))
    err = info.value
    assert isinstance(err, FileNotFoundError) and err.path == run / name and err.stage == stage
    assert str(run / name) in str(err)
    assert f"written by its {stage} stage" in str(err)
    assert "dvc" not in str(err) and "itnas " not in str(err)  # the library knows no pipeline commands


def test_history_in_an_older_format_is_refused(tmp_path):
    history, genotype = arch_history("darts", "itnas", 0, epochs=1)
    history[-1]["transitions"]["normal"] = {"(0, 2)->(2, 3)": [[1.0]]}  # string-keyed dict, as before itnas.records
    run = write_train_run(tmp_path / "tiny" / "itnas-s0", genotype, history, 80.0, 0)
    with pytest.raises(ValueError, match=r"history\.json.*transitions\['normal'\].*pred, edge, matrix"):
        load_run(_record(run))


def test_missing_history_and_details_still_render(tmp_path):
    run = _handmade_train_run(tmp_path)
    (run / "search" / "history.json").unlink()
    (run / "evaluate" / "details.json").unlink()
    r = load_run(_record(run))
    assert r.history == [] and r.details == {}
    write_html([(TRAIN, [r])], tmp_path / "report.html")  # search plots left out
    assert "no search history" in (tmp_path / "report.html").read_text()


# ----------------------------------------------------------------------------------------------------- tables
def test_train_table_is_mean_and_sample_std(runs):
    table = benchmark_tables(TRAIN, runs)[0]
    assert table.title.startswith(TRAIN.label) and table.size == TRAIN.size
    rows = _rows(table)
    for method in METHODS:
        acc = [TEST_ACC[(method, s)] for s in SEEDS]
        row = rows[method]
        assert row["seeds"] == "0, 1 (n=2)"
        assert row["test acc (%)"] == f"{statistics.fmean(acc):.2f} ± {statistics.stdev(acc):.2f}"
        group = [r for r in runs if r.method == method]
        mins = [r.history[-1]["decisiveness"]["min_margin"] for r in group]
        assert row["smallest margin"] == f"{statistics.fmean(mins):.2g} ± {statistics.stdev(mins):.2g}"
        assert row["collapsed searches"] == f"{sum(r.collapse_count == 8 for r in group)} of 2"
    single = _rows(benchmark_tables(TRAIN, runs[:1])[0])["itnas"]
    assert single["test acc (%)"] == "81.25 (n=1)" and "±" not in single["test acc (%)"]


def test_train_runs_table_has_one_row_per_run(runs):
    table = benchmark_tables(TRAIN, runs)[-1]
    assert len(table.rows) == len(runs)
    for row, r in zip(table.rows, runs, strict=True):
        assert row[:2] == [r.method, str(r.seed)] and row[-1] == f"{r.metrics['test_acc']:.2f}"
        d = r.history[-1]["decisiveness"]
        assert row[4].rstrip(" *") == f"{d['min_margin']:.2g} / {d['median_margin']:.2g}"


def test_nb201_table_equals_the_details(nb_runs):
    rows = _rows(benchmark_tables(NB201, nb_runs[:1])[0])  # one seed: the details' numbers themselves
    for mode, (_, *values) in NB201_CELLS[("itnas", 0)].items():
        for name, value in zip(("CIFAR-10", "CIFAR-100", "ImageNet16-120"), values, strict=True):
            assert rows["itnas"][f"{name} test (%), {mode}"] == f"{value:.2f} (n=1)"


def test_nb201_table_mean_std_and_collapse(nb_runs):
    table = benchmark_tables(NB201, nb_runs)[0]
    assert table.title == "NAS-Bench-201 (tests): NAS-Bench-201 look-up per method" and table.size == NB201.size
    rows = _rows(table)
    for method in METHODS:
        for mode in ("marginal", "sequential"):
            cells = [NB201_CELLS[(method, s)][mode] for s in SEEDS]
            for k, name in enumerate(("CIFAR-10", "CIFAR-100", "ImageNet16-120"), start=1):
                xs = [c[k] for c in cells]
                assert rows[method][f"{name} test (%), {mode}"] == (
                    f"{statistics.fmean(xs):.2f} ± {statistics.stdev(xs):.2f}")
    # collapsed = every op of the cell parameter-free (collapse count 6); itnas: sequential s1; darts: marginal s0, s1
    assert rows["itnas"]["collapsed searches, marginal"] == "0 of 2"
    assert rows["itnas"]["collapsed searches, sequential"] == "1 of 2"
    assert rows["darts"]["collapsed searches, marginal"] == "2 of 2"
    assert rows["darts"]["collapsed searches, sequential"] == "1 of 2"
    assert rows["darts"]["mean collapse count, marginal"] == "6.0 ± 0.0"
    seq = [Genotype.from_nb201_string(NB201_CELLS[("darts", s)]["sequential"][0]).collapse_count for s in SEEDS]
    assert seq == [6, 3]
    assert rows["darts"]["mean collapse count, sequential"] == f"4.5 ± {statistics.stdev(seq):.1f}"


def test_nb201_scale_table_has_the_table_best_and_published_rows(nb_runs):
    scale = _table(benchmark_tables(NB201, nb_runs), "for scale (NB201 table best and published results)")
    assert scale.title.startswith(NB201.label)
    rows = _rows(scale)
    best = rows["best cell of the NB201 table (per metric)"]
    assert [best[f"{n} test (%)"] for n in ("CIFAR-10", "CIFAR-100", "ImageNet16-120")] == ["94.37", "73.51", "47.31"]
    # each published row says what its numbers are, from its own entry (review defect 11): the NB201 rows are means
    # over searches (NAS-Bench-201 Table 5, the DrNAS table), the last one the table's optimum
    assert list(rows)[1:] == ["published (mean over searches, paper size): DARTS (2nd order)",
                              "published (mean over searches, paper size): PC-DARTS",
                              "published (mean over searches, paper size): DrNAS",
                              "published (mean ± std over searches, paper size): GDAS",
                              "published (table optimum, paper size): best cell in NB201"]
    darts = rows["published (mean over searches, paper size): DARTS (2nd order)"]
    assert (darts["CIFAR-10 test (%)"], darts["note"]) == ("54.30", "collapses to all skip")
    gdas = rows["published (mean ± std over searches, paper size): GDAS"]
    assert [gdas[f"{n} test (%)"] for n in ("CIFAR-10", "CIFAR-100", "ImageNet16-120")] == [
        "93.61 ± 0.09", "70.70 ± 0.30", "41.71 ± 0.98"]
    assert "as quoted" in gdas["source"]
    assert all(row["source"] for row in rows.values())
    every = benchmark_tables(NB201, nb_runs)[-1]
    assert len(every.rows) == 2 * len(nb_runs)  # one row per run and derivation


def test_nb201_trajectory_table_is_mean_and_std_per_epoch(nb_runs):
    table = _table(benchmark_tables(NB201, nb_runs), "search trajectories (NB201 test accuracy per search epoch)")
    assert table.header == ["method", "data set", "n", "epoch 1", "epoch 2"]
    rows = {(row[0], row[1]): row for row in table.rows}
    assert len(rows) == len(METHODS) * 3
    for method in METHODS:
        for k, name in enumerate(("CIFAR-10", "CIFAR-100", "ImageNet16-120")):
            row = rows[(method, name)]
            assert row[2] == "2"
            for epoch in range(2):
                xs = [NB201_TRAJECTORY[(method, s)][epoch][k] for s in SEEDS]
                assert row[3 + epoch] == f"{statistics.fmean(xs):.2f} ± {statistics.stdev(xs):.2f}"


def test_nb201_trajectory_table_shows_at_most_ten_epochs():
    from itnas.evaluators.nb201_report import _shown_epochs

    assert _shown_epochs(list(range(5))) == [0, 1, 2, 3, 4]
    shown = _shown_epochs(list(range(50)))
    assert len(shown) == 10 and shown[0] == 0 and shown[-1] == 49 and shown == sorted(set(shown))


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy: darts has no spread
def test_nb201_pair_table_states_interval_rank_test_and_reading(nb_runs):
    from scipy import stats

    table = _table(benchmark_tables(NB201, nb_runs), "pairwise comparison over seeds")
    assert len(table.rows) == 3  # itnas vs darts on three data sets
    rows = {row[1]: dict(zip(table.header, row, strict=True)) for row in table.rows}
    for k, name in enumerate(("CIFAR-10", "CIFAR-100", "ImageNet16-120"), start=1):
        a = [NB201_CELLS[("itnas", s)]["marginal"][k] for s in SEEDS]
        b = [NB201_CELLS[("darts", s)]["marginal"][k] for s in SEEDS]
        row = rows[name]
        assert row["comparison"] == "itnas vs darts" and row["n"] == "2 / 2"
        assert row["difference (points)"] == f"{statistics.fmean(a) - statistics.fmean(b):+.2f}"
        ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
        assert row["95 % interval (Welch)"] == f"[{ci.low:+.2f}, {ci.high:+.2f}]"
        mw = stats.mannwhitneyu(a, b, alternative="two-sided", method=stats.PermutationMethod(n_resamples=math.inf))
        assert row["Mann-Whitney U, p (two-sided)"] == f"U={mw.statistic:g}, p={mw.pvalue:.2g} (exact)"
        assert row["collapsed searches"] == "0 of 2 / 2 of 2"  # darts: both marginal cells all skip
        # darts has no spread (every seed collapsed to all skip, 54.30): Welch's interval is wide (itnas s0, s1 vary)
        assert "at n=2 vs 2" in row["what the data support"]
    assert "unpaired" in " ".join(table.notes)


def test_nb201_trajectory_figure_has_the_means_bands_and_reference_lines(nb_runs):
    from itnas.evaluators.nb201_report import published_nb201
    from itnas.evaluators.reports import get_report

    figures = get_report("nb201").figures(nb_runs)
    assert [h for h, _ in figures] == ["NAS-Bench-201 look-up per method", "NAS-Bench-201 search trajectories per "
                                       "method"]
    fig = figures[1][1]
    for k, xaxis in enumerate(("x", "x2", "x3")):
        panel = [t for t in fig.data if t.xaxis == xaxis]
        for method in METHODS:
            mean = next(t for t in panel if t.name == method)
            assert list(mean.x) == [1, 2]
            assert list(mean.y) == pytest.approx([statistics.fmean(NB201_TRAJECTORY[(method, s)][e][k] for s in SEEDS)
                                                  for e in range(2)])
            upper = next(t for t in panel if t.name == f"{method} + std")
            lower = next(t for t in panel if t.name == f"{method} - std")
            std = [statistics.stdev(NB201_TRAJECTORY[(method, s)][e][k] for s in SEEDS) for e in range(2)]
            assert list(upper.y) == pytest.approx([m + d for m, d in zip(mean.y, std, strict=True)])
            assert list(lower.y) == pytest.approx([m - d for m, d in zip(mean.y, std, strict=True)])
            assert lower.fill == "tonexty"
        best = next(t for t in panel if t.name == "table best")
        assert list(best.y) == [TABLE_BEST[NB201_KEYS[k]]] * 2
        published = {t.name: t.y[0] for t in panel if t.name.startswith("published: ")}
        assert published == {f"published: {m}": v[k] for m, v, _ in published_nb201()}
        assert published["published: GDAS"] == [93.61, 70.70, 41.71][k]
        assert "published: best cell in NB201" not in published  # the optimum is the table-best line


def test_no_trajectory_no_trajectory_figure_or_table(tmp_path):
    runs = []
    for (method, seed), cells in NB201_CELLS.items():
        run = write_nb201_run(tmp_path / "nb" / f"{method}-s{seed}", cells, None)
        runs.append(load_run(_record(run), "nb201"))
    from itnas.evaluators.reports import get_report

    assert len(get_report("nb201").figures(runs)) == 1
    assert not [t for t in benchmark_tables(NB201, runs) if "trajector" in t.title]
    assert [t for t in benchmark_tables(NB201, runs) if "pairwise" in t.title]


def test_published_numbers_only_where_they_belong(runs):
    assert len(benchmark_tables(TRAIN, runs)) == 2  # digits: no published numbers
    assert "No published numbers" in benchmark_tables(TRAIN, runs)[0].notes[-1]
    cifar = BenchmarkInfo("cifar10", "CIFAR-10 (JPEG copy)", "train", "paper recipe", dataset="cifar10", space="darts")
    published = benchmark_tables(cifar, runs)[1]
    assert published.title == "CIFAR-10 (JPEG copy): published CIFAR-10 results (DARTS space)"
    row = _rows(published)["published (best of several searches, paper size): DARTS (2nd order)"]
    assert (row["CIFAR-10 test error (%)"], row["test acc (%)"]) == ("2.76 ± 0.09", "97.24")


def test_published_numbers_have_sources():
    published = load_published()
    assert [e["method"] for e in published["cifar10"]] == ["DARTS (2nd order)", "PC-DARTS", "DrNAS", "GDAS",
                                                           "best cell in NB201"]
    assert [e["method"] for e in published["cifar10"] if e["nb201"].get("optimum")] == ["best cell in NB201"]
    for entry in published["cifar10"]:
        assert entry["nb201"]["source"] and len(entry["nb201"]["test_acc_pct"]) == 3
        assert entry["darts_space"] is None or entry["darts_space"]["source"]
    assert all(e["source"] for e in published["imagenet"])


def test_summary_metrics(runs, nb_runs):
    summary = summary_metrics(runs + nb_runs)
    assert list(summary) == ["tiny", "nb"] and list(summary["nb"]) == list(METHODS)
    acc = [TEST_ACC[("itnas", s)] for s in SEEDS]
    assert summary["tiny"]["itnas"]["test_acc"] == {"mean": round(statistics.fmean(acc), 2),
                                                   "std": round(statistics.stdev(acc), 2), "n": 2}
    assert set(summary["tiny"]["itnas"]) == {"test_acc", "collapsed"}
    darts = summary["nb"]["darts"]
    assert set(darts) == {*NB201_KEYS, *(f"seq_{k}" for k in NB201_KEYS), "collapsed", "seq_collapsed"}
    assert darts["nb201_c10_test"] == {"mean": 54.3, "std": 0.0, "n": 2}
    assert darts["seq_nb201_c100_test"] == {"mean": round(statistics.fmean([15.61, 60.0]), 2),
                                            "std": round(statistics.stdev([15.61, 60.0]), 2), "n": 2}
    assert darts["collapsed"] == {"count": 2, "n": 2} and darts["seq_collapsed"] == {"count": 1, "n": 2}
    one = summary_metrics(nb_runs[:1])["nb"]["itnas"]
    assert one["nb201_in16_test"] == {"mean": 44.0, "std": None, "n": 1}
    assert json.loads(json.dumps(summary)) == summary


# ------------------------------------------------------------------------------------------- cell-graph labels
def _all_sep5_into_node_5() -> Genotype:
    """A DARTS genotype whose every edge is sep_conv_5x5, node 5 fed by nodes 3 and 4 and (reduce) 0 and 1."""
    normal = [("sep_conv_5x5", s, d) for d, srcs in ((2, (0, 1)), (3, (0, 1)), (4, (0, 1)), (5, (3, 4))) for s in srcs]
    reduce = [("sep_conv_5x5", s, d) for d, srcs in ((2, (0, 1)), (3, (0, 2)), (4, (1, 3)), (5, (0, 1))) for s in srcs]
    return Genotype("darts", normal, (2, 3, 4, 5), reduce, (2, 3, 4, 5)).validate()


@pytest.mark.parametrize("genotype", [
    PUBLISHED_GENOTYPES["darts_v2"], PUBLISHED_GENOTYPES["pcdarts_cifar"], _all_sep5_into_node_5(),
    Genotype.from_nb201_string(NB201_CELLS[("itnas", 0)]["marginal"][0]), Genotype.from_nb201_string(ALL_SKIP)],
    ids=["darts_v2", "pcdarts", "all_sep5", "nb201", "nb201_all_skip"])
def test_edge_labels_do_not_overlap(genotype):
    fig = genotype_figure(genotype, "test")
    boxes = label_boxes(fig)
    assert sorted(len(b) for b in boxes.values()) == sorted(len(getattr(genotype, t)) for t in ("normal", "reduce")
                                                            if getattr(genotype, t))
    for subplot, labels in boxes.items():
        for i, (name_a, a) in enumerate(labels):
            assert a[2] - a[0] > 20 and a[3] - a[1] > 10  # a real box (px)
            for name_b, b in labels[i + 1:]:
                assert not boxes_overlap(a, b), (subplot, name_a, a, name_b, b)


def test_nb201_cell_graph_has_one_input_and_node_3_as_output():
    fig = genotype_figure(Genotype.from_nb201_string(ALL_SKIP), "nb201")
    nodes = next(t for t in fig.data if t.mode == "markers+text")
    assert list(nodes.text) == ["in 0", "1", "2", "3 out"]
    assert [a.text for a in fig.layout.annotations if (a.name or "").startswith("edge ")] == ["skip"] * 6
    legend = next(a.text for a in fig.layout.annotations if a.name == "op legend")
    assert legend == "ops: skip = skip_connect"


# ----------------------------------------------------------------------------------------- markdown and page
def test_markdown_report(runs, nb_runs, tmp_path):
    path = tmp_path / "reports" / "report.md"
    write_markdown([(TRAIN, runs), (NB201, nb_runs)], path, {"commands": ["dvc repro"]})
    text = path.read_text()
    assert "## digits (tests)" in text and "## NAS-Bench-201 (tests)" in text and "dvc repro" in text
    assert text.count(f"Size: {TRAIN.size}") == 3 and text.count(f"Size: {NB201.size}") == 6  # section + tables
    assert "### NAS-Bench-201 (tests): pairwise comparison over seeds" in text
    assert "### NAS-Bench-201 (tests): search trajectories (NB201 test accuracy per search epoch)" in text
    assert "### digits (tests): results per method" in text and "(report.html)" in text
    assert "| best cell of the NB201 table (per metric) | 94.37 | 73.51 | 47.31 |" in text
    for r in runs:
        assert r.genotype.cell_string("normal") in text


def test_html_is_one_self_contained_page(runs, nb_runs, tmp_path):
    path = tmp_path / "report.html"
    write_html([(TRAIN, runs), (NB201, nb_runs)], path)
    text = path.read_text()
    assert len(re.findall(r"\* plotly\.js v\d", text)) == 1  # the plotly.js bundle, embedded once
    assert not re.search(r"<script[^>]*\ssrc=", text)  # nothing loaded from outside the file
    assert text.count("<html") == 1
    n_itnas = sum(r.method == "itnas" for r in runs + nb_runs)
    # per benchmark: accuracy or NB201 bars, collapse (nb201: + trajectories); per run: cell graph, alphas; itnas
    # runs: transitions per cell type (2 in darts, 1 in nb201) + attention
    assert text.count("Plotly.newPlot(") == 2 * 2 + 1 + 2 * 8 + 3 * len(SEEDS) + 2 * len(SEEDS)
    assert n_itnas == 4
    text = text.replace("\\u002f", "/")  # plotly's JSON writes "/" as "\\u002f"
    assert "tiny/itnas-s0, normal cell: transition matrices" in text
    assert "tiny/darts-s0, normal cell: transition matrices" not in text
    assert re.search(r"\(0,2\) (→|\\u2192) \(2,3\)", text)
    assert 'id="bench-tiny"' in text and 'id="bench-nb"' in text and "table best 94.37" in text


# ------------------------------------------------------------------------------------------------ report stage
def _params(path: Path, benchmarks: tuple[str, ...] = ("tiny", "nb")) -> Path:
    from tiny_project import tiny_params, write_params

    params = tiny_params()
    params["runs"] = {"benchmarks": [b for b in benchmarks if b != "nb"],
                      "tables": [b for b in benchmarks if b == "nb"], "methods": list(METHODS), "seeds": list(SEEDS)}
    params["benchmarks"]["nb"] = {"label": "NAS-Bench-201 (tests)", "evaluation": "nb201", "data": {},
                                  "search": {"supernet": {"space": "nb201", "layers": 1}}, "train": {}}
    return write_params(path.parent, params, path.name)


def test_report_stage(project, monkeypatch):
    from pipeline.report import report

    monkeypatch.chdir(project)
    _params(project / "params.yaml")
    summary = {"dataset": "digits", "classes": list("0123456789"), "in_channels": 1, "image_size": 8}
    write_json(Path("data/prepared/tiny/train/summary.json"), {**summary, "train_size": 300, "test_size": 100})
    write_json(Path("data/prepared/tiny/search/summary.json"), {**summary, "search_train_size": 64,
                                                                "search_val_size": 64})
    report("params.yaml")
    md = Path("reports/report.md").read_text()
    assert "## digits (tests)" in md and "## NAS-Bench-201 (tests)" in md
    assert "CPU-reduced search: space darts, C=4, 3 cells, 64 + 64 images at native size, 3 epochs; training: C=4, " \
           "3 cells, 1 epochs" in md
    assert "space nb201, C=4, 1 cells per stage" in md and "NAS-Bench-201 table look-up" in md
    assert "digits: 10 classes, 1 x 8 x 8 px; search: 64 search-train + 64 search-val images; final training: 300 " \
           "images; test: 100 images" in md
    assert Path("reports/report.html").stat().st_size > 1_000_000  # plotly.js is embedded
    summary = json.loads(Path("reports/summary.json").read_text())
    assert summary == summary_metrics([load_run(_record(project / "runs" / b / f"{m}-s{s}"))
                                       for b in ("tiny", "nb") for m in METHODS for s in SEEDS])


def test_report_stage_renders_copied_results(project, tmp_path, monkeypatch):
    from pipeline.report import report

    monkeypatch.chdir(tmp_path)
    shutil.copytree(project / "runs" / "nb", "kept/runs/nb")
    _params(tmp_path / "kept" / "params-nb.yaml", ("nb",))
    report("kept/params-nb.yaml", runs_dir="kept/runs", out_dir="kept")
    assert {p.name for p in Path("kept").iterdir()} >= {"report.md", "report.html", "summary.json"}
    assert list(json.loads(Path("kept/summary.json").read_text())) == ["nb"]
    assert "itnas report --params kept/params-nb.yaml --runs-dir kept/runs --out-dir kept" in \
        Path("kept/report.md").read_text()
    assert not Path("reports").exists()


def test_report_stage_advises_the_command(project, tmp_path, monkeypatch):
    from pipeline.report import report

    monkeypatch.chdir(tmp_path)
    shutil.copytree(project / "runs", "runs")
    Path("runs/nb/darts-s1/metrics.json").unlink()
    _params(tmp_path / "params.yaml")
    with pytest.raises(FileNotFoundError, match=r"runs/nb/darts-s1/metrics\.json.*evaluate stage.*"
                                                r"`itnas evaluate nb darts 1`"):
        report("params.yaml")


def test_the_reproduce_commands_name_every_stage_in_dvc_order():
    """The report's "how to reproduce" lines (pipeline.report.COMMANDS) name every stage command of dvc.yaml, in
    the order of dvc.yaml (review defect 12: train was missing)."""
    import yaml

    from pipeline.report import COMMANDS

    root = Path(__file__).resolve().parents[1]
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"].values()
    order = list(dict.fromkeys(re.match(r"itnas (\S+)", s["cmd"]).group(1) for s in stages))
    assert order == ["check-params", "prepare", "search", "derive", "train", "evaluate", "report"]
    text = " ".join(COMMANDS)
    positions = [text.find(name) for name in order]
    assert -1 not in positions and positions == sorted(positions), (order, text)
