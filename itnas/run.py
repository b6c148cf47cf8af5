"""The record of one run: the folder of a (benchmark, method, seed) chain, every file in it with the stage that
writes it and a typed model of each JSON file, and the run id. Stages write through `RunRecord`, the report reads
through it; nothing else names a run file.

    <runs>/<benchmark>/<method>-s<seed>/          the run id `run_id` (also the folder)
        search/supernet.pt, search/config.json    search: weights + `SupernetMeta` (the same meta as JSON)
        search/history.json                       search: one record per epoch (`itnas.search`; the last one also
                                                  holds the transitions and attention, `itnas.records`)
        search_metrics.json                       search: `SearchMetrics`
        live/search/                              search: its per-epoch curves (DVCLive: plots/metrics/<key>.tsv,
                                                  one row per epoch; written by the pipeline, not the library)
        genotype.json, derivations.json           derive: the genotype of `derive.mode`; `Derivations` (both modes)
        epoch_genotypes.json                      derive: `EpochGenotypes`, the marginal genotype of every search
                                                  epoch (from search/history.json; the search trajectory)
        train/model.pt, train/config.json         train (evaluators that train a network): weights + `TrainedNetwork`
        train/history.json                        train: one record per epoch
        live/train/                               train: its per-epoch curves (DVCLive, outside the cached train/)
        evaluate/details.json, metrics.json       evaluate: the evaluator's details and metrics models
                                                  (`itnas.evaluators`); metrics.json names its `evaluation`
        live/evaluate/                            evaluate (chains that train a network): the confusion matrix of
                                                  the test images as a DVC plot (DVCLive: plots/sklearn/)

The live/ folders are the DVC plots (`dvc plots show`); the histories are the records that resume, derive and the
report read.

The models of the evaluate files belong to the evaluator (`itnas.evaluators.Evaluator.metrics_model`,
`details_model`); `RunRecord` reads them as plain dicts and the evaluator validates them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from .contracts import FinalNetworkConfig
from .errors import MissingOutputError, StageOutputError
from .genotype import DERIVE_MODES, Genotype, GenotypeError

__all__ = ["RUN_FILES", "Derivations", "EpochGenotype", "EpochGenotypes", "RunFile", "RunFileMissing", "RunRecord",
           "TrainedNetwork", "run_id"]


def run_id(benchmark: str, method: str, seed: int) -> str:
    """The id of a chain, `<benchmark>/<method>-s<seed>`: its folder under the runs folder and its name in reports,
    stage names and checkpoints (the one place this format is built)."""
    return f"{benchmark}/{method}-s{seed}"


@dataclass(frozen=True)
class RunFile:
    """One file of a run folder: `path` relative to the folder, the `stage` that writes it, `what` it holds."""

    path: str
    stage: str
    what: str


#: Every file of a run folder, by key (the `RunRecord` attribute of the same name is its path).
RUN_FILES: dict[str, RunFile] = {
    "search_dir": RunFile("search", "search", "search outputs"),
    "supernet": RunFile("search/supernet.pt", "search", "searched supernet"),
    "search_config": RunFile("search/config.json", "search", "supernet meta"),
    "search_history": RunFile("search/history.json", "search", "search history"),
    "live_search": RunFile("live/search", "search", "search curves (DVCLive)"),
    "search_metrics": RunFile("search_metrics.json", "search", "search metrics"),
    "genotype": RunFile("genotype.json", "derive", "derived genotype"),
    "derivations": RunFile("derivations.json", "derive", "genotypes of both derivations"),
    "epoch_genotypes": RunFile("epoch_genotypes.json", "derive", "genotype of every search epoch"),
    "train_dir": RunFile("train", "train", "trained network"),
    "model": RunFile("train/model.pt", "train", "trained network"),
    "train_config": RunFile("train/config.json", "train", "trained network's config"),
    "train_history": RunFile("train/history.json", "train", "training history"),
    "live_train": RunFile("live/train", "train", "training curves (DVCLive)"),
    "evaluate_dir": RunFile("evaluate", "evaluate", "evaluation outputs"),
    "details": RunFile("evaluate/details.json", "evaluate", "evaluation details"),
    "metrics": RunFile("metrics.json", "evaluate", "evaluation metrics"),
    "live_evaluate": RunFile("live/evaluate", "evaluate", "confusion matrix plot (DVCLive)"),
}


class RunFileMissing(MissingOutputError):
    """A file of a run folder does not exist (a `MissingOutputError`, so a FileNotFoundError). Attributes: path (the
    file), stage (the stage that writes it), run (the `RunRecord`), so that a command-line layer can say what to run
    (the library knows no commands)."""

    def __init__(self, path: Path, what: str, stage: str, run: RunRecord):
        super().__init__(f"{path} does not exist (the run's {what}, written by its {stage} stage)")
        self.path, self.stage, self.run = Path(path), stage, run


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Derivations(_Model):
    """derivations.json: the genotype of every derivation mode (`itnas.genotype.DERIVE_MODES`) of one supernet, each
    in the genotype dict format (`Genotype.to_dict`)."""

    marginal: dict
    sequential: dict

    def genotypes(self) -> dict[str, Genotype]:
        """mode -> Genotype. Raises GenotypeError naming the mode when a genotype does not fit its space."""
        out = {}
        for mode in DERIVE_MODES:
            try:
                out[mode] = Genotype.from_dict(getattr(self, mode))
            except GenotypeError as err:
                raise GenotypeError(f"{mode}: {err}") from None
        return out


class EpochGenotype(_Model):
    """One search epoch's derived cell: `epoch` (the search history's epoch index, 0 = the first epoch) and the
    marginal genotype of the architecture at the end of that epoch (genotype dict format, `Genotype.to_dict`)."""

    epoch: int
    genotype: dict


class EpochGenotypes(_Model):
    """epoch_genotypes.json: the search trajectory, the genotype derived after every search epoch, in epoch order.
    `derivation` is the rule that derived them: the search history records the marginal genotype of every epoch
    (`itnas.search.epoch_arch_record`), whatever `derive.mode` is; the last epoch's is derivations.json's marginal
    genotype."""

    derivation: Literal["marginal"] = "marginal"
    epochs: list[EpochGenotype]

    @classmethod
    def from_history(cls, history: Any, where: str = "search history") -> EpochGenotypes:
        """The trajectory of a search history (search/history.json: one record per epoch, each with its "epoch"
        index and the epoch's marginal "genotype" dict), each genotype validated and rewritten in the canonical
        genotype format. Raises GenotypeError naming `where` and the epoch when a record has no genotype (a history
        written before the genotype was recorded: rerun the search) or one that does not fit its space, or when
        the epochs are not 0, 1, 2, ..."""
        if not isinstance(history, list):
            raise GenotypeError(f"{where} must hold a list of epoch records, got {type(history).__name__}; rerun the "
                                "search stage")
        epochs = []
        for k, rec in enumerate(history):
            epoch = rec.get("epoch") if isinstance(rec, dict) else None
            if epoch != k:
                raise GenotypeError(f"{where}: record {k} is epoch {epoch!r}, expected {k} (one record per epoch, in "
                                    "order); rerun the search stage")
            if not isinstance(rec.get("genotype"), dict):  # (rec is a dict: its epoch was read above)
                raise GenotypeError(f"{where}: epoch {k} records no genotype (a history written before the epoch "
                                    "genotype was recorded); rerun the search stage")
            try:
                genotype = Genotype.from_dict(rec["genotype"])
            except GenotypeError as err:
                raise GenotypeError(f"{where}: epoch {k}: {err}") from None
            epochs.append(EpochGenotype(epoch=k, genotype=genotype.to_dict()))
        if not epochs:
            raise GenotypeError(f"{where} holds no epoch; rerun the search stage")
        return cls(epochs=epochs)

    def genotypes(self) -> list[tuple[int, Genotype]]:
        """[(epoch, Genotype)] in epoch order. Raises GenotypeError naming the epoch when a genotype does not fit
        its space."""
        out = []
        for e in self.epochs:
            try:
                out.append((e.epoch, Genotype.from_dict(e.genotype)))
            except GenotypeError as err:
                raise GenotypeError(f"epoch {e.epoch}: {err}") from None
        return out


class TrainedNetwork(_Model):
    """train/config.json (and the "config" of train/model.pt): the final network (`FinalNetworkConfig`), its training
    config (`itnas.config.TrainConfig` as JSON), the seed and the fingerprint of the data it was trained on."""

    final: FinalNetworkConfig
    train: dict
    seed: int
    data_fingerprint: str


#: An epoch history (search/history.json, train/history.json): one JSON record per epoch.
EPOCHS = TypeAdapter(list[dict[str, Any]])


@dataclass(frozen=True)
class RunRecord:
    """The folder of one (benchmark, method, seed) chain under `runs_dir`: every path of `RUN_FILES` as an attribute
    (``record.metrics``, ``record.model``, ...), and typed reads and writes of its files.

    Reads raise RunFileMissing (a FileNotFoundError naming the file and the stage that writes it) when a file is
    missing, StageOutputError (a ValueError) naming the file when it is not valid JSON or not of its model.
    """

    benchmark: str
    method: str
    seed: int
    runs_dir: Path = Path("runs")
    FILES: ClassVar[dict[str, RunFile]] = RUN_FILES

    @property
    def name(self) -> str:
        """The run id (`run_id`)."""
        return run_id(self.benchmark, self.method, self.seed)

    @property
    def root(self) -> Path:
        return Path(self.runs_dir) / self.name

    def __getattr__(self, key: str) -> Path:
        files = type(self).FILES
        if key in files:
            return self.root / files[key].path
        raise AttributeError(f"{type(self).__name__} has no attribute {key!r}; run files: {', '.join(files)}")

    def require(self, key: str) -> Path:
        """The path of file `key`; raises RunFileMissing when it does not exist."""
        path, f = getattr(self, key), self.FILES[key]
        if not path.exists():
            raise RunFileMissing(path, f.what, f.stage, self)
        return path

    # ------------------------------------------------------------------------------------------------ reading
    def read_json(self, key: str) -> Any:
        """The parsed JSON of file `key`. Raises RunFileMissing, StageOutputError (a ValueError: not valid JSON)."""
        path = self.require(key)
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise StageOutputError(f"{path} is not valid JSON: {err}") from None

    def read(self, key: str, model: type[BaseModel] | TypeAdapter) -> Any:
        """File `key` validated by `model` (a pydantic model or TypeAdapter). Raises RunFileMissing, StageOutputError
        (a ValueError)."""
        data = self.read_json(key)
        try:
            return model.validate_python(data) if isinstance(model, TypeAdapter) else model.model_validate(data)
        except ValidationError as err:
            raise StageOutputError(f"{getattr(self, key)} is not the run's {self.FILES[key].what} ({_errors(err)}); "
                                   f"rerun its {self.FILES[key].stage} stage") from None

    def genotype_of(self) -> Genotype:
        """genotype.json as a Genotype. Raises RunFileMissing, GenotypeError."""
        return Genotype.load(self.require("genotype"))

    def derivations_of(self) -> dict[str, Genotype]:
        """derivations.json: mode -> Genotype, both modes. Raises RunFileMissing, GenotypeError (not valid JSON, not
        a mapping of both modes to valid genotypes)."""
        path = self.require("derivations")
        rerun = "rerun its derive stage"
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise GenotypeError(f"{path} is not valid JSON ({err}); {rerun}") from None
        try:
            derivations = Derivations.model_validate(data)
        except ValidationError:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise GenotypeError(f"{path} must map {' and '.join(DERIVE_MODES)} to their genotypes, got {keys}; "
                                f"{rerun}") from None
        try:
            return derivations.genotypes()
        except GenotypeError as err:
            raise GenotypeError(f"{path}: {err}") from None

    def epoch_genotypes_of(self) -> list[tuple[int, Genotype]]:
        """epoch_genotypes.json: [(epoch, Genotype)] of every search epoch, in order. Raises RunFileMissing,
        GenotypeError naming the file (not valid JSON, not an `EpochGenotypes`, or a genotype that does not fit its
        space, with the epoch)."""
        try:
            return self.read("epoch_genotypes", EpochGenotypes).genotypes()
        except (ValueError, GenotypeError) as err:  # ValueError: the file is not JSON or not of its model
            raise GenotypeError(f"{self.epoch_genotypes}: {err}; rerun its derive stage") from None

    def trained_network(self) -> tuple[TrainedNetwork, dict, list[dict]]:
        """train/model.pt: (its `TrainedNetwork`, the network's state_dict, the training history). Raises
        RunFileMissing, CheckpointError (unreadable or not a trained network of this version)."""
        from .checkpoint import CheckpointError, read_torch_file

        path = self.require("model")
        payload = read_torch_file(path, "restore it with `dvc checkout` or rebuild it with `dvc repro`")
        try:
            return TrainedNetwork.model_validate(payload["config"]), payload["model"], EPOCHS.validate_python(
                payload["history"])
        except (TypeError, KeyError, ValidationError) as err:
            raise CheckpointError(f"{path} is not a trained network of this version ({err!r:.200}); rerun its train "
                                  "stage") from None

    # ------------------------------------------------------------------------------------------------ writing
    def write_json(self, key: str, obj: BaseModel | Any, **dump: Any) -> Path:
        """Write file `key` as indented JSON (a model through ``model_dump(mode="json", **dump)``)."""
        if isinstance(obj, BaseModel):
            obj = obj.model_dump(mode="json", **dump)
        path = getattr(self, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=2) + "\n")
        return path


def _errors(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in err.errors()[:3])
