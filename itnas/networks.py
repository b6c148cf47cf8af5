"""Final networks built from a `Genotype`, trained from scratch (DARTS `model.py` NetworkCIFAR/NetworkImageNet).

Two macro *kinds* (`FINAL_NETWORK_KINDS`, picked by `create_final_network(..., kind=...)`):

- `cifar` (`FinalNetwork`, DARTS NetworkCIFAR; docs/method.md 3; Liu et al., DARTS, ICLR 2019, section 3.3): stem
  3x3 conv to 3C, `layers` cells with reduction cells at layers//3 and 2*layers//3, auxiliary head at 2/3 depth,
  drop-path on every non-identity op. The auxiliary head pools adaptively to 2x2 (DARTS uses avgpool(5, stride 3),
  which assumes an 8x8 map): same parameters, and it also works on 28x28 inputs (7x7 maps).
- `imagenet` (`FinalNetworkImageNet`, DARTS NetworkImageNet, the mobile setting; DARTS section 3, ImageNet
  transfer; docs/method.md 4.4): a stride-8 stem of three 3x3 convs (C/2, C, C channels), the same cells (cell 0 reads a
  reduced previous input), the ImageNet auxiliary head at 2/3 depth, global average pooling, linear classifier.
  DARTS_V2 at C=48, 14 cells, 1000 classes: 4,718,752 parameters (the paper's 4.7M) and 529,911,552 multiply-adds
  at 224x224 as `count_multiply_adds` counts them (convolutions + classifier; the paper's 574M counted more than
  that, its counter is unpublished; quark0/darts issue #46 reports 523M-545M with public counters).

Both map x (B, in_channels, H, W) to (logits (B, classes), aux_logits (B, classes) in training or None) and carry a
`drop_path_prob` that the training loop sets (`DropPathSchedule`: a float for eager forwards, mirrored into a buffer
that compiled forwards read, so that a new value per epoch does not recompile).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn as nn

from .contracts import FinalNetworkConfig
from .errors import UnknownNameError
from .genotype import Genotype
from .macro import auxiliary_layer, darts_stack
from .ops import AvgPool3x3, FactorizedReduce, Identity, ReLUConvBN, create_op
from .spaces import create_space

__all__ = ["DEFAULT_FINAL_NETWORK_KIND", "FINAL_NETWORKS", "FINAL_NETWORK_KINDS", "AuxiliaryHead",
           "AuxiliaryHeadImageNet", "DropPathSchedule", "FinalCell", "FinalNetwork", "FinalNetworkImageNet",
           "count_multiply_adds", "count_parameters", "create_final_network", "drop_path", "final_network_from_config",
           "has_final_network", "list_final_network_kinds"]


def drop_path(x: torch.Tensor, drop_prob: float | torch.Tensor) -> torch.Tensor:
    """Zero whole samples with probability drop_prob and rescale the rest (FractalNet; DARTS). (B, ...) -> (B, ...).

    drop_prob: a float (eager forwards: DARTS' `bernoulli_` mask, and nothing at all for 0), or a 0-d tensor (compiled
    forwards: its value may change without a recompilation, and there is no branch on it: 0 computes x / 1 * 1 = x).
    The tensor form draws the mask as rand < keep: the same distribution, other random numbers."""
    if isinstance(drop_prob, torch.Tensor):
        keep_t = 1.0 - drop_prob
        return x / keep_t * (torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) < keep_t)
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x / keep * mask


class FinalCell(nn.Module):
    """A discrete DARTS-space cell. forward(s0, s1, drop_prob) -> (B, len(concat) * C, H/r, W/r); drop_prob a float or
    a 0-d tensor (`drop_path`; a tensor applies drop path in training whatever its value)."""

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

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float | torch.Tensor = 0.0) -> torch.Tensor:
        states = {0: self.preprocess0(s0), 1: self.preprocess1(s1)}
        on = isinstance(drop_prob, torch.Tensor) or drop_prob > 0
        for (_, src, dst), op in zip(self.edges, self.ops, strict=True):
            h = op(states[src])
            if self.training and on and not isinstance(op, Identity):
                h = drop_path(h, drop_prob)
            states[dst] = states[dst] + h if dst in states else h
        return torch.cat([states[i] for i in self.concat], dim=1)


class DropPathSchedule:
    """The `drop_path_prob` of a final network (a mixin before nn.Module), set by the training loop every epoch: a
    float attribute, mirrored into the 0-d buffer `drop_path_tensor` (non-persistent: not in the state_dict, so the
    checkpoint keys are those of a plain network). `_drop_prob()` is what the cells get: the float in eager forwards
    (DARTS' computation, unchanged) and the tensor inside torch.compile, so that a new value every epoch changes a
    graph input, not a constant of the graph (no recompilation)."""

    def _init_drop_path(self) -> None:
        self.register_buffer("drop_path_tensor", torch.zeros(()), persistent=False)
        self.drop_path_prob = 0.0

    @property
    def drop_path_prob(self) -> float:
        return self._drop_path_prob

    @drop_path_prob.setter
    def drop_path_prob(self, p: float) -> None:
        self._drop_path_prob = float(p)
        self.drop_path_tensor.fill_(float(p))

    def _drop_prob(self) -> float | torch.Tensor:
        return self.drop_path_tensor if torch.compiler.is_compiling() else self._drop_path_prob


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


class FinalNetwork(DropPathSchedule, nn.Module):
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
    `drop_path_prob` is set by the training loop (DARTS schedule: linear in the epoch; `DropPathSchedule`).
    """

    def __init__(self, genotype: Genotype, C: int, layers: int, num_classes: int, auxiliary: bool = True,
                 in_channels: int = 3, stem_multiplier: int = 3, stem_stride: int = 1):
        super().__init__()
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
        if create_space(genotype.space).n_inputs != 2:
            raise ValueError(f"FinalNetwork builds DARTS-like genotypes, got space {genotype.space!r}")
        genotype.validate()
        self.layers = layers
        self._init_drop_path()
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
        drop = self._drop_prob()
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, drop)
            if i == auxiliary_layer(self.layers) and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        return self.classifier(self.global_pooling(s1).flatten(1)), aux


class AuxiliaryHeadImageNet(nn.Module):
    """Auxiliary classifier at 2/3 depth of the ImageNet network (DARTS `model.py` AuxiliaryHeadImageNet).

    (B, C, h, w) -> (B, num_classes). Followed the original DARTS repo (quark0/darts, cnn/model.py): ReLU,
    AvgPool2d(5, stride 2, padding 0, count_include_pad=False), conv1x1 C->128, BN, ReLU, conv2x2 128->768, ReLU,
    Linear 768->classes; there is *no* BN after the 2x2 conv (the repo comments it out: omitted by a typo in the
    paper's runs, kept out "for consistency with the experiments in the paper"). The AvgPool2d(5, 2) is exact DARTS
    whenever the map is at least 5x5 (at 224x224 input the map is 7x7 and it gives 2x2); an adaptive pool to 2x2
    follows, a no-op at 224 px, so that smaller maps (small test inputs) and larger ones also give the 2x2 map the
    2x2 conv and the 768-wide classifier need. Same parameters as DARTS.
    """

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.pool = nn.AvgPool2d(5, stride=2, padding=0, count_include_pad=False)
        self.features = nn.Sequential(
            nn.AdaptiveAvgPool2d(2),
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False), nn.ReLU(inplace=True))  # no BN here, as the DARTS repo
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        if min(x.shape[-2:]) >= 5:
            x = self.pool(x)
        return self.classifier(self.features(x).flatten(1))


class FinalNetworkImageNet(DropPathSchedule, nn.Module):
    """The ImageNet (mobile setting) network of a DARTS-space genotype (DARTS `model.py` NetworkImageNet;
    Liu et al., DARTS, ICLR 2019, section 3, ImageNet transfer in the mobile setting).

    stem0 = conv3x3(in_channels -> C/2, stride 2), BN, ReLU, conv3x3(C/2 -> C, stride 2), BN (s0, H/4);
    stem1 = ReLU, conv3x3(C -> C, stride 2), BN (s1, H/8). Both stems give C channels (`darts_stack` with stem
    multiplier 1) and cell 0 reads the stride-4 s0 through a factorized reduction (reduction_prev=True). Reduction
    cells at layers//3 and 2*layers//3; the ImageNet auxiliary head reads cell 2*layers//3; global average pooling
    (adaptive to 1x1: the same as DARTS' AvgPool2d(7) on the 7x7 map of a 224x224 input, and it also works on small
    inputs); linear classifier.

    Args:
        genotype: a validated DARTS-like genotype. C: initial channels (even: the stem has C/2). layers: cells.
        num_classes. auxiliary: build the auxiliary head. in_channels: image channels.
        stem_stride: accepted for the common factory signature; must be 1 (the ImageNet stem's stride is fixed at 8).

    Raises:
        ValueError: a genotype of a space without 2 cell inputs, an invalid genotype, an odd C, stem_stride != 1.

    forward(x (B, in_channels, H, W)) -> (logits (B, classes), aux_logits (B, classes) in training mode with the
    head, else None). Cells see H/8 x W/8 maps (28x28 at 224 px; 7x7 after the two reductions).
    `drop_path_prob` is set by the training loop (`DropPathSchedule`).
    """

    def __init__(self, genotype: Genotype, C: int, layers: int, num_classes: int, auxiliary: bool = True,
                 in_channels: int = 3, stem_stride: int = 1):
        super().__init__()
        if stem_stride != 1:
            raise ValueError(f"the ImageNet network's stem has a fixed stride of 8 (three stride-2 convs); "
                             f"stem_stride must be 1, got {stem_stride!r}")
        if C % 2:
            raise ValueError(f"the ImageNet network needs an even C (its first stem conv has C/2 channels), got {C}")
        if create_space(genotype.space).n_inputs != 2:
            raise ValueError(f"FinalNetworkImageNet builds DARTS-like genotypes, got space {genotype.space!r}")
        genotype.validate()
        self.layers = layers
        self._init_drop_path()
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, C // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C))
        # DARTS applies an in-place ReLU here, which also rectifies s0; cell 0 reads s0 through FactorizedReduce,
        # which starts with a ReLU, so the out-of-place ReLU computes the same values.
        self.stem1 = nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(C))
        slots = darts_stack(layers, C, 1, lambda t: len(getattr(genotype, f"{t}_concat")))
        slots[0] = replace(slots[0], reduction_prev=True)  # s0 has twice the resolution of s1
        self.cells = nn.ModuleList(FinalCell(genotype, s.cell_type, s.C_pp, s.C_p, s.C, s.reduction_prev)
                                   for s in slots)
        self.auxiliary_head = (AuxiliaryHeadImageNet(slots[auxiliary_layer(layers)].C_out, num_classes)
                               if auxiliary else None)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(slots[-1].C_out, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        aux = None
        s0 = self.stem0(x)
        s1 = self.stem1(s0)
        drop = self._drop_prob()
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, drop)
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
"""Final network (CIFAR macro, kind "cifar") of each macro layout (`SearchSpace.layout`); a layout without one (NB201)
is evaluated by a table look-up instead of training."""

FINAL_NETWORK_KINDS: dict[str, dict[str, type[nn.Module]]] = {
    "cifar": FINAL_NETWORKS,
    "imagenet": {"darts": FinalNetworkImageNet},
}
"""Final networks by macro kind, then by layout: "cifar" (DARTS NetworkCIFAR: 3C stem, stride 1 or 2) and "imagenet"
(DARTS NetworkImageNet: stride-8 stem, mobile setting). Every class takes
(genotype, C, layers, num_classes, auxiliary, in_channels, stem_stride=...)."""

DEFAULT_FINAL_NETWORK_KIND = "cifar"


def list_final_network_kinds() -> list[str]:
    """The registered final-network kinds (`FINAL_NETWORK_KINDS`), in registration order."""
    return list(FINAL_NETWORK_KINDS)


def _kind_registry(kind: str) -> dict[str, type[nn.Module]]:
    if kind not in FINAL_NETWORK_KINDS:
        raise UnknownNameError(f"unknown final-network kind {kind!r}; valid kinds: {', '.join(FINAL_NETWORK_KINDS)}")
    return FINAL_NETWORK_KINDS[kind]


def has_final_network(space_name: str, kind: str = DEFAULT_FINAL_NETWORK_KIND) -> bool:
    """Whether genotypes of space `space_name` can be trained from scratch (a final network of `kind` is registered).

    Raises:
        KeyError: unknown kind (the message lists the valid kinds).
    """
    return create_space(space_name).layout in _kind_registry(kind)


def final_network_from_config(config: FinalNetworkConfig) -> nn.Module:
    """The final network described by a training run's `FinalNetworkConfig` (stored in every training checkpoint):
    the train and evaluate stages both build the network through this function, so evaluation rebuilds exactly
    the trained architecture. The macro kind is `config.network.kind` when the config has that field, else "cifar"
    (checkpoints written before the field existed)."""
    n = config.network
    return create_final_network(Genotype.from_dict(config.genotype), n.C, n.layers, config.num_classes, n.auxiliary,
                                config.in_channels, n.stem_stride, kind=getattr(n, "kind", DEFAULT_FINAL_NETWORK_KIND))


def create_final_network(genotype: Genotype, C: int = 36, layers: int = 20, num_classes: int = 10,
                         auxiliary: bool = True, in_channels: int = 3, stem_stride: int = 1,
                         kind: str = DEFAULT_FINAL_NETWORK_KIND) -> nn.Module:
    """Factory for the final network of a genotype (DARTS CIFAR recipe defaults: C=36, 20 cells, stem stride 1),
    through the registry of the macro `kind` ("cifar" | "imagenet", `FINAL_NETWORK_KINDS`) and its space's layout.
    The DARTS ImageNet recipe is kind="imagenet", C=48, layers=14, num_classes=1000.

    Raises:
        KeyError: unknown kind, or the genotype's space has no final network of that kind (e.g. NB201: table
            look-up); the message says so and lists the valid choices.
        ValueError: from the network (invalid genotype, stem_stride not allowed for the kind, ...).
    """
    registry = _kind_registry(kind)
    layout = create_space(genotype.space).layout
    if layout not in registry:
        raise KeyError(f"space {genotype.space!r} (layout {layout!r}) has no {kind!r} final network to train; "
                       f"{kind!r} final networks exist for layouts: {', '.join(registry)}")
    return registry[layout](genotype, C, layers, num_classes, auxiliary, in_channels, stem_stride=stem_stride)
