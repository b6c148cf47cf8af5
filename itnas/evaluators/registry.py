"""Every evaluator of `itnas.evaluators.EVALUATOR_KINDS`, imported and registered: `get_evaluator` gives its run
side, an `Evaluator` (metrics and details models, how it runs). Importing this module imports each evaluator's
module (its test pass or table look-up), not its report side (`itnas.evaluators.reports`); the evaluate stage
imports it (the params model reads the light `itnas.evaluators` alone).
"""

from __future__ import annotations

# importing nb201 and train registers them (`register_evaluator`)
from . import _REGISTRY, EVALUATOR_KINDS, Evaluator, evaluator_kind, nb201, train  # noqa: F401

__all__ = ["get_evaluator"]

if set(_REGISTRY) != set(EVALUATOR_KINDS):  # a kind without its module, or a module without its kind
    raise ImportError(f"evaluators registered {sorted(_REGISTRY)} differ from EVALUATOR_KINDS "
                      f"{sorted(EVALUATOR_KINDS)}")


def get_evaluator(name: str, where: str = "evaluation") -> Evaluator:
    """The evaluator called `name`. Raises ConfigError naming `where`, the bad value and the valid names."""
    return _REGISTRY[evaluator_kind(name, where).name]
