"""Largest |gradient| of every architecture-parameter group at initialisation, per method, base and transition init
(one batch of 64 Fashion-MNIST images at 14 px, C=8, 5 cells, 1 thread) -> init_gradients.json in the current folder.

Usage (repository root, venv active, Fashion-MNIST under data/raw): python reports/experiments/init_gradients.py
"""

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from itnas.config import SearchConfig  # noqa: E402  (after the path set-up above)
from itnas.data import ImageDataset, ImageSplit, create_dataset  # noqa: E402
from itnas.search import build_search_model  # noqa: E402

INITS = [("uniform", 1.0), ("identity", 0.5), ("identity", 1.0), ("identity", 2.0), ("identity", 3.0)]
RUNS = [("itnas", "darts"), ("itnas_noattn", "darts"), ("itnas_notrans", "darts"), ("darts", "darts"),
        ("itnas", "pcdarts"), ("pcdarts", "pcdarts")]


def main() -> None:
    torch.set_num_threads(1)
    src = create_dataset("fashion_mnist", "data/raw")
    x, y = src.train_images[:64], src.train_labels[:64]
    ds = ImageDataset(ImageSplit(x, y, "train", torch.arange(64)), [0.286], [0.353], image_size=14)
    xb = torch.stack([ds[i][0] for i in range(64)])
    rows = []
    for init, gamma in INITS:
        for method, base in RUNS:
            torch.manual_seed(0)
            cfg = SearchConfig(method=method, supernet=dict(C=8, layers=5, base=base, partial_k=4),
                               architecture=dict(transition_init=init, transition_gamma=gamma))
            model = build_search_model(cfg, 10, 1)
            model.train()
            named = dict(model.arch.named_parameters())
            grads = torch.autograd.grad(F.cross_entropy(model(xb), y), list(named.values()))
            groups: dict[str, list[torch.Tensor]] = {}
            for name, g in zip(named, grads, strict=True):
                key = "beta_logits" if "beta" in name else name.split(".")[-1]
                groups.setdefault(key, []).append(g.flatten())
            rows.append(dict(init=init, gamma=gamma, method=method, base=base,
                             **{k: float(torch.cat(v).abs().max()) for k, v in groups.items()}))
            print(rows[-1], flush=True)
    Path("init_gradients.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
