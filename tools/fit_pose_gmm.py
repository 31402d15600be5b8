"""Fit the 8-component Gaussian-mixture pose prior (SMPLify's kind) on the retargeted CMU training poses.

    python tools/retarget_cmu.py && python tools/fit_pose_gmm.py

Writes src/bodycapture/data/pose_gmm_open.npz (means, covars, weights) for `--pose-prior gmm`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bodycapture.io.atomic import atomic_path  # noqa: E402
from bodycapture.priors.gmm import DEFAULT_GMM, fit_gmm  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT / "build" / "cmu_poses.npz")
    parser.add_argument("--out", type=Path, default=DEFAULT_GMM)
    parser.add_argument("--components", type=int, default=8)
    args = parser.parse_args(argv)
    data = np.load(args.data)
    x = torch.as_tensor(data["body_pose"][data["split"] == "train"], dtype=torch.float64)
    means, covs, weights = fit_gmm(x, args.components)
    with atomic_path(args.out) as tmp:
        np.savez_compressed(tmp, means=means.numpy(), covars=covs.numpy(), weights=weights.numpy())
    print(f"{args.components} components on {len(x)} poses; weights {np.round(weights.numpy(), 3).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
