"""The roots of the repository layout that the stages read and write (the run folder itself is the library's
`itnas.run.RunRecord`; the library knows no root):

    data/prepared/<benchmark>/{search,train}/   the prepare stage's splits
    runs/<run id>/                              one chain's outputs (`itnas.run`)
    .itnas_ckpt/<run id>/{search,train}.pt      resumable search / training state (not a DVC output)
    reports/                                    the report stage's outputs
    params.checked                              the check stage's marker
"""

from __future__ import annotations

from pathlib import Path

from itnas.run import RunRecord

__all__ = ["CKPT_DIR", "PARAMS_CHECKED", "PREPARED_DIR", "REPORT_DIR", "RUNS_DIR", "checkpoint", "prepared_dirs",
           "run_record"]

PREPARED_DIR = Path("data/prepared")
RUNS_DIR = Path("runs")
CKPT_DIR = Path(".itnas_ckpt")
REPORT_DIR = Path("reports")
PARAMS_CHECKED = Path("params.checked")  # the check stage's marker: the prepare stage depends on it, so runs first


def prepared_dirs(benchmark: str) -> tuple[Path, Path]:
    """(search splits folder, train/test splits folder) of a benchmark: the prepare stage's two outputs."""
    root = PREPARED_DIR / benchmark
    return root / "search", root / "train"


def run_record(benchmark: str, method: str, seed: int) -> RunRecord:
    """The run folder of a chain under runs/."""
    return RunRecord(benchmark, method, seed, RUNS_DIR)


def checkpoint(run: RunRecord, stage: str) -> Path:
    """The resumable state of `stage` ("search" or "train") of a chain: .itnas_ckpt/<run id>/<stage>.pt."""
    return CKPT_DIR / run.name / f"{stage}.pt"
