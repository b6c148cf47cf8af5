"""Stage `evaluate`: test accuracy of the trained network (once, on the test split) -> runs/<run>/metrics.json."""

from __future__ import annotations

import json

from itnas.checkpoint import load_checkpoint
from itnas.data import ImageDataset, PreparedData
from itnas.genotype import Genotype
from itnas.networks import count_multiply_adds, count_parameters, create_final_network, final_network_from_config
from itnas.train import evaluate as evaluate_model

from .common import DATA_FILE, console, eval_config, load_params, resolve_device, run_dir, write_json

PAPER_C, PAPER_LAYERS = 36, 20  # DARTS CIFAR final-network size (DESIGN.md 3)


def evaluate(method: str, seed: int, params_file: str = "params.yaml") -> None:
    params = load_params(params_file)
    cfg = eval_config(params)
    device = resolve_device(params)
    out = run_dir(method, seed)
    ck = load_checkpoint(out / "train" / "model.pt")
    c = ck["config"]
    genotype = Genotype.from_dict(c["genotype"])
    model = final_network_from_config(c)
    model.load_state_dict(ck["model"])
    model.to(device)
    data = PreparedData.load(DATA_FILE)
    test_set = ImageDataset(data.test, data.mean, data.std, image_size=c["image_size"])
    result = evaluate_model(model, test_set, cfg.batch_size, device, len(data.classes))
    paper_net = create_final_network(genotype, PAPER_C, PAPER_LAYERS, 10, False, 3)
    search_metrics = json.loads((out / "search_metrics.json").read_text())
    metrics = {
        "test_acc": round(result["accuracy"], 2),
        "test_loss": round(result["loss"], 4),
        "test_images": result["n"],
        "params_m": round(count_parameters(model) / 1e6, 4),
        "madds_m": round(count_multiply_adds(model, (c["in_channels"], c["image_size"], c["image_size"])) / 1e6, 2),
        "params_m_c36_l20": round(count_parameters(paper_net) / 1e6, 3),
        "madds_m_c36_l20_32px": round(count_multiply_adds(paper_net, (3, 32, 32)) / 1e6, 1),
        "collapse_count": genotype.collapse_count,
        "search_time_s": search_metrics["search_time_s"],
        "train_time_s": round(sum(r["time_s"] for r in ck["history"]), 1),
    }
    write_json(out / "metrics.json", metrics)
    write_json(out / "eval_details.json", {"classes": data.classes, **result})
    console.print(f"{out.name}: test accuracy {metrics['test_acc']:.2f}% on {result['n']} test images "
                  f"({metrics['params_m']:.3f} M params)")
