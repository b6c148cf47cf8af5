"""The speed harness (itnas_bench/: benchmark.py, bench_timing.py, side_worker.py) and the `bench` command's
argument checks.

Timing and statistics are checked against known durations on a fake clock; the steppers against what a step must
do to the model; `run_bench` at tiny size against the keys the command's table reads.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner

from itnas.config import SearchConfig
from itnas.genotype import PUBLISHED_GENOTYPES
from itnas.train_config import TrainConfig
from itnas_bench.bench import _table
from itnas_bench.bench_timing import search_times, step_ratios, time_ms, time_rounds
from itnas_bench.benchmark import (
    MEMORY_STEPS,
    FinalBenchSpec,
    FinalStepper,
    SearchBenchSpec,
    SearchStepper,
    Side,
    _in_fresh_process,
    _peak_rss_mib,
    _rss_worker,
    check_bench_args,
    peak_memory_mib,
    random_batches,
    run_bench,
    run_side_by_side,
)
from itnas_bench.side_worker import harness_module
from pipeline.cli import app

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
B, HW = 4, 8
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
TINY = {"C": 4, "layers": 3, "batch_size": B, "image_size": HW, "rounds": 1, "warmup": 0, "final_C": 4,
        "final_layers": 3, "measure_memory": False}


# ------------------------------------------------------------------------------------------- timing on a fake clock
class FakeClock:
    """Seconds that advance only when a stub step runs; `calls` logs the labels of the steps in call order."""

    def __init__(self):
        self.now, self.calls = 0.0, []

    def __call__(self) -> float:
        return self.now

    def stub(self, label: str, durations_ms: list[float]):
        """A step that takes the next of `durations_ms` (warm-up calls first) on this clock."""
        durations = iter(durations_ms)

        def step() -> None:
            self.calls.append(label)
            self.now += next(durations) / 1e3

        return step


def test_time_ms_reads_the_clock_around_the_call():
    clock = FakeClock()
    assert time_ms(clock.stub("x", [12.5]), CPU, clock) == pytest.approx(12.5)
    assert time_ms(lambda: time.sleep(0.03), CPU) >= 30.0  # the default clock: perf_counter, in ms


def test_medians_and_ratios_of_known_step_times():
    """warm-up (999 ms) untimed; medians over 3 rounds; ratios of the medians and the paired per-round median."""
    clock, warm = FakeClock(), 999.0
    entries = {
        "darts/darts": {"alphas_ms": clock.stub("d", [warm, 1, 1, 1]), "arch_step_ms": clock.stub("d", [warm, 2, 2, 2]),
                        "weight_step_ms": clock.stub("d", [warm, 4, 4, 4])},
        "itnas/darts": {"alphas_ms": clock.stub("i", [warm, 2, 3, 2]), "arch_step_ms": clock.stub("i", [warm, 3, 6, 1]),
                        "weight_step_ms": clock.stub("i", [warm, 1, 5, 9])},
        "final": {"final_step_ms": clock.stub("f", [warm, 10, 30, 20])},
    }
    ticks = []
    samples = time_rounds(entries, rounds=3, warmup=1, device=CPU, clock=clock, tick=ticks.append)

    assert samples["itnas/darts"]["arch_step_ms"] == pytest.approx([3, 6, 1])
    assert samples["final"]["final_step_ms"] == pytest.approx([10, 30, 20])
    # one warm-up pass in entry order, then round r starts at entry r (rotated order)
    runs = [lab for k, lab in enumerate(clock.calls) if k == 0 or clock.calls[k - 1] != lab]
    assert runs == ["d", "i", "f", "d", "i", "f", "i", "f", "d", "f", "d", "i"]
    assert ticks[:3] == ["warm-up darts/darts", "warm-up itnas/darts", "warm-up final"]
    assert ticks[-3:] == ["round 3/3 final", "round 3/3 darts/darts", "round 3/3 itnas/darts"]

    darts, itnas = search_times(samples["darts/darts"], B), search_times(samples["itnas/darts"], B)
    assert darts == pytest.approx({"weight_step_ms": 4, "arch_step_ms": 2, "search_step_ms": 6, "alphas_ms": 1,
                                   "search_img_per_s": B / 6e-3})
    assert itnas == pytest.approx({"weight_step_ms": 5, "arch_step_ms": 3, "search_step_ms": 8, "alphas_ms": 2,
                                   "search_img_per_s": B / 8e-3})
    configs = [{"method": "itnas", "base": "darts", **itnas}, {"method": "darts", "base": "darts", **darts}]
    ratios = step_ratios(configs, {("itnas", "darts"): samples["itnas/darts"],
                                   ("darts", "darts"): samples["darts/darts"]})
    # per-round search steps: itnas 4, 11, 10 over darts 6, 6, 6 -> paired median 10/6 (not 8/6)
    assert ratios == {"darts": {"itnas_over_darts_step": pytest.approx(8 / 6),
                                "itnas_over_darts_weight_step": pytest.approx(5 / 4),
                                "itnas_over_darts_arch_step": pytest.approx(3 / 2),
                                "itnas_over_darts_alphas": pytest.approx(2.0),
                                "itnas_over_darts_step_paired": pytest.approx(10 / 6),
                                "itnas_within_target": False}}


def test_no_ratio_without_a_darts_reference():
    times = {"weight_step_ms": 1.0, "arch_step_ms": 1.0, "search_step_ms": 2.0, "alphas_ms": 1.0}
    assert step_ratios([{"method": "itnas", "base": "pcdarts", **times},
                        {"method": "darts", "base": "darts", **times}], {}) == {}


# ------------------------------------------------------------------------------------------- the steppers step
def _copy(params) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def _changed(before: list[torch.Tensor], params) -> list[bool]:
    return [not torch.equal(b, p) for b, p in zip(before, params, strict=True)]


@pytest.mark.parametrize("method,base,order", [("itnas", "darts", "first"), ("darts", "pcdarts", "first"),
                                               ("itnas", "pcdarts", "second")])
def test_search_stepper_moves_the_architecture_then_the_weights(method, base, order):
    """3 cells (normal and reduction): the arch step moves every architecture parameter and no weight (second
    order restores them); the weight step moves every weight and no architecture parameter."""
    spec = SearchBenchSpec(method, base, C=4, layers=3, batch_size=B, image_size=HW, order=order)
    st = SearchStepper(spec, CPU, *random_batches(B, HW, 3, 10))
    model = st.model
    cfg = SearchConfig()
    assert st.cfg.base == base and st.cfg.arch_optimizer.order == order
    assert st.w_opt.param_groups[0]["lr"] == cfg.weight_optimizer.lr
    assert st.a_opt.param_groups[0]["lr"] == cfg.arch_optimizer.lr

    arch0, w0 = _copy(model.arch_parameters()), _copy(model.weight_parameters())
    st.arch_step()
    assert all(_changed(arch0, model.arch_parameters()))
    assert not any(_changed(w0, model.weight_parameters()))

    arch1 = _copy(model.arch_parameters())
    st.weight_step()
    assert not any(_changed(arch1, model.arch_parameters()))
    assert all(_changed(w0, model.weight_parameters()))


def test_final_stepper_trains_the_final_network():
    spec = FinalBenchSpec(PUBLISHED_GENOTYPES["darts_v2"], C=4, layers=3, batch_size=B, image_size=HW)
    train, _ = random_batches(B, HW, 3, 10)
    st = FinalStepper(spec, CPU, train)
    assert st.model.drop_path_prob == TrainConfig().regularization.drop_path > 0
    assert st.cfg.network.auxiliary and st.model(train[0])[1] is not None  # the auxiliary loss is in the step
    w0 = _copy(st.model.parameters())
    st.step()
    changed = _changed(w0, st.model.parameters())
    assert sum(changed) > 0.9 * len(changed), f"{sum(changed)}/{len(changed)} parameters moved"


# ------------------------------------------------------------------------------------------- run_bench, tiny
@pytest.fixture(scope="module")
def result() -> dict:
    return run_bench(["itnas", "darts"], ["darts"], **TINY)


def test_run_bench_reports_every_config_with_finite_positive_times(result):
    json.dumps(result)  # JSON-ready
    assert [(c["method"], c["base"]) for c in result["configs"]] == [("itnas", "darts"), ("darts", "darts")]
    for c in result["configs"]:
        for key in ("weight_step_ms", "arch_step_ms", "search_step_ms", "alphas_ms", "search_img_per_s"):
            assert math.isfinite(c[key]) and c[key] > 0, (c["method"], key, c[key])
        assert c["search_peak_mib"] is None and c["arch_params"] > 0 and c["weight_params_m"] > 0
        assert {len(v) for v in c["samples"].values()} == {TINY["rounds"]}
    f = result["final"]
    assert math.isfinite(f["final_step_ms"]) and f["final_step_ms"] > 0 and f["params_m"] > 0
    assert f["genotype"] == PUBLISHED_GENOTYPES["darts_v2"].to_dict() and f["final_peak_mib"] is None
    assert set(result["ratios"]) == {"darts"} and "itnas_over_darts_step_paired" in result["ratios"]["darts"]
    s = result["settings"]
    assert (s["C"], s["layers"], s["batch_size"], s["rounds"], s["memory_method"]) == (4, 3, B, 1, "not measured")


def test_run_bench_counts_the_ops_of_one_step(result):
    """The reported op counts are those of one step of the same config after its optimizers have state (counted
    again here on a fresh stepper: the count is deterministic), and the search step is the sum of its two steps."""
    from itnas.opcount import count_ops

    train, val = random_batches(B, HW, 3, 10)
    for c in result["configs"]:
        st = SearchStepper(SearchBenchSpec(c["method"], c["base"], C=4, layers=3, batch_size=B, image_size=HW),
                           torch.device("cpu"), train, val)
        st.step()
        assert c["weight_step_ops"] == count_ops(st.weight_step)[0]
        assert c["arch_step_ops"] == count_ops(st.arch_step)[0]
        assert c["search_step_ops"] == c["weight_step_ops"] + c["arch_step_ops"]
    ops = {c["method"]: c["search_step_ops"] for c in result["configs"]}
    assert ops["itnas"] > ops["darts"]  # the same supernet; itnas's alphas (transitions, attention) cost ops


def test_the_command_table_renders_the_result(result):
    """Every key the command's table and caption read is there (a missing one is a KeyError)."""
    out = io.StringIO()
    Console(file=out, width=200).print(_table(result))
    text = out.getvalue()
    assert "itnas" in text and "itnas/darts on darts base" in text and "final net C=4, 3 cells" in text


def _status_mib(key: str) -> float:
    """A line of /proc/self/status (e.g. VmRSS, VmHWM), MiB, read here independently of the harness."""
    line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith(key + ":"))
    return int(line.split()[1]) / 2**10


@linux
def test_peak_rss_rises_by_a_touched_allocation():
    """`_peak_rss_mib` is the high-water mark: after 256 MiB are written it is at least the resident size before
    plus those 256 MiB (a reader of the current size, of another process, or of the wrong unit fails)."""
    before = _status_mib("VmRSS")
    block = torch.ones(64 * 2**20)  # 64 Mi float32 = 256 MiB, every page written
    assert _peak_rss_mib() >= before + 0.95 * block.numel() * 4 / 2**20
    assert _peak_rss_mib() == pytest.approx(_status_mib("VmHWM"), abs=1.0)
    del block


@linux
def test_rss_worker_runs_in_process():
    """The body of the spawned memory processes (spawned in the slow test below): it returns this process's
    high-water mark after building the inputs (and the model and its steps)."""
    spec = SearchBenchSpec("itnas", "darts", C=4, layers=3, batch_size=B, image_size=HW)
    for baseline in (True, False):
        peak = _rss_worker(spec, baseline, 1, 1)
        assert peak == pytest.approx(_status_mib("VmHWM"), abs=1.0)


@linux
@pytest.mark.slow  # three spawned processes (~35 s on 2 busy cores)
def test_cpu_peak_memory_grows_with_the_batch():
    """Peak memory of 2 search steps (fresh process, minus the shared baseline process): 16x the batch keeps ~16x
    the activations for the backward pass. Measured on this project's CPU (C=4, 3 cells, 16x16): 64 MiB at B=4,
    253 MiB at B=64; the bound below (+100 MiB) fails when the model's steps are not what is measured."""
    threads = torch.get_num_threads()
    small, large = (SearchBenchSpec("darts", "darts", C=4, layers=3, batch_size=b, image_size=16) for b in (4, 64))
    baseline = _in_fresh_process(_rss_worker, small, True, 0, threads)
    peaks = [peak_memory_mib(s, CPU, MEMORY_STEPS, baseline) for s in (small, large)]
    assert peaks[0] > 0 and peaks[1] > peaks[0] + 100, peaks


# ------------------------------------------------------------------------------------------- side by side
def test_side_worker_finds_the_harness_of_new_and_old_checkouts(tmp_path):
    assert harness_module(str(ROOT)) == "itnas_bench.benchmark"
    assert harness_module(str(tmp_path)) == "pipeline.benchmark"  # a checkout from before the harness moved


def _old_checkout(root: Path) -> Path:
    """A checkout laid out as before the harness left pipeline/: the harness modules in `pipeline/`, no
    `itnas_bench/` (the library linked)."""
    (root / "pipeline").mkdir(parents=True)
    (root / "pipeline" / "__init__.py").write_text("")
    for name in ("benchmark.py", "bench_timing.py", "side_worker.py"):
        shutil.copy(ROOT / "itnas_bench" / name, root / "pipeline" / name)
    (root / "itnas").symlink_to(ROOT / "itnas")
    return root


@pytest.mark.slow  # two fresh processes per side (~10 s each on 2 busy cores)
def test_side_by_side_runs_each_side_in_its_own_worker_process(tmp_path):
    """`python -m itnas_bench.side_worker` in this checkout and in an old-layout one: both report their step times
    and op counts; the same code and size on both sides dispatch the same number of aten ops."""
    sides = [Side("old", str(_old_checkout(tmp_path / "old"))), Side("new", str(ROOT))]
    result = run_side_by_side(sides, ["darts"], ["darts"], C=4, layers=3, batch_size=B, image_size=HW, rounds=1,
                              warmup=1, steps=1, threads=1)
    (config,) = result["configs"]
    for side in ("old", "new"):
        assert math.isfinite(config[side]["search_step_ms"]) and config[side]["search_step_ms"] > 0
        assert config[side]["search_step_ms"] == pytest.approx(config[side]["weight_step_ms"]
                                                               + config[side]["arch_step_ms"])
    assert config["old"]["search_step_ops"] == config["new"]["search_step_ops"] > 0
    assert result["ratios"]["darts"]["darts"]["old_over_new_search_step_ops"] == 1.0
    assert [s["revision"] for s in result["sides"]][1] == "working tree"


# ------------------------------------------------------------------------------------------- bad arguments
GOOD = {"methods": ["darts"], "bases": ["darts"], "order": "first", "rounds": 1, "warmup": 0}


@pytest.mark.parametrize("bad,match", [
    ({"methods": ["nope"]}, r"'nope'; valid methods: itnas, .*darts, pcdarts"),
    ({"bases": ["nope"]}, r"unknown bases \['nope'\]; valid bases: darts, pcdarts"),
    ({"bases": ["auto"]}, r"unknown bases \['auto'\]; valid bases: darts, pcdarts"),
    ({"methods": []}, r"at least one method and one base, got methods=\[\]"),
    ({"order": "third"}, r"order='third': Input should be 'first' or 'second'"),
    ({"space": "nope"}, r"'nope'; valid spaces: darts"),
    ({"rounds": 0}, r"rounds >= 1 .* got rounds=0"),
    ({"warmup": -1}, r"warmup >= 0, got .*warmup=-1"),
    ({"bases": ["pcdarts"], "C": 6}, r"C=6 must be divisible by supernet.partial_k=4"),
])
def test_bad_arguments_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        check_bench_args(**(GOOD | bad))
    with pytest.raises(ValueError, match=match):  # run_bench checks before building anything
        run_bench(**(TINY | GOOD | bad))


def test_command_turns_a_bad_argument_into_exit_code_2(tmp_path):
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(app, ["bench", "-m", "itnas,nope", "--out", str(out)])
    assert res.exit_code == 2 and "unknown method 'nope'" in res.output and not out.exists()
