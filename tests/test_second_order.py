"""Second-order (unrolled) architecture gradient (itnas.search.unrolled_arch_grads, DARTS eq. 7-8).

Reference: the exact gradient d/dA L_val(w'(A), A) with w'(A) = w - xi * (m * buf + grad_w L_train(w, A) + wd * w),
computed by autograd through the virtual step (create_graph=True) in float64. The library approximates the
Hessian-vector product by central finite differences; in float64 that agrees to far better than rtol 1e-3.
Search BNs use track_running_stats=False and the model stays in train mode, so every forward is a pure function
of (w, A, x).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from itnas.search import unrolled_arch_grads
from itnas.spaces import create_space
from itnas.supernet import create_search_model

pytestmark = pytest.mark.slow


def _model(space_name="darts", method="itnas", base="auto", seed=0):
    torch.manual_seed(seed)
    space = create_space(space_name)
    layers = 1 if space_name == "nb201" else 3
    model = create_search_model(space, method, base, C=4, layers=layers, num_classes=3, in_channels=3,
                                partial_k=2, track_running_stats=False)
    model.double().train()
    with torch.no_grad():  # non-trivial architecture, so that every term of the gradient is exercised
        for p in model.arch_parameters():
            p.copy_(0.5 * torch.randn_like(p))
    return model


def _batches(seed=1, n=4):
    g = torch.Generator().manual_seed(seed)
    xt = torch.randn(n, 3, 8, 8, generator=g, dtype=torch.float64)
    xv = torch.randn(n, 3, 8, 8, generator=g, dtype=torch.float64)
    yt = torch.randint(0, 3, (n,), generator=g)
    yv = torch.randint(0, 3, (n,), generator=g)
    return (xt, yt), (xv, yv)


def _reference(model, train, val, xi, wd=0.0, bufs=None, momentum=0.0):
    """Exact unrolled gradient by autograd through the virtual SGD step."""
    names = [n for n, _ in model.named_parameters() if n.startswith("net.")]
    weights = model.weight_parameters()
    assert len(names) == len(weights)
    arch = model.arch_parameters()
    (xt, yt), (xv, yv) = train, val
    g = torch.autograd.grad(F.cross_entropy(model(xt), yt), weights, create_graph=True, allow_unused=True)
    new = {}
    for k, (name, w, gk) in enumerate(zip(names, weights, g)):
        step = (torch.zeros_like(w) if gk is None else gk) + wd * w
        if bufs is not None and bufs[k] is not None:
            step = step + momentum * bufs[k]
        new[name] = w - xi * step
    loss_v = F.cross_entropy(functional_call(model, new, (xv,)), yv)
    grads = torch.autograd.grad(loss_v, arch, allow_unused=True)
    first = torch.autograd.grad(F.cross_entropy(functional_call(model, {n: t.detach() for n, t in new.items()},
                                                                (xv,)), yv), arch, allow_unused=True)
    z = lambda gs: [torch.zeros_like(p) if gi is None else gi.detach() for p, gi in zip(arch, gs)]  # noqa: E731
    return z(grads), z(first)


def _flat(ts):
    return torch.cat([t.reshape(-1) for t in ts])


def _rel(a, b):
    return float((_flat(a) - _flat(b)).norm() / _flat(b).norm())


def _check(model, train, val, xi, wd=0.0, bufs=None, momentum=0.0, eps_scale=0.01):
    ref, first = _reference(model, train, val, xi, wd, bufs, momentum)
    before = [p.detach().clone() for p in model.weight_parameters()]
    got = unrolled_arch_grads(model, train, val, xi, wd, bufs, momentum, eps_scale)
    after = model.weight_parameters()
    assert all(torch.equal(b, a) for b, a in zip(before, after)), "weights not restored exactly"
    assert all(p.grad is None for p in model.parameters()), "unrolled_arch_grads must not touch .grad"
    assert len(got) == len(model.arch_parameters())
    for g, p in zip(got, model.arch_parameters()):
        assert g.shape == p.shape and g.dtype == torch.float64
    assert _rel(got, ref) < 1e-3
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-3, atol=1e-3 * float(_flat(ref).abs().max()))
    # the second-order term is not negligible here, so the comparison above really tests it
    assert _rel(first, ref) > 1e-2
    return got


@pytest.mark.parametrize("method,base", [("itnas", "darts"), ("itnas", "pcdarts"), ("darts", "darts"),
                                         ("pcdarts", "pcdarts")])
def test_unrolled_matches_exact_autograd(method, base):
    model = _model("darts", method, base)
    train, val = _batches()
    _check(model, train, val, xi=0.5, wd=3e-4)


def test_unrolled_with_momentum_buffers():
    model = _model("darts", "itnas", "darts", seed=2)
    train, val = _batches(seed=3)
    g = torch.Generator().manual_seed(4)
    bufs = [torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.1 for p in model.weight_parameters()]
    bufs[0] = None  # an optimizer state without a buffer for this weight
    _check(model, train, val, xi=0.5, wd=3e-4, bufs=bufs, momentum=0.9)


@pytest.mark.parametrize("factor", [10.0, 0.1])
def test_eps_scale_does_not_change_result(factor):
    model = _model("darts", "itnas", "darts", seed=5)
    train, val = _batches(seed=6)
    base = unrolled_arch_grads(model, train, val, 0.5, 3e-4, eps_scale=0.01)
    other = unrolled_arch_grads(model, train, val, 0.5, 3e-4, eps_scale=0.01 * factor)
    assert _rel(other, base) < 1e-3
    for a, b in zip(other, base):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3 * float(_flat(base).abs().max()))


@pytest.mark.parametrize("method", ["itnas", "darts"])
def test_unrolled_on_s3_with_none_and_skip(method):
    model = _model("s3", method, "darts", seed=7)
    train, val = _batches(seed=8)
    _check(model, train, val, xi=0.5, wd=3e-4)


def test_unrolled_on_nb201():
    model = _model("nb201", "itnas", "darts", seed=9)
    train, val = _batches(seed=10)
    _check(model, train, val, xi=0.5)


def test_unrolled_when_some_weights_get_no_gradient():
    """A weight outside the graph (grad None) counts as zero and is restored; the result is still exact."""
    model = _model("darts", "itnas", "darts", seed=11)
    model.net.unused = nn.Parameter(torch.randn(5, dtype=torch.float64))
    assert any(p is model.net.unused for p in model.weight_parameters())
    train, val = _batches(seed=12)
    before = model.net.unused.detach().clone()
    _check(model, train, val, xi=0.5, wd=3e-4)  # wd moves `unused` in the virtual step; it must come back
    assert torch.equal(model.net.unused.detach(), before)
