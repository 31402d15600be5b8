"""The first result: a fresh process fitting one photo end to end, as a new user runs it.

    python benchmarks/bench_first_result.py [--photo tests/data/images/coco_623.jpg] [--runs 5] [--busy]

Runs `bodycapture fit PHOTO --out TMP -v` in a new process `--runs` times (each into an empty folder) and
reports the median wall time from /usr/bin/time, with the pipeline's own breakdown (it logs its timings
with -v). `--busy` runs the same while another CPU-bound process (a Python busy loop) occupies one core,
to check that the fit does not collapse under contention (torch threads oversubscribing the cores).
Also times `--threads 1` and `--threads 2`. Run it on an idle machine.

The runs are as a user's after the first: Python's bytecode caches written (the child processes run without
PYTHONDONTWRITEBYTECODE, which some sandboxes set: with it, every run compiles our modules again, up to
0.35 s on the 2-core VM), after one unmeasured run that writes them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine_speed import describe, machine_speed  # benchmarks/machine_speed.py

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).with_name("bodycapture")


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def one_run(photo: Path, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["/usr/bin/time", "-f", "WALL %e USER %U SYS %S", str(BIN), "fit", str(photo), "--out", tmp, "-v", *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
        if proc.returncode != 0:
            raise SystemExit(f"run failed:\n{proc.stderr[-2000:]}")
        m = re.search(r"WALL ([\d.]+) USER ([\d.]+) SYS ([\d.]+)", proc.stderr)
        t = re.search(r"timings: (\{.*\})", proc.stderr)
        row = {"wall": float(m[1]), "cpu": float(m[2]) + float(m[3])}
        if t:
            row.update(json.loads(t[1]))
        return row


def median_rows(rows: list[dict]) -> dict:
    return {k: round(statistics.median(r[k] for r in rows), 2) for k in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", type=Path, default=ROOT / "tests" / "data" / "images" / "coco_623.jpg")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--busy", action="store_true", help="also measure with one core kept busy")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "first_result.json")
    args = parser.parse_args()
    results = {}
    speed = {"before": machine_speed()}  # and after: these VMs change speed by the hour
    print("before:", describe(speed["before"]), flush=True)
    one_run(args.photo, [])  # writes the bytecode caches, as a user's first run does
    settings = {"default": [], "threads 1": ["--threads", "1"], "threads 2": ["--threads", "2"]}
    for busy in ([False, True] if args.busy else [False]):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            for name, extra in settings.items():
                rows = [one_run(args.photo, extra) for _ in range(args.runs)]
                key = f"{name}{', one core busy' if busy else ''}"
                results[key] = median_rows(rows)
                print(f"{key}: median of {args.runs}: {results[key]}", flush=True)
        finally:
            if hog is not None:
                hog.kill()
    speed["after"] = machine_speed()
    print("after:", describe(speed["after"]))
    args.out.write_text(json.dumps({"photo": str(args.photo.relative_to(ROOT)) if args.photo.is_relative_to(ROOT)
                                    else str(args.photo), "runs": args.runs, "medians": results,
                                    "machine_speed": speed}, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
