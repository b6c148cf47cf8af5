"""Your own data set from params (`dataset: imagefolder`, issue 18 item 3) and ImageNet as papers report it (the
`darts_imagenet` recipe, top-1 and top-5 accuracy; item 4), on tiny trees of PNG and JPEG images written here.

- the reader: root/train/<class>/ + root/test/<class>/ (else val/), classes from the folder names, and its errors
  (missing root, no test tree, empty class folder, classes that differ, an unreadable image), each naming the paths;
- the recipe pieces: the exponential learning rate, the top-5 accuracy of the test pass against a hand count;
- three chains through the stage commands (check-params -> prepare -> search -> derive -> train -> evaluate): a
  3-class imagefolder with test/ (then a test image copied into train/ is refused by prepare's leak check, and a
  corrupt test image stops evaluate naming its file), and a 6-class ImageNet-layout tree (train/ + val/) trained with
  `recipe: darts_imagenet` at 32 px, whose metrics, summary and report carry top-5; and colour jitter refused on
  digits (a data set in RAM) with one line.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from tiny_project import itnas, one_line_error, tiny_params, write_params

from itnas.data import DataError, create_dataset, list_datasets
from itnas.evaluators import train as train_evaluator
from itnas.evaluators.train import TrainMetrics
from itnas.train import final_lr
from itnas.train_config import TrainConfig
from pipeline.paths import run_record

SIZES = [(40, 30), (50, 60), (33, 47), (64, 20)]  # (width, height): any size, any mode


def write_tree(root: Path, classes: list[str], test: str = "test", n_train: int = 4, n_test: int = 2,
               seed: int = 0) -> None:
    """root/train/<class>/ and root/<test>/<class>/ of random images (all distinct), JPEG and PNG alternating, of
    the sizes in SIZES; the first training image of the first class is a greyscale PNG."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), (test, n_test)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                w, h = SIZES[(k + len(split)) % len(SIZES)]
                grey = split == "train" and c == classes[0] and k == 0
                pixels = rng.integers(0, 256, (h, w) if grey else (h, w, 3), dtype=np.uint8)
                ext = "png" if grey or k % 2 else "jpg"
                PIL.Image.fromarray(pixels).save(root / split / c / f"{c}_{k}.{ext}")


# ------------------------------------------------------------------------------------------------- the reader
def test_imagefolder_reads_classes_from_folder_names(tmp_path):
    write_tree(tmp_path, ["tulip", "daisy", "rose"])
    data = create_dataset("imagefolder", tmp_path)
    assert "imagefolder" in list_datasets() and data.streamed
    assert data.classes == ["daisy", "rose", "tulip"]  # sorted folder names
    assert data.train_labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and data.test_labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert data.test_images.paths[:2] == ["daisy/daisy_0.jpg", "daisy/daisy_1.png"]
    grey = data.train_images[8]  # tulip_0.png, the greyscale one: decoded to 3 channels at its own size
    assert grey.shape == (3, SIZES[1][1], SIZES[1][0]) and torch.equal(grey[0], grey[2])


def test_imagefolder_takes_val_when_there_is_no_test(tmp_path):
    write_tree(tmp_path, ["a", "b"], test="val")
    data = create_dataset("imagefolder", tmp_path)
    assert data.test_images.root == tmp_path / "val" and len(data.test_labels) == 4


def test_imagefolder_errors_name_what_was_looked_for(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=f"{missing} is not a folder; looked for {missing}/train/<class>/ and "
                                        f"{missing}/test/<class>/ \\(or {missing}/val/<class>/\\)"):
        create_dataset("imagefolder", missing)
    write_tree(tmp_path, ["a", "b"])
    shutil.rmtree(tmp_path / "test")
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match=r"looked for .*; the folder holds other/, train/"):
        create_dataset("imagefolder", tmp_path)


def test_empty_class_folder_is_named(tmp_path):
    write_tree(tmp_path, ["a", "b"])
    for f in (tmp_path / "train" / "b").iterdir():
        f.unlink()
    (tmp_path / "train" / "b" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=f"{tmp_path / 'train'}: 1 class folder\\(s\\) without images: "
                                        f"{tmp_path / 'train' / 'b'}/ \\(images are files ending in .jpg"):
        create_dataset("imagefolder", tmp_path)


def test_mismatched_classes_name_both_sides(tmp_path):
    write_tree(tmp_path, ["a", "b", "c"])
    shutil.rmtree(tmp_path / "test" / "b")
    shutil.copytree(tmp_path / "test" / "a", tmp_path / "test" / "z")
    train, test = tmp_path / "train", tmp_path / "test"
    with pytest.raises(DataError, match=f"{test}: class folders differ from those of {train} \\(3 instead of 3; "
                                        f"missing: b \\(only in {train}\\); extra: z \\(only in {test}\\)\\)"):
        create_dataset("imagefolder", tmp_path)


def test_unreadable_image_is_named_by_its_path(tmp_path):
    write_tree(tmp_path, ["a", "b"])
    bad = tmp_path / "test" / "b" / "b_0.jpg"
    bad.write_bytes(b"not a jpeg")
    data = create_dataset("imagefolder", tmp_path)  # nothing decoded yet
    with pytest.raises(DataError, match=f"{bad}: unreadable image"):
        data.test_images[2]


# ------------------------------------------------------------------------------------------------- recipe pieces
def test_network_kinds_of_the_config_are_those_of_the_networks():
    from typing import get_args

    from itnas.config import ConfigError
    from itnas.config_parse import parse_config
    from itnas.networks import list_final_network_kinds
    from itnas.train_config import FinalNetworkKind

    assert list(get_args(FinalNetworkKind)) == list_final_network_kinds()
    with pytest.raises(ConfigError, match=r"train.network.kind='mobile': Input should be 'cifar' or 'imagenet'"):
        parse_config(TrainConfig, {"network": {"kind": "mobile"}}, "train")


def test_exponential_lr_decays_by_gamma_per_epoch_and_cosine_is_unchanged():
    cfg = TrainConfig.model_validate({"epochs": 4, "optimizer": {"lr": 0.1, "schedule": "exponential",
                                                                 "gamma": 0.97}})
    assert [final_lr(cfg, e) for e in range(4)] == pytest.approx([0.1, 0.097, 0.09409, 0.0912673], rel=1e-12)
    cos = TrainConfig.model_validate({"epochs": 4, "optimizer": {"lr": 0.1, "lr_min": 0.0}})
    assert [final_lr(cos, e) for e in range(4)] == pytest.approx([0.1, 0.1 * (1 + 2 ** -0.5) / 2, 0.05,
                                                                  0.1 * (1 - 2 ** -0.5) / 2])


class _Lookup(torch.nn.Module):
    """A "network" whose logits for image i are row i of `table` (the image holds its index)."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.table[x[:, 0, 0, 0].long()], None


@pytest.mark.parametrize("classes", [8, 5])
def test_top5_accuracy_counts_labels_among_the_five_largest_logits(classes):
    g = torch.Generator().manual_seed(classes)
    table, labels = torch.randn(23, classes, generator=g), torch.randint(0, classes, (23,), generator=g)
    data = [(torch.full((1, 1, 1), float(i)), int(labels[i]), i) for i in range(23)]
    result = train_evaluator.test_network(_Lookup(table), data, batch_size=7, num_classes=classes)
    order = np.argsort(-table.numpy(), axis=1)
    top1 = 100 * np.mean(order[:, 0] == labels.numpy())
    assert result["accuracy"] == pytest.approx(top1)
    if classes > 5:
        top5 = 100 * np.mean([int(labels[i]) in order[i, :5] for i in range(23)])
        assert result["top5_accuracy"] == pytest.approx(top5) and top1 < top5 < 100
    else:
        assert result["top5_accuracy"] is None  # every label is in the top 5 of 5 classes: not measured


def test_metrics_file_leaves_out_an_unmeasured_top5():
    fields = dict(test_acc=50.0, test_loss=1.0, test_images=6, params_m=0.1, madds_m=1.0, params_m_c36_l20=3.3,
                  madds_m_c36_l20_32px=500.0, collapse_count=0, train_time_s=1.0)
    assert "test_top5_acc" not in TrainMetrics(**fields).model_dump(mode="json")
    dumped = TrainMetrics(**fields, test_top5_acc=83.33).model_dump(mode="json")
    assert list(dumped)[:3] == ["evaluation", "test_acc", "test_top5_acc"] and dumped["test_top5_acc"] == 83.33


# ------------------------------------------------------------------------------------------------- the chains
def _params(bench: str, train: dict, image_size: int) -> dict:
    params = tiny_params()
    params["data"].update(search_train_size=6, search_val_size=6, train_size=0, test_size=0)
    params["runs"] = {"benchmarks": [bench], "tables": [], "methods": ["darts"], "seeds": [0]}
    search = {"supernet": {"C": 4, "layers": 3}, "data": {"image_size": image_size, "batch_size": 6},
              "schedule": {"epochs": 2, "val_every": 0}}
    params["benchmarks"] = {bench: {"label": f"{bench} (tests)", "evaluation": "train",
                                    "data": {"dataset": "imagefolder", "root": "mine"}, "search": search,
                                    "train": train}}
    return params


def _chain(bench: str) -> None:
    for args in (["check-params"], ["prepare", bench], ["search", bench, "darts", "0"],
                 ["derive", bench, "darts", "0"], ["train", bench, "darts", "0"], ["evaluate", bench, "darts", "0"]):
        result = itnas(*args)
        assert result.exit_code == 0, (args, result.output)


@pytest.mark.slow
def test_chain_on_your_own_image_folder(tmp_path, monkeypatch):
    """imagefolder from params: 3 classes of PNG/JPEG images of four sizes, 16 px in search and training; then a
    corrupt test image stops evaluate with one line naming the file, and a test image copied into train/ (every
    training image is a search image here) is refused by prepare (content overlap)."""
    monkeypatch.chdir(tmp_path)
    write_tree(tmp_path / "mine", ["tulip", "daisy", "rose"])
    train = {"epochs": 1, "network": {"C": 4, "layers": 3, "stem_stride": 2}, "data": {"image_size": 16,
                                                                                        "batch_size": 6}}
    write_params(tmp_path, _params("own", train, 16))
    _chain("own")
    summary = json.loads(Path("data/prepared/own/search/summary.json").read_text())
    assert (summary["dataset"], summary["in_channels"]) == ("imagefolder", 3)
    run = run_record("own", "darts", 0)
    metrics, details = json.loads(run.metrics.read_text()), json.loads(run.details.read_text())
    assert metrics["test_images"] == 6 and details["classes"] == ["daisy", "rose", "tulip"]
    assert sum(map(sum, details["confusion_matrix"])) == 6
    assert "test_top5_acc" not in metrics  # 3 classes

    bad = tmp_path / "mine" / "test" / "rose" / "rose_0.jpg"
    bad.write_bytes(b"\0" * bad.stat().st_size)  # same size: the prepared folder's fingerprint still matches
    result = itnas("evaluate", "own", "darts", "0")
    assert result.exit_code == 2 and "mine/test/rose/rose_0.jpg: unreadable image" in one_line_error(result)

    leaked = tmp_path / "mine" / "train" / "daisy" / "copy_of_test.jpg"  # in place of a training image
    (tmp_path / "mine" / "train" / "daisy" / "daisy_3.png").unlink()
    shutil.copy(tmp_path / "mine" / "test" / "daisy" / "daisy_0.jpg", leaked)
    result = itnas("prepare", "own")
    assert result.exit_code == 2 and "have the same pixels as a test image" in one_line_error(result)


@pytest.mark.slow
def test_chain_with_the_darts_imagenet_recipe(tmp_path, monkeypatch):
    """An ImageNet-layout tree (train/ + val/, 6 classes) trained with `recipe: darts_imagenet` shrunk to 32 px,
    C=8, 3 cells, 2 epochs: the ImageNet network, lr 0.1 then 0.097, label smoothing, colour jitter, test resize;
    top-1 and top-5 in metrics.json, the summary and the report."""
    monkeypatch.chdir(tmp_path)
    classes = [f"n0{k}" for k in range(6)]
    write_tree(tmp_path / "mine", classes, test="val", n_train=3, n_test=2)
    train = {"recipe": "darts_imagenet", "epochs": 2, "network": {"C": 8, "layers": 3},
             "data": {"image_size": 32, "batch_size": 9}}
    params = _params("inet", train, 16)
    params["evaluate"] = {**params.get("evaluate", {}), "test_resize": 36}  # a test-pass setting, not a train one
    write_params(tmp_path, params)
    _chain("inet")
    run = run_record("inet", "darts", 0)
    trained = json.loads(run.train_config.read_text())
    assert trained["final"]["network"]["kind"] == "imagenet" and trained["final"]["image_size"] == 32
    assert trained["train"]["regularization"] == {"auxiliary_weight": 0.4, "drop_path": 0.0, "label_smoothing": 0.1}
    assert trained["train"]["data"]["color_jitter"] == [0.4, 0.4, 0.4, 0.2]
    assert "test_resize" not in trained["train"]["data"]  # evaluate.test_resize: no train param
    history = json.loads(run.train_history.read_text())
    assert [h["lr"] for h in history] == pytest.approx([0.1, 0.097], rel=1e-12)
    metrics = json.loads(run.metrics.read_text())
    assert metrics["test_images"] == 12 and 0 <= metrics["test_acc"] <= metrics["test_top5_acc"] <= 100
    details = json.loads(run.details.read_text())
    assert metrics["test_acc"] == round(details["accuracy"], 2)

    result = itnas("report")
    assert result.exit_code == 0, result.output
    summary = json.loads(Path("reports/summary.json").read_text())
    assert summary["inet"]["darts"]["test_top5_acc"] == {"mean": metrics["test_top5_acc"], "std": None, "n": 1}
    report = Path("reports/report.md").read_text()
    assert "top-5 acc (%)" in report and f"top-5 {metrics['test_top5_acc']:.2f} %" in report
    assert "lr x 0.97 per epoch, label smoothing 0.1, colour jitter 0.4/0.4/0.4/0.2, test resize 36 px" in report


def test_colour_jitter_is_refused_for_a_data_set_in_ram(tmp_path, monkeypatch):
    """train.data.color_jitter (ImageNet recipe) on digits (a tensor in RAM): refused by check-params, before any
    search runs (the data registry knows which data sets stream), one line naming the key, the benchmark and the data;
    the same block on a table benchmark (no training) or an imagefolder benchmark is valid."""
    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    params["benchmarks"]["tiny"]["train"] = {"data": {"color_jitter": [0.4, 0.4, 0.4, 0.2]}}
    write_params(tmp_path, params)
    result = itnas("check-params")
    assert result.exit_code == 2
    assert one_line_error(result) == (
        "error: train.data.color_jitter=[0.4, 0.4, 0.4, 0.2] (benchmark 'tiny'): colour jitter applies to streamed "
        "image files (dataset imagenet or imagefolder) only; benchmark 'tiny' trains on digits, held in RAM: remove "
        "color_jitter")
    params["benchmarks"]["tiny"]["data"] = {"dataset": "imagefolder"}
    write_params(tmp_path, params)
    assert itnas("check-params").exit_code == 0
