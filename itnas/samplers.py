"""The samplers of the sampling baselines (docs/method.md 2.12): what `gdas` and `drnas` draw per training forward.

- `gdas` (Dong & Yang, "Searching for A Robust Neural Architecture in Four GPU Hours", CVPR 2019): per edge a hard
  Gumbel-softmax sample, one-hot in the forward, with the straight-through gradient of the soft relaxation
  (`gumbel_softmax_st`); the temperature falls linearly over the search epochs (`gumbel_tau`).
- `drnas` (Chen et al., "DrNAS: Dirichlet Neural Architecture Search", ICLR 2021): per edge a reparameterised
  sample of Dir(elu(a) + 1) (`dirichlet_rsample`), and the regulariser KL(Dir(beta) || Dir(anchor)) (`dirichlet_kl`).

Every draw comes from an explicit `torch.Generator` (`ArchSampler`, owned and checkpointed by the search): no global
RNG state is read or changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .methods import DEFAULT_TAU_MAX, DEFAULT_TAU_MIN

__all__ = ["ArchSampler", "dirichlet_kl", "dirichlet_rsample", "gumbel_softmax_st", "gumbel_tau"]


@dataclass
class ArchSampler:
    """The randomness of a sampling method's training forwards (docs/method.md 2.12), owned by the search.

    Attributes:
        generator: every draw comes from it (never from the global RNG); on the architecture's device. Its state
            is checkpointed with the search, so a resumed search draws what an uninterrupted one would.
        tau: the Gumbel-softmax temperature (gdas; set per epoch by `gumbel_tau`); unused by drnas.
    """

    generator: torch.Generator
    tau: float = DEFAULT_TAU_MAX


def gumbel_tau(epoch: int, epochs: int, tau_max: float = DEFAULT_TAU_MAX, tau_min: float = DEFAULT_TAU_MIN) -> float:
    """The GDAS temperature of 0-based `epoch` of `epochs`: tau_max - (tau_max - tau_min) * epoch / (epochs - 1),
    tau_max at the first epoch and tau_min at the last (tau_max for a 1-epoch search)."""
    if epochs <= 1:
        return tau_max
    return tau_max - (tau_max - tau_min) * epoch / (epochs - 1)


def gumbel_softmax_st(logits: torch.Tensor, tau: float, generator: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """A hard Gumbel-softmax sample with straight-through gradients (Jang et al. 2017; GDAS, Dong & Yang 2019).

    g = -log(u), u ~ Exp(1) drawn from `generator` (u clamped to the smallest normal float, so g is finite);
    soft = softmax((log_softmax(logits) + g) / tau); index = argmax(soft); hard = one_hot(index);
    weights = hard - soft.detach() + soft: the value of hard, the gradient of soft.

    Args:
        logits: (..., K). tau: temperature > 0. generator: on logits' device.

    Returns:
        (weights (..., K), one-hot in value; index (...,) int64, the sampled op).
    """
    u = torch.empty_like(logits, requires_grad=False).exponential_(generator=generator)
    g = -u.clamp_min(torch.finfo(u.dtype).tiny).log()
    soft = F.softmax((F.log_softmax(logits, dim=-1) + g) / tau, dim=-1)
    index = soft.argmax(-1)
    hard = torch.zeros_like(soft).scatter_(-1, index.unsqueeze(-1), 1.0)
    return hard - soft.detach() + soft, index


class _DirichletSample(torch.autograd.Function):
    """x ~ Dir(concentration) from an explicit generator, with the implicit reparameterisation gradient: the
    computation of `torch.distributions.Dirichlet.rsample` (torch's `_Dirichlet`), which draws from the global RNG
    only."""

    @staticmethod
    def forward(ctx, concentration: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = torch._sample_dirichlet(concentration, generator=generator)
        ctx.save_for_backward(x, concentration)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, concentration = ctx.saved_tensors
        total = concentration.sum(-1, True).expand_as(concentration)
        dx = torch._dirichlet_grad(x, concentration, total)  # d x / d concentration, elementwise (implicit)
        return dx * (grad - (x * grad).sum(-1, True)), None


def dirichlet_rsample(concentration: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A reparameterised sample of Dir(concentration) per row, drawn from `generator`: (..., K) -> (..., K), each
    row on the simplex. Equal (value and gradient) to `torch.distributions.Dirichlet(concentration).rsample()`
    drawn from a global RNG in the generator's state (tests/test_samplers.py)."""
    return _DirichletSample.apply(concentration, generator)


def dirichlet_kl(concentration: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """KL(Dir(concentration) || Dir(anchor)) per row, closed form: (..., K), (..., K) -> (...,) nats.

    KL = lgamma(c0) - sum_k lgamma(c_k) - lgamma(a0) + sum_k lgamma(a_k) + sum_k (c_k - a_k)(digamma(c_k) -
    digamma(c0)), with c0 = sum_k c_k, a0 = sum_k a_k.
    """
    c0, a0 = concentration.sum(-1), anchor.sum(-1)
    return (torch.lgamma(c0) - torch.lgamma(concentration).sum(-1) - torch.lgamma(a0) + torch.lgamma(anchor).sum(-1)
            + ((concentration - anchor) * (torch.digamma(concentration) - torch.digamma(c0).unsqueeze(-1))).sum(-1))
