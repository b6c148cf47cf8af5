"""Evaluators: how a benchmark's derived genotypes are judged (the NNI split: search space / search strategy /
evaluator). A benchmark names one in params.yaml (`benchmarks.<name>.evaluation`); each has a run side and a report
side here:

- ``train`` (`itnas.evaluators.train`, report side `train_report`): the final network trained from scratch (the
  `train` stage) and tested once on the test split;
- ``nb201`` (`itnas.evaluators.nb201`, report side `nb201_report`): both derived cells looked up in the
  NAS-Bench-201 table (no training).

The registry has three levels, so that a stage imports (and its DVC code deps in dvc.yaml list) only what it uses:
an edit of how a network is tested reruns no search or training, an edit of how the report shows it no evaluate.

- this package's ``__init__`` is light: `EVALUATOR_KINDS` holds, per evaluator, what the params file is validated
  against (`EvaluatorKind`: its name, description, whether it trains a network, which search spaces it accepts);
  `list_evaluators` and `evaluator_kind` read it. It imports no evaluator module. Every stage reads it.
- `itnas.evaluators.registry` imports every run side; `get_evaluator` gives its `Evaluator`: the metrics and
  details models (what metrics.json and evaluate/details.json hold; metrics.json names the evaluator in its
  ``evaluation`` key) and how it runs (`evaluate`, handed an `EvalJob`). The evaluate stage imports it.
- `itnas.evaluators.reports` imports every report side; `get_report` gives its `EvaluatorReport` (a subclass of
  the run side): headline, statistics, tables, figures, size and settings lines. Only the report stage imports it.

Nothing outside this package branches on an evaluator's name. Adding a table benchmark (another NAS-Bench) takes
five edits, each checked at import (`ImportError` naming the registries that differ) or by
tests/test_params_model.py: (1) a module ``<name>.py`` with an `Evaluator` subclass decorated with
`register_evaluator`, (2) a module ``<name>_report.py`` with its `EvaluatorReport` subclass decorated with
`register_report`, (3) its `EvaluatorKind` line in `EVALUATOR_KINDS`, (4) its import in `itnas.evaluators.registry`
and (5) in `itnas.evaluators.reports`. The imports are written out, not discovered by a package scan, because the
DVC code deps (itnas_tools.dvc_deps) are computed from the import statements: a module found at run time would be
missing from its stage's deps.
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

__all__ = ["EVALUATOR_KINDS", "EvalJob", "Evaluator", "EvaluatorKind", "EvaluatorReport", "evaluator_kind",
           "list_evaluators", "register_evaluator", "register_report"]


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

_REGISTRY: dict[str, Evaluator] = {}  # run sides (`register_evaluator`; `itnas.evaluators.registry`)
_REPORTS: dict[str, EvaluatorReport] = {}  # report sides (`register_report`; `itnas.evaluators.reports`)


@dataclass(frozen=True)
class EvalJob:
    """What the evaluate stage hands an evaluator: the chain's `record` (its files), the configured derivation
    (`derive.mode`), the test batch size, the device, the DataLoader options (`itnas.data.loader_options`),
    `load_data()`, which loads the benchmark's prepared train/test splits (`itnas.data.TrainData`) when called, and
    `test_resize` (px; `evaluate.test_resize`, `itnas.config.EvalConfig`: how streamed test images are resized before
    the centre crop, 0 = image_size * 256 / 224)."""

    record: RunRecord
    derivation: str
    batch_size: int
    device: torch.device
    loader_kw: dict
    load_data: Callable[[], Any]
    test_resize: int = 0


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

    def evaluate(self, job: EvalJob) -> tuple[BaseModel, BaseModel, str]:
        """Evaluate the chain of `job`: (metrics, details, one summary line for the console)."""
        raise NotImplementedError


class EvaluatorReport(Evaluator):
    """How the report shows one evaluator's results: a subclass of the evaluator's run side (its `Evaluator`, for
    the metrics and details models) in a module of its own (``<name>_report``), registered with `register_report`
    and given by `itnas.evaluators.reports.get_report`. Only the report stage imports these modules, so the evaluate
    stage's code deps (dvc.yaml) do not include the report code."""

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

    def settings(self, train_cfg: Any, eval_cfg: Any = None) -> dict[str, str]:
        """Extra "label: text" settings lines of the markdown report (`train_cfg`: the benchmark's TrainConfig,
        `eval_cfg`: the `evaluate` block, `itnas.config.EvalConfig`)."""
        return {}


def _register(registry: dict, cls: type) -> type:
    """Register (an instance of) `cls` under `cls.name` in `registry`. Raises ValueError on a duplicate name or a
    name without its `EvaluatorKind` in `EVALUATOR_KINDS`."""
    if cls.name in registry:
        raise ValueError(f"evaluator {cls.name!r} is registered twice")
    if cls.name not in EVALUATOR_KINDS:
        raise ValueError(f"evaluator {cls.name!r} has no entry in EVALUATOR_KINDS")
    registry[cls.name] = cls()
    return cls


def register_evaluator(cls: type[Evaluator]) -> type[Evaluator]:
    """Class decorator: register the run side `cls` (an `Evaluator`) under `cls.name` (`_register`)."""
    return _register(_REGISTRY, cls)


def register_report(cls: type[EvaluatorReport]) -> type[EvaluatorReport]:
    """Class decorator: register the report side `cls` (an `EvaluatorReport`) under `cls.name` (`_register`)."""
    return _register(_REPORTS, cls)


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
