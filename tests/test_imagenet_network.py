"""The ImageNet mobile-setting network (DARTS `model.py` NetworkImageNet; Liu et al., DARTS, ICLR 2019, section 3,
ImageNet transfer; docs/method.md 4.4), picked as final-network kind "imagenet".

Golden numbers, DARTS_V2 at C=48, 14 cells, 1000 classes:
- 4,718,752 parameters without the auxiliary head (docs/method.md 4.4; the paper's 4.7M), 5,979,528 with it (the
  DARTS-repo head: 1,260,776 parameters, no BN after its 2x2 conv).
- 529,911,552 multiply-adds at 224x224 (`count_multiply_adds`: convolutions + classifier, pooling free). The paper
  says 574M with an unpublished counter; public counters give 523M-545M (quark0/darts issue #46). The mobile
  setting asks for < 600M.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from itnas.genotype import PUBLISHED_GENOTYPES, Genotype
from itnas.networks import (
    FINAL_NETWORK_KINDS,
    FINAL_NETWORKS,
    FinalNetwork,
    FinalNetworkImageNet,
    count_multiply_adds,
    count_parameters,
    create_final_network,
    final_network_from_config,
    has_final_network,
    list_final_network_kinds,
)

DARTS_V2 = PUBLISHED_GENOTYPES["darts_v2"]


@pytest.fixture(scope="module")
def mobile_net() -> FinalNetworkImageNet:
    """DARTS_V2 at the DARTS ImageNet size (C=48, 14 cells, 1000 classes), built once."""
    torch.manual_seed(0)
    return create_final_network(DARTS_V2, C=48, layers=14, num_classes=1000, auxiliary=True, kind="imagenet")


def test_darts_v2_imagenet_parameter_count(mobile_net):
    assert isinstance(mobile_net, FinalNetworkImageNet)
    assert count_parameters(mobile_net) == 4_718_752
    assert count_parameters(mobile_net, exclude_auxiliary=False) == 5_979_528
    no_aux = create_final_network(DARTS_V2, C=48, layers=14, num_classes=1000, auxiliary=False, kind="imagenet")
    assert no_aux.auxiliary_head is None
    assert count_parameters(no_aux, exclude_auxiliary=False) == 4_718_752


def test_darts_v2_imagenet_mobile_setting_multiply_adds(mobile_net):
    """Measured 529,911,552 (529.9M) multiply-adds at 224x224; the paper reports 574M; the mobile limit is 600M."""
    madds = count_multiply_adds(mobile_net, (3, 224, 224))
    assert madds == 529_911_552
    assert madds < 600_000_000
    assert mobile_net.training  # count_multiply_adds restores the mode


def test_darts_v2_imagenet_layout(mobile_net):
    """The DARTS NetworkImageNet layout: stride-8 stem (C/2, C, C), cell 0 reads the stride-4 s0 by a factorized
    reduction, reductions at 14//3 = 4 and 2*14//3 = 9, the head reads cell 9; it and the classifier see 768
    channels."""
    convs = [m for m in [*mobile_net.stem0, *mobile_net.stem1] if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride) for c in convs] == [(3, 24, (2, 2)), (24, 48, (2, 2)),
                                                                         (48, 48, (2, 2))]
    assert [i for i, c in enumerate(mobile_net.cells) if c.reduction] == [4, 9]
    assert type(mobile_net.cells[0].preprocess0).__name__ == "FactorizedReduce"
    assert type(mobile_net.cells[5].preprocess0).__name__ == "FactorizedReduce"
    assert type(mobile_net.cells[1].preprocess0).__name__ == "ReLUConvBN"
    assert mobile_net.auxiliary_head.features[1].in_channels == 4 * 4 * 48
    assert not any(isinstance(m, torch.nn.BatchNorm2d) and m.num_features == 768
                   for m in mobile_net.auxiliary_head.modules())  # DARTS repo: no BN after the 2x2 conv
    assert mobile_net.classifier.in_features == 4 * 4 * 48  # the last cell has C=4*48 and concatenates 4 nodes


@pytest.mark.parametrize("name", sorted(PUBLISHED_GENOTYPES))
def test_imagenet_tiny_forward(name):
    """A small input (2x3x64x64, C=8, 5 cells): logits (2, classes); aux logits only in training; gradients flow."""
    torch.manual_seed(0)
    net = create_final_network(PUBLISHED_GENOTYPES[name], C=8, layers=5, num_classes=7, kind="imagenet")
    net.drop_path_prob = 0.2
    net.train()
    logits, aux = net(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 7) and aux.shape == (2, 7)
    (logits.sum() + 0.4 * aux.sum()).backward()
    assert net.stem0[0].weight.grad is not None and net.auxiliary_head.classifier.weight.grad is not None
    net.eval()
    logits, aux = net(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 7) and aux is None


def test_imagenet_aux_head_follows_darts_pooling_on_a_7x7_map():
    """At 224 px the head sees a 7x7 map: DARTS' AvgPool2d(5, stride 2, count_include_pad=False) gives 2x2, and the
    adaptive pool after it is a no-op; the head equals the DARTS head computed by hand."""
    torch.manual_seed(0)
    net = create_final_network(DARTS_V2, C=8, layers=5, num_classes=7, in_channels=1, kind="imagenet").eval()
    head = net.auxiliary_head
    x = torch.randn(2, head.features[1].in_channels, 7, 7)
    ref = torch.nn.functional.avg_pool2d(torch.relu(x), 5, 2, 0, count_include_pad=False)
    assert ref.shape[-2:] == (2, 2)
    ref = head.classifier(head.features[1:](ref).flatten(1))
    torch.testing.assert_close(head(x), ref, rtol=0, atol=0)


def test_imagenet_network_errors():
    with pytest.raises(ValueError, match="stem_stride must be 1"):
        create_final_network(DARTS_V2, C=8, layers=5, stem_stride=2, kind="imagenet")
    with pytest.raises(ValueError, match="even C"):
        create_final_network(DARTS_V2, C=7, layers=5, kind="imagenet")
    with pytest.raises(KeyError, match="valid kinds: cifar, imagenet"):
        create_final_network(DARTS_V2, C=8, layers=5, kind="mobile")
    nb201 = Genotype.from_nb201_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|skip_connect~0|"
                                       "nor_conv_3x3~1|nor_conv_3x3~2|")
    with pytest.raises(KeyError, match="has no 'imagenet' final network"):
        create_final_network(nb201, kind="imagenet")


def test_kind_registry():
    """FINAL_NETWORKS (keyed by layout) stays the CIFAR registry; kinds are a registry above it."""
    assert list_final_network_kinds() == ["cifar", "imagenet"]
    assert FINAL_NETWORK_KINDS["cifar"] is FINAL_NETWORKS and FINAL_NETWORKS == {"darts": FinalNetwork}
    assert FINAL_NETWORK_KINDS["imagenet"] == {"darts": FinalNetworkImageNet}
    assert has_final_network("darts") and has_final_network("darts", kind="imagenet")
    assert not has_final_network("nb201") and not has_final_network("nb201", kind="imagenet")
    assert isinstance(create_final_network(DARTS_V2, C=4, layers=3), FinalNetwork)  # default kind: cifar


def _config(kind: str | None) -> SimpleNamespace:
    """A FinalNetworkConfig-shaped object (duck-typed: NetworkConfig may not have `kind` yet)."""
    network = dict(C=8, layers=5, stem_stride=1, auxiliary=True)
    if kind is not None:
        network["kind"] = kind
    return SimpleNamespace(genotype=DARTS_V2.to_dict(), network=SimpleNamespace(**network), num_classes=5,
                           in_channels=3, image_size=32, mean=[0.5] * 3, std=[0.25] * 3)


def test_final_network_from_config_reads_the_kind():
    assert isinstance(final_network_from_config(_config("imagenet")), FinalNetworkImageNet)
    assert isinstance(final_network_from_config(_config("cifar")), FinalNetwork)
    assert isinstance(final_network_from_config(_config(None)), FinalNetwork)  # before `kind` exists: cifar


def test_final_network_from_real_config_is_cifar():
    """With the project's own FinalNetworkConfig (whether or not NetworkConfig has a `kind` field yet, its default
    is the CIFAR network)."""
    from itnas.contracts import FinalNetworkConfig
    from itnas.train_config import NetworkConfig

    config = FinalNetworkConfig(genotype=DARTS_V2.to_dict(), network=NetworkConfig(C=4, layers=3), num_classes=3,
                                in_channels=1, image_size=8, mean=[0.5], std=[0.25])
    assert isinstance(final_network_from_config(config), FinalNetwork)
