"""Body of the command `itnas bench`: search-step and final-step speed and peak memory (`itnas_bench.benchmark`) ->
a Rich table and reports/bench.json; with `--against PATH`, the search steps of another checkout and of this one
side by side (`itnas_bench.benchmark.run_side_by_side`) -> old/new ratios."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.table import Table

from itnas.config import ConfigError
from itnas.genotype import Genotype
from itnas.params import resolve_device
from pipeline.common import console, progress_bar, write_json

from .benchmark import Side, check_bench_args, run_bench, run_side_by_side
from .side_worker import harness_module


def _split(values: list[str]) -> list[str]:
    """`--methods itnas,darts --methods pcdarts` -> [itnas, darts, pcdarts]."""
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def _fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _caption(result: dict) -> str:
    s, f = result["settings"], result["final"]
    lines = []
    for base, r in result["ratios"].items():
        if "itnas_over_darts_step" in r:
            verdict = "ok" if r["itnas_within_target"] else "OVER TARGET"
            lines.append(f"itnas/darts on {base} base: step {r['itnas_over_darts_step']:.3f}x "
                         f"(paired {r['itnas_over_darts_step_paired']:.3f}x; weight "
                         f"{r['itnas_over_darts_weight_step']:.3f}x, arch {r['itnas_over_darts_arch_step']:.3f}x) "
                         f"target <= {s['ratio_target_max']:.2f}x: {verdict}")
    lines.append(f"final net C={f['C']}, {f['layers']} cells, aux: {_fmt(f['final_step_ms'])} ms/step, "
                 f"{_fmt(f['final_img_per_s'])} img/s, peak {_fmt(f['final_peak_mib'])} MiB, "
                 f"{f['params_m']:.2f} M params")
    load = s["load_average_start"], s["load_average_end"]
    lines.append(f"{s['device']} ({s['gpu'] or s['cpu']}), {s['threads']} threads, torch {s['torch']}; "
                 f"B={s['batch_size']}, {s['image_size']}x{s['image_size']}, C={s['C']}, {s['layers']} cells, "
                 f"{s['order']} order; median of {s['rounds']} interleaved rounds; load avg (1/5/15 min) "
                 f"start {load[0]}, end {load[1]}")
    return "\n".join(lines)


def _table(result: dict) -> Table:
    table = Table(title="search step (arch step + weight step) per config", caption=_caption(result))
    for col in ("method", "base", "weight ms", "arch ms", "search ms", "alphas ms", "img/s", "peak MiB",
                "weight ops", "arch ops", "search ops"):
        table.add_column(col, justify="left" if col in ("method", "base") else "right")
    for c in result["configs"]:
        table.add_row(c["method"], c["base"], _fmt(c["weight_step_ms"]), _fmt(c["arch_step_ms"]),
                      _fmt(c["search_step_ms"]), _fmt(c["alphas_ms"], 3), _fmt(c["search_img_per_s"]),
                      _fmt(c["search_peak_mib"]), str(c["weight_step_ops"]), str(c["arch_step_ops"]),
                      str(c["search_step_ops"]))
    return table


def _against_table(result: dict) -> Table:
    old, new = (s["label"] for s in result["sides"])
    s = result["settings"]
    table = Table(title=f"search step, {old} vs {new} ({old}/{new} > 1: {new} is faster)",
                  caption=f"{old}: {result['sides'][0]['root']} @ {result['sides'][0]['revision']}; {new}: "
                          f"{result['sides'][1]['root']} ({result['sides'][1]['precision'] or 'default precision'})"
                          f"\nB={s['batch_size']}, {s['image_size']}x{s['image_size']}, C={s['C']}, {s['layers']} "
                          f"cells, {s['threads']} threads, {s['cpu']}; median of {s['rounds']} interleaved rounds, "
                          f"one process per (round, config, side); load avg start {s['load_average_start']}, end "
                          f"{s['load_average_end']}")
    for col in ("method", "base", f"weight ms {old}", new, "ratio", f"search ms {old}", new, "ratio", "paired",
                f"search ops {old}", new, "ratio"):
        table.add_column(col, justify="left" if col in ("method", "base") else "right")
    for c in result["configs"]:
        r = result["ratios"][c["base"]][c["method"]]
        ops = [c[side].get("search_step_ops") for side in (old, new)]
        table.add_row(c["method"], c["base"], _fmt(c[old]["weight_step_ms"]), _fmt(c[new]["weight_step_ms"]),
                      f"{r[f'{old}_over_{new}_weight_step']:.2f}x", _fmt(c[old]["search_step_ms"]),
                      _fmt(c[new]["search_step_ms"]), f"{r[f'{old}_over_{new}_search_step']:.2f}x",
                      f"{r[f'{old}_over_{new}_search_step_paired']:.2f}x", _fmt(ops[0], 0), _fmt(ops[1], 0),
                      f"{ops[0] / ops[1]:.2f}x" if None not in ops else "-")
    f = result["final"]
    if f is not None:
        r = result["ratios"]["final"]["final"]
        table.add_row(f"final C={f['C']}", f"{f['layers']} cells", "", "", "", _fmt(f[old]["final_step_ms"]),
                      _fmt(f[new]["final_step_ms"]), f"{r[f'{old}_over_{new}_final_step']:.2f}x",
                      f"{r[f'{old}_over_{new}_final_step_paired']:.2f}x", "", "", "")
    return table


def bench(methods: list[str], bases: list[str], C: int, layers: int, batch_size: int, image_size: int,
          in_channels: int, rounds: int, warmup: int, order: str, final_C: int, final_layers: int,
          genotype_path: str | None, out: str = "reports/bench.json", device: str = "auto", threads: int = 0,
          against: str | None = None, amp: str = "off", dtype: str = "float32", channels_last: bool = False,
          compiled: bool = False) -> None:
    """Time every (method, base) search step and the final train step; print a table and write JSON to `out`.

    threads: torch intra-op threads (0 = torch's default). On a CPU shared with other jobs, fewer threads than
    cores avoids OpenMP oversubscription (on 2 busy cores, spinning OpenMP threads made tiny steps many times
    slower on 2 threads than on 1; `OMP_WAIT_POLICY=PASSIVE`, which the side-by-side runs set, removes most of it).
    amp, dtype, channels_last: the precision of the steppers (docs/method.md 2.8).
    compiled: also time each search config with the weight step's forward compiled (torch.compile), side by side
    with the eager one in the same rounds; the compile time is reported apart.
    against: a checkout of other code (e.g. `git clone . /tmp/old && git -C /tmp/old checkout REV`): time its search
    steps and final step and this checkout's (in `amp`, `dtype`, `channels_last`) side by side, each in its own
    process (CPU; `threads` threads, default 2), and report old/new ratios instead of the usual table; `--against .`
    with a precision option measures that option's effect.
    """
    methods, bases = _split(methods), _split(bases)
    if threads < 0:
        raise ConfigError(f"threads={threads}; need 0 (torch's default) or more")
    if threads:
        torch.set_num_threads(threads)
    try:
        check_bench_args(methods, bases, order, rounds, warmup, C, layers=layers)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if against is not None:
        _bench_against(against, methods, bases, C, layers, batch_size, image_size, in_channels, rounds, warmup,
                       order, out, threads or 2, amp, dtype, channels_last, final_C, final_layers)
        return
    dev = resolve_device(device)
    genotype = Genotype.load(genotype_path) if genotype_path else None
    console.print(f"bench on {dev}: {', '.join(methods)} x {', '.join(bases)}, C={C}, {layers} cells, "
                  f"batch {batch_size}, {image_size}x{image_size}, {warmup} warm-up + {rounds} rounds")
    with progress_bar("bench") as progress:
        task = progress.add_task("bench", total=None, info="")

        def on_progress(done: int, total: int, label: str) -> None:
            progress.update(task, completed=done, total=total, info=label)

        result = run_bench(methods, bases, C, layers, batch_size, image_size, in_channels, rounds=rounds,
                           warmup=warmup, order=order, final_C=final_C, final_layers=final_layers,
                           genotype=genotype, device=dev, on_progress=on_progress, amp=amp, dtype=dtype,
                           channels_last=channels_last, compiled=compiled)
    result["final"]["genotype_source"] = genotype_path or "PUBLISHED_GENOTYPES['darts_v2']"
    console.print(_table(result))
    for c in result["configs"]:
        if "compiled" in c:
            k = c["compiled"]
            console.print(f"{c['method']}/{c['base']} compiled: compile {k['compile_s']:.1f} s, weight step "
                          f"{k['weight_step_ms']:.1f} ms (eager/compiled {k['eager_over_compiled_weight_step']:.2f}x), "
                          f"search step {k['search_step_ms']:.1f} ms ({k['eager_over_compiled_search_step']:.2f}x)")
    write_json(Path(out), result)
    console.print(f"-> {out}")


def _bench_against(against: str, methods: list[str], bases: list[str], C: int, layers: int, batch_size: int,
                   image_size: int, in_channels: int, rounds: int, warmup: int, order: str, out: str, threads: int,
                   amp: str, dtype: str, channels_last: bool, final_C: int = 36, final_layers: int = 20) -> None:
    """`bench --against`: the old checkout's and this checkout's search steps and final train step (DARTS_V2 at
    final_C, final_layers) side by side -> table and JSON. `--against .` with a precision option measures that
    option's effect on this checkout (old = default precision, new = the option)."""
    root = Path(against)
    harness = Path(*harness_module(against).split(".")).with_suffix(".py")
    if not (root / harness).is_file():
        raise ConfigError(f"--against {against}: not a checkout of this project (no itnas_bench/benchmark.py, nor "
                          "pipeline/benchmark.py of a checkout from before the harness moved)")
    precision = {k: v for k, v in (("amp", amp), ("dtype", dtype), ("channels_last", channels_last))
                 if v != {"amp": "off", "dtype": "float32", "channels_last": False}[k]}
    sides = [Side("old", str(root)), Side("new", str(Path(__file__).resolve().parents[1]),
                                          tuple(precision.items()))]
    console.print(f"bench --against {against}: {', '.join(methods)} x {', '.join(bases)}, C={C}, {layers} cells, "
                  f"batch {batch_size}, {image_size}x{image_size}, {threads} threads, {warmup} warm-up step(s) + "
                  f"2 timed per process, {rounds} rounds")
    with progress_bar("bench") as progress:
        task = progress.add_task("bench", total=None, info="")

        def on_progress(done: int, total: int, label: str) -> None:
            progress.update(task, completed=done, total=total, info=label)

        result = run_side_by_side(sides, methods, bases, C, layers, batch_size, image_size, in_channels,
                                  rounds=rounds, warmup=max(warmup, 1), order=order, threads=threads, final=True,
                                  final_C=final_C, final_layers=final_layers, on_progress=on_progress)
    console.print(_against_table(result))
    write_json(Path(out), result)
    console.print(f"-> {out}")
