"""Typed contracts between stages: what one stage writes and the next reads (pydantic, strict, JSON-ready).

- `FinalNetworkConfig`: everything that rebuilds a trained final network (stored in every training checkpoint
  and in `model.pt`; the evaluate stage rebuilds the network from it alone).
- `SupernetMeta`: what rebuilds a searched supernet (stored in `supernet.pt` beside its weights).
- `SearchMetrics`: the search stage's metric file (the evaluate stage's metric files are the evaluators' models,
  `itnas.evaluators`; the run folder's files: `itnas.run`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from .config import SearchConfig
from .train_config import NetworkConfig

__all__ = ["Contract", "FinalNetworkConfig", "SearchMetrics", "SupernetMeta"]


class Contract(BaseModel):
    """A stage contract: strict (unknown keys are refused) and frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FinalNetworkConfig(Contract):
    """A final network: genotype (the canonical genotype dict), network layout, data shape and normalisation.

    image_size: side (px) of the images it is trained and tested on. mean / std: per input channel.
    """

    genotype: dict
    network: NetworkConfig
    num_classes: int
    in_channels: int
    image_size: int
    mean: list[float]
    std: list[float]


class SupernetMeta(Contract):
    """A searched supernet: its resolved search config, data shape, base and where it ran."""

    config: SearchConfig
    num_classes: int
    in_channels: int
    base: str
    data_fingerprint: str
    device: str
    torch: str


class SearchMetrics(Contract):
    """search_time_s: wall seconds of the search; search_val_acc (%) of the last evaluation (None when
    val_every = 0); search_collapse_count: parameter-free ops in the last epoch's normal cell; how decided the
    last epoch's marginal genotype is: the smallest and the median margin of its decisions (alpha units), how many
    margins lie within float noise (`itnas.derive.NOISE_MARGIN`), and the largest alpha of any edge."""

    search_time_s: float
    search_val_acc: float | None
    search_collapse_count: int
    search_min_margin: float | None = None
    search_median_margin: float | None = None
    search_margins_within_noise: int = 0
    search_max_alpha: float | None = None
