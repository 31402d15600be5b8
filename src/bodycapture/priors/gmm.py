"""A Gaussian-mixture body-pose prior, as in SMPLify (Bogo et al. 2016) and SMPLify-X's `gmm` option.

Energy of a pose theta: the best component's negative log-likelihood (SMPLify's "MaxMixture"):
    min_k  1/2 (theta - mu_k)^T S_k^-1 (theta - mu_k) - log w_k + 1/2 log det S_k - 1/2 min_j log det S_j
(the constants shared by all components are dropped). Ours is fitted by tools/fit_pose_gmm.py on the same
retarget CMU training poses as our VPoser (8 components, full covariances), over the 63-D body pose.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .pose import PosePrior

__all__ = ["GMMPrior", "fit_gmm", "DEFAULT_GMM"]

DEFAULT_GMM = Path(__file__).resolve().parents[1] / "data" / "pose_gmm_open.npz"


def fit_gmm(x: Tensor, k: int = 8, iters: int = 200, reg: float = 1e-4, seed: int = 0):
    """EM for a full-covariance Gaussian mixture: x (N, d) -> means (k, d), covariances (k, d, d), weights (k,)."""
    g = torch.Generator().manual_seed(seed)
    n, d = x.shape
    means = x[torch.randperm(n, generator=g)[:k]].clone()
    covs = torch.cov(x.T).expand(k, d, d).clone() + reg * torch.eye(d, dtype=x.dtype)
    weights = torch.full((k,), 1.0 / k, dtype=x.dtype)
    for _ in range(iters):
        dist = torch.distributions.MultivariateNormal(means, covariance_matrix=covs)
        log_r = dist.log_prob(x[:, None, :]) + weights.log()  # (N, k)
        r = torch.softmax(log_r, dim=1)
        nk = r.sum(0) + 1e-10
        weights = nk / n
        means = (r.T @ x) / nk[:, None]
        diff = x[:, None, :] - means  # (N, k, d)
        covs = torch.einsum("nk,nki,nkj->kij", r, diff, diff) / nk[:, None, None] + reg * torch.eye(d, dtype=x.dtype)
    return means, covs, weights


class GMMPrior(PosePrior):
    """latent = the body pose itself; energy = the best component's negative log-likelihood."""

    name = "gmm"

    def __init__(self, path: str | Path | None = None, body_pose_size: int = 63):
        with np.load(path or DEFAULT_GMM) as data:
            self.means = torch.as_tensor(data["means"])
            covs = torch.as_tensor(data["covars"])
            weights = torch.as_tensor(data["weights"])
        self.precisions = torch.linalg.inv(covs)
        logdet = torch.linalg.slogdet(covs).logabsdet
        self.constants = -weights.log() + 0.5 * logdet - 0.5 * logdet.min()
        self.latent_size = body_pose_size
        self.dim = self.means.shape[1]

    def decode(self, latent: Tensor) -> Tensor:
        return latent

    def penalty(self, latent: Tensor) -> Tensor:
        mu = self.means.to(latent)
        diff = latent[:, None, : self.dim] - mu  # (B, k, d)
        maha = torch.einsum("bki,kij,bkj->bk", diff, self.precisions.to(latent), diff)
        return (0.5 * maha + self.constants.to(latent)).min(1).values

    def init_latent(self, batch: int, dtype=torch.float32, device=None) -> Tensor:
        """The mean of the heaviest component (SMPLify starts from the GMM's mean pose)."""
        best = int(torch.argmin(self.constants))
        start = torch.zeros(batch, self.latent_size, dtype=dtype, device=device)
        start[:, : self.dim] = self.means[best].to(dtype=dtype, device=device)
        return start
