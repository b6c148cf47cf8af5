"""The figures of `dvc plots show`: dvc.yaml's top-level `plots:` section, generated from params.yaml's `runs`.

DVC draws one figure per top-level plot, with one series per file of its `y` mapping; a stage's plot output would
instead be drawn once per file (one figure per quantity *per chain*). So the curves the stages log with DVCLive
(`pipeline.live`: runs/<chain>/live/{search,train}/plots/metrics/<key>.tsv, step = epoch index) are declared as
plain outputs of their stages and drawn here: one figure per quantity in `FIGURES`, every chain of `runs` (the
benchmarks that train a network and the table benchmarks, x methods x seeds) a series; training figures list the
chains of `runs.benchmarks` only (table chains train nothing). The confusion matrices are plot outputs of the
evaluate stage (one figure per trained chain, following its matrix by itself).

DVC cannot expand a list of chains in a top-level section, so the section lists the chains of params.yaml as it is:
after changing `runs`, regenerate it with `python -m itnas_tools.dvc_plots --write` (the `check` stage warns when it
is stale; a chain listed but not run shows as a load error of its series in `dvc plots show`, a chain run but not
listed is not drawn).
"""

from __future__ import annotations

import json
import re

from .paths import run_record

__all__ = ["FIGURES", "HEADER", "chains", "listed_chains", "plots_section", "rewrite_plots"]

#: (stage, record key, figure title, y-axis label) of every figure; the keys are those `pipeline.live` logs.
FIGURES = (
    ("search", "val_acc", "search: validation accuracy", "search-val accuracy (%)"),
    ("search", "train_acc", "search: training accuracy", "search-train accuracy (%)"),
    ("search", "val_loss", "search: validation loss", "search-val loss (nats)"),
    ("search", "train_loss", "search: training loss", "search-train loss (nats)"),
    ("search", "collapse_count", "search: collapse count", "edges led by a parameter-free op"),
    ("train", "train_acc", "final training: training accuracy", "training accuracy (%)"),
    ("train", "train_loss", "final training: training loss", "training loss (nats)"),
)

HEADER = """\
# Figures of `dvc plots show` (one per quantity, every chain of params.yaml's `runs` a series; DVCLive's folders
# runs/<chain>/live/): generated from params.yaml by `python -m itnas_tools.dvc_plots --write` (rerun it after
# changing `runs`). The confusion matrices are plots of the evaluate stages.
"""


def chains(runs: dict) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, int]]]:
    """(chains that train a network, table chains) of params.yaml's `runs` block, each (benchmark, method, seed) in
    the order of the matrix (benchmark, then method, then seed). Raises ValueError naming a missing list."""
    out = []
    for kind in ("benchmarks", "tables"):
        for key in (kind, "methods", "seeds"):
            if not isinstance(runs.get(key, []), list):
                raise ValueError(f"params.yaml runs.{key} must be a list, got {runs.get(key)!r}")
        out.append([(b, m, int(s)) for b in runs.get(kind) or [] for m in runs.get("methods") or []
                    for s in runs.get("seeds") or []])
    return out[0], out[1]


def plots_section(runs: dict) -> str:
    """The generated top-level `plots:` section (YAML text, with its header comment) for params.yaml's `runs`."""
    trained, tables = chains(runs)
    lines = [HEADER.rstrip("\n"), "plots:"]
    for stage, key, title, y_label in FIGURES:
        listed = trained + tables if stage == "search" else trained
        if not listed:
            continue
        lines += [f"  - {json.dumps(title)}:", "      x: step", "      y:"]  # quoted: titles hold colons
        for b, m, s in listed:
            folder = getattr(run_record(b, m, s), f"live_{stage}")
            lines.append(f"        {(folder / 'plots' / 'metrics' / f'{key}.tsv').as_posix()}: {key}")
        lines += [f"      x_label: {stage} epoch (0 = the first)", f"      y_label: {y_label}"]
    return "\n".join(lines) + "\n"


def listed_chains(figures: list) -> set[str]:
    """The chains ("<benchmark>/<method>-s<seed>", the run names) whose curves dvc.yaml's top-level `plots` (parsed:
    a list of {title: {"y": {path: key}, ...}}) draw: the inverse of `plots_section`."""
    listed = set()
    for figure in figures or []:
        for spec in figure.values() if isinstance(figure, dict) else []:
            for path in (spec.get("y") or {}) if isinstance(spec, dict) else {}:
                parts = path.split("/")  # runs/<benchmark>/<method>-s<seed>/live/...
                if len(parts) > 2 and parts[0] == "runs":
                    listed.add(f"{parts[1]}/{parts[2]}")
    return listed


def rewrite_plots(text: str, section: str) -> str:
    """dvc.yaml text with its top-level `plots:` section (and the generated header comment above it) replaced by
    `section`, or `section` appended when it has none; every other line is kept."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"plots:\s*(#.*)?$", line.rstrip())), None)
    if start is None:
        return text.rstrip("\n") + "\n\n" + section
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end][0] == " "):
        end += 1  # the section's items (indented) and blank lines, up to the next column-0 line (key or comment)
    header = HEADER.splitlines(keepends=True)
    if lines[max(0, start - len(header)):start] == header:
        start -= len(header)
    tail = "".join(lines[end:])
    return "".join(lines[:start]) + section + ("\n" + tail if tail else "")

