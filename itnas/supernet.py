"""The search supernet: mixed op, search cells and search networks (DARTS and PC-DARTS bases).

- `darts` base (Liu et al., ICLR 2019, section 2.2): every mixed op sees all C channels,
  ``o_bar_e(x) = sum_o alpha_e[o] * o(x)``.
- `pcdarts` base (Xu et al., ICLR 2020, sections 3.2-3.3): 1/K of the channels go through the mixed op, the rest
  bypass it (max-pooled on reduction edges), then a channel shuffle; node j sums its incoming edges weighted by
  softmax(beta_j) (edge normalisation).

Search-mode BN has no affine parameters (DARTS); `track_running_stats` is a constructor argument. The
`none` op is never computed: its output is zero, so skipping it changes nothing but the cost.

`SearchModel` bundles the network weights (`net`) and the `Architecture` (`arch`): one forward computes the
alphas once per step and runs the network with them. The device is given from outside (`.to(device)`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .arch import Architecture, ArchState
from .ops import FactorizedReduce, ReLUConvBN, create_op
from .spaces import SearchSpace

__all__ = ["MixedOp", "SearchCell", "SearchModel", "SearchNetwork", "NB201SearchNetwork", "channel_shuffle",
           "create_search_model"]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of `groups` groups (ShuffleNet; PC-DARTS). (B, C, H, W) -> (B, C, H, W)."""
    B, C, H, W = x.shape
    x = x.view(B, groups, C // groups, H, W).transpose(1, 2)  # (B, C/g, g, H, W)
    return x.reshape(B, C, H, W)


class MixedOp(nn.Module):
    """Weighted sum of the candidate ops of one edge.

    Args:
        C: channels of the edge. stride: 1, or 2 on the input edges of a reduction cell.
        op_names: the K candidate ops of this edge.
        partial_k: PC-DARTS K; 1 = all channels (darts base). C must be divisible by it.
        pool_bn: append BN(affine=False) to pooling ops (DARTS search code).
        track_running_stats: of the search BNs.

    forward(x (B, C, H, W), alpha (K,)) -> (B, C, H/stride, W/stride).
    """

    def __init__(self, C: int, stride: int, op_names: tuple[str, ...], partial_k: int = 1, pool_bn: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        if C % partial_k:
            raise ValueError(f"channels C={C} must be divisible by partial_k={partial_k}")
        self.partial_k, self.stride = partial_k, stride
        c_op = C // partial_k
        self.active = [k for k, name in enumerate(op_names) if name != "none"]
        ops = []
        for name in op_names:
            if name == "none":
                ops.append(nn.Identity())  # placeholder, never called: keeps op index == alpha index
                continue
            op = create_op(name, c_op, stride, affine=False, track_running_stats=track_running_stats)
            if pool_bn and "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(c_op, affine=False, track_running_stats=track_running_stats))
            ops.append(op)
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        if self.partial_k == 1:
            return sum(alpha[k] * self.ops[k](x) for k in self.active)
        c_op = x.shape[1] // self.partial_k
        x_op, x_bypass = x[:, :c_op], x[:, c_op:]
        out = sum(alpha[k] * self.ops[k](x_op) for k in self.active)  # (B, C/K, H', W')
        if out.shape[2] != x.shape[2]:
            x_bypass = F.max_pool2d(x_bypass, 2, 2, ceil_mode=True)  # ceil: odd H matches the strided ops
        return channel_shuffle(torch.cat([out, x_bypass], dim=1), self.partial_k)


class SearchCell(nn.Module):
    """A DARTS-space search cell: 2 inputs, intermediate nodes, output = concat of intermediate nodes.

    forward(s0 (B, C_pp, H, W), s1 (B, C_p, H', W'), alpha (E, K), edge_weights (E,) or None)
    -> (B, n_intermediate * C, H'/r, W'/r), r = 2 in a reduction cell.
    """

    def __init__(self, space: SearchSpace, cell_type: str, C_pp: int, C_p: int, C: int, reduction_prev: bool,
                 partial_k: int, track_running_stats: bool):
        super().__init__()
        self.space, self.reduction = space, cell_type == "reduce"
        trs = track_running_stats
        self.preprocess0 = (FactorizedReduce(C_pp, C, False, trs) if reduction_prev
                            else ReLUConvBN(C_pp, C, 1, 1, 0, False, trs))
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, False, trs)
        self.edges = nn.ModuleList(
            MixedOp(C, 2 if self.reduction and src < space.n_inputs else 1, space.ops[cell_type][e], partial_k,
                    True, trs)
            for e, (src, _dst) in enumerate(space.edges))
        self.multiplier = len(space.intermediate_nodes)

    def forward(self, s0, s1, alpha: torch.Tensor, edge_weights: torch.Tensor | None = None) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for j in self.space.intermediate_nodes:
            terms = []
            for e in self.space.incoming[j]:
                h = self.edges[e](states[self.space.edges[e][0]], alpha[e])
                terms.append(h if edge_weights is None else edge_weights[e] * h)
            states.append(sum(terms))
        return torch.cat(states[self.space.n_inputs:], dim=1)


class SearchNetwork(nn.Module):
    """DARTS-space search network (DARTS `model_search.Network`; PC-DARTS with partial_k > 1).

    Args:
        space: a DARTS-like space (darts, s1..s4). C: initial channels. layers: cells (reduction cells at
        layers//3 and 2*layers//3). num_classes. in_channels: image channels (3 RGB, 1 grey).
        partial_k: PC-DARTS K (1 = darts base). track_running_stats: of every search BN.
        stem_multiplier: stem width = stem_multiplier * C.

    forward(x (B, in_channels, H, W), state: ArchState) -> logits (B, num_classes).
    """

    def __init__(self, space: SearchSpace, C: int, layers: int, num_classes: int, in_channels: int = 3,
                 partial_k: int = 1, track_running_stats: bool = True, stem_multiplier: int = 3):
        super().__init__()
        if space.n_inputs != 2:
            raise ValueError(f"SearchNetwork needs a 2-input (DARTS-like) space, got {space.name}")
        C_curr = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_curr, 3, padding=1, bias=False), nn.BatchNorm2d(C_curr))
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        self.cell_types: list[str] = []
        reduction_prev = False
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_curr *= 2
            cell_type = "reduce" if reduction else "normal"
            cell = SearchCell(space, cell_type, C_pp, C_p, C_curr, reduction_prev, partial_k, track_running_stats)
            self.cells.append(cell)
            self.cell_types.append(cell_type)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * C_curr
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_p, num_classes)

    def forward(self, x: torch.Tensor, state: ArchState) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell, t in zip(self.cells, self.cell_types):
            w = None if state.edge_weights is None else state.edge_weights[t]
            s0, s1 = s1, cell(s0, s1, state.alphas[t], w)
        return self.classifier(self.global_pooling(s1).flatten(1))


class NB201SearchCell(nn.Module):
    """NAS-Bench-201 search cell: node 0 = input, nodes 1..3, output = node 3. (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, space: SearchSpace, C: int, partial_k: int, track_running_stats: bool):
        super().__init__()
        self.space = space
        self.edges = nn.ModuleList(MixedOp(C, 1, space.ops["normal"][e], partial_k, False, track_running_stats)
                                   for e in range(space.n_edges))

    def forward(self, x, alpha: torch.Tensor, edge_weights: torch.Tensor | None = None) -> torch.Tensor:
        states = [x]
        for j in self.space.intermediate_nodes:
            terms = []
            for e in self.space.incoming[j]:
                h = self.edges[e](states[self.space.edges[e][0]], alpha[e])
                terms.append(h if edge_weights is None else edge_weights[e] * h)
            states.append(sum(terms))
        return states[-1]


class ResNetBasicBlock(nn.Module):
    """NB201 reduction block: ReLUConvBN(3x3, s2) -> ReLUConvBN(3x3) + (avgpool 2, conv1x1) shortcut."""

    def __init__(self, C_in: int, C_out: int, track_running_stats: bool = True):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, 2, 1, True, track_running_stats)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1, True, track_running_stats)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(C_in, C_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.downsample(x)


class NB201SearchNetwork(nn.Module):
    """NAS-Bench-201 search network: 3 stages of `cells_per_stage` cells (C, 2C, 4C) joined by residual blocks.

    forward(x (B, in_channels, H, W), state) -> (B, num_classes).
    """

    def __init__(self, space: SearchSpace, C: int, cells_per_stage: int, num_classes: int, in_channels: int = 3,
                 partial_k: int = 1, track_running_stats: bool = True):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        blocks: list[nn.Module] = []
        for stage in range(3):
            c = C * 2 ** stage
            if stage:
                blocks.append(ResNetBasicBlock(c // 2, c, track_running_stats))
            blocks += [NB201SearchCell(space, c, partial_k, track_running_stats) for _ in range(cells_per_stage)]
        self.cells = nn.ModuleList(blocks)
        self.lastact = nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU())
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * C, num_classes)

    def forward(self, x: torch.Tensor, state: ArchState) -> torch.Tensor:
        h = self.stem(x)
        w = None if state.edge_weights is None else state.edge_weights["normal"]
        for block in self.cells:
            h = block(h, state.alphas["normal"], w) if isinstance(block, NB201SearchCell) else block(h)
        return self.classifier(self.global_pooling(self.lastact(h)).flatten(1))


class SearchModel(nn.Module):
    """Supernet weights (`net`) + architecture parameters (`arch`). forward(x (B, C_in, H, W)) -> (B, classes)."""

    def __init__(self, net: nn.Module, arch: Architecture):
        super().__init__()
        self.net, self.arch = net, arch

    def forward(self, x: torch.Tensor, state: ArchState | None = None) -> torch.Tensor:
        return self.net(x, self.arch() if state is None else state)

    def weight_parameters(self) -> list[nn.Parameter]:
        """Network weights w (optimized on search-train)."""
        return list(self.net.parameters())

    def arch_parameters(self) -> list[nn.Parameter]:
        """Architecture parameters (a, Theta, b, beta; optimized on search-val)."""
        return list(self.arch.parameters())


def create_search_model(space: SearchSpace, method: str, base: str = "auto", C: int = 16, layers: int = 8,
                        num_classes: int = 10, in_channels: int = 3, partial_k: int = 4,
                        track_running_stats: bool = True, alpha_init_scale: float = 1e-3,
                        transition_init: str = "uniform", transition_gamma: float = 1.0) -> SearchModel:
    """Build the supernet of `space` for `method` on `base` ("auto" = the method's default).

    `partial_k` applies on the pcdarts base only. For NB201, `layers` is the number of cells per stage.

    Raises:
        KeyError: unknown method. ValueError: unknown base, or C not divisible by partial_k.
    """
    arch = Architecture(space, method, base, alpha_init_scale, transition_init, transition_gamma)
    k = partial_k if arch.base == "pcdarts" else 1
    if space.name == "nb201":
        net = NB201SearchNetwork(space, C, layers, num_classes, in_channels, k, track_running_stats)
    else:
        net = SearchNetwork(space, C, layers, num_classes, in_channels, k, track_running_stats)
    return SearchModel(net, arch)
