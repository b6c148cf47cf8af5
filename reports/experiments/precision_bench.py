"""Effect of precision.channels_last and amp bf16 on the search step and the final train step (CPU), side by side:
every (round, config, precision) in its own process of this checkout (`itnas_bench.benchmark.run_side_by_side`).
Wrote reports/bench-precision.json.

Usage (repository root, venv active): python reports/experiments/precision_bench.py OUT.json ROUNDS
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from itnas_bench.benchmark import Side, run_side_by_side  # noqa: E402


def main(out: str, rounds: int) -> None:
    root = str(ROOT)
    sides = [Side("bf16_cl", root, (("amp", "bf16"), ("channels_last", True))), Side("bf16", root, (("amp", "bf16"),)),
             Side("cl", root, (("channels_last", True),)), Side("fp32", root)]
    r = run_side_by_side(sides, ["itnas", "darts"], ["darts"], rounds=rounds, final=True, threads=2,
                         on_progress=lambda d, t, line: print(d, t, line, flush=True))
    r["pcdarts_base"] = None
    Path(out).write_text(json.dumps(r, indent=1))
    for c in r["configs"] + [dict(r["final"], method="final", base="")]:
        for s in ("fp32", "cl", "bf16", "bf16_cl"):
            print(c["method"], c["base"], s, {k: round(x, 1) for k, x in c[s].items() if k.endswith("_ms")})


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
