"""Stage `evaluate`: test accuracy of the trained network (once, on the test split) -> runs/<run>/metrics.json."""

from __future__ import annotations

import json

from pydantic import ValidationError

from itnas.checkpoint import CheckpointError
from itnas.contracts import FinalNetworkConfig, RunMetrics, SearchMetrics
from itnas.data import ImageDataset, load_train_data
from itnas.genotype import Genotype
from itnas.networks import count_multiply_adds, count_parameters, create_final_network, final_network_from_config
from itnas.train import evaluate as evaluate_model

from .common import (
    console,
    data_config,
    eval_config,
    load_output,
    load_params,
    one_line,
    resolve_device,
    write_json,
)
from .paths import TRAIN_DATA_DIR, RunPaths

PAPER_C, PAPER_LAYERS = 36, 20  # DARTS CIFAR final-network size (docs/method.md 4)


def evaluate(method: str, seed: int, params_file: str = "params.yaml") -> None:
    params = load_params(params_file)
    cfg = eval_config(params)
    device = resolve_device(params)
    run = RunPaths(method, seed)
    ck = load_output(run.model)
    try:
        net = FinalNetworkConfig.model_validate(ck["config"]["final"])
    except (KeyError, TypeError, ValidationError) as err:
        raise CheckpointError(f"{run.model} is not a trained network of this version ({one_line(err)}); restore "
                              f"it with `dvc checkout` or rebuild it with `dvc repro`") from None
    genotype = Genotype.from_dict(net.genotype)
    model = final_network_from_config(net)
    model.load_state_dict(ck["model"])
    model.to(device)
    dcfg = data_config(params)
    data = load_train_data(TRAIN_DATA_DIR, dcfg.root, dcfg.download)
    test_set = ImageDataset(data.test, data.mean, data.std, image_size=net.image_size)
    result = evaluate_model(model, test_set, cfg.batch_size, device, len(data.classes))
    paper_net = create_final_network(genotype, PAPER_C, PAPER_LAYERS, 10, False, 3)
    search_metrics = SearchMetrics.model_validate(json.loads(run.search_metrics.read_text()))
    metrics = RunMetrics(
        test_acc=round(result["accuracy"], 2),
        test_loss=round(result["loss"], 4),
        test_images=result["n"],
        params_m=round(count_parameters(model) / 1e6, 4),
        madds_m=round(count_multiply_adds(model, (net.in_channels, net.image_size, net.image_size)) / 1e6, 2),
        params_m_c36_l20=round(count_parameters(paper_net) / 1e6, 3),
        madds_m_c36_l20_32px=round(count_multiply_adds(paper_net, (3, 32, 32)) / 1e6, 1),
        collapse_count=genotype.collapse_count,
        search_time_s=search_metrics.search_time_s,
        train_time_s=round(sum(r["time_s"] for r in ck["history"]), 1),
    )
    write_json(run.metrics, metrics.model_dump())
    write_json(run.eval_details, {"classes": data.classes, **result})
    console.print(f"{run.name}: test accuracy {metrics.test_acc:.2f}% on {result['n']} test images "
                  f"({metrics.params_m:.3f} M params)")
