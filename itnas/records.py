"""JSON records of what an architecture looks like during the search: every epoch's alphas, their entropy, the
marginal genotype and its margins (`epoch_arch_record`), and what an ITNAS architecture learns on its inner edges:
transition matrices and attention (`transition_records`).

The search writes them into the last epoch's history record (``rec["transitions"]``, ``rec["attention"]``);
the report (`itnas.report.figures`) draws them. Edges are written as ``[src, dst]`` node lists (node ids of
`itnas.spaces`), so a record can be read without parsing strings. For a cell type with P (predecessor, inner
edge) pairs, I inner edges and K ops per edge (docs/method.md 2.3):

    transitions[cell_type] = [{"pred": [s, d], "edge": [s, d], "matrix": K rows of K floats}, ...]   # P records
    attention[cell_type]   = [{"edge": [s, d], "preds": [[s, d], ...], "weights": [w_0, ...]}, ...]  # I records

``matrix`` is T_{p->e} = row_softmax(Theta_{p->e}) (rows: op on the predecessor p, columns: op on the inner edge
e; every row sums to 1), in the order of `CellArchitecture.pairs`. ``weights`` is w_e over P(e) (sums to 1),
``weights[k]`` belonging to ``preds[k]``; ``preds`` is P(e) in the order of `SearchSpace.predecessors`. Cell types
without inner edges (every cell of darts and pcdarts, whose edges all have their own softmax) are left out, so
both dicts are empty for those methods.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import torch

from .arch import Architecture
from .derive import derive_with_margins, margin_summary

if TYPE_CHECKING:  # annotations only
    from .supernet import SearchModel

__all__ = ["alpha_entropy", "epoch_arch_record", "transition_records"]


def alpha_entropy(alpha: torch.Tensor) -> list[float]:
    """Entropy (nats) of every edge's alpha: (E, K) -> E floats. log(K) = uniform, 0 = one-hot."""
    return (-(alpha * alpha.clamp_min(1e-12).log()).sum(-1)).tolist()


def epoch_arch_record(model: SearchModel) -> dict[str, Any]:
    """What the architecture looks like now: alphas (cell type -> E x K), alpha entropy per edge (nats) and
    relative to uniform (H / log K: 1 = uniform, 0 = one-hot), PC-DARTS edge weights (cell type -> E, or None),
    the marginal genotype (dict), its collapse count, and how decided it is: every decision with its margin to
    the runner-up (`itnas.derive.Decision`) and their summary (`margin_summary`, plus the largest alpha)."""
    with torch.no_grad():
        state = model.arch()
        genotype, decisions = derive_with_margins(model.arch, "marginal")
    log_k = {t: math.log(a.shape[1]) for t, a in state.alphas.items()}
    entropy = {t: alpha_entropy(a) for t, a in state.alphas.items()}
    return {"alphas": {t: a.cpu().tolist() for t, a in state.alphas.items()},
            "alpha_entropy": entropy,
            "alpha_entropy_rel": {t: [h / log_k[t] for h in hs] for t, hs in entropy.items()},
            "edge_weights": None if state.edge_weights is None else {t: w.cpu().tolist()
                                                                      for t, w in state.edge_weights.items()},
            "genotype": genotype.to_dict(), "collapse_count": genotype.collapse_count,
            "decisions": [dataclasses.asdict(d) for d in decisions],
            "decisiveness": {**margin_summary(decisions),
                             "max_alpha": max(float(a.max()) for a in state.alphas.values())}}


@torch.no_grad()
def transition_records(arch: Architecture) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """The transition matrices and attention weights of every cell type of `arch`, as JSON-ready records.

    Args:
        arch: the architecture (any device; the values are copied to the CPU as Python floats).

    Returns:
        (transitions, attention): cell type -> list of records, in the format of the module docstring. A method
        that does not learn T (itnas_notrans) gives its fixed op-identity T; one that does not learn w_e
        (itnas_noattn) gives uniform weights.
    """
    transitions: dict[str, list[dict]] = {}
    attention: dict[str, list[dict]] = {}
    for cell_type, cell in arch.cells.items():
        if not cell.inner_edges:
            continue
        edges, predecessors = cell.space.edges, cell.space.predecessors
        T = cell.transitions().detach().cpu()  # (P, K, K), pairs in the order of cell.pairs
        transitions[cell_type] = [{"pred": list(edges[p]), "edge": list(edges[e]), "matrix": T[k].tolist()}
                                  for k, (p, e) in enumerate(cell.pairs)]
        attention[cell_type] = [{"edge": list(edges[e]), "preds": [list(edges[p]) for p in predecessors[e]],
                                 "weights": cell.attention(e).detach().cpu().tolist()}  # (|P(e)|,)
                                for e in cell.inner_edges]
    return transitions, attention
