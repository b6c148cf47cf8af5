"""Loading one run folder into a `RunResult`.

A run is one (method, seed) of a study; its folder holds ``metrics.json`` (test metrics of the trained network),
``genotype.json`` (the derived genotype) and ``search/history.json`` (one record per search epoch; the last
one also holds the transition matrices and attention weights in the format of `itnas.records`).

This module names the files a run lacks; it does not know how they are made. A missing file raises
`RunFilesMissing`, whose ``stage`` attribute names the step that writes the file (``search``, ``derive``,
``evaluate``), so that a command-line layer can turn it into advice on what to run.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..genotype import Genotype

__all__ = ["RUN_FILES", "RunFilesMissing", "RunResult", "load_run"]

log = logging.getLogger(__name__)

#: File of a run (relative to its folder) -> (what it holds, the step that writes it).
RUN_FILES = {
    "metrics.json": ("test metrics", "evaluate"),
    "genotype.json": ("derived genotype", "derive"),
    "search/history.json": ("search history", "search"),
}
_TRANSITION_KEYS = {"transitions": ("pred", "edge", "matrix"), "attention": ("edge", "preds", "weights")}


class RunFilesMissing(FileNotFoundError):
    """A file of a run folder does not exist.

    Attributes:
        path: the missing file.
        stage: the step that writes it (``search``, ``derive`` or ``evaluate``), a hint for the caller.
    """

    def __init__(self, path: Path, what: str, stage: str):
        super().__init__(f"{path} does not exist (the run's {what})")
        self.path, self.stage = Path(path), stage


@dataclass
class RunResult:
    """One evaluated run.

    Attributes:
        method, seed: the run's method name and seed.
        metrics: the run's ``metrics.json``: test_acc (%), test_loss (nats), test_images, params_m (M parameters
            of the trained network), madds_m (M multiply-adds), params_m_c36_l20 and madds_m_c36_l20_32px (the
            same genotype at the paper size, C=36, 20 cells, 32x32 input), collapse_count, search_time_s and
            train_time_s (wall seconds).
        genotype: the derived genotype.
        history: per-epoch search records (`itnas.search`); empty when the file was missing.
    """

    method: str
    seed: int
    metrics: dict[str, Any]
    genotype: Genotype
    history: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        """``<method>-s<seed>``, the run directory's name."""
        return f"{self.method}-s{self.seed}"

    @property
    def test_acc(self) -> float:
        """Test accuracy (%) of the final network."""
        return float(self.metrics["test_acc"])

    @property
    def collapse_count(self) -> int:
        """Parameter-free ops in the normal cell of the derived genotype (docs/method.md 2.6)."""
        return int(self.metrics.get("collapse_count", self.genotype.collapse_count))

    @property
    def decisiveness(self) -> dict[str, Any]:
        """How decided the last search epoch's marginal genotype is (`itnas.search.epoch_arch_record`):
        min_margin, median_margin (alpha units), n_within_noise, max_alpha; {} for histories without it."""
        return (self.history[-1].get("decisiveness") or {}) if self.history else {}

    @property
    def search_time_s(self) -> float | None:
        """Wall seconds of the search (metrics, else the sum of the history's epoch times, else None)."""
        if self.metrics.get("search_time_s") is not None:
            return float(self.metrics["search_time_s"])
        times = [r["time_s"] for r in self.history if "time_s" in r]
        return float(sum(times)) if times else None


def load_run(run_dir: Path, method: str, seed: int) -> RunResult:
    """Read one run directory.

    Reads ``metrics.json`` and ``genotype.json`` (required) and ``search/history.json`` (optional: a missing
    history gives an empty list and a warning, the report then leaves out that run's search plots).

    Raises:
        RunFilesMissing: genotype.json or metrics.json is missing (a FileNotFoundError naming the file).
        KeyError: metrics.json has no ``test_acc``.
        GenotypeError: genotype.json is malformed or does not fit its space.
        ValueError: a file is not valid JSON, the history is not a list, or its last record's transitions or
            attention are not lists of records in the format of `itnas.records`.
    """
    run_dir = Path(run_dir)
    for name in ("genotype.json", "metrics.json"):
        if not (run_dir / name).exists():
            raise RunFilesMissing(run_dir / name, *RUN_FILES[name])
    metrics_path, history_path = run_dir / "metrics.json", run_dir / "search/history.json"
    metrics = _read_json(metrics_path)
    if not isinstance(metrics, dict) or "test_acc" not in metrics:
        keys = sorted(metrics) if isinstance(metrics, dict) else type(metrics).__name__
        raise KeyError(f"{metrics_path} has no 'test_acc'; it holds {keys}")
    genotype = Genotype.load(run_dir / "genotype.json")
    history: list[dict] = []
    if history_path.exists():
        history = _read_json(history_path)
        if not isinstance(history, list):
            raise ValueError(f"{history_path} must hold a list of per-epoch records, got {type(history).__name__}")
        if history:
            _check_transition_records(history_path, history[-1])
    else:
        log.warning("%s is missing (the search history); the report leaves out the search plots of %s-s%d",
                    history_path, method, seed)
    return RunResult(method, int(seed), metrics, genotype, history)


def _read_json(path: Path) -> Any:
    """The parsed JSON of `path`. Raises ValueError naming the file when it is not valid JSON."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None


def _check_transition_records(path: Path, rec: dict) -> None:
    """Raise ValueError unless rec["transitions"] / rec["attention"] (where present) map every cell type to a list
    of records with the keys of `itnas.records` (an older history stored dicts keyed by strings instead)."""
    for key, fields in _TRANSITION_KEYS.items():
        for cell_type, records in (rec.get(key) or {}).items():
            if not isinstance(records, list) or not all(isinstance(r, dict) and set(fields) <= set(r)
                                                         for r in records):
                raise ValueError(f"{path}: last record's {key}[{cell_type!r}] must be a list of records with keys "
                                 f"{', '.join(fields)} (itnas.records); got {type(records).__name__} "
                                 "(a history written in an older format?)")
