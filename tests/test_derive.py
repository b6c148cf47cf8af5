"""Genotype derivation (itnas/derive.py) against docs/method.md 2.6: `marginal` and `sequential` modes."""

from __future__ import annotations

import math

import pytest
import torch

from itnas.arch import Architecture
from itnas.derive import derive_from_alphas, derive_genotype
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


# ------------------------------------------------------------------------- ties up to an ulp (1e-9 relative)
def _ulp(a: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """`a` with every entry moved `steps` (-1, 0 or +1) ulps."""
    up, down = torch.nextafter(a, torch.full_like(a, 2.0)), torch.nextafter(a, torch.zeros_like(a))
    return torch.where(steps > 0, up, torch.where(steps < 0, down, a))


def _ulp_pattern(name: str, E: int, K: int) -> torch.Tensor:
    """(E, K) steps of -1/0/+1. The adversarial ones favour what the tie rule must not choose."""
    e = torch.arange(E).unsqueeze(1).expand(E, K)
    k = torch.arange(K).unsqueeze(0).expand(E, K)
    if name == "later_ops_up":  # the last op an ulp up, every other op an ulp down
        return (k == K - 1).long() * 2 - 1
    if name == "later_edges_up":  # later edges of a node an ulp above the earlier ones
        return (e % 2 == 0).long() * 2 - 1
    if name == "both":
        return ((k >= K // 2) | (e % 3 == 2)).long() * 2 - 1
    seed = int(name.removeprefix("random"))
    return torch.randint(-1, 2, (E, K), generator=torch.Generator().manual_seed(seed))


ULP_PATTERNS = ["later_ops_up", "later_edges_up", "both", "random0", "random1", "random2"]


@pytest.mark.parametrize("pattern", ULP_PATTERNS)
@pytest.mark.parametrize("space_name", ["darts", "s1", "s3", "s4"])
@pytest.mark.parametrize("weighted", [False, True])
def test_ulp_perturbed_uniform_alphas_derive_like_exact_uniform(space_name, pattern, weighted):
    """Uniform alphas (and uniform edge weights within a node) perturbed by an ulp derive the tie-rule genotype:
    on every node the two lowest edges, on every edge its lowest non-none op (docs/method.md 2.6)."""
    space = create_space(space_name)
    E, K = space.n_edges, space.n_ops
    exact = torch.full((E, K), 1.0 / K, dtype=torch.float64)
    weights = None
    if weighted:
        w = torch.zeros(E, dtype=torch.float64)
        for edges in space.incoming.values():
            w[list(edges)] = 1.0 / len(edges)  # 1/2, 1/3, 1/4, 1/5
        weights = {t: w for t in space.cell_types}
    want = derive_from_alphas(space, {t: exact for t in space.cell_types}, weights)
    for t in space.cell_types:
        first = 1 if space.ops[t][0][0] == "none" else 0
        assert getattr(want, t) == tuple((space.ops[t][e][first], *space.edges[e])
                                         for e in range(E) if space.edges[e][0] in (0, 1))
    steps = _ulp_pattern(pattern, E, K)
    noisy = _ulp(exact, steps)
    assert (noisy != exact).any() and ((noisy - exact).abs() <= torch.finfo(torch.float64).eps * exact).all()
    noisy_w = None if weights is None else {t: _ulp(w, _ulp_pattern(pattern, E, 1)[:, 0]) for t, w in weights.items()}
    assert derive_from_alphas(space, {"normal": noisy, "reduce": noisy.flip(0)}, noisy_w) == want


@pytest.mark.parametrize("pattern", ULP_PATTERNS)
def test_ulp_perturbed_uniform_nb201_keeps_none(pattern):
    """NB201: tied ops keep index 0 (`none`) however the ulps fall; (0,3) skip_connect keeps the output alive."""
    space = create_space("nb201")
    a = _ulp(torch.full((6, 5), 0.2, dtype=torch.float64), _ulp_pattern(pattern, 6, 5))
    a[space.edge_index(0, 3)] = torch.tensor([0.1, 0.3, 0.2, 0.2, 0.2])
    g = derive_from_alphas(space, {"normal": a})
    assert g.to_nb201_string() == "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"


@pytest.mark.parametrize("delta", [1e-6, 1e-7])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_real_difference_still_decides(delta, dtype):
    """Uniform alphas; (2,3) gets +delta on dil_conv_5x5, (3,5) on avg_pool_3x3 and (4,5) on sep_conv_5x5, each
    taken from `none`: those edges and ops are kept, the rest follows the tie rule."""
    space = create_space("darts")
    a = torch.full((14, 8), 1 / 8, dtype=torch.float64)
    for edge, op in [((2, 3), DIL5), ((3, 5), AVG), ((4, 5), SEP5)]:
        a[space.edge_index(*edge), op] += delta
        a[space.edge_index(*edge), NONE] -= delta
    a = a.to(dtype)
    g = derive_from_alphas(space, {"normal": a, "reduce": a})
    assert g.normal == g.reduce == (
        ("max_pool_3x3", 0, 2), ("max_pool_3x3", 1, 2),
        ("max_pool_3x3", 0, 3), ("dil_conv_5x5", 2, 3),
        ("max_pool_3x3", 0, 4), ("max_pool_3x3", 1, 4),
        ("avg_pool_3x3", 3, 5), ("sep_conv_5x5", 4, 5),
    )
    # within one edge, +delta on a later op beats the lower op index
    b = torch.full((6, 5), 0.2, dtype=torch.float64)
    b[:, 4] += delta
    b[:, 0] -= delta
    g = derive_from_alphas(create_space("nb201"), {"normal": b.to(dtype)})
    assert all(op == "avg_pool_3x3" for op, _, _ in g.normal)


@pytest.mark.parametrize("mode", ["marginal", "sequential"])
@pytest.mark.parametrize("method", ["itnas", "itnas_noattn"])
def test_itnas_uniform_transitions_tie_in_both_modes(method, mode):
    """Theta = 0: every inner alpha (and every q_e) is exactly 1/8 in exact arithmetic, ulps apart in float32.
    All outer edges get the same logits with `none` far ahead, so their best non-none alpha is below 1/8:
    inner edges beat outer ones, and among themselves the tie rule decides (lower edge, then max_pool_3x3)."""
    space = create_space("darts")
    arch = Architecture(space, method, base="darts", transition_init="uniform")
    row = torch.tensor([3.0, 0.1, -0.2, 0.4, 0.3, -0.1, 0.2, 0.0])  # best non-none: skip_connect
    with torch.no_grad():
        for cell in arch.cells.values():
            cell.edge_logits.copy_(row.expand_as(cell.edge_logits))
            if cell.attention_logits is not None:
                cell.attention_logits.copy_(torch.randn(cell.attention_logits.shape,
                                                        generator=torch.Generator().manual_seed(0)))
        alpha = arch().alphas["normal"]
    inner = alpha[arch.cells["normal"].inner_edges]
    if method == "itnas":  # float32 alphas differ by ulps (attention 1/3 and the like): their raw order is noise
        assert inner.unique().numel() > 1
    torch.testing.assert_close(inner, torch.full_like(inner, 1 / 8))
    assert float(torch.softmax(row, 0)[1:].max()) < 1 / 8
    want = (("skip_connect", 0, 2), ("skip_connect", 1, 2),
            ("skip_connect", 0, 3), ("max_pool_3x3", 2, 3),
            ("max_pool_3x3", 2, 4), ("max_pool_3x3", 3, 4),
            ("max_pool_3x3", 2, 5), ("max_pool_3x3", 3, 5))
    g = derive_genotype(arch, mode)
    assert g.normal == want and g.reduce == want
    assert arch.cells["normal"].edge_logits.dtype == torch.float32  # derive works on a float64 copy


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
    # an all-tied NB201 edge keeps op index 0 (none); here every edge but (0,3), whose skip_connect feeds the output
    tied = torch.full((6, 5), 0.2)
    tied[space.edge_index(0, 3)] = torch.tensor([0.1, 0.3, 0.2, 0.2, 0.2])
    g = derive_from_alphas(space, {"normal": tied})
    assert g.to_nb201_string() == "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
    # all tied: `none` everywhere, the cell output is constant zero: a legal NB201 table entry, reported as dead
    g = derive_from_alphas(space, {"normal": torch.full((6, 5), 0.2)})
    assert g.to_nb201_string() == "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|" and g.dead_outputs() == [3]


def test_wrong_alpha_shape_raises():
    space = create_space("darts")
    with pytest.raises(ValueError, match="alphas"):
        derive_from_alphas(space, {"normal": torch.rand(14, 7), "reduce": torch.rand(14, 8)})


# ---------------------------------------------------------------------------------------------------- modes
@pytest.mark.parametrize("space_name", list_spaces())
@pytest.mark.parametrize("method", ["darts", "pcdarts"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_independent_methods_marginal_equals_sequential(method, space_name, seed):
    """darts/pcdarts: inner edges have their own softmax, so q_e = alpha_e and both modes agree (docs/method.md 2.6)."""
    torch.manual_seed(seed)
    arch = Architecture(create_space(space_name), method)
    with torch.no_grad():
        for p in arch.parameters():
            p.copy_(2.0 * torch.randn_like(p))
    if space_name == "nb201":  # keep the output alive: (0,3) favours skip_connect
        with torch.no_grad():
            arch.cells["normal"].edge_logits[arch.space.edge_index(0, 3), 1] = 10.0
    m = derive_genotype(arch, "marginal")
    s = derive_genotype(arch, "sequential")
    assert m == s
    state = arch()
    assert m == derive_from_alphas(arch.space, state.alphas, state.edge_weights)
    # the cells are not trivial: some inner edge is kept
    assert any(src >= arch.space.n_inputs for _, src, _ in m.normal + m.reduce)


@pytest.mark.parametrize("space_name", list_spaces())
@pytest.mark.parametrize("method", ["itnas", "itnas_noattn"])
def test_transition_rows_independent_of_source_op_make_both_modes_agree(method, space_name):
    """If every T_{p->e} has the same row r_e for every p and every source op, then alpha_e = r_e and
    q_e = r_e whatever the attention and the kept predecessors: marginal = sequential = the DARTS rule on
    (outer softmax, r_e). r_e and the outer logits are random; the expected genotype comes from
    `derive_from_alphas` on alphas built here, not from the architecture's forward."""
    space = create_space(space_name)
    arch = Architecture(space, method, base="darts")
    g = torch.Generator().manual_seed(4)
    K = space.n_ops
    want_alphas = {}
    with torch.no_grad():
        for t, cell in arch.cells.items():
            cell.edge_logits.copy_(2.0 * torch.randn(cell.edge_logits.shape, generator=g))
            if space_name == "nb201":
                cell.edge_logits[cell.indep_edges.index(space.edge_index(0, 3)), 1] = 10.0  # keep the output alive
            if cell.attention_logits is not None:
                cell.attention_logits.copy_(3.0 * torch.randn(cell.attention_logits.shape, generator=g))
            a = torch.zeros(space.n_edges, K, dtype=torch.float64)
            for slot, e in enumerate(cell.indep_edges):
                a[e] = torch.softmax(cell.edge_logits[slot].double(), 0)
            for e in cell.inner_edges:
                r = 2.0 * torch.randn(K, generator=g)
                start, stop = cell.pair_slices[e]
                cell.transition_logits[start:stop] = r.expand(stop - start, K, K)
                a[e] = torch.softmax(r.double(), 0)
            want_alphas[t] = a
        # the architecture computes in float32: float32 tolerances (a float64 rtol of 1e-7 is 1-2 float32 ulps,
        # which vectorised float32 sums round differently on different CPUs)
        torch.testing.assert_close(arch().alphas["normal"].double(), want_alphas["normal"], rtol=1.3e-6, atol=1e-6)
    want = derive_from_alphas(space, want_alphas)
    assert derive_genotype(arch, "marginal") == want
    assert derive_genotype(arch, "sequential") == want
    if space_name == "darts":  # the inner edges matter: some are kept
        assert any(src >= 2 for _, src, _ in want.normal + want.reduce)


# DARTS cell for itnas / itnas_noattn: outer alphas DARTS_OUTER (below), and on every inner edge e the same
# transition row r_e from every predecessor and every source op, so that alpha_e = q_e = r_e:
AGREE_INNER = {
    (2, 3): (DIL5, 0.60), (2, 4): (SEP5, 0.75), (3, 4): (SEP3, 0.90),
    (2, 5): (AVG, 0.50), (3, 5): (DIL3, 0.65), (4, 5): (SKIP, 0.58),
}
AGREE_EXPECTED = (
    ("sep_conv_3x3", 0, 2), ("skip_connect", 1, 2),  # node 2: its two outer edges
    ("max_pool_3x3", 0, 3), ("dil_conv_5x5", 2, 3),  # node 3: max .50, dil5 .60 beat avg .45
    ("dil_conv_3x3", 0, 4), ("sep_conv_3x3", 3, 4),  # node 4: sep3 .90, dil3 .80 beat sep5 .75, skip .70
    ("max_pool_3x3", 0, 5), ("dil_conv_3x3", 3, 5),  # node 5: dil3 .65, max .60 beat skip .58, avg .55, avg .50
)


@pytest.mark.parametrize("method", ["itnas", "itnas_noattn"])
def test_itnas_darts_marginal_and_sequential_provably_agree(method):
    """Hand-set DARTS cell (normal = reduce): alpha_e = q_e = r_e on every inner edge (rows of r_e: `_row`,
    `none` .05), so both modes keep the same edges and ops, inner edges included. The attention (random for
    itnas) cannot change that."""
    space = create_space("darts")
    arch = Architecture(space, method, base="darts")
    with torch.no_grad():
        for cell in arch.cells.values():
            for e, row in DARTS_OUTER.items():
                _set_outer(cell, space, e, row)
            for e, (op, value) in AGREE_INNER.items():
                for p in space.predecessors[space.edge_index(*e)]:
                    _set_pair(cell, space, space.edges[p], e, _row(op, value, none=0.05))
            if cell.attention_logits is not None:
                cell.attention_logits.copy_(torch.randn(cell.attention_logits.shape,
                                                        generator=torch.Generator().manual_seed(1)))
        alpha = arch.cells["normal"]()
    for e, (op, value) in AGREE_INNER.items():
        torch.testing.assert_close(alpha[space.edge_index(*e)], torch.tensor(_row(op, value, none=0.05)))
    for mode in ("marginal", "sequential"):
        g = derive_genotype(arch, mode)
        assert g.normal == AGREE_EXPECTED and g.reduce == AGREE_EXPECTED, mode


# itnas_notrans, DARTS cell: T is the fixed identity, so alpha_e = sum_p w_e[p] alpha_p (marginal) while
# q_e = sum_{p kept} w~_e[p] onehot(o*_p) (sequential). Outer alphas:
NOTRANS_OUTER = {
    (0, 2): _row(SEP3, 0.40, none=0.6 / 7),  # sep3 .40, every other op 0.6/7 = .0857
    (1, 2): _row(SKIP, 0.60, none=0.4 / 7),  # skip .60, every other op .0571
    (0, 3): _row(MAX, 0.45, none=0.05),
    (1, 3): _row(AVG, 0.42, none=0.05),
    (0, 4): _row(DIL3, 0.90, none=0.02),
    (1, 4): _row(SEP5, 0.85, none=0.05),
    (0, 5): _row(AVG, 0.80, none=0.05),
    (1, 5): _row(MAX, 0.75, none=0.05),
}
NOTRANS_MARGINAL = (
    ("sep_conv_3x3", 0, 2), ("skip_connect", 1, 2),
    ("max_pool_3x3", 0, 3), ("avg_pool_3x3", 1, 3),
    ("dil_conv_3x3", 0, 4), ("sep_conv_5x5", 1, 4),
    ("avg_pool_3x3", 0, 5), ("max_pool_3x3", 1, 5),
)
NOTRANS_SEQUENTIAL = NOTRANS_MARGINAL[:3] + (("skip_connect", 2, 3),) + NOTRANS_MARGINAL[4:]


@pytest.mark.parametrize("base", ["darts", "pcdarts"])
def test_itnas_notrans_darts_marginal_and_sequential_differ(base):
    """Attention uniform (b = 0; betas 0 on the pcdarts base).
    Node 3, (2,3) with P = {(0,2), (1,2)}: marginal alpha(2,3) = (alpha(0,2) + alpha(1,2)) / 2: skip
    .0857/2 + .30 = .3429, sep3 .20 + .0571/2 = .2286: below (0,3) max .45 and (1,3) avg .42, so (0,3), (1,3) are
    kept. Sequential, o* = sep3 on (0,2) and skip on (1,2): q(2,3) = .5 onehot(sep3) + .5 onehot(skip), a tie at
    .5 that the lower op index breaks: skip_connect; .5 > .45 > .42: keep (0,3) max and (2,3) skip.
    Nodes 4, 5: outer edges at .90/.85 and .80/.75 beat every inner alpha and q (at most .5) in both modes."""
    space = create_space("darts")
    arch = Architecture(space, "itnas_notrans", base=base)
    for row in NOTRANS_OUTER.values():
        assert abs(sum(row) - 1) < 1e-12
    with torch.no_grad():
        _reset_outer(arch, space, NOTRANS_OUTER)
        cell = arch.cells["normal"]
        alpha = cell()
        e = space.edge_index
        torch.testing.assert_close(alpha[e(2, 3)], (alpha[e(0, 2)] + alpha[e(1, 2)]) / 2)
        assert abs(float(alpha[e(2, 3), SKIP]) - (0.6 / 14 + 0.3)) < 1e-6
        q = cell.conditional(e(2, 3), {e(0, 2): SEP3, e(1, 2): SKIP})
        torch.testing.assert_close(q, torch.tensor([0, 0, 0, 0.5, 0.5, 0, 0, 0]))
    marginal = derive_genotype(arch, "marginal")
    sequential = derive_genotype(arch, "sequential")
    assert marginal.normal == NOTRANS_MARGINAL and marginal.reduce == NOTRANS_MARGINAL
    assert sequential.normal == NOTRANS_SEQUENTIAL and sequential.reduce == NOTRANS_SEQUENTIAL


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


def _reset_outer(arch, space, outer_rows):
    """Uniform edge weights (beta = 0) and attention (b = 0); the outer edges' alphas set to `outer_rows`."""
    if arch.beta_logits is not None:
        for beta in arch.beta_logits.values():
            beta.zero_()
    for cell in arch.cells.values():
        cell.attention_logits.zero_()
        for e, row in outer_rows.items():
            _set_outer(cell, space, e, row)


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
        _reset_outer(arch, space, DARTS_OUTER)
        for cell in arch.cells.values():
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


# ------------------------------------------------------------------------------------------- margins
@pytest.mark.parametrize("space_name", ["darts", "s1", "nb201"])
@pytest.mark.parametrize("mode", ["marginal", "sequential"])
def test_margins_cover_exactly_the_choices_of_the_genotype(space_name, mode):
    """One op decision per kept edge (its op against the runner-up op on that edge), one edge decision per node
    with more incoming edges than it keeps; no decision about a dropped edge's op."""
    from itnas.derive import derive_with_margins

    space = create_space(space_name)
    torch.manual_seed(3)
    arch = Architecture(space, "itnas", "darts", alpha_init_scale=1.0)
    genotype, decisions = derive_with_margins(arch, mode)
    assert genotype == derive_genotype(arch, mode)
    for t in space.cell_types:
        kept = {f"{s}->{d}": op for op, s, d in getattr(genotype, t)}
        ops = [d for d in decisions if d.cell_type == t and d.kind == "op"]
        assert sorted(d.edge for d in ops) == sorted(kept) and all(d.chosen == kept[d.edge] for d in ops)
        edges = [d for d in decisions if d.cell_type == t and d.kind == "edge"]
        want = [j for j in space.intermediate_nodes
                if space.edges_per_node is not None and len(space.incoming[j]) > space.edges_per_node]
        assert [d.node for d in edges] == want
        assert all(d.margin >= 0 for d in ops + edges)


def test_margin_values_on_hand_set_alphas():
    """darts: on every edge op 4 (sep_conv_3x3) gets 0.5, op 5 gets 0.3, the rest share 0.2; the first two
    incoming edges of each node get +0.1 on op 4. Kept-op margins are 0.2 (0.3 on boosted edges) and each node's
    edge margin is 0.1 (the boosted edges are kept, the others dropped)."""
    from itnas.derive import _marginal

    space = create_space("darts")
    a = torch.full((space.n_edges, space.n_ops), 0.2 / 6, dtype=torch.float64)
    a[:, 4], a[:, 5] = 0.5, 0.3
    for j in space.intermediate_nodes:
        for e in space.incoming[j][:2]:
            a[e, 4] += 0.1
    decisions = []
    g = _marginal(space, {"normal": a, "reduce": a}, None, decisions)
    assert all(op == "sep_conv_3x3" for op, _, _ in g.normal)
    assert sorted({round(d.margin, 12) for d in decisions if d.kind == "op"}) == [0.3]
    assert sorted({round(d.margin, 12) for d in decisions if d.kind == "edge"}) == [0.1]
