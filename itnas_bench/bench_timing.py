"""Timing and statistics of the speed harness (`itnas_bench.benchmark`): no model in here, only calls and numbers.

Configs are timed side by side: after `warmup` untimed calls of every measure, round r runs every entry once, in
an order rotated by r (no entry always follows the same neighbour); a config reports the median over the rounds.
Wall clock: `time.perf_counter` (or an injected clock), `torch.cuda.synchronize` before and after each call on
CUDA.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable

import torch

__all__ = ["RATIO_TARGET_MAX", "Clock", "Measures", "search_times", "step_ratios", "sync", "time_ms", "time_rounds"]

log = logging.getLogger(__name__)
Clock = Callable[[], float]  # seconds, monotonic
Measures = dict[str, Callable[[], object]]  # measure name (e.g. "arch_step_ms") -> the call it times

RATIO_TARGET_MAX = 1.05  # spec: the ITNAS parameterisation costs at most 5 % over darts on the same base


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], object], device: torch.device, clock: Clock = time.perf_counter) -> float:
    """Wall time of `fn()` in ms by `clock` (seconds), with device sync before and after."""
    sync(device)
    t0 = clock()
    fn()
    sync(device)
    return (clock() - t0) * 1e3


def time_rounds(entries: dict[str, Measures], rounds: int, warmup: int, device: torch.device,
                clock: Clock = time.perf_counter, tick: Callable[[str], None] | None = None
                ) -> dict[str, dict[str, list[float]]]:
    """Time every entry side by side: `warmup` untimed calls of each measure, then `rounds` rounds; round r runs
    the entries in their order rotated by r, each entry's measures in their order.

    Args:
        entries: label -> {measure name: call}. tick(what): called after every entry's warm-up and timed round.

    Returns:
        label -> measure name -> one time (ms) per round.
    """
    samples = {label: {name: [] for name in fns} for label, fns in entries.items()}
    items, tick = list(entries.items()), tick or (lambda _: None)
    for _ in range(warmup):
        for label, fns in items:
            for fn in fns.values():
                fn()
            sync(device)
            tick(f"warm-up {label}")
    for r in range(rounds):
        t0 = time.perf_counter()
        shift = r % len(items)
        for label, fns in items[shift:] + items[:shift]:
            for name, fn in fns.items():
                samples[label][name].append(time_ms(fn, device, clock))
            tick(f"round {r + 1}/{rounds} {label}")
        log.info("bench round %d/%d: %.1f s", r + 1, rounds, time.perf_counter() - t0)
    return samples


def search_times(samples: dict[str, list[float]], batch_size: int) -> dict[str, float]:
    """Medians over rounds of one search config's weight_step_ms, arch_step_ms and alphas_ms; search_step_ms
    (= weight + arch) and search_img_per_s (B / search step s)."""
    med = {name: statistics.median(v) for name, v in samples.items()}
    search_ms = med["weight_step_ms"] + med["arch_step_ms"]
    return {"weight_step_ms": med["weight_step_ms"], "arch_step_ms": med["arch_step_ms"],
            "search_step_ms": search_ms, "alphas_ms": med["alphas_ms"],
            "search_img_per_s": batch_size / (search_ms / 1e3)}


def step_ratios(configs: list[dict], samples: dict[tuple[str, str], dict[str, list[float]]]) -> dict:
    """Per base, every method over the `darts` method on the same base: step, weight step, arch step, alphas
    (ratios of the medians in `configs`), and the median over rounds of the per-round search-step ratio (paired:
    same round; `samples` keyed by (method, base)). itnas_within_target: itnas step ratio <= RATIO_TARGET_MAX."""
    by_key = {(c["method"], c["base"]): c for c in configs}
    out: dict[str, dict] = {}
    for (method, base), c in by_key.items():
        ref = by_key.get(("darts", base))
        if method == "darts" or ref is None:
            continue
        s, r = samples[(method, base)], samples[("darts", base)]
        paired = [(sw + sa) / (rw + ra) for sw, sa, rw, ra in
                  zip(s["weight_step_ms"], s["arch_step_ms"], r["weight_step_ms"], r["arch_step_ms"], strict=True)]
        d = out.setdefault(base, {})
        for name, key in (("step", "search_step_ms"), ("weight_step", "weight_step_ms"),
                          ("arch_step", "arch_step_ms"), ("alphas", "alphas_ms")):
            d[f"{method}_over_darts_{name}"] = c[key] / ref[key]
        d[f"{method}_over_darts_step_paired"] = statistics.median(paired)
        if method == "itnas":
            d["itnas_within_target"] = d["itnas_over_darts_step"] <= RATIO_TARGET_MAX
    return out
