"""pipeline/live.py: DVCLive curves replayed from a checkpoint's history equal an uninterrupted run's, byte for byte;
the confusion-matrix plot holds one record per image; clear errors."""

from __future__ import annotations

import json
import subprocess
from collections import Counter

import pytest
from tiny_project import history_curves, live_curves

from itnas.errors import ItnasError
from pipeline.live import SEARCH_KEYS, EpochLog, log_confusion_matrix

# a search history as itnas.search writes it: val_* only in the epochs that validate, other keys not curves
HISTORY = [
    {"epoch": 0, "lr": 0.025, "train_loss": 2.3125, "train_acc": 11.5, "collapse_count": 0, "time_s": 1.25,
     "arch_updated": False, "genotype": {"space": "darts"}},
    {"epoch": 1, "lr": 0.0125, "train_loss": 1.0625, "train_acc": 61.0, "val_loss": 1.5, "val_acc": 48.4375,
     "collapse_count": 2, "time_s": 1.5, "arch_updated": True},
    {"epoch": 2, "lr": 0.0, "train_loss": 0.75, "train_acc": 77.0, "val_loss": 1.25, "val_acc": 60.9375,
     "collapse_count": 3, "time_s": 1.75, "arch_updated": True},
]


def _files(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("done", [0, 1, 2])
def test_a_resumed_log_equals_an_uninterrupted_one(tmp_path, done):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    log = EpochLog(whole, SEARCH_KEYS)
    for rec in HISTORY:
        log(rec)
    log.end()
    # the interrupted run: an older folder with partial or stale files is replaced, not appended to
    EpochLog(resumed, SEARCH_KEYS, HISTORY[:done])(HISTORY[done] | {"train_loss": 99.0})
    log = EpochLog(resumed, SEARCH_KEYS, HISTORY[:done])
    for rec in HISTORY[done:]:
        log(rec)
    log.end()
    assert _files(resumed) == _files(whole)
    assert live_curves(whole) == history_curves(HISTORY, SEARCH_KEYS)
    assert set(live_curves(whole)["val_acc"]) == {1, 2}  # no row for the epoch that did not validate
    assert "timestamp" not in b"".join(_files(whole).values()).decode()
    assert json.loads((whole / "metrics.json").read_text()) == {**{k: HISTORY[2][k] for k in SEARCH_KEYS},
                                                                "step": 2}


def test_confusion_matrix_holds_one_record_per_image(tmp_path):
    matrix, classes = [[3, 1, 0], [0, 2, 2], [1, 0, 4]], ["cat", "dog", "owl"]
    path = log_confusion_matrix(tmp_path / "evaluate", matrix, classes)
    records = json.loads(path.read_text())
    assert path == tmp_path / "evaluate/plots/sklearn/confusion_matrix.json" and len(records) == 13
    counts = Counter((r["actual"], r["predicted"]) for r in records)
    assert counts == {(classes[i], classes[j]): c for i, row in enumerate(matrix) for j, c in enumerate(row) if c}
    with pytest.raises(ValueError, match=r"must be 3 x 3 .*'owl'.*got 2 rows"):
        log_confusion_matrix(tmp_path / "bad", matrix[:2], classes)


def test_a_git_repository_without_commit_is_a_clear_error(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ItnasError, match=r"live/search.*without any commit.*git commit"):
        EpochLog(tmp_path / "live/search", SEARCH_KEYS)
