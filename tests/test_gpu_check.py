"""reports/experiments/gpu_check.py, the GPU check, run on the CPU: `--smoke` runs every part of it at tiny size
(the measurements, a compiled search step in a child process, the 1-epoch search of configs/paper.yaml), and a
spent time budget skips every measurement but still writes the JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "reports" / "experiments" / "gpu_check.py"
SEARCH_VARIANTS = {"eager_fp32", "eager_bf16", "compiled_bf16", "compiled_fp32"}
FINAL_VARIANTS = {"fp32", "fp32_tf32", "bf16", "bf16_channels_last"}


def _run(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "gpu.json"
    subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out), *args], cwd=ROOT, check=True,
                   timeout=300, capture_output=True, text=True)
    return json.loads(out.read_text())


def _measured(r: dict, batch: int) -> None:
    assert "error" not in r, r
    assert r["ms_per_step"] > 0 and r["peak_mib"] is None  # peak memory: CUDA only
    assert r["img_per_s"] == pytest.approx(batch * 1e3 / r["ms_per_step"], rel=0.01)


@pytest.mark.slow  # ~30 s: two processes, a dynamo trace
def test_smoke_run_writes_every_measurement(tmp_path):
    d = _run(tmp_path)
    assert d["complete"] is True and d["info"]["smoke"] is True and d["info"]["device"] == "cpu"
    assert set(d) >= {"info", "search_step", "final_step", "search_1_epoch", "summary", "elapsed_s"}
    assert set(d["search_step"]) == {"darts_base", "pcdarts_base"}
    for base, runs in d["search_step"].items():
        assert set(runs) == SEARCH_VARIANTS, base
        for variant in ("eager_fp32", "eager_bf16"):
            _measured(runs[variant], 8)
    compiled = d["search_step"]["pcdarts_base"]["compiled_bf16"]  # the smoke run compiles the first variant only
    _measured(compiled, 8)
    assert compiled["compiled"] is True and compiled["compile_s"] > 0 and compiled["unique_graphs"] >= 1
    assert compiled["child_wall_s"] > 0 and compiled["compile"]["backend"] == "eager"
    assert d["search_step"]["darts_base"]["compiled_fp32"] == {"skipped": "--compiled-variants 1"}
    assert set(d["final_step"]) == FINAL_VARIANTS
    for name, r in d["final_step"].items():
        _measured(r, 8)
        assert (r["amp"], r["channels_last"], r["tf32"]) == {
            "fp32": ("off", False, False), "fp32_tf32": ("off", False, True), "bf16": ("bf16", False, False),
            "bf16_channels_last": ("bf16", True, False)}[name]
    s = d["search_1_epoch"]  # configs/paper.yaml's itnas search resolved for the CPU
    assert "error" not in s, s
    assert s["precision"] == {"amp": "bf16", "dtype": "float32", "channels_last": False, "tf32": False,
                              "deterministic": False}
    assert (s["base"], s["train_images"], s["steps"]) == ("pcdarts", 64, 8) and s["wall_s"] > 0
    assert set(d["summary"]["final"]) == FINAL_VARIANTS - {"fp32"} and d["summary"]["final"]["bf16"] > 0
    assert d["backend_flags_at_end"] == d["info"]["backend_flags_at_start"]  # a CPU run sets no CUDA flag


def test_spent_budget_skips_everything_and_still_writes(tmp_path):
    d = _run(tmp_path, "--budget-s", "0")
    assert d["complete"] is True
    assert all(r == {"skipped": "time budget"} for runs in d["search_step"].values()
               for k, r in runs.items() if k.startswith("eager"))
    assert all(r == {"skipped": "time budget"} for r in d["final_step"].values())
    assert all(r["skipped"].startswith(("time budget", "--compiled-variants")) for runs in d["search_step"].values()
               for k, r in runs.items() if k.startswith("compiled"))
    assert d["search_1_epoch"] == {"skipped": "no eager bf16 pcdarts step time to estimate it from"}
