"""Evaluators: how a benchmark's derived genotypes are judged (the NNI split: search space / search strategy /
evaluator). A benchmark names one in params.yaml (`benchmarks.<name>.evaluation`); each is one module here:

- ``train`` (`itnas.evaluators.train`): the final network trained from scratch (the `train` stage) and tested once
  on the test split;
- ``nb201`` (`itnas.evaluators.nb201`): both derived cells looked up in the NAS-Bench-201 table (no training).

The registry has two levels, so that the params model (imported by every stage) does not import the test pass and
the report code (which would make every stage's DVC code deps include them, and rerun search on an edit of how a
network is tested):

- this package's ``__init__`` is light: `EVALUATOR_KINDS` holds, per evaluator, what the params file is validated
  against (`EvaluatorKind`: its name, description, whether it trains a network, which search spaces it accepts);
  `list_evaluators` and `evaluator_kind` read it. It imports no evaluator module.
- `itnas.evaluators.registry` imports every evaluator module; `get_evaluator` gives the full `Evaluator`: its
  metrics and details models (what metrics.json and evaluate/details.json hold; metrics.json names the evaluator in
  its ``evaluation`` key), how it runs (`evaluate`), and how the report shows it (headline, statistics, tables,
  figures, size and settings lines). The evaluate and report stages import it.

Nothing outside this package branches on an evaluator's name. A new table benchmark (another NAS-Bench) is one new
module that defines an `Evaluator` subclass decorated with `register_evaluator`, plus its `EvaluatorKind` line in
`EVALUATOR_KINDS` and its import in `itnas.evaluators.registry`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from ..config import ConfigError
from ..spaces import create_space, list_spaces

if TYPE_CHECKING:  # annotations only
    import torch

    from ..run import RunRecord

__all__ = ["EVALUATOR_KINDS", "EvalJob", "Evaluator", "EvaluatorKind", "evaluator_kind", "list_evaluators",
           "register_evaluator"]


@dataclass(frozen=True)
class EvaluatorKind:
    """What the params model knows of an evaluator without importing it (a light registry entry).

    Attributes:
        name: the value of `benchmarks.<name>.evaluation` that selects it.
        description: one phrase for error messages and the report ("table look-up in NAS-Bench-201").
        trains: whether its chains have a `train` stage (a network trained from scratch that `evaluate` reads); its
            benchmarks are listed in `runs.benchmarks`, the others in `runs.tables`.
        layouts: the macro layouts (`itnas.spaces.SearchSpace.layout`) of the search spaces whose genotypes it can
            evaluate (``train``: the layouts with a final network, `itnas.networks.FINAL_NETWORKS`, which a test
            checks).
        refusal: the message (after "benchmarks.<name>: ") for a space it cannot evaluate; ``{space}`` is the
            space's name (repr), ``{accepted}`` the spaces it accepts.
    """

    name: str
    description: str
    trains: bool
    layouts: tuple[str, ...]
    refusal: str

    def accepted_spaces(self) -> list[str]:
        """The registered search spaces (`itnas.spaces.list_spaces`) this evaluator accepts."""
        return [s for s in list_spaces() if create_space(s).layout in self.layouts]

    def space_problem(self, space: str, where: str) -> str | None:
        """Why genotypes of search space `space` cannot be evaluated this way (prefixed `where`, e.g.
        "benchmarks.c10"), or None when they can."""
        if create_space(space).layout in self.layouts:
            return None
        return f"{where}: " + self.refusal.format(space=repr(space), accepted=", ".join(self.accepted_spaces()))


#: The evaluators, by name (the order of `list_evaluators`); each one's full `Evaluator` is in the module of the
#: same name (`itnas.evaluators.registry.get_evaluator`).
EVALUATOR_KINDS: dict[str, EvaluatorKind] = {kind.name: kind for kind in (
    EvaluatorKind("train", "final network trained from scratch and tested", trains=True, layouts=("darts",),
                  refusal="search.supernet.space={space} has no final network to train (evaluation: train); spaces "
                          "with a final network: {accepted}; for nb201 use evaluation: nb201 (table look-up)"),
    EvaluatorKind("nb201", "table look-up in NAS-Bench-201", trains=False, layouts=("nb201",),
                  refusal="evaluation nb201 looks cells up in the NAS-Bench-201 table, which needs "
                          "search.supernet.space: nb201, got {space}"),
)}

_REGISTRY: dict[str, Evaluator] = {}


@dataclass(frozen=True)
class EvalJob:
    """What the evaluate stage hands an evaluator: the chain's `record` (its files), the configured derivation
    (`derive.mode`), the test batch size, the device, the DataLoader options (`itnas.data.loader_options`) and
    `load_data()`, which loads the benchmark's prepared train/test splits (`itnas.data.TrainData`) when called."""

    record: RunRecord
    derivation: str
    batch_size: int
    device: torch.device
    loader_kw: dict
    load_data: Callable[[], Any]


class Evaluator:
    """One way of evaluating genotypes. Subclasses set the class attributes and implement the methods.

    Attributes:
        name: the value of `benchmarks.<name>.evaluation` that selects it (its `EvaluatorKind` in
            `EVALUATOR_KINDS`, whose description and `trains` it exposes).
        metrics_model / details_model: pydantic models of metrics.json / evaluate/details.json.
    """

    name: ClassVar[str]
    metrics_model: ClassVar[type[BaseModel]]
    details_model: ClassVar[type[BaseModel]]

    @property
    def kind(self) -> EvaluatorKind:
        """Its light registry entry (`EVALUATOR_KINDS`)."""
        return EVALUATOR_KINDS[self.name]

    @property
    def description(self) -> str:
        return self.kind.description

    @property
    def trains(self) -> bool:
        return self.kind.trains

    # ------------------------------------------------------------------------------------------ running
    def evaluate(self, job: EvalJob) -> tuple[BaseModel, BaseModel, str]:
        """Evaluate the chain of `job`: (metrics, details, one summary line for the console)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------ report
    def headline(self, run: Any) -> str:
        """A run's main number as text (`itnas.report.RunResult`), e.g. "test acc 90.29 %"."""
        raise NotImplementedError

    def method_stats(self, group: list) -> dict[str, Any]:
        """Statistics of one method's runs over seeds (keys of the evaluator's tables; `itnas.report.stats`)."""
        raise NotImplementedError

    def summary(self, group: list) -> dict[str, Any]:
        """The summary.json row of one method's runs: {metric: {"mean", "std", "n"}, ...} (`dvc exp show`)."""
        raise NotImplementedError

    def tables(self, info: Any, runs: list) -> list:
        """The report tables of one benchmark (`itnas.report.tables.Table`), in report order."""
        raise NotImplementedError

    def figure(self, runs: list) -> tuple[str, Any]:
        """(heading, plotly figure) of one benchmark's headline results."""
        raise NotImplementedError

    def figures(self, runs: list) -> list[tuple[str, Any]]:
        """[(heading, plotly figure)] of one benchmark, in page order: by default only the headline `figure`."""
        return [self.figure(runs)]

    def size_text(self, train_cfg: Any) -> str:
        """What the report's size line says after the search part (`train_cfg`: the benchmark's TrainConfig)."""
        raise NotImplementedError

    def settings(self, train_cfg: Any) -> dict[str, str]:
        """Extra "label: text" settings lines of the markdown report (`train_cfg`: the benchmark's TrainConfig)."""
        return {}


def register_evaluator(cls: type[Evaluator]) -> type[Evaluator]:
    """Class decorator: register (an instance of) `cls` under `cls.name`. Raises ValueError on a duplicate name or
    a name without its `EvaluatorKind` in `EVALUATOR_KINDS`."""
    if cls.name in _REGISTRY:
        raise ValueError(f"evaluator {cls.name!r} is registered twice")
    if cls.name not in EVALUATOR_KINDS:
        raise ValueError(f"evaluator {cls.name!r} has no entry in EVALUATOR_KINDS")
    _REGISTRY[cls.name] = cls()
    return cls


def list_evaluators() -> list[str]:
    """The names of the evaluators (valid values of `benchmarks.<name>.evaluation`)."""
    return list(EVALUATOR_KINDS)


def evaluator_kind(name: str, where: str = "evaluation") -> EvaluatorKind:
    """The light registry entry of evaluator `name`. Raises ConfigError naming `where`, the bad value and the valid
    names (with the closest one)."""
    if name not in EVALUATOR_KINDS:
        hint = difflib.get_close_matches(str(name), list(EVALUATOR_KINDS), 1)
        raise ConfigError(f"{where}={name!r}{f' (did you mean {hint[0]!r}?)' if hint else ''}; valid values: "
                          f"{', '.join(EVALUATOR_KINDS)}")
    return EVALUATOR_KINDS[name]
