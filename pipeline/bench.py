"""Command `bench`: search-step and final-step speed and peak memory (`pipeline.benchmark`) -> a Rich table and
reports/bench.json."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.table import Table

from itnas.config import ConfigError
from itnas.genotype import Genotype

from .benchmark import check_bench_args, run_bench
from .common import console, progress_bar, resolve_device, write_json


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
    for col in ("method", "base", "weight ms", "arch ms", "search ms", "alphas ms", "img/s", "peak MiB"):
        table.add_column(col, justify="left" if col in ("method", "base") else "right")
    for c in result["configs"]:
        table.add_row(c["method"], c["base"], _fmt(c["weight_step_ms"]), _fmt(c["arch_step_ms"]),
                      _fmt(c["search_step_ms"]), _fmt(c["alphas_ms"], 3), _fmt(c["search_img_per_s"]),
                      _fmt(c["search_peak_mib"]))
    return table


def bench(methods: list[str], bases: list[str], C: int, layers: int, batch_size: int, image_size: int,
          in_channels: int, rounds: int, warmup: int, order: str, final_C: int, final_layers: int,
          genotype_path: str | None, out: str = "reports/bench.json", device: str = "auto", threads: int = 0) -> None:
    """Time every (method, base) search step and the final train step; print a table and write JSON to `out`.

    threads: torch intra-op threads (0 = torch's default). On a CPU shared with other jobs, fewer threads than
    cores avoids OpenMP oversubscription (seen on 2 busy cores: a tiny search step 0.33 s on 1 thread, 1.4-43 s
    on 2).
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
    dev = resolve_device({"device": device})
    genotype = Genotype.load(genotype_path) if genotype_path else None
    console.print(f"bench on {dev}: {', '.join(methods)} x {', '.join(bases)}, C={C}, {layers} cells, "
                  f"batch {batch_size}, {image_size}x{image_size}, {warmup} warm-up + {rounds} rounds")
    with progress_bar("bench") as progress:
        task = progress.add_task("bench", total=None, info="")

        def on_progress(done: int, total: int, label: str) -> None:
            progress.update(task, completed=done, total=total, info=label)

        result = run_bench(methods, bases, C, layers, batch_size, image_size, in_channels, rounds=rounds,
                           warmup=warmup, order=order, final_C=final_C, final_layers=final_layers,
                           genotype=genotype, device=dev, on_progress=on_progress)
    result["final"]["genotype_source"] = genotype_path or "PUBLISHED_GENOTYPES['darts_v2']"
    console.print(_table(result))
    write_json(Path(out), result)
    console.print(f"-> {out}")
