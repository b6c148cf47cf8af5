"""One search of the CPU-default size through the library; prints and writes its genotype, margins and alphas.

Usage (repository root, venv active, Fashion-MNIST under data/raw):
    python reports/experiments/search_decisiveness.py METHOD THREADS ARCH_LR EPOCHS WARMUP [INIT] [BATCH]
e.g. `itnas 2 0.03 3 0 identity` is the default search; `itnas 1 0.03 3 0 identity` the same at 1 thread.
Writes <method>-t<threads>-lr<arch_lr>-e<epochs>-w<warmup>-<init>[-b<batch>].json into the current folder.
"""

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from itnas.config import SearchConfig  # noqa: E402  (after the path set-up above)
from itnas.data import ImageDataset, SearchData, create_dataset, make_splits  # noqa: E402
from itnas.search import run_search  # noqa: E402


def main(argv: list[str]) -> None:
    method, threads, arch_lr, epochs, warmup = argv[0], int(argv[1]), float(argv[2]), int(argv[3]), int(argv[4])
    init = argv[5] if len(argv) > 5 else "identity"
    batch = int(argv[6]) if len(argv) > 6 else 64
    torch.set_num_threads(threads)
    src = create_dataset("fashion_mnist", "data/raw")
    s_idx, _ = make_splits(src, 1280, 1280, 0, 0, 0)
    data = SearchData.from_indices(s_idx, src)
    tr = ImageDataset(data.search_train, data.mean, data.std, image_size=14)
    va = ImageDataset(data.search_val, data.mean, data.std, image_size=14)
    cfg = SearchConfig(method=method, supernet=dict(space="darts", base="darts", C=8, layers=5),
                       architecture=dict(transition_init=init, transition_gamma=2.0),
                       weight_optimizer=dict(lr=0.025, lr_min=0.001), arch_optimizer=dict(lr=arch_lr),
                       schedule=dict(epochs=epochs, warmup_epochs=warmup, val_every=0),
                       data=dict(batch_size=batch, image_size=14))
    t0 = time.time()
    last = run_search(cfg, tr, va, 10, 1).history[-1]
    out = {"method": method, "threads": threads, "arch_lr": arch_lr, "epochs": epochs, "warmup": warmup,
           "init": init, "time_s": round(time.time() - t0, 1), "decisiveness": last["decisiveness"],
           "genotype": last["genotype"], "collapse": last["collapse_count"], "alphas": last["alphas"]}
    tag = f"{method}-t{threads}-lr{arch_lr}-e{epochs}-w{warmup}-{init}" + (f"-b{batch}" if len(argv) > 6 else "")
    Path(f"{tag}.json").write_text(json.dumps(out))
    print(tag, out["time_s"], out["decisiveness"], out["collapse"], flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
