"""Macro architecture: how cells are stacked into a network, written once for the supernet and the final network.

DARTS layout (Liu et al. 2019, section 3.1; `model_search.Network` and `model.NetworkCIFAR`): a stem of
`stem_multiplier * C` channels, then `layers` cells; the cells at 1/3 and 2/3 of the depth are reduction cells
(stride 2, channels doubled); cell k reads the outputs of cells k-2 and k-1 (a factorized reduction of k-2 when
k-1 reduced). The auxiliary head of the final network reads the cell at 2/3 of the depth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CellSlot", "auxiliary_layer", "darts_stack", "reduction_layers"]


def reduction_layers(layers: int) -> tuple[int, int]:
    """Indices of the reduction cells among `layers` cells: layers // 3 and 2 * layers // 3."""
    return layers // 3, 2 * layers // 3


def auxiliary_layer(layers: int) -> int:
    """Index of the cell whose output feeds the auxiliary head (2/3 of the depth, as DARTS)."""
    return 2 * layers // 3


@dataclass(frozen=True)
class CellSlot:
    """One cell of the stack: its index, type ("normal" | "reduce"), input channels of the two previous cells
    (C_pp from k-2, C_p from k-1), its own width C, whether cell k-1 reduced, and its output channels C_out."""

    index: int
    cell_type: str
    C_pp: int
    C_p: int
    C: int
    reduction_prev: bool
    C_out: int


def darts_stack(layers: int, C: int, stem_multiplier: int = 3,
                multiplier: Callable[[str], int] = lambda cell_type: 4) -> list[CellSlot]:
    """The cells of a DARTS-layout network of `layers` cells and initial width C.

    Args:
        multiplier(cell_type): how many node outputs a cell of that type concatenates (4 in the DARTS cell).

    Returns:
        `layers` CellSlots; the stem has stem_multiplier * C channels (the first C_pp and C_p).
    """
    C_pp = C_p = stem_multiplier * C
    C_curr, reduction_prev, slots = C, False, []
    for i in range(layers):
        reduction = i in reduction_layers(layers)
        if reduction:
            C_curr *= 2
        cell_type = "reduce" if reduction else "normal"
        C_out = multiplier(cell_type) * C_curr
        slots.append(CellSlot(i, cell_type, C_pp, C_p, C_curr, reduction_prev, C_out))
        reduction_prev = reduction
        C_pp, C_p = C_p, C_out
    return slots
