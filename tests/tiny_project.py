"""A tiny stage project for tests that run the `itnas` stage commands in a scratch folder (not a test module).

scikit-learn's bundled digits (10 classes, 8x8, no files needed), one chain (benchmark `tiny`, darts, seed 0), C=4,
3 cells: the search takes about a second per epoch on one thread. `itnas(...)` invokes the real command line
in-process, so the test sees the exit code and the one-line message a user sees. `prepare_splits` cuts (and saves)
a data set's splits as the prepare stage does.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from click.testing import Result
from typer.testing import CliRunner

from itnas.data import ImageDataset, ImageSplit, SearchData, SourceData, TrainData, make_splits
from pipeline.cli import app

ROOT = Path(__file__).resolve().parents[1]


def tiny_params() -> dict:
    """The committed params.yaml shrunk: digits, 64 + 64 search images, 300 training / 100 test images, one CPU
    thread per stage process (tests/conftest.py: threads only add overhead at these sizes)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["device"] = "cpu"
    params["threads"] = 1
    params["data"].update(dataset="digits", search_train_size=64, search_val_size=64, train_size=300, test_size=100)
    params["runs"] = {"benchmarks": ["tiny"], "tables": [], "methods": ["darts"], "seeds": [0]}
    params["benchmarks"] = {"tiny": {"label": "digits (tests)", "evaluation": "train", "data": {}, "search": {},
                                     "train": {}}}
    search = params["search"]
    search["supernet"].update(C=4, layers=3, partial_k=4)
    search["schedule"].update(epochs=3, warmup_epochs=0, val_every=0)
    search["data"].update(batch_size=16, image_size=0)
    train = params["train"]
    train["epochs"] = 1
    train["network"].update(C=4, layers=3)
    train["data"].update(batch_size=64)
    return params


def write_params(root: Path, params: dict, name: str = "params.yaml") -> Path:
    path = root / name
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def itnas(*args: str) -> Result:
    """Run `itnas ARGS` in-process in the current folder (exit code, stdout, stderr)."""
    return CliRunner().invoke(app, list(args))


def one_line_error(result: Result) -> str:
    """The `error: ...` line a failed stage printed (asserting there is exactly one and nothing after it)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [k for k, line in enumerate(lines) if line.startswith("error:")]
    assert len(errors) == 1 and errors[0] == len(lines) - 1, result.stderr
    return lines[-1]


def prepare_splits(source: SourceData, *sizes: int, out: Path | None = None,
                   split_seed: int = 0) -> tuple[SearchData, TrainData]:
    """`make_splits(source, *sizes)` cut from `source`, saved first to out/{search,train} when `out` is given."""
    search_idx, train_idx = make_splits(source, *sizes, split_seed=split_seed)
    if out is not None:
        search_idx.save(out / "search")
        train_idx.save(out / "train")
    return SearchData.from_indices(search_idx, source), TrainData.from_indices(train_idx, source)


def image_split(n: int, seed: int = 0, side: int = 8) -> ImageSplit:
    """n random 1-channel side x side uint8 images of 3 classes (a "train" split), drawn from `seed`."""
    g = torch.Generator().manual_seed(seed)
    return ImageSplit(torch.randint(0, 256, (n, 1, side, side), generator=g, dtype=torch.uint8),
                      torch.randint(0, 3, (n,), generator=g), "train", torch.arange(n))


class CountingDataset(ImageDataset):
    """An ImageDataset that records every index it serves (`seen`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[int] = []

    def __getitem__(self, i):
        self.seen.append(i)
        return super().__getitem__(i)


def live_curves(folder: Path) -> dict[str, dict[int, float]]:
    """The curves a DVCLive folder holds (`pipeline.live.EpochLog`): {key: {step: value}} from its
    plots/metrics/<key>.tsv files (tab-separated, header `step<TAB>key`)."""
    curves = {}
    for tsv in sorted((Path(folder) / "plots" / "metrics").glob("*.tsv")):
        header, *rows = tsv.read_text().splitlines()
        assert header == f"step\t{tsv.stem}", f"{tsv}: header {header!r}"
        curves[tsv.stem] = {int(step): float(value) for step, value in (row.split("\t") for row in rows)}
    return curves


def history_curves(history: list[dict], keys: tuple[str, ...]) -> dict[str, dict[int, float]]:
    """The curves `live_curves` must read for an epoch history: {key: {epoch: value}} of every key of `keys` that
    an epoch record holds a number for."""
    out: dict[str, dict[int, float]] = {}
    for rec in history:
        for key in keys:
            if isinstance(rec.get(key), int | float):
                out.setdefault(key, {})[rec["epoch"]] = float(rec[key])
    return out
