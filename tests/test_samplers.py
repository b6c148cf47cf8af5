"""The sampling baselines' maths (itnas/samplers.py, itnas/arch.py; docs/method.md 2.12): GDAS's hard Gumbel-softmax
sample with straight-through gradients and its temperature schedule, DrNAS's reparameterised Dirichlet sample, its
mean and its KL regulariser, each against an independent computation (torch.distributions, the soft relaxation,
the Gumbel-max law)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet, kl_divergence

from itnas.arch import Architecture
from itnas.methods import DEFAULT_TAU_MAX, DEFAULT_TAU_MIN
from itnas.samplers import (
    ArchSampler,
    dirichlet_kl,
    dirichlet_rsample,
    gumbel_softmax_st,
    gumbel_tau,
)
from itnas.spaces import create_space, list_spaces

DTYPES = (torch.float32, torch.float64)


def _logits(shape, scale, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype).requires_grad_()


# ------------------------------------------------------------------------------------------------------------ gdas
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", [10.0, 1.0, 0.1])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 30.0])
def test_gumbel_sample_is_one_hot_at_the_argmax_of_the_soft_sample(tau, scale, dtype):
    logits = _logits((14, 8), scale, dtype)
    weights, index = gumbel_softmax_st(logits, tau, torch.Generator().manual_seed(1))
    assert weights.shape == (14, 8) and index.shape == (14,) and index.dtype == torch.int64
    torch.testing.assert_close(weights.detach(), F.one_hot(index, 8).to(dtype), rtol=0, atol=1e-6)
    # the soft sample from the same draws, computed here: index is its argmax
    u = torch.empty(14, 8, dtype=dtype).exponential_(generator=torch.Generator().manual_seed(1))
    soft = F.softmax((F.log_softmax(logits.detach(), -1) - u.log()) / tau, -1)
    assert torch.equal(index, soft.argmax(-1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", [10.0, 0.5])
def test_straight_through_gradient_is_the_analytic_soft_sample_jacobian(tau, dtype):
    """d/d logits of <upstream, weights> equals the Jacobian of the soft sample written out by hand:
    soft = softmax((logits + g) / tau), so d soft_k / d logits_j = soft_k (delta_jk - soft_j) / tau and the gradient
    is soft_j (upstream_j - <upstream, soft>) / tau, with g = -log(u) from the same exponential draws."""
    logits = _logits((6, 5), 1.0, dtype, seed=3)
    upstream = torch.randn(6, 5, generator=torch.Generator().manual_seed(4), dtype=dtype)
    weights, _ = gumbel_softmax_st(logits, tau, torch.Generator().manual_seed(7))
    (g_st,) = torch.autograd.grad((weights * upstream).sum(), logits)
    u = torch.empty(6, 5, dtype=torch.float64).exponential_(generator=torch.Generator().manual_seed(7))
    z = (logits.detach().double() - u.log()) / tau
    soft = z.exp() / z.exp().sum(-1, keepdim=True)
    expected = soft * (upstream.double() - (upstream.double() * soft).sum(-1, keepdim=True)) / tau
    assert g_st.abs().max() > 1e-4  # a real gradient, not zero on both sides
    torch.testing.assert_close(g_st.double(), expected, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-7)


@pytest.mark.parametrize("space_name,fused", [("nb201", True), ("nb201", False), ("darts", True)])
def test_gdas_model_logit_gradient_is_the_sampled_weight_gradient_through_the_soft_sample(space_name, fused):
    """The search's gradient of a gdas supernet's loss w.r.t. the edge logits, with only the sampled op of every
    edge computed, against an independent computation: dL/dw_e of the sampled op's weight (the same forward with
    the one-hot weights as leaves), times the soft sample's Jacobian written out by hand, d soft_k / d a_e =
    soft_k (onehot_k - soft) / tau (soft recomputed from the same exponential draws). Only the sampled op's weight
    carries a gradient: the other ops' soft weights do not enter."""
    from itnas.arch import ArchState
    from itnas.supernet import create_search_model

    space, tau = create_space(space_name), 0.7
    torch.manual_seed(0)
    layers = 3 if space.layout == "darts" else 1  # darts: a normal cell and two reduction cells
    model = create_search_model(space, "gdas", C=4, layers=layers, num_classes=3, in_channels=3, fused=fused).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for cell in model.arch.cells.values():
            cell.edge_logits.copy_(torch.randn(cell.edge_logits.shape, generator=g, dtype=torch.float64))
    x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 2])
    state = model.arch.sample(ArchSampler(torch.Generator().manual_seed(5), tau))
    logits = [cell.edge_logits for cell in model.arch.cells.values()]
    grads = torch.autograd.grad(F.cross_entropy(model(x, state), y), logits)

    leaves = {t: F.one_hot(torch.tensor(state.sampled[t]), space.n_ops).double().requires_grad_()
              for t in model.arch.cells}
    loss = F.cross_entropy(model.net(x, ArchState(leaves, state.edge_weights, state.sampled)), y)
    d_w = [torch.zeros_like(leaf) if d is None else d  # a sampled `none` computes nothing: no weight is used
           for leaf, d in zip(leaves.values(), torch.autograd.grad(loss, list(leaves.values()), allow_unused=True),
                              strict=True)]
    draws = torch.Generator().manual_seed(5)
    for (t, cell), grad, dw in zip(model.arch.cells.items(), grads, d_w, strict=True):
        a = cell.edge_logits.detach()
        u = torch.empty_like(a).exponential_(generator=draws)  # the draws of Architecture.sample, cell by cell
        z = (a - u.log()) / tau
        soft = z.exp() / z.exp().sum(-1, keepdim=True)
        k = torch.tensor(state.sampled[t])
        assert torch.equal(k, soft.argmax(-1))
        rows = torch.arange(len(k))
        soft_k = soft[rows, k]
        expected = (dw[rows, k] * soft_k / tau)[:, None] * (F.one_hot(k, space.n_ops).double() - soft)
        assert grad.abs().max() > 1e-6, t
        torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method", ["gdas", "drnas"])
def test_second_order_draws_an_independent_sample_in_every_forward(method):
    """The unrolled (second-order) architecture gradient runs the supernet 4 times (virtual step on search-train,
    search-val at w', search-train at w+ and w-); with a sampler set, each forward draws its own architecture, the
    k-th draw being the k-th draw of the sampler's generator (as the public GDAS / DrNAS code, which samples in every
    forward; docs/method.md 2.12)."""
    from itnas.supernet import create_search_model
    from itnas.unrolled import unrolled_arch_grads

    space = create_space("nb201")
    torch.manual_seed(0)
    model = create_search_model(space, method, C=4, layers=1, num_classes=3, in_channels=3).double()
    model.sampler = ArchSampler(torch.Generator().manual_seed(9), 1.0)
    drawn = []
    sample = model.arch.sample

    def recording(sampler):
        state = sample(sampler)
        drawn.append(state)
        return state

    model.arch.sample = recording
    g = torch.Generator().manual_seed(2)
    batch = lambda: (torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 0]))  # noqa
    unrolled_arch_grads(model, batch(), batch(), xi=0.01)
    assert len(drawn) == 4
    reference = ArchSampler(torch.Generator().manual_seed(9), 1.0)
    expected = [sample(reference) for _ in range(4)]
    for got, want in zip(drawn, expected, strict=True):
        torch.testing.assert_close(got.alphas["normal"].detach(), want.alphas["normal"].detach(), rtol=0, atol=0)
        assert got.sampled == want.sampled
    firsts = [d.alphas["normal"].detach() for d in drawn]
    assert all(not torch.equal(firsts[0], other) for other in firsts[1:])  # independent draws, not one reused


def test_gumbel_argmax_follows_the_softmax_of_the_logits():
    """Gumbel-max: P(index = k) = softmax(logits)[k] at any temperature; 20,000 draws within 5 standard errors."""
    logits = torch.tensor([[0.5, -1.0, 2.0, 0.0, -0.3]], dtype=torch.float64)
    p = F.softmax(logits[0], 0)
    g, n = torch.Generator().manual_seed(11), 20_000
    _, index = gumbel_softmax_st(logits.expand(n, 5), 0.3, g)
    freq = torch.bincount(index, minlength=5).double() / n
    se = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() < 5 * se).all(), (freq, p)


def test_gumbel_tau_is_linear_from_tau_max_to_tau_min():
    assert gumbel_tau(0, 8) == DEFAULT_TAU_MAX == 10.0
    assert gumbel_tau(7, 8) == pytest.approx(DEFAULT_TAU_MIN) and DEFAULT_TAU_MIN == 0.1
    steps = [gumbel_tau(e, 8) for e in range(8)]
    diffs = [b - a for a, b in zip(steps, steps[1:], strict=False)]
    assert diffs == pytest.approx([(0.1 - 10.0) / 7] * 7)
    assert gumbel_tau(0, 1) == 10.0  # a 1-epoch search stays at tau_max
    assert gumbel_tau(2, 3, 4.0, 1.0) == 1.0 and gumbel_tau(1, 3, 4.0, 1.0) == 2.5


@pytest.mark.parametrize("space_name", list_spaces())
def test_gdas_architecture_sample_is_one_hot_and_grads_only_the_sampled_logit_path(space_name):
    """Architecture.sample (gdas): one-hot alphas, the sampled index per edge; the alpha of an unsampled op is 0 with
    no gradient path (so a shared term never carries the alpha of an edge that did not sample it)."""
    space = create_space(space_name)
    arch = Architecture(space, "gdas").double()
    state = arch.sample(ArchSampler(torch.Generator().manual_seed(0), 1.0))
    assert set(state.sampled) == set(space.cell_types)
    for t, alpha in state.alphas.items():
        index = torch.tensor(state.sampled[t])
        torch.testing.assert_close(alpha.detach(), F.one_hot(index, space.n_ops).double(), rtol=0, atol=1e-12)
        for e, k in enumerate(state.sampled[t]):
            for j in range(space.n_ops):
                (g,) = torch.autograd.grad(alpha[e, j], arch.cells[t].edge_logits, retain_graph=True,
                                           allow_unused=True)
                if j == k:
                    assert g is not None and g[e].abs().sum() > 0
                else:
                    assert g is None or torch.count_nonzero(g) == 0


def test_gdas_forward_and_eval_state():
    """forward() is softmax(a) (what derivation reads); eval_state() the one-hot argmax."""
    space = create_space("nb201")
    arch = Architecture(space, "gdas").double()
    with torch.no_grad():
        arch.cells["normal"].edge_logits.copy_(torch.randn(6, 5, generator=torch.Generator().manual_seed(2)))
    a = arch.cells["normal"].edge_logits.detach()
    torch.testing.assert_close(arch().alphas["normal"].detach(), F.softmax(a, -1))
    ev = arch.eval_state()
    assert ev.sampled["normal"] == tuple(a.argmax(-1).tolist())
    torch.testing.assert_close(ev.alphas["normal"], F.one_hot(a.argmax(-1), 5).double())


# ----------------------------------------------------------------------------------------------------------- drnas
@pytest.mark.parametrize("dtype", DTYPES)
def test_dirichlet_rsample_equals_torch_rsample_value_and_gradient(dtype):
    """The generator-driven sample equals torch.distributions.Dirichlet.rsample drawn from a global RNG in the same
    state, in value and in its reparameterisation gradient."""
    conc = (0.2 + 3 * torch.rand(5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)).to(dtype)
    upstream = torch.randn(5, 4, generator=torch.Generator().manual_seed(1), dtype=dtype)
    c1 = conc.clone().requires_grad_()
    x1 = dirichlet_rsample(c1, torch.Generator().manual_seed(5))
    (g1,) = torch.autograd.grad((x1 * upstream).sum(), c1)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(5)
        c2 = conc.clone().requires_grad_()
        x2 = Dirichlet(c2).rsample()
    finally:
        torch.random.set_rng_state(state)
    (g2,) = torch.autograd.grad((x2 * upstream).sum(), c2)
    assert torch.equal(x1, x2)
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)
    assert g1.abs().max() > 1e-3


def test_dirichlet_sample_is_on_the_simplex_with_the_dirichlet_mean():
    conc = torch.tensor([[0.5, 1.0, 2.0, 4.0]], dtype=torch.float64)
    n = 40_000
    x = dirichlet_rsample(conc.expand(n, 4), torch.Generator().manual_seed(3))
    assert (x >= 0).all()
    torch.testing.assert_close(x.sum(-1), torch.ones(n, dtype=torch.float64), rtol=0, atol=1e-12)
    mean = conc[0] / conc.sum()
    c0 = conc.sum()
    se = (mean * (1 - mean) / (c0 + 1) / n).sqrt()  # Var x_k = m_k (1 - m_k) / (c0 + 1)
    assert ((x.mean(0) - mean).abs() < 5 * se).all()


@pytest.mark.parametrize("space_name", ["darts", "nb201", "s1"])
@pytest.mark.parametrize("scale", [1e-3, 2.0, 30.0])
def test_drnas_concentration_mean_and_sample(space_name, scale):
    """concentration = elu(a) + 1 (> 0 even where float32 elu(a) + 1 cancels to 0); forward() = its mean; a sample
    per edge on the simplex, one sampled draw per cell type, no op index."""
    space = create_space(space_name)
    arch = Architecture(space, "drnas")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in arch.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
    for t, cell in arch.cells.items():
        a = cell.edge_logits.detach().double()
        beta = cell.concentration().detach()
        assert (beta > 0).all()
        exact = torch.where(a > 0, a + 1, torch.exp(a))  # elu(a) + 1 = exp(a) for a <= 0, in float64
        torch.testing.assert_close(beta.double(), exact.clamp_min(torch.finfo(torch.float32).tiny), rtol=1e-6,
                                   atol=0)
        moderate = a > -5  # where elu(a) + 1 does not cancel, it is the same number
        torch.testing.assert_close(beta.double()[moderate], (F.elu(a) + 1)[moderate], rtol=1e-6, atol=0)
        torch.testing.assert_close(arch().alphas[t].detach(), beta / beta.sum(-1, keepdim=True))
    state = arch.sample(ArchSampler(torch.Generator().manual_seed(1)))
    assert state.sampled is None
    for alpha in state.alphas.values():
        assert torch.isfinite(alpha).all() and (alpha >= 0).all()
        torch.testing.assert_close(alpha.sum(-1), torch.ones(space.n_edges), rtol=0, atol=1e-5)


@pytest.mark.parametrize("anchor", [1.0, 0.5, 3.0])
def test_dirichlet_kl_equals_torch_kl_divergence(anchor):
    conc = 0.1 + 5 * torch.rand(7, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ref = torch.full_like(conc, anchor)
    torch.testing.assert_close(dirichlet_kl(conc, ref), kl_divergence(Dirichlet(conc), Dirichlet(ref)),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dirichlet_kl(ref, ref), torch.zeros(7, dtype=torch.float64), rtol=0, atol=1e-13)


@pytest.mark.parametrize("coefficient,anchor", [(1e-3, 1.0), (0.5, 2.0)])
def test_drnas_regularizer_is_the_coefficient_times_the_summed_kl(coefficient, anchor):
    space = create_space("darts")
    arch = Architecture(space, "drnas", dirichlet_kl=coefficient, dirichlet_anchor=anchor).double()
    with torch.no_grad():
        for p in arch.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64))
    want = sum(kl_divergence(Dirichlet(F.elu(c.edge_logits) + 1),
                             Dirichlet(torch.full_like(c.edge_logits, anchor))).sum() for c in arch.cells.values())
    torch.testing.assert_close(arch.regularizer(), coefficient * want, rtol=1e-12, atol=0)
    grads = torch.autograd.grad(arch.regularizer(), list(arch.parameters()))
    want_grads = torch.autograd.grad(coefficient * want, list(arch.parameters()))
    for g, w in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-14)
    assert Architecture(space, "drnas", dirichlet_kl=0.0).regularizer() is None
    assert Architecture(space, "darts").regularizer() is None and Architecture(space, "gdas").regularizer() is None


def test_non_sampling_method_refuses_to_sample():
    with pytest.raises(ValueError, match="does not sample.*gdas, drnas"):
        Architecture(create_space("nb201"), "darts").sample(ArchSampler(torch.Generator()))


def test_kl_anchor_and_coefficient_are_checked():
    with pytest.raises(ValueError, match="dirichlet_anchor"):
        Architecture(create_space("nb201"), "drnas", dirichlet_anchor=0.0)
    assert math.isclose(Architecture(create_space("nb201"), "drnas").dirichlet_kl, 1e-3)
