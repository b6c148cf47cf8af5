"""Evaluators: how a benchmark's derived genotypes are judged (the NNI split: search space / search strategy /
evaluator). A benchmark names one in params.yaml (`benchmarks.<name>.evaluation`); each is one module here:

- ``train`` (`itnas.evaluators.train`): the final network trained from scratch (the `train` stage) and tested once
  on the test split;
- ``nb201`` (`itnas.evaluators.nb201`): both derived cells looked up in the NAS-Bench-201 table (no training).

An `Evaluator` holds everything that differs between kinds: its metrics and details models (what metrics.json and
evaluate/details.json hold; metrics.json names the evaluator in its ``evaluation`` key), whether it needs a trained
network (`trains`: a `train` stage per chain), which search spaces it accepts (`check_space`), how it runs
(`evaluate`), and how the report shows it (headline, statistics, tables, figures, size and settings lines). Nothing
outside this package branches on an evaluator's name. A new table benchmark (another NAS-Bench) is one new module
that defines an `Evaluator` subclass decorated with `register_evaluator`, imported at the end of this file.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from ..config import ConfigError

if TYPE_CHECKING:  # annotations only
    import torch

    from ..run import RunRecord

__all__ = ["EvalJob", "Evaluator", "get_evaluator", "list_evaluators", "register_evaluator"]

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
        name: the value of `benchmarks.<name>.evaluation` that selects it.
        description: one phrase for error messages and the report ("table look-up in NAS-Bench-201").
        trains: whether its chains have a `train` stage (a network trained from scratch that `evaluate` reads).
        metrics_model / details_model: pydantic models of metrics.json / evaluate/details.json.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    trains: ClassVar[bool]
    metrics_model: ClassVar[type[BaseModel]]
    details_model: ClassVar[type[BaseModel]]

    # ------------------------------------------------------------------------------------------ params
    def check_space(self, space: str, where: str) -> None:
        """Raise ConfigError (prefixed `where`, e.g. "benchmarks.c10") when genotypes of search space `space`
        cannot be evaluated this way."""

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
    """Class decorator: register (an instance of) `cls` under `cls.name`. Raises ValueError on a duplicate name."""
    if cls.name in _REGISTRY:
        raise ValueError(f"evaluator {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def list_evaluators() -> list[str]:
    """The names of the registered evaluators (valid values of `benchmarks.<name>.evaluation`)."""
    return list(_REGISTRY)


def get_evaluator(name: str, where: str = "evaluation") -> Evaluator:
    """The evaluator called `name`. Raises ConfigError naming `where`, the bad value and the valid names."""
    if name not in _REGISTRY:
        hint = difflib.get_close_matches(str(name), list(_REGISTRY), 1)
        raise ConfigError(f"{where}={name!r}{f' (did you mean {hint[0]!r}?)' if hint else ''}; valid values: "
                          f"{', '.join(_REGISTRY)}")
    return _REGISTRY[name]


# the built-in evaluators register themselves on import (in this order: the order of list_evaluators)
from . import train  # noqa: E402,F401,I001
from . import nb201  # noqa: E402,F401
