"""Loading one run folder into a `RunResult`, and what the report knows of a benchmark (`BenchmarkInfo`).

A run is one (benchmark, method, seed) chain, read through its `itnas.run.RunRecord`: ``metrics.json`` (what the
evaluation measured, with the evaluator's name in ``evaluation``), ``genotype.json`` (the derived genotype),
``evaluate/details.json`` (the evaluation's details), ``search/history.json`` (one record per search epoch; the last
one also holds the transition matrices and attention weights in the format of `itnas.records`) and
``search_metrics.json`` (`itnas.contracts.SearchMetrics`: the search's wall time ``search_time_s``, ...; metrics.json
files written before it held the search time too).

The evaluator (`itnas.evaluators`) of a run is the one its metrics.json names; metrics.json files written before
the name was recorded are read as the benchmark's evaluator (the caller's `evaluation`), and every metrics file is
validated by its evaluator's metrics model. How a run is shown (headline, tables, figure) is its evaluator's.

A missing required file raises `RunFilesMissing` (`itnas.run.RunFileMissing`), whose ``stage`` attribute names the
step that writes the file (``search``, ``derive``, ``evaluate``), so that a command-line layer can turn it into
advice on what to run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..errors import StageOutputError
from ..evaluators.reports import get_report
from ..genotype import Genotype
from ..run import EPOCHS, RunFileMissing, RunRecord

__all__ = ["BenchmarkInfo", "RunFilesMissing", "RunResult", "load_run"]

log = logging.getLogger(__name__)

_TRANSITION_KEYS = {"transitions": ("pred", "edge", "matrix"), "attention": ("edge", "preds", "weights")}
#: A missing required run file (a FileNotFoundError naming the file; ``stage``: the step that writes it).
RunFilesMissing = RunFileMissing


@dataclass
class BenchmarkInfo:
    """What the report says about one benchmark besides its runs (given by the caller, e.g. from params.yaml).

    Attributes:
        name: the benchmark's key (``runs/<name>/...``). label: its title in the report ("CIFAR-10 (JPEG copy)").
        evaluation: the name of its evaluator (`itnas.evaluators`). size: one line on the sizes run (search space,
            channels, cells, images,
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
        evaluation: the name of the run's evaluator (`itnas.evaluators`; its metrics model describes `metrics`).
        metrics: the run's ``metrics.json``. genotype: the derived genotype (of the configured derivation).
        history: per-epoch search records (`itnas.search`); empty when the file was missing.
        details: ``evaluate/details.json`` (the evaluator's details model); {} when the file was missing.
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
        """The run id ``<benchmark>/<method>-s<seed>`` (`itnas.run.run_id`), the run folder under runs/."""
        return RunRecord(self.benchmark, self.method, self.seed).name

    @property
    def derivation(self) -> str:
        """The derivation rule of the genotype and metrics ("marginal" when the files do not say)."""
        return str(self.details.get("derivation") or self.metrics.get("derivation") or "marginal")

    @property
    def headline(self) -> str:
        """The run's main number as text, as its evaluator writes it ("test acc 90.29 %", ...)."""
        return get_report(self.evaluation).headline(self)

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


def load_run(record: RunRecord, evaluation: str | None = None) -> RunResult:
    """Read one run folder.

    Reads ``metrics.json`` and ``genotype.json`` (required), ``evaluate/details.json``, ``search/history.json`` and
    ``search_metrics.json`` (optional: a missing file gives {} / [] and a warning; the report then leaves out what
    needs it).

    Args:
        record: the run's folder.
        evaluation: the benchmark's evaluator; the run's metrics.json must name the same one (files written before
            the name was recorded are read as this one).

    Raises:
        RunFilesMissing: genotype.json or metrics.json is missing (a FileNotFoundError naming the file).
        GenotypeError: genotype.json is malformed or does not fit its space.
        ConfigError: the evaluator named is not registered.
        StageOutputError (a ValueError): a file is not valid JSON or not of its model (metrics and details: the
            evaluator's; the search history: `itnas.run.EPOCHS`), metrics.json names another evaluator than
            `evaluation` or none (and `evaluation` is None), or the history's last transitions / attention are not in
            the format of `itnas.records`.
    """
    record.require("genotype")
    metrics = record.read_json("metrics")
    if not isinstance(metrics, dict):
        raise StageOutputError(f"{record.metrics} must hold a dict (evaluation metrics), got "
                               f"{type(metrics).__name__}")
    kind = metrics.get("evaluation", evaluation)
    if kind is None:
        raise StageOutputError(f"{record.metrics} names no evaluation (a file written before it was recorded): give "
                               f"the benchmark's evaluation")
    if evaluation is not None and kind != evaluation:
        raise StageOutputError(f"{record.metrics} holds {kind} metrics, but benchmark {record.benchmark} is evaluated "
                               f"by {evaluation}; rerun its evaluate step")
    evaluator = get_report(kind, f"{record.metrics}: evaluation")
    _validate(record, "metrics", evaluator.metrics_model, metrics)
    genotype = record.genotype_of()
    details = _optional(record, "details", dict)
    if details:
        if details.get("evaluation", kind) != kind:
            raise StageOutputError(f"{record.details} holds {details['evaluation']} details, but {record.metrics} "
                                   f"holds {kind} metrics; rerun the evaluate step")
        _validate(record, "details", evaluator.details_model, details)
    history = _optional(record, "search_history", list)
    if history:
        try:
            EPOCHS.validate_python(history)
        except ValidationError as err:
            raise _not_of_model(record.search_history, "the run's search history", err,
                                "rerun its search stage") from None
        _check_transition_records(record.search_history, history[-1])
    search_metrics = _optional(record, "search_metrics", dict)
    return RunResult(record.benchmark, record.method, int(record.seed), kind, metrics, genotype, history, details,
                     search_metrics)


def _validate(record: RunRecord, key: str, model: type, data: dict) -> None:
    """Raise StageOutputError naming the file when `data` (file `key`) is not of `model`."""
    try:
        model.model_validate(data)
    except ValidationError as err:
        raise _not_of_model(getattr(record, key), "of its evaluator's model", err, "rerun the evaluate step") from None


def _not_of_model(path: Any, what: str, err: ValidationError, fix: str) -> StageOutputError:
    """'PATH is not WHAT (first field: message; N errors); FIX' for a run file that fails its pydantic model."""
    first = err.errors()[0]
    where = ".".join(map(str, first["loc"]))
    return StageOutputError(f"{path} is not {what} ({where}: {first['msg']}; {err.error_count()} errors); {fix}")


def _optional(record: RunRecord, key: str, kind: type) -> Any:
    """The parsed JSON of an optional run file (`kind()` and a warning when missing). Raises StageOutputError
    when it is not valid JSON or not a `kind`."""
    path, what = getattr(record, key), record.FILES[key].what
    if not path.exists():
        log.warning("%s is missing (the %s); the report leaves out what needs it for %s", path, what, record.name)
        return kind()
    value = record.read_json(key)
    if not isinstance(value, kind):
        raise StageOutputError(f"{path} must hold a {kind.__name__} ({what}), got {type(value).__name__}")
    return value


def _check_transition_records(path, rec: dict) -> None:
    """Raise StageOutputError unless rec["transitions"] / rec["attention"] (where present) map every cell type to a
    list of records with the keys of `itnas.records` (an older history stored dicts keyed by strings instead)."""
    for key, fields in _TRANSITION_KEYS.items():
        for cell_type, records in (rec.get(key) or {}).items():
            if not isinstance(records, list) or not all(isinstance(r, dict) and set(fields) <= set(r)
                                                         for r in records):
                raise StageOutputError(f"{path}: last record's {key}[{cell_type!r}] must be a list of records with "
                                       f"keys {', '.join(fields)} (itnas.records); got {type(records).__name__} "
                                       "(a history written in an older format?)")
