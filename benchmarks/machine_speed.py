"""How fast this machine is right now: two small timings to print beside a benchmark's figures.

    python benchmarks/machine_speed.py

The project's VMs change speed by the hour (and their CPU from one day to the next), so a figure means little
without the machine's speed at the time it was taken. Two probes, each the median of three runs on one
thread: `python_ms`, a pure-Python loop (3 million integer additions: what the interpreter and torch's
dispatch of small operations follow) and `matmul_ms`, 200 float32 products of 400 x 400 matrices with numpy
(what BLAS-bound work follows), with the CPU's model name. bench_detect.py and bench_first_result.py print
and store them.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_speed() -> dict:
    """{'cpu', 'python_ms', 'matmul_ms'}: the medians of three runs of each probe, in a fresh process with
    numpy's BLAS on one thread (OMP_NUM_THREADS=1, as bodycapture runs it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--json"], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


def _probe() -> dict:
    import numpy as np

    def python_loop() -> float:
        t = time.perf_counter()
        total = 0
        for i in range(3_000_000):
            total += i
        return time.perf_counter() - t

    a = np.random.default_rng(0).random((400, 400), dtype=np.float32)

    def matmul() -> float:
        t = time.perf_counter()
        for _ in range(200):
            a @ a
        return time.perf_counter() - t

    return {"cpu": cpu_model(),
            "python_ms": round(1e3 * statistics.median(python_loop() for _ in range(3))),
            "matmul_ms": round(1e3 * statistics.median(matmul() for _ in range(3)))}


def describe(speed: dict) -> str:
    return f"machine: {speed['cpu']}, Python loop {speed['python_ms']} ms, 200 matrix products {speed['matmul_ms']} ms"


if __name__ == "__main__":
    print(json.dumps(_probe()) if "--json" in sys.argv else describe(machine_speed()))
