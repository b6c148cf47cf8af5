"""Evaluator ``nb201``: the derived cells looked up in the NAS-Bench-201 table (Dong & Yang, ICLR 2020; 200-epoch
columns, `itnas.nb201`); no training, so its chains have no `train` stage. Both derivations of the supernet
(derivations.json: marginal and sequential) are looked up: evaluate/details.json (`NB201Details`) holds both cells,
the table's best cell per metric and the search trajectory (the marginal cell of every search epoch,
epoch_genotypes.json, looked up: `NB201EpochCell`), metrics.json (`NB201Metrics`) the cell of `derive.mode`
(genotype.json).

This module is the evaluate stage's side (contracts and the look-up); how the report shows the look-ups is in
`itnas.evaluators.nb201_report`, which only the report stage imports.
"""

from __future__ import annotations

from typing import Any, Literal

from ..contracts import Contract
from ..genotype import DERIVE_MODES, GenotypeError
from . import EvalJob, Evaluator, register_evaluator

__all__ = ["NB201Details", "NB201EpochCell", "NB201Evaluator", "NB201Metrics"]


class NB201Metrics(Contract):
    """metrics.json of an nb201 chain: the derived cell's accuracies (%) in the NB201 table: CIFAR-10, CIFAR-100 and
    ImageNet16-120, test and valid; the cell's arch string, its parameter-free op count (none, skip, pool) and the
    derivation mode that produced it. (A cell the table does not hold is an error of the look-up,
    `itnas.nb201.NB201Table.lookup`.) evaluation / search_time_s: as in `itnas.evaluators.train.TrainMetrics`."""

    evaluation: Literal["nb201"] = "nb201"
    nb201_c10_test: float
    nb201_c10_valid: float
    nb201_c100_test: float
    nb201_c100_valid: float
    nb201_in16_test: float
    nb201_in16_valid: float
    collapse_count: int
    arch: str
    derivation: str
    search_time_s: float | None = None


class NB201EpochCell(Contract):
    """One point of the search trajectory: the marginal cell derived after search epoch `epoch` (the search
    history's index, 0 = the first epoch; epoch_genotypes.json), its arch string, collapse count and NB201
    accuracies (%, the six 200-epoch metrics of `itnas.nb201.DEFAULT_METRICS`)."""

    epoch: int
    arch: str
    collapse_count: int
    nb201_c10_valid: float
    nb201_c10_test: float
    nb201_c100_valid: float
    nb201_c100_test: float
    nb201_in16_valid: float
    nb201_in16_test: float


class NB201Details(Contract):
    """evaluate/details.json of an nb201 chain: the configured derivation; per derivation mode its cell
    {arch, collapse_count, nb201_* (%)}; the table's best cell per test metric {metric: {arch, value}}; the search
    trajectory, one `NB201EpochCell` per search epoch in order (empty in files written before it was recorded)."""

    evaluation: Literal["nb201"] = "nb201"
    derivation: str
    cells: dict[str, dict[str, Any]]
    table_best: dict[str, dict[str, Any]] = {}
    trajectory: list[NB201EpochCell] = []



@register_evaluator
class NB201Evaluator(Evaluator):
    name = "nb201"
    metrics_model = NB201Metrics
    details_model = NB201Details

    # ------------------------------------------------------------------------------------------ running
    def evaluate(self, job: EvalJob) -> tuple[NB201Metrics, NB201Details, str]:
        """Look both derivations and every search epoch's cell up; genotype.json must be derivations.json's
        `derive.mode` cell."""
        from ..nb201 import DEFAULT_METRICS, load_nb201_table

        run, mode = job.record, job.derivation
        table = load_nb201_table()
        cells = run.derivations_of()
        if run.genotype_of() != cells[mode]:
            raise GenotypeError(f"{run.genotype} is not the {mode} genotype of {run.derivations}; rerun `dvc repro`")
        looked_up = {m: {"arch": cell.to_nb201_string(), "collapse_count": cell.collapse_count, **table.lookup(cell)}
                     for m, cell in cells.items()}
        best = {name: table.best(name) for name in DEFAULT_METRICS}
        table_best = {name: {"arch": arch, "value": value} for name, (arch, value) in best.items()}
        trajectory = [NB201EpochCell(epoch=epoch, arch=cell.to_nb201_string(), collapse_count=cell.collapse_count,
                                     **table.lookup(cell)) for epoch, cell in run.epoch_genotypes_of()]
        details = NB201Details(derivation=mode, cells=looked_up, table_best=table_best, trajectory=trajectory)
        picked = looked_up[mode]
        metrics = NB201Metrics(**{k: picked[k] for k in NB201Metrics.model_fields if k in picked}, derivation=mode)
        other = next(m for m in DERIVE_MODES if m != mode)
        line = (f"{run.name}: NB201 cell {picked['arch']}: CIFAR-10 {metrics.nb201_c10_test:.2f} %, CIFAR-100 "
                f"{metrics.nb201_c100_test:.2f} %, ImageNet16-120 {metrics.nb201_in16_test:.2f} % (test); "
                f"{other} derivation: CIFAR-10 {looked_up[other]['nb201_c10_test']:.2f} %")
        return metrics, details, line
