"""Clips on Ray (engine/ray_clips.py, video/shards.py): what sharding costs in accuracy, and the throughput.

    python benchmarks/bench_ray_clip.py [--shard-frames 64] [--frames 192] [--workers 1 2] [--skip-accuracy]

1. Accuracy, in this process (1 torch thread, no Ray: Ray only moves the same functions to other processes):
   every synthetic clip of the video suite (evaluation/video.py, 575 frames, true focal length) fitted
   as one process fits it (SequenceFitter fed 64 frames at a time) and in shards of --shard-frames (shapes
   from each track's first window, one window of burn-in, cross-faded joins, as a Ray run does). Per
   clip and over all frames: PA-MPJPE, the acceleration error, and the acceleration error in the frames
   around the joins (burn-in and the two frames after) against the local fit's in the same frames.
2. Throughput, as a user runs it (fresh `bodycapture fit` processes, the bundled detector): a real clip
   (a pan over examples/photo.jpg, two people, --frames frames at 480x327) fitted locally and with
   `--engine ray --workers N --shard-frames S` (the same S). Wall seconds, frames per second.
Figures go to docs/bench_ray_clip.json. Run it on an idle machine; one run per configuration.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BODY_JOINTS = 22


def accuracy(shard_frames: int) -> dict:
    import torch

    from bodycapture.evaluation.metrics import pa_mpjpe
    from bodycapture.evaluation.video import acceleration_error, mocap_test_clips, synthetic_clip
    from bodycapture.fitting import FitConfig
    from bodycapture.pipeline import load_fit_model
    from bodycapture.video.capture import ClipFitting, FrameInfo, track_arrays
    from bodycapture.video.sequence import SequenceConfig, SequenceFitter
    from bodycapture.video.shards import first_windows, fit_shapes, fit_shard, plan_shards, stitch

    torch.set_num_threads(1)
    model = load_fit_model()
    rows_out, all_local, all_sharded = {}, [], []
    join_local, join_sharded = [], []
    for name in mocap_test_clips():
        clip = synthetic_clip(model, name)
        config = SequenceConfig(fit=FitConfig(focal_length=clip.focal))
        size = clip.keypoints[0].image_size
        rows = [(i, FrameInfo(i, i / 30, f"{i}", size), kp, np.zeros(kp.num_people, dtype=np.int64))
                for i, kp in enumerate(clip.keypoints)]
        t0 = time.perf_counter()
        fitter = SequenceFitter(model, config, size, focal_length=clip.focal)
        fitting = ClipFitting(fitter, max_gap=5)
        for row in rows:
            fitting.add(*row)
        local = track_arrays(fitting.finish())[0]
        t_local = time.perf_counter() - t0
        t0 = time.perf_counter()
        plan = plan_shards(len(rows), shard_frames, config.window)
        shapes = fit_shapes(rows, first_windows(rows, config.window), model, config, size, clip.focal)
        pieces = [fit_shard([r for r in rows if s.begin <= r[0] < s.end], shapes, model, config, size, clip.focal, 5)
                  for s in plan]
        sharded = stitch(pieces, plan, fitter.project, model.parameter_sizes()["left_hand_pose"] == 45)[0]
        t_sharded = time.perf_counter() - t0
        true = clip.joints[:, :BODY_JOINTS].double()
        joints = {}
        for key, track in (("local", local), ("sharded", sharded)):
            given = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in track["params"].items()}
            with torch.no_grad():
                joints[key] = model(**given).joints[:, :BODY_JOINTS].double()
        near = np.zeros(len(rows), dtype=bool)  # burn-in frames of every shard after the first, and 2 after
        for s in plan[1:]:
            near[s.begin : min(s.start + 2, len(rows))] = True
        accel_near = near[1:-1]
        err = {k: pa_mpjpe(v, true).numpy() * 1000 for k, v in joints.items()}
        acc = {k: np.linalg.norm(_second(v.numpy()) - _second(true.numpy()), axis=-1).mean(-1) * 1000
               for k, v in joints.items()}
        all_local.append(err["local"])
        all_sharded.append(err["sharded"])
        join_local.append(acc["local"][accel_near])
        join_sharded.append(acc["sharded"][accel_near])
        rows_out[name] = {"frames": len(rows), "shards": len(plan),
                          "pa_mpjpe_local": round(float(err["local"].mean()), 1),
                          "pa_mpjpe_sharded": round(float(err["sharded"].mean()), 1),
                          "accel_error_local": round(acceleration_error(joints["local"].numpy(), true.numpy()), 1),
                          "accel_error_sharded": round(acceleration_error(joints["sharded"].numpy(), true.numpy()), 1),
                          "fps_local": round(len(rows) / t_local, 2), "fps_sharded_one_process": round(len(rows) / t_sharded, 2)}
        print(name, rows_out[name], flush=True)
    cat = np.concatenate
    return {"shard_frames": shard_frames, "clips": rows_out,
            "pa_mpjpe_local": round(float(cat(all_local).mean()), 1),
            "pa_mpjpe_sharded": round(float(cat(all_sharded).mean()), 1),
            "accel_error_at_joins_local": round(float(cat(join_local).mean()), 1),
            "accel_error_at_joins_sharded": round(float(cat(join_sharded).mean()), 1),
            "join_frames": int(sum(len(j) for j in join_local))}


def _second(joints: np.ndarray) -> np.ndarray:
    """Second differences of root-relative joints (T, J, 3) -> (T - 2, J, 3)."""
    rel = joints - joints[:, :1]
    return rel[2:] - 2 * rel[1:-1] + rel[:-2]


def pan_video(path: Path, frames: int) -> Path:
    """A pan over examples/photo.jpg (640x327): a 480-pixel-wide window moving across it."""
    import cv2

    image = cv2.imread(str(ROOT / "examples" / "photo.jpg"))
    h, w = image.shape[:2]
    width = 480
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (width, h))
    for i in range(frames):
        x = int(round((w - width) * i / max(frames - 1, 1)))
        writer.write(np.ascontiguousarray(image[:, x : x + width]))
    writer.release()
    return path


def throughput(frames: int, workers: list[int], shard_frames: int) -> dict:
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = pan_video(tmp / "pan.mp4", frames)
        configs = [("local", [])] + [(f"ray, {w} worker{'s' if w > 1 else ''}",
                                      ["--engine", "ray", "--workers", str(w), "--shard-frames", str(shard_frames)])
                                     for w in workers]
        for name, extra in configs:
            out = tmp / name.replace(", ", "_").replace(" ", "")
            t0 = time.perf_counter()
            run = subprocess.run([sys.executable, "-m", "bodycapture", "fit", str(video), "--out", str(out), *extra],
                                 capture_output=True, text=True)
            wall = time.perf_counter() - t0
            clip = json.loads((out / "pan" / "clip.json").read_text()) if (out / "pan" / "clip.json").is_file() else {}
            rows[name] = {"wall_s": round(wall, 1), "frames_per_s": round(frames / wall, 2),
                          "tracks": len(clip.get("tracks", [])), "exit": run.returncode,
                          "closing_line": run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-300:]}
            print(name, rows[name], flush=True)
    local = rows["local"]["wall_s"]
    for row in rows.values():
        row["relative_throughput"] = round(local / row["wall_s"], 2)
    return {"frames": frames, "size": [327, 480], "shard_frames": shard_frames, "configs": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shard-frames", type=int, default=64, help="frames per shard (both parts)")
    parser.add_argument("--frames", type=int, default=192, help="frames of the throughput clip")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench_ray_clip.json")
    args = parser.parse_args()
    report = {}
    if not args.skip_accuracy:
        report["accuracy"] = accuracy(args.shard_frames)
    report["throughput"] = throughput(args.frames, args.workers, args.shard_frames)
    print(json.dumps(report, indent=1))
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
