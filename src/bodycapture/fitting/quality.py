"""How far to trust each fit: a quality record per person, and the doubtful ones named.

A fit can end in a wrong minimum without any error: the body twisted or folded, limbs through the torso.
What gives it away, measured against the fitter's own input (no ground truth needed): keypoints that the
fit does not reach (residual per group, in percent of the person's size in the image, so that it means the
same for a child in a crowd and a close-up), an implausible pose (the pose prior's energy), many colliding
triangle pairs, a stage that had to be rolled back. Thresholds were set on the synthetic suites (docs/fitting.md,
"Robust fitting"): a fit over any of them is flagged `doubtful`, and the pipeline prints one warning line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..keypoints.layout import BODY, REPORT_GROUPS

__all__ = ["FitQuality", "assess", "THRESHOLDS"]

CONFIDENT = 0.3  # keypoints below this confidence are not counted in the residuals
# Set on the synthetic suites (n = 30 each, 2D only and with 3D landmarks): fits that succeeded ended with
# body residuals up to 4.4 %, VPoser energies up to 17. Colliding pairs say little on the open model: its
# true synthetic bodies (random shapes) have 56 (ten poses) and 150 (motion capture) pairs at the median,
# so only far more than that counts. Measured 2026-12-01 on the true bodies of both suites (seeds 0-2, 300
# each): over 400 pairs 3.3 % and 9 % of them (hands near the face up to 800), over 600 1.0 % and 0.7 %;
# 400, the first choice, flagged all three seated cadets of coco_328 (hands on their faces, 550-600 pairs).
THRESHOLDS = {
    "body_residual": 5.0,  # % of the person's size: the body keypoints are not reached
    "pose_prior": 40.0,  # VPoser energy |z|^2; other priors: not checked
    "collisions": 600,  # colliding triangle pairs at the end: about 1 % of true bodies have more
}


@dataclass
class FitQuality:
    """Per person (P,): residual[group] mean distance of the fitted keypoints to the detected ones with
    confidence >= 0.3, in % of the person's size in the image (NaN where a group has none); pose_prior the
    pose prior's energy; collisions colliding triangle pairs at the end (-1: not computed); rolled_back
    whether a stage could not start from a finite loss; doubtful and its reasons."""

    residual: dict[str, Tensor]
    pose_prior: Tensor
    collisions: Tensor
    rolled_back: Tensor
    check_prior: bool = True  # False for priors whose energy has no calibrated threshold (GMM, L2)
    doubtful: Tensor = field(init=False)
    reasons: list[list[str]] = field(init=False)

    def __post_init__(self):
        reasons = [[] for _ in range(len(self.pose_prior))]
        not_reached = "body keypoints not reached ({:.1f} % of its size)"
        checks = [(self.residual["body"] > THRESHOLDS["body_residual"], not_reached, self.residual["body"]),
                  (self.check_prior & (self.pose_prior > THRESHOLDS["pose_prior"]), "implausible pose (prior energy {:.0f})", self.pose_prior),
                  (self.collisions > THRESHOLDS["collisions"], "{:.0f} colliding triangle pairs", self.collisions),
                  (self.rolled_back, "a stage was rolled back", None)]
        for flags, text, values in checks:
            for i in torch.nonzero(flags).flatten().tolist():
                reasons[i].append(text.format(float(values[i])) if values is not None else text)
        self.reasons = reasons
        self.doubtful = torch.tensor([bool(r) for r in reasons], dtype=torch.bool)

    def take(self, people) -> "FitQuality":
        idx = torch.as_tensor(np.asarray(people), dtype=torch.long)
        return FitQuality({k: v[idx] for k, v in self.residual.items()}, self.pose_prior[idx], self.collisions[idx],
                          self.rolled_back[idx], self.check_prior)

    def arrays(self) -> dict[str, np.ndarray]:
        """For params.npz: quality_<name> arrays (P,)."""
        out = {f"quality_residual_{k}": v.numpy() for k, v in self.residual.items()}
        out.update(quality_pose_prior=self.pose_prior.numpy(), quality_collisions=self.collisions.numpy(),
                   quality_rolled_back=self.rolled_back.numpy(), quality_doubtful=self.doubtful.numpy())
        return out


def person_size(keypoints: Tensor) -> Tensor:
    """(P, 135, 3) detections -> (P,) the larger side of the box around the confident body points, px."""
    seen = keypoints[:, BODY, 2] >= CONFIDENT
    xy = keypoints[:, BODY, :2]
    big = torch.full_like(xy, float("inf"))
    lo = torch.where(seen[..., None], xy, big).amin(1)
    hi = torch.where(seen[..., None], xy, -big).amax(1)
    size = (hi - lo).amax(1)
    return torch.where(torch.isfinite(size), size, torch.zeros_like(size)).clamp_min(1.0)


def assess(keypoints: Tensor, fitted: Tensor, pose_prior: Tensor, collisions: Tensor | None,
           rolled_back: Tensor, check_prior: bool = True) -> FitQuality:
    """keypoints (P, 135, 3) detected; fitted (P, 135, 2) the fit's keypoints in the image; pose_prior (P,)
    energies; collisions (P,) or None; rolled_back (P,) bool -> FitQuality (on the CPU)."""
    keypoints, fitted = keypoints.detach().double().cpu(), fitted.detach().double().cpu()
    size = person_size(keypoints)
    dist = (fitted - keypoints[..., :2]).norm(dim=-1) / size[:, None] * 100  # % of the person's size
    residual = {}
    for name, idx in REPORT_GROUPS.items():
        seen = (keypoints[:, idx, 2] >= CONFIDENT).double()
        count = seen.sum(1)
        residual[name] = torch.where(count > 0, (dist[:, idx] * seen).sum(1) / count.clamp_min(1), torch.nan)
    P = len(keypoints)
    counts = collisions.cpu().long() if collisions is not None else torch.full((P,), -1, dtype=torch.long)
    return FitQuality(residual, pose_prior.detach().double().cpu(), counts, rolled_back.cpu().bool(), check_prior)
