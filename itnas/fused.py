"""The fused search cell: the same maths as `itnas.supernet.SearchCell` / `NB201SearchCell` (one `MixedOp` per edge),
in far fewer kernel launches (docs/method.md 2.11).

On a GPU a supernet step is bound by the number of kernels it launches: the straightforward cell runs every op of
every edge on its own (a DARTS-space search step dispatched ~40,000 aten ops, as many as the public DARTS code).
This cell computes the same sums with the work that edges share done once, and the work of one kind batched:

- **Waves.** The edges leaving the cell's inputs form the first wave; the edges leaving intermediate node j form
  wave j. All inputs of a wave are known when it starts; the wave adds its terms to every later node at once.
- **One ReLU and one replicated input per wave.** Every parametric op (sep/dil/nor conv, the strided skip) starts
  with a ReLU of its edge's input: the wave stacks its edges' inputs along the channels, (B, n*c, H, W), and applies
  the ReLU once.
- **One grouped kernel per op kind.** The n edges' copies of one op kind are one stacked op: a depthwise conv with
  n*c groups, a pointwise / full conv with n groups (`itnas.stacked`: `StackedSepConv`, `StackedDilConv`,
  `StackedReLUConvBN`, `StackedFactorizedReduce`). Weights are stacked along the output channels: edge i owns rows
  i*c..(i+1)*c.
- **Shared ops once per source.** Pooling, the pooling BN (affine-free batch norm in train mode: the same function
  of the same input) and the stride-1 skip are the same tensor for every edge leaving one node: computed once per
  source node, their alphas summed into one coefficient per (source, destination).
- **One batch norm per wave.** The last batch norm of every parametric op and every pooling BN normalise
  per channel: one `BatchNorm2d` over all of them concatenated.
- **One mixing matmul per wave.** Every node's sum over its incoming edges and their ops,
  x_j += sum_e sum_k alpha_e[k] * o_k(x_src(e)), is one batched matmul of a (J, T) coefficient matrix with the
  wave's T stacked terms (J destination nodes). The coefficient matrices of every wave of a cell type are one
  constant 0/1 matrix times the flattened alphas: computed once per step for all cells of that type
  (`FusedCell.mixing`).
- **GDAS** (docs/method.md 2.12). Given a sampled op per edge (`FusedCell.mixing(..., sampled)`), every wave
  computes only the sampled terms (`select_terms`): each stacked op on the edges that sampled it (their rows of
  the stacked weights), each shared op on the sources some edge of which sampled it, the batch norm on the
  channels of those terms; the mixing matmul keeps their columns.
- **PC-DARTS.** The bypassed channels and the edge weights are linear in the node sum, and the channel shuffle is
  a permutation: node j = shuffle(sum_e w_e * mix_e, sum_e w_e * bypass_src(e)), one shuffle per node, not per
  edge.

What is kept exactly: `none` terms are never computed (a one-hot alpha on `none` gives exactly zero), every other
term and every gradient equals the reference up to the order of floating-point sums (tests/test_fused.py, float64,
every registered space x method x base: outputs and input, alpha and weight gradients within 4e-15; the test
asserts 1e-12). The batch-norm running statistics
of the shared ops are kept once per source instead of once per edge (they were equal copies; under GDAS, where the
edges leaving a source sample differently, the one copy moves whenever some edge sampled the op). Parameters are
stacked, so the state_dict of a fused supernet has its own keys; `FusedCell.from_reference` builds one from a
reference cell (same initial values), which is how `create_search_model` makes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .stacked import batch_norm, channel_index, last_bn, load_bn, stacked_op

__all__ = ["FusedCell", "WaveSelection", "plan_waves", "select_terms"]

POOLS = ("max_pool_3x3", "avg_pool_3x3")
#: Ops computed once per source node and shared by every edge leaving it (at stride 1 for skip_connect).
SHARED_OPS = frozenset({*POOLS, "skip_connect"})


# ---------------------------------------------------------------------------------------------------------------
# The plan: which edges, ops and terms each wave computes (pure Python, built once per cell).
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Wave:
    """The edges leaving `sources`, and the terms they add to the pending nodes `dests`.

    Attributes:
        sources: the S node ids whose out-edges this wave computes. dests: the J node ids it adds to (every node
            still pending, ascending). stride: of every edge of the wave. edges: its edge indices (canonical order).
        per_edge: op name -> the edges that have it, for the ops computed per edge (parametric ops, noise, and
            skip_connect at stride 2), in stacking order. shared: op names computed once per source (pooling,
            skip_connect at stride 1).
        bn_terms / plain_terms: the T terms, in stacking order: (op name, edge) for a per-edge op, (op name,
            -1 - source position) for a shared op; `bn_terms` go through the wave's batch norm.
        completes: how many pending nodes are complete after this wave (they leave the front of `dests`).
        source_pos: edge -> the position of its source in `sources`.
    """

    sources: tuple[int, ...]
    dests: tuple[int, ...]
    stride: int
    edges: tuple[int, ...]
    per_edge: dict[str, tuple[int, ...]]
    shared: tuple[str, ...]
    bn_terms: tuple[tuple[str, int], ...]
    plain_terms: tuple[tuple[str, int], ...]
    completes: int
    source_pos: dict[int, int]

    @property
    def terms(self) -> tuple[tuple[str, int], ...]:
        return self.bn_terms + self.plain_terms


def plan_waves(edges: tuple[tuple[int, int], ...], op_names: tuple[tuple[str, ...], ...], n_inputs: int,
               n_nodes: int, input_stride: int, pool_bn: bool) -> list[Wave]:
    """The waves of a cell with `edges` (src, dst) and per-edge op names; edges from the inputs have stride
    `input_stride`; `pool_bn`: pooling ops end in a batch norm (DARTS search code).

    Raises:
        ValueError: the cell is not fusable: some wave does not reach every pending node (an incomplete DAG).
    """
    waves: list[Wave] = []
    pending = list(range(n_inputs, n_nodes))
    done: set[int] = set()
    for sources in [tuple(range(n_inputs))] + [(j,) for j in range(n_inputs, n_nodes)]:
        wave_edges = tuple(e for e, (s, _) in enumerate(edges) if s in sources)
        done.update(sources)
        if not wave_edges:
            continue
        dests = tuple(sorted({edges[e][1] for e in wave_edges}))
        if list(dests) != pending:
            raise ValueError(f"the edges leaving nodes {list(sources)} reach nodes {list(dests)}, not every pending "
                             f"node {pending}: only complete cell DAGs are fused")
        stride = input_stride if sources[0] < n_inputs else 1
        per_edge: dict[str, list[int]] = {}
        shared: set[str] = set()
        for e in wave_edges:
            for name in op_names[e]:
                if name == "none":
                    continue
                if name in SHARED_OPS and not (name == "skip_connect" and stride != 1):
                    shared.add(name)
                else:
                    per_edge.setdefault(name, []).append(e)
        shared_ops = tuple(n for n in ("max_pool_3x3", "avg_pool_3x3", "skip_connect") if n in shared)
        for name in shared_ops:  # a shared op is computed for every source of the wave: each must have it
            missing = [s for s in sources if not any(edges[e][0] == s and name in op_names[e] for e in wave_edges)]
            if missing:
                raise ValueError(f"op {name} leaves nodes {list(sources)} but not node(s) {missing}: not fused "
                                 f"(build the supernet with fused=False)")
        src_terms = [(name, -1 - i) for name in shared_ops for i in range(len(sources))]
        bn_terms = [(name, e) for name, es in per_edge.items() if name != "noise" for e in es]
        bn_terms += [t for t in src_terms if pool_bn and t[0] in POOLS]
        plain_terms = [t for t in src_terms if not (pool_bn and t[0] in POOLS)]
        plain_terms += [("noise", e) for e in per_edge.get("noise", [])]
        completes = 0
        while pending[completes:] and all(s in done for s, d in edges if d == pending[completes]):
            completes += 1
        waves.append(Wave(sources, dests, stride, wave_edges, {k: tuple(v) for k, v in per_edge.items()},
                          shared_ops, tuple(bn_terms), tuple(plain_terms), completes,
                          {e: sources.index(edges[e][0]) for e in wave_edges}))
        pending = pending[completes:]
    if pending:
        raise ValueError(f"nodes {pending} are never completed")
    return waves


def mixing_matrices(waves: list[Wave], edges: tuple[tuple[int, int], ...],
                    op_names: tuple[tuple[str, ...], ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The constant 0/1 matrices that turn alphas into every wave's mixing coefficients.

    Returns:
        coeff_map (sum_w J_w * T_w, E * K): row (wave w, node j, term t), column e * K + k is 1 when op k of edge e
        is term t of wave w and e ends at j (a shared term sums every edge from its source to j).
        bypass_map (sum_w J_w * S_w, E): row (wave w, node j, source i), column e is 1 when e goes from source i
        to j (the PC-DARTS edge weights of the bypassed channels).
    """
    K = len(op_names[0])
    coeff_rows, bypass_rows = [], []
    for wave in waves:
        J, T, S = len(wave.dests), len(wave.terms), len(wave.sources)
        coeff = torch.zeros(J, T, len(edges) * K)
        bypass = torch.zeros(J, S, len(edges))
        for t, (name, who) in enumerate(wave.terms):
            for e in wave.edges:
                src, dst = edges[e]
                if name in op_names[e] and (who == e or (who < 0 and wave.sources[-1 - who] == src)):
                    coeff[wave.dests.index(dst), t, e * K + op_names[e].index(name)] = 1.0
        for e in wave.edges:
            src, dst = edges[e]
            bypass[wave.dests.index(dst), wave.sources.index(src), e] = 1.0
        coeff_rows.append(coeff.view(J * T, -1))
        bypass_rows.append(bypass.view(J * S, -1))
    return torch.cat(coeff_rows), torch.cat(bypass_rows)


@dataclass(frozen=True)
class WaveSelection:
    """What one wave computes under a GDAS sample (one op per edge; docs/method.md 2.12): the sampled terms only.

    Attributes:
        terms: indices into `Wave.terms` of the computed terms, ascending (the columns of the coefficients kept).
        bn: indices into `Wave.bn_terms` of the computed ones (their channels of the wave's batch norm).
        per_edge: op name -> positions into `Wave.per_edge[name]` of the edges that sampled it.
        shared: op name -> positions into `Wave.sources` of the sources with an edge that sampled it.
    """

    terms: tuple[int, ...]
    bn: tuple[int, ...]
    per_edge: dict[str, tuple[int, ...]]
    shared: dict[str, tuple[int, ...]]


def select_terms(wave: Wave, op_names: tuple[tuple[str, ...], ...], sampled: tuple[int, ...]) -> WaveSelection:
    """The `WaveSelection` of `wave` when edge e computes only its op `sampled[e]` (an index into op_names[e];
    `none` computes nothing)."""
    chosen = {e: op_names[e][sampled[e]] for e in wave.edges}
    per_edge = {name: tuple(i for i, e in enumerate(es) if chosen[e] == name) for name, es in wave.per_edge.items()}
    shared = {name: tuple(i for i in range(len(wave.sources))
                          if any(chosen[e] == name and wave.source_pos[e] == i for e in wave.edges))
              for name in wave.shared}

    def computed(term: tuple[str, int]) -> bool:
        name, who = term
        return chosen[who] == name if who >= 0 else (-1 - who) in shared[name]

    return WaveSelection(tuple(t for t, term in enumerate(wave.terms) if computed(term)),
                         tuple(t for t, term in enumerate(wave.bn_terms) if computed(term)), per_edge, shared)


def noise(ref: torch.Tensor, n: int) -> torch.Tensor:
    """RobustDARTS S4 `noise` of n edges at once: N(0, 1) of shape (B, n * C, H, W) for ref (B, C, H, W), in ref's
    dtype and device (drawn from the global generator of that device, as `itnas.ops.NoiseOp`)."""
    B, C, H, W = ref.shape
    return torch.randn(B, n * C, H, W, dtype=ref.dtype, device=ref.device)


# ---------------------------------------------------------------------------------------------------------------
# The fused wave and cell.
# ---------------------------------------------------------------------------------------------------------------

class FusedWave(nn.Module):
    """The computation of one `Wave`: one stacked op per per-edge op kind, the shared ops once per source, the
    wave's batch norm and its mixing matmul.

    Args:
        wave: the plan. C: node channels. partial_k: PC-DARTS K (1: darts base). track_running_stats: of the BNs.

    forward(xs: the S sources (B, C, H, W), coeff (J, T), bypass_coeff (J, S) or None, selection)
    -> (mix (B, J, c*H'*W'), bypass (B, J, (C - c)*H'*W') or None, (H', W')): this wave's share of every pending
    node: the sum of its terms weighted by `coeff`, and (pcdarts base, c = C / partial_k) of its sources' bypassed
    channels (max-pooled when strided) weighted by `bypass_coeff`. With a `WaveSelection` (GDAS), only its terms
    are computed and coeff is (J, len(selection.terms)).
    """

    def __init__(self, wave: Wave, C: int, partial_k: int, track_running_stats: bool):
        super().__init__()
        self.wave, self.partial_k, self.c = wave, partial_k, C // partial_k
        self.ops = nn.ModuleDict({name: stacked_op(name, len(es), self.c, wave.stride, track_running_stats)
                                  for name, es in wave.per_edge.items() if name != "noise"})
        n_bn = len(wave.bn_terms)
        self.bn = (nn.BatchNorm2d(n_bn * self.c, affine=False, track_running_stats=track_running_stats)
                   if n_bn else None)
        # per op kind: the source position of each of its edges = the blocks of its replicated input
        self.replicas = {name: tuple(wave.source_pos[e] for e in es) for name, es in wave.per_edge.items()}
        self.n_terms = len(wave.terms)  # plain ints and sets for the forward (the hot path), computed once
        self.shared_bn = {name for name, who in wave.bn_terms if who < 0}

    def forward(self, xs: list[torch.Tensor], coeff: torch.Tensor, bypass_coeff: torch.Tensor | None,
                selection: WaveSelection | None = None):
        wave, c, sel = self.wave, self.c, selection
        bypass = None
        if self.partial_k > 1:
            bypass = torch.cat([x[:, c:] for x in xs], 1) if len(xs) > 1 else xs[0][:, c:]
            xs = [x[:, :c] for x in xs]
        bn_in, plain = [], []
        relu_in: dict[tuple[int, ...], torch.Tensor] = {}
        for name, module in self.ops.items():
            blocks, pos = self.replicas[name], None
            if sel is not None and len(sel.per_edge[name]) < len(blocks):  # GDAS: the edges that sampled it only
                pos = sel.per_edge[name]
                if not pos:
                    continue
                blocks = tuple(blocks[i] for i in pos)
            if blocks not in relu_in:  # one ReLU per distinct replication (one per wave in the DARTS space)
                relu_in[blocks] = F.relu(torch.cat([xs[i] for i in blocks], 1) if len(blocks) > 1 else xs[blocks[0]])
            bn_in.append(module(relu_in[blocks], pos))
        sources: dict[tuple[int, ...], torch.Tensor] = {}
        for name in wave.shared:
            srcs = tuple(range(len(xs))) if sel is None else sel.shared[name]
            if not srcs:
                continue
            if srcs not in sources:  # (B, S*c, H, W): every source once
                sources[srcs] = torch.cat([xs[i] for i in srcs], 1) if len(srcs) > 1 else xs[srcs[0]]
            src = sources[srcs]
            if name == "max_pool_3x3":
                h = F.max_pool2d(src, 3, wave.stride, 1)
            elif name == "avg_pool_3x3":
                h = F.avg_pool2d(src, 3, wave.stride, 1, count_include_pad=False)
            else:
                h = src  # skip_connect at stride 1
            (bn_in if name in self.shared_bn else plain).append(h)
        if "noise" in wave.per_edge:  # RobustDARTS S4: N(0, 1) of each noise edge's (strided) input shape
            n_noise = len(self.replicas["noise"]) if sel is None else len(sel.per_edge["noise"])
            if n_noise:
                plain.append(noise(xs[0][:, :, ::wave.stride, ::wave.stride], n_noise))
        terms = []
        if bn_in:
            channels = None
            if sel is not None and len(sel.bn) < len(wave.bn_terms):
                channels = channel_index(sel.bn, c, bn_in[0].device)
            terms.append(batch_norm(self.bn, torch.cat(bn_in, 1) if len(bn_in) > 1 else bn_in[0], channels))
        terms += plain
        B, _, H, W = xs[0].shape
        if not terms:  # GDAS: every edge of the wave sampled `none`
            H, W = -(-H // wave.stride), -(-W // wave.stride)
            mix = xs[0].new_zeros(B, coeff.shape[0], c * H * W)
        else:
            y = torch.cat(terms, 1) if len(terms) > 1 else terms[0]  # (B, T*c, H', W')
            H, W = y.shape[2:]
            n_terms = self.n_terms if sel is None else len(sel.terms)
            mix = coeff.expand(B, -1, -1).bmm(y.reshape(B, n_terms, -1))  # (B, J, c*H'*W')
        if bypass is not None:
            if wave.stride != 1:
                bypass = F.max_pool2d(bypass, 2, 2, ceil_mode=True)  # ceil: odd H matches the strided ops
            bypass = bypass_coeff.expand(B, -1, -1).bmm(bypass.reshape(B, len(xs), -1))
        return mix, bypass, (H, W)

    def load_reference(self, mixed_ops: nn.ModuleList, op_names: tuple[tuple[str, ...], ...]) -> None:
        """Copy weights and BN statistics from the reference cell's mixed ops (`itnas.supernet.MixedOp`)."""
        for name, module in self.ops.items():
            module.load_reference([mixed_ops[e].ops[op_names[e].index(name)] for e in self.wave.per_edge[name]])
        if self.bn is not None:
            bns = []
            for name, who in self.wave.bn_terms:
                if who >= 0:
                    bns.append(last_bn(mixed_ops[who].ops[op_names[who].index(name)]))
                else:  # a shared pooling BN: the first edge from that source (every copy is equal)
                    e = next(e for e in self.wave.edges if self.wave.source_pos[e] == -1 - who and name in op_names[e])
                    bns.append(last_bn(mixed_ops[e].ops[op_names[e].index(name)]))
            load_bn(self.bn, bns)


class FusedCell(nn.Module):
    """A search cell computed wave by wave (module docstring): the same function as the reference cell it was
    built from (`from_reference`), with its preprocessing modules (DARTS cells) taken over as they are.

    Args:
        space: the search space. cell_type: "normal" or "reduce". C: node channels. partial_k: PC-DARTS K.
        track_running_stats: of the BNs. pool_bn: pooling ops end in a BN (DARTS cells; not NB201).
        preprocess: the reference cell's (preprocess0, preprocess1) for 2-input cells, else None.

    forward(*inputs (B, C_in, H, W) (DARTS: s0, s1; NB201: x), mixing: `mixing(alpha, edge_weights, sampled)` of
    this cell type) -> (B, n_intermediate * C, H', W') (output "concat") or the last node (B, C, H', W') ("last").

    Raises:
        ValueError: the space's cell DAG is not complete, or a shared op misses a source of a wave (`plan_waves`).
    """

    def __init__(self, space, cell_type: str, C: int, partial_k: int, track_running_stats: bool, pool_bn: bool,
                 preprocess: tuple[nn.Module, nn.Module] | None = None):
        super().__init__()
        self.space, self.cell_type, self.C, self.partial_k = space, cell_type, C, partial_k
        reduction = cell_type == "reduce"
        self.op_names = space.ops[cell_type]
        self.plan = plan_waves(space.edges, self.op_names, space.n_inputs, space.n_nodes, 2 if reduction else 1,
                               pool_bn)
        if preprocess is not None:
            self.preprocess0, self.preprocess1 = preprocess
        self.waves = nn.ModuleList(FusedWave(w, C, partial_k, track_running_stats) for w in self.plan)
        coeff_map, bypass_map = mixing_matrices(self.plan, space.edges, self.op_names)
        self.register_buffer("coeff_map", coeff_map, persistent=False)
        self.register_buffer("bypass_map", bypass_map, persistent=False)
        self.sizes = [(len(w.dests), len(w.terms), len(w.sources)) for w in self.plan]

    @classmethod
    def from_reference(cls, cell: nn.Module, cell_type: str, C: int, partial_k: int, track_running_stats: bool,
                       pool_bn: bool) -> FusedCell:
        """The fused cell of a reference `SearchCell` / `NB201SearchCell` (its `edges` are `MixedOp`s): the same
        weights and BN statistics, its preprocessing modules shared."""
        pre = (cell.preprocess0, cell.preprocess1) if hasattr(cell, "preprocess0") else None
        fused = cls(cell.space, cell_type, C, partial_k, track_running_stats, pool_bn, pre)
        ref = next(cell.parameters())
        fused.to(device=ref.device, dtype=ref.dtype)  # before copying: a float64 reference loses no digit
        for wave in fused.waves:
            wave.load_reference(cell.edges, fused.op_names)
        return fused

    def mixing(self, alpha: torch.Tensor, edge_weights: torch.Tensor | None, sampled: tuple[int, ...] | None = None
               ) -> list[tuple[torch.Tensor, torch.Tensor | None, WaveSelection | None]]:
        """Every wave's (coeff (J, T), bypass_coeff (J, S) or None, selection) from alpha (E, K) and the PC-DARTS
        edge weights (E,) or None: two matrix-vector products for all waves. The same for every cell of this type:
        computed once per forward by the network.

        sampled (GDAS, docs/method.md 2.12): the op index of every edge (E ints); each wave then computes only the
        sampled terms (`select_terms`) and coeff keeps their columns, (J, T'). alpha must then be zero, value and
        gradient, off the sampled ops (`itnas.arch.Architecture.sample`), else a shared term's coefficient could
        carry the alpha of an edge that did not sample it."""
        a = alpha if edge_weights is None else alpha * edge_weights[:, None]
        coeff = torch.mv(self.coeff_map.to(a.dtype), a.reshape(-1)).split([j * t for j, t, _ in self.sizes])
        bypass = [None] * len(self.sizes)
        if self.partial_k > 1:
            w = edge_weights if edge_weights is not None else alpha.new_ones(alpha.shape[0])
            bypass = torch.mv(self.bypass_map.to(w.dtype), w).split([j * s for j, _, s in self.sizes])
        if sampled is None:
            return [(c.view(j, t), None if b is None else b.view(j, s), None)
                    for c, b, (j, t, s) in zip(coeff, bypass, self.sizes, strict=True)]
        out = []
        for wave, c, b, (j, t, s) in zip(self.plan, coeff, bypass, self.sizes, strict=True):
            sel = select_terms(wave, self.op_names, sampled)
            c = c.view(j, t)
            if len(sel.terms) < t:
                c = c[:, list(sel.terms)]
            out.append((c, None if b is None else b.view(j, s), sel))
        return out

    def forward(self, *inputs: torch.Tensor,
                mixing: list[tuple[torch.Tensor, torch.Tensor | None, WaveSelection | None]]) -> torch.Tensor:
        if len(inputs) == 2:
            states = [self.preprocess0(inputs[0]), self.preprocess1(inputs[1])]
        else:
            states = list(inputs)
        C, c, k = self.C, self.C // self.partial_k, self.partial_k
        acc_mix = acc_bypass = None  # (B, pending nodes, ...) sums so far
        for wave, module, (coeff, bypass_coeff, sel) in zip(self.plan, self.waves, mixing, strict=True):
            mix, bypass, (H, W) = module([states[s] for s in wave.sources], coeff, bypass_coeff, sel)
            acc_mix = mix if acc_mix is None else acc_mix + mix
            if bypass is not None:
                acc_bypass = bypass if acc_bypass is None else acc_bypass + bypass
            for i in range(wave.completes):
                B = acc_mix.shape[0]
                node = acc_mix[:, i].view(B, c, H, W)
                if acc_bypass is not None:  # PC-DARTS: one channel shuffle per node
                    node = _shuffle_cat(node, acc_bypass[:, i].view(B, C - c, H, W), k)
                states.append(node)
            if wave.completes:
                acc_mix = acc_mix[:, wave.completes:]
                acc_bypass = None if acc_bypass is None else acc_bypass[:, wave.completes:]
        if self.space.output == "concat":
            return torch.cat(states[self.space.n_inputs:], dim=1)
        return states[-1]


def _shuffle_cat(out: torch.Tensor, bypass: torch.Tensor, groups: int) -> torch.Tensor:
    """channel_shuffle(cat([out, bypass], 1), groups) (PC-DARTS), contiguous: out (B, c, H, W), bypass
    (B, (groups - 1) * c, H, W) -> (B, groups * c, H, W); new channel i * groups + g = old channel g * c + i."""
    B, c, H, W = out.shape
    rest = bypass.reshape(B, groups - 1, c, H, W).transpose(1, 2)  # (B, c, g - 1, H, W)
    return torch.cat([out.unsqueeze(2), rest], dim=2).view(B, groups * c, H, W)
