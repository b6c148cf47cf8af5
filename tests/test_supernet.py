"""Search supernet (itnas/supernet.py): mixed op, partial channels, channel shuffle, tiny forward/backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from itnas.methods import list_methods
from itnas.ops import create_op, list_ops
from itnas.spaces import DARTS_OPS, create_space, list_spaces
from itnas.supernet import MixedOp, SearchModel, channel_shuffle, create_search_model

METHODS = list_methods()
SPACES = list_spaces()


def _bn_train(y: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """BatchNorm (no affine) in train mode, by hand: batch mean, biased batch variance."""
    mean = y.mean(dim=(0, 2, 3), keepdim=True)
    var = y.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return (y - mean) / torch.sqrt(var + eps)


def _reference_op(mixed: MixedOp, k: int, name: str, C: int, stride: int, x: torch.Tensor) -> torch.Tensor:
    """What op `name` computes, built independently of MixedOp (weights copied from it)."""
    if name == "none":
        return torch.zeros(x.shape[0], C, x.shape[2] // stride, x.shape[3] // stride)
    if name == "max_pool_3x3":
        return _bn_train(F.max_pool2d(x, 3, stride, 1))
    if name == "avg_pool_3x3":
        return _bn_train(F.avg_pool2d(x, 3, stride, 1, count_include_pad=False))
    if name == "skip_connect" and stride == 1:
        return x
    ref = create_op(name, C, stride, affine=False)
    ref.load_state_dict(mixed.ops[k].state_dict())  # same structure: the keys must match exactly
    ref.train()
    return ref(x)


# A one-hot alpha on every op of every space (reference MixedOp and fused cells): tests/test_one_hot.py.


def test_mixed_op_is_the_alpha_weighted_sum():
    torch.manual_seed(1)
    mixed = MixedOp(4, 1, DARTS_OPS, partial_k=1)
    x = torch.randn(2, 4, 8, 8)
    alpha = torch.softmax(torch.randn(8), 0)
    want = sum(alpha[k] * mixed(x, F.one_hot(torch.tensor(k), 8).float()) for k in range(8))
    torch.testing.assert_close(mixed(x, alpha), want, rtol=1e-5, atol=1e-6)


class _Boom(torch.nn.Module):
    def forward(self, x):
        raise AssertionError("the none op was computed")


def test_mixed_op_never_computes_none():
    torch.manual_seed(0)
    mixed = MixedOp(4, 1, DARTS_OPS)
    assert mixed.active == list(range(1, 8))
    assert not any(p.numel() for p in mixed.ops[0].parameters())
    mixed.ops[0] = _Boom()  # would raise if MixedOp called it
    x = torch.randn(2, 4, 8, 8)
    out = mixed(x, F.one_hot(torch.tensor(0), 8).float())
    assert torch.equal(out, torch.zeros_like(out))
    out = mixed(x, torch.softmax(torch.randn(8), 0))
    assert out.shape == x.shape and torch.isfinite(out).all()


def _shuffle_by_hand(x: torch.Tensor, groups: int) -> torch.Tensor:
    C = x.shape[1]
    per = C // groups
    perm = [g * per + i for i in range(per) for g in range(groups)]  # new channel i*groups+g <- old g*per+i
    return x[:, perm]


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", range(len(DARTS_OPS)))
def test_one_hot_partial_channel_mixed_op(k, stride):
    """partial_k=2: op on the first C/2 channels, the rest bypass (max-pooled when strided), then shuffle."""
    torch.manual_seed(0)
    C, K = 8, 2
    mixed = MixedOp(C, stride, DARTS_OPS, partial_k=K)
    mixed.train()
    x = torch.randn(2, C, 8, 8)
    alpha = F.one_hot(torch.tensor(k), len(DARTS_OPS)).float()
    out = mixed(x, alpha)
    assert out.shape == (2, C, 8 // stride, 8 // stride)
    x_op, x_bypass = x[:, : C // K], x[:, C // K:]
    y = _reference_op(mixed, k, DARTS_OPS[k], C // K, stride, x_op)
    if stride == 2:
        x_bypass = F.max_pool2d(x_bypass, 2, 2)
    want = _shuffle_by_hand(torch.cat([y, x_bypass], 1), K)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)
    # channels 1, 3, 5, 7 are the bypass channels, untouched at stride 1
    if stride == 1:
        assert torch.equal(out[:, 1::2], x[:, 4:])


def test_partial_k_must_divide_channels():
    with pytest.raises(ValueError, match="partial_k"):
        MixedOp(6, 1, DARTS_OPS, partial_k=4)


@pytest.mark.parametrize("C,groups", [(8, 2), (8, 4), (12, 3), (6, 1)])
def test_channel_shuffle_is_an_invertible_permutation(C, groups):
    x = torch.arange(C, dtype=torch.float32).view(1, C, 1, 1).expand(2, C, 3, 3).contiguous()
    y = channel_shuffle(x, groups)
    assert y.shape == x.shape
    perm = y[0, :, 0, 0].long().tolist()
    assert sorted(perm) == list(range(C))  # a permutation
    assert torch.equal(y, _shuffle_by_hand(x, groups))
    assert torch.equal(channel_shuffle(y, C // groups), x)  # the inverse shuffle restores the order
    z = torch.randn(2, C, 4, 4)
    assert torch.equal(channel_shuffle(channel_shuffle(z, groups), C // groups), z)
    if groups > 1 and groups < C:
        assert perm != list(range(C))


def test_channel_shuffle_example():
    x = torch.arange(8.0).view(1, 8, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]


# ---------------------------------------------------------------------------------------------------- networks
def _tiny(space_name: str, method: str, **kw) -> SearchModel:
    space = create_space(space_name)
    layers = 1 if space_name == "nb201" else 3
    return create_search_model(space, method, C=4, layers=layers, num_classes=5, in_channels=3, partial_k=2, **kw)


@pytest.mark.parametrize("space_name", SPACES)
@pytest.mark.parametrize("method", METHODS)
def test_tiny_supernet_forward_backward(method, space_name):
    torch.manual_seed(0)
    model = _tiny(space_name, method)
    model.train()
    x = torch.randn(2, 3, 8, 8)
    y = torch.tensor([1, 3])
    logits = model(x)
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits, y).backward()
    weights = model.weight_parameters()
    assert weights, "no weights"
    names = {id(p): n for n, p in model.net.named_parameters()}
    for p in weights:
        assert p.grad is not None, names[id(p)]
        assert torch.isfinite(p.grad).all(), names[id(p)]
        assert p.grad.abs().sum() > 0, names[id(p)]
    for p in model.arch_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    # weights and architecture parameters are disjoint and together are all parameters
    ids_w = {id(p) for p in weights}
    ids_a = {id(p) for p in model.arch_parameters()}
    assert not ids_w & ids_a
    assert ids_w | ids_a == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("trs", [False, True])
@pytest.mark.parametrize("space_name", ["darts", "nb201"])
def test_search_cell_bns_have_no_affine(space_name, trs):
    model = _tiny(space_name, "darts", track_running_stats=trs)
    cells = [m for m in model.net.cells if hasattr(m, "waves")]  # the fused cells (the default)
    assert len(cells) == 3
    n_bn = 0
    for cell in cells:  # stacked ops, wave BNs and (DARTS) preprocessing
        for m in cell.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n_bn += 1
                assert m.weight is None and m.bias is None
                assert (m.running_mean is not None) == trs
    assert n_bn > 0
    # the only affine BN of the DARTS search network is the stem's (DARTS model_search.py)
    if space_name == "darts":
        affine = [n for n, m in model.net.named_modules() if isinstance(m, torch.nn.BatchNorm2d) and m.affine]
        assert affine == ["stem.1"]


def test_reduction_cells_halve_the_resolution():
    torch.manual_seed(0)
    model = _tiny("darts", "darts", fused=False)  # the reference cells (the fused ones equal them: test_fused.py)
    types = model.net.cell_types
    assert types == ["normal", "reduce", "reduce"]  # layers=3: reductions at 3//3=1 and 2*3//3=2
    x = torch.randn(2, 3, 8, 8)
    state = model.arch()
    s0 = s1 = model.net.stem(x)
    sizes = []
    for cell, t in zip(model.net.cells, types, strict=True):
        s0, s1 = s1, cell(s0, s1, state.alphas[t], None)
        sizes.append(tuple(s1.shape[1:]))
    assert sizes == [(16, 8, 8), (32, 4, 4), (64, 2, 2)]


def test_list_ops_covers_every_space_op():
    ops = set(list_ops())
    for s in SPACES:
        space = create_space(s)
        for t in space.cell_types:
            for edge_ops in space.ops[t]:
                assert set(edge_ops) <= ops


@pytest.mark.parametrize("name", list_ops())
@pytest.mark.parametrize("stride", [1, 2])
def test_every_op_shape(name, stride):
    torch.manual_seed(0)
    op = create_op(name, 4, stride)
    y = op(torch.randn(2, 4, 8, 8))
    assert y.shape == (2, 4, 8 // stride, 8 // stride)
    assert torch.isfinite(y).all()


def test_unknown_op_lists_valid():
    with pytest.raises(KeyError) as exc:
        create_op("conv_7x7", 4, 1)
    assert "conv_7x7" in str(exc.value) and all(o in str(exc.value) for o in list_ops())


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [7, 8, 14])
def test_avg_pool_op_equals_torch_avg_pool(stride, size):
    from itnas.ops import AvgPool3x3

    x = torch.randn(2, 3, size, size, requires_grad=True)
    ref = torch.nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)(x)
    out = AvgPool3x3(stride)(x)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    g_ref, = torch.autograd.grad(ref.square().sum(), x)
    g_out, = torch.autograd.grad(out.square().sum(), x)
    torch.testing.assert_close(g_out, g_ref, rtol=1e-5, atol=1e-6)
