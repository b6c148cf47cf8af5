"""Every file-format benchmark runs its whole chain (prepare -> search -> derive -> evaluate -> report) through the
real stage commands, on tiny files written in the data set's real on-disk format (CIFAR-10 python batches,
CIFAR-100 python pickles, SVHN .mat), with the RobustDARTS spaces s1-s4 and the NB201 look-up reachable from
params. Search C=4, 2 cells-per-reduction-stage, 8x8 px: a few seconds per chain on one thread."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_datasets import write_cifar10, write_cifar100, write_svhn
from tiny_project import itnas, tiny_params, write_params

from itnas.evaluators.nb201 import NB201Details, NB201Metrics
from itnas.evaluators.train import TrainMetrics as RunMetrics
from itnas.genotype import Genotype
from itnas.nb201 import load_nb201_table
from itnas.spaces import create_space
from pipeline.paths import run_record

pytestmark = pytest.mark.slow
WRITERS = {  # at least 4 images of each class: 2 * k search_train and 2 * k search_val images (k classes)
    "cifar10": lambda root: write_cifar10(root, per_class=8),
    "cifar100": lambda root: write_cifar100(root, present=range(100), per_class=4, test_per_class=1),
    "svhn": lambda root: write_svhn(root / "svhn", per_class=8, test_per_class=2),
}


def _params(benchmark: str, dataset: str, space: str, evaluation: str = "train") -> dict:
    params = tiny_params()
    k = 100 if dataset == "cifar100" else 10
    params["data"].update(root="data/raw", search_train_size=2 * k, search_val_size=2 * k, train_size=0,
                          test_size=0)
    params["runs"] = {"benchmarks": [benchmark], "methods": ["itnas", "darts"], "seeds": [0]}
    search = {"supernet": {"space": space, "C": 4, "layers": 1 if space == "nb201" else 3},
              "data": {"image_size": 8, "batch_size": 32}, "schedule": {"epochs": 2, "val_every": 0}}
    params["benchmarks"] = {benchmark: {"label": f"{dataset} (tiny files)", "evaluation": evaluation,
                                        "data": {"dataset": dataset}, "search": search,
                                        "train": {"epochs": 1, "network": {"stem_stride": 2}}}}
    return params


@pytest.mark.parametrize("dataset,space", [("cifar10", "s1"), ("cifar100", "s2"), ("svhn", "s3"), ("svhn", "s4"),
                                           ("cifar100", "darts")])
def test_chain_on_real_format_files(tmp_path, monkeypatch, dataset, space):
    monkeypatch.chdir(tmp_path)
    WRITERS[dataset](tmp_path / "data/raw")
    benchmark = f"{dataset}_{space}"
    write_params(tmp_path, _params(benchmark, dataset, space))
    for args in (["check-params"], ["prepare", benchmark]):
        assert itnas(*args).exit_code == 0
    for method in ("itnas", "darts"):
        for stage in ("search", "derive", "train", "evaluate"):
            result = itnas(stage, benchmark, method, "0")
            assert result.exit_code == 0, result.output
        run = run_record(benchmark, method, 0)
        genotype = Genotype.load(run.genotype)
        assert genotype.space == space
        allowed = create_space(space).ops  # every chosen op is one the space offers on its edge
        for cell_type in ("normal", "reduce"):
            for op, src, dst in getattr(genotype, cell_type):
                assert op in allowed[cell_type][create_space(space).edges.index((src, dst))]
        metrics = RunMetrics.model_validate(json.loads(run.metrics.read_text()))
        assert metrics.test_images == (100 if dataset == "cifar100" else 20)
        details = json.loads(run.details.read_text())
        assert len(details["classes"]) == (100 if dataset == "cifar100" else 10)
    result = itnas("report")
    assert result.exit_code == 0, result.output
    summary = json.loads(Path("reports/summary.json").read_text())
    assert set(summary[benchmark]) == {"itnas", "darts"}


def test_nb201_chain_on_cifar10_batches(tmp_path, monkeypatch):
    """The NB201 protocol's data (CIFAR-10 python batches) through the look-up evaluation, with the sampling
    baselines gdas and drnas beside itnas and darts (their `methods.<name>` blocks of params.yaml)."""
    monkeypatch.chdir(tmp_path)
    WRITERS["cifar10"](tmp_path / "data/raw")
    params = _params("nb201", "cifar10", "nb201", evaluation="nb201")
    methods = ["itnas", "darts", "gdas", "drnas"]
    params["runs"]["methods"] = methods
    params["runs"]["tables"] = params["runs"].pop("benchmarks")
    write_params(tmp_path, params)
    assert itnas("check-params").exit_code == 0 and itnas("prepare", "nb201").exit_code == 0
    table = load_nb201_table()
    for method in methods:
        for stage in ("search", "derive", "evaluate"):
            result = itnas(stage, "nb201", method, "0")
            assert result.exit_code == 0, result.output
        run = run_record("nb201", method, 0)
        metrics = NB201Metrics.model_validate(json.loads(run.metrics.read_text()))
        assert metrics.nb201_c100_test == table.lookup(Genotype.load(run.genotype))["nb201_c100_test"]
        # the search trajectory: one look-up per search epoch, of that epoch's genotype in the search history
        history = json.loads(run.search_history.read_text())
        details = NB201Details.model_validate(json.loads(run.details.read_text()))
        assert [p.epoch for p in details.trajectory] == list(range(len(history))) == [0, 1]
        for point, rec in zip(details.trajectory, history, strict=True):
            genotype = Genotype.from_dict(rec["genotype"])
            assert point.arch == genotype.to_nb201_string()
            assert point.model_dump(exclude={"epoch", "arch", "collapse_count"}) == table.lookup(genotype)
        assert Genotype.from_dict(history[-1]["genotype"]) == run.derivations_of()["marginal"]
        assert run.epoch_genotypes_of()[-1] == (1, run.derivations_of()["marginal"])
    result = itnas("report")
    assert result.exit_code == 0, result.output
    md = Path("reports/report.md").read_text()
    assert "search trajectories (NB201 test accuracy per search epoch)" in md
    assert md.count("| itnas vs ") == 3 * 3  # itnas vs darts, gdas, drnas on three data sets


def test_nb201_evaluation_needs_the_nb201_space(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, _params("c10", "cifar10", "darts", evaluation="nb201"))
    result = itnas("check-params")
    assert result.exit_code == 2
    assert "benchmarks.c10: evaluation nb201 looks cells up in the NAS-Bench-201 table, which needs " \
           "search.supernet.space: nb201, got 'darts'" in " ".join(result.stderr.split())


@pytest.mark.parametrize("evaluation,space,listed,right", [("nb201", "nb201", "benchmarks", "tables"),
                                                            ("train", "darts", "tables", "benchmarks")])
def test_a_benchmark_in_the_list_of_another_evaluator_is_named(tmp_path, monkeypatch, evaluation, space, listed,
                                                               right):
    """runs.benchmarks holds the chains with a train stage, runs.tables the table look-ups (DVC matrices cannot
    filter): a benchmark in the wrong list is an error naming the right one."""
    monkeypatch.chdir(tmp_path)
    params = _params("b", "cifar10", space, evaluation=evaluation)
    params["runs"] = {listed: ["b"], right: [], "methods": ["darts"], "seeds": [0]}
    write_params(tmp_path, params)
    result = itnas("check-params")
    assert result.exit_code == 2
    assert f"runs.{listed}: b is evaluated by {evaluation} (" in result.stderr
    assert f"list it in runs.{right}, e.g. -S 'runs.{right}=[b]'" in " ".join(result.stderr.split())
    params["runs"] = {right: ["b"], listed: [], "methods": ["darts"], "seeds": [0]}
    write_params(tmp_path, params)
    assert itnas("check-params").exit_code == 0


def test_unknown_benchmark_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = _params("c10", "cifar10", "darts")
    params["runs"]["benchmarks"] = ["c1O"]
    write_params(tmp_path, params)
    result = itnas("check-params")
    assert result.exit_code == 2
    assert "runs: unknown benchmarks ['c1O']; benchmarks defined in params.yaml: c10" in result.stderr
    params["runs"]["benchmarks"] = ["c10"]
    params["benchmarks"]["c10"].pop("train")
    write_params(tmp_path, params)
    msg = " ".join(itnas("check-params").stderr.split())
    assert "benchmarks.c10: missing keys ['train']" in msg


def test_transfer_searches_on_one_data_set_and_trains_on_another(tmp_path, monkeypatch):
    """`data.target_dataset`: the search reads CIFAR-10, the final network trains and tests on CIFAR-100."""
    monkeypatch.chdir(tmp_path)
    WRITERS["cifar10"](tmp_path / "data/raw")
    WRITERS["cifar100"](tmp_path / "data/raw")
    params = _params("c10_to_c100", "cifar10", "darts")
    params["benchmarks"]["c10_to_c100"]["data"]["target_dataset"] = "cifar100"
    params["data"].update(train_size=200, test_size=100)
    write_params(tmp_path, params)
    assert itnas("check-params").exit_code == 0
    result = itnas("prepare", "c10_to_c100")
    assert result.exit_code == 0 and "search on cifar10, train and test on cifar100" in " ".join(result.stderr.split())
    search = json.loads(Path("data/prepared/c10_to_c100/search/summary.json").read_text())
    final = json.loads(Path("data/prepared/c10_to_c100/train/summary.json").read_text())
    assert (search["dataset"], len(search["classes"])) == ("cifar10", 10)
    assert (final["dataset"], len(final["classes"]), final["train_size"], final["test_size"]) == ("cifar100", 100,
                                                                                               200, 100)
    for stage in ("search", "derive", "train", "evaluate"):
        result = itnas(stage, "c10_to_c100", "darts", "0")
        assert result.exit_code == 0, result.output
    details = json.loads(run_record("c10_to_c100", "darts", 0).details.read_text())
    assert len(details["classes"]) == 100 and details["n"] == 100

    params["data"].update(train_size=50)  # fewer than the target's 100 classes: named with the target's name
    write_params(tmp_path, params)
    msg = " ".join(itnas("check-params").stderr.split())
    assert "data.train_size=50: fewer images than the 100 classes of cifar100" in msg
