"""Candidate ops (primitives) and their registry.

Every op maps a (B, C, H, W) tensor to (B, C, H/stride, W/stride). Definitions follow the public DARTS
code (Liu et al., "DARTS", ICLR 2019, `operations.py`) and NAS-Bench-201 (Dong & Yang, ICLR 2020) so that
parameter counts match theirs exactly (see tests/test_golden.py).

Use `create_op(name, C, stride, affine)`; `list_ops()` gives the registered names.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import UnknownNameError

__all__ = [
    "AvgPool3x3",
    "DilConv",
    "FactorizedReduce",
    "Identity",
    "NoiseOp",
    "ReLUConvBN",
    "SepConv",
    "Zero",
    "conv_bn_channels_last",
    "create_op",
    "list_ops",
]


def conv_bn_channels_last(seq: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """`seq(x)` for a sequence that ends in a BatchNorm2d, with every module before the BN run in the channels-last
    memory format and the BN (so the output) in the contiguous format. x: (B, C, H, W), any format.

    Why: on CPU, oneDNN's depthwise convolutions and torch's pooling are faster channels-last (forward and
    backward; with this function the search step is 1.8x (darts base) / 1.5x (pcdarts base) faster,
    reports/bench-search-speed.json), while torch's channels-last CPU batch norm sums its statistics less accurately
    (`python reports/experiments/bn_channels_last_error.py`). The result equals seq(x) up to the summation order
    inside the convolutions.
    """
    *body, bn = seq
    y = x.contiguous(memory_format=torch.channels_last)
    for m in body:
        y = m(y)
    return bn(y.contiguous())


class ReLUConvBN(nn.Module):
    """ReLU -> Conv(k, stride) -> BN. (B, C_in, H, W) -> (B, C_out, H', W')."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """forward(x), the convolution channels-last, the BN and the output contiguous (`conv_bn_channels_last`)."""
        return conv_bn_channels_last(self.op, x)


class DilConv(nn.Module):
    """ReLU -> depthwise dilated conv -> pointwise conv -> BN (DARTS `DilConv`)."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, dilation: int,
                 affine: bool = True, track_running_stats: bool = True):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride, padding, dilation=dilation, groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """forward(x), the convolutions channels-last, the BN and the output contiguous (`conv_bn_channels_last`)."""
        return conv_bn_channels_last(self.op, x)


class SepConv(nn.Module):
    """Two stacked (ReLU, depthwise, pointwise, BN) blocks, the first strided (DARTS `SepConv`)."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        self.op = nn.Sequential(
            DilConv(C_in, C_in, kernel_size, stride, padding, 1, affine, track_running_stats),
            DilConv(C_in, C_out, kernel_size, 1, padding, 1, affine, track_running_stats),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """forward(x), the convolutions channels-last, the BNs and the output contiguous (`conv_bn_channels_last`)."""
        return self.op[1].forward_channels_last(self.op[0].forward_channels_last(x))


class Identity(nn.Module):
    """skip_connect at stride 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The `none` op: zeros of shape (B, C, H/stride, W/stride)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class NoiseOp(nn.Module):
    """RobustDARTS S4 `noise`: N(0, 1) noise of the (strided) input shape; no parameters."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ref = x if self.stride == 1 else x[:, :, :: self.stride, :: self.stride]
        return torch.randn_like(ref)


class AvgPool3x3(nn.Module):
    """3x3 average pooling, padding 1, padded zeros not counted: the same values as
    `nn.AvgPool2d(3, stride, 1, count_include_pad=False)`, computed as a fixed all-ones depthwise conv divided by
    the window counts (2-5x faster on CPU than torch's pooling kernels; no parameters).
    (B, C, H, W) -> (B, C, ceil(H/stride), ceil(W/stride)).
    """

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride
        self.as_conv = True  # False: torch's pooling kernel (multiply-add counting treats pooling as free)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.as_conv:
            return F.avg_pool2d(x, 3, self.stride, 1, count_include_pad=False)
        C = x.shape[1]
        window = x.new_ones(C, 1, 3, 3)
        total = F.conv2d(x, window, stride=self.stride, padding=1, groups=C)
        count = F.conv2d(x.new_ones(1, 1, *x.shape[-2:]), window[:1], stride=self.stride, padding=1)
        return total / count

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """forward(x) computed channels-last, returned contiguous."""
        return self(x.contiguous(memory_format=torch.channels_last)).contiguous()


class FactorizedReduce(nn.Module):
    """Stride-2 reduction by two offset 1x1 convs, concatenated (DARTS). (B, C_in, H, W) -> (B, C_out, H/2, W/2).

    Raises:
        ValueError: if C_out is odd.
    """

    def __init__(self, C_in: int, C_out: int, affine: bool = True, track_running_stats: bool = True):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even C_out, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine, track_running_stats=track_running_stats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # a stride-2 1x1 conv reads every other pixel: subsample first, then a stride-1 conv (the same products and
        # sums; the strided conv's backward is slower on CPU: part of reports/bench-search-speed.json's speed-up)
        a = F.conv2d(x[:, :, ::2, ::2], self.conv_1.weight)
        b = F.conv2d(x[:, :, 1::2, 1::2], self.conv_2.weight)
        if b.shape[-2:] != a.shape[-2:]:  # odd H or W: pad the shifted branch (same shape as DARTS on even sizes)
            b = F.pad(b, (0, a.shape[-1] - b.shape[-1], 0, a.shape[-2] - b.shape[-2]))
        return self.bn(torch.cat([a, b], dim=1))


OpFactory = Callable[[int, int, bool, bool], nn.Module]

# name -> factory(C, stride, affine, track_running_stats). A registry, not a search space: spaces pick names.
_OPS: dict[str, OpFactory] = {
    "none": lambda C, s, affine, trs: Zero(s),
    "avg_pool_3x3": lambda C, s, affine, trs: AvgPool3x3(s),
    "max_pool_3x3": lambda C, s, affine, trs: nn.MaxPool2d(3, stride=s, padding=1),
    "skip_connect": lambda C, s, affine, trs: Identity() if s == 1 else FactorizedReduce(C, C, affine, trs),
    "sep_conv_3x3": lambda C, s, affine, trs: SepConv(C, C, 3, s, 1, affine, trs),
    "sep_conv_5x5": lambda C, s, affine, trs: SepConv(C, C, 5, s, 2, affine, trs),
    "dil_conv_3x3": lambda C, s, affine, trs: DilConv(C, C, 3, s, 2, 2, affine, trs),
    "dil_conv_5x5": lambda C, s, affine, trs: DilConv(C, C, 5, s, 4, 2, affine, trs),
    "nor_conv_1x1": lambda C, s, affine, trs: ReLUConvBN(C, C, 1, s, 0, affine, trs),
    "nor_conv_3x3": lambda C, s, affine, trs: ReLUConvBN(C, C, 3, s, 1, affine, trs),
    "noise": lambda C, s, affine, trs: NoiseOp(s),
}

def list_ops() -> list[str]:
    """Names of all registered ops, sorted."""
    return sorted(_OPS)


def create_op(name: str, C: int, stride: int, affine: bool = True, track_running_stats: bool = True) -> nn.Module:
    """Build op `name` for C channels: (B, C, H, W) -> (B, C, H/stride, W/stride).

    Raises:
        KeyError: `name` is not registered; the message lists the valid names.
    """
    try:
        factory = _OPS[name]
    except KeyError:
        raise UnknownNameError(f"unknown op {name!r}; valid ops: {', '.join(list_ops())}") from None
    return factory(C, stride, affine, track_running_stats)
