"""Architecture parameterisations (itnas/arch.py) against docs/method.md 2.2, 2.3 and 2.5."""

from __future__ import annotations

import math

import pytest
import torch

from itnas.arch import Architecture, create_architecture
from itnas.methods import get_method, list_methods
from itnas.spaces import create_space, list_spaces

METHODS = list_methods()
SPACES = list_spaces()
TRANSITION_METHODS = ("itnas", "itnas_noattn", "itnas_notrans")

# docs/method.md 2.2, written out by hand: inner edge -> its predecessor edges P(e), as (src, dst) pairs.
DARTS_P = {
    (2, 3): [(0, 2), (1, 2)],
    (2, 4): [(0, 2), (1, 2)],
    (2, 5): [(0, 2), (1, 2)],
    (3, 4): [(0, 3), (1, 3), (2, 3)],
    (3, 5): [(0, 3), (1, 3), (2, 3)],
    (4, 5): [(0, 4), (1, 4), (2, 4), (3, 4)],
}
NB201_P = {(1, 2): [(0, 1)], (1, 3): [(0, 1)], (2, 3): [(0, 2), (1, 2)]}
DARTS_EDGES = [(0, 2), (1, 2), (0, 3), (1, 3), (2, 3), (0, 4), (1, 4), (2, 4), (3, 4), (0, 5), (1, 5), (2, 5), (3, 5),
               (4, 5)]
NB201_EDGES = [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]


def _hand_p(space_name):
    return NB201_P if space_name == "nb201" else DARTS_P


def _randomise(arch: Architecture, scale: float, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in arch.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


# ---------------------------------------------------------------------------------------------------- spaces / P(e)
@pytest.mark.parametrize("space_name", SPACES)
def test_predecessors_match_design(space_name):
    space = create_space(space_name)
    want_edges = NB201_EDGES if space_name == "nb201" else DARTS_EDGES
    assert list(space.edges) == want_edges
    hand = _hand_p(space_name)
    for e, (src, dst) in enumerate(space.edges):
        preds = [space.edges[p] for p in space.predecessors[e]]
        if src < space.n_inputs:
            assert space.is_outer(e) and preds == []
        else:
            assert not space.is_outer(e)
            assert preds == hand[(src, dst)]
    # every predecessor comes earlier: canonical order is topological
    for e, preds in enumerate(space.predecessors):
        assert all(p < e for p in preds)


# ---------------------------------------------------------------------------------------------------- (a) simplex
@pytest.mark.parametrize("space_name", SPACES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("scale", [None, 30.0])
def test_alpha_rows_are_probability_vectors(method, space_name, scale):
    torch.manual_seed(0)
    space = create_space(space_name)
    arch = Architecture(space, method)
    if scale is not None:
        _randomise(arch, scale)
    with torch.no_grad():
        state = arch()
    assert set(state.alphas) == set(space.cell_types)
    for alpha in state.alphas.values():
        assert alpha.shape == (space.n_edges, space.n_ops)
        assert torch.isfinite(alpha).all()
        assert (alpha >= 0).all()
        torch.testing.assert_close(alpha.sum(-1), torch.ones(space.n_edges), rtol=0, atol=1e-6)
    if arch.base == "pcdarts":
        assert state.edge_weights is not None
        for w in state.edge_weights.values():
            assert w.shape == (space.n_edges,) and (w >= 0).all()
            for edges in space.incoming.values():
                assert abs(float(w[list(edges)].sum()) - 1.0) < 1e-6
    else:
        assert state.edge_weights is None


# ---------------------------------------------------------------------------------------------------- (b) formula
def _softmax(v):
    m = max(v)
    ex = [math.exp(x - m) for x in v]
    s = sum(ex)
    return [x / s for x in ex]


def _hand_alphas(space, cell, spec):
    """docs/method.md 2.3 with explicit loops, in float64, from the cell's raw logits.

    Outer edge: softmax(a_e). Inner edge: sum_p w_e[p] * sum_o' alpha_p[o'] * T_{p->e}[o', o]."""
    ops = space.ops[cell.cell_type]
    K = space.n_ops
    logits = cell.edge_logits.detach().double().tolist()
    theta = None if cell.transition_logits is None else cell.transition_logits.detach().double().tolist()
    b = None if cell.attention_logits is None else cell.attention_logits.detach().double().tolist()
    hand_p = _hand_p(space.name)
    outer = [e for e, (s, _) in enumerate(space.edges) if s < space.n_inputs]
    # the library stores outer edges' logits in edge order, then pairs (p, e) by inner edge, preds ascending
    assert cell.indep_edges == outer
    pairs = [(space.edges.index(p), space.edges.index(e)) for e in space.edges if e in hand_p for p in hand_p[e]]
    assert cell.pairs == pairs
    alpha = {}
    for slot, e in enumerate(outer):
        alpha[e] = _softmax(logits[slot])
    for e, edge in enumerate(space.edges):
        if e in alpha:
            continue
        preds = [space.edges.index(p) for p in hand_p[edge]]
        ks = [pairs.index((p, e)) for p in preds]
        w = _softmax([b[k] for k in ks]) if spec.learn_attention else [1.0 / len(preds)] * len(preds)
        out = [0.0] * K
        for wp, p, k in zip(w, preds, ks, strict=True):
            for o_src in range(K):
                if spec.learn_transition:
                    row = _softmax(theta[k][o_src])
                else:  # fixed op-identity: same op on e; uniform when e lacks that op
                    name = ops[p][o_src]
                    row = [1.0 if ops[e][o] == name else 0.0 for o in range(K)]
                    if sum(row) == 0:
                        row = [1.0 / K] * K
                for o in range(K):
                    out[o] += wp * alpha[p][o_src] * row[o]
        alpha[e] = out
    return torch.tensor([alpha[e] for e in range(space.n_edges)], dtype=torch.float64)


@pytest.mark.parametrize("space_name", ["darts", "nb201", "s1"])
@pytest.mark.parametrize("method", TRANSITION_METHODS)
def test_inner_alpha_matches_hand_formula(method, space_name):
    space = create_space(space_name)
    arch = Architecture(space, method, base="darts")
    _randomise(arch, 1.5, seed=3)
    state = arch()
    for t in space.cell_types:
        hand = _hand_alphas(space, arch.cells[t], arch.spec)
        got = state.alphas[t].double()
        torch.testing.assert_close(got, hand, rtol=0, atol=1e-6)
        # the deepest inner edge, whose predecessors are themselves partly inner
        e = space.edge_index(4, 5) if space_name != "nb201" else space.edge_index(2, 3)
        torch.testing.assert_close(got[e], hand[e], rtol=0, atol=1e-6)
        # and it is not trivially uniform
        assert float(hand[e].max() - hand[e].min()) > 1e-3


def test_itnas_edge_45_explicit_small_example():
    """Edge (4,5) of the DARTS cell computed step by step from hand-set logits (float64)."""
    space = create_space("darts")
    arch = Architecture(space, "itnas", base="darts").double()
    _randomise(arch, 0.7, seed=11)
    cell = arch.cells["normal"]
    with torch.no_grad():
        alpha = cell()
    K = 8
    ei = space.edge_index
    T = torch.softmax(cell.transition_logits, -1)

    def outer_alpha(src, dst):
        return torch.softmax(cell.edge_logits[cell.indep_edges.index(ei(src, dst))], 0)

    def pair(p, e):
        return cell.pairs.index((ei(*p), ei(*e)))

    def inner_alpha(edge, preds_alpha):
        ks = [pair(p, edge) for p in preds_alpha]
        w = torch.softmax(cell.attention_logits[ks], 0)
        out = torch.zeros(K, dtype=torch.float64)
        for wk, k, a_p in zip(w, ks, preds_alpha.values(), strict=True):
            for o_src in range(K):
                out += wk * a_p[o_src] * T[k, o_src]
        return out

    a02, a12, a03, a13, a04, a14 = (outer_alpha(*e) for e in [(0, 2), (1, 2), (0, 3), (1, 3), (0, 4), (1, 4)])
    a23 = inner_alpha((2, 3), {(0, 2): a02, (1, 2): a12})
    a24 = inner_alpha((2, 4), {(0, 2): a02, (1, 2): a12})
    a34 = inner_alpha((3, 4), {(0, 3): a03, (1, 3): a13, (2, 3): a23})
    a45 = inner_alpha((4, 5), {(0, 4): a04, (1, 4): a14, (2, 4): a24, (3, 4): a34})
    torch.testing.assert_close(alpha[ei(4, 5)].detach(), a45.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(alpha[ei(3, 4)].detach(), a34.detach(), rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------------- (c) gradients
def test_itnas_gradients_reach_all_parameter_kinds():
    space = create_space("darts")
    arch = Architecture(space, "itnas", base="darts")
    _randomise(arch, 1.0, seed=5)
    cell = arch.cells["normal"]
    e45 = space.edge_index(4, 5)
    torch.manual_seed(0)
    target = torch.randn(space.n_ops)
    loss = (arch().alphas["normal"][e45] * target).sum()
    loss.backward()
    for name in ("edge_logits", "transition_logits", "attention_logits"):
        g = getattr(cell, name).grad
        assert g is not None, name
        assert torch.isfinite(g).all() and g.abs().sum() > 1e-6, name
    # exact structure: (4,5) depends on the outer edges into nodes 2, 3, 4 but not on (0,5), (1,5)
    g = cell.edge_logits.grad
    for slot, e in enumerate(cell.indep_edges):
        dst = space.edges[e][1]
        if dst == 5:
            assert torch.all(g[slot] == 0), space.edges[e]
        else:
            assert g[slot].abs().sum() > 0, space.edges[e]
    # transition / attention of pairs into (2,5) and (3,5) do not influence (4,5)
    unused = {space.edge_index(2, 5), space.edge_index(3, 5)}
    for k, (_p, e) in enumerate(cell.pairs):
        if e in unused:
            assert torch.all(cell.transition_logits.grad[k] == 0)
            assert cell.attention_logits.grad[k] == 0
        else:
            assert cell.transition_logits.grad[k].abs().sum() > 0
            assert cell.attention_logits.grad[k] != 0
    # the reduction cell is a separate parameter set
    red = arch.cells["reduce"]
    assert red.edge_logits.grad is None and red.transition_logits.grad is None


def test_itnas_noattn_has_no_attention_but_learns_transitions():
    space = create_space("darts")
    arch = Architecture(space, "itnas_noattn", base="darts")
    _randomise(arch, 1.0, seed=6)
    cell = arch.cells["normal"]
    assert cell.attention_logits is None
    assert isinstance(cell.transition_logits, torch.nn.Parameter)
    assert any(p is cell.transition_logits for p in arch.parameters())
    # uniform attention over P(e)
    for e in cell.inner_edges:
        n = len(space.predecessors[e])
        torch.testing.assert_close(cell.attention(e), torch.full((n,), 1.0 / n))
    e45 = space.edge_index(4, 5)
    (arch().alphas["normal"][e45] * torch.arange(8.0)).sum().backward()
    assert cell.transition_logits.grad is not None and cell.transition_logits.grad.abs().sum() > 0
    assert cell.edge_logits.grad.abs().sum() > 0


def test_itnas_notrans_inner_alpha_is_attention_weighted_mix_of_predecessors():
    space = create_space("darts")
    arch = Architecture(space, "itnas_notrans", base="darts")
    _randomise(arch, 1.0, seed=7)
    cell = arch.cells["normal"]
    assert cell.transition_logits is None
    assert isinstance(cell.attention_logits, torch.nn.Parameter)
    torch.testing.assert_close(cell.transitions(), torch.eye(8).expand(len(cell.pairs), 8, 8))
    alpha = cell()
    for e in cell.inner_edges:
        preds = space.predecessors[e]
        start, stop = cell.pair_slices[e]
        w = torch.softmax(cell.attention_logits[start:stop], 0)
        want = sum(w[i] * alpha[p] for i, p in enumerate(preds))
        torch.testing.assert_close(alpha[e], want, rtol=0, atol=1e-6)
    # the fixed transition is not a parameter; attention gets gradients
    assert all(p.dim() != 3 for p in arch.parameters())
    e45 = space.edge_index(4, 5)
    (cell()[e45] * torch.arange(8.0)).sum().backward()
    assert cell.attention_logits.grad.abs().sum() > 0


def test_itnas_notrans_s1_maps_missing_op_uniformly():
    """S1 normal edge (2,3) has ops [skip, dil3]; its predecessors (0,2) [skip, dil3], (1,2) [skip, dil5].
    Fixed transition: skip->skip, dil3->dil3, and dil5 (absent on (2,3)) -> uniform [1/2, 1/2]."""
    space = create_space("s1")
    arch = Architecture(space, "itnas_notrans", base="darts")
    _randomise(arch, 1.0, seed=8)
    cell = arch.cells["normal"]
    e23, e02, e12 = space.edge_index(2, 3), space.edge_index(0, 2), space.edge_index(1, 2)
    assert space.ops["normal"][e23] == ("skip_connect", "dil_conv_3x3")
    assert space.ops["normal"][e02] == ("skip_connect", "dil_conv_3x3")
    assert space.ops["normal"][e12] == ("skip_connect", "dil_conv_5x5")
    alpha = cell().detach()
    start, stop = cell.pair_slices[e23]
    w = torch.softmax(cell.attention_logits[start:stop].detach(), 0)
    a0, a1 = alpha[e02], alpha[e12]
    want = w[0] * a0 + w[1] * torch.stack([a1[0] + 0.5 * a1[1], 0.5 * a1[1]])
    torch.testing.assert_close(alpha[e23], want, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- (d) init
@pytest.mark.parametrize("space_name", SPACES)
@pytest.mark.parametrize("method", ["itnas", "itnas_noattn"])
def test_uniform_transition_init_gives_uniform_rows(method, space_name):
    space = create_space(space_name)
    arch = Architecture(space, method, transition_init="uniform")
    K = space.n_ops
    for cell in arch.cells.values():
        assert torch.all(cell.transition_logits == 0)
        T = cell.transitions()
        assert T.shape == (len(cell.pairs), K, K)
        torch.testing.assert_close(T, torch.full_like(T, 1.0 / K), rtol=0, atol=1e-7)
        if cell.attention_logits is not None:
            assert torch.all(cell.attention_logits == 0)
        # zero Theta: every inner edge is exactly uniform whatever its predecessors
        alpha = cell()
        for e in cell.inner_edges:
            torch.testing.assert_close(alpha[e], torch.full((K,), 1.0 / K), rtol=0, atol=1e-6)


@pytest.mark.parametrize("gamma", [1.0, 2.5])
def test_identity_transition_init_puts_gamma_on_diagonal(gamma):
    space = create_space("darts")
    arch = Architecture(space, "itnas", transition_init="identity", transition_gamma=gamma)
    K = space.n_ops
    for cell in arch.cells.values():
        theta = cell.transition_logits.detach()
        assert theta.shape == (16, K, K)
        torch.testing.assert_close(theta, gamma * torch.eye(K).expand(16, K, K), rtol=0, atol=0)
        T = cell.transitions().detach()
        diag = math.exp(gamma) / (math.exp(gamma) + K - 1)
        off = 1.0 / (math.exp(gamma) + K - 1)
        torch.testing.assert_close(torch.diagonal(T, dim1=1, dim2=2), torch.full((16, K), diag))
        torch.testing.assert_close(T.sum(-1), torch.ones(16, K))
        mask = ~torch.eye(K, dtype=torch.bool).expand(16, K, K)
        torch.testing.assert_close(T[mask], torch.full((16 * K * (K - 1),), off))


def test_identity_transition_init_s1_matches_op_names():
    """In S1, op order differs between edges: gamma sits where the op names match, not on the index diagonal."""
    space = create_space("s1")
    arch = Architecture(space, "itnas", transition_init="identity", transition_gamma=3.0)
    ops = space.ops["normal"]
    cell = arch.cells["normal"]
    for k, (p, e) in enumerate(cell.pairs):
        want = torch.tensor([[3.0 if a == b else 0.0 for b in ops[e]] for a in ops[p]])
        assert torch.equal(cell.transition_logits[k].detach(), want)
    # a concrete mismatch: (1,2) [skip, dil5] -> (2,3) [skip, dil3]: only skip->skip gets gamma
    k = cell.pairs.index((space.edge_index(1, 2), space.edge_index(2, 3)))
    assert torch.equal(cell.transition_logits[k].detach(), torch.tensor([[3.0, 0.0], [0.0, 0.0]]))


# S1 (docs/method.md 3): pairs (p -> e) whose op sets differ, written out by hand with the op sets of p and e. Rows are
# the ops of p, columns the ops of e, in each edge's own order. "Identity" matches ops by name (docs/method.md 2.3):
# a row whose op is absent from e has no match.
S1_PAIRS = [
    # cell, p, e, ops of p, ops of e, matched (row, col) pairs
    ("normal", (1, 2), (2, 3), ("skip_connect", "dil_conv_5x5"), ("skip_connect", "dil_conv_3x3"), [(0, 0)]),
    ("normal", (2, 3), (3, 5), ("skip_connect", "dil_conv_3x3"), ("dil_conv_3x3", "dil_conv_5x5"), [(1, 0)]),
    ("normal", (0, 3), (3, 5), ("skip_connect", "dil_conv_5x5"), ("dil_conv_3x3", "dil_conv_5x5"), [(1, 1)]),
    ("normal", (3, 4), (4, 5), ("skip_connect", "dil_conv_3x3"), ("dil_conv_3x3", "dil_conv_5x5"), [(1, 0)]),
    ("normal", (0, 4), (4, 5), ("max_pool_3x3", "skip_connect"), ("dil_conv_3x3", "dil_conv_5x5"), []),
    ("reduce", (1, 2), (2, 4), ("max_pool_3x3", "dil_conv_3x3"), ("skip_connect", "dil_conv_3x3"), [(1, 1)]),
    ("reduce", (0, 2), (2, 3), ("max_pool_3x3", "avg_pool_3x3"), ("skip_connect", "dil_conv_5x5"), []),
    ("reduce", (2, 4), (4, 5), ("skip_connect", "dil_conv_3x3"), ("skip_connect", "dil_conv_5x5"), [(0, 0)]),
    # same op set, for contrast: the plain diagonal
    ("normal", (0, 2), (2, 3), ("skip_connect", "dil_conv_3x3"), ("skip_connect", "dil_conv_3x3"), [(0, 0), (1, 1)]),
]
HI, LO = math.exp(2.0) / (math.exp(2.0) + 1), 1 / (math.exp(2.0) + 1)  # softmax([2, 0]) = [.8808, .1192]

# expected matrices, entry by entry, written out per pair (same order as S1_PAIRS)
S1_THETA_GAMMA2 = [
    [[2, 0], [0, 0]], [[0, 0], [2, 0]], [[0, 0], [0, 2]], [[0, 0], [2, 0]], [[0, 0], [0, 0]],
    [[0, 0], [0, 2]], [[0, 0], [0, 0]], [[2, 0], [0, 0]], [[2, 0], [0, 2]],
]
S1_T_IDENTITY_INIT = [
    [[HI, LO], [0.5, 0.5]], [[0.5, 0.5], [HI, LO]], [[0.5, 0.5], [LO, HI]], [[0.5, 0.5], [HI, LO]],
    [[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.5], [LO, HI]], [[0.5, 0.5], [0.5, 0.5]], [[HI, LO], [0.5, 0.5]],
    [[HI, LO], [LO, HI]],
]
S1_T_NOTRANS = [
    [[1, 0], [0.5, 0.5]], [[0.5, 0.5], [1, 0]], [[0.5, 0.5], [0, 1]], [[0.5, 0.5], [1, 0]],
    [[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.5], [0, 1]], [[0.5, 0.5], [0.5, 0.5]], [[1, 0], [0.5, 0.5]],
    [[1, 0], [0, 1]],
]


def _s1_pair(cell, space, p, e):
    return cell.pairs.index((space.edge_index(*p), space.edge_index(*e)))


def test_s1_pairs_table_matches_the_space():
    """The hand-written op sets and matches above are those of `create_space("s1")` (docs/method.md 3)."""
    space = create_space("s1")
    for cell_type, p, e, ops_p, ops_e, matches in S1_PAIRS:
        assert space.ops[cell_type][space.edge_index(*p)] == ops_p
        assert space.ops[cell_type][space.edge_index(*e)] == ops_e
        assert space.edge_index(*p) in space.predecessors[space.edge_index(*e)]
        assert matches == [(r, c) for r, a in enumerate(ops_p) for c, b in enumerate(ops_e) if a == b]


@pytest.mark.parametrize("method", ["itnas", "itnas_noattn"])
@pytest.mark.parametrize("k", range(len(S1_PAIRS)), ids=[f"{c}{p}->{e}" for c, p, e, *_ in S1_PAIRS])
def test_s1_identity_init_matches_ops_by_name_entry_by_entry(method, k):
    """transition_init identity, gamma 2: Theta = 2 where op names match, else 0; an unmatched row stays
    Theta = 0, i.e. the uniform row [1/2, 1/2] after the row softmax."""
    space = create_space("s1")
    arch = Architecture(space, method, transition_init="identity", transition_gamma=2.0)
    cell_type, p, e, *_ = S1_PAIRS[k]
    cell = arch.cells[cell_type]
    i = _s1_pair(cell, space, p, e)
    theta = cell.transition_logits.detach()[i]
    T = cell.transitions().detach()[i]
    for r in range(2):
        for c in range(2):
            assert theta[r, c].item() == S1_THETA_GAMMA2[k][r][c], (r, c)
            assert abs(T[r, c].item() - S1_T_IDENTITY_INIT[k][r][c]) < 1e-7, (r, c)


@pytest.mark.parametrize("k", range(len(S1_PAIRS)), ids=[f"{c}{p}->{e}" for c, p, e, *_ in S1_PAIRS])
def test_s1_notrans_fixed_transition_entry_by_entry(k):
    """itnas_notrans: op o on p -> the same-named op on e (one-hot row); an op absent from e -> uniform row.
    transition_init and gamma do not touch the fixed matrix."""
    space = create_space("s1")
    for init in ("uniform", "identity"):
        arch = Architecture(space, "itnas_notrans", transition_init=init, transition_gamma=2.0)
        cell_type, p, e, *_ = S1_PAIRS[k]
        cell = arch.cells[cell_type]
        T = cell.transitions()[_s1_pair(cell, space, p, e)]
        for r in range(2):
            for c in range(2):
                assert T[r, c].item() == S1_T_NOTRANS[k][r][c], (init, r, c)


def test_s1_transitions_by_name_carry_alpha_of_the_matching_op():
    """One inner edge end to end, itnas_notrans, normal (3,5) [dil3, dil5], P = (0,3) [skip, dil5],
    (1,3) [skip, sep3], (2,3) [skip, dil3]: alpha(3,5) = w0 [a03.skip/2, a03.skip/2 + a03.dil5]
    + w1 [1/2, 1/2] + w2 [a23.skip/2 + a23.dil3, a23.skip/2] (dil3 of (2,3) is column 0, not 1)."""
    space = create_space("s1")
    arch = Architecture(space, "itnas_notrans", base="darts")
    _randomise(arch, 1.0, seed=12)
    cell = arch.cells["normal"]
    with torch.no_grad():
        alpha = cell()
        e35 = space.edge_index(3, 5)
        start, stop = cell.pair_slices[e35]
        w = torch.softmax(cell.attention_logits[start:stop], 0)
    a03, a23 = alpha[space.edge_index(0, 3)], alpha[space.edge_index(2, 3)]
    want = (w[0] * torch.stack([a03[0] / 2, a03[0] / 2 + a03[1]]) + w[1] * torch.tensor([0.5, 0.5])
            + w[2] * torch.stack([a23[0] / 2 + a23[1], a23[0] / 2]))
    torch.testing.assert_close(alpha[e35], want, rtol=0, atol=1e-6)


def test_bad_transition_init_raises():
    with pytest.raises(ValueError, match="transition_init"):
        Architecture(create_space("darts"), "itnas", transition_init="eye")


def test_alpha_init_scale():
    torch.manual_seed(0)
    arch = Architecture(create_space("darts"), "darts", base="darts", alpha_init_scale=1e-3)
    for cell in arch.cells.values():
        a = cell.edge_logits.detach()
        assert a.abs().max() < 1e-2 and a.std() > 1e-4
    arch0 = Architecture(create_space("darts"), "darts", base="darts", alpha_init_scale=0.0)
    for cell in arch0.cells.values():
        assert torch.all(cell.edge_logits == 0)


# ---------------------------------------------------------------------------------------------------- (e) registry
def test_unknown_method_raises_keyerror_listing_methods():
    with pytest.raises(KeyError) as exc:
        Architecture(create_space("darts"), "enas")
    msg = str(exc.value)
    assert "enas" in msg
    for m in METHODS:
        assert m in msg
    with pytest.raises(KeyError) as exc:
        create_architecture(create_space("darts"), "nope")
    assert all(m in str(exc.value) for m in METHODS)
    with pytest.raises(KeyError):
        get_method("ITNAS")


def test_unknown_base_raises_valueerror():
    with pytest.raises(ValueError) as exc:
        Architecture(create_space("darts"), "itnas", base="enas")
    assert "enas" in str(exc.value) and "darts" in str(exc.value) and "pcdarts" in str(exc.value)


def test_method_table():
    assert set(METHODS) == {"itnas", "itnas_noattn", "itnas_notrans", "darts", "pcdarts", "gdas", "drnas"}
    for m in ("darts", "gdas", "drnas"):
        assert get_method(m).default_base == "darts"
    assert {m: get_method(m).sampler for m in METHODS if get_method(m).sampler} == {"gdas": "gumbel",
                                                                                     "drnas": "dirichlet"}
    assert all(get_method(m).inner == "independent" for m in ("gdas", "drnas"))  # baselines: no transitions
    for m in ("itnas", "itnas_noattn", "itnas_notrans", "pcdarts"):
        assert get_method(m).default_base == "pcdarts"


# ---------------------------------------------------------------------------------------------------- (f) counts
def _n(arch):
    return sum(p.numel() for p in arch.parameters())


def test_darts_arch_parameter_count():
    space = create_space("darts")
    arch = Architecture(space, "darts", base="darts")
    assert _n(arch) == 224 == 2 * 14 * 8
    assert arch.beta_logits is None
    arch_pc = Architecture(space, "darts", base="pcdarts")
    assert _n(arch_pc) == 224 + 28
    assert sorted(p.numel() for p in arch_pc.beta_logits.values()) == [14, 14]
    assert _n(Architecture(space, "pcdarts")) == 252


def test_itnas_arch_parameter_count():
    # per cell: 8 outer edges x 8 logits, 16 (pred, inner) pairs x (8x8 Theta + 1 attention logit)
    space = create_space("darts")
    assert _n(Architecture(space, "itnas", base="darts")) == 2 * (8 * 8 + 16 * 64 + 16)
    assert _n(Architecture(space, "itnas_noattn", base="darts")) == 2 * (8 * 8 + 16 * 64)
    assert _n(Architecture(space, "itnas_notrans", base="darts")) == 2 * (8 * 8 + 16)
    assert _n(Architecture(space, "itnas")) == 2 * (8 * 8 + 16 * 64 + 16) + 28
    # NB201: one cell type, 3 outer edges x 5, pairs (0,1)->(1,2), (0,1)->(1,3), (0,2)->(2,3), (1,2)->(2,3)
    nb = create_space("nb201")
    assert _n(Architecture(nb, "itnas", base="darts")) == 3 * 5 + 4 * 25 + 4
    assert _n(Architecture(nb, "darts", base="darts")) == 6 * 5


@pytest.mark.parametrize("space_name", SPACES)
def test_pcdarts_edge_weights_sum_to_one_per_node(space_name):
    space = create_space(space_name)
    arch = Architecture(space, "pcdarts")
    _randomise(arch, 3.0, seed=9)
    for t in space.cell_types:
        w = arch.edge_weights(t).detach()
        beta = arch.beta_logits[t].detach()
        for edges in space.incoming.values():
            idx = list(edges)
            assert abs(float(w[idx].sum()) - 1.0) < 1e-6
            torch.testing.assert_close(w[idx].detach(), torch.softmax(beta[idx], 0))
