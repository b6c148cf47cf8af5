"""Stage `evaluate` of one (benchmark, method, seed) chain: how good the derived genotype is, by the benchmark's
evaluation (`benchmarks.<name>.evaluation`):

- `train`: train the final network from scratch on the benchmark's training split (`pipeline.train_network`,
  resumable), then test it once on the test split -> runs/<chain>/evaluate/ and runs/<chain>/metrics.json;
- `nb201`: look the cell up in the NAS-Bench-201 table (no training) -> the same two outputs. Both derivations
  (marginal and sequential, the derive stage's derivations.json) are looked up: details.json holds both cells, the
  metrics hold the cell of `derive.mode` (the genotype.json of the chain).

Neither reads the supernet or search_metrics.json (the report takes the search time from there), so a new search
that derives the same genotypes retrains nothing.
"""

from __future__ import annotations

import json

import torch

from itnas.contracts import NB201Metrics, RunMetrics
from itnas.data import ImageDataset, load_train_data, loader_options
from itnas.distributed import DistContext
from itnas.errors import MissingOutputError
from itnas.genotype import DERIVE_MODES, Genotype, GenotypeError
from itnas.networks import count_multiply_adds, count_parameters, create_final_network
from itnas.params import Params, load_params
from itnas.train import evaluate as evaluate_model

from .common import console, distributed_run, write_json
from .paths import RunPaths, prepared_dirs

PAPER_C, PAPER_LAYERS = 36, 20  # DARTS CIFAR final-network size (docs/method.md 4)


def evaluate(benchmark: str, method: str, seed: int, params_file: str = "params.yaml") -> None:
    """Evaluate one chain. Under torchrun (`distributed.nproc_per_node` > 1) every rank trains on its shards of each
    batch; rank 0 alone tests, looks up and writes."""
    params = load_params(params_file)
    run = RunPaths(benchmark, method, seed)
    with distributed_run(params) as (ctx, device):
        if params.evaluation(benchmark) == "nb201":
            if ctx.is_main:
                _lookup(params, run)
        else:
            _train_and_test(params, run, ctx, device)


def _train_and_test(params: Params, run: RunPaths, ctx: DistContext, device: torch.device) -> None:
    from .train_network import train_network

    Genotype.load(run.genotype)  # a genotype that cannot be trained stops here, before any data is read
    dcfg = params.data_config(run.benchmark)
    data = load_train_data(prepared_dirs(run.benchmark)[1], dcfg.root, dcfg.download)
    model, net, history = train_network(params, run, data, ctx, device)
    if not ctx.is_main:
        return  # rank 0 tests the network (the same on every rank) and writes
    genotype = Genotype.from_dict(net.genotype)
    test_set = ImageDataset(data.test, data.mean, data.std, image_size=net.image_size)
    workers = loader_options(params.train_config(run.benchmark).data.num_workers, device)  # {} on a CPU
    result = evaluate_model(model, test_set, params.evaluate.batch_size, device, len(data.classes),
                            loader_kw=workers)
    paper_net = create_final_network(genotype, PAPER_C, PAPER_LAYERS, 10, False, 3)
    model.cpu()
    metrics = RunMetrics(
        test_acc=round(result["accuracy"], 2),
        test_loss=round(result["loss"], 4),
        test_images=result["n"],
        params_m=round(count_parameters(model) / 1e6, 4),
        madds_m=round(count_multiply_adds(model, (net.in_channels, net.image_size, net.image_size)) / 1e6, 2),
        params_m_c36_l20=round(count_parameters(paper_net) / 1e6, 3),
        madds_m_c36_l20_32px=round(count_multiply_adds(paper_net, (3, 32, 32)) / 1e6, 1),
        collapse_count=genotype.collapse_count,
        train_time_s=round(sum(r["time_s"] for r in history), 1),
    )
    write_json(run.metrics, metrics.model_dump(exclude={"search_time_s"}))  # the report reads search_metrics.json
    write_json(run.eval_details, {"evaluation": "train", "classes": data.classes, **result})
    console.print(f"{run.name}: test accuracy {metrics.test_acc:.2f}% on {result['n']} test images "
                  f"({metrics.params_m:.3f} M params)")


def _load_derivations(run: RunPaths) -> dict[str, Genotype]:
    """The derive stage's derivations.json: mode -> Genotype, both modes. Raises MissingOutputError naming the command
    that writes it, GenotypeError when it is not a mapping of both modes to valid genotypes."""
    path = run.derivations
    if not path.exists():
        raise MissingOutputError(f"{path} does not exist; run `dvc repro` or `itnas derive {run.benchmark} "
                                f"{run.method} {run.seed}`")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise GenotypeError(f"{path} is not valid JSON ({err}); rerun `dvc repro`") from None
    if not isinstance(data, dict) or set(data) != set(DERIVE_MODES):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise GenotypeError(f"{path} must map {' and '.join(DERIVE_MODES)} to their genotypes, got {keys}; rerun "
                            "`dvc repro`")
    out = {}
    for mode in DERIVE_MODES:
        try:
            out[mode] = Genotype.from_dict(data[mode])
        except GenotypeError as err:
            raise GenotypeError(f"{path}: {mode}: {err}") from None
    return out


def _lookup(params: Params, run: RunPaths) -> None:
    from itnas.nb201 import DEFAULT_METRICS, load_nb201_table

    table = load_nb201_table()
    mode = params.derive.mode
    cells = _load_derivations(run)
    stored = Genotype.load(run.genotype)
    if stored != cells[mode]:
        raise GenotypeError(f"{run.genotype} is not the {mode} genotype of {run.derivations}; rerun `dvc repro`")
    details = {"evaluation": "nb201", "derivation": mode, "cells": {}}
    for m, cell in cells.items():
        details["cells"][m] = {"arch": cell.to_nb201_string(), "collapse_count": cell.collapse_count,
                               **table.lookup(cell)}
    best = {name: table.best(name) for name in DEFAULT_METRICS}
    details["table_best"] = {name: {"arch": arch, "value": value} for name, (arch, value) in best.items()}
    picked = details["cells"][mode]
    metrics = NB201Metrics(**{k: picked[k] for k in NB201Metrics.model_fields if k in picked}, derivation=mode)
    run.evaluate_dir.mkdir(parents=True, exist_ok=True)
    write_json(run.eval_details, details)
    write_json(run.metrics, metrics.model_dump(exclude={"search_time_s"}))
    other = "sequential" if mode == "marginal" else "marginal"
    console.print(f"{run.name}: NB201 cell {picked['arch']}: CIFAR-10 {metrics.nb201_c10_test:.2f} %, CIFAR-100 "
                  f"{metrics.nb201_c100_test:.2f} %, ImageNet16-120 {metrics.nb201_in16_test:.2f} % (test); "
                  f"{other} derivation: CIFAR-10 {details['cells'][other]['nb201_c10_test']:.2f} %")
