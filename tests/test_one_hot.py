"""A one-hot alpha turns a mixed edge into its op: for EVERY op of EVERY registered search space, on the reference
`MixedOp` (itnas/supernet.py) and on the fused cells (itnas/fused.py), float64.

The expected values are computed without the code under test: pooling and batch norm by hand (`torch.nn.functional`
and the batch statistics), parametric ops (sep / dil / nor conv, the strided skip) by a fresh `create_op` module that
holds a copy of the edge's weights, `none` as zeros, and `noise` (RobustDARTS S4) by its seeded draw on the reference
(`torch.randn` of the strided input shape after the same seed) and by its statistics on the fused cells, which draw
the noise of a wave's edges in one call (each node the sum of its incoming edges' independent N(0, 1): mean 0,
variance = its number of incoming edges, nodes uncorrelated).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from itnas.fused import FusedCell
from itnas.ops import create_op
from itnas.spaces import create_space, list_spaces
from itnas.supernet import MixedOp, NB201SearchCell, SearchCell

TOL = 1e-10  # float64: the same ops, summed in another order at most


def _space_ops() -> list[tuple[str, str]]:
    """(space, op) for every op that occurs on some edge of some cell type of every registered space."""
    cases = []
    for name in list_spaces():
        space = create_space(name)
        ops = {op for t in space.cell_types for edge in space.ops[t] for op in edge}
        cases += [(name, op) for op in sorted(ops)]
    return cases


CASES = _space_ops()


def test_every_registered_op_of_every_space_is_covered():
    """The parametrisation is not silently narrower than the registries (the issue's `nor_conv_*`, `noise`)."""
    ops = {op for _, op in CASES}
    assert {s for s, _ in CASES} == set(list_spaces())
    assert {"none", "noise", "nor_conv_1x1", "nor_conv_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_5x5",
            "max_pool_3x3", "avg_pool_3x3"} <= ops


def _bn_train(y: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """BatchNorm (no affine) in train mode, by hand: batch mean, biased batch variance per channel."""
    mean = y.mean(dim=(0, 2, 3), keepdim=True)
    var = y.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return (y - mean) / torch.sqrt(var + eps)


def _expected(name: str, module: torch.nn.Module, C: int, stride: int, pool_bn: bool, x: torch.Tensor
              ) -> torch.Tensor:
    """What op `name` (the module an edge holds for it) computes on x (B, C, H, W), without calling that module:
    by hand, or through a fresh op with a copy of its weights. `noise` is not handled here (random)."""
    if name == "none":
        H, W = x.shape[2:]
        return x.new_zeros(x.shape[0], C, -(-H // stride), -(-W // stride))
    if name == "max_pool_3x3":
        y = F.max_pool2d(x, 3, stride, 1)
        return _bn_train(y) if pool_bn else y
    if name == "avg_pool_3x3":
        y = F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
        return _bn_train(y) if pool_bn else y
    if name == "skip_connect" and stride == 1:
        return x
    fresh = create_op(name, C, stride, affine=False).to(x.dtype)
    fresh.load_state_dict(module.state_dict())  # the same structure: the keys must match exactly
    return fresh.train()(x)


def _edge_ops(space_name: str, op: str) -> tuple[tuple[str, ...], bool]:
    """(an edge's op tuple that holds `op`, pool_bn of the space's cells)."""
    space = create_space(space_name)
    ops = next(edge for t in space.cell_types for edge in space.ops[t] if op in edge)
    return ops, space.layout != "nb201"  # NB201 cells pool without a batch norm


def _strides(space_name: str) -> list[int]:
    return [1, 2] if create_space(space_name).has_reduction_cell else [1]


# ------------------------------------------------------------------------------------------- reference MixedOp
@pytest.mark.parametrize("space,op", CASES)
def test_one_hot_mixed_op_equals_its_op(space, op):
    ops, pool_bn = _edge_ops(space, op)
    k = ops.index(op)
    for stride in _strides(space):
        torch.manual_seed(0)
        C = 4
        mixed = MixedOp(C, stride, ops, partial_k=1, pool_bn=pool_bn).double().train()
        x = torch.randn(3, C, 9, 9, dtype=torch.float64)  # odd: the strided ops' padding and ceil
        alpha = F.one_hot(torch.tensor(k), len(ops)).double()
        if op == "noise":
            torch.manual_seed(7)
            out = mixed(x, alpha)
            torch.manual_seed(7)
            want = torch.randn(3, C, -(-9 // stride), -(-9 // stride), dtype=torch.float64)
            assert torch.equal(out, want), f"stride {stride}: not the seeded N(0, 1) draw"
            torch.manual_seed(7)
            assert torch.equal(mixed(2 * x + 1, alpha), want)  # independent of the input
            continue
        out = mixed(x, alpha)
        want = _expected(op, mixed.ops[k], C, stride, pool_bn, x)
        assert out.shape == want.shape == (3, C, -(-9 // stride), -(-9 // stride))
        torch.testing.assert_close(out, want, rtol=0, atol=TOL, msg=lambda m, s=stride: f"stride {s}: {m}")
        if op == "none":
            assert torch.count_nonzero(out) == 0
        else:
            assert out.abs().sum() > 0.1 * want.abs().sum() > 0  # not a zero that matches a zero


# ------------------------------------------------------------------------------------------- fused cells
def _cells(space_name: str, cell_type: str, C: int = 8) -> tuple[torch.nn.Module, FusedCell]:
    """(reference cell, the fused cell made from it), float64, train mode; DARTS cells read C-channel inputs."""
    space = create_space(space_name)
    if space.n_inputs == 2:
        ref = SearchCell(space, cell_type, C, C, C, False, 1, True).double().train()
    else:
        ref = NB201SearchCell(space, C, 1, True).double().train()
    fused = FusedCell.from_reference(ref, cell_type, C, 1, True, space.n_inputs == 2).train()
    return ref, fused


def _one_hot_alpha(space_name: str, cell_type: str, op: str) -> tuple[torch.Tensor, list[int]]:
    """alpha (E, K) one-hot on `op` on every edge that has it, else on the edge's first op; the chosen op index of
    every edge."""
    per_edge = create_space(space_name).ops[cell_type]
    choice = [ops.index(op) if op in ops else 0 for ops in per_edge]
    alpha = F.one_hot(torch.tensor(choice), len(per_edge[0])).double()
    return alpha, choice


def _by_hand(ref: torch.nn.Module, cell_type: str, choice: list[int], inputs: list[torch.Tensor]) -> torch.Tensor:
    """The cell with edge e replaced by its op choice[e], node by node (each op via `_expected`)."""
    space = ref.space
    states = [ref.preprocess0(inputs[0]), ref.preprocess1(inputs[1])] if space.n_inputs == 2 else list(inputs)
    for j in space.intermediate_nodes:
        total = None
        for e in space.incoming[j]:
            src = space.edges[e][0]
            stride = 2 if cell_type == "reduce" and src < space.n_inputs else 1
            name = space.ops[cell_type][e][choice[e]]
            y = _expected(name, ref.edges[e].ops[choice[e]], ref.edges[e].C, stride, space.n_inputs == 2,
                          states[src])
            total = y if total is None else total + y
        states.append(total)
    return torch.cat(states[space.n_inputs:], 1) if space.output == "concat" else states[-1]


def _inputs(space_name: str, C: int = 8, side: int = 16) -> list[torch.Tensor]:
    n = create_space(space_name).n_inputs
    return [torch.randn(4, C, side, side, dtype=torch.float64) for _ in range(n)]


@pytest.mark.parametrize("space,op", [c for c in CASES if c[1] != "noise"])
def test_one_hot_fused_cell_equals_the_cell_of_its_op(space, op):
    for cell_type in create_space(space).cell_types:
        torch.manual_seed(0)
        ref, fused = _cells(space, cell_type)
        alpha, choice = _one_hot_alpha(space, cell_type, op)
        inputs = _inputs(space)
        out = fused(*inputs, mixing=fused.mixing(alpha, None))
        want = _by_hand(ref, cell_type, choice, inputs)
        assert out.shape == want.shape
        torch.testing.assert_close(out, want, rtol=0, atol=TOL, msg=lambda m, t=cell_type: f"{t} cell: {m}")
        if op == "none" and all(create_space(space).ops[cell_type][e][c] == "none" for e, c in enumerate(choice)):
            assert torch.count_nonzero(out) == 0  # none is never computed: exactly zero, not a small sum


@pytest.mark.parametrize("space", [s for s, op in CASES if op == "noise"])
def test_one_hot_noise_in_fused_and_reference_cells_has_the_statistics_of_independent_draws(space):
    """Every edge on `noise`: node j is the sum of its n_j incoming edges' independent N(0, 1) draws, so its values
    have mean 0 and variance n_j, and different nodes are uncorrelated (noise drawn once per source and shared by
    its edges, as pooling is, would correlate them). Checked on 4 x 8 x 16 x 16 (normal) and 4 x 8 x 8 x 8
    (reduce) values per node, seeded; bounds of about 5 standard errors."""
    sp = create_space(space)
    for cell_type in sp.cell_types:
        torch.manual_seed(0)
        ref, fused = _cells(space, cell_type)
        alpha, choice = _one_hot_alpha(space, cell_type, "noise")
        assert all(sp.ops[cell_type][e][c] == "noise" for e, c in enumerate(choice))
        inputs = _inputs(space)
        for label, out in (("fused", fused(*inputs, mixing=fused.mixing(alpha, None))),
                           ("reference", ref(*inputs, alpha))):
            nodes = out.chunk(len(sp.intermediate_nodes), 1) if sp.output == "concat" else [out]
            js = list(sp.intermediate_nodes) if sp.output == "concat" else [sp.n_nodes - 1]
            flat = [n.flatten() for n in nodes]
            for j, v in zip(js, flat, strict=True):
                n_in, N = len(sp.incoming[j]), v.numel()
                assert abs(v.mean().item()) < 5 * (n_in / N) ** 0.5, (label, cell_type, j, v.mean().item())
                assert v.var().item() == pytest.approx(n_in, rel=5 * (2 / N) ** 0.5), (label, cell_type, j)
            corr = torch.corrcoef(torch.stack(flat))
            off = (corr - torch.eye(len(flat), dtype=corr.dtype)).abs().max().item()
            assert off < 5 / flat[0].numel() ** 0.5, (label, cell_type, off)
