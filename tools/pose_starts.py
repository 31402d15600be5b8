"""The pose hypotheses of the fitter (fitting/start.py, start kind "poses"): k-means centres of the CMU
training poses in VPoser's latent space, decoded to axis-angle body poses.

    python tools/retarget_cmu.py          # build/cmu_poses.npz
    python tools/pose_starts.py [--k 16]  # src/bodycapture/data/pose_starts.npz

Only the training subjects are used (the test subjects are the motion-capture suite of `bodycapture
eval`). Seeded and reproducible.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def kmeans(x: torch.Tensor, k: int, iters: int = 100, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, d) -> (centres (k, d), labels (N,)); k-means++ seeding."""
    g = torch.Generator().manual_seed(seed)
    centres = x[torch.randint(len(x), (1,), generator=g)]
    for _ in range(1, k):
        d = torch.cdist(x, centres).min(1).values.square()
        centres = torch.cat([centres, x[torch.multinomial(d / d.sum(), 1, generator=g)]])
    for _ in range(iters):
        labels = torch.cdist(x, centres).argmin(1)
        new = torch.stack([x[labels == j].mean(0) if (labels == j).any() else centres[j] for j in range(k)])
        if torch.allclose(new, centres):
            break
        centres = new
    return centres, torch.cdist(x, centres).argmin(1)


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT / "src"))
    from bodycapture.priors.vposer import load_vposer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "build" / "cmu_poses.npz")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ROOT / "src" / "bodycapture" / "data" / "pose_starts.npz")
    args = parser.parse_args(argv)
    data = np.load(args.data)
    poses = torch.as_tensor(data["body_pose"][data["split"] == "train"], dtype=torch.float32)
    net = load_vposer()
    with torch.no_grad():
        latent = net.encode(poses).mean
        centres, labels = kmeans(latent, args.k)
        decoded = net.decode(centres)
    share = torch.bincount(labels, minlength=args.k).float() / len(labels)
    order = torch.argsort(share, descending=True)
    np.savez_compressed(args.out, body_pose=decoded[order].numpy(), share=share[order].numpy(),
                        source=np.array(f"k-means (k={args.k}) of {len(poses)} CMU training poses in VPoser's latent "
                                        "space (tools/pose_starts.py)"))
    print(f"wrote {args.out}: {args.k} poses, shares {np.round(share[order].numpy(), 3).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
