"""Genotype derivation (itnas/derive.py) against DESIGN.md 2.6: `marginal` and `sequential` modes."""

from __future__ import annotations

import math

import pytest
import torch

from itnas.arch import Architecture
from itnas.derive import derive_from_alphas, derive_genotype
from itnas.genotype import Genotype
from itnas.spaces import create_space, list_spaces

# DARTS_OPS indices
NONE, MAX, AVG, SKIP, SEP3, SEP5, DIL3, DIL5 = range(8)
DARTS_SPACES = [s for s in list_spaces() if s != "nb201"]


def _row(best: int, value: float, none: float = 0.5, K: int = 8) -> list[float]:
    """A probability row: `none` gets `none`, op `best` gets `value`, the rest share what is left."""
    rest = (1.0 - none - value) / (K - 2)
    row = [rest] * K
    row[0], row[best] = none, value
    return row


# ---------------------------------------------------------------------------------------------------- none argmax
# edge (src, dst) -> (best non-none op, its alpha); `none` has alpha 0.5 on every edge, larger than any other op
NONE_ARGMAX_TABLE = {
    (0, 2): (SEP3, 0.30), (1, 2): (DIL5, 0.20),
    (0, 3): (SKIP, 0.15), (1, 3): (SEP5, 0.35), (2, 3): (DIL3, 0.25),
    (0, 4): (MAX, 0.40), (1, 4): (AVG, 0.10), (2, 4): (SEP3, 0.22), (3, 4): (DIL5, 0.28),
    (0, 5): (SEP5, 0.12), (1, 5): (DIL3, 0.33), (2, 5): (SKIP, 0.31), (3, 5): (SEP3, 0.18), (4, 5): (AVG, 0.45),
}
# node 2: its only two edges; node 3: 0.35, 0.25 beat 0.15; node 4: 0.40, 0.28; node 5: 0.45, 0.33
NONE_ARGMAX_EXPECTED = (
    ("sep_conv_3x3", 0, 2), ("dil_conv_5x5", 1, 2),
    ("sep_conv_5x5", 1, 3), ("dil_conv_3x3", 2, 3),
    ("max_pool_3x3", 0, 4), ("dil_conv_5x5", 3, 4),
    ("dil_conv_3x3", 1, 5), ("avg_pool_3x3", 4, 5),
)


def _table_alphas(space, table):
    a = torch.tensor([_row(*table[e]) for e in space.edges])
    return a


def test_none_argmax_keeps_best_non_none_op_and_two_edges_per_node():
    space = create_space("darts")
    a = _table_alphas(space, NONE_ARGMAX_TABLE)
    assert torch.all(a.argmax(1) == NONE)
    torch.testing.assert_close(a.sum(1), torch.ones(14))
    g = derive_from_alphas(space, {"normal": a, "reduce": a})
    assert g.normal == NONE_ARGMAX_EXPECTED
    assert g.reduce == NONE_ARGMAX_EXPECTED
    assert g.normal_concat == (2, 3, 4, 5) and g.reduce_concat == (2, 3, 4, 5)
    for j in (2, 3, 4, 5):
        assert sum(1 for _, _, d in g.normal if d == j) == 2
    assert all(op != "none" for op, _, _ in g.normal + g.reduce)


def test_normal_and_reduce_are_derived_separately():
    space = create_space("darts")
    a = _table_alphas(space, NONE_ARGMAX_TABLE)
    uniform = torch.full((14, 8), 1 / 8)
    g = derive_from_alphas(space, {"normal": a, "reduce": uniform})
    assert g.normal == NONE_ARGMAX_EXPECTED
    assert g.reduce == tuple(("max_pool_3x3", i, j) for j in (2, 3, 4, 5) for i in (0, 1))


# ---------------------------------------------------------------------------------------------------- ties
def test_all_tied_breaks_to_lower_edge_and_lower_op():
    space = create_space("darts")
    uniform = torch.full((14, 8), 1 / 8)
    g = derive_from_alphas(space, {"normal": uniform, "reduce": uniform})
    # every op ties: the lowest non-none op index (max_pool_3x3); every edge ties: the two lowest edge indices
    want = tuple(("max_pool_3x3", i, j) for j in (2, 3, 4, 5) for i in (0, 1))
    assert g.normal == want and g.reduce == want


def test_partial_ties():
    space = create_space("darts")
    table = {e: (DIL5, 0.15) for e in space.edges}  # a background of weak edges
    a = _table_alphas(space, table)
    e = space.edge_index
    # node 3: (1,3) and (2,3) tie at 0.3 above (0,3); inside (2,3), sep_conv_3x3 and dil_conv_3x3 tie
    a[e(0, 3)] = torch.tensor(_row(SEP5, 0.2))
    a[e(1, 3)] = torch.tensor([0.35, 0.3, 0.3, 0.01, 0.01, 0.01, 0.01, 0.01])  # max_pool = avg_pool -> max_pool
    a[e(2, 3)] = torch.tensor([0.1, 0.06, 0.06, 0.06, 0.3, 0.06, 0.3, 0.06])  # sep3 = dil3 -> sep3
    # node 5: three edges tie at 0.25: (1,5), (2,5), (4,5) -> keep (1,5), (2,5)
    for src in (1, 2, 4):
        a[e(src, 5)] = torch.tensor(_row(SKIP, 0.25))
    g = derive_from_alphas(space, {"normal": a, "reduce": a})
    assert g.normal == (
        ("dil_conv_5x5", 0, 2), ("dil_conv_5x5", 1, 2),
        ("max_pool_3x3", 1, 3), ("sep_conv_3x3", 2, 3),
        ("dil_conv_5x5", 0, 4), ("dil_conv_5x5", 1, 4),
        ("skip_connect", 1, 5), ("skip_connect", 2, 5),
    )


# ---------------------------------------------------------------------------------------------------- edge weights
def test_pcdarts_edge_weights_change_the_kept_edges():
    space = create_space("darts")
    a = _table_alphas(space, NONE_ARGMAX_TABLE)
    w = torch.zeros(14)
    for edges in space.incoming.values():
        w[list(edges)] = 1.0 / len(edges)  # uniform within a node: the ranking is that of the alphas
    g_uniform = derive_from_alphas(space, {"normal": a, "reduce": a}, {"normal": w, "reduce": w})
    assert g_uniform.normal == NONE_ARGMAX_EXPECTED
    # node 3: strengths 0.15, 0.35, 0.25 times weights 0.8, 0.1, 0.1 -> 0.12, 0.035, 0.025: keep (0,3), (1,3)
    w2 = w.clone()
    w2[[space.edge_index(0, 3), space.edge_index(1, 3), space.edge_index(2, 3)]] = torch.tensor([0.8, 0.1, 0.1])
    g = derive_from_alphas(space, {"normal": a, "reduce": a}, {"normal": w2, "reduce": w})
    want = list(NONE_ARGMAX_EXPECTED)
    want[2:4] = [("skip_connect", 0, 3), ("sep_conv_5x5", 1, 3)]  # ops are still the per-edge best non-none
    assert g.normal == tuple(want)
    assert g.reduce == NONE_ARGMAX_EXPECTED


def test_derive_genotype_uses_betas_on_pcdarts_base():
    """Same alphas, betas favouring (2,3) over (1,3) in node 3: the kept edges follow the betas."""
    space = create_space("darts")
    arch = Architecture(space, "pcdarts")
    a = torch.tensor([_row(*NONE_ARGMAX_TABLE[e]) for e in space.edges])
    with torch.no_grad():
        for cell in arch.cells.values():
            cell.edge_logits.copy_(a.log())
        for beta in arch.beta_logits.values():
            beta.zero_()
        assert derive_genotype(arch).normal == NONE_ARGMAX_EXPECTED
        beta = arch.beta_logits["normal"]
        beta[space.edge_index(0, 3)] = 5.0  # weight ~0.99 for (0,3): 0.15 * 0.99 beats 0.35 * 0.007
    g = derive_genotype(arch)
    assert [(s, d) for _, s, d in g.normal if d == 3] == [(0, 3), (1, 3)]
    assert g.reduce == NONE_ARGMAX_EXPECTED


# ---------------------------------------------------------------------------------------------------- NB201
def test_nb201_keeps_all_edges_and_may_keep_none():
    space = create_space("nb201")  # ops: none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3
    a = torch.tensor([
        [0.60, 0.10, 0.10, 0.10, 0.10],  # (0,1): none
        [0.10, 0.10, 0.10, 0.60, 0.10],  # (0,2): nor_conv_3x3
        [0.20, 0.40, 0.20, 0.10, 0.10],  # (1,2): skip_connect
        [0.30, 0.10, 0.10, 0.10, 0.40],  # (0,3): avg_pool_3x3
        [0.40, 0.15, 0.15, 0.15, 0.15],  # (1,3): none
        [0.10, 0.10, 0.50, 0.20, 0.10],  # (2,3): nor_conv_1x1
    ])
    g = derive_from_alphas(space, {"normal": a})
    assert g.to_nb201_string() == "|none~0|+|nor_conv_3x3~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"
    assert len(g.normal) == 6 and g.reduce == () and g.normal_concat == (3,)
    # edge weights never drop an NB201 edge
    w = torch.tensor([1.0, 0.01, 0.99, 0.001, 0.001, 0.998])
    assert derive_from_alphas(space, {"normal": a}, {"normal": w}) == g
    # an all-tied NB201 cell keeps op index 0 (none) everywhere
    tied = derive_from_alphas(space, {"normal": torch.full((6, 5), 0.2)})
    assert all(op == "none" for op, _, _ in tied.normal)


def test_wrong_alpha_shape_raises():
    space = create_space("darts")
    with pytest.raises(ValueError, match="alphas"):
        derive_from_alphas(space, {"normal": torch.rand(14, 7), "reduce": torch.rand(14, 8)})


# ---------------------------------------------------------------------------------------------------- modes
@pytest.mark.parametrize("space_name", list_spaces())
@pytest.mark.parametrize("method", ["darts", "pcdarts"])
@pytest.mark.parametrize("seed", [0, 1])
def test_independent_methods_marginal_equals_sequential(method, space_name, seed):
    torch.manual_seed(seed)
    arch = Architecture(create_space(space_name), method)
    with torch.no_grad():
        for p in arch.parameters():
            p.copy_(2.0 * torch.randn_like(p))
    m = derive_genotype(arch, "marginal")
    s = derive_genotype(arch, "sequential")
    assert m == s
    state = arch()
    assert m == derive_from_alphas(arch.space, state.alphas, state.edge_weights)


@pytest.mark.parametrize("space_name", list_spaces())
@pytest.mark.parametrize("method", ["itnas", "itnas_noattn", "itnas_notrans"])
def test_transition_methods_sequential_gives_valid_genotype(method, space_name):
    torch.manual_seed(0)
    arch = Architecture(create_space(space_name), method)
    with torch.no_grad():
        for p in arch.parameters():
            p.copy_(2.0 * torch.randn_like(p))
    for mode in ("marginal", "sequential"):
        g = derive_genotype(arch, mode)
        assert isinstance(g, Genotype) and g.space == space_name
        g.validate()


def test_unknown_mode_raises():
    arch = Architecture(create_space("darts"), "itnas")
    with pytest.raises(ValueError) as exc:
        derive_genotype(arch, "greedy")
    assert "greedy" in str(exc.value) and "marginal" in str(exc.value) and "sequential" in str(exc.value)


def test_conditional_renormalises_attention_over_kept_predecessors():
    """q_e = sum_{p in P*(e)} w~_e[p] T_{p->e}[o*_p, :], w~ = w restricted to P*(e), renormalised."""
    torch.manual_seed(0)
    space = create_space("darts")
    arch = Architecture(space, "itnas")
    with torch.no_grad():
        for p in arch.parameters():
            p.copy_(1.5 * torch.randn_like(p))
    cell = arch.cells["normal"]
    e45 = space.edge_index(4, 5)
    preds = list(space.predecessors[e45])  # (0,4), (1,4), (2,4), (3,4)
    start, _ = cell.pair_slices[e45]
    with torch.no_grad():
        w = torch.softmax(cell.attention_logits[start:start + 4], 0)
        T = torch.softmax(cell.transition_logits[start:start + 4], -1)
        chosen = {preds[1]: SEP3, preds[3]: DIL5}  # kept: (1,4) with sep3, (3,4) with dil5
        q = cell.conditional(e45, chosen)
    want = (w[1] * T[1, SEP3] + w[3] * T[3, DIL5]) / (w[1] + w[3])
    torch.testing.assert_close(q, want)
    assert abs(float(q.sum()) - 1.0) < 1e-6
    with pytest.raises(ValueError):
        cell.conditional(e45, {})


# ------------------------------------------------------------------------------------ itnas: marginal != sequential
def _log(row):
    return torch.tensor([math.log(v) for v in row])


def _peak(j, K=8):
    """A transition row with 0.93 on op j and 0.01 on the other 7 ops."""
    row = [0.01] * K
    row[j] = 0.93
    return row


def _set_pair(cell, space, p, e, rows):
    """Set Theta_{p->e} so that T_{p->e} = rows (rows: K lists, or one list used for every source op)."""
    k = cell.pairs.index((space.edge_index(*p), space.edge_index(*e)))
    if not isinstance(rows[0], list):
        rows = [rows] * space.n_ops
    cell.transition_logits[k] = torch.stack([_log(r) for r in rows])


def _set_attention(cell, space, e, w):
    start, stop = cell.pair_slices[space.edge_index(*e)]
    cell.attention_logits[start:stop] = _log(w)


def _set_outer(cell, space, e, row):
    cell.edge_logits[cell.indep_edges.index(space.edge_index(*e))] = _log(row)


def test_itnas_nb201_marginal_and_sequential_differ():
    """NB201, ops 0 none, 1 skip_connect, 2 nor_conv_1x1, 3 nor_conv_3x3, 4 avg_pool_3x3.

    Outer: alpha(0,1) = [.02, .02, .50, .44, .02] (argmax nor_conv_1x1), alpha(0,2) = [.05, .05, .05, .80, .05]
    (nor_conv_3x3), alpha(0,3) = [.05, .80, .05, .05, .05] (skip_connect).
    T (0,1)->(1,2): row nor_conv_1x1 = [.1, .6, .1, .1, .1], row nor_conv_3x3 = [.01, .01, .01, .01, .96], other rows
    uniform. Marginal alpha(1,2) = .06*.2 + .5*row1x1 + .44*row3x3 = [.0664, .3164, .0664, .0664, .4844]
    -> avg_pool_3x3; sequential q(1,2) = row nor_conv_1x1 (the op chosen on (0,1)) -> skip_connect.
    T (0,1)->(1,3): rows nor_conv_1x1 and nor_conv_3x3 = [.01, .01, .01, .96, .01], others uniform:
    marginal .0214 / .9144 and sequential .96 on nor_conv_3x3: both nor_conv_3x3.
    (2,3), P = {(0,2), (1,2)}, attention 1/2 each; T (0,2)->(2,3) uniform; T (1,2)->(2,3): row skip_connect =
    [.96, .01, .01, .01, .01], row avg_pool = [.01, .01, .96, .01, .01], other rows uniform.
    Marginal: alpha(1,2)^T T = [.348428, .047848, .508028, .047848, .047848], alpha(2,3) = .1 + half of it
    -> nor_conv_1x1. Sequential: q = .5 * .2 + .5 * row skip_connect (op chosen on (1,2)) = [.58, .105, ...] -> none.
    """
    space = create_space("nb201")
    arch = Architecture(space, "itnas", base="darts")
    cell = arch.cells["normal"]
    u = [0.2] * 5
    with torch.no_grad():
        cell.transition_logits.zero_()
        cell.attention_logits.zero_()
        _set_outer(cell, space, (0, 1), [0.02, 0.02, 0.50, 0.44, 0.02])
        _set_outer(cell, space, (0, 2), [0.05, 0.05, 0.05, 0.80, 0.05])
        _set_outer(cell, space, (0, 3), [0.05, 0.80, 0.05, 0.05, 0.05])
        _set_pair(cell, space, (0, 1), (1, 2), [u, u, [0.1, 0.6, 0.1, 0.1, 0.1], [0.01] * 4 + [0.96], u])
        to_33 = [0.01, 0.01, 0.01, 0.96, 0.01]
        _set_pair(cell, space, (0, 1), (1, 3), [u, u, to_33, to_33, u])
        _set_pair(cell, space, (0, 2), (2, 3), u)
        _set_pair(cell, space, (1, 2), (2, 3), [u, [0.96] + [0.01] * 4, u, u, [0.01, 0.01, 0.96, 0.01, 0.01]])
        alpha = cell()
    torch.testing.assert_close(alpha[space.edge_index(1, 2)], torch.tensor([0.0664, 0.3164, 0.0664, 0.0664, 0.4844]))
    torch.testing.assert_close(alpha[space.edge_index(2, 3)],
                               0.1 + 0.5 * torch.tensor([0.348428, 0.047848, 0.508028, 0.047848, 0.047848]))
    marginal = derive_genotype(arch, "marginal")
    sequential = derive_genotype(arch, "sequential")
    assert marginal.to_nb201_string() == \
        "|nor_conv_1x1~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    assert sequential.to_nb201_string() == \
        "|nor_conv_1x1~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"


# DARTS cell, hand-built. Outer alphas (ops: none max avg skip sep3 sep5 dil3 dil5):
DARTS_OUTER = {
    (0, 2): [0.04, 0.04, 0.04, 0.04, 0.30, 0.20, 0.20, 0.14],  # sep3 .30 (spread over sep5, dil3, dil5)
    (1, 2): [0.05, 0.05, 0.05, 0.70, 0.05, 0.05, 0.025, 0.025],  # skip .70
    (0, 3): [0.10, 0.50] + [0.4 / 6] * 6,  # max .50
    (1, 3): [0.10, 0.075, 0.45, 0.075, 0.075, 0.075, 0.075, 0.075],  # avg .45
    (0, 4): [0.05] + [0.025] * 5 + [0.80, 0.025],  # dil3 .80
    (1, 4): [0.05, 0.25 / 6, 0.25 / 6, 0.70] + [0.25 / 6] * 4,  # skip .70
    (0, 5): [0.10, 0.60] + [0.05] * 6,  # max .60
    (1, 5): [0.10, 0.35 / 6, 0.55] + [0.35 / 6] * 5,  # avg .55
}
DARTS_MARGINAL = (
    ("sep_conv_3x3", 0, 2), ("skip_connect", 1, 2),
    ("max_pool_3x3", 0, 3), ("avg_pool_3x3", 1, 3),
    ("dil_conv_3x3", 0, 4), ("skip_connect", 1, 4),
    ("max_pool_3x3", 0, 5), ("sep_conv_3x3", 4, 5),
)
DARTS_SEQUENTIAL = (
    ("sep_conv_3x3", 0, 2), ("skip_connect", 1, 2),
    ("max_pool_3x3", 0, 3), ("sep_conv_5x5", 2, 3),
    ("dil_conv_3x3", 0, 4), ("sep_conv_3x3", 3, 4),
    ("max_pool_3x3", 0, 5), ("sep_conv_3x3", 4, 5),
)


@pytest.mark.parametrize("base", ["darts", "pcdarts"])
def test_itnas_darts_marginal_and_sequential_differ(base):
    """Hand-built DARTS cell (normal = reduce) where sequential decoding keeps other edges than marginal.

    peak(j) = 0.93 on op j, 0.01 elsewhere. Attention uniform except on (3,4).
    Node 2: both edges; (0,2) sep3, (1,2) skip.
    Node 3: (0,3) max .50, (1,3) avg .45. (2,3), P = {(0,2), (1,2)}:
      T (0,2)->(2,3): row sep3 -> peak(sep5), sep5 -> peak(dil3), dil3 -> peak(dil5), dil5 -> peak(max), the
      rows none/max/avg/skip -> peak(avg). T (1,2)->(2,3): every row r1 = [.16, .12 x 7].
      marginal: alpha(0,2)^T T = sep5 .286, dil3 .194, dil5 .194, avg .1572, max .1388, none/skip/sep3 .01;
      alpha(2,3) = half that + half r1: best sep5 .203 < .45 -> keep (0,3) max, (1,3) avg.
      sequential (o* = sep3 on (0,2), skip on (1,2)): q = .5 peak(sep5) + .5 r1: sep5 .525 > .50 > .45
      -> keep (0,3) max, (2,3) sep5.
    Node 4: (0,4) dil3 .80, (1,4) skip .70. (2,4): every row r7 = [.3, .09, .09, .09, .16, .09, .09, .09] from
      both predecessors: sep3 .16 in both modes (never kept). (3,4), P = {(0,3), (1,3), (2,3)} with attention
      [.2, .6, .2]; every row of T (0,3)->(3,4) and (2,3)->(3,4) = peak(sep3), of T (1,3)->(3,4) = peak(dil5).
      marginal: alpha(3,4) = .4 peak(sep3) + .6 peak(dil5): dil5 .562 < .70 -> keep (0,4) dil3, (1,4) skip.
      sequential: kept predecessors (0,3), (2,3), attention renormalised to [.5, .5]: q = peak(sep3), .93 > .80
      -> keep (0,4) dil3, (3,4) sep3. (Without the renormalisation q(sep3) = .372 and (1,4) would win.)
    Node 5: (0,5) max .60, (1,5) avg .55; inner edges have identical rows for every source op, so both modes
      agree: (2,5) r11 = dil5 .4, (3,5) r12 = sep5 .3, (4,5) r13 = sep3 .7 -> keep (4,5) sep3 .7, (0,5) max .6.
    On the pcdarts base all betas are 0: uniform weights within a node do not change any ranking.
    """
    space = create_space("darts")
    arch = Architecture(space, "itnas", base=base)
    r1 = [0.16] + [0.12] * 7
    r7 = [0.3, 0.09, 0.09, 0.09, 0.16, 0.09, 0.09, 0.09]
    r11 = [0.3] + [0.05] * 6 + [0.4]
    r12 = [0.3, 0.4 / 6, 0.4 / 6, 0.4 / 6, 0.4 / 6, 0.3, 0.4 / 6, 0.4 / 6]
    r13 = [0.12, 0.03, 0.03, 0.03, 0.7, 0.03, 0.03, 0.03]
    for r in (r1, r7, r11, r12, r13, *DARTS_OUTER.values()):
        assert abs(sum(r) - 1) < 1e-12
    with torch.no_grad():
        if arch.beta_logits is not None:
            for beta in arch.beta_logits.values():
                beta.zero_()
        for cell in arch.cells.values():
            cell.attention_logits.zero_()
            for e, row in DARTS_OUTER.items():
                _set_outer(cell, space, e, row)
            _set_pair(cell, space, (0, 2), (2, 3), [_peak(AVG)] * 4 + [_peak(SEP5), _peak(DIL3), _peak(DIL5),
                                                                        _peak(MAX)])
            _set_pair(cell, space, (1, 2), (2, 3), r1)
            _set_pair(cell, space, (0, 2), (2, 4), r7)
            _set_pair(cell, space, (1, 2), (2, 4), r7)
            _set_pair(cell, space, (0, 3), (3, 4), _peak(SEP3))
            _set_pair(cell, space, (1, 3), (3, 4), _peak(DIL5))
            _set_pair(cell, space, (2, 3), (3, 4), _peak(SEP3))
            _set_attention(cell, space, (3, 4), [0.2, 0.6, 0.2])
            for p in [(0, 2), (1, 2)]:
                _set_pair(cell, space, p, (2, 5), r11)
            for p in [(0, 3), (1, 3), (2, 3)]:
                _set_pair(cell, space, p, (3, 5), r12)
            for p in [(0, 4), (1, 4), (2, 4), (3, 4)]:
                _set_pair(cell, space, p, (4, 5), r13)
        alpha = arch.cells["normal"]()
    e = space.edge_index
    torch.testing.assert_close(alpha[e(3, 4)], 0.4 * torch.tensor(_peak(SEP3)) + 0.6 * torch.tensor(_peak(DIL5)))
    assert abs(float(alpha[e(2, 3), SEP5]) - 0.203) < 1e-6
    marginal = derive_genotype(arch, "marginal")
    sequential = derive_genotype(arch, "sequential")
    assert marginal.normal == DARTS_MARGINAL and marginal.reduce == DARTS_MARGINAL
    assert sequential.normal == DARTS_SEQUENTIAL and sequential.reduce == DARTS_SEQUENTIAL
