"""The paper's ablations and sensitivity analysis, on our synthetic suite (figures in docs/evaluation.md).

    python benchmarks/ablations.py [--n 20] [--seed 0] [--out docs/ablations.json] [--only-main] [--threads 1]

Every row's PA-v2v and PA-MPJPE are means over all people, failures included, with the median and the
failure count beside them.

Rows: the default fit; body keypoints only (hands and face weighted 0); a neutral model fitting people
generated with the female / male models vs the matching gendered model; more L-BFGS iterations. Then the
sensitivity analysis of SMPLify-X (Pavlakos et al. 2019, section 4): every family of stage weights scaled
by 0.75 and 1.25, and the relative change of the mean PA-v2v error reported (the paper found < 6 %).
With --mocap (default build/cmu_poses.npz when present): VPoser vs the L2 prior on people posed with the
held-out subjects' motion capture, and the 8-component GMM. With vs without the interpenetration term
(the paper's Table 2 row), with the self-intersecting triangle pairs of the fits; --only-collision runs
just those rows.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

import bodycapture
from bodycapture.evaluation.runner import evaluate_synthetic
from bodycapture.fitting import FitConfig

WEIGHTS = ["body_pose", "shape", "expression", "hand_pose", "jaw", "hand_joints", "face_joints"]


def mean_v2v(report) -> float:
    return float(report.to_dict()["mean"]["pa_v2v_all"])


def scaled(cfg: FitConfig, name: str, factor: float) -> FitConfig:
    out = copy.deepcopy(cfg)
    for st in out.stages:
        value = getattr(st, name)
        setattr(st, name, tuple(v * factor for v in value) if isinstance(value, tuple) else value * factor)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/ablations.json"))
    parser.add_argument("--mocap", type=Path, default=Path("build/cmu_poses.npz"),
                        help="retargeted CMU poses (tools/retarget_cmu.py): its test subjects give the prior rows")
    parser.add_argument("--only-priors", action="store_true", help="run only the pose-prior rows")
    parser.add_argument("--only-collision", action="store_true", help="run only the with/without collision rows")
    parser.add_argument("--only-main", action="store_true", help="run only the main rows (no sensitivity, priors)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steady timings on small machines)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    neutral = bodycapture.load_model()
    rows, start = {}, time.time()

    test_poses = None
    if args.mocap.is_file():
        data = np.load(args.mocap)
        test_poses = data["body_pose"][data["split"] == "test"]

    def run(name, truth, cfg=None, fit_model=None, body_poses=None):
        report = evaluate_synthetic(truth, args.n, args.seed, cfg, fit_model=fit_model, body_poses=body_poses)
        d = report.to_dict()
        rows[name] = {"pa_v2v_all": d["mean"]["pa_v2v_all"], "pa_v2v_median": d["median"]["pa_v2v_all"],
                      "pa_mpjpe_body": d["mean"]["pa_mpjpe_body"], "failure_rate": d["failure_rate"],
                      "pa_v2v_hands": d["mean"].get("pa_v2v_hands"), "pa_v2v_face": d["mean"].get("pa_v2v_face"),
                      "failures": d["failures"], "seconds_per_person": d["seconds_per_person"],
                      "intersecting_pairs": d["mean"].get("intersecting_pairs"), "n": args.n, "seed": args.seed}
        print(f"{name:<46} PA-v2v {rows[name]['pa_v2v_all']:6.1f} mm (median {rows[name]['pa_v2v_median']:.1f}, "
              f"{rows[name]['failures']} failures)  PA-MPJPE {rows[name]['pa_mpjpe_body']:6.1f} mm"
              f"  {rows[name]['seconds_per_person']:.2f} s/person  {rows[name]['intersecting_pairs']:.1f} isect pairs"
              f"  ({time.time() - start:.0f} s)", flush=True)
        return report

    def save() -> None:  # partial runs add their rows to the file
        args.out.parent.mkdir(parents=True, exist_ok=True)
        old = json.loads(args.out.read_text()) if args.out.is_file() else {"rows": {}}
        old["rows"].update(rows)
        args.out.write_text(json.dumps(old, indent=1))

    base = FitConfig()
    no_collision = FitConfig(interpenetration=False)
    last_stage_collision = copy.deepcopy(base)
    for st in last_stage_collision.stages[:-1]:
        st.collision = 0.0
    if args.only_collision:  # rows named apart from the full run's, which may use another n
        run("collision ablation: default", neutral)
        run("collision ablation: last stage only", neutral, last_stage_collision)
        run("collision ablation: off", neutral, no_collision)
        if test_poses is not None:
            run("collision ablation, held-out mocap poses: default", neutral, body_poses=test_poses)
            run("collision ablation, held-out mocap poses: last stage only", neutral, last_stage_collision,
                body_poses=test_poses)
            run("collision ablation, held-out mocap poses: off", neutral, no_collision, body_poses=test_poses)
        return save()
    if test_poses is not None and not args.only_main:  # learned vs L2 pose prior, on held-out subjects' real poses
        for prior in ("vposer", "gmm", "l2"):
            cfg = copy.deepcopy(base)
            cfg.pose_prior = prior
            run(f"held-out mocap poses, {prior} prior", neutral, cfg, body_poses=test_poses)
    if args.only_priors:
        return save()
    run("default (body + hands + face, neutral)", neutral)
    run("without the collision term", neutral, no_collision)
    body_only = copy.deepcopy(base)
    for st in body_only.stages:
        st.hand_joints = st.face_joints = 0.0
    run("body keypoints only", neutral, body_only)
    for gender in ("female", "male"):
        truth = bodycapture.load_model(gender=gender)
        run(f"{gender} people, neutral model", truth, fit_model=neutral)
        run(f"{gender} people, {gender} model", truth)
    more = copy.deepcopy(base)
    more.optimizer = dataclasses.replace(base.optimizer, max_iter=60)
    run("60 L-BFGS iterations per stage (default 30)", neutral, more)
    if args.only_main:
        return save()

    reference = rows["default (body + hands + face, neutral)"]["pa_v2v_all"]
    sensitivity = {}
    for name in WEIGHTS:
        for factor in (0.75, 1.25):
            label = f"{name} x{factor}"
            run(label, neutral, scaled(base, name, factor))
            sensitivity[label] = 100 * (rows[label]["pa_v2v_all"] - reference) / reference
    worst = max(abs(v) for v in sensitivity.values())
    print(f"sensitivity: largest relative change of PA-v2v {worst:.1f} % (paper: < 6 %)")
    save()
    data = json.loads(args.out.read_text())
    data.update({"n": args.n, "seed": args.seed, "sensitivity_percent": sensitivity})
    args.out.write_text(json.dumps(data, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
