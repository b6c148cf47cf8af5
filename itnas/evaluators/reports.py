"""The report side of every evaluator of `itnas.evaluators.EVALUATOR_KINDS`, imported and registered: `get_report`
gives its `EvaluatorReport` (headline, statistics, summary rows, tables, figures, size and settings lines; with the
run side's metrics and details models). Only the report stage imports this module (through `itnas.report`), so the
evaluate stage's code deps do not include the report code, and editing how the report shows a result reruns only
the report.
"""

from __future__ import annotations

# importing the *_report modules registers them (`register_report`)
from . import _REPORTS, EVALUATOR_KINDS, EvaluatorReport, evaluator_kind, nb201_report, train_report  # noqa: F401

__all__ = ["get_report"]

if set(_REPORTS) != set(EVALUATOR_KINDS):  # a kind without its report module, or a report module without its kind
    raise ImportError(f"evaluator reports registered {sorted(_REPORTS)} differ from EVALUATOR_KINDS "
                      f"{sorted(EVALUATOR_KINDS)}")


def get_report(name: str, where: str = "evaluation") -> EvaluatorReport:
    """The report side of evaluator `name`. Raises ConfigError naming `where`, the bad value and the valid names."""
    return _REPORTS[evaluator_kind(name, where).name]
