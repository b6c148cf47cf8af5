"""JSON records of what an ITNAS architecture learns on its inner edges: transition matrices and attention.

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

import torch

from .arch import Architecture

__all__ = ["transition_records"]


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
