"""Where every stage reads and writes: run ids, run folders, prepared data, checkpoints, reports. The one place
that knows the repository layout (the library `itnas/` knows none of it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["CKPT_DIR", "PARAMS_CHECKED", "PREPARED_DIR", "REPORT_DIR", "RUNS_DIR", "SEARCH_DATA_DIR", "TRAIN_DATA_DIR",
           "RunPaths", "run_name"]

PREPARED_DIR = Path("data/prepared")
SEARCH_DATA_DIR = PREPARED_DIR / "search"  # search-train / search-val splits (prepare stage output)
TRAIN_DATA_DIR = PREPARED_DIR / "train"  # final-training / test splits (prepare stage output)
RUNS_DIR = Path("runs")
CKPT_DIR = Path(".itnas_ckpt")
REPORT_DIR = Path("reports")
PARAMS_CHECKED = Path("params.checked")  # the check stage's marker: the prepare stage depends on it, so runs first


def run_name(method: str, seed: int) -> str:
    """The id of a (method, seed) run: `<method>-s<seed>`."""
    return f"{method}-s{seed}"


@dataclass(frozen=True)
class RunPaths:
    """Every file of one (method, seed) run, as the stages of dvc.yaml name them."""

    method: str
    seed: int

    @property
    def name(self) -> str:
        return run_name(self.method, self.seed)

    @property
    def root(self) -> Path:
        return RUNS_DIR / self.name

    # search stage
    @property
    def search_dir(self) -> Path:
        return self.root / "search"

    @property
    def supernet(self) -> Path:
        return self.search_dir / "supernet.pt"

    @property
    def search_history(self) -> Path:
        return self.search_dir / "history.json"

    @property
    def search_curves(self) -> Path:
        return self.root / "search_curves.csv"

    @property
    def search_metrics(self) -> Path:
        return self.root / "search_metrics.json"

    # derive stage
    @property
    def genotype(self) -> Path:
        return self.root / "genotype.json"

    # train stage
    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def model(self) -> Path:
        return self.train_dir / "model.pt"

    @property
    def train_curves(self) -> Path:
        return self.root / "train_curves.csv"

    # evaluate stage
    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def eval_details(self) -> Path:
        return self.root / "eval_details.json"

    # resumable state (not a DVC output)
    @property
    def search_checkpoint(self) -> Path:
        return CKPT_DIR / self.name / "search.pt"

    @property
    def train_checkpoint(self) -> Path:
        return CKPT_DIR / self.name / "train.pt"
