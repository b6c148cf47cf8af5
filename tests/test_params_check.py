"""Params checked before anything runs (the `check` stage), checkpoints that know their code and are removed when
no stage can resume them, and config errors named with their keys (issue 10, items 1, 3, 7)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_project import ROOT, itnas, one_line_error, tiny_params, write_params

from itnas.checkpoint import save_checkpoint
from itnas.config import ConfigError
from itnas.params import Params, load_params
from itnas_tools.dvc_deps import stage_closure, stages
from pipeline.check import MARKER_TEXT
from pipeline.common import chain_identity, checkpoint_for, code_identity
from pipeline.paths import PARAMS_CHECKED

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())


# ------------------------------------------------------------------------------------- the check stage (item 1)


def test_check_stage_runs_before_every_other_stage():
    """dvc.yaml: `check` depends on params.yaml itself and writes an uncached marker; `prepare` depends on the
    marker, and every other stage on prepare's outputs, directly or through another stage."""
    body = stages(DVC)["check"]
    assert body["cmd"] == "itnas check-params" and "params.yaml" in body["deps"]
    assert body["outs"] == [{PARAMS_CHECKED.as_posix(): {"cache": False}}]
    assert PARAMS_CHECKED.as_posix() in stages(DVC)["prepare"]["deps"]
    outs = {name: [next(iter(o)) if isinstance(o, dict) else o for o in b.get("outs", []) + b.get("metrics", [])]
            for name, b in stages(DVC).items()}

    def upstream(name: str, seen: set[str]) -> set[str]:
        for dep in stages(DVC)[name].get("deps", []):
            for other, paths in outs.items():
                if other not in seen and any(dep == p or p.startswith(dep.rstrip("/") + "/")
                                             or dep.startswith(p.rstrip("/") + "/") for p in paths):
                    seen.add(other)
                    upstream(other, seen)
        return seen

    for name in stages(DVC):
        if name != "check":
            assert "check" in upstream(name, set()), f"stage {name} can run before `check`"


def test_check_params_writes_a_marker_that_never_changes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    write_params(tmp_path, params)
    result = itnas("check-params")
    assert result.exit_code == 0, result.output
    assert (tmp_path / PARAMS_CHECKED).read_text() == MARKER_TEXT
    for change in ({"search": {**params["search"], "schedule": {"epochs": 7}}},
                   {"data": {**params["data"], "train_size": 500}}, {"runs": {"methods": ["itnas"], "seeds": [3]}}):
        write_params(tmp_path, {**params, **change})
        assert itnas("check-params").exit_code == 0
        assert (tmp_path / PARAMS_CHECKED).read_bytes() == MARKER_TEXT.encode()


@pytest.mark.parametrize("edit,named", [
    (lambda p: p.update(serach={"schedule": {"epochs": 1}}), r"unknown top-level keys \['serach'\] \(did you mean "
                                                            r"'search' for 'serach'\?\); valid keys: device, threads, "
                                                            r"data, "),
    (lambda p: p["search"]["schedule"].update(epocs=1), r"search\.schedule\.epocs: unknown key; valid keys: epochs, "),
    (lambda p: p["methods"]["darts"].update(weight_optimiser={"lr": 1}), r"methods\.darts\.weight_optimiser: "
                                                                         r"unknown key; valid keys: supernet, "),
    (lambda p: p["methods"]["darts"].update(schedule={"epocs": 1}), r"methods\.darts\.schedule\.epocs: unknown "
                                                                    r"key; valid keys: epochs, warmup_epochs"),
    (lambda p: p["train"]["network"].update(layres=3), r"train\.network\.layres: unknown key; valid keys: C, layers"),
])
def test_check_params_names_a_misspelt_key(tmp_path, monkeypatch, edit, named):
    """A misspelt key anywhere stops the first stage with exit 2, naming the key and the valid keys; the marker is
    left as it was."""
    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    write_params(tmp_path, params)
    assert itnas("check-params").exit_code == 0  # a valid file writes the marker
    marker = (tmp_path / PARAMS_CHECKED).read_bytes()
    edit(params)
    write_params(tmp_path, params)
    result = itnas("check-params")
    assert result.exit_code == 2
    assert re.search(named, result.stderr), result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3  # one message, no traceback
    assert (tmp_path / PARAMS_CHECKED).read_bytes() == marker


def _dvc(root: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    proc = subprocess.run(list(args), cwd=root, env=env, capture_output=True, text=True)
    if ok:
        assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_dvc_exp_run_stops_at_a_misspelt_key_and_reruns_nothing_needless(tmp_path):
    """The issue's input, with the real dvc: `dvc exp run -S '+serach.schedule.epochs=1'` fails at once naming the
    key; a valid change of the search block reruns `check` but not `prepare`."""
    for name in ("itnas", "itnas_tools", "pipeline"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    write_params(tmp_path, tiny_params())
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "repro", "prepare"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "prepared"]):
        _dvc(tmp_path, *cmd)
    splits = tmp_path / "data/prepared/tiny/search/splits.json"
    mtime = splits.stat().st_mtime_ns

    bad = _dvc(tmp_path, "dvc", "exp", "run", "-S", "+serach.schedule.epochs=1", "prepare", ok=False)
    assert bad.returncode != 0
    assert "unknown top-level keys ['serach']" in bad.stderr + bad.stdout and "valid keys: device" in bad.stderr
    assert "Running stage 'prepare@tiny'" not in bad.stdout

    _dvc(tmp_path, "git", "checkout", "--", "params.yaml", PARAMS_CHECKED.as_posix())
    good = _dvc(tmp_path, "dvc", "exp", "run", "-S", "search.schedule.epochs=2", "prepare")
    assert "Running stage 'check'" in good.stdout and "Stage 'prepare@tiny' didn't change" in good.stdout
    assert splits.stat().st_mtime_ns == mtime


# ------------------------------------------------------------------------- config errors with both keys (item 7)


def test_partial_k_not_dividing_C_names_both_keys(tmp_path, monkeypatch):
    params = tiny_params()
    params["search"]["supernet"]["C"] = 4
    params["methods"]["pcdarts"]["supernet"] = {"base": "pcdarts", "partial_k": 3}
    path = write_params(tmp_path, params)
    with pytest.raises(ConfigError, match=r"search \(with methods\.pcdarts\): supernet\.C=4 must be divisible by "
                                          r"supernet\.partial_k=3 on the pcdarts base"):
        load_params(path)
    params["runs"]["methods"] = ["pcdarts"]  # also when pcdarts is run, and through the command line
    write_params(tmp_path, params)
    monkeypatch.chdir(tmp_path)
    result = itnas("check-params")
    assert result.exit_code == 2 and "supernet.partial_k=3" in result.stderr and "Traceback" not in result.output


# ------------------------------------------------------------------ checkpoints that know their code (item 3)


def test_code_identity_hashes_the_stage_closure(tmp_path):
    """The files hashed are the stage's import closure (the code deps dvc.yaml lists for it); changing one changes
    its hash only; editing a dev tool (itnas_tools) changes no stage's identity (review defect 1)."""
    search = code_identity("itnas search tiny darts 0")
    assert set(search) == {p.as_posix() for p in stage_closure("itnas search darts 0")}
    assert "itnas/search.py" in search and "itnas/search.py" not in code_identity("itnas prepare tiny")
    copy = tmp_path / "repo"
    for name in ("itnas", "itnas_tools", "pipeline"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "dvc.yaml"):
        shutil.copy(ROOT / name, copy / name)
    commands = [body["cmd"] for body in stages(yaml.safe_load((ROOT / "dvc.yaml").read_text())).values()]
    before = {cmd: code_identity(cmd, copy) for cmd in commands}
    assert before["itnas search ${item.benchmark} ${item.method} ${item.seed}"] == search
    for tool in sorted((copy / "itnas_tools").glob("*.py")):
        with tool.open("a") as f:
            f.write("\n# a tool change\n")
    assert {cmd: code_identity(cmd, copy) for cmd in commands} == before
    assert not any(f.startswith("itnas_tools/") for ident in before.values() for f in ident)
    with (copy / "itnas/engine/loop.py").open("a") as f:
        f.write("\n# a code change\n")
    changed = code_identity("itnas search tiny darts 0", copy)
    assert {f for f in search if search[f] != changed[f]} == {"itnas/engine/loop.py"}
    (copy / "dvc.yaml").unlink()  # an installed package: every file of itnas/ and pipeline/
    every = code_identity("itnas search tiny darts 0", copy)
    assert set(every) == {p.relative_to(copy).as_posix() for pkg in ("itnas", "pipeline")
                          for p in (copy / pkg).rglob("*.py")}


def search_identity(params: dict, benchmark: str, method: str, seed: int) -> dict:
    """The search identity of a chain without the data (as the check stage builds it)."""
    p = Params.from_dict(params)
    return chain_identity(p, "search", p.chain(benchmark, method, seed))


def train_identity(params: dict, benchmark: str, method: str, seed: int) -> dict:
    p = Params.from_dict(params)
    return chain_identity(p, "train", p.chain(benchmark, method, seed))


def _fake_checkpoint(path: Path, identity: dict) -> None:
    save_checkpoint(path, {"config": identity, "epoch": 1, "state": {}, "history": [{}], "time_s": 1.0, "rng": {}})


def test_checkpoint_of_other_code_is_discarded_with_a_message(tmp_path, capsys):
    params = tiny_params()
    identity = {**search_identity(params, "tiny", "darts", 0), "data_fingerprint": "f" * 16}
    ck = tmp_path / "search.pt"
    _fake_checkpoint(ck, identity)
    checkpoint_for(ck, identity)
    assert ck.exists() and "resuming from" in capsys.readouterr().err
    old = {**identity, "code": {**identity["code"], "itnas/search.py": "0" * 16}}
    _fake_checkpoint(ck, old)
    (tmp_path / "search.pt.tmp").write_bytes(b"half a write")  # what a kill during the write leaves
    checkpoint_for(ck, identity)
    err = capsys.readouterr().err
    assert "holds a run of other code (itnas/search.py changed); discarding it and starting over" in " ".join(
        err.split())
    assert not ck.exists() and not (tmp_path / "search.pt.tmp").exists()
    _fake_checkpoint(ck, {**old, "data_fingerprint": "0" * 16})
    checkpoint_for(ck, identity)
    assert "other code (itnas/search.py changed) and other params or data (keys differ: ['data_fingerprint'])" in (
        " ".join(capsys.readouterr().err.split()))


def test_search_stage_discards_a_checkpoint_of_other_code(tmp_path, monkeypatch):
    """The search stage's checkpoint identity includes the code: an interrupted search of other code is not
    resumed (its epochs would be mixed into the new code's result)."""
    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    params["search"]["schedule"]["epochs"] = 1
    params["methods"]["pcdarts"]["schedule"] = {"warmup_epochs": 0}
    write_params(tmp_path, params)
    assert itnas("prepare", "tiny").exit_code == 0
    from itnas.data import load_search_data

    fingerprint = load_search_data("data/prepared/tiny/search", "data/raw").fingerprint()
    identity = {**search_identity(params, "tiny", "darts", 0), "data_fingerprint": fingerprint}
    identity["code"] = {**identity["code"], "itnas/engine/loop.py": "0" * 16}  # written by other engine code
    _fake_checkpoint(tmp_path / ".itnas_ckpt/tiny/darts-s0/search.pt", identity)
    result = itnas("search", "tiny", "darts", "0")
    assert result.exit_code == 0, result.output
    assert "other code (itnas/engine/loop.py changed); discarding it" in " ".join(result.stderr.split())
    assert "resuming" not in result.stderr and (tmp_path / "runs/tiny/darts-s0/search/supernet.pt").exists()


def test_check_stage_removes_checkpoints_no_stage_can_resume(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    params["runs"]["seeds"] = [0, 1]
    write_params(tmp_path, params)
    ck = tmp_path / ".itnas_ckpt"
    # a run that is no longer listed (e.g. runs.seeds shrank after an interrupted run)
    _fake_checkpoint(ck / "tiny/itnas-s5/search.pt", {})
    # darts-s0: a search of another learning rate, a training of other code
    other = {**params, "search": {**params["search"], "weight_optimizer": {"lr": 0.5}}}
    _fake_checkpoint(ck / "tiny/darts-s0/search.pt",
                     {**search_identity(other, "tiny", "darts", 0), "data_fingerprint": "x"})
    stale_train = train_identity(params, "tiny", "darts", 0)
    stale_train["code"] = {**stale_train["code"], "itnas/train.py": "0" * 16}
    _fake_checkpoint(ck / "tiny/darts-s0/train.pt", {**stale_train, "network": {}, "data_fingerprint": "x"})
    # darts-s1: both resumable (the data and the genotype are checked when the stage starts)
    _fake_checkpoint(ck / "tiny/darts-s1/search.pt",
                     {**search_identity(params, "tiny", "darts", 1), "data_fingerprint": "x"})
    _fake_checkpoint(ck / "tiny/darts-s1/train.pt", {**train_identity(params, "tiny", "darts", 1), "network": {},
                                                "data_fingerprint": "x"})
    (ck / "tiny/darts-s1/broken.pt").write_bytes(b"")  # not a checkpoint of a stage: left alone

    result = itnas("check-params")
    assert result.exit_code == 0, result.output
    err = " ".join(result.stderr.split())
    assert ("removing .itnas_ckpt/tiny/itnas-s5: chain tiny/itnas-s5 is not in (runs.benchmarks, runs.tables) x "
            "runs.methods x runs.seeds") in err
    assert ("removing .itnas_ckpt/tiny/darts-s0/search.pt: a run of other params or data (keys differ: "
            "['config.weight_optimizer.lr'])") in err
    assert "removing .itnas_ckpt/tiny/darts-s0/train.pt: a run of other code (itnas/train.py changed)" in err
    assert "removed 3 stale checkpoint(s)" in err
    assert not (ck / "tiny/itnas-s5").exists() and not (ck / "tiny/darts-s0/search.pt").exists()
    assert not (ck / "tiny/darts-s0/train.pt").exists()
    assert (ck / "tiny/darts-s1/search.pt").exists() and (ck / "tiny/darts-s1/train.pt").exists()


def test_unreadable_checkpoint_is_named_by_its_stage(tmp_path, monkeypatch):
    """An unreadable checkpoint (not a DVC output) stops the stage naming the file; the check stage leaves it."""
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, tiny_params())
    assert itnas("prepare", "tiny").exit_code == 0
    ck = tmp_path / ".itnas_ckpt/tiny/darts-s0/search.pt"
    ck.parent.mkdir(parents=True)
    ck.write_bytes(b"PK\x03\x04 truncated")
    assert itnas("check-params").exit_code == 0 and ck.exists()
    result = itnas("search", "tiny", "darts", "0")
    assert result.exit_code == 2
    line = one_line_error(result)
    assert line.startswith("error: checkpoint .itnas_ckpt/tiny/darts-s0/search.pt is unreadable")
    assert "delete it" in line


# ------------------------------------------------------- rules of the review of the issue-17 refactor (defects 5-9)


def test_gdas_is_refused_data_parallel(tmp_path, monkeypatch):
    """gdas (Gumbel-softmax sampler) with 2 processes: check-params stops with one line naming the layout, the method
    and the fix (DDP would crash on the unused ops of a one-hot sample); drnas with 2 processes and gdas alone are
    valid (docs/method.md 2.12)."""
    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    params["runs"]["methods"] = ["darts", "gdas"]
    params["distributed"] = {"nproc_per_node": 2}
    write_params(tmp_path, params)
    result = itnas("check-params")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert one_line_error(result) == (
        "error: distributed: nproc_per_node=2 x nnodes=1 = 2 processes, but method gdas (Gumbel-softmax sampling) "
        "cannot search data-parallel yet (docs/method.md 2.12): set distributed.nproc_per_node and "
        "distributed.nnodes to 1, or remove gdas from runs.methods")
    params["runs"]["methods"] = ["darts", "drnas"]
    Params.from_dict(params)
    params["runs"]["methods"], params["distributed"] = ["gdas"], {"nproc_per_node": 1}
    Params.from_dict(params)


def test_gdas_is_refused_with_compile(tmp_path, monkeypatch):
    """search.compile with gdas (a new sample per step would recompile the network): refused in one line naming the
    method and the keys, from the config itself and through check-params; compile with darts stays valid."""
    params = tiny_params()
    params["runs"]["methods"] = ["gdas"]
    params["methods"] = {"gdas": {"compile": True}}
    message = ("compile=true with method 'gdas': its Gumbel-softmax sample (the op chosen on every edge) is a Python "
               "value of the compiled forward, so torch.compile would compile again for every new sample; set "
               "compile: false for gdas (search.compile or methods.gdas.compile)")
    with pytest.raises(ConfigError) as err:
        Params.from_dict(params)
    assert str(err.value) == message
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, params)
    result = itnas("check-params")
    assert result.exit_code == 2 and one_line_error(result) == f"error: {message}"
    params["runs"]["methods"], params["methods"] = ["darts"], {"darts": {"compile": True}}
    assert Params.from_dict(params).chain("tiny", "darts", 0).search.compile is True


def test_search_and_train_stages_list_the_params_they_resolve():
    """`device` resolves the search dtype (auto: float64 on a CPU, float32 on a GPU) and the training's device: a
    param of every stage that runs a search or a training, besides evaluate (review defect 9)."""
    for name in ("search", "search-table", "train", "evaluate"):
        assert "device" in stages(DVC)[name]["params"], name
    assert "distributed" in stages(DVC)["search"]["params"] and "distributed" in stages(DVC)["train"]["params"]


def test_method_help_lists_every_registered_method():
    """The METHOD argument of the stage commands (`itnas search --help`) names every method of the registry, gdas and
    drnas included."""
    from itnas.methods import list_methods
    from pipeline.cli import METHOD

    assert METHOD.help == "method: " + ", ".join(list_methods()) and {"gdas", "drnas"} <= set(list_methods())
    assert "gdas" in itnas("search", "--help").output


def test_check_params_warns_when_the_figures_miss_chains(tmp_path, monkeypatch):
    """dvc.yaml's generated figures list the chains of `runs`; after a change of `runs` the check stage says to
    regenerate them (a warning: the stages themselves are unaffected), and is silent once they are regenerated."""
    from itnas_tools.dvc_plots import main as dvc_plots

    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    write_params(tmp_path, params)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    assert dvc_plots(["--dvc-file", str(tmp_path / "dvc.yaml"), "--write"]) == 0
    result = itnas("check-params")
    assert result.exit_code == 0, result.output
    assert "figures" not in result.output
    two = {**params, "runs": {**params["runs"], "methods": ["darts", "gdas"]}}
    write_params(tmp_path, two)
    result = itnas("check-params")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "python -m itnas_tools.dvc_plots --write" in said and "(chains not drawn: tiny/gdas-s0)" in said
    assert "earlier run" not in said
    assert dvc_plots(["--dvc-file", str(tmp_path / "dvc.yaml"), "--write"]) == 0
    write_params(tmp_path, params)  # gdas dropped: its old curves would still be drawn
    said = " ".join(itnas("check-params").output.split())
    assert "chains drawn from an earlier run's files: tiny/gdas-s0" in said and "not drawn" not in said
    assert dvc_plots(["--dvc-file", str(tmp_path / "dvc.yaml"), "--write"]) == 0
    assert "figures" not in itnas("check-params").output
