"""The benchmark (itnas/bench.py) at tiny size: JSON structure, positive times, search step = weight + arch."""

from __future__ import annotations

import json
import math

import pytest
import torch

from itnas.bench import SearchBenchSpec, peak_memory_mib, run_bench
from itnas.genotype import PUBLISHED_GENOTYPES

TINY = {"C": 4, "layers": 3, "batch_size": 2, "image_size": 8, "in_channels": 3, "rounds": 1, "warmup": 0,
        "final_C": 4, "final_layers": 3}


@pytest.fixture(scope="module")
def result() -> dict:
    return run_bench(["itnas", "darts"], ["pcdarts"], measure_memory=False, **TINY)


def test_structure(result):
    assert set(result) == {"settings", "configs", "final", "ratios"}
    json.dumps(result)  # JSON-ready
    s = result["settings"]
    for key in ("C", "layers", "batch_size", "image_size", "in_channels", "device", "torch", "cpu", "threads",
                "memory_method", "rounds", "warmup", "load_average_start"):
        assert key in s, key
    assert s["memory_method"] == "not measured"
    assert [(c["method"], c["base"]) for c in result["configs"]] == [("itnas", "pcdarts"), ("darts", "pcdarts")]
    for c in result["configs"]:
        assert c["search_peak_mib"] is None
        assert all(len(v) == TINY["rounds"] for v in c["samples"].values())
    assert result["final"]["genotype"] == PUBLISHED_GENOTYPES["darts_v2"].to_dict()
    assert {"final_step_ms", "final_img_per_s", "final_peak_mib"} <= set(result["final"])


def test_times_positive_and_search_step_is_the_sum(result):
    for rec in [*result["configs"], result["final"]]:
        ms = {k: v for k, v in rec.items() if k.endswith("_ms")}
        assert ms and all(v > 0 for v in ms.values()), ms
    for c in result["configs"]:
        assert c["search_step_ms"] == c["weight_step_ms"] + c["arch_step_ms"]
        assert c["search_img_per_s"] == TINY["batch_size"] / (c["search_step_ms"] / 1e3)


def test_ratios(result):
    r = result["ratios"]["pcdarts"]
    by = {c["method"]: c for c in result["configs"]}
    assert r["itnas_over_darts_step"] == by["itnas"]["search_step_ms"] / by["darts"]["search_step_ms"]
    assert r["itnas_over_darts_weight_step"] == by["itnas"]["weight_step_ms"] / by["darts"]["weight_step_ms"]
    assert r["itnas_over_darts_arch_step"] == by["itnas"]["arch_step_ms"] / by["darts"]["arch_step_ms"]
    assert isinstance(r["itnas_within_target"], bool)


def test_second_order_runs():
    res = run_bench(["itnas"], ["darts"], order="second", measure_memory=False, **TINY)
    assert res["configs"][0]["arch_step_ms"] > 0 and res["ratios"] == {}


def test_cpu_memory_in_fresh_processes():
    spec = SearchBenchSpec("itnas", "pcdarts", C=4, layers=3, batch_size=2, image_size=8)
    peak = peak_memory_mib(spec, torch.device("cpu"))
    assert math.isfinite(peak) and peak > 0


@pytest.mark.parametrize("kw,err,match", [({"methods": ["nope"]}, KeyError, "valid methods"),
                                          ({"bases": ["nope"]}, ValueError, "valid bases"),
                                          ({"order": "third"}, ValueError, "valid orders"),
                                          ({"bases": ["pcdarts"], "C": 6}, ValueError, "divisible")])
def test_bad_arguments_are_named(kw, err, match):
    args = {"methods": ["darts"], "bases": ["darts"], "measure_memory": False, **TINY} | kw
    with pytest.raises(err, match=match):
        run_bench(**args)
