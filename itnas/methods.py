"""The method and base registry of the search (docs/method.md 2.3, 2.4, 2.12), and the defaults of their
architecture settings: light (no torch), so that the params model and every stage's params check read the valid
names and each method's default base and sampler without importing the architecture maths (`itnas.arch`), whose
edits would otherwise rerun every stage's dependency check (dvc.yaml code deps).

`itnas.arch.create_architecture` builds a method of `METHODS`; `itnas.samplers` draws the samples of a method's
`sampler`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnknownNameError

__all__ = ["BASES", "BASE_SPECS", "DEFAULT_DIRICHLET_ANCHOR", "DEFAULT_DIRICHLET_KL", "DEFAULT_TAU_MAX",
           "DEFAULT_TAU_MIN", "DEFAULT_TRANSITION_GAMMA", "DEFAULT_TRANSITION_INIT", "METHODS", "BaseSpec",
           "MethodSpec", "get_base", "get_method", "list_methods"]

#: GDAS temperature schedule (docs/method.md 2.12): linear from tau_max at the first epoch to tau_min at the last
#: (xautodl's GDAS NAS-Bench-201 setting, Dong & Yang 2019 / 2020).
DEFAULT_TAU_MAX, DEFAULT_TAU_MIN = 10.0, 0.1
#: DrNAS regulariser (docs/method.md 2.12): coefficient of KL(Dir(beta) || Dir(anchor * 1)) and the anchor
#: concentration (the public DrNAS code: `--reg_scale 1e-3`, anchor `Dirichlet(ones)`).
DEFAULT_DIRICHLET_KL, DEFAULT_DIRICHLET_ANCHOR = 1e-3, 1.0


@dataclass(frozen=True)
class MethodSpec:
    """What a method learns.

    Attributes:
        name: registry name.
        inner: "independent" (own softmax per inner edge) or "transition" (docs/method.md 2.3).
        learn_transition: Theta is learned (else T is the fixed op-identity matrix).
        learn_attention: b_e is learned (else w_e is uniform over P(e)).
        default_base: supernet base used when the params say `base: auto`.
        sampler: None (deterministic alphas), "gumbel" (gdas) or "dirichlet" (drnas): what a training forward draws
            (docs/method.md 2.12).
    """

    name: str
    inner: str
    learn_transition: bool
    learn_attention: bool
    default_base: str
    sampler: str | None = None


METHODS: dict[str, MethodSpec] = {
    "itnas": MethodSpec("itnas", "transition", True, True, "pcdarts"),
    "itnas_noattn": MethodSpec("itnas_noattn", "transition", True, False, "pcdarts"),
    "itnas_notrans": MethodSpec("itnas_notrans", "transition", False, True, "pcdarts"),
    "darts": MethodSpec("darts", "independent", False, False, "darts"),
    "pcdarts": MethodSpec("pcdarts", "independent", False, False, "pcdarts"),
    "gdas": MethodSpec("gdas", "independent", False, False, "darts", sampler="gumbel"),
    "drnas": MethodSpec("drnas", "independent", False, False, "darts", sampler="dirichlet"),
}

@dataclass(frozen=True)
class BaseSpec:
    """A supernet base (docs/method.md 2.4).

    Attributes:
        partial_channels: 1/K of the channels go through each mixed op (PC-DARTS partial channel connections).
        edge_normalization: node j weights its incoming edges by softmax(beta_j) (PC-DARTS edge normalisation).
    """

    name: str
    partial_channels: bool
    edge_normalization: bool


BASE_SPECS: dict[str, BaseSpec] = {
    "darts": BaseSpec("darts", partial_channels=False, edge_normalization=False),
    "pcdarts": BaseSpec("pcdarts", partial_channels=True, edge_normalization=True),
}
BASES = tuple(BASE_SPECS)


def get_base(name: str) -> BaseSpec:
    """Look up a base. Raises ValueError naming the valid bases."""
    try:
        return BASE_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown base {name!r}; valid bases: auto, {', '.join(BASES)}") from None


#: Default initialisation of the transitions (docs/method.md 2.3; measured in itnas/config.py ArchitectureConfig).
DEFAULT_TRANSITION_INIT = "identity"
DEFAULT_TRANSITION_GAMMA = 2.0


def list_methods() -> list[str]:
    """Names of the registered methods."""
    return list(METHODS)


def get_method(name: str) -> MethodSpec:
    """Look up a method. Raises KeyError naming the valid methods."""
    try:
        return METHODS[name]
    except KeyError:
        raise UnknownNameError(f"unknown method {name!r}; valid methods: {', '.join(list_methods())}") from None
