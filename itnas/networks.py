"""Final networks built from a `Genotype`, trained from scratch (DARTS `model.py` NetworkCIFAR/NetworkImageNet).

Recipe (docs/method.md 3; Liu et al., DARTS, section 3.3): stem 3x3 conv to 3C, `layers` cells with reduction cells at
layers//3 and 2*layers//3, auxiliary head at 2/3 depth, drop-path on every non-identity op.
The auxiliary head pools adaptively to 2x2 (DARTS uses avgpool(5, stride 3), which assumes an 8x8 map): same
parameters, and it also works on 28x28 inputs (7x7 maps).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .contracts import FinalNetworkConfig
from .genotype import Genotype
from .macro import auxiliary_layer, darts_stack
from .ops import AvgPool3x3, FactorizedReduce, Identity, ReLUConvBN, create_op
from .spaces import create_space

__all__ = ["FINAL_NETWORKS", "AuxiliaryHead", "FinalCell", "FinalNetwork", "count_multiply_adds", "count_parameters",
           "create_final_network", "drop_path", "final_network_from_config", "has_final_network"]


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability drop_prob and rescale the rest (FractalNet; DARTS). (B, ...) -> (B, ...)."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


class FinalCell(nn.Module):
    """A discrete DARTS-space cell. forward(s0, s1, drop_prob) -> (B, len(concat) * C, H/r, W/r)."""

    def __init__(self, genotype: Genotype, cell_type: str, C_pp: int, C_p: int, C: int, reduction_prev: bool):
        super().__init__()
        self.reduction = cell_type == "reduce"
        self.preprocess0 = FactorizedReduce(C_pp, C) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0)
        self.edges = list(getattr(genotype, cell_type))  # (op, src, dst), sorted by dst
        self.concat = list(getattr(genotype, f"{cell_type}_concat"))
        self.ops = nn.ModuleList(create_op(op, C, 2 if self.reduction and src < 2 else 1, True)
                                 for op, src, _ in self.edges)
        self.multiplier = len(self.concat)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = {0: self.preprocess0(s0), 1: self.preprocess1(s1)}
        for (_, src, dst), op in zip(self.edges, self.ops, strict=True):
            h = op(states[src])
            if self.training and drop_prob > 0 and not isinstance(op, Identity):
                h = drop_path(h, drop_prob)
            states[dst] = states[dst] + h if dst in states else h
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """Auxiliary classifier at 2/3 depth (DARTS AuxiliaryHeadCIFAR). (B, C, h, w) -> (B, num_classes)."""

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False), nn.AdaptiveAvgPool2d(2),
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


class FinalNetwork(nn.Module):
    """The network of a DARTS-space genotype (CIFAR layout).

    Args:
        genotype: a validated DARTS-like genotype. C: initial channels. layers: cells. num_classes.
        auxiliary: build the auxiliary head. in_channels: image channels.
        stem_multiplier: the stem has stem_multiplier * C channels (DARTS: 3).
        stem_stride: stride of the stem convolution (DARTS CIFAR: 1; 2 halves H and W before the first cell,
            which makes the network ~4x cheaper on large inputs).

    Raises:
        ValueError: a genotype of a space without 2 cell inputs, an invalid genotype, stem_stride not 1 or 2.

    forward(x (B, in_channels, H, W)) -> (logits (B, classes), aux_logits (B, classes) or None).
    `drop_path_prob` is an attribute set by the training loop (DARTS schedule: linear in the epoch).
    """

    def __init__(self, genotype: Genotype, C: int, layers: int, num_classes: int, auxiliary: bool = True,
                 in_channels: int = 3, stem_multiplier: int = 3, stem_stride: int = 1):
        super().__init__()
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
        if create_space(genotype.space).n_inputs != 2:
            raise ValueError(f"FinalNetwork builds DARTS-like genotypes, got space {genotype.space!r}")
        genotype.validate()
        self.layers, self.drop_path_prob = layers, 0.0
        C_stem = stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C_stem, 3, stem_stride, padding=1, bias=False),
                                  nn.BatchNorm2d(C_stem))
        slots = darts_stack(layers, C, stem_multiplier, lambda t: len(getattr(genotype, f"{t}_concat")))
        self.cells = nn.ModuleList(FinalCell(genotype, s.cell_type, s.C_pp, s.C_p, s.C, s.reduction_prev)
                                   for s in slots)
        self.auxiliary_head = AuxiliaryHead(slots[auxiliary_layer(layers)].C_out, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(slots[-1].C_out, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        aux = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == auxiliary_layer(self.layers) and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        return self.classifier(self.global_pooling(s1).flatten(1)), aux


def count_parameters(model: nn.Module, exclude_auxiliary: bool = True) -> int:
    """Number of parameters; without the auxiliary head by default (as DARTS reports it)."""
    return sum(p.numel() for n, p in model.named_parameters() if not (exclude_auxiliary and "auxiliary" in n))


def count_multiply_adds(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one inference forward on a (1, C, H, W) input: torch's FlopCounterMode / 2, convolutions
    and linear layers only (pooling is free, as in the DARTS papers' counts, also for `AvgPool3x3`)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    pools = [m for m in model.modules() if isinstance(m, AvgPool3x3)]
    for m in pools:
        m.as_conv = False
    model.eval()
    p = next(model.parameters())
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape, device=p.device, dtype=p.dtype))
    finally:
        model.train(was_training)
        for m in pools:
            m.as_conv = True
    return counter.get_total_flops() // 2


FINAL_NETWORKS: dict[str, type[nn.Module]] = {"darts": FinalNetwork}
"""Final network of each macro layout (`SearchSpace.layout`); a layout without one (NB201) is evaluated by a
table look-up instead of training."""


def has_final_network(space_name: str) -> bool:
    """Whether genotypes of space `space_name` can be trained from scratch (a final network is registered)."""
    return create_space(space_name).layout in FINAL_NETWORKS


def final_network_from_config(config: FinalNetworkConfig) -> nn.Module:
    """The final network described by a training run's `FinalNetworkConfig` (stored in every training checkpoint):
    the train and evaluate stages both build the network through this function, so evaluation rebuilds exactly
    the trained architecture."""
    n = config.network
    return create_final_network(Genotype.from_dict(config.genotype), n.C, n.layers, config.num_classes, n.auxiliary,
                                config.in_channels, n.stem_stride)


def create_final_network(genotype: Genotype, C: int = 36, layers: int = 20, num_classes: int = 10,
                         auxiliary: bool = True, in_channels: int = 3, stem_stride: int = 1) -> nn.Module:
    """Factory for the final network of a genotype (DARTS CIFAR recipe defaults: C=36, 20 cells, stem stride 1),
    through the registry of its space's layout.

    Raises:
        KeyError: the genotype's space has no final network (e.g. NB201: table look-up); the message says so.
    """
    layout = create_space(genotype.space).layout
    if layout not in FINAL_NETWORKS:
        raise KeyError(f"space {genotype.space!r} (layout {layout!r}) has no final network to train; final networks "
                       f"exist for layouts: {', '.join(FINAL_NETWORKS)}")
    return FINAL_NETWORKS[layout](genotype, C, layers, num_classes, auxiliary, in_channels, stem_stride=stem_stride)
