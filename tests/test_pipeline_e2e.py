"""End to end: the real `dvc repro` of this repo's dvc.yaml on scikit-learn's bundled digits, in a scratch copy.

Checks every stage's outputs (the two prepared folders, supernet, genotype, trained model, metrics, report), that no
test image reaches the search splits, that the evaluate stage's accuracy is reproduced from model.pt alone and beats
chance by a wide margin, `dvc metrics show`, that a params change of one method reruns only that method, and that a
bad key is named. (Exact resume of an interrupted search is tested in test_search.py.)

Digits (1,347 train / 450 test images of 8x8, 10 classes) always, also where Fashion-MNIST is installed: the same
data everywhere, so the accuracy bound below is measured on what CI runs, and the whole module takes ~1 min.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
import yaml
from tiny_project import history_curves, live_curves

from itnas.contracts import FinalNetworkConfig, SearchMetrics, SupernetMeta
from itnas.data import ImageDataset, find_test_overlap, load_search_data, load_train_data
from itnas.evaluators.nb201 import NB201Metrics
from itnas.evaluators.train import TrainMetrics as RunMetrics
from itnas.evaluators.train import test_network as evaluate
from itnas.genotype import Genotype
from itnas.networks import final_network_from_config
from pipeline.live import CONFUSION_NAME, SEARCH_KEYS, TRAIN_KEYS
from pipeline.paths import REPORT_DIR, prepared_dirs, run_record

# the real `dvc repro` of the module fixture (~1 min on 2 cores): skipped by `-m "not slow"`, run by CI
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("itnas", "darts")
RUNS = [run_record("tiny", m, 0) for m in METHODS]
NB_RUNS = [run_record("nbtiny", m, 0) for m in METHODS]  # the same methods on the nb201 space, looked up in the table
SEARCH_DATA_DIR, TRAIN_DATA_DIR = prepared_dirs("tiny")
N_TRAIN, N_TEST = 1347, 450  # all of digits' training and test images

# Chance on 10 balanced classes is 10 %. With the training recipe of `tiny_params` (C=4, 3 cells, 3 epochs of all
# 1,347 images, batch 32, lr 0.05) the test accuracy measured over 20 trainings (the itnas and darts genotypes this
# module's search derives, DARTS V2, and a fully collapsed genotype of skip/max-pool edges only; 5 init seeds each)
# was 93.6 % at worst (median 97 %); 1 epoch instead gives 18-72 %, so a broken training, evaluation or label
# mapping cannot pass. 80 % = 8x chance leaves >13 points for thread counts and CPU types.
MIN_TEST_ACC = 80.0


def tiny_params() -> dict:
    """params.yaml with the data, search and training shrunk to a ~1 min pipeline (the training recipe is pinned
    entirely: MIN_TEST_ACC was measured with it, at one thread)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["device"] = "cpu"
    params["threads"] = 1  # as _env's OMP_NUM_THREADS: the stages set the `threads` param's count
    params["data"].update(dataset="digits", root="data/raw", download=False, search_train_size=64,
                          search_val_size=64, train_size=0, test_size=0, split_seed=0)
    params["runs"] = {"benchmarks": ["tiny"], "tables": ["nbtiny"], "methods": list(METHODS), "seeds": [0]}
    params["benchmarks"] = {
        "tiny": {"label": "digits", "evaluation": "train", "data": {}, "search": {}, "train": {}},
        "nbtiny": {"label": "NB201 look-up (search on digits)", "evaluation": "nb201", "data": {},
                   "search": {"supernet": {"space": "nb201", "C": 4, "layers": 1}}, "train": {}},
    }
    search = params["search"]
    search["supernet"].update(C=4, layers=3)
    search["schedule"].update(epochs=2, warmup_epochs=1, val_every=1)
    search["data"].update(batch_size=32, image_size=0)
    params["train"] = {
        "epochs": 3,
        "network": {"C": 4, "layers": 3, "stem_stride": 1, "auxiliary": True},
        "optimizer": {"lr": 0.05, "lr_min": 0.0, "momentum": 0.9, "weight_decay": 3e-4, "grad_clip": 5.0},
        "regularization": {"auxiliary_weight": 0.4, "drop_path": 0.0, "label_smoothing": 0.0},
        "data": {"batch_size": 32, "image_size": 0, "cutout": 0, "crop_padding": 0, "hflip": False},
        "channels_last": True,
    }
    return params


def _env() -> dict[str, str]:
    # One intra-op thread in the stages, as in the tests (conftest.py): on a busy 2-core machine OpenMP
    # oversubscription makes the tiny stages ~10x slower, and one thread fixes the order of float reductions.
    env_bin = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": env_bin + os.pathsep + os.environ.get("PATH", ""), "OMP_NUM_THREADS": "1"}


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A scratch git + DVC project holding this repo's code, dvc.yaml and tiny params; `dvc repro` done."""
    root = tmp_path_factory.mktemp("proj")
    for name in ("itnas", "itnas_tools", "pipeline"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", root / "dvc.yaml")
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    # the figures of `dvc plots show` list the chains of these params (dvc.yaml's generated top-level plots)
    _run([sys.executable, "-m", "itnas_tools.dvc_plots", "--write", "--dvc-file", "dvc.yaml"], root)
    _run(["git", "init", "-q"], root)
    _run(["dvc", "init", "-q"], root)
    _run(["git", "add", "-A"], root)  # a first commit, as a clone has (DVCLive cannot open a repo without one)
    _run(["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "commit", "-qm", "init"], root)
    _run(["dvc", "repro"], root)
    return root


def test_prepare_writes_search_and_train_splits_without_test_images(project):
    search = load_search_data(project / SEARCH_DATA_DIR, project / "data/raw")
    final = load_train_data(project / TRAIN_DATA_DIR, project / "data/raw")
    assert search.name == final.name == "digits" and search.source_fingerprint == final.source_fingerprint
    assert (len(search.search_train), len(search.search_val)) == (64, 64)
    assert (len(final.train), len(final.test)) == (N_TRAIN, N_TEST)
    for folder, sizes in ((SEARCH_DATA_DIR, {"search_train_size": 64, "search_val_size": 64}),
                          (TRAIN_DATA_DIR, {"train_size": N_TRAIN, "test_size": N_TEST})):
        summary = json.loads((project / folder / "summary.json").read_text())
        assert summary["dataset"] == "digits" and summary["classes"] == [str(i) for i in range(10)]
        assert (summary["in_channels"], summary["image_size"]) == (1, 8) and summary.items() >= sizes.items()
    # by content: no search image has the bytes of a test image (digits holds no image twice across train/test)
    overlap = find_test_overlap(search.splits(), final.test)
    assert overlap.leaks == [] and overlap.duplicates == []


def test_search_and_derive_outputs(project):
    fingerprint = load_search_data(project / SEARCH_DATA_DIR, project / "data/raw").fingerprint()
    for run in RUNS:
        history = json.loads((project / run.search_history).read_text())
        assert [r["epoch"] for r in history] == [0, 1]
        assert [r["arch_updated"] for r in history] == [False, True]  # warmup_epochs = 1
        assert history[-1]["genotype"]["space"] == "darts" and "val_acc" in history[-1]
        supernet = torch.load(project / run.supernet, map_location="cpu", weights_only=False)
        assert set(supernet) == {"meta", "model"}
        meta = SupernetMeta.model_validate(supernet["meta"])
        assert (meta.config.method, meta.config.seed, meta.config.supernet.C) == (run.method, 0, 4)
        assert (meta.num_classes, meta.in_channels, meta.data_fingerprint) == (10, 1, fingerprint)
        metrics = SearchMetrics.model_validate(json.loads((project / run.search_metrics).read_text()))
        assert metrics.search_val_acc == history[-1]["val_acc"]
        assert metrics.search_collapse_count == history[-1]["collapse_count"]
        g = Genotype.load(project / run.genotype)
        assert g.space == "darts" and len(g.normal) == 8 and len(g.reduce) == 8
    assert "transitions" in json.loads((project / RUNS[0].search_history).read_text())[-1]  # itnas only


def test_trained_network_beats_chance_and_evaluation_reproduces(project):
    """model.pt alone rebuilds the trained network; its test accuracy is the evaluate stage's and is far above
    chance (MIN_TEST_ACC)."""
    final = load_train_data(project / TRAIN_DATA_DIR, project / "data/raw")
    for run in RUNS:
        ck = torch.load(project / run.model, map_location="cpu", weights_only=False)
        assert set(ck) == {"config", "model", "history"}
        assert set(ck["config"]) == {"final", "train", "seed", "data_fingerprint"}
        assert ck["config"]["data_fingerprint"] == final.fingerprint() and ck["config"]["seed"] == 0
        net = FinalNetworkConfig.model_validate(ck["config"]["final"])
        assert net.genotype == Genotype.load(project / run.genotype).to_dict()
        assert (net.num_classes, net.in_channels, net.image_size, net.network.C) == (10, 1, 8, 4)
        assert [r["epoch"] for r in ck["history"]] == [0, 1, 2]

        metrics = RunMetrics.model_validate(json.loads((project / run.metrics).read_text()))
        assert metrics.test_images == N_TEST
        assert metrics.test_acc > MIN_TEST_ACC, f"{run.name}: {metrics.test_acc} % (chance 10 %)"

        model = final_network_from_config(net)
        model.load_state_dict(ck["model"])
        result = evaluate(model, ImageDataset(final.test, final.mean, final.std), 500, "cpu", net.num_classes)
        assert round(result["accuracy"], 2) == metrics.test_acc and result["n"] == N_TEST
        details = json.loads((project / run.details).read_text())
        cm = torch.tensor(details["confusion_matrix"])
        assert cm.shape == (10, 10) and int(cm.sum()) == N_TEST
        assert 100.0 * int(cm.trace()) / N_TEST == pytest.approx(details["accuracy"])
        assert details["confusion_matrix"] == result["confusion_matrix"]


def test_live_curves_hold_the_histories(project):
    """Every chain's DVCLive search curves (and every trained chain's training curves) hold one row per epoch with
    the history's values; table chains have no training curves nor confusion matrix."""
    for run in RUNS + NB_RUNS:
        history = json.loads((project / run.search_history).read_text())
        curves = live_curves(project / run.live_search)
        assert curves == history_curves(history, SEARCH_KEYS) and set(curves["train_acc"]) == {0, 1}
        assert set(curves) == set(SEARCH_KEYS)  # val_every = 1: every key in every epoch
    for run in RUNS:
        history = json.loads((project / run.train_history).read_text())
        curves = live_curves(project / run.live_train)
        assert curves == history_curves(history, TRAIN_KEYS) and set(curves["train_loss"]) == {0, 1, 2}
    for run in NB_RUNS:
        assert not (project / run.live_train).exists() and not (project / run.live_evaluate).exists()


def test_confusion_plot_holds_every_test_image(project):
    """The confusion plot of a trained chain: one {actual, predicted} record per test image, class names as
    labels, its accuracy the evaluate stage's test accuracy, its counts details.json's matrix."""
    for run in RUNS:
        records = json.loads((project / run.live_evaluate / "plots/sklearn" / CONFUSION_NAME).read_text())
        metrics = RunMetrics.model_validate(json.loads((project / run.metrics).read_text()))
        details = json.loads((project / run.details).read_text())
        assert len(records) == N_TEST and {r["actual"] for r in records} == set(details["classes"])
        assert round(100.0 * sum(r["actual"] == r["predicted"] for r in records) / N_TEST, 2) == metrics.test_acc
        index = {c: i for i, c in enumerate(details["classes"])}
        cm = [[0] * len(index) for _ in index]
        for r in records:
            cm[index[r["actual"]]][index[r["predicted"]]] += 1
        assert cm == details["confusion_matrix"]


def test_report_lists_both_methods(project):
    md = (project / REPORT_DIR / "report.md").read_text()
    assert all(m in md for m in METHODS) and f"test: {N_TEST} images" in md
    assert (project / REPORT_DIR / "report.html").stat().st_size > 10_000


def test_report_names_the_data_set(project):
    md = (project / REPORT_DIR / "report.md").read_text()
    assert "Data: digits: 10 classes" in md and "## NB201 look-up (search on digits)" in md


def test_metrics_show_lists_both_methods(project):
    out = _run(["dvc", "metrics", "show", "--json"], project).stdout
    files = json.dumps(json.loads(out))
    for run in RUNS:
        assert str(run.metrics) in files and str(run.search_metrics) in files
    assert "live" not in files  # DVCLive's own summaries are no DVC metrics: `dvc exp show` stays compact


def _changed_by(project: Path, keys: tuple[str, ...], value: dict) -> set[str]:
    """The stages `dvc status` lists with params.yaml's `keys` set to `value` (params.yaml restored after)."""
    path = project / "params.yaml"
    original = path.read_text()
    assert json.loads(_run(["dvc", "status", "--json"], project).stdout) == {}  # nothing to do before the change
    params = yaml.safe_load(original)
    *parents, last = keys
    functools.reduce(dict.__getitem__, parents, params)[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        return set(json.loads(_run(["dvc", "status", "--json"], project).stdout))
    finally:
        path.write_text(original)


@pytest.mark.parametrize("keys,value,must_change,must_not_change", [
    (("methods", "darts"), {"arch_optimizer": {"lr": 0.001}}, {"search@tiny-darts-0", "search-table@nbtiny-darts-0"},
     ("prepare", "search@tiny-itnas", "evaluate@tiny-itnas", "derive@tiny-itnas", "search-table@nbtiny-itnas")),
    (("benchmarks", "nbtiny", "search", "schedule"), {"epochs": 3},
     {"search-table@nbtiny-itnas-0", "search-table@nbtiny-darts-0"}, ("prepare", "@tiny-")),
], ids=["method", "benchmark"])
def test_changing_one_method_or_benchmark_reruns_only_its_chains(project, keys, value, must_change, must_not_change):
    changed = _changed_by(project, keys, value)
    assert must_change <= changed
    assert not [s for s in changed if any(part in s for part in must_not_change)], changed


def test_editing_the_test_pass_reevaluates_without_retraining(project):
    """The trained network is the train stage's cached output: an edit of how it is tested (the train evaluator,
    itnas/evaluators/train.py) reruns every evaluate stage that tests a network and no train stage."""
    path = project / "itnas/evaluators/train.py"
    original = path.read_text()
    path.write_text(original + "\n# an edit of the test pass\n")
    try:
        changed = set(json.loads(_run(["dvc", "status", "--json"], project).stdout))
    finally:
        path.write_text(original)
    assert {"evaluate@tiny-itnas-0", "evaluate@tiny-darts-0"} <= changed
    assert not [s for s in changed if s.startswith(("train@", "search", "derive", "prepare"))], changed


def test_changing_the_test_resize_reevaluates_without_retraining(project):
    """evaluate.test_resize (how streamed test images are resized) is a param of the evaluate stages only: changing
    it reruns every evaluate stage and no train stage (review defect 3; it was train.data.test_resize)."""
    block = yaml.safe_load((project / "params.yaml").read_text()).get("evaluate") or {}
    changed = _changed_by(project, ("evaluate",), {**block, "test_resize": 64})
    assert {"evaluate@tiny-itnas-0", "evaluate@tiny-darts-0"} <= changed
    # check validates the whole file (its marker output never changes, so nothing after it reruns for it)
    assert not [s for s in changed if s.startswith(("train@", "search", "derive", "prepare"))], changed


def test_nb201_chain_looks_the_cells_up_under_both_derivations(project):
    """The nb201 evaluation: metrics.json holds the table's numbers of genotype.json's cell; details.json holds the
    cells of both derivations, each with its own look-up, and the table's best cells."""
    from itnas.nb201 import NB201_METRICS, load_nb201_table

    table = load_nb201_table()
    for run in NB_RUNS:
        genotype = Genotype.load(project / run.genotype)
        assert genotype.space == "nb201" and len(genotype.normal) == 6
        metrics = NB201Metrics.model_validate(json.loads((project / run.metrics).read_text()))
        looked_up = table.lookup(genotype)
        assert {k: getattr(metrics, k) for k in NB201_METRICS} == looked_up
        assert metrics.arch == genotype.to_nb201_string() and metrics.derivation == "marginal"
        details = json.loads((project / run.details).read_text())
        assert set(details["cells"]) == {"marginal", "sequential"}
        for cell in details["cells"].values():
            assert {k: cell[k] for k in NB201_METRICS} == table.lookup(cell["arch"])
        assert round(details["table_best"]["nb201_c10_test"]["value"], 2) == 94.37  # README optimum
    summary = json.loads((project / REPORT_DIR / "summary.json").read_text())
    assert summary["nbtiny"]["itnas"]["nb201_c10_test"]["mean"] == round(
        json.loads((project / NB_RUNS[0].metrics).read_text())["nb201_c10_test"], 2)


@pytest.mark.parametrize("block,key,listed", [
    (("search", "schedule"), "epocs", "warmup_epochs"),
    (("train", "network"), "Cx", "stem_stride"),  # a block the search stage does not read still stops it
])
def test_bad_params_name_the_key(project, block, key, listed):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params[block[0]][block[1]][key] = 3
    bad = project / "bad.yaml"
    bad.write_text(yaml.safe_dump(params))
    cmd = [str(Path(sys.executable).parent / "itnas"), "search", "tiny", "itnas", "0", "--params", str(bad)]
    proc = subprocess.run(cmd, cwd=project, env=_env(), capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert f"{'.'.join(block)}.{key}: unknown key" in proc.stderr and "valid keys" in proc.stderr
    assert listed in proc.stderr


# ------------------------------------------------------------------------------------- dvc plots in a browser

# Wraps vegaEmbed (before the page calls it) so that every figure renders as SVG and its spec and view are kept;
# the probe then records per figure its title, the rows per data file (series), the line paths and rect marks drawn.
_VEGA_HOOK = """<script>(function () {
window.__itnasViews = [];
var embed = window.vegaEmbed;
if (!embed) { window.__itnasErrors.push('vegaEmbed is not loaded'); return; }
window.vegaEmbed = function (el, spec, opts) {
  var p = embed(el, spec, Object.assign({}, opts || {}, {renderer: 'svg', actions: false}));
  window.__itnasViews.push(p.then(function () { return {el: el, spec: spec}; },
                                  function (e) { window.__itnasErrors.push('embed ' + el + ': ' + e); return null; }));
  return p;
};
})();</script>"""

_VEGA_PROBE = """<script>(function () {
function collect(views) {
  var figures = views.filter(Boolean).map(function (v) {
    var root = document.querySelector(v.el), values = (v.spec.data && v.spec.data.values) || [], files = {};
    values.forEach(function (d) { var f = d.filename || ''; files[f] = (files[f] || 0) + 1; });
    var lines = Array.prototype.filter.call(root.querySelectorAll('svg g.mark-line path'), function (p) {
      return (p.getAttribute('d') || '').length > 8; }).length;
    var title = typeof v.spec.title === 'string' ? v.spec.title : ((v.spec.title || {}).text || '');
    return {id: v.el, title: title, files: files, rows: values.length, lines: lines,
            rects: root.querySelectorAll('svg g.mark-rect path').length};
  });
  var pre = document.createElement('pre');
  pre.id = 'itnas-probe';
  pre.textContent = JSON.stringify({errors: window.__itnasErrors, figures: figures});
  document.body.appendChild(pre);
}
window.addEventListener('load', function () {
  Promise.all(window.__itnasViews || []).then(function (views) { setTimeout(function () { collect(views); }, 300); });
});
})();</script>"""

_CDN_SCRIPT = re.compile(r'<script src="https://cdn\.jsdelivr\.net/npm/([\w-]+)@([\d.]+)"></script>')


def _local_vega(page: Path, cache: Path) -> Path:
    """A copy of `dvc plots show`'s page that loads vega, vega-lite and vega-embed (the versions it names) from
    `cache` instead of a CDN (no network here): their npm packages' builds, fetched once with `npm pack`."""
    cache.mkdir(parents=True, exist_ok=True)
    text = page.read_text(encoding="utf-8")
    scripts = _CDN_SCRIPT.findall(text)
    assert {name for name, _ in scripts} == {"vega", "vega-lite", "vega-embed"}, scripts
    for name, version in scripts:
        local = cache / f"{name}@{version}.min.js"
        if not local.exists():
            npm = shutil.which("npm")
            if npm is None:
                pytest.fail("this browser test needs `npm` to fetch vega's scripts once (apt-get install -y npm), or "
                            "deselect browser tests with `-m 'not browser'`", pytrace=False)
            proc = subprocess.run([npm, "pack", f"{name}@{version}", "--silent"], cwd=cache, capture_output=True,
                                  text=True, timeout=300)
            assert proc.returncode == 0, f"npm pack {name}@{version} failed:\n{proc.stderr[-2000:]}"
            with tarfile.open(cache / proc.stdout.strip().splitlines()[-1]) as tar:
                local.write_bytes(tar.extractfile(f"package/build/{name}.min.js").read())
        text = text.replace(f'src="https://cdn.jsdelivr.net/npm/{name}@{version}"', f'src="{local.as_uri()}"')
    out = page.with_name("local-" + page.name)
    out.write_text(text, encoding="utf-8")
    return out


@pytest.mark.browser
def test_dvc_plots_show_draws_the_curves_and_confusion_matrices(project, tmp_path, request):
    """`dvc plots show` of the run, in headless Chromium: one figure per quantity of itnas_tools.dvc_plots, each
    drawn with every chain as a series (search: all four chains; training: the two trained chains), and one
    confusion matrix per trained chain holding its test images; no script error."""
    from test_report_page import render

    from itnas_tools.dvc_plots import FIGURES

    _run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], project)
    cache = getattr(request.config, "cache", None)  # none under `-p no:cacheprovider`: this test's folder then
    page = _local_vega(tmp_path / "plots" / "index.html", cache.mkdir("vega") if cache else tmp_path / "vega")
    record = render(page, tmp_path, probe=_VEGA_PROBE, head_end=_VEGA_HOOK)
    assert record["errors"] == []
    figures = {f["title"]: f for f in record["figures"]}
    for stage, key, title, _ in FIGURES:
        chains = RUNS + NB_RUNS if stage == "search" else RUNS
        fig = figures.pop(title)
        assert len(fig["files"]) == len(chains), fig["files"]
        assert all(f"{run.method}-s0/live/{stage}/plots/metrics/{key}.tsv" in " ".join(fig["files"]) for run in chains)
        assert set(fig["files"].values()) == {2 if stage == "search" else 3}  # one row per epoch
        assert fig["lines"] >= len(chains), fig  # every series drawn
    for run in RUNS:
        fig = figures.pop(f"confusion matrix (test images): {run.name}")
        assert fig["rows"] == N_TEST and fig["rects"] >= 10, fig  # at least the diagonal's cells drawn
    assert figures == {}, list(figures)  # nothing else: no figure per DVCLive file
