"""One params model (itnas/params.py), one run identity (itnas/identity.py), user errors by type (itnas/errors.py,
pipeline/cli.py), also under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from tiny_project import ROOT, history_curves, itnas, live_curves, one_line_error, tiny_params, write_params

import pipeline.search
from itnas.config import ConfigError, DataConfig, SearchConfig
from itnas.errors import ItnasError, MissingOutputError, UnknownNameError
from itnas.evaluators import list_evaluators
from itnas.identity import identity_diff, run_identity
from itnas.params import Params
from itnas.train_config import TrainConfig
from pipeline.live import SEARCH_KEYS

# ------------------------------------------------------------------------------------------------ the params model


def test_a_chain_resolves_every_config_of_its_stages_at_once():
    params = tiny_params()
    params["benchmarks"]["tiny"]["search"] = {"supernet": {"C": 8}}
    params["methods"]["darts"] = {"schedule": {"epochs": 2}}
    chain = Params.from_dict(params).chain("tiny", "darts", 3, "cpu")
    assert isinstance(chain.data, DataConfig) and isinstance(chain.search, SearchConfig)
    assert isinstance(chain.train, TrainConfig) and (chain.label, chain.evaluation) == ("digits (tests)", "train")
    assert (chain.search.method, chain.search.seed, chain.search.supernet.C, chain.search.schedule.epochs) == (
        "darts", 3, 8, 2)
    assert chain.search.supernet.layers == params["search"]["supernet"]["layers"]  # the shared block beneath
    assert chain.data.dataset == "digits" and chain.train.epochs == 1


def test_benchmarks_and_runs_are_typed_and_named_with_suggestions():
    params = Params.from_dict(tiny_params())
    assert params.chains() == [("tiny", "darts", 0)] and set(params.benchmarks) == {"tiny"}
    bad = tiny_params()
    bad["benchmarks"]["tiny"]["evaluation"] = "trian"
    with pytest.raises(ConfigError, match=r"benchmarks\.tiny\.evaluation='trian' \(did you mean 'train'\?\); valid "
                                          rf"values: {', '.join(list_evaluators())}"):
        Params.from_dict(bad)
    bad = tiny_params()
    bad["runs"]["methods"] = ["dart"]
    with pytest.raises(ConfigError, match=r"runs\.methods: unknown methods \['dart'\] \(did you mean 'darts'\?\)"):
        Params.from_dict(bad)
    with pytest.raises(ConfigError, match=r"unknown benchmark 'tiyn' \(did you mean 'tiny'\?\)"):
        params.chain("tiyn", "darts", 0)


def test_a_space_the_evaluation_cannot_evaluate_is_refused_by_the_model():
    params = tiny_params()
    params["search"]["supernet"]["space"] = "nb201"
    with pytest.raises(ConfigError, match=r"benchmarks\.tiny: search\.supernet\.space='nb201' has no final network "
                                          r"to train \(evaluation: train\)"):
        Params.from_dict(params)


# -------------------------------------------------------------------------------------------------- run identity


def test_identity_diff_names_the_changed_code_and_keys():
    cfg = SearchConfig()
    stored = run_identity(cfg, data_fingerprint="a", code={"itnas/search.py": "1", "itnas/arch.py": "2"})
    assert identity_diff(stored, stored) is None
    other = run_identity(cfg.model_copy(update={"seed": 4}), data_fingerprint="b", world_size=2,
                         code={"itnas/search.py": "9", "itnas/arch.py": "2"})
    assert identity_diff(stored, other) == ("other code (itnas/search.py changed) and other params or data (keys "
                                            "differ: ['config.seed', 'data_fingerprint', 'data_parallel.world_size'])")
    partial = run_identity(cfg, code=stored["code"])  # as the check stage builds it: no data
    assert identity_diff(stored, partial, partial=True) is None
    assert identity_diff(stored, partial) == "other params or data (keys differ: ['data_fingerprint'])"


def test_more_threads_than_cores_is_warned(monkeypatch, capsys):
    """threads x processes on the machine above its cores: OpenMP threads wait for each other (README "The first
    run"), so the stage says so; within the cores it says nothing."""
    from pipeline.common import use_threads

    params = Params.from_dict({**tiny_params(), "threads": 2})
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
        use_threads(params, torch.device("cpu"))
        assert "threads" not in capsys.readouterr().err
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
        use_threads(params, torch.device("cpu"))
        assert "threads=2 x 3 process(es) > the 4 core(s)" in " ".join(capsys.readouterr().err.split())
    finally:
        torch.set_num_threads(before)


def test_threads_param_sets_the_cpu_threads_and_is_part_of_the_identity():
    """`threads` (CPU intra-op threads per stage process) is validated, set by the stages on a CPU only, and part of
    a run's identity there: a checkpoint written at another thread count (other float32 bits) is not resumed."""
    from pipeline.common import chain_identity, use_threads

    for bad in (-1, "two", 1.5, True):
        with pytest.raises(ConfigError, match=rf"threads={bad!r}; valid values: 0 \(torch's default"):
            Params.from_dict({**tiny_params(), "threads": bad})
    one, two = (Params.from_dict({**tiny_params(), "device": "cpu", "threads": n}) for n in (1, 2))
    assert one.cpu_threads() == 1 and two.cpu_threads() == 2 and two.cpu_threads(torch.device("cuda")) is None
    default = Params.from_dict({**tiny_params(), "threads": 0})
    assert default.cpu_threads(torch.device("cpu")) == 0  # the param: the same in a plain process and a torchrun rank
    chain = one.chain("tiny", "darts", 0)
    stored, expected = chain_identity(one, "search", chain), chain_identity(two, "search", chain)
    assert stored["threads"] == 1 and identity_diff(stored, expected) == ("other params or data (keys differ: "
                                                                          "['threads'])")
    before = torch.get_num_threads()
    try:
        use_threads(two, torch.device("cpu"))
        assert torch.get_num_threads() == 2
        use_threads(one, torch.device("meta"))  # not a CPU: left alone
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_an_interrupted_search_stage_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """The identity the search stage stores in its checkpoint is the one it (and the check stage) expects: an
    interrupted search is kept by `check` and resumed by the next run of the stage. Its DVCLive curves show the
    epochs as they finish, and the resumed run's curves are those of the whole history (the checkpoint's epochs
    replayed, time_s included), as an uninterrupted run's are."""
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, tiny_params())
    assert itnas("prepare", "tiny").exit_code == 0
    real = pipeline.search.run_search

    class Interrupted(Exception):
        pass

    def interrupted(*args, on_epoch, **kwargs):
        def stop(record):
            on_epoch(record)
            raise Interrupted  # after the first epoch's checkpoint, as a kill would

        return real(*args, on_epoch=stop, **kwargs)

    monkeypatch.setattr(pipeline.search, "run_search", interrupted)
    assert isinstance(itnas("search", "tiny", "darts", "0").exception, Interrupted)
    ck = tmp_path / ".itnas_ckpt/tiny/darts-s0/search.pt"
    assert ck.exists()
    live = tmp_path / "runs/tiny/darts-s0/live/search"
    first = torch.load(ck, weights_only=False)["history"]
    assert [r["epoch"] for r in first] == [0] and live_curves(live) == history_curves(first, SEARCH_KEYS)
    monkeypatch.setattr(pipeline.search, "run_search", real)
    check = itnas("check-params")
    assert check.exit_code == 0 and "removing" not in check.stderr and ck.exists()
    result = itnas("search", "tiny", "darts", "0")
    assert result.exit_code == 0, result.output
    assert "resuming from" in result.stderr and "(1 epochs done)" in " ".join(result.stderr.split())
    history = json.loads((tmp_path / "runs/tiny/darts-s0/search/history.json").read_text())
    assert [r["epoch"] for r in history] == [0, 1, 2] and history[0] == first[0]
    curves = live_curves(live)
    assert curves == history_curves(history, SEARCH_KEYS) and set(curves["train_loss"]) == {0, 1, 2}
    assert json.loads((live / "metrics.json").read_text())["step"] == 2


# ------------------------------------------------------------------------------------------------- user errors


def test_user_errors_share_one_base_and_keep_their_builtin_one():
    from itnas.checkpoint import CheckpointError
    from itnas.data import DataError
    from itnas.engine import NonFiniteError
    from itnas.genotype import GenotypeError

    for cls, builtin in ((ConfigError, ValueError), (DataError, RuntimeError), (GenotypeError, ValueError),
                         (CheckpointError, RuntimeError), (NonFiniteError, RuntimeError),
                         (MissingOutputError, FileNotFoundError), (UnknownNameError, KeyError)):
        assert issubclass(cls, ItnasError) and issubclass(cls, builtin), cls
    assert str(UnknownNameError("unknown method 'x'")) == "unknown method 'x'"  # not a quoted KeyError repr


def test_cli_prints_user_errors_and_lets_bugs_show_their_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, tiny_params())
    missing = itnas("derive", "tiny", "darts", "0")  # no supernet yet: a user error
    assert missing.exit_code == 2 and "supernet.pt does not exist" in one_line_error(missing)
    import pipeline.derive

    def bug(*args):
        raise KeyError("a bug")

    monkeypatch.setattr(pipeline.derive, "derive", bug)
    result = itnas("derive", "tiny", "darts", "0")
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)  # CliRunner keeps the traceback
    assert "error:" not in result.stderr


@pytest.mark.slow
def test_a_user_error_on_one_torchrun_rank_ends_the_job_with_one_line(tmp_path):
    """distributed.nproc_per_node: 2 (gloo, CPU): an unreadable search checkpoint, which rank 0 alone reads, ends the
    job with the one-line error naming the file and exit code 2, not torchrun's failure summary and exit 1."""
    params = tiny_params()
    params["distributed"]["nproc_per_node"] = 2
    write_params(tmp_path, params)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

    def stage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)

    assert stage("prepare", "tiny").returncode == 0
    ck = tmp_path / ".itnas_ckpt/tiny/darts-s0/search.pt"
    ck.parent.mkdir(parents=True)
    ck.write_bytes(b"half a checkpoint")
    done = stage("search", "tiny", "darts", "0")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert "torch.distributed.run --nproc_per_node=2" in " ".join(done.stderr.split())  # it ran under torchrun
    assert lines[-1].startswith("error:") and sum(line.startswith("error:") for line in lines) == 1, done.stderr
    assert "search.pt is unreadable" in lines[-1] and "(process 0 of the torchrun job)" in lines[-1]
    assert "ChildFailedError" not in done.stderr and "Root Cause" not in done.stderr


def test_the_light_evaluator_registry_agrees_with_the_networks_and_the_full_registry():
    """EVALUATOR_KINDS (what the params model reads without importing an evaluator) accepts for `train` exactly the
    spaces with a final network, for `nb201` only the nb201 space, and names the same evaluators as the full
    registry, with the same description and training flag."""
    from itnas.evaluators import EVALUATOR_KINDS
    from itnas.evaluators.registry import get_evaluator
    from itnas.networks import has_final_network
    from itnas.spaces import list_spaces

    assert EVALUATOR_KINDS["train"].accepted_spaces() == [s for s in list_spaces() if has_final_network(s)]
    assert EVALUATOR_KINDS["nb201"].accepted_spaces() == ["nb201"]
    assert EVALUATOR_KINDS["train"].space_problem("nb201", "benchmarks.b").startswith(
        "benchmarks.b: search.supernet.space='nb201' has no final network to train (evaluation: train); spaces "
        "with a final network: darts, s1")
    for name, kind in EVALUATOR_KINDS.items():
        evaluator = get_evaluator(name)
        assert (evaluator.name, evaluator.trains, evaluator.description) == (name, kind.trains, kind.description)
    bad = tiny_params()
    bad["benchmarks"]["tiny"]["search"] = {"supernet": {"space": "nb201"}}
    with pytest.raises(ConfigError, match=r"benchmarks\.tiny: search\.supernet\.space='nb201' has no final network"):
        Params.from_dict(bad)
