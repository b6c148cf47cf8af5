"""At the default initialisation every group of architecture parameters learns from the first architecture step.

Under `transition_init: uniform` the inner alphas are uniform whatever their predecessors, and the attention
logits get a gradient of ~1e-9, below Adam's eps (1e-8): Adam barely moves them and `itnas` equals `itnas_noattn`.
The default (`identity`, gamma 2; docs/method.md 2.3) must give every group a gradient well above eps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from itnas.config import SearchConfig
from itnas.methods import BASES, get_method, list_methods
from itnas.search import build_search_model

ADAM_EPS = 1e-8
WELL_ABOVE = 10 * ADAM_EPS


def _batch(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    d = load_digits()
    x = torch.from_numpy(d.images[:n].astype(np.float32) / 16.0).unsqueeze(1)
    return (x - 0.3) / 0.4, torch.from_numpy(d.target[:n].astype(np.int64))


def _group_grads(cfg: SearchConfig, reduce=torch.max) -> dict[str, float]:
    """|gradient| of every architecture-parameter group after one search-val loss, reduced over the group's
    elements by `reduce` (largest by default; `torch.median`: the typical element)."""
    torch.manual_seed(0)
    model = build_search_model(cfg, 10, 1)
    model.train()
    x, y = _batch()
    named = dict(model.arch.named_parameters())
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), list(named.values()))
    parts: dict[str, list[torch.Tensor]] = {}
    for name, g in zip(named, grads, strict=True):
        group = "beta_logits" if "beta_logits" in name else name.split(".")[-1]
        parts.setdefault(group, []).append(g.abs().flatten())
    return {group: float(reduce(torch.cat(v))) for group, v in parts.items()}


def _expected_groups(method: str, base: str) -> set[str]:
    spec = get_method(method)
    groups = {"edge_logits"}
    if spec.inner == "transition" and spec.learn_transition:
        groups.add("transition_logits")
    if spec.inner == "transition" and spec.learn_attention:
        groups.add("attention_logits")
    if base == "pcdarts":
        groups.add("beta_logits")
    return groups


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("method", list_methods())
def test_every_group_learns_at_the_default_init(method, base):
    cfg = SearchConfig(method=method, supernet=dict(base=base, C=8, layers=5, partial_k=4))
    assert cfg.architecture.transition_init == "identity" and cfg.architecture.transition_gamma == 2.0
    grads = _group_grads(cfg)
    assert set(grads) == _expected_groups(method, base)
    weak = {g: v for g, v in grads.items() if v < WELL_ABOVE}
    assert not weak, f"{method} on {base}: groups with a gradient below {WELL_ABOVE:g} (10x Adam eps): {weak}"
    # not just one element: the typical element of every group is above Adam's eps too (measured: the smallest
    # median is the attention's on the pcdarts base, 1.3e-7)
    typical = _group_grads(cfg, torch.median)
    weak = {g: v for g, v in typical.items() if v < ADAM_EPS}
    assert not weak, f"{method} on {base}: groups whose median |gradient| is below Adam's eps: {weak}"


def test_uniform_init_starves_the_attention():
    """The failure the default avoids: under uniform transitions the attention gradient is float noise."""
    cfg = SearchConfig(method="itnas", supernet=dict(base="darts", C=8, layers=5),
                       architecture=dict(transition_init="uniform"))
    grads = _group_grads(cfg)
    assert grads["attention_logits"] < ADAM_EPS and _group_grads(cfg, torch.median)["attention_logits"] < ADAM_EPS
    assert grads["edge_logits"] > WELL_ABOVE and grads["transition_logits"] > WELL_ABOVE
