"""Architecture parameterisations: learnable logits -> alpha (the architecture weights of every edge).

This file is the core of ITNAS (Ma et al., "Inter-layer Transition in Neural Architecture Search",
arXiv 2011.14525). The paper's code was never released; the equations are this project's own formulation,
fixed in docs/method.md 2.3 and 2.5:

- outer edge e: ``alpha_e = softmax(a_e)``;
- inner edge e, in topological order: ``alpha_e = sum_{p in P(e)} w_e[p] * (alpha_p^T T_{p->e})`` with
  ``T_{p->e} = row_softmax(Theta_{p->e})`` (K x K) and ``w_e = softmax(b_e)`` over the predecessors P(e).

Methods (the registry `itnas.methods.METHODS`, light so that the params model does not import this module;
`create_architecture`):

| method          | outer       | inner                                          | default base |
| --------------- | ----------- | ---------------------------------------------- | ------------ |
| `itnas`         | softmax     | learned transition + learned attention         | pcdarts      |
| `itnas_noattn`  | softmax     | learned transition, uniform attention           | pcdarts      |
| `itnas_notrans` | softmax     | fixed identity transition, learned attention    | pcdarts      |
| `darts`         | softmax     | softmax (independent)                          | darts        |
| `pcdarts`       | softmax     | softmax (independent)                          | pcdarts      |
| `gdas`          | hard Gumbel-softmax sample, straight-through (every edge)    | darts        |
| `drnas`         | Dirichlet(elu(a) + 1) sample, reparameterised (every edge)   | darts        |

The sampling methods (docs/method.md 2.12; `MethodSpec.sampler`) draw the weights of a training forward from a
distribution over every edge's ops (`Architecture.sample`, with an explicit `torch.Generator`); their `forward()` is
the distribution's summary that the derivation and the records read: softmax(a) (gdas) and the Dirichlet mean
(drnas). They are baselines on plain edges, like darts: no transitions.

All architecture parameters are `nn.Parameter`s of `Architecture`, so `.to()`, `state_dict()` and optimizer
groups just work. PC-DARTS edge-normalisation logits `beta` (Xu et al., ICLR 2020, section 3.3) live here too
when the base is `pcdarts`, so that every architecture parameter is in one optimizer group.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .methods import (
    DEFAULT_DIRICHLET_ANCHOR,
    DEFAULT_DIRICHLET_KL,
    DEFAULT_TRANSITION_GAMMA,
    DEFAULT_TRANSITION_INIT,
    METHODS,
    MethodSpec,
    get_base,
    get_method,
)
from .samplers import ArchSampler, dirichlet_kl, dirichlet_rsample, gumbel_softmax_st
from .spaces import SearchSpace

__all__ = ["Architecture", "ArchState", "CellArchitecture", "create_architecture"]


def op_identity(ops_src: tuple[str, ...], ops_dst: tuple[str, ...]) -> torch.Tensor:
    """(K_src, K_dst) 0/1 matrix, 1 where the op names match. Rows of an op absent from `ops_dst` are zero."""
    return torch.tensor([[1.0 if a == b else 0.0 for b in ops_dst] for a in ops_src])


def _row_stochastic_identity(ops_src: tuple[str, ...], ops_dst: tuple[str, ...]) -> torch.Tensor:
    """The fixed transition of `itnas_notrans`: op o on p -> the same op on e; uniform when e lacks op o."""
    m = op_identity(ops_src, ops_dst)
    empty = m.sum(1) == 0
    m[empty] = 1.0 / m.shape[1]
    return m


class CellArchitecture(nn.Module):
    """Architecture parameters of one cell type (normal or reduction) and the map logits -> alpha.

    Args:
        space: the search space (E edges, K ops per edge).
        cell_type: "normal" or "reduce" (selects the op sets of the edges).
        method: a `MethodSpec`.
        alpha_init_scale: a_e ~ scale * N(0, 1) (DARTS code uses 1e-3).
        transition_init: "uniform" (Theta = 0) or "identity" (Theta = gamma * op-identity).
        transition_gamma: gamma of the identity initialisation.

    Parameters (P = number of (predecessor, inner edge) pairs, 16 in the DARTS cell):
        edge_logits: (E_indep, K) logits a_e of the edges with an own softmax (outer edges; all for `darts`).
        transition_logits: (P, K, K) Theta, when learned.
        attention_logits: (P,) b, segmented by inner edge, when learned.
    """

    def __init__(self, space: SearchSpace, cell_type: str, method: MethodSpec, alpha_init_scale: float = 1e-3,
                 transition_init: str = DEFAULT_TRANSITION_INIT, transition_gamma: float = DEFAULT_TRANSITION_GAMMA):
        super().__init__()
        if transition_init not in ("uniform", "identity"):
            raise ValueError(f"transition_init must be 'uniform' or 'identity', got {transition_init!r}")
        self.space, self.cell_type, self.method = space, cell_type, method
        ops = space.ops[cell_type]
        E, K = space.n_edges, space.n_ops
        transition = method.inner == "transition"
        self.indep_edges = [e for e in range(E) if not (transition and not space.is_outer(e))]
        self.inner_edges = [e for e in range(E) if e not in self.indep_edges]
        self.edge_logits = nn.Parameter(alpha_init_scale * torch.randn(len(self.indep_edges), K))
        # (pred p, inner edge e) pairs, contiguous per e: pair_slices[e] = (start, stop)
        self.pairs: list[tuple[int, int]] = []
        self.pair_slices: dict[int, tuple[int, int]] = {}
        for e in self.inner_edges:
            start = len(self.pairs)
            self.pairs += [(p, e) for p in space.predecessors[e]]
            self.pair_slices[e] = (start, len(self.pairs))
        P = len(self.pairs)
        self.transition_logits = None
        self.attention_logits = None
        if transition:
            ident = torch.stack([op_identity(ops[p], ops[e]) for p, e in self.pairs]) if P else torch.zeros(0, K, K)
            if method.learn_transition:
                init = transition_gamma * ident if transition_init == "identity" else torch.zeros(P, K, K)
                self.transition_logits = nn.Parameter(init)
            else:
                fixed = torch.stack([_row_stochastic_identity(ops[p], ops[e]) for p, e in self.pairs])
                self.register_buffer("fixed_transition", fixed, persistent=False)
            if method.learn_attention:
                self.attention_logits = nn.Parameter(torch.zeros(P))

    def transitions(self) -> torch.Tensor:
        """T for every pair: (P, K, K), each row a probability vector."""
        if self.transition_logits is not None:
            return F.softmax(self.transition_logits, dim=-1)
        return self.fixed_transition

    def attention(self, e: int) -> torch.Tensor:
        """w_e over P(e) for inner edge e: (|P(e)|,), sums to 1."""
        start, stop = self.pair_slices[e]
        if self.attention_logits is None:
            return torch.full((stop - start,), 1.0 / (stop - start), device=self.edge_logits.device,
                              dtype=self.edge_logits.dtype)
        return F.softmax(self.attention_logits[start:stop], dim=0)

    def concentration(self) -> torch.Tensor:
        """drnas: the Dirichlet concentration of every edge, elu(a) + 1: (E, K), every entry > 0.

        Computed as a + 1 for a > 0 and exp(a) for a <= 0 (the same function and gradient, without the cancellation
        of (exp(a) - 1) + 1, which is 0 in float32 from a < -17 on), floored at the smallest normal float."""
        a = self.edge_logits
        return torch.where(a > 0, a + 1.0, torch.exp(a.clamp(max=0.0))).clamp_min(torch.finfo(a.dtype).tiny)

    def sample(self, sampler: ArchSampler) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A training draw of every edge's weights (docs/method.md 2.12): (weights (E, K), sampled op (E,) or None).

        gumbel: `gumbel_softmax_st` at `sampler.tau`, times its one-hot: one-hot in value, and the gradient of the
        sampled op's straight-through weight only (the only op computed; the others are zero, value and gradient).
        dirichlet: `dirichlet_rsample` of `concentration()`, on the simplex; op None.

        Raises:
            ValueError: the method does not sample.
        """
        if self.method.sampler == "gumbel":
            weights, index = gumbel_softmax_st(self.edge_logits, sampler.tau, sampler.generator)
            return weights * F.one_hot(index, weights.shape[-1]).to(weights.dtype), index
        if self.method.sampler == "dirichlet":
            return dirichlet_rsample(self.concentration(), sampler.generator), None
        raise ValueError(f"method {self.method.name!r} does not sample its architecture; sampling methods: "
                         f"{', '.join(m.name for m in METHODS.values() if m.sampler)}")

    def forward(self) -> torch.Tensor:
        """alpha of every edge: (E, K), each row a probability vector (docs/method.md 2.3; drnas: the Dirichlet
        mean concentration / sum(concentration), docs/method.md 2.12)."""
        if self.method.sampler == "dirichlet":
            beta = self.concentration()
            indep = beta / beta.sum(-1, keepdim=True)
        else:
            indep = F.softmax(self.edge_logits, dim=-1)  # (E_indep, K)
        if not self.inner_edges:
            return indep
        alphas: list[torch.Tensor | None] = [None] * self.space.n_edges
        for slot, e in enumerate(self.indep_edges):
            alphas[e] = indep[slot]
        T = self.transitions()  # (P, K, K)
        for e in self.inner_edges:  # canonical order is topological: predecessors are already computed
            start, stop = self.pair_slices[e]
            preds = torch.stack([alphas[p] for p, _ in self.pairs[start:stop]])  # (|P(e)|, K)
            moved = torch.bmm(preds.unsqueeze(1), T[start:stop]).squeeze(1)  # alpha_p^T T_{p->e}: (|P(e)|, K)
            alphas[e] = self.attention(e) @ moved  # (K,)
        return torch.stack(alphas)

    def conditional(self, e: int, chosen: dict[int, int]) -> torch.Tensor:
        """q_e of the `sequential` derivation (docs/method.md 2.6): (K,).

        q_e = sum_{p in P*(e)} w~_e[p] * T_{p->e}[o*_p, :], with P*(e) the kept predecessors (keys of `chosen`,
        edge index -> chosen op index) and w~_e the attention renormalised over P*(e). For an edge with an own
        softmax this is simply alpha_e.

        Raises:
            ValueError: inner edge e has no kept predecessor.
        """
        if e not in self.pair_slices:
            return self.forward()[e]
        start, stop = self.pair_slices[e]
        w = self.attention(e)
        T = self.transitions()[start:stop]
        keep = [(k, p) for k, (p, _) in enumerate(self.pairs[start:stop]) if p in chosen]
        if not keep:
            raise ValueError(f"inner edge {self.space.edges[e]} has no kept predecessor edge")
        w_kept = torch.stack([w[k] for k, _ in keep])
        w_kept = w_kept / w_kept.sum()
        rows = torch.stack([T[k, chosen[p]] for k, p in keep])  # (|P*(e)|, K)
        return w_kept @ rows


@dataclass
class ArchState:
    """What one supernet forward needs, computed once per step (not once per cell).

    Attributes:
        alphas: cell type -> (E, K) alpha.
        edge_weights: cell type -> (E,) softmax(beta_j) weight of every edge within its node (pcdarts base),
            or None (darts base: every edge weight 1).
        sampled: gdas: cell type -> the op index of every edge (E ints), the only op each edge computes
            (docs/method.md 2.12); None: every op is computed.
    """

    alphas: dict[str, torch.Tensor]
    edge_weights: dict[str, torch.Tensor] | None
    sampled: dict[str, tuple[int, ...]] | None = None


class Architecture(nn.Module):
    """All architecture parameters of a search: one `CellArchitecture` per cell type, plus PC-DARTS betas.

    Args:
        space: search space.
        method: method name (see `list_methods()`).
        base: "darts" or "pcdarts"; "auto" takes the method's default.
        alpha_init_scale, transition_init, transition_gamma: see `CellArchitecture`.
        dirichlet_kl, dirichlet_anchor: drnas: coefficient lambda and anchor concentration of the regulariser
            lambda * sum_e KL(Dir(beta_e) || Dir(anchor * 1)) (`regularizer`; docs/method.md 2.12).

    Raises:
        KeyError: unknown method. ValueError: unknown base, or dirichlet_kl < 0 or dirichlet_anchor <= 0.
    """

    def __init__(self, space: SearchSpace, method: str, base: str = "auto", alpha_init_scale: float = 1e-3,
                 transition_init: str = DEFAULT_TRANSITION_INIT, transition_gamma: float = DEFAULT_TRANSITION_GAMMA,
                 dirichlet_kl: float = DEFAULT_DIRICHLET_KL, dirichlet_anchor: float = DEFAULT_DIRICHLET_ANCHOR):
        super().__init__()
        if dirichlet_kl < 0 or dirichlet_anchor <= 0:
            raise ValueError(f"dirichlet_kl must be >= 0 and dirichlet_anchor > 0, got {dirichlet_kl} and "
                             f"{dirichlet_anchor}")
        self.dirichlet_kl, self.dirichlet_anchor = dirichlet_kl, dirichlet_anchor
        self.spec = get_method(method)
        base = self.spec.default_base if base == "auto" else base
        self.base_spec = get_base(base)
        self.space, self.base = space, base
        self.cells = nn.ModuleDict({
            t: CellArchitecture(space, t, self.spec, alpha_init_scale, transition_init, transition_gamma)
            for t in space.cell_types
        })
        self.beta_logits = None
        if self.base_spec.edge_normalization:
            self.beta_logits = nn.ParameterDict({
                t: nn.Parameter(alpha_init_scale * torch.randn(space.n_edges)) for t in space.cell_types})

    def edge_weights(self, cell_type: str) -> torch.Tensor:
        """(E,) softmax of beta over the incoming edges of each intermediate node (PC-DARTS edge normalisation)."""
        beta = self.beta_logits[cell_type]
        # incoming edges of a node are contiguous in canonical order, nodes ascending: a segmented softmax
        return torch.cat([F.softmax(beta[edges[0]:edges[-1] + 1], dim=0) for edges in self.space.incoming.values()])

    def forward(self) -> ArchState:
        """Compute alphas (and edge weights) of every cell type: what derivation and records read (for the sampling
        methods, the summary of their distribution: softmax(a) for gdas, the Dirichlet mean for drnas)."""
        alphas = {t: cell() for t, cell in self.cells.items()}
        weights = None if self.beta_logits is None else {t: self.edge_weights(t) for t in self.cells}
        return ArchState(alphas, weights)

    def sample(self, sampler: ArchSampler) -> ArchState:
        """A training draw of the architecture (gdas, drnas; docs/method.md 2.12): every cell type's sampled
        weights (`CellArchitecture.sample`), the edge weights as in `forward`, and for gdas the sampled op of every
        edge (read on the host: one device sync per draw).

        Raises:
            ValueError: the method does not sample.
        """
        alphas, sampled = {}, {}
        for t, cell in self.cells.items():
            alphas[t], index = cell.sample(sampler)
            if index is not None:
                sampled[t] = tuple(index.tolist())
        weights = None if self.beta_logits is None else {t: self.edge_weights(t) for t in self.cells}
        return ArchState(alphas, weights, sampled or None)

    def eval_state(self) -> ArchState:
        """The architecture a supernet evaluation uses (search-val accuracy): `forward()`, except for gdas, whose
        supernet was trained on one op per edge: the argmax op of every edge, one-hot, computed alone."""
        if self.spec.sampler != "gumbel":
            return self.forward()
        alphas, sampled = {}, {}
        for t, cell in self.cells.items():
            index = cell.edge_logits.argmax(-1)
            alphas[t] = F.one_hot(index, cell.edge_logits.shape[-1]).to(cell.edge_logits.dtype)
            sampled[t] = tuple(index.tolist())
        weights = None if self.beta_logits is None else {t: self.edge_weights(t) for t in self.cells}
        return ArchState(alphas, weights, sampled)

    def regularizer(self) -> torch.Tensor | None:
        """drnas: lambda * sum over cell types and edges of KL(Dir(beta_e) || Dir(anchor * 1)), the term the
        architecture step adds to its loss (docs/method.md 2.12); None for every other method or lambda = 0."""
        if self.spec.sampler != "dirichlet" or not self.dirichlet_kl:
            return None
        total = None
        for cell in self.cells.values():
            beta = cell.concentration()
            kl = dirichlet_kl(beta, torch.full_like(beta, self.dirichlet_anchor)).sum()
            total = kl if total is None else total + kl
        return self.dirichlet_kl * total


def create_architecture(space: SearchSpace, method: str, **kwargs) -> Architecture:
    """Factory for `Architecture` (timm-style `create_*`). Raises KeyError for an unknown method."""
    return Architecture(space, method, **kwargs)
