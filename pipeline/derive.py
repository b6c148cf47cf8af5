"""Stage `derive`: the genotype of a searched supernet -> runs/<run>/genotype.json."""

from __future__ import annotations

from itnas.checkpoint import load_checkpoint
from itnas.config import SearchConfig
from itnas.derive import derive_genotype
from itnas.search import build_search_model

from .common import console, derive_config, load_params, run_dir


def derive(method: str, seed: int, params_file: str = "params.yaml") -> None:
    cfg = derive_config(load_params(params_file))
    out = run_dir(method, seed)
    ck = load_checkpoint(out / "search" / "supernet.pt")
    search_cfg = SearchConfig(**ck["config"])
    model = build_search_model(search_cfg, ck["num_classes"], ck["in_channels"])
    model.load_state_dict(ck["model"])
    genotype = derive_genotype(model.arch, cfg.mode)
    genotype.save(out / "genotype.json")
    console.print(f"{cfg.mode} genotype of {out.name} (collapse count {genotype.collapse_count}):")
    for t in ("normal", "reduce"):
        if getattr(genotype, t):
            console.print(f"  {t}: {genotype.cell_string(t)}")
