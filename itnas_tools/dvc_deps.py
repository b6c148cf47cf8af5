"""Code dependencies of the DVC stages, computed from the imports (so `dvc.yaml` deps cannot go stale).

A stage command such as ``itnas search ${item.method} ${item.seed}`` runs the console script `itnas`
(`[project.scripts]` of pyproject.toml: ``pipeline.cli:app``), which imports the CLI module and then, lazily
inside the Typer command, the stage module ``pipeline.<command>``. The code a stage depends on is therefore

    the CLI module + the closure of its module-level imports
    + the closure of the stage module(s) the command imports (`stage_modules`)

where the closure (`import_closure`) follows, with `ast` only (nothing is imported or executed):
``import x.y``, ``from x import y`` (y a submodule or a name), relative imports, and imports anywhere in a
module (inside functions too: the stage commands import lazily). Importing ``a.b.c`` runs ``a/__init__.py``
and ``a/b/__init__.py`` first, so package ``__init__.py`` files are part of the closure. Only files of the
repository packages (`PACKAGES`: ``itnas/``, ``itnas_bench/``, ``itnas_tools/``, ``pipeline/``) are followed;
third-party imports are not. (No stage imports this module: a checkpoint's code identity hashes the code deps
that dvc.yaml lists, `pipeline.common.code_identity`, so editing a tool reruns nothing.)

Package data travels with its package: `stage_closure` adds the non-Python files of every imported package's
folder (``itnas/report/published.json``, read with ``importlib.resources``), recursing into sub-folders that are
not packages themselves.

The closure over-approximates what runs (an import inside a function that a stage never calls still counts): an
extra dependency costs a rerun, a missing one a stale result. Imports under ``if TYPE_CHECKING:`` do not count: they
never run (annotations only).
Other reads (files outside the packages, opened at run time) and dynamic imports (``importlib.import_module``,
``__import__``) are not seen: such files are the stage's ordinary deps, and the library has no dynamic imports.

Command line (for maintainers; prints YAML to paste into dvc.yaml)::

    python -m itnas_tools.dvc_deps            # per stage: its non-code deps as they are, then the computed code deps
    python -m itnas_tools.dvc_deps --check    # exit 1 (and name stage and file) when dvc.yaml misses a code dep
    python -m itnas_tools.dvc_deps --write    # rewrite the deps lists of dvc.yaml in place
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shlex
import sys
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["PACKAGES", "DepsError", "covers", "import_closure", "main", "minimal_deps", "package_data",
           "rewrite_deps", "stage_closure",
           "stage_deps", "stage_modules", "stages", "uncovered"]

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Top-level packages of the repository whose files are followed (and may appear as code deps).
PACKAGES = ("itnas", "itnas_bench", "itnas_tools", "pipeline")
#: Folder names and file suffixes that are never deps (byte-code caches).
IGNORED_NAMES = ("__pycache__",)
IGNORED_SUFFIXES = (".pyc", ".pyo")


class DepsError(ValueError):
    """A module, import or stage command that cannot be resolved; the message names the file and line."""


# ----------------------------------------------------------------------------------------------- modules


def _module_file(name: str, root: Path) -> Path | None:
    """The file that defines module `name`, or None: ``a/b/__init__.py`` before ``a/b.py``, the order of Python's
    path finder (a regular package shadows a module of the same name)."""
    base = root.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _is_module(name: str, root: Path) -> bool:
    """True when `name` is a module, a package, or a namespace package (a folder without __init__.py)."""
    return _module_file(name, root) is not None or root.joinpath(*name.split(".")).is_dir()


def _with_parents(name: str) -> Iterator[str]:
    """``a.b.c`` -> a, a.b, a.b.c: importing a module runs the __init__ of every enclosing package first."""
    parts = name.split(".")
    for k in range(1, len(parts) + 1):
        yield ".".join(parts[:k])


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``: a condition that is False whenever the code runs."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, lazy: bool) -> Iterator[ast.AST]:
    """Every node under `node`; without `lazy`, not the bodies of functions (what runs at import time); never the
    body of an ``if TYPE_CHECKING:`` (annotations only: it never runs), only its ``else``."""
    for child in ast.iter_child_nodes(node):
        if not lazy and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for sub in child.orelse:
                yield sub
                yield from _walk(sub, lazy)
            continue
        yield child
        yield from _walk(child, lazy)


def _imports(tree: ast.AST, module: str, is_package: bool, path: Path, root: Path, packages: tuple[str, ...],
             lazy: bool = True) -> set[str]:
    """Repository modules that the import statements under `tree` load (with their parent packages).

    Raises:
        DepsError: a relative import above the top-level package, or an import of a repository package's
            module that does not exist (the message gives file:line).
    """
    found: set[str] = set()
    nodes = [tree] if isinstance(tree, ast.Import | ast.ImportFrom) else _walk(tree, lazy)
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                if node.level - 1 > len(package) - 1:
                    raise DepsError(f"{path}:{node.lineno}: relative import beyond the top-level package")
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets = [(base, tuple(alias.name for alias in node.names if alias.name != "*"))]
        else:
            continue
        for name, from_names in targets:
            if name.split(".")[0] not in packages:
                continue
            if not _is_module(name, root):
                raise DepsError(f"{path}:{node.lineno}: imports {name!r}, which is no module or package under {root}")
            found.update(_with_parents(name))
            found.update(f"{name}.{sub}" for sub in from_names if _is_module(f"{name}.{sub}", root))
    return found


def _parse(path: Path) -> ast.Module:
    try:
        return ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as err:
        raise DepsError(f"{path}:{err.lineno}: cannot parse: {err.msg}") from None


def import_closure(module: str, root: Path, packages: Iterable[str] = PACKAGES,
                   eager_only: Iterable[str] = ()) -> set[Path]:
    """Transitive closure of the repository files that importing `module` loads, found with `ast` only.

    Args:
        module: dotted module name, e.g. ``"pipeline.search"``.
        root: repository root (the folder that holds the packages).
        packages: top-level packages whose files are followed; imports of anything else are ignored.
        eager_only: modules whose function bodies are not searched for imports (the CLI module: each Typer
            command imports its own stage module lazily, and a stage runs one command only).

    Returns:
        Paths relative to `root`: the module's own file, every repository module it imports (directly, in a
        function body, relatively, or as ``from pkg import submodule``) and the ``__init__.py`` of every package
        on the way.

    Raises:
        DepsError: `module` does not exist, a file does not parse, or an import names a missing repository module.
    """
    root, packages, eager_only = Path(root), tuple(packages), set(eager_only)
    if _module_file(module, root) is None and not root.joinpath(*module.split(".")).is_dir():
        raise DepsError(f"module {module!r} not found under {root}")
    todo, seen, files = list(_with_parents(module)), set(), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name, root)
        if path is None:  # namespace package: no code of its own
            continue
        files.add(path.relative_to(root))
        todo.extend(_imports(_parse(path), name, path.name == "__init__.py", path, root, packages,
                             lazy=name not in eager_only) - seen)
    return files


# ----------------------------------------------------------------------------------------------- stages


def _console_script(name: str, root: Path) -> tuple[str, str]:
    """(module, attribute) of console script `name` in pyproject.toml. Raises DepsError when absent."""
    pyproject = root / "pyproject.toml"
    scripts = tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {}) if pyproject.is_file() else {}
    if name not in scripts:
        raise DepsError(f"{name!r} is not a console script of {pyproject} (scripts: {', '.join(scripts) or 'none'})")
    module, _, attr = scripts[name].partition(":")
    return module.strip(), attr.strip()


def _typer_commands(cli: ast.Module, app: str) -> dict[str, ast.FunctionDef]:
    """Command name -> function of every ``@app.command()`` in the CLI module (Typer: ``_`` becomes ``-``)."""
    commands = {}
    for node in cli.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for dec in node.decorator_list:
            call = dec if isinstance(dec, ast.Call) else None
            func = call.func if call else dec
            if not (isinstance(func, ast.Attribute) and func.attr == "command"
                    and isinstance(func.value, ast.Name) and func.value.id == app):
                continue
            name = node.name.replace("_", "-")
            if call is not None:
                explicit = [a for a in call.args[:1]] + [k.value for k in call.keywords if k.arg == "name"]
                if explicit and isinstance(explicit[0], ast.Constant) and isinstance(explicit[0].value, str):
                    name = explicit[0].value
            commands[name] = node
    return commands


def _split_command(stage_cmd: str) -> list[str]:
    try:
        tokens = shlex.split(stage_cmd)
    except ValueError as err:
        raise DepsError(f"cannot parse stage command {stage_cmd!r}: {err}") from None
    if not tokens:
        raise DepsError("empty stage command")
    return tokens


def stage_modules(stage_cmd: str, root: Path | None = None) -> list[str]:
    """The module(s) that implement a stage command.

    ``itnas X ...`` -> the stage module of Typer command X of the `itnas` console script's CLI module: the
    repository modules that the command function imports (``from .X import X as stage``), and ``pipeline.X``
    when it exists; ``python -m M ...`` -> M.

    Raises:
        DepsError: the CLI has no command X (a renamed or removed command fails loudly, listing the commands),
            the command imports no repository module and ``pipeline.X`` does not exist, or the command is neither
            form.
    """
    root = Path(root) if root is not None else REPO_ROOT
    tokens = _split_command(stage_cmd)
    if len(tokens) >= 3 and Path(tokens[0]).name.startswith("python") and tokens[1] == "-m":
        if not _is_module(tokens[2], root):
            raise DepsError(f"stage command {stage_cmd!r}: module {tokens[2]!r} not found under {root}")
        return [tokens[2]]
    if Path(tokens[0]).name != "itnas":
        raise DepsError(f"stage command {stage_cmd!r}: expected `itnas COMMAND ...` or `python -m MODULE ...`")
    if len(tokens) < 2 or tokens[1].startswith("-"):
        raise DepsError(f"stage command {stage_cmd!r} names no `itnas` subcommand")
    cli_module, app = _console_script("itnas", root)
    cli_path = _module_file(cli_module, root)
    if cli_path is None:
        raise DepsError(f"CLI module {cli_module!r} of the `itnas` script not found under {root}")
    command = tokens[1]
    commands = _typer_commands(_parse(cli_path), app)
    if command not in commands:
        raise DepsError(f"stage command {stage_cmd!r}: {cli_path.relative_to(root)} has no command {command!r}; "
                        f"commands: {', '.join(sorted(commands))}")
    func = commands[command]
    imported = set()
    for node in ast.walk(func):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = _imports(node, cli_module, cli_path.name == "__init__.py", cli_path, root, PACKAGES)
            # the most specific modules only (parents are in the closure anyway), not the CLI's own package
            imported |= {n for n in names if not any(m.startswith(n + ".") for m in names)}
    conventional = f"pipeline.{command.replace('-', '_')}"
    if _module_file(conventional, root) is not None:
        imported.add(conventional)
    if not imported:
        raise DepsError(f"stage command {stage_cmd!r}: command {command!r} imports no repository module and "
                        f"{conventional} does not exist")
    return sorted(imported)


def package_data(files: Iterable[Path], root: Path) -> set[Path]:
    """Non-Python files shipped in the folders of the packages among `files` (their ``__init__.py``), recursing
    into sub-folders that are not packages (no ``__init__.py``). Paths relative to root."""
    root, out = Path(root), set()
    for init in (Path(f) for f in files):
        if init.name != "__init__.py":
            continue
        todo = [root / init.parent]
        while todo:
            folder = todo.pop()
            for path in folder.iterdir():
                if path.name in IGNORED_NAMES or path.is_symlink():
                    continue
                if path.is_dir():
                    if not (path / "__init__.py").exists():
                        todo.append(path)
                elif path.suffix not in (".py", *IGNORED_SUFFIXES):
                    out.add(path.relative_to(root))
    return out


def stage_closure(stage_cmd: str | list[str], root: Path | None = None) -> set[Path]:
    """Repository files a stage command runs: the CLI module and its module-level imports (the lazy imports of the
    other commands are not followed), the closure of every stage module, and the package data of the imported
    packages (`package_data`). Accepts dvc's list form of `cmd`."""
    root = Path(root) if root is not None else REPO_ROOT
    files: set[Path] = set()
    for cmd in [stage_cmd] if isinstance(stage_cmd, str) else stage_cmd:
        eager_only: tuple[str, ...] = ()
        if Path(_split_command(cmd)[0]).name == "itnas":
            cli_module, _ = _console_script("itnas", root)
            eager_only = (cli_module,)
            files |= import_closure(cli_module, root, eager_only=eager_only)
        for module in stage_modules(cmd, root):
            files |= import_closure(module, root, eager_only=eager_only)
    files |= package_data(files, root)
    return files


# ----------------------------------------------------------------------------------------------- dvc.yaml


def stages(dvc: dict) -> dict[str, dict]:
    """Stage name -> stage body of a loaded dvc.yaml (matrix stages: the template; `foreach`: its `do`)."""
    out = {}
    for name, body in (dvc.get("stages") or {}).items():
        out[name] = body.get("do", body) if isinstance(body, dict) else {}
    return out


def _dep_path(dep) -> str:
    """A dvc dep entry (string, or {path: {options}}) -> normalised relative path."""
    if isinstance(dep, dict):
        dep = next(iter(dep))
    return os.path.normpath(str(dep)).replace(os.sep, "/")


def covers(dep: str, file: Path | str) -> bool:
    """A dep covers a file when it is that file or a folder that contains it."""
    dep, file = _dep_path(dep), Path(file).as_posix()
    return dep in (".", file) or file.startswith(dep.rstrip("/") + "/")


def _is_code(path: str, packages: tuple[str, ...] = PACKAGES) -> bool:
    return path.split("/")[0] in packages


def uncovered(dvc: dict, root: Path | None = None) -> list[tuple[str, str]]:
    """(stage, file) for every file of a stage's import closure that none of the stage's deps covers.

    Stages whose command is not an `itnas` / `python -m` command are skipped. Raises DepsError for a command that
    names a missing CLI command or module."""
    root = Path(root) if root is not None else REPO_ROOT
    missing = []
    for name, body in stages(dvc).items():
        cmd = body.get("cmd")
        if not cmd or not _is_stage_command(cmd):
            continue
        deps = [_dep_path(d) for d in body.get("deps") or []]
        for file in sorted(stage_closure(cmd, root)):
            if not any(covers(d, file) for d in deps):
                missing.append((name, file.as_posix()))
    return missing


def _is_stage_command(cmd: str | list[str]) -> bool:
    first = _split_command(cmd if isinstance(cmd, str) else cmd[0])
    return Path(first[0]).name == "itnas" or (len(first) >= 3 and first[1] == "-m"
                                              and Path(first[0]).name.startswith("python"))


def _files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()
            and not any(part in IGNORED_NAMES for part in p.parts) and p.suffix not in IGNORED_SUFFIXES}


def minimal_deps(files: set[Path], root: Path | None = None) -> list[str]:
    """Fewest paths that cover `files` (relative to root) and nothing else: a folder replaces its files when every
    file under it (caches aside) is in `files`. Sorted."""
    root = Path(root) if root is not None else REPO_ROOT
    files = {Path(f) for f in files}
    chosen = set(files)
    folders = sorted({p for f in files for p in f.parents if p != Path(".")}, key=lambda p: len(p.parts))
    for folder in folders:  # shallowest first: a whole package becomes one entry
        if any(folder.is_relative_to(c) for c in chosen if c != folder):
            continue
        under = {p.relative_to(root) for p in _files_under(root / folder)}
        if under and under <= files:
            chosen = {c for c in chosen if not c.is_relative_to(folder)} | {folder}
    return sorted(c.as_posix() for c in chosen)


def stage_deps(dvc: dict, root: Path | None = None) -> dict[str, list[str]]:
    """Stage -> deps to paste: its current non-code deps (data, runs) in order, then the computed code deps."""
    root = Path(root) if root is not None else REPO_ROOT
    out = {}
    for name, body in stages(dvc).items():
        cmd = body.get("cmd")
        if not cmd or not _is_stage_command(cmd):
            continue
        kept = [d for d in body.get("deps") or [] if not _is_code(_dep_path(d))]
        out[name] = kept + minimal_deps(stage_closure(cmd, root), root)
    return out


def rewrite_deps(text: str, computed: dict[str, list[str]]) -> str:
    """dvc.yaml text with the `deps:` list of every stage in `computed` replaced by its computed deps; comments,
    order and everything else are kept (a line-based edit: stage keys at 2 spaces, list items at 6)."""
    out, stage, lines, i = [], None, text.splitlines(keepends=True), 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^  ([\w-]+):\s*(#.*)?$", line)
        if m:
            stage = m.group(1)
        out.append(line)
        i += 1
        if line.strip() == "deps:" and stage in computed:
            while i < len(lines) and lines[i].startswith("      - "):
                i += 1
            out += [f"      - {dep}\n" for dep in computed[stage] if isinstance(dep, str)]
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    """Print the deps of every stage of dvc.yaml as YAML; with --check, exit 1 when dvc.yaml misses a code dep."""
    import yaml

    parser = argparse.ArgumentParser(prog="python -m itnas_tools.dvc_deps", description=__doc__.splitlines()[0])
    parser.add_argument("--dvc-file", type=Path, default=None, help="dvc.yaml (default: the repository's)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a stage's deps miss a file it imports")
    parser.add_argument("--write", action="store_true", help="rewrite the deps lists of dvc.yaml in place")
    args = parser.parse_args(argv)
    dvc_file = args.dvc_file or REPO_ROOT / "dvc.yaml"
    root = dvc_file.resolve().parent
    try:
        dvc = yaml.safe_load(dvc_file.read_text()) or {}
        computed, missing = stage_deps(dvc, root), uncovered(dvc, root)
    except (DepsError, OSError, yaml.YAMLError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.write:
        if any(not isinstance(d, str) for deps in computed.values() for d in deps):
            print("error: --write handles plain path deps only; edit dvc.yaml by hand", file=sys.stderr)
            return 2
        dvc_file.write_text(rewrite_deps(dvc_file.read_text(), computed))
        print(f"# {dvc_file.name}: deps rewritten for {len(computed)} stages", file=sys.stderr)
        return 0
    for name, deps in computed.items():
        print(f"{name}:\n  deps:")
        for dep in deps:
            print(f"    - {yaml.safe_dump(dep, default_flow_style=True).strip()}" if isinstance(dep, dict)
                  else f"    - {dep}")
    if missing:
        print(f"# {dvc_file.name} misses {len(missing)} code dep(s):", file=sys.stderr)
        for stage, file in missing:
            print(f"#   stage {stage}: {file}", file=sys.stderr)
    elif args.check:
        print(f"# {dvc_file.name}: every stage's deps cover its import closure", file=sys.stderr)
    return 1 if (args.check and missing) else 0


if __name__ == "__main__":
    sys.exit(main())
