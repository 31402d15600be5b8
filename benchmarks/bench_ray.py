"""--engine ray against the plain local run: throughput, per-shard overhead, and the same results.

    python benchmarks/bench_ray.py [--photos DIR] [--runs 1] [--workers 1 2]

Each run is a fresh `bodycapture fit DIR` process (the bundled detector, the open model, default settings),
as a user starts it: first the plain local run (detection in a second process, fitting in the first), then
`--engine ray --workers N` with a local Ray instance (each task detects and fits its shard in one process).
Reported per configuration: wall seconds (median over --runs), photos and people per second, and for Ray the
overhead: Ray's start-up (a fresh process that starts a local instance, runs one empty task and stops it)
and, for 2 workers (both cores busy, as in the plain
run), per shard (the Ray run's wall time minus its start-up minus the plain run's, over the shards). Results are compared file by file with the plain
run's (params.npz arrays, max absolute difference). Figures go to docs/bench_ray.json. Idle machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bodycapture", "fit", *args, "-q"], check=False)
    return time.perf_counter() - t0


def ray_startup() -> float:
    """Seconds to start a local Ray instance, run one empty task and stop it, in a fresh process."""
    code = ("import time, ray; t = time.perf_counter(); ray.init(num_cpus=2, include_dashboard=False, "
            "log_to_driver=False); ray.get(ray.remote(lambda: 0).remote()); ray.shutdown(); "
            "print(time.perf_counter() - t)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()[-1])


def compare(a: Path, b: Path) -> dict:
    """Photos whose parameters are equal (within 1e-4) in both runs, and the largest difference."""
    worst, equal, total = 0.0, 0, 0
    for folder in sorted(p for p in a.iterdir() if (p / "params.npz").is_file()):
        x, y = np.load(folder / "params.npz"), np.load(b / folder.name / "params.npz")
        diff = max(float(np.abs(x[k] - y[k]).max()) for k in ("betas", "body_pose", "global_orient", "transl")
                   if k in x.files)
        worst, equal, total = max(worst, diff), equal + (diff <= 1e-4), total + 1
    return {"photos_equal": equal, "photos_compared": total, "max_param_difference": round(worst, 6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "images")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--shard-images", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_ray.json")
    args = parser.parse_args()
    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        same = ["--batch-images", str(args.shard_images)]  # the local run's batches as large as the shards
        configs = [("local", same)] + [(f"ray, {w} worker{'s' if w > 1 else ''}",
                                        [*same, "--engine", "ray", "--workers", str(w), "--shard-images",
                                         str(args.shard_images)]) for w in args.workers]
        for name, extra in configs:
            times = []
            for k in range(args.runs):
                out = tmp / f"{name.replace(', ', '_').replace(' ', '')}_{k}"
                times.append(run([str(args.photos), "--out", str(out), *extra]))
                print(f"{name}: {times[-1]:.1f} s", flush=True)
            rows[name] = {"wall_s": round(statistics.median(times), 1), "runs": [round(t, 1) for t in times], "out": out}
        startup = ray_startup()
        local = rows["local"]
        people = sum(len(np.load(f / "params.npz")["loss"]) for f in local["out"].iterdir() if (f / "params.npz").is_file())
        shards = -(-len(photos) // args.shard_images)
        for name, row in rows.items():
            row["photos_per_s"] = round(len(photos) / row["wall_s"], 3)
            row["relative_throughput"] = round(local["wall_s"] / row["wall_s"], 2)
            if name != "local":
                row.update(compare(local["out"], row["out"]))
            if name == "ray, 2 workers":  # both cores busy, as in the local run: what is left is overhead
                row["overhead_per_shard_s"] = round((row["wall_s"] - startup - local["wall_s"]) / shards, 2)
        for row in rows.values():
            row.pop("out")
        for folder in tmp.iterdir():
            shutil.rmtree(folder, ignore_errors=True)
    report = {"photos": len(photos), "people_fitted": people, "shard_images": args.shard_images, "shards": shards,
              "ray_startup_s": round(startup, 1), "configs": rows}
    print(json.dumps(report, indent=1))
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
