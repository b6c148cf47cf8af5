"""Why the `threads` param defaults to 1: one depthwise convolution of the first-run search (float64 and float32,
B=32, 14 edges x 8 channels, 10x10 maps; 3x3, 5x5 dilated, 3x3 strided) timed at 1 and 2 intra-op threads, with
GNU OpenMP's default wait policy and with OMP_WAIT_POLICY=PASSIVE, on an idle machine and with a busy process on
another core. Each (policy, threads, load) case runs in a fresh process (OpenMP reads its environment once).

Usage (repository root, venv active):
    python reports/experiments/omp_threads.py OUT.json
Prints one line per case (median ms of 5 calls after one warm-up) and writes them all to OUT.json.
"""

import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time

CASE = r"""
import json, statistics, sys, time
import torch, torch.nn.functional as F
torch.set_num_threads(int(sys.argv[1]))
out = {}
for dtype in (torch.float32, torch.float64):
    b, c, h = 32, 8 * 14, 10
    x, xs = torch.randn(b, c, h, h, dtype=dtype), torch.randn(b, c, 2 * h, 2 * h, dtype=dtype)
    w3, w5 = torch.randn(c, 1, 3, 3, dtype=dtype), torch.randn(c, 1, 5, 5, dtype=dtype)
    convs = {"dw3": lambda: F.conv2d(x, w3, None, 1, 1, 1, c), "dil5": lambda: F.conv2d(x, w5, None, 1, 4, 2, c),
             "dw3_stride2": lambda: F.conv2d(xs, w3, None, 2, 1, 1, c)}
    for name, conv in convs.items():
        conv()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            conv()
            times.append((time.perf_counter() - t0) * 1e3)
        out[f"{str(dtype).split('.')[-1]} {name}"] = round(statistics.median(times), 2)
print(json.dumps(out))
"""


def _busy(stop):
    while not stop.is_set():
        sum(i * i for i in range(10000))


def main(out_path: str) -> None:
    results = {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "cases": []}
    for busy in (False, True):
        stop = multiprocessing.Event()
        worker = multiprocessing.Process(target=_busy, args=(stop,)) if busy else None
        if worker:
            worker.start()
            time.sleep(1)
        try:
            for policy in ("default", "PASSIVE"):
                for threads in (1, 2):
                    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
                    if policy == "PASSIVE":
                        env["OMP_WAIT_POLICY"] = "PASSIVE"
                    proc = subprocess.run([sys.executable, "-c", CASE, str(threads)], env=env, capture_output=True,
                                          text=True, check=True, timeout=900)
                    ms = json.loads(proc.stdout)
                    case = {"busy_process_beside": busy, "omp_wait_policy": policy, "threads": threads, "ms": ms}
                    results["cases"].append(case)
                    print(f"busy={busy!s:5} policy={policy:7} threads={threads}: "
                          + ", ".join(f"{k} {v}" for k, v in ms.items()), flush=True)
        finally:
            if worker:
                stop.set()
                worker.join()
    with open(out_path, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
