"""alphas -> Genotype: the `marginal` and `sequential` derivations (docs/method.md 2.6).

- `marginal` (the DARTS rule, Liu et al. 2019, section 2.4): for each intermediate node keep the
  `edges_per_node` incoming edges with the largest ``max_{o != none} alpha_e[o]`` (times softmax(beta_j)[e] on
  the pcdarts base), and on each the argmax op other than `none`. NB201 keeps every edge and its argmax op
  (`none` allowed). Ties break deterministically: lower edge index, then lower op index. Scores are compared
  rounded to `TIE_RTOL` = 1e-9 relative (`_tie_key`), so that scores equal in exact arithmetic but an ulp apart
  in floating point (e.g. inner edges right after a uniform initialisation) tie and the rule decides.
  `derive_genotype` computes alphas and conditionals in float64 for that reason: a float32 ulp (~6e-8 relative)
  is far above 1e-9.
- `sequential`: outer edges are scored as in `marginal`; inner edges, node by node in topological order, are
  scored with the conditional ``q_e = sum_{p in P*(e)} w~_e[p] * T_{p->e}[o*_p, :]`` over the kept predecessor
  edges P*(e) and their chosen ops o*_p (`CellArchitecture.conditional`). For methods whose inner edges have
  their own softmax (darts, pcdarts), q_e = alpha_e and both modes agree.
"""

from __future__ import annotations

import copy
import math
import statistics
from dataclasses import dataclass

import torch

from .arch import Architecture
from .genotype import DERIVE_MODES, Genotype
from .spaces import SearchSpace

__all__ = ["DERIVE_MODES", "NOISE_MARGIN", "TIE_RTOL", "Decision", "derive_from_alphas", "derive_genotype",
           "derive_with_margins", "margin_summary"]


#: Relative resolution at which scores are compared (docs/method.md 2.6).
TIE_RTOL = 1e-9


def _tie_key(v: float) -> float:
    """`v` rounded to a grid of TIE_RTOL times its decade (10 significant digits), as an exactly comparable float.

    The formatter rounds correctly, so float64 values an ulp apart get the same key unless their exact value lies
    within an ulp of a half-way point of the grid (about 1e-7 of generic values; not 1/K for the K of the registered
    spaces, nor their products with the edge weights 1/2..1/5).
    """
    return float(f"{v:.{round(-math.log10(TIE_RTOL))}e}")


def _argmax_first(values: list[float]) -> int:
    """Index of the largest value after rounding (`_tie_key`); the lowest index among ties."""
    keys = [_tie_key(v) for v in values]
    best = 0
    for k, v in enumerate(keys):
        if v > keys[best]:
            best = k
    return best


#: A margin below this (in alpha units, probabilities) is within float noise: float32 alphas carry ~1e-7 of
#: rounding, and another CPU type or thread count moves them by about that much (docs/method.md 2.6).
NOISE_MARGIN = 1e-6


@dataclass(frozen=True)
class Decision:
    """One choice the derivation made and how decided it was.

    Attributes:
        kind: "op" (the op on a kept edge) or "edge" (the edges kept into a node).
        cell_type: "normal" | "reduce". node: the node the edge(s) go into. edge: "src->dst" of the kept edge
            (kind "op"), or "" (kind "edge").
        chosen / runner_up: op names (kind "op") or "src->dst" edges (kind "edge": the weakest kept edge and the
            strongest dropped one).
        margin: score of `chosen` minus score of `runner_up` (alpha units; >= 0 up to the tie rounding).
    """

    kind: str
    cell_type: str
    node: int
    edge: str
    chosen: str
    runner_up: str
    margin: float


def _gap(best: float, runner_up: float) -> float:
    """best - runner_up, and exactly 0 for a tie under the rounded comparison (the tie rule decided)."""
    return 0.0 if _tie_key(best) == _tie_key(runner_up) else best - runner_up


def _select_node(space: SearchSpace, ops: tuple[tuple[str, ...], ...], scores: dict[int, list[float]],
                 edge_weights: list[float] | None, node: int, cell_type: str = "normal",
                 decisions: list[Decision] | None = None) -> dict[int, int]:
    """Choose edges (and their ops) into `node` from per-edge op scores. Returns {edge: op index}; appends one
    `Decision` per kept edge (its op against the runner-up op) and one per node whose edges were selected (the
    weakest kept edge against the strongest dropped one) to `decisions` when given. Dropped edges' ops are not
    decisions of the genotype and are not recorded."""

    def name(e: int) -> str:
        return "{}->{}".format(*space.edges[e])

    chosen_op, strength, op_decisions = {}, {}, {}
    for e in space.incoming[node]:
        names, s = ops[e], scores[e]
        candidates = list(range(len(names))) if space.edges_per_node is None else [
            k for k, name in enumerate(names) if name != "none"]  # NB201 keeps `none`; the DARTS rule never does
        k_best = candidates[_argmax_first([s[k] for k in candidates])]
        chosen_op[e] = k_best
        if decisions is not None and len(candidates) > 1:
            k_next = max((k for k in candidates if k != k_best), key=lambda k: (_tie_key(s[k]), -k))
            op_decisions[e] = Decision("op", cell_type, node, name(e), names[k_best], names[k_next],
                                       _gap(s[k_best], s[k_next]))
        if space.edges_per_node is not None:
            strength[e] = s[k_best] * (edge_weights[e] if edge_weights is not None else 1.0)
    if space.edges_per_node is None:  # NB201: every edge is kept
        if decisions is not None:
            decisions.extend(op_decisions[e] for e in sorted(op_decisions))
        return chosen_op
    order = sorted(strength, key=lambda e: (-_tie_key(strength[e]), e))
    ranked = order[: space.edges_per_node]
    if decisions is not None:
        decisions.extend(op_decisions[e] for e in sorted(ranked) if e in op_decisions)
        if len(order) > len(ranked):
            last, first_out = ranked[-1], order[len(ranked)]
            decisions.append(Decision("edge", cell_type, node, "", name(last), name(first_out),
                                      _gap(strength[last], strength[first_out])))
    return {e: chosen_op[e] for e in sorted(ranked)}


def margin_summary(decisions: list[Decision], noise: float = NOISE_MARGIN) -> dict[str, float | int]:
    """How decided a genotype is: {min_margin, median_margin (alpha units), n_decisions, n_within_noise (margins
    below `noise`)}; margins are None when there was nothing to choose."""
    margins = [d.margin for d in decisions]
    if not margins:
        return {"min_margin": None, "median_margin": None, "n_decisions": 0, "n_within_noise": 0}
    return {"min_margin": min(margins), "median_margin": statistics.median(margins), "n_decisions": len(margins),
            "n_within_noise": sum(m < noise for m in margins)}


def _to_genotype(space: SearchSpace, picks: dict[str, dict[int, int]]) -> Genotype:
    cells = {}
    for t, chosen in picks.items():
        cells[t] = tuple((space.ops[t][e][k], *space.edges[e]) for e, k in sorted(chosen.items()))
    concat = tuple(space.intermediate_nodes) if space.output == "concat" else (space.n_nodes - 1,)
    return Genotype(space.name, cells["normal"], concat, cells.get("reduce", ()),
                    concat if "reduce" in cells else ()).validate(space)


def derive_from_alphas(space: SearchSpace, alphas: dict[str, torch.Tensor],
                       edge_weights: dict[str, torch.Tensor] | None = None) -> Genotype:
    """`marginal` derivation from explicit alphas.

    Args:
        space: the search space. alphas: cell type -> (E, K) alpha. edge_weights: cell type -> (E,) or None.
            Scores are compared at 1e-9 relative: pass float64 tensors where ulp-level ties matter (a float32
            ulp is ~6e-8 relative and decides).

    Raises:
        ValueError: an alpha tensor has the wrong shape.
        GenotypeError: the derived cell is invalid (NB201: every path into the output node has a `none` op).
    """
    return _marginal(space, alphas, edge_weights, None)


def _marginal(space: SearchSpace, alphas: dict[str, torch.Tensor], edge_weights: dict[str, torch.Tensor] | None,
              decisions: list[Decision] | None) -> Genotype:
    picks = {}
    for t in space.cell_types:
        a = alphas[t]
        if tuple(a.shape) != (space.n_edges, space.n_ops):
            raise ValueError(f"{t} alphas must be (E={space.n_edges}, K={space.n_ops}), got {tuple(a.shape)}")
        a = a.detach().to(device="cpu", dtype=torch.float64)
        scores = {e: a[e].tolist() for e in range(space.n_edges)}
        w = None if edge_weights is None else edge_weights[t].detach().to(device="cpu", dtype=torch.float64).tolist()
        picks[t] = {}
        for j in space.intermediate_nodes:
            picks[t].update(_select_node(space, space.ops[t], scores, w, j, t, decisions))
    return _to_genotype(space, picks)


def derive_genotype(arch: Architecture, mode: str = "marginal") -> Genotype:
    """Derive the genotype of a trained `Architecture` with `mode` ("marginal" or "sequential").

    Alphas, edge weights and conditionals are computed in float64 on the CPU from a copy of `arch` (which is
    left as it is), so that scores equal in exact arithmetic tie at the 1e-9 comparison (module docstring).

    Raises:
        ValueError: unknown mode (the message lists the valid ones).
        GenotypeError: the derived cell is invalid.
    """
    return derive_with_margins(arch, mode)[0]


@torch.no_grad()
def derive_with_margins(arch: Architecture, mode: str = "marginal") -> tuple[Genotype, list[Decision]]:
    """`derive_genotype` plus every decision it made with its margin to the runner-up (`Decision`): for each kept
    op the score gap to the next op of its edge, for each node the gap between the weakest kept and the strongest
    dropped edge. Scores are alphas (marginal) or conditionals q_e (sequential), times the edge weights on the
    pcdarts base for edges. Raises as `derive_genotype`."""
    if mode not in DERIVE_MODES:
        raise ValueError(f"unknown derive mode {mode!r}; valid modes: {', '.join(DERIVE_MODES)}")
    arch = copy.deepcopy(arch).to(device="cpu", dtype=torch.float64)
    state = arch()
    decisions: list[Decision] = []
    if mode == "marginal":
        return _marginal(arch.space, state.alphas, state.edge_weights, decisions), decisions
    space = arch.space
    picks = {}
    for t in space.cell_types:
        cell = arch.cells[t]
        alpha = state.alphas[t]
        w = None if state.edge_weights is None else state.edge_weights[t].tolist()
        chosen: dict[int, int] = {}
        for j in space.intermediate_nodes:  # node order is topological
            scores = {}
            for e in space.incoming[j]:
                if space.is_outer(e) or e not in cell.pair_slices:
                    scores[e] = alpha[e].tolist()
                else:
                    kept = {p: chosen[p] for p in space.predecessors[e] if p in chosen}
                    scores[e] = cell.conditional(e, kept).tolist()
            chosen.update(_select_node(space, space.ops[t], scores, w, j, t, decisions))
        picks[t] = chosen
    return _to_genotype(space, picks), decisions
