"""Where every stage reads and writes: run ids, run folders, prepared data, checkpoints, reports. The one place
that knows the repository layout (the library `itnas/` knows none of it).

A *chain* is one (benchmark, method, seed): prepare (once per benchmark) -> search -> derive -> evaluate.

    data/prepared/<benchmark>/search/        search-train / search-val splits
    data/prepared/<benchmark>/train/         final-training / test splits
    runs/<benchmark>/<method>-s<seed>/       one chain's outputs, by stage:
        search/, search_curves.csv, search_metrics.json   search: supernet.pt, history.json; search_time_s, ...
        genotype.json, derivations.json                   derive: the `derive.mode` genotype; both modes' genotypes
        evaluate/, metrics.json                           evaluate: details.json (+ model.pt, train_curves.csv
                                                          when trained); test accuracy or NB201 look-up
    .itnas_ckpt/<benchmark>/<method>-s<seed>/ resumable search / training state (not a DVC output)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["CKPT_DIR", "PARAMS_CHECKED", "PREPARED_DIR", "REPORT_DIR", "RUNS_DIR", "RunPaths", "prepared_dirs",
           "run_name"]

PREPARED_DIR = Path("data/prepared")
RUNS_DIR = Path("runs")
CKPT_DIR = Path(".itnas_ckpt")
REPORT_DIR = Path("reports")
PARAMS_CHECKED = Path("params.checked")  # the check stage's marker: the prepare stage depends on it, so runs first


def prepared_dirs(benchmark: str) -> tuple[Path, Path]:
    """(search splits folder, train/test splits folder) of a benchmark: the prepare stage's two outputs."""
    root = PREPARED_DIR / benchmark
    return root / "search", root / "train"


def run_name(benchmark: str, method: str, seed: int) -> str:
    """The id of a chain: `<benchmark>/<method>-s<seed>` (also its folder under runs/)."""
    return f"{benchmark}/{method}-s{seed}"


@dataclass(frozen=True)
class RunPaths:
    """Every file of one (benchmark, method, seed) chain, as the stages of dvc.yaml name them."""

    benchmark: str
    method: str
    seed: int

    @property
    def name(self) -> str:
        return run_name(self.benchmark, self.method, self.seed)

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

    # derive stage: the genotype of `derive.mode`, and the genotypes of both modes (what the nb201 evaluation
    # looks up, so that it reads no supernet)
    @property
    def genotype(self) -> Path:
        return self.root / "genotype.json"

    @property
    def derivations(self) -> Path:
        return self.root / "derivations.json"

    # evaluate stage: training from scratch (model, curves) or a table look-up, then metrics.json
    @property
    def evaluate_dir(self) -> Path:
        return self.root / "evaluate"

    @property
    def model(self) -> Path:
        return self.evaluate_dir / "model.pt"

    @property
    def train_curves(self) -> Path:
        return self.evaluate_dir / "train_curves.csv"

    @property
    def eval_details(self) -> Path:
        return self.evaluate_dir / "details.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    # resumable state (not a DVC output)
    @property
    def checkpoint_dir(self) -> Path:
        return CKPT_DIR / self.name

    @property
    def search_checkpoint(self) -> Path:
        return self.checkpoint_dir / "search.pt"

    @property
    def train_checkpoint(self) -> Path:
        return self.checkpoint_dir / "train.pt"
