"""Golden parameter counts against the published code (DARTS / PC-DARTS search logs and papers).

- DARTS `train_search.py` (C=16, 8 cells, CIFAR-10) logs "param size = 1.930618MB"; 14 edges x 8 ops x 2 cells
  = 224 architecture logits.
- PC-DARTS `train_search.py` (K=4) logs "param size = 0.299578MB"; plus 2 x 14 edge betas = 252 arch params.
- DARTS V2 (C=36, 20 cells): 3,349,342 parameters (the paper's 3.3M), 3,825,768 with the auxiliary head.
- PC-DARTS CIFAR cell: 3,634,678 (the paper's 3.6M).
"""

from __future__ import annotations

import pytest
import torch

from itnas.genotype import PUBLISHED_GENOTYPES
from itnas.networks import count_parameters, create_final_network
from itnas.spaces import create_space
from itnas.supernet import create_search_model


def _n(params) -> int:
    return sum(p.numel() for p in params)


def test_darts_search_supernet_counts():
    model = create_search_model(create_space("darts"), "darts", C=16, layers=8, num_classes=10, in_channels=3)
    assert model.arch.base == "darts"
    assert _n(model.weight_parameters()) == 1_930_618
    assert _n(model.arch_parameters()) == 224


def test_pcdarts_search_supernet_counts():
    model = create_search_model(create_space("darts"), "pcdarts", C=16, layers=8, num_classes=10, in_channels=3,
                                partial_k=4)
    assert model.arch.base == "pcdarts"
    assert _n(model.weight_parameters()) == 299_578
    assert _n(model.arch_parameters()) == 252


def test_darts_v2_final_network_counts():
    torch.manual_seed(0)
    net = create_final_network(PUBLISHED_GENOTYPES["darts_v2"], C=36, layers=20, num_classes=10, auxiliary=True)
    assert count_parameters(net) == 3_349_342
    assert count_parameters(net, exclude_auxiliary=False) == 3_825_768
    no_aux = create_final_network(PUBLISHED_GENOTYPES["darts_v2"], C=36, layers=20, num_classes=10, auxiliary=False)
    assert count_parameters(no_aux, exclude_auxiliary=False) == 3_349_342


def test_pcdarts_final_network_count():
    net = create_final_network(PUBLISHED_GENOTYPES["pcdarts_cifar"], C=36, layers=20, num_classes=10, auxiliary=False)
    assert count_parameters(net) == 3_634_678


@pytest.mark.parametrize("name", sorted(PUBLISHED_GENOTYPES))
def test_final_network_tiny_forward(name):
    """The same construction at a tiny size runs and gives (B, classes) logits, aux only in training."""
    torch.manual_seed(0)
    net = create_final_network(PUBLISHED_GENOTYPES[name], C=4, layers=3, num_classes=7, auxiliary=True)
    net.train()
    logits, aux = net(torch.randn(2, 3, 8, 8))
    assert logits.shape == (2, 7) and aux.shape == (2, 7)
    net.eval()
    logits, aux = net(torch.randn(2, 3, 8, 8))
    assert logits.shape == (2, 7) and aux is None


@pytest.mark.parametrize("name,madds", [("darts_v2", 528_359_040), ("pcdarts_cifar", 556_670_592)])
def test_published_genotype_multiply_adds(name, madds):
    """Multiply-adds at C=36, 20 cells, 32x32 (convolutions + classifier; pooling free), as counted with torch's
    own nn.AvgPool2d before AvgPool3x3 existed: pooling must stay uncounted."""
    from itnas.networks import count_multiply_adds

    net = create_final_network(PUBLISHED_GENOTYPES[name], C=36, layers=20, num_classes=10, auxiliary=False)
    assert count_multiply_adds(net, (3, 32, 32)) == madds
