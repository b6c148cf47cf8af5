"""The search supernet: mixed op, search cells and search networks (DARTS and PC-DARTS bases).

- `darts` base (Liu et al., ICLR 2019, section 2.2): every mixed op sees all C channels,
  ``o_bar_e(x) = sum_o alpha_e[o] * o(x)``.
- `pcdarts` base (Xu et al., ICLR 2020, sections 3.2-3.3): 1/K of the channels go through the mixed op, the rest
  bypass it (max-pooled on reduction edges), then a channel shuffle; node j sums its incoming edges weighted by
  softmax(beta_j) (edge normalisation).

Search-mode BN has no affine parameters (DARTS); `track_running_stats` is a constructor argument. The
`none` op is never computed: its output is zero, so skipping it changes nothing but the cost. On CPU the mixed op
runs its convolutions and pooling channels-last (`MixedOp`; docs/method.md 2.8): again only the cost changes, and
the summation order inside the convolutions.

`SearchModel` bundles the network weights (`net`) and the `Architecture` (`arch`): one forward computes the
alphas once per step and runs the network with them. The device is given from outside (`.to(device)`).

The cells here (`MixedOp`, `SearchCell`, `NB201SearchCell`, `cell_forward`) are the *reference*: the method as
written, one op of one edge at a time. The networks run them as `itnas.fused.FusedCell`s by default (`fused=True`;
`fuse_cells_`): the same function, built from these cells with their initial weights, in ~5x fewer kernel launches
(docs/method.md 2.11; equal to the reference in tests/test_fused.py).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .arch import Architecture, ArchState
from .fused import FusedCell
from .macro import darts_stack
from .methods import (
    DEFAULT_DIRICHLET_ANCHOR,
    DEFAULT_DIRICHLET_KL,
    DEFAULT_TRANSITION_GAMMA,
    DEFAULT_TRANSITION_INIT,
)
from .ops import FactorizedReduce, ReLUConvBN, conv_bn_channels_last, create_op
from .samplers import ArchSampler
from .spaces import SearchSpace

__all__ = ["SEARCH_NETWORKS", "MixedOp", "NB201SearchNetwork", "PoolBN", "SearchCell", "SearchModel", "SearchNetwork",
           "cell_forward", "channel_shuffle", "create_search_model", "fuse_cells_", "is_channels_last", "shuffle_cat"]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of `groups` groups (ShuffleNet; PC-DARTS). (B, C, H, W) -> (B, C, H, W): new channel
    i * groups + g = old channel g * (C / groups) + i."""
    B, C, H, W = x.shape
    x = x.view(B, groups, C // groups, H, W).transpose(1, 2)  # (B, C/g, g, H, W)
    return x.reshape(B, C, H, W)


def shuffle_cat(out: torch.Tensor, bypass: torch.Tensor, groups: int) -> torch.Tensor:
    """`channel_shuffle(torch.cat([out, bypass], 1), groups)` in one copy (PC-DARTS: the mixed op's channels and the
    bypassed ones, interleaved). out: (B, c, H, W), bypass: (B, (groups - 1) * c, H, W) -> (B, groups * c, H, W),
    channels-last when out is (the same interleaving on the (B, H, W, C) view), else contiguous."""
    B, c, H, W = out.shape
    if is_channels_last(out):
        rest = bypass.permute(0, 2, 3, 1).reshape(B, H, W, groups - 1, c).transpose(3, 4)  # (B, H, W, c, g - 1)
        y = torch.cat([out.permute(0, 2, 3, 1).unsqueeze(4), rest], dim=4)  # (B, H, W, c, g)
        return y.view(B, H, W, groups * c).permute(0, 3, 1, 2)
    rest = bypass.reshape(B, groups - 1, c, H, W).transpose(1, 2)  # (B, c, g - 1, H, W)
    return torch.cat([out.unsqueeze(2), rest], dim=2).view(B, groups * c, H, W)  # (B, c, g, H, W) -> (B, C, H, W)


def is_channels_last(x: torch.Tensor) -> bool:
    """x (B, C, H, W) is stored channels-last (and not also plain contiguous, as when C == 1 or H == W == 1)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class PoolBN(nn.Sequential):
    """A pooling op followed by BN(affine=False) (DARTS search code): (B, C, H, W) -> (B, C, H', W')."""

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """forward(x), the pooling channels-last, the BN and the output contiguous (`conv_bn_channels_last`)."""
        return conv_bn_channels_last(self, x)


class MixedOp(nn.Module):
    """Weighted sum of the candidate ops of one edge.

    Args:
        C: channels of the edge. stride: 1, or 2 on the input edges of a reduction cell.
        op_names: the K candidate ops of this edge.
        partial_k: PC-DARTS K; 1 = all channels (darts base). C must be divisible by it.
        pool_bn: append BN(affine=False) to pooling ops (DARTS search code).
        track_running_stats: of the search BNs.

    forward(x (B, C, H, W), alpha (K,), op=None) -> (B, C, H/stride, W/stride), in the memory format of x. `op`
    (GDAS, docs/method.md 2.12): the index of the one op to compute, alpha[op] * o_op(x) (zeros for `none`); the
    other ops are not run and their weights get no gradient.

    Speed, same maths: `none` is never computed (its alpha still weighs in the softmax; its term is exactly 0); the
    terms are accumulated in place; on CPU with a contiguous x, x is converted
    to channels-last once and every op with a `forward_channels_last` (convolutions, pooling) runs its
    convolutions and pooling channels-last and its BN contiguous (`itnas.ops.conv_bn_channels_last`): results equal
    up to the summation order inside the convolutions, search steps 1.8x (darts base) and 1.5x (pcdarts base)
    faster on a 2-core AMD EPYC (reports/bench-search-speed.json). A channels-last x (the model in channels-last,
    `precision.channels_last`) runs every op channels-last, BN included.
    """

    def __init__(self, C: int, stride: int, op_names: tuple[str, ...], partial_k: int = 1, pool_bn: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        if C % partial_k:
            raise ValueError(f"channels C={C} must be divisible by partial_k={partial_k}")
        self.partial_k, self.stride, self.C, self.track_running_stats = partial_k, stride, C, track_running_stats
        c_op = C // partial_k
        self.active = [k for k, name in enumerate(op_names) if name != "none"]
        ops = []
        for name in op_names:
            if name == "none":
                ops.append(nn.Identity())  # placeholder, never called: keeps op index == alpha index
                continue
            op = create_op(name, c_op, stride, affine=False, track_running_stats=track_running_stats)
            if pool_bn and "pool" in name:
                op = PoolBN(op, nn.BatchNorm2d(c_op, affine=False, track_running_stats=track_running_stats))
            ops.append(op)
        self.ops = nn.ModuleList(ops)
        self.channels_last_ops = [k for k in self.active if hasattr(self.ops[k], "forward_channels_last")]

    def forward(self, x: torch.Tensor, alpha: torch.Tensor, op: int | None = None) -> torch.Tensor:
        channels_last = is_channels_last(x)
        fast = x.device.type == "cpu" and not channels_last
        active = self.active if op is None else [k for k in self.active if k == op]
        if self.partial_k == 1:
            return self._mix(x, alpha, fast, active)
        c_op = x.shape[1] // self.partial_k
        x_op, x_bypass = x[:, :c_op], x[:, c_op:]
        if channels_last:
            x_op = x_op.contiguous(memory_format=torch.channels_last)  # a dense copy of the slice, read by every op
        out = self._mix(x_op, alpha, fast, active)  # (B, C/K, H', W')
        if out.shape[2] != x.shape[2]:
            x_bypass = F.max_pool2d(x_bypass, 2, 2, ceil_mode=True)  # ceil: odd H matches the strided ops
        if channels_last != is_channels_last(out):  # a 1x1 map is both: keep the input's format
            out = out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        return shuffle_cat(out, x_bypass, self.partial_k)

    def _mix(self, x: torch.Tensor, alpha: torch.Tensor, fast: bool, active: list[int]) -> torch.Tensor:
        """sum_{k active} alpha[k] * op_k(x), accumulated in place in op order: the same additions, in the same
        order, as sum(alpha[k] * op_k(x) for k in active), without a temporary per term. fast: run the ops that
        have one through `forward_channels_last` (CPU, contiguous input)."""
        x_cl = None
        if fast and any(k in self.channels_last_ops for k in active):
            x_cl = x.contiguous(memory_format=torch.channels_last)  # one conversion for every op that uses it
        weights = alpha.unbind(0)
        out = None
        for k in active:
            op = self.ops[k]
            h = op.forward_channels_last(x_cl) if x_cl is not None and k in self.channels_last_ops else op(x)
            term = weights[k] * h
            out = term if out is None else out.add_(term)
        if out is None:  # every op is `none`
            return torch.zeros_like(x[:, :, ::self.stride, ::self.stride])
        return out


def cell_forward(space: SearchSpace, edges: nn.ModuleList, states: list[torch.Tensor], alpha: torch.Tensor,
                 edge_weights: torch.Tensor | None = None,
                 sampled: tuple[int, ...] | None = None) -> list[torch.Tensor]:
    """The generic search-cell forward over `space.incoming` (docs/method.md 2.1): x_j = sum_{i<j} o_bar_(i,j)(x_i),
    each term weighted by the PC-DARTS edge weight when given.

    Args:
        edges: one MixedOp per edge, in the space's edge order. states: the input nodes' tensors (B, C, H, W).
        alpha: (E, K). edge_weights: (E,) or None (darts base). sampled: GDAS (docs/method.md 2.12): the op index of
            every edge (E ints), the only op each edge computes; None: every op.

    Returns:
        every node's tensor: the inputs followed by the intermediate nodes (appended to `states`).
    """
    for j in space.intermediate_nodes:
        terms = []
        for e in space.incoming[j]:
            h = edges[e](states[space.edges[e][0]], alpha[e], None if sampled is None else sampled[e])
            terms.append(h if edge_weights is None else edge_weights[e] * h)
        states.append(_add_all(terms))
    return states


def _add_all(terms: list[torch.Tensor]) -> torch.Tensor:
    """terms[0] + terms[1] + ... in that order (as `sum(terms)`, without its leading `0 +` copy); the partial sums
    are accumulated in place into the first, fresh sum."""
    if len(terms) == 1:
        return terms[0]
    out = terms[0] + terms[1]
    for t in terms[2:]:
        out.add_(t)
    return out


class SearchCell(nn.Module):
    """A DARTS-space search cell: 2 inputs, intermediate nodes, output = concat of intermediate nodes.

    forward(s0 (B, C_pp, H, W), s1 (B, C_p, H', W'), alpha (E, K), edge_weights (E,) or None, sampled (E ints) or
    None) -> (B, n_intermediate * C, H'/r, W'/r), r = 2 in a reduction cell.
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

    def forward(self, s0, s1, alpha: torch.Tensor, edge_weights: torch.Tensor | None = None,
                sampled: tuple[int, ...] | None = None) -> torch.Tensor:
        states = cell_forward(self.space, self.edges, [self.preprocess0(s0), self.preprocess1(s1)], alpha,
                              edge_weights, sampled)
        return torch.cat(states[self.space.n_inputs:], dim=1)


class SearchNetwork(nn.Module):
    """DARTS-space search network (DARTS `model_search.Network`; PC-DARTS with partial_k > 1).

    Args:
        space: a DARTS-like space (darts, s1..s4). C: initial channels. layers: cells (reduction cells at
        layers//3 and 2*layers//3). num_classes. in_channels: image channels (3 RGB, 1 grey).
        partial_k: PC-DARTS K (1 = darts base). track_running_stats: of every search BN.
        stem_multiplier: stem width = stem_multiplier * C.
        fused: run the cells as `itnas.fused.FusedCell`s (the same maths in ~5x fewer kernel launches; built from
            the reference `SearchCell`s, so the initial weights are the same); False: the reference cells.

    forward(x (B, in_channels, H, W), state: ArchState) -> logits (B, num_classes).
    """

    def __init__(self, space: SearchSpace, C: int, layers: int, num_classes: int, in_channels: int = 3,
                 partial_k: int = 1, track_running_stats: bool = True, stem_multiplier: int = 3,
                 fused: bool = True):
        super().__init__()
        if space.n_inputs != 2:
            raise ValueError(f"SearchNetwork needs a 2-input (DARTS-like) space, got {space.name}")
        C_stem = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_stem, 3, padding=1, bias=False), nn.BatchNorm2d(C_stem))
        n_nodes = len(space.intermediate_nodes)
        slots = darts_stack(layers, C, stem_multiplier, lambda cell_type: n_nodes)
        self.cells = nn.ModuleList(
            SearchCell(space, s.cell_type, s.C_pp, s.C_p, s.C, s.reduction_prev, partial_k, track_running_stats)
            for s in slots)
        self.cell_types: list[str] = [s.cell_type for s in slots]
        self.fused = False
        if fused:
            fuse_cells_(self)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(slots[-1].C_out, num_classes)

    def forward(self, x: torch.Tensor, state: ArchState) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        if self.fused:
            mixing = _mixing(self.cells, self.cell_types, state)
            for cell, t in zip(self.cells, self.cell_types, strict=True):
                s0, s1 = s1, cell(s0, s1, mixing=mixing[t])
            return self.classifier(self.global_pooling(s1).flatten(1))
        for cell, t in zip(self.cells, self.cell_types, strict=True):
            w = None if state.edge_weights is None else state.edge_weights[t]
            s0, s1 = s1, cell(s0, s1, state.alphas[t], w, None if state.sampled is None else state.sampled[t])
        return self.classifier(self.global_pooling(s1).flatten(1))


class NB201SearchCell(nn.Module):
    """NAS-Bench-201 search cell: node 0 = input, nodes 1..3, output = node 3. (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, space: SearchSpace, C: int, partial_k: int, track_running_stats: bool):
        super().__init__()
        self.space = space
        self.edges = nn.ModuleList(MixedOp(C, 1, space.ops["normal"][e], partial_k, False, track_running_stats)
                                   for e in range(space.n_edges))

    def forward(self, x, alpha: torch.Tensor, edge_weights: torch.Tensor | None = None,
                sampled: tuple[int, ...] | None = None) -> torch.Tensor:
        return cell_forward(self.space, self.edges, [x], alpha, edge_weights, sampled)[-1]


class ResNetBasicBlock(nn.Module):
    """NB201 reduction block: ReLUConvBN(3x3, s2) -> ReLUConvBN(3x3) + (avgpool 2, conv1x1) shortcut.

    forward(x (B, C_in, H, W), alpha=None, edge_weights=None) -> (B, C_out, H/2, W/2); it takes (and ignores) the
    architecture arguments so that the NB201 stack calls cells and blocks alike.
    """

    def __init__(self, C_in: int, C_out: int, track_running_stats: bool = True):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, 2, 1, True, track_running_stats)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1, True, track_running_stats)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(C_in, C_out, 1, bias=False))

    def forward(self, x: torch.Tensor, alpha: torch.Tensor | None = None,
                edge_weights: torch.Tensor | None = None, sampled: tuple[int, ...] | None = None) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.downsample(x)


class NB201SearchNetwork(nn.Module):
    """NAS-Bench-201 search network: 3 stages of `cells_per_stage` cells (C, 2C, 4C) joined by residual blocks.

    forward(x (B, in_channels, H, W), state) -> (B, num_classes). fused: as `SearchNetwork`.
    """

    def __init__(self, space: SearchSpace, C: int, cells_per_stage: int, num_classes: int, in_channels: int = 3,
                 partial_k: int = 1, track_running_stats: bool = True, fused: bool = True):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        blocks: list[nn.Module] = []
        for stage in range(3):
            c = C * 2 ** stage
            if stage:
                blocks.append(ResNetBasicBlock(c // 2, c, track_running_stats))
            blocks += [NB201SearchCell(space, c, partial_k, track_running_stats) for _ in range(cells_per_stage)]
        self.cells = nn.ModuleList(blocks)
        self.fused = False
        if fused:
            fuse_cells_(self)
        self.lastact = nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU())
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * C, num_classes)

    def forward(self, x: torch.Tensor, state: ArchState) -> torch.Tensor:
        h = self.stem(x)
        if self.fused:
            mixing = _mixing(self.cells, ["normal" if isinstance(b, FusedCell) else "" for b in self.cells], state)
            for block in self.cells:
                h = block(h, mixing=mixing["normal"]) if isinstance(block, FusedCell) else block(h)
            return self.classifier(self.global_pooling(self.lastact(h)).flatten(1))
        w = None if state.edge_weights is None else state.edge_weights["normal"]
        sampled = None if state.sampled is None else state.sampled["normal"]
        for block in self.cells:
            h = block(h, state.alphas["normal"], w, sampled)
        return self.classifier(self.global_pooling(self.lastact(h)).flatten(1))


def fuse_cells_(net: nn.Module) -> nn.Module:
    """Replace the reference cells of a `SearchNetwork` / `NB201SearchNetwork` by `FusedCell`s computing the same
    function (same weights and BN statistics, stacked; `FusedCell.from_reference`), in place; returns `net`.
    A fused network stays as it is."""
    if net.fused:
        return net
    cells = []
    for i, cell in enumerate(net.cells):
        if isinstance(cell, SearchCell):
            cell = FusedCell.from_reference(cell, net.cell_types[i], cell.edges[0].C, cell.edges[0].partial_k,
                                            cell.edges[0].track_running_stats, True)
        elif isinstance(cell, NB201SearchCell):
            cell = FusedCell.from_reference(cell, "normal", cell.edges[0].C, cell.edges[0].partial_k,
                                            cell.edges[0].track_running_stats, False)
        cells.append(cell)
    net.cells, net.fused = nn.ModuleList(cells), True
    return net


def _mixing(cells: nn.ModuleList, cell_types: list[str], state: ArchState) -> dict[str, list]:
    """Cell type -> `FusedCell.mixing` of that type's alphas (and PC-DARTS edge weights), computed once per forward
    by the first fused cell of the type (every cell of a type has the same plan)."""
    mixing = {}
    for cell, t in zip(cells, cell_types, strict=True):
        if t and t not in mixing:
            w = None if state.edge_weights is None else state.edge_weights[t]
            alpha = state.alphas[t]
            with torch.autocast(alpha.device.type, enabled=False):  # coefficients in the alphas' dtype, as alphas
                mixing[t] = cell.mixing(alpha, w, None if state.sampled is None else state.sampled[t])
    return mixing


SEARCH_NETWORKS: dict[str, type[nn.Module]] = {"darts": SearchNetwork, "nb201": NB201SearchNetwork}
"""Supernet of each macro layout (`SearchSpace.layout`): every registered space is built through this registry."""


class SearchModel(nn.Module):
    """Supernet weights (`net`) + architecture parameters (`arch`). forward(x (B, C_in, H, W)) -> (B, classes).

    `sampler`: an `itnas.samplers.ArchSampler` (set by the search for the sampling methods gdas and drnas;
    docs/method.md 2.12) or None: with one, every training forward draws its architecture (`arch_state`); without
    one (and for every other method), forwards use `arch()`."""

    def __init__(self, net: nn.Module, arch: Architecture):
        super().__init__()
        self.net, self.arch = net, arch
        self.sampler: ArchSampler | None = None

    def arch_state(self) -> ArchState:
        """The architecture of a training forward: a draw from `sampler` for a sampling method when a sampler is
        set, else `arch()`."""
        if self.sampler is not None and self.arch.spec.sampler is not None:
            return self.arch.sample(self.sampler)
        return self.arch()

    def forward(self, x: torch.Tensor, state: ArchState | None = None) -> torch.Tensor:
        """x (B, C_in, H, W) -> logits (B, classes). `state` is computed here when None (`arch_state`), never under
        autocast: the alphas (softmax, transitions, attention) stay in the architecture's dtype even inside an amp
        region."""
        if state is None:
            if torch.is_autocast_enabled(x.device.type):
                with torch.autocast(x.device.type, enabled=False):
                    state = self.arch_state()
            else:
                state = self.arch_state()
        return self.net(x, state)

    def weight_parameters(self) -> list[nn.Parameter]:
        """Network weights w (optimized on search-train)."""
        return list(self.net.parameters())

    def arch_parameters(self) -> list[nn.Parameter]:
        """Architecture parameters (a, Theta, b, beta; optimized on search-val)."""
        return list(self.arch.parameters())


def create_search_model(space: SearchSpace, method: str, base: str = "auto", C: int = 16, layers: int = 8,
                        num_classes: int = 10, in_channels: int = 3, partial_k: int = 4,
                        track_running_stats: bool = True, alpha_init_scale: float = 1e-3,
                        transition_init: str = DEFAULT_TRANSITION_INIT,
                        transition_gamma: float = DEFAULT_TRANSITION_GAMMA, fused: bool = True,
                        dirichlet_kl: float = DEFAULT_DIRICHLET_KL,
                        dirichlet_anchor: float = DEFAULT_DIRICHLET_ANCHOR) -> SearchModel:
    """Build the supernet of `space` for `method` on `base` ("auto" = the method's default).

    `partial_k` applies on the pcdarts base only. For NB201, `layers` is the number of cells per stage. `fused`:
    the cells as `itnas.fused.FusedCell`s (default; the same maths and initial weights as the reference cells,
    fewer kernel launches); False: the reference `MixedOp` cells. dirichlet_kl, dirichlet_anchor: drnas's
    regulariser (`itnas.arch.Architecture`).

    Raises:
        KeyError: unknown method. ValueError: unknown base, or C not divisible by partial_k.
    """
    arch = Architecture(space, method, base, alpha_init_scale, transition_init, transition_gamma, dirichlet_kl,
                        dirichlet_anchor)
    k = partial_k if arch.base_spec.partial_channels else 1
    net = SEARCH_NETWORKS[space.layout](space, C, layers, num_classes, in_channels, k, track_running_stats,
                                        fused=fused)
    return SearchModel(net, arch)
