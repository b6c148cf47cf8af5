"""dvc.yaml code deps cover what each stage imports (itnas_tools/dvc_deps.py), and the checker can fail."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path

import pytest
import yaml

from itnas_tools.dvc_deps import (
    DepsError,
    covers,
    import_closure,
    main,
    minimal_deps,
    rewrite_deps,
    stage_closure,
    stage_deps,
    stage_modules,
    stages,
    uncovered,
)

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


# ------------------------------------------------------------------------------------ the real dvc.yaml


@pytest.mark.parametrize("stage", list(stages(DVC)))
def test_stage_deps_cover_import_closure(stage):
    missing = uncovered({"stages": {stage: DVC["stages"][stage]}}, ROOT)
    if missing:
        paste = "\n".join(f"      - {d}" for d in stage_deps({"stages": {stage: DVC["stages"][stage]}}, ROOT)[stage])
        pytest.fail(f"dvc.yaml stage {stage!r}: deps do not cover {', '.join(f for _, f in missing)} (imported by "
                    f"`{stages(DVC)[stage]['cmd']}`); computed deps (python -m itnas_tools.dvc_deps):\n{paste}")


def test_checker_reports_a_removed_dep():
    """Drop one dep of `search` that is in its closure: the checker reports exactly that stage and file (on top of
    whatever the real dvc.yaml misses today), so the test above can fail."""
    closure = {f.as_posix() for f in stage_closure(DVC["stages"]["search"]["cmd"], ROOT)}
    deps = DVC["stages"]["search"]["deps"]
    droppable = [d for d in deps if isinstance(d, str) and d in closure]
    assert droppable, f"no file dep of `search` is in its closure {sorted(closure)}"
    dropped = "pipeline/search.py" if "pipeline/search.py" in droppable else droppable[0]
    before = set(uncovered(DVC, ROOT))
    broken = copy.deepcopy(DVC)
    broken["stages"]["search"]["deps"].remove(dropped)
    after = set(uncovered(broken, ROOT))
    assert ("search", dropped) not in before
    assert after - before == {("search", dropped)}
    assert before <= after


def test_checker_passes_on_computed_deps():
    """The deps printed by `python -m itnas_tools.dvc_deps` satisfy the checker (a paste makes the test pass)."""
    fixed = copy.deepcopy(DVC)
    for name, deps in stage_deps(DVC, ROOT).items():
        fixed["stages"][name]["deps"] = deps
    assert uncovered(fixed, ROOT) == []


def test_rewrite_deps_fixes_a_stale_file_and_keeps_the_rest():
    """`python -m itnas_tools.dvc_deps --write`: drop a code dep from the real dvc.yaml text, rewrite, and the
    checker is satisfied again; params, outs and comments are untouched."""
    text = (ROOT / "dvc.yaml").read_text()
    stale = text.replace("      - pipeline/search.py\n", "", 1)
    assert uncovered(yaml.safe_load(stale), ROOT) == [("search", "pipeline/search.py")]
    fixed = rewrite_deps(stale, stage_deps(yaml.safe_load(stale), ROOT))
    assert uncovered(yaml.safe_load(fixed), ROOT) == []
    assert fixed == text  # the real dvc.yaml is exactly what the generator writes
    for stage, body in yaml.safe_load(fixed)["stages"].items():
        for key in ("params", "outs", "metrics", "plots", "cmd"):
            assert body.get(key) == DVC["stages"][stage].get(key)


def test_every_stage_command_resolves():
    for name, body in stages(DVC).items():
        modules = stage_modules(body["cmd"], ROOT)
        assert modules and all(m.startswith("pipeline.") for m in modules), (name, modules)


# ------------------------------------------------------------------------------------ import_closure


def test_import_closure_synthetic_package(tmp_path):
    write_tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/main.py": """
            import os
            import numpy as np
            from . import helpers
            from .sub.deep import VALUE
            from pkg import plain
            from pkg.plain import NAME

            def run():
                from .lazy import thing   # imported lazily, inside a function
                import pkg.sub.other
                return thing
        """,
        "pkg/helpers.py": "X = 1\n",
        "pkg/plain.py": "NAME = 'n'\n",
        "pkg/lazy.py": "from .sub import chained\nthing = 1\n",
        "pkg/unused.py": "Y = 2\n",
        "pkg/sub/__init__.py": "from .. import helpers\n",
        "pkg/sub/deep.py": "from ..plain import NAME as VALUE\n",
        "pkg/sub/chained.py": "Z = 3\n",
        "pkg/sub/other.py": "",
        "pkg/sub/notimported.py": "",
        "other/mod.py": "",
    })
    files = {p.as_posix() for p in import_closure("pkg.main", tmp_path, packages=("pkg",))}
    assert files == {"pkg/__init__.py", "pkg/main.py", "pkg/helpers.py", "pkg/plain.py", "pkg/lazy.py",
                     "pkg/sub/__init__.py", "pkg/sub/deep.py", "pkg/sub/chained.py", "pkg/sub/other.py"}
    # a leaf module: itself and its package's __init__
    assert {p.as_posix() for p in import_closure("pkg.helpers", tmp_path, packages=("pkg",))} == {
        "pkg/__init__.py", "pkg/helpers.py"}


def test_import_closure_eager_only_skips_function_bodies(tmp_path):
    write_tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/cli.py": "from . import common\n\ndef cmd():\n    from . import stage\n",
        "pkg/common.py": "",
        "pkg/stage.py": "",
    })
    assert {p.name for p in import_closure("pkg.cli", tmp_path, ("pkg",), eager_only=("pkg.cli",))} == {
        "__init__.py", "cli.py", "common.py"}
    assert "stage.py" in {p.name for p in import_closure("pkg.cli", tmp_path, ("pkg",))}


def test_import_closure_skips_type_checking_imports(tmp_path):
    """Imports under `if TYPE_CHECKING:` never run (annotations only): not deps; an `else:` branch is."""
    write_tree(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": """
            import typing
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from . import heavy
            if typing.TYPE_CHECKING:
                from . import heavy2
            else:
                from . import light
        """,
        "pkg/heavy.py": "", "pkg/heavy2.py": "", "pkg/light.py": "",
    })
    assert {p.name for p in import_closure("pkg.a", tmp_path, ("pkg",))} == {"__init__.py", "a.py", "light.py"}


def test_prepare_and_check_do_not_depend_on_search_code_or_tools():
    """prepare and check run no search maths, no data-parallel engine, no NB-201 table and no dev tool: editing one
    of those reruns neither (review defects 1, 2); the search stage does depend on the first three, so the test sees
    them. No stage depends on itnas_tools."""
    heavy = ("itnas/arch.py", "itnas/samplers.py", "itnas/ops.py", "itnas/distributed.py",
             "itnas/assets/nb201_results.csv.gz")
    for name in ("check", "prepare", "prepare-table"):
        closure = {f.as_posix() for f in stage_closure(DVC["stages"][name]["cmd"], ROOT)}
        assert not closure & set(heavy), name
        assert not [d for d in DVC["stages"][name]["deps"] if str(d).startswith(("itnas_tools", "itnas/assets"))]
    search = {f.as_posix() for f in stage_closure(DVC["stages"]["search"]["cmd"], ROOT)}
    assert set(heavy[:4]) <= search
    for name, body in DVC["stages"].items():
        assert not [d for d in body["deps"] if str(d).startswith("itnas_tools")], name


def test_import_closure_errors_name_file_and_line(tmp_path):
    write_tree(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "import os\nfrom pkg.gone import x\n"})
    with pytest.raises(DepsError, match=r"a\.py:2: imports 'pkg\.gone'"):
        import_closure("pkg.a", tmp_path, ("pkg",))
    with pytest.raises(DepsError, match="not found"):
        import_closure("pkg.missing", tmp_path, ("pkg",))
    write_tree(tmp_path, {"pkg/b.py": "from ... import x\n"})
    with pytest.raises(DepsError, match="beyond the top-level package"):
        import_closure("pkg.b", tmp_path, ("pkg",))


def test_package_shadows_module_and_package_data_counts(tmp_path):
    """A folder package beats a same-named module (Python's finder order); its data files are stage deps."""
    write_tree(tmp_path, {
        "pyproject.toml": '[project.scripts]\nitnas = "pipeline.cli:app"\n',
        "itnas/__init__.py": "",
        "itnas/report.py": "import itnas.stale\n",  # shadowed: never loaded
        "itnas/report/__init__.py": "from .tables import load\n",
        "itnas/report/tables.py": "",
        "itnas/report/published.json": "{}",
        "itnas/report/assets/style.css": "",
        "itnas/report/__pycache__/tables.cpython-311.pyc": "",
        "pipeline/__init__.py": "",
        "pipeline/cli.py": "app = None\n\n@app.command()\ndef report():\n    from .report import report\n",
        "pipeline/report.py": "from itnas.report import load\n",
    })
    assert {p.as_posix() for p in import_closure("itnas.report", tmp_path)} == {
        "itnas/__init__.py", "itnas/report/__init__.py", "itnas/report/tables.py"}
    files = stage_closure("itnas report", tmp_path)
    assert {"itnas/report/published.json", "itnas/report/assets/style.css"} <= {p.as_posix() for p in files}
    assert "itnas/report/__pycache__/tables.cpython-311.pyc" not in {p.as_posix() for p in files}
    assert "itnas/report" in minimal_deps(files, tmp_path)


# ------------------------------------------------------------------------------------ stages, coverage, printing

SYNTH_REPO = {
    "pyproject.toml": '[project]\nname = "x"\n[project.scripts]\nitnas = "pipeline.cli:app"\n',
    "itnas/__init__.py": "",
    "itnas/core.py": "",
    "itnas/extra.py": "from .core import *\n",
    "itnas/report.py": "",
    "pipeline/__init__.py": "",
    "pipeline/common.py": "from itnas import core\n",
    "pipeline/cli.py": """
        import typer
        from .common import x
        app = typer.Typer()

        @app.command()
        def search(method: str, seed: int):
            from .search import search as stage
            stage(method, seed)

        @app.command("make-report")
        def report_cmd():
            from .report import report as stage
            stage()
    """,
    "pipeline/search.py": "from itnas.extra import y\n",
    "pipeline/report.py": "from itnas import report\n",
}


def test_stage_modules_and_closure_of_a_synthetic_cli(tmp_path):
    write_tree(tmp_path, SYNTH_REPO)
    assert stage_modules("itnas search ${item.method} ${item.seed}", tmp_path) == ["pipeline.search"]
    assert stage_modules("itnas make-report", tmp_path) == ["pipeline.report"]
    assert stage_modules("python -m pipeline.search", tmp_path) == ["pipeline.search"]
    files = {p.as_posix() for p in stage_closure("itnas search a 0", tmp_path)}
    # the CLI and its module-level imports, not the lazy imports of other commands (pipeline/report.py)
    assert files == {"pipeline/__init__.py", "pipeline/cli.py", "pipeline/common.py", "pipeline/search.py",
                     "itnas/__init__.py", "itnas/core.py", "itnas/extra.py"}


def test_renamed_command_fails_loudly(tmp_path):
    write_tree(tmp_path, SYNTH_REPO)
    with pytest.raises(DepsError, match=r"has no command 'report'; commands: make-report, search"):
        stage_modules("itnas report", tmp_path)
    with pytest.raises(DepsError, match="expected `itnas COMMAND"):
        stage_modules("dvc repro", tmp_path)


def test_covers_and_minimal_deps(tmp_path):
    assert covers("itnas", "itnas/arch.py") and covers("itnas/", "itnas/arch.py")
    assert covers("itnas/arch.py", "itnas/arch.py") and covers({"itnas/arch.py": {"cache": False}}, "itnas/arch.py")
    assert not covers("itnas/arch", "itnas/arch.py") and not covers("pipeline", "itnas/arch.py")
    write_tree(tmp_path, SYNTH_REPO)
    (tmp_path / "itnas" / "__pycache__").mkdir()
    (tmp_path / "itnas" / "__pycache__" / "core.cpython-311.pyc").write_bytes(b"")
    every_itnas = {Path("itnas") / n for n in ("__init__.py", "core.py", "extra.py", "report.py")}
    assert minimal_deps(every_itnas | {Path("pipeline/cli.py")}, tmp_path) == ["itnas", "pipeline/cli.py"]
    assert minimal_deps(every_itnas - {Path("itnas/report.py")}, tmp_path) == [
        "itnas/__init__.py", "itnas/core.py", "itnas/extra.py"]


def test_uncovered_and_main_on_a_synthetic_dvc_yaml(tmp_path, capsys):
    write_tree(tmp_path, SYNTH_REPO)
    dvc = {"stages": {
        "search": {"matrix": {"method": ["a"]}, "cmd": "itnas search ${item.method} 0",
                   "deps": ["data/prepared", "itnas", "pipeline/cli.py", "pipeline/common.py", "pipeline/search.py"]},
        "report": {"cmd": "itnas make-report", "deps": ["runs", "pipeline/report.py"]},
        "shell": {"cmd": "echo hello"},
    }}
    assert uncovered(dvc, tmp_path) == [
        ("search", "pipeline/__init__.py"),
        ("report", "itnas/__init__.py"), ("report", "itnas/core.py"), ("report", "itnas/report.py"),
        ("report", "pipeline/__init__.py"), ("report", "pipeline/cli.py"), ("report", "pipeline/common.py")]
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(dvc))
    assert main(["--dvc-file", str(tmp_path / "dvc.yaml"), "--check"]) == 1
    out = yaml.safe_load(capsys.readouterr().out)
    assert out["search"]["deps"] == ["data/prepared", "itnas/__init__.py", "itnas/core.py", "itnas/extra.py",
                                     "pipeline/__init__.py", "pipeline/cli.py", "pipeline/common.py",
                                     "pipeline/search.py"]
    assert out["report"]["deps"] == ["runs", "itnas/__init__.py", "itnas/core.py", "itnas/report.py",
                                     "pipeline/__init__.py", "pipeline/cli.py", "pipeline/common.py",
                                     "pipeline/report.py"]
    assert "shell" not in out


# ------------------------------------------------------------------------------- generated top-level plots


def test_dvc_yaml_figures_list_every_chain_of_params(capsys):
    """dvc.yaml's top-level plots are those generated from params.yaml's `runs` (itnas_tools/dvc_plots.py)."""
    from itnas_tools.dvc_plots import main as plots_main

    assert plots_main(["--check"]) == 0, capsys.readouterr().err


def test_dvc_plots_rewrite_replaces_only_its_section(tmp_path):
    from itnas_tools.dvc_plots import FIGURES
    from itnas_tools.dvc_plots import main as plots_main

    dvc = tmp_path / "dvc.yaml"
    dvc.write_text("stages:\n  a:\n    cmd: echo\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"runs": {"benchmarks": ["b"], "tables": ["t"], "methods": ["m1", "m2"], "seeds": [0, 3]}}))
    assert plots_main(["--dvc-file", str(dvc), "--check"]) == 1
    assert plots_main(["--dvc-file", str(dvc), "--write"]) == 0
    written = dvc.read_text()
    assert plots_main(["--dvc-file", str(dvc), "--write"]) == 0 and dvc.read_text() == written  # idempotent
    loaded = yaml.safe_load(written)
    assert loaded["stages"] == {"a": {"cmd": "echo"}}
    figures = {next(iter(p)): p[next(iter(p))] for p in loaded["plots"]}
    assert list(figures) == [title for _, _, title, _ in FIGURES]
    search, train = figures["search: validation accuracy"], figures["final training: training loss"]
    assert list(search["y"]) == [f"runs/{b}/{m}-s{s}/live/search/plots/metrics/val_acc.tsv" for b in ("b", "t")
                                 for m in ("m1", "m2") for s in (0, 3)]
    assert set(search["y"].values()) == {"val_acc"} and search["x"] == "step"
    assert list(train["y"]) == [f"runs/b/{m}-s{s}/live/train/plots/metrics/train_loss.tsv" for m in ("m1", "m2")
                                for s in (0, 3)]  # table chains train nothing
    dvc.write_text(written + "\nartifacts:\n  x:\n    path: y\n")  # a later top-level key is kept
    assert plots_main(["--dvc-file", str(dvc), "--check"]) == 0


def test_rewrite_plots_keeps_the_next_keys_comment_and_reads_a_commented_plots_key():
    """The generated section replaces `plots:` (also written `plots:  # note`) up to the next column-0 line: a comment
    there belongs to the next top-level key and is kept; rewriting twice changes nothing."""
    from pipeline.figures import rewrite_plots

    section = "plots:\n  - new: {}\n"
    text = "stages: {}\nplots:  # old figures\n  - old: {}\n\n# about vars\nvars: []\n"
    once = rewrite_plots(text, section)
    assert once == "stages: {}\nplots:\n  - new: {}\n\n# about vars\nvars: []\n"
    assert rewrite_plots(once, section) == once
