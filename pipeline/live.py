"""DVCLive logging of a chain's per-epoch records and of its confusion matrix: the DVC plots of the stages (the
library knows nothing of DVC; its epoch loops hand each epoch's record to a callback, `on_epoch(record)`).

    runs/<chain>/live/search/     search: plots/metrics/<key>.tsv (columns step, <key>; step = epoch index, 0 = the
                                  first epoch) for every key of `SEARCH_KEYS` an epoch record holds (val_* only in
                                  the epochs that validate)
    runs/<chain>/live/train/      train: the same for `TRAIN_KEYS`
    runs/<chain>/live/evaluate/   evaluate (chains that train a network): plots/sklearn/confusion_matrix.json, one
                                  {actual, predicted} record (class names) per test image

DVCLive also writes a metrics.json (its summary: the last epoch's values and step) in the curve folders; dvc.yaml does
not declare it as a metric, so `dvc exp show` keeps showing the compact summary (metrics.json, search_metrics.json,
reports/summary.json). DVCLive's own DVC integration is off: no dvc.yaml of its own (the figures are dvc.yaml's
top-level `plots`), no experiment saved, no report, no timestamp column.

Exact resume: a stage opens `EpochLog` with the records of the checkpoint it resumes from (`checkpoint_for` returns
them), which it replays into an emptied folder before logging the new epochs, so a resumed run leaves the same files
as an uninterrupted one (apart from `time_s`, a measured duration). Rank 0 of a torchrun job alone logs.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterable, Sequence
from numbers import Real
from pathlib import Path

from itnas.errors import ItnasError

__all__ = ["SEARCH_KEYS", "TRAIN_KEYS", "EpochLog", "log_confusion_matrix"]

#: The per-epoch keys of a search record (`itnas.search.run_search`) that become curves: lr, losses (nats),
#: accuracies (%), the epoch's collapse count (edges whose strongest op is parameter-free) and seconds.
SEARCH_KEYS = ("lr", "train_loss", "train_acc", "val_loss", "val_acc", "collapse_count", "time_s")
#: The per-epoch keys of a final-training record (`itnas.train.train_final`) that become curves.
TRAIN_KEYS = ("lr", "drop_path_prob", "train_loss", "train_acc", "time_s")
#: The name of the confusion-matrix plot (its file: plots/sklearn/<name>).
CONFUSION_NAME = "confusion_matrix.json"


def _live(folder: Path):
    """A fresh DVCLive logger writing to `folder` (emptied first, so that neither DVCLIVE_RESUME in the
    environment nor an earlier run's files add to it). Raises ItnasError when DVCLive cannot open the git
    repository around it (a repository without any commit)."""
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    shutil.rmtree(folder, ignore_errors=True)
    try:
        return Live(str(folder), resume=False, report=None, save_dvc_exp=False, dvcyaml=None)
    except SCMError as err:
        raise ItnasError(f"DVCLive cannot log to {folder}: {err} (a git repository without any commit); commit "
                         "first (`git add -A && git commit -m init`) or run outside git") from None


class EpochLog:
    """The curves of one search or training under `folder` (see the module docstring): `EpochLog(folder, keys,
    done)` starts the folder afresh with the records `done` (the epochs of the checkpoint the run resumes from);
    calling it with each new epoch's record logs it (the `on_epoch` callback of the epoch loops).

    Args:
        folder: the DVCLive folder (runs/<chain>/live/search or .../train).
        keys: the record keys to log (`SEARCH_KEYS`, `TRAIN_KEYS`); a key a record lacks or holds no finite number
            for (val_acc in an epoch that does not validate) is left out of that epoch's row.
        done: records already run, in epoch order, each with its "epoch" index.
    """

    def __init__(self, folder: Path, keys: Sequence[str], done: Iterable[dict] = ()):
        self.keys = tuple(keys)
        self.live = _live(Path(folder))
        for record in done:
            self(record)

    def __call__(self, record: dict) -> None:
        """Log one epoch's `record` at step record["epoch"] (its files are written before this returns)."""
        self.live.step = int(record["epoch"])
        for key in self.keys:
            value = record.get(key)
            if isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value):
                self.live.log_metric(key, value)
        self.live.next_step()

    def end(self) -> None:
        """The run is complete (DVCLive's `Live.end`: the summary rewritten, nothing else on disk)."""
        self.live.end()


def log_confusion_matrix(folder: Path, matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> Path:
    """Write a confusion matrix as DVCLive's confusion plot of `folder` (plots/sklearn/confusion_matrix.json): one
    {actual, predicted} record per counted image, with class names, in row-major order of `matrix`.

    Args:
        matrix: K x K counts (rows: true class, columns: predicted class), K = len(classes).
        classes: the K class names.

    Returns:
        The path of the JSON file.

    Raises:
        ValueError: `matrix` is not K x K or holds a negative count.
    """
    k = len(classes)
    if len(matrix) != k or any(len(row) != k for row in matrix):
        raise ValueError(f"the confusion matrix must be {k} x {k} (one row and column per class of {list(classes)}), "
                         f"got {len(matrix)} rows of lengths {sorted({len(row) for row in matrix})}")
    if any(c < 0 for row in matrix for c in row):
        raise ValueError("the confusion matrix holds a negative count")
    actual = [classes[i] for i, row in enumerate(matrix) for j, c in enumerate(row) for _ in range(c)]
    predicted = [classes[j] for row in matrix for j, c in enumerate(row) for _ in range(c)]
    live = _live(Path(folder))
    live.log_sklearn_plot("confusion_matrix", actual, predicted, name=CONFUSION_NAME)
    return Path(folder) / "plots" / "sklearn" / CONFUSION_NAME
