"""Stacked ops of the fused search cell (`itnas.fused`, docs/method.md 2.11): n edges' copies of one op kind as one
grouped kernel.

Input of every stacked op: the wave's ReLU'd, replicated input (B, n*c, H, W), edge i in channels i*c..(i+1)*c.
Output: the op before its last batch norm (the wave's BN normalises every op's output at once). Weights are stacked
along the output channels: edge i owns rows i*c..(i+1)*c.

`forward(x, pos)`: `pos` None runs all n edges; a tuple of positions (ascending, into the n stacked edges) runs only
those edges' copies, on x (B, len(pos)*c, H, W) (their replicated inputs, in that order), with their rows of the
stacked weights: what a GDAS step computes (docs/method.md 2.12: only the sampled op of each edge). The rows of the
other edges take no part, so their gradient is exactly zero.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["StackedDilConv", "StackedFactorizedReduce", "StackedReLUConvBN", "StackedSepConv", "batch_norm",
           "channel_index", "load_bn", "stacked_op"]

Positions = tuple[int, ...] | None


def _rows(weight: torch.Tensor, n: int, pos: Positions) -> torch.Tensor:
    """The rows of the edges at `pos` of a weight stacked for n edges along dim 0: (n*r, ...) -> (len(pos)*r, ...)
    (the weight itself when pos is None)."""
    if pos is None:
        return weight
    blocks = weight.view(n, -1, *weight.shape[1:])
    if pos == tuple(range(pos[0], pos[0] + len(pos))):  # contiguous: a view, no gather
        return blocks[pos[0]:pos[0] + len(pos)].flatten(0, 1)
    return blocks[list(pos)].flatten(0, 1)


def channel_index(pos: tuple[int, ...], c: int, device: torch.device) -> torch.Tensor:
    """The channel indices of the blocks at `pos` of c channels each: (len(pos)*c,) int64."""
    return torch.tensor([p * c + i for p in pos for i in range(c)], dtype=torch.long, device=device)


class StackedDilConv(nn.Module):
    """n DARTS `DilConv`s (ReLU, depthwise dilated conv, pointwise conv, BN) as a depthwise conv with n*c groups and
    a pointwise conv with n groups. forward(x (B, n'*c, H, W), ReLU'd, pos) -> (B, n'*c, H', W'), before the BN."""

    def __init__(self, n: int, c: int, kernel_size: int, stride: int, padding: int, dilation: int):
        super().__init__()
        self.n, self.stride, self.padding, self.dilation = n, stride, padding, dilation
        self.depthwise = nn.Parameter(torch.empty(n * c, 1, kernel_size, kernel_size))
        self.pointwise = nn.Parameter(torch.empty(n * c, c, 1, 1))

    def forward(self, x: torch.Tensor, pos: Positions = None) -> torch.Tensor:
        depthwise = _rows(self.depthwise, self.n, pos)
        x = F.conv2d(x, depthwise, None, self.stride, self.padding, self.dilation, depthwise.shape[0])
        return F.conv2d(x, _rows(self.pointwise, self.n, pos), groups=self.n if pos is None else len(pos))

    def load_reference(self, dil_convs: list[nn.Module]) -> None:
        """Copy the weights of n `itnas.ops.DilConv`s (`.op` = ReLU, depthwise, pointwise, BN), in edge order."""
        with torch.no_grad():
            self.depthwise.copy_(torch.cat([d.op[1].weight for d in dil_convs]))
            self.pointwise.copy_(torch.cat([d.op[2].weight for d in dil_convs]))


class StackedSepConv(nn.Module):
    """n DARTS `SepConv`s: a stacked DilConv (dilation 1, strided), its BN, ReLU, a second stacked DilConv.
    forward(x (B, n'*c, H, W), ReLU'd, pos) -> (B, n'*c, H', W'), before the last BN."""

    def __init__(self, n: int, c: int, kernel_size: int, stride: int, padding: int, track_running_stats: bool):
        super().__init__()
        self.c = c
        self.first = StackedDilConv(n, c, kernel_size, stride, padding, 1)
        self.bn = nn.BatchNorm2d(n * c, affine=False, track_running_stats=track_running_stats)
        self.second = StackedDilConv(n, c, kernel_size, 1, padding, 1)

    def forward(self, x: torch.Tensor, pos: Positions = None) -> torch.Tensor:
        h = self.first(x, pos)
        channels = None if pos is None else channel_index(pos, self.c, h.device)
        return self.second(F.relu(batch_norm(self.bn, h, channels)), pos)

    def load_reference(self, sep_convs: list[nn.Module]) -> None:
        """Copy the weights and the middle BNs' statistics of n `itnas.ops.SepConv`s, in edge order."""
        self.first.load_reference([s.op[0] for s in sep_convs])
        self.second.load_reference([s.op[1] for s in sep_convs])
        load_bn(self.bn, [s.op[0].op[3] for s in sep_convs])


class StackedReLUConvBN(nn.Module):
    """n `ReLUConvBN`s (NAS-Bench-201 nor_conv_kxk) as one conv with n groups.
    forward(x (B, n'*c, H, W), ReLU'd, pos) -> (B, n'*c, H', W'), before the BN."""

    def __init__(self, n: int, c: int, kernel_size: int, stride: int, padding: int):
        super().__init__()
        self.n, self.stride, self.padding = n, stride, padding
        self.weight = nn.Parameter(torch.empty(n * c, c, kernel_size, kernel_size))

    def forward(self, x: torch.Tensor, pos: Positions = None) -> torch.Tensor:
        return F.conv2d(x, _rows(self.weight, self.n, pos), None, self.stride, self.padding,
                        groups=self.n if pos is None else len(pos))

    def load_reference(self, convs: list[nn.Module]) -> None:
        """Copy the weights of n `itnas.ops.ReLUConvBN`s, in edge order."""
        with torch.no_grad():
            self.weight.copy_(torch.cat([m.op[1].weight for m in convs]))


class StackedFactorizedReduce(nn.Module):
    """n DARTS `FactorizedReduce`s (skip_connect at stride 2): two offset 1x1 convs with n groups; each edge's output
    is [conv_1 half | conv_2 half]. forward(x (B, n'*c, H, W), ReLU'd, pos) -> (B, n'*c, ceil(H/2), ceil(W/2)),
    before the BN.

    Raises:
        ValueError: odd c.
    """

    def __init__(self, n: int, c: int):
        super().__init__()
        if c % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {c}")
        self.n, self.half = n, c // 2
        self.conv_1 = nn.Parameter(torch.empty(n * self.half, c, 1, 1))
        self.conv_2 = nn.Parameter(torch.empty(n * self.half, c, 1, 1))

    def forward(self, x: torch.Tensor, pos: Positions = None) -> torch.Tensor:
        n = self.n if pos is None else len(pos)
        a = F.conv2d(x[:, :, ::2, ::2], _rows(self.conv_1, self.n, pos), groups=n)
        b = F.conv2d(x[:, :, 1::2, 1::2], _rows(self.conv_2, self.n, pos), groups=n)
        if b.shape[-2:] != a.shape[-2:]:  # odd H or W: pad the shifted branch (as itnas.ops.FactorizedReduce)
            b = F.pad(b, (0, a.shape[-1] - b.shape[-1], 0, a.shape[-2] - b.shape[-2]))
        B, _, H, W = a.shape
        return torch.stack([a.view(B, n, self.half, H, W), b.view(B, n, self.half, H, W)], 2).view(B, -1, H, W)

    def load_reference(self, reduces: list[nn.Module]) -> None:
        """Copy the weights of n `itnas.ops.FactorizedReduce`s, in edge order."""
        with torch.no_grad():
            self.conv_1.copy_(torch.cat([r.conv_1.weight for r in reduces]))
            self.conv_2.copy_(torch.cat([r.conv_2.weight for r in reduces]))


def stacked_op(name: str, n: int, c: int, stride: int, track_running_stats: bool) -> nn.Module:
    """The stacked module of the per-edge op `name` for n edges of c channels.

    Raises:
        ValueError: `name` has no stacked form (pooling and stride-1 skip are shared ops, `none` is never computed).
    """
    if name.startswith("sep_conv_"):
        k = int(name[-1])
        return StackedSepConv(n, c, k, stride, k // 2, track_running_stats)
    if name.startswith("dil_conv_"):
        k = int(name[-1])
        return StackedDilConv(n, c, k, stride, k - 1, 2)
    if name.startswith("nor_conv_"):
        k = int(name[-1])
        return StackedReLUConvBN(n, c, k, stride, k // 2)
    if name == "skip_connect":
        return StackedFactorizedReduce(n, c)
    raise ValueError(f"op {name!r} has no stacked form; stacked ops: sep_conv_*, dil_conv_*, nor_conv_*, "
                     f"skip_connect (stride 2)")


def batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, channels: torch.Tensor | None = None) -> torch.Tensor:
    """bn(x) without the `num_batches_tracked += 1` of `nn.BatchNorm2d.forward`: one kernel less per BN; the counter
    matters only to a BN with momentum=None (a cumulative average), which no search BN is.

    channels: None, or the indices (C',) of the channels of `bn` that x (B, C', H, W) holds (a GDAS step computes
    only the sampled ops: their channels are normalised with their own statistics, and only their running
    statistics move, as their reference BNs' would).

    Raises:
        NotImplementedError: channels given for a BN other than `nn.BatchNorm2d` (a SyncBatchNorm).
    """
    if channels is None:
        if type(bn) is not nn.BatchNorm2d:  # e.g. a SyncBatchNorm of a data-parallel run: its own forward syncs
            return bn(x)
        use_batch_stats = bn.training or not bn.track_running_stats
        return F.batch_norm(x, bn.running_mean, bn.running_var, None, None, use_batch_stats, bn.momentum, bn.eps)
    if type(bn) is not nn.BatchNorm2d:
        raise NotImplementedError(f"a batch norm on a subset of its channels (gdas) needs nn.BatchNorm2d, got "
                                  f"{type(bn).__name__} (sync_batchnorm is not supported with gdas)")
    if not bn.track_running_stats:
        return F.batch_norm(x, None, None, None, None, True, 0.0, bn.eps)
    mean, var = bn.running_mean[channels], bn.running_var[channels]  # copies, updated in place by a train-mode BN
    out = F.batch_norm(x, mean, var, None, None, bn.training, bn.momentum, bn.eps)
    if bn.training:
        bn.running_mean.index_copy_(0, channels, mean)
        bn.running_var.index_copy_(0, channels, var)
    return out


def last_bn(module: nn.Module) -> nn.BatchNorm2d:
    """The last `BatchNorm2d` of a reference op (the one a fused wave's BN takes over)."""
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)][-1]


def load_bn(bn: nn.BatchNorm2d, bns: list[nn.BatchNorm2d]) -> None:
    """bn's running statistics = those of `bns`, concatenated (nothing to copy without running statistics)."""
    if bn.track_running_stats:
        with torch.no_grad():
            bn.running_mean.copy_(torch.cat([b.running_mean for b in bns]))
            bn.running_var.copy_(torch.cat([b.running_var for b in bns]))
            bn.num_batches_tracked.copy_(bns[0].num_batches_tracked)
