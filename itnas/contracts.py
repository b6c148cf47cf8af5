"""Typed contracts between stages: what one stage writes and the next reads (pydantic, strict, JSON-ready).

- `FinalNetworkConfig`: everything that rebuilds a trained final network (stored in every training checkpoint
  and in `model.pt`; the evaluate stage rebuilds the network from it alone).
- `SupernetMeta`: what rebuilds a searched supernet (stored in `supernet.pt` beside its weights).
- `SearchMetrics` / `RunMetrics`: the metric files of a run (the keys that `dvc metrics show` lists).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from .config import NetworkConfig, SearchConfig

__all__ = ["FinalNetworkConfig", "RunMetrics", "SearchMetrics", "SupernetMeta"]


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FinalNetworkConfig(_Contract):
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


class SupernetMeta(_Contract):
    """A searched supernet: its resolved search config, data shape, base and where it ran."""

    config: SearchConfig
    num_classes: int
    in_channels: int
    base: str
    data_fingerprint: str
    device: str
    torch: str


class SearchMetrics(_Contract):
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


class RunMetrics(_Contract):
    """The evaluate stage's metrics of one run: test accuracy (%) and loss (nats) on `test_images` images,
    parameters (M, without the auxiliary head) and multiply-adds (M) of the trained network and of the same
    genotype at the DARTS CIFAR size (C=36, 20 cells, 32x32), collapse count and train time (s).

    search_time_s: not written any more (the search time is `SearchMetrics.search_time_s`, so that a new search
    of the same genotype retrains nothing); optional so that metrics files written before still validate."""

    test_acc: float
    test_loss: float
    test_images: int
    params_m: float
    madds_m: float
    params_m_c36_l20: float
    madds_m_c36_l20_32px: float
    collapse_count: int
    search_time_s: float | None = None
    train_time_s: float


class NB201Metrics(_Contract):
    """The evaluate stage's metrics of one NAS-Bench-201 chain: the derived cell's accuracies (%) looked up in the
    NB201 table (Dong & Yang, ICLR 2020; 200-epoch columns, `itnas.nb201`): CIFAR-10, CIFAR-100 and
    ImageNet16-120, test and valid; the cell's arch string, its parameter-free op count (none, skip, pool) and the
    derivation mode that produced it. (A cell the table does not hold is an error of the look-up,
    `itnas.nb201.NB201Table.lookup`.) search_time_s: as in `RunMetrics`, only in metrics files written before."""

    nb201_c10_test: float
    nb201_c10_valid: float
    nb201_c100_test: float
    nb201_c100_valid: float
    nb201_in16_test: float
    nb201_in16_valid: float
    collapse_count: int
    arch: str
    derivation: str
    search_time_s: float | None = None
