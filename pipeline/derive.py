"""Stage `derive`: the genotype of a searched supernet -> runs/<chain>/genotype.json (the genotype of `derive.mode`)
and runs/<chain>/derivations.json (the genotypes of both modes, `{"marginal": {...}, "sequential": {...}}`, what
the nb201 evaluation looks up without loading the supernet), and runs/<chain>/epoch_genotypes.json (the marginal
genotype of every search epoch, from search/history.json: the search trajectory the nb201 evaluation looks up)."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from itnas.checkpoint import CheckpointError, read_torch_file
from itnas.contracts import SupernetMeta
from itnas.derive import DERIVE_MODES, derive_genotype
from itnas.params import load_params
from itnas.run import Derivations, EpochGenotypes
from itnas.search import build_search_model
from itnas.supernet import SearchModel

from .common import console
from .paths import run_record


def load_supernet(path: Path) -> tuple[SearchModel, SupernetMeta]:
    """(SearchModel on the CPU, SupernetMeta) of a search stage's `supernet.pt` (which exists).

    Raises:
        CheckpointError: unreadable file or not a supernet of this version (advice: `dvc checkout` / `dvc repro`).
    """
    advice = "restore it with `dvc checkout` or rebuild it with `dvc repro`"
    payload = read_torch_file(path, advice)
    try:
        if not isinstance(payload, dict):
            raise TypeError(f"a {type(payload).__name__}, not a dict")
        meta = SupernetMeta.model_validate(payload["meta"])
        model = build_search_model(meta.config, meta.num_classes, meta.in_channels)
        model.load_state_dict(payload["model"])
    except (KeyError, TypeError, ValidationError, RuntimeError) as err:
        raise CheckpointError(f"{path} is not a supernet of this version ({_one_line(err)}); {advice}") from None
    return model, meta


def _one_line(err: Exception) -> str:
    """`TypeName: message` on one line; a pydantic ValidationError as its first fields and messages."""
    if isinstance(err, ValidationError):
        errors = err.errors()
        shown = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in errors[:4])
        more = f"; and {len(errors) - 4} more" if len(errors) > 4 else ""
        return f"{err.title}: {shown}{more}"
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def derive(benchmark: str, method: str, seed: int, params_file: str = "params.yaml") -> None:
    cfg = load_params(params_file).derive
    run = run_record(benchmark, method, seed)
    model, _ = load_supernet(run.require("supernet"))  # missing: RunFileMissing names the search stage
    derived = {mode: derive_genotype(model.arch, mode) for mode in DERIVE_MODES}
    genotype = derived[cfg.mode]
    genotype.save(run.genotype)
    run.write_json("derivations", Derivations(**{mode: g.to_dict() for mode, g in derived.items()}))
    run.write_json("epoch_genotypes", EpochGenotypes.from_history(run.read_json("search_history"),
                                                                  str(run.search_history)))
    console.print(f"{cfg.mode} genotype of {run.name} (collapse count {genotype.collapse_count}):")
    for t in ("normal", "reduce"):
        if getattr(genotype, t):
            console.print(f"  {t}: {genotype.cell_string(t)}")
