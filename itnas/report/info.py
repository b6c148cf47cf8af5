"""What the report says about a benchmark besides its runs (`BenchmarkInfo`), from the params model and the prepare
stage's summaries: its label and evaluator, one line on the sizes run (each part "paper recipe" when at least the
paper's size), one line on the prepared data, and the settings lines of the markdown report."""

from __future__ import annotations

import json
from pathlib import Path

from ..evaluators.reports import get_report
from ..params import Params
from .runs import BenchmarkInfo

__all__ = ["benchmark_info", "size_line"]

#: Paper search sizes (docs/method.md 3): (C, cells, epochs) of the DARTS-space search and, by space layout, the
#: NB201 search (C=16, 5 cells per stage, 50 epochs).
PAPER_SEARCH = {"darts": (16, 8, 50), "nb201": (16, 5, 50)}


def size_line(params: Params, benchmark: str, methods: list[str]) -> str:
    """What was run, in one line: "CPU-reduced search: space darts, C=8, 5 cells, 5000 + 5000 images at 16 px, 6
    epochs; training: C=16, 8 cells, 10 epochs", each part "paper recipe" when at least the paper's size."""
    data = params.data_config(benchmark)
    c = params.search_config(benchmark, methods[0], 0)
    s = c.supernet
    pc, pl, pe = PAPER_SEARCH["nb201" if s.space == "nb201" else "darts"]
    cells = "cells per stage" if s.space == "nb201" else "cells"
    px = f"{c.data.image_size} px" if c.data.image_size else "native size"
    epochs = sorted({params.search_config(benchmark, m, 0).schedule.epochs for m in methods})
    paper = s.C >= pc and s.layers >= pl and min(epochs) >= pe and not c.data.image_size
    search = (f"search: paper recipe (space {s.space})" if paper else
              f"CPU-reduced search: space {s.space}, C={s.C}, {s.layers} {cells}, {data.search_train_size} + "
              f"{data.search_val_size} images at {px}, {'/'.join(map(str, epochs))} epochs")
    evaluator = get_report(params.evaluation(benchmark))
    return f"{search}; {evaluator.size_text(params.train_config(benchmark))}"


def _data_line(prepared: tuple[Path, Path], trains: bool) -> str | None:
    """One line from the prepare stage's summaries (`prepared`: its search and train folders, each with a
    summary.json), None when neither exists (e.g. results rendered without their prepared data)."""
    search_dir, train_dir = prepared
    summaries = {k: json.loads((d / "summary.json").read_text()) for k, d in (("search", search_dir),
                                                                              ("train", train_dir))
                 if (d / "summary.json").exists()}
    if not summaries:
        return None
    first = summaries.get("search") or summaries["train"]
    side = first.get("image_size")
    parts = [f"{first.get('dataset', 'unknown')}: {len(first.get('classes') or [])} classes, "
             f"{first.get('in_channels', '?')} x {side} x {side} px"]
    if "search" in summaries:
        s = summaries["search"]
        parts.append(f"search: {s.get('search_train_size')} search-train + {s.get('search_val_size')} search-val "
                     "images")
    if "train" in summaries and trains:
        t = summaries["train"]
        parts.append(f"final training: {t.get('train_size')} images; test: {t.get('test_size')} images that search, "
                     "derivation and training never see")
    return "; ".join(parts)


def _settings(params: Params, benchmark: str, methods: list[str]) -> dict[str, str]:
    """One line per method's search settings, plus derivation and final training (from the params)."""
    out = {}
    for method in methods:
        c = params.search_config(benchmark, method, 0)
        s, d = c.supernet, c.data
        out[f"search, {method}"] = (f"space {s.space}, base {c.base}, C={s.C}, {s.layers} cells, {c.schedule.epochs} "
                                    f"epochs ({c.schedule.warmup_epochs} warm-up), batch {d.batch_size}, "
                                    f"{c.arch_optimizer.order}-order, images {d.image_size or 'native'} px")
    out["derive"] = f"mode {params.derive.mode}"
    out.update(get_report(params.evaluation(benchmark)).settings(params.train_config(benchmark), params.evaluate))
    return out


def benchmark_info(params: Params, benchmark: str, methods: list[str], prepared: tuple[Path, Path]) -> BenchmarkInfo:
    """What the report says about `benchmark` besides its runs (label, evaluation, size and data lines, settings),
    from the params and the prepare stage's summaries in `prepared` (its search and train folders)."""
    evaluation = params.evaluation(benchmark)
    return BenchmarkInfo(
        name=benchmark, label=params.label(benchmark), evaluation=evaluation,
        size=size_line(params, benchmark, methods), dataset=params.data_config(benchmark).dataset,
        space=params.search_config(benchmark, methods[0], 0).supernet.space, derivation=params.derive.mode,
        data=_data_line(prepared, get_report(evaluation).trains), settings=_settings(params, benchmark, methods))
