"""Loading one run folder into a `RunResult`, and what the report knows of a benchmark (`BenchmarkInfo`).

A run is one (benchmark, method, seed) chain; its folder holds ``metrics.json`` (what the evaluation measured),
``genotype.json`` (the derived genotype), ``evaluate/details.json`` (the evaluation's details),
``search/history.json`` (one record per search epoch; the last one also holds the transition matrices and
attention weights in the format of `itnas.records`) and ``search_metrics.json`` (`itnas.contracts.SearchMetrics`:
the search's wall time ``search_time_s``, ...; metrics.json files written before it held the search time too).

Two kinds of evaluation write ``metrics.json`` (`itnas.contracts`):

- ``train`` (`RunMetrics`): the final network trained from scratch and tested once: ``test_acc`` (%), params, ...;
  details: ``{"evaluation": "train", "classes", "accuracy", "loss", "n", "confusion_matrix", ...}``.
- ``nb201`` (`NB201Metrics`): the derived cell looked up in the NAS-Bench-201 table: ``nb201_c10_test`` (%), ...,
  ``collapse_count``, ``arch``, ``derivation``; details: ``{"evaluation": "nb201", "derivation": mode, "cells":
  {"marginal": {arch, collapse_count, nb201_*}, "sequential": {...}}, "table_best": {metric: {arch, value}}}``
  (both derivations of the same supernet, and the table's best cell per metric).

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

__all__ = ["EVALUATIONS", "NB201_DATASETS", "RUN_FILES", "BenchmarkInfo", "RunFilesMissing",
           "RunResult", "load_run"]

log = logging.getLogger(__name__)

#: File of a run (relative to its folder) -> (what it holds, the step that writes it).
RUN_FILES = {
    "metrics.json": ("evaluation metrics", "evaluate"),
    "genotype.json": ("derived genotype", "derive"),
    "evaluate/details.json": ("evaluation details", "evaluate"),
    "search/history.json": ("search history", "search"),
    "search_metrics.json": ("search metrics", "search"),
}
#: Evaluation kind -> the metrics.json key that identifies it.
EVALUATIONS = {"train": "test_acc", "nb201": "nb201_c10_test"}
#: NAS-Bench-201 test-accuracy metric (%) -> data set name (`itnas.nb201.NB201_METRICS`, 200-epoch columns).
NB201_DATASETS = {"nb201_c10_test": "CIFAR-10", "nb201_c100_test": "CIFAR-100", "nb201_in16_test": "ImageNet16-120"}
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
class BenchmarkInfo:
    """What the report says about one benchmark besides its runs (given by the caller, e.g. from params.yaml).

    Attributes:
        name: the benchmark's key (``runs/<name>/...``). label: its title in the report ("CIFAR-10 (JPEG copy)").
        evaluation: "train" or "nb201". size: one line on the sizes run (search space, channels, cells, images,
            epochs; training size; or "paper recipe"), shown under every table of the benchmark.
        dataset: data set name (e.g. "cifar10"), None when unknown. space: the search space (e.g. "darts").
        derivation: the configured derivation rule ("marginal" | "sequential"): the chain's genotype.json.
        data: one line on the prepared data (classes, image shape, split sizes), None when unknown.
        settings: further "label: text" lines for the markdown report (search settings per method, ...).
    """

    name: str
    label: str
    evaluation: str
    size: str
    dataset: str | None = None
    space: str | None = None
    derivation: str = "marginal"
    data: str | None = None
    settings: dict[str, str] = field(default_factory=dict)


@dataclass
class RunResult:
    """One evaluated run.

    Attributes:
        benchmark, method, seed: the run's chain.
        evaluation: "train" (metrics = `itnas.contracts.RunMetrics`: test_acc (%), test_loss (nats), test_images,
            params_m (M parameters), madds_m (M multiply-adds), params_m_c36_l20, madds_m_c36_l20_32px,
            collapse_count, train_time_s (s)) or "nb201" (metrics = `NB201Metrics`: nb201_*_test and nb201_*_valid
            (%, NAS-Bench-201 table), collapse_count, arch, derivation); metrics written before also hold
            search_time_s.
        metrics: the run's ``metrics.json``. genotype: the derived genotype (of the configured derivation).
        history: per-epoch search records (`itnas.search`); empty when the file was missing.
        details: ``evaluate/details.json`` (module docstring); {} when the file was missing.
        search_metrics: ``search_metrics.json`` (`itnas.contracts.SearchMetrics`: search_time_s, ...); {} when the
            file was missing.
    """

    benchmark: str
    method: str
    seed: int
    evaluation: str
    metrics: dict[str, Any]
    genotype: Genotype
    history: list[dict] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    search_metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``<benchmark>/<method>-s<seed>``, the run folder under runs/."""
        return f"{self.benchmark}/{self.method}-s{self.seed}"

    @property
    def test_acc(self) -> float | None:
        """Test accuracy (%) of the trained final network (train evaluation), None for an nb201 run."""
        return float(self.metrics["test_acc"]) if self.evaluation == "train" else None

    @property
    def derivation(self) -> str:
        """The derivation rule of the genotype and metrics ("marginal" when the files do not say)."""
        return str(self.details.get("derivation") or self.metrics.get("derivation") or "marginal")

    def nb201_cell(self, mode: str) -> dict[str, Any] | None:
        """The NB201 look-up of the cell derived with rule `mode`: {arch, collapse_count, nb201_* (%)}; from
        details["cells"], else (no details) from metrics.json for the configured derivation; None otherwise."""
        cells = self.details.get("cells") or {}
        if mode in cells:
            return cells[mode]
        if self.evaluation == "nb201" and mode == self.derivation:
            return {k: v for k, v in self.metrics.items() if k.startswith("nb201_") or k in ("arch", "collapse_count")}
        return None

    @property
    def headline(self) -> str:
        """The run's main number as text: "test acc 90.29 %" or "NB201 CIFAR-10 test 93.76 % (marginal cell)"."""
        if self.evaluation == "train":
            return f"test acc {self.test_acc:.2f} %"
        return f"NB201 CIFAR-10 test {float(self.metrics['nb201_c10_test']):.2f} % ({self.derivation} cell)"

    @property
    def collapse_count(self) -> int:
        """Parameter-free ops (none, skip, pools, noise) in the normal cell of the derived genotype (docs/method.md
        2.6)."""
        return int(self.metrics.get("collapse_count", self.genotype.collapse_count))

    @property
    def n_cell_edges(self) -> int:
        """Kept edges of the derived normal cell (8 in the DARTS spaces, 6 in nb201)."""
        return len(self.genotype.normal)

    def collapsed(self, collapse_count: int | None = None) -> bool:
        """Whether a search collapsed: every op of the derived normal cell is parameter-free (collapse count ==
        number of kept edges). `collapse_count`: of another cell of the same space (e.g. the sequential nb201
        cell); default: this run's genotype."""
        count = self.collapse_count if collapse_count is None else collapse_count
        return count == self.n_cell_edges

    @property
    def decisiveness(self) -> dict[str, Any]:
        """How decided the last search epoch's marginal genotype is (`itnas.search.epoch_arch_record`):
        min_margin, median_margin (alpha units), n_within_noise, max_alpha; {} for histories without it."""
        return (self.history[-1].get("decisiveness") or {}) if self.history else {}

    @property
    def search_time_s(self) -> float | None:
        """Wall seconds of the search: search_metrics.json's, else metrics.json's (files written before the search
        time left them), else the sum of the history's epoch times, else None."""
        for source in (self.search_metrics, self.metrics):
            if source.get("search_time_s") is not None:
                return float(source["search_time_s"])
        times = [r["time_s"] for r in self.history if "time_s" in r]
        return float(sum(times)) if times else None


def load_run(run_dir: Path, benchmark: str, method: str, seed: int, evaluation: str | None = None) -> RunResult:
    """Read one run folder.

    Reads ``metrics.json`` and ``genotype.json`` (required), ``evaluate/details.json``, ``search/history.json`` and
    ``search_metrics.json`` (optional: a missing file gives {} / [] and a warning; the report then leaves out what
    needs it). The kind
    of evaluation is read from the metrics (``test_acc``: train; ``nb201_c10_test``: nb201).

    Args:
        evaluation: the benchmark's evaluation ("train" | "nb201"), checked against the files when given.

    Raises:
        RunFilesMissing: genotype.json or metrics.json is missing (a FileNotFoundError naming the file).
        KeyError: metrics.json has neither ``test_acc`` nor ``nb201_c10_test``.
        GenotypeError: genotype.json is malformed or does not fit its space.
        ValueError: a file is not valid JSON or not of the expected shape, the metrics or details are of another
            evaluation than `evaluation`, or the history's last transitions / attention are not in the format of
            `itnas.records`.
    """
    run_dir = Path(run_dir)
    for name in ("genotype.json", "metrics.json"):
        if not (run_dir / name).exists():
            raise RunFilesMissing(run_dir / name, *RUN_FILES[name])
    metrics_path = run_dir / "metrics.json"
    metrics = _read_json(metrics_path)
    kinds = [kind for kind, key in EVALUATIONS.items() if isinstance(metrics, dict) and key in metrics]
    if not kinds:
        keys = sorted(metrics) if isinstance(metrics, dict) else type(metrics).__name__
        raise KeyError(f"{metrics_path} has neither 'test_acc' (evaluation train) nor 'nb201_c10_test' (evaluation "
                       f"nb201); it holds {keys}")
    kind = kinds[0]
    if evaluation is not None and kind != evaluation:
        raise ValueError(f"{metrics_path} holds {kind} metrics, but benchmark {benchmark} is evaluated by "
                         f"{evaluation}; rerun its evaluate step")
    genotype = Genotype.load(run_dir / "genotype.json")
    run = f"{benchmark}/{method}-s{seed}"
    details = _optional(run_dir, "evaluate/details.json", dict, run)
    if details and details.get("evaluation", kind) != kind:
        raise ValueError(f"{run_dir / 'evaluate/details.json'} holds {details['evaluation']} details, but "
                         f"{metrics_path} holds {kind} metrics; rerun the evaluate step")
    if kind == "nb201" and not isinstance(details.get("cells", {}), dict):
        raise ValueError(f"{run_dir / 'evaluate/details.json'}: 'cells' must map a derivation to its look-up")
    history = _optional(run_dir, "search/history.json", list, run)
    if history:
        _check_transition_records(run_dir / "search/history.json", history[-1])
    search_metrics = _optional(run_dir, "search_metrics.json", dict, run)
    return RunResult(benchmark, method, int(seed), kind, metrics, genotype, history, details, search_metrics)


def _optional(run_dir: Path, name: str, kind: type, run: str) -> Any:
    """The parsed JSON of an optional run file (`kind()` and a warning when missing). Raises ValueError when it
    is not valid JSON or not a `kind`."""
    path = run_dir / name
    if not path.exists():
        log.warning("%s is missing (the %s); the report leaves out what needs it for %s", path, RUN_FILES[name][0],
                    run)
        return kind()
    value = _read_json(path)
    if not isinstance(value, kind):
        raise ValueError(f"{path} must hold a {kind.__name__} ({RUN_FILES[name][0]}), got {type(value).__name__}")
    return value


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
