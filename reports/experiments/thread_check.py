"""The default search of every method in `runs.methods` rerun at 1 and at 2 intra-op threads (params `threads`), through
the real stage commands, in a scratch copy of the project; prints and writes whether the genotypes are identical and how
far the final alphas are apart.

Usage (repository root, venv active, Fashion-MNIST available):
    python reports/experiments/thread_check.py OUT.json [KEY=VALUE ...]
KEY=VALUE are dvc-style overrides of params.yaml, e.g. search.precision.dtype=float32 to check the float32 search.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> None:
    out, overrides = Path(argv[0]), argv[1:]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for item in overrides:
        key, value = item.split("=", 1)
        *path, last = key.split(".")
        node = params
        for p in path:
            node = node.setdefault(p, {})
        node[last] = yaml.safe_load(value)
    benchmark = params["runs"]["benchmarks"][0]
    results = {"overrides": overrides, "benchmark": benchmark, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        root = Path(params["data"]["root"])
        if not root.is_absolute():
            params["data"]["root"] = str(ROOT / root)
            (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        itnas = [sys.executable, "-m", "pipeline.cli"]
        subprocess.run([*itnas, "prepare", benchmark], cwd=work, env=env, check=True, capture_output=True)
        for method in params["runs"]["methods"]:
            alphas = {}
            for threads in (1, 2):
                t0 = time.time()
                (work / "params.yaml").write_text(yaml.safe_dump({**params, "threads": threads}, sort_keys=False))
                subprocess.run([*itnas, "search", benchmark, method, "0"], cwd=work, check=True, capture_output=True,
                               env=env)
                history = json.loads((work / f"runs/{benchmark}/{method}-s0/search/history.json").read_text())
                last = history[-1]
                alphas[threads] = last["alphas"]
                results["runs"][f"{method}-t{threads}"] = {
                    "time_s": round(time.time() - t0, 1), "genotype": last["genotype"],
                    "min_margin": last["decisiveness"]["min_margin"],
                    "median_margin": last["decisiveness"]["median_margin"]}
                shutil.rmtree(work / "runs")
            diff = max(abs(a - b) for cell in alphas[1] for ra, rb in zip(alphas[1][cell], alphas[2][cell], strict=True)
                       for a, b in zip(ra, rb, strict=True))
            same = results["runs"][f"{method}-t1"]["genotype"] == results["runs"][f"{method}-t2"]["genotype"]
            results[method] = {"same_genotype": same, "max_abs_alpha_diff": diff}
            print(method, "same genotype" if same else "DIFFERENT genotypes", f"max |d alpha| = {diff:.3g}",
                  {k: v["time_s"] for k, v in results["runs"].items() if k.startswith(method)}, flush=True)
    out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
