"""The faster search step computes the same maths (itnas/supernet.py MixedOp, itnas/ops.py): the optimised mixed op
(`none` skipped, in-place accumulation, channels-last convolutions and pooling on CPU with contiguous batch norms,
one-copy shuffle) against a straightforward reference written here, outputs and gradients of the weights, the
alphas and the input; and whole search steps with the reference mixed op swapped in."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from itnas.config import SearchConfig
from itnas.ops import FactorizedReduce
from itnas.search import arch_step, build_search_model, make_search_optimizers, weight_step
from itnas.spaces import DARTS_OPS, create_space
from itnas.supernet import MixedOp, channel_shuffle, shuffle_cat

RTOL, ATOL = 1e-5, 1e-5  # float32 reassociation inside convolutions; largest difference these tests saw 1.05e-5, on
# weight gradients (sums over the batch and the map), within rtol of their size


def reference_mixed_op(mixed: MixedOp, op_names: tuple[str, ...], x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """The mixed op as written in the papers: sum over *every* op, `none` included as explicit zeros, each op's
    plain forward in x's memory format; partial channels: op on the first C/K channels, the rest bypass (max-pooled
    when strided), concatenated and channel-shuffled."""
    K = mixed.partial_k
    x_op, x_bypass = (x, None) if K == 1 else (x[:, : x.shape[1] // K], x[:, x.shape[1] // K:])
    terms = []
    for k, name in enumerate(op_names):
        if name == "none":
            h = torch.zeros_like(x_op[:, :, :: mixed.stride, :: mixed.stride])
        else:
            h = mixed.ops[k](x_op)
        terms.append(alpha[k] * h)
    out = sum(terms)
    if K == 1:
        return out
    if out.shape[2] != x.shape[2]:
        x_bypass = F.max_pool2d(x_bypass, 2, 2, ceil_mode=True)
    return channel_shuffle(torch.cat([out, x_bypass], dim=1), K)


def _forward_backward(fn, mixed: MixedOp, x: torch.Tensor, alpha: torch.Tensor, g: torch.Tensor):
    x, alpha = x.clone().requires_grad_(), alpha.clone().requires_grad_()
    mixed.zero_grad(set_to_none=True)
    out = fn(x, alpha)
    out.backward(g)
    weights = {n: p.grad.clone() for n, p in mixed.named_parameters() if p.grad is not None}
    return out.detach(), x.grad, alpha.grad, weights


def _counting(fn, key, calls: list):
    """fn, appending `key` to `calls` at every call."""
    def wrapped(*args):
        calls.append(key)
        return fn(*args)
    return wrapped


@pytest.mark.parametrize("partial_k", [1, 4])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("side", [8, 7])
def test_optimised_mixed_op_equals_the_reference(partial_k, stride, side):
    torch.manual_seed(0)
    C = 8
    mixed = MixedOp(C, stride, DARTS_OPS, partial_k=partial_k)
    mixed.train()
    x = torch.randn(4, C, side, side)
    alpha = torch.softmax(torch.randn(len(DARTS_OPS)), 0)
    out_side = (side + stride - 1) // stride
    g = torch.randn(4, C, out_side, out_side)
    ref_bn = copy.deepcopy(mixed)  # batch-norm running statistics move in train mode: same start for both
    calls = []
    for k in mixed.channels_last_ops:  # count the fast path's calls (instance attributes shadow the methods)
        op = mixed.ops[k]
        op.forward_channels_last = _counting(op.forward_channels_last, k, calls)
    got = _forward_backward(mixed, mixed, x, alpha, g)
    want = _forward_backward(lambda x, a: reference_mixed_op(ref_bn, DARTS_OPS, x, a), ref_bn, x, alpha, g)
    assert len(mixed.channels_last_ops) == 6 and calls == mixed.channels_last_ops  # the fast path ran, once per op
    assert got[0].shape == want[0].shape == (4, C, out_side, out_side) and got[0].is_contiguous()
    for a, b in zip(got[:3], want[:3], strict=True):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL)
    assert got[3].keys() == want[3].keys()
    for name in got[3]:
        torch.testing.assert_close(got[3][name], want[3][name], rtol=RTOL, atol=ATOL, msg=name)
    for (name, a), b in zip(mixed.state_dict().items(), ref_bn.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL, msg=name)  # BN running statistics


def test_none_is_skipped_with_exactly_zero_contribution():
    """`none` is never computed; the reference computes alpha_none * 0: both give exactly zero output and exactly
    zero gradient to alpha_none (and to every weight and the input, when alpha is one-hot on none)."""
    torch.manual_seed(0)
    mixed = MixedOp(8, 1, DARTS_OPS)
    x = torch.randn(2, 8, 8, 8)
    onehot = F.one_hot(torch.tensor(0), len(DARTS_OPS)).float()
    g = torch.randn(2, 8, 8, 8)
    got = _forward_backward(mixed, mixed, x, onehot, g)
    want = _forward_backward(lambda x, a: reference_mixed_op(mixed, DARTS_OPS, x, a), mixed, x, onehot, g)
    for out, x_grad, alpha_grad, weights in (got, want):
        assert torch.equal(out, torch.zeros_like(out))
        assert torch.equal(x_grad, torch.zeros_like(x_grad))
        assert alpha_grad[0] == 0.0
        assert all(torch.equal(w, torch.zeros_like(w)) for w in weights.values())
    # with a soft alpha the none op still adds exactly nothing: its alpha gets exactly zero gradient
    alpha = torch.softmax(torch.randn(len(DARTS_OPS)), 0)
    got = _forward_backward(mixed, mixed, x, alpha, g)
    assert got[2][0] == 0.0 and got[2][1:].abs().sum() > 0


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("groups", [2, 4])
def test_shuffle_cat_is_cat_then_shuffle(channels_last, groups):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    c = 3
    out = torch.randn(2, c, 5, 6).contiguous(memory_format=fmt)
    bypass = torch.randn(2, (groups - 1) * c, 5, 6).contiguous(memory_format=fmt)
    got = shuffle_cat(out, bypass, groups)
    assert torch.equal(got, channel_shuffle(torch.cat([out, bypass], 1), groups))
    assert got.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("side", [8, 7])
def test_factorized_reduce_equals_the_strided_convolutions(side):
    """Subsample-then-1x1-conv is the DARTS stride-2 1x1 conv (the same products; measured bitwise equal)."""
    torch.manual_seed(0)
    fr = FactorizedReduce(6, 8)
    x = torch.randn(3, 6, side, side)
    h = F.relu(x)
    a = F.conv2d(h, fr.conv_1.weight, stride=2)
    b = F.conv2d(h[:, :, 1:, 1:], fr.conv_2.weight, stride=2)
    b = F.pad(b, (0, a.shape[-1] - b.shape[-1], 0, a.shape[-2] - b.shape[-2]))
    want = F.batch_norm(torch.cat([a, b], 1), None, None, training=True)
    torch.testing.assert_close(fr(x), want, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------- whole search steps
def _cfg(method: str, base: str) -> SearchConfig:
    return SearchConfig.model_validate({"method": method, "supernet": {"base": base, "C": 8, "layers": 3}})


@pytest.mark.parametrize("method,base", [("itnas", "darts"), ("darts", "darts"), ("pcdarts", "pcdarts")])
def test_search_steps_equal_the_reference_mixed_op(method, base, monkeypatch):
    """Three (arch step, weight step) pairs with the optimised supernet and with the reference mixed op swapped in:
    the same losses, alphas and weights to float tolerance."""
    cfg = _cfg(method, base)
    assert all(ops == DARTS_OPS for t in ("normal", "reduce") for ops in create_space("darts").ops[t])
    torch.manual_seed(0)
    fast = build_search_model(cfg, 10, 3)
    ref = copy.deepcopy(fast)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(6)]

    def run(model, reference: bool):
        w_opt, a_opt = make_search_optimizers(model, cfg)
        losses = []
        with monkeypatch.context() as m:
            if reference:
                m.setattr(MixedOp, "forward", lambda self, x, alpha: reference_mixed_op(self, DARTS_OPS, x, alpha))
            for step in range(3):
                train, val = batches[2 * step], batches[2 * step + 1]
                arch_step(model, a_opt, train, val, "first", 0.025, w_opt)
                losses.append(weight_step(model, w_opt, train, 5.0)[0])
        return torch.stack(losses)

    losses_fast, losses_ref = run(fast, False), run(ref, True)
    torch.testing.assert_close(losses_fast, losses_ref, rtol=1e-5, atol=1e-5)
    for (name, a), b in zip(fast.state_dict().items(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
