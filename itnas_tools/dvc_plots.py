"""The figures of `dvc plots show`: dvc.yaml's top-level `plots:` section, generated from params.yaml's `runs`.

Usage::

    python -m itnas_tools.dvc_plots            # print the section
    python -m itnas_tools.dvc_plots --check    # exit 1 when dvc.yaml's section is not the generated one
    python -m itnas_tools.dvc_plots --write    # rewrite it in place (everything else of dvc.yaml is kept)

The section itself is built by `pipeline.figures` (the `check` stage uses it to warn when dvc.yaml is stale).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.figures import FIGURES, chains, plots_section, rewrite_plots

__all__ = ["FIGURES", "chains", "main", "plots_section", "rewrite_plots"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Print, check (--check: exit 1 when stale) or write (--write) dvc.yaml's generated top-level plots."""
    import yaml

    parser = argparse.ArgumentParser(prog="python -m itnas_tools.dvc_plots", description=__doc__.splitlines()[0])
    parser.add_argument("--dvc-file", type=Path, default=None, help="dvc.yaml (default: the repository's)")
    parser.add_argument("--params", type=Path, default=None, help="params.yaml (default: beside dvc.yaml)")
    parser.add_argument("--check", action="store_true", help="exit 1 when dvc.yaml's plots are not the generated")
    parser.add_argument("--write", action="store_true", help="rewrite dvc.yaml's top-level plots in place")
    args = parser.parse_args(argv)
    dvc_file = args.dvc_file or REPO_ROOT / "dvc.yaml"
    params_file = args.params or dvc_file.parent / "params.yaml"
    try:
        runs = (yaml.safe_load(params_file.read_text()) or {}).get("runs") or {}
        section = plots_section(runs)
        text = dvc_file.read_text()
    except (OSError, ValueError, yaml.YAMLError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    new = rewrite_plots(text, section)
    if args.write:
        dvc_file.write_text(new)
        print(f"# {dvc_file.name}: top-level plots written for the chains of {params_file.name}", file=sys.stderr)
        return 0
    if args.check:
        if new != text:
            print(f"# {dvc_file.name}: the top-level plots are not those of {params_file.name}'s runs; run "
                  "`python -m itnas_tools.dvc_plots --write`", file=sys.stderr)
            return 1
        print(f"# {dvc_file.name}: the top-level plots list every chain of {params_file.name}", file=sys.stderr)
        return 0
    print(section, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
