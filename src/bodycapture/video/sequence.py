"""Sequence fitting: one shape per track, pose, expression and translation per frame, and a temporal term;
a clip is fitted window by window, each window warm-started from the one before.

A window of W frames of one track is one L-BFGS problem (fitting/lbfgs.py; several tracks are several
problems of one batch) over the track's shape and every frame's variables:

    E = sum_t E_frame(t) + lambda_acc * sum_t mean_k |1000 (K_k(t+1) - 2 K_k(t) + K_k(t-1))|^2

E_frame is the still fitter's objective (fitting/objective.py) with the weights of the schedule's last
stage (hands and face on, the least prior; no interpenetration term, so that only the keypoints' vertices
are computed: regressors.keypoint_model). K are the model's 3D keypoints in camera space (metres; the
term is in mm per frame squared), so the root's path is smoothed with the pose. The last `context`
frames of the previous window enter the acceleration term as constants: windows join without a seam.

How a track goes:
- its first window starts from a still fit (fitter.py: several starts, the camera stage, the annealed
  stages) of its best-seen frame; every frame of the window starts there, and the shape is free;
- then the shape is fixed (its gradient is zeroed, so L-BFGS never moves it: one shape per track);
- every later window starts each frame at the previous window's last frame, the translation moved on at
  its last velocity, and runs only the final weights: no annealing, which is what makes video fast.
The camera is fixed over the clip (one focal length; the translation is the body's, in camera space).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..errors import BodyCaptureError
from ..fitting.camera import Camera, default_focal, initial_translation
from ..fitting.fitter import _base_weights, fit
from ..fitting.lbfgs import LBFGSSettings, minimize
from ..fitting.objective import Objective, Targets
from ..fitting.schedule import FitConfig
from ..keypoints.layout import MIN_BODY_POINTS, NUM_KEYPOINTS
from ..keypoints.regressors import KeypointRegressor, keypoint_model
from ..keypoints.types import ImageKeypoints
from ..models.body_model import BodyModel
from ..models.lbs import matrix_to_axis_angle
from ..priors import PosePrior, make_pose_prior

__all__ = ["SequenceConfig", "SequenceFitter", "WindowFit"]

log = logging.getLogger(__name__)

# per-frame variables of a window, in packing order (those the model has)
FRAME_VARIABLES = ("global_orient", "pose_latent", "transl", "left_hand_pose", "right_hand_pose", "jaw_pose",
                   "expression")


@dataclass
class SequenceConfig:
    """How a clip is fitted. `fit` configures the still fit that starts each track and gives the stage
    weights of every window (its last stage's) and the focal length (None: the image diagonal)."""

    window: int = 16  # frames per window: one L-BFGS problem per track and window
    context: int = 2  # frames of the previous window fixed in the acceleration term
    max_iter: int = 30  # L-BFGS iterations of a window that follows another one
    first_max_iter: int = 60  # of a track's first window (its frames start from one still fit)
    acceleration: float = 0.05  # weight of the 3D keypoint acceleration term (mm/frame^2, squared); measured
    fit: FitConfig = field(default_factory=FitConfig)

    def validate(self) -> None:
        if self.window < 1:
            raise BodyCaptureError(f"window must be at least 1 frame, got {self.window}")
        if not 0 <= self.context <= 2:
            raise BodyCaptureError(f"context must be 0, 1 or 2 frames, got {self.context}")
        if self.max_iter < 1 or self.first_max_iter < 1:
            raise BodyCaptureError("max_iter and first_max_iter must be at least 1")
        if not (self.acceleration >= 0 and np.isfinite(self.acceleration)):
            raise BodyCaptureError(f"acceleration must be a number >= 0, got {self.acceleration}")
        self.fit.validate()


@dataclass
class WindowFit:
    """One track's fit over one window of W frames.

    params: SMPL-X-named parameters (W, n) each (body_pose axis-angle; betas the same in every frame);
    joints (W, J, 3) camera space; keypoints_2d (W, 135, 2) the model's keypoints in the image;
    residual_px (W,) the median distance between the detected and the fitted body keypoints (NaN in a
    frame without detections); restarted: the window started from a still fit (a track's first)."""

    params: dict[str, np.ndarray]
    joints: np.ndarray
    keypoints_2d: np.ndarray
    residual_px: np.ndarray
    restarted: bool


@dataclass
class _TrackState:
    betas: Tensor  # (S,)
    last: dict[str, Tensor]  # the last frame's variables, (n,) each
    velocity: Tensor  # (3,) translation per frame at the end of the last window
    context: Tensor  # (C, 135, 3) 3D keypoints of the last C frames


class SequenceFitter:
    """Fits the windows of a clip's tracks one after another; keeps each track's shape and last frames.

    fitter = SequenceFitter(model, config, image_size=(720, 1280))
    for each window: fits = fitter.fit_window({track id: keypoints (W, 135, 3)})
    """

    def __init__(self, model: BodyModel, config: SequenceConfig | None = None, image_size: tuple[int, int] = (720, 1280),
                 focal_length: float | None = None, pose_prior: PosePrior | None = None):
        self.config = config or SequenceConfig()
        self.config.validate()
        if model.family.name in ("mano", "flame"):
            raise BodyCaptureError(f"a {model.family.display} model has no body; video fitting needs SMPL, SMPL-H or SMPL-X")
        self.model = model
        self.dtype, self.device = model.v_template.dtype, model.v_template.device
        self.image_size = (int(image_size[0]), int(image_size[1]))
        focal = focal_length if focal_length is not None else self.config.fit.focal_length
        self.focal = float(focal) if focal is not None else default_focal(*self.image_size)
        self.regressor = KeypointRegressor(model)
        self.pose_prior = pose_prior or make_pose_prior(self.config.fit.pose_prior, model.parameter_sizes()["body_pose"])
        fast_model, fast_regressor = keypoint_model(model, self.regressor)
        hand_comps = {}
        if model.use_pca:
            hand_comps = {p: getattr(model, f"{p}_components") for p in ("left_hand_pose", "right_hand_pose")
                          if p in model.parameter_sizes()}
        self.base = _base_weights(self.regressor, self.config.fit, self.dtype)
        self.objective = Objective(model, self.regressor, self.pose_prior, self.config.fit, self.base, hand_comps, None,
                                   fast_model, fast_regressor)
        self.stage = dataclasses.replace(self.config.fit.stages[-1], collision=0.0, anchor_pose=False, max_iter=None)
        sizes = model.parameter_sizes()
        self.frame_sizes = {k: (self.pose_prior.latent_size if k == "pose_latent" else sizes[k])
                            for k in FRAME_VARIABLES if k == "pose_latent" or k in sizes}
        self.num_betas = sizes["betas"]
        self.tracks: dict[int, _TrackState] = {}
        self.seconds = 0.0  # spent in fit_window, still fits included
        self.frames_fitted = 0

    # ------------------------------------------------------------------------------------------------
    def fit_window(self, keypoints: dict[int, np.ndarray], world: dict[int, np.ndarray] | None = None) -> dict[int, WindowFit]:
        """Fit one window of every track given: {track id: detections (W, 135, 3)} (zeros where a track
        was not seen in a frame), optionally {track id: world landmarks (W, 25, 4)}. Tracks seen before
        continue from their last window; new ones start from a still fit. A track with too few body
        keypoints in every frame of its first window is left out (not started)."""
        start = time.perf_counter()
        W = self._window_length(keypoints)
        new = [t for t in keypoints if t not in self.tracks]
        started = self._start_tracks({t: keypoints[t] for t in new}, world)
        ids = [t for t in keypoints if t in self.tracks]
        if not ids:
            return {}
        kp = torch.as_tensor(np.stack([keypoints[t] for t in ids]), dtype=self.dtype, device=self.device)  # (N, W, 135, 3)
        wl = None
        if world is not None and all(t in world for t in ids):
            wl = torch.as_tensor(np.stack([world[t] for t in ids]), dtype=self.dtype, device=self.device)
        first = torch.tensor([t in started for t in ids], device=self.device)
        x0, betas = self._initial(ids, W)
        targets = self._targets(kp, wl, x0, betas)
        settings = LBFGSSettings(max_iter=self.config.first_max_iter if bool(first.any()) else self.config.max_iter)
        context, context_valid = self._context(ids)
        x = self._solve(torch.cat([betas, x0.reshape(len(ids), -1)], 1), targets, first, context, context_valid, W, settings)
        fits = self._results(ids, x, kp, W, started)
        self.seconds += time.perf_counter() - start
        self.frames_fitted += W * len(ids)
        return fits

    def _window_length(self, keypoints: dict[int, np.ndarray]) -> int:
        lengths = {np.shape(v)[0] for v in keypoints.values()}
        if len(lengths) > 1:
            raise ValueError(f"every track's window must have the same number of frames, got {sorted(lengths)}")
        for t, v in keypoints.items():
            if np.ndim(v) != 3 or np.shape(v)[1:] != (NUM_KEYPOINTS, 3):
                raise ValueError(f"track {t}: keypoints must be (W, {NUM_KEYPOINTS}, 3), got {np.shape(v)}")
        return lengths.pop() if lengths else 0

    def _start_tracks(self, keypoints: dict[int, np.ndarray], world: dict[int, np.ndarray] | None) -> set[int]:
        """Still-fit each new track's best-seen frame (all tracks in one batch) and remember the result."""
        key, chosen = [], []
        for t, kp in keypoints.items():
            seen = (kp[:, :25, 2] > 0).sum(1)
            best = int(np.argmax(seen))
            if seen[best] < MIN_BODY_POINTS:
                log.info("track %s: too few body keypoints in this window to start it", t)
                continue
            w = None if world is None or t not in world else world[t][best : best + 1]
            key.append(ImageKeypoints(kp[best : best + 1], self.image_size, w, f"track {t}"))
            chosen.append(t)
        if not chosen:
            return set()
        result = fit(key, self.model, config=self.config.fit, focal_length=self.focal, pose_prior=self.pose_prior)
        for i, t in enumerate(chosen):
            frame = {k: result.params[k][i] for k in self.frame_sizes if k != "pose_latent"}
            frame["pose_latent"] = result.pose_latent[i]
            frame = {k: v.to(self.dtype).to(self.device) for k, v in frame.items()}
            with torch.no_grad():
                ctx = self._keypoints3d({k: v[None] for k, v in frame.items()}, result.params["betas"][i:i + 1].to(self.device, self.dtype))
            self.tracks[t] = _TrackState(result.params["betas"][i].to(self.device, self.dtype), frame,
                                         torch.zeros(3, dtype=self.dtype, device=self.device), ctx[:0])
        return set(chosen)

    def _keypoints3d(self, frame: dict[str, Tensor], betas: Tensor) -> Tensor:
        params = self.objective.body_params({**frame, "betas": betas}, None)
        return self.objective.keypoint_regressor(self.objective.keypoint_model(**params))

    def _initial(self, ids: list[int], W: int) -> tuple[Tensor, Tensor]:
        """(frame variables (N, W, n) packed in FRAME_VARIABLES order, betas (N, S)): every frame at the
        track's last frame, the translation moved on at its velocity."""
        steps = torch.arange(1, W + 1, dtype=self.dtype, device=self.device)[:, None]
        rows = []
        for t in ids:
            state = self.tracks[t]
            frame = {k: v[None].expand(W, -1) for k, v in state.last.items()}
            frame["transl"] = state.last["transl"][None] + steps * state.velocity[None]
            rows.append(torch.cat([frame[k] for k in self.frame_sizes], 1))
        return torch.stack(rows), torch.stack([self.tracks[t].betas for t in ids])

    def _context(self, ids: list[int]) -> tuple[Tensor, Tensor]:
        """(N, C, 135, 3) the last C frames' 3D keypoints of each track, (N, C) which of them exist."""
        C = self.config.context
        ctx = torch.zeros(len(ids), C, NUM_KEYPOINTS, 3, dtype=self.dtype, device=self.device)
        valid = torch.zeros(len(ids), C, dtype=torch.bool, device=self.device)
        for i, t in enumerate(ids):
            c = self.tracks[t].context[-C:] if C else self.tracks[t].context[:0]
            if len(c):
                ctx[i, C - len(c):] = c
                valid[i, C - len(c):] = True
        return ctx, valid

    def _unpack(self, x: Tensor, W: int) -> dict[str, Tensor]:
        """(R, S + W n) -> per-frame variables (R W, k) each, betas repeated over the frames."""
        R = x.shape[0]
        betas, frames = x[:, : self.num_betas], x[:, self.num_betas :].reshape(R * W, -1)
        out = dict(zip(self.frame_sizes, torch.split(frames, list(self.frame_sizes.values()), dim=1)))
        out["betas"] = betas.repeat_interleave(W, 0)
        return out

    def _targets(self, kp: Tensor, world: Tensor | None, x0: Tensor, betas: Tensor) -> Targets:
        """Targets of every frame (N W rows); depth0 per frame by similar triangles from its detections."""
        N, W = kp.shape[:2]
        flat = kp.reshape(N * W, NUM_KEYPOINTS, 3)
        p0 = self._unpack(torch.cat([betas, x0.reshape(N, -1)], 1), W)
        focal = torch.full((N * W, 2), self.focal, dtype=self.dtype, device=self.device)
        center = torch.tensor([self.image_size[1] / 2, self.image_size[0] / 2], dtype=self.dtype,
                              device=self.device).expand(N * W, 2)
        with torch.no_grad():
            p_origin = {**p0, "transl": torch.zeros_like(p0["transl"])}
            start_kp = self.objective.keypoint_regressor(self.objective.keypoint_model(
                **self.objective.body_params(p_origin, None)))[:, :25]
            depth = initial_translation(flat, start_kp, focal, center)[:, 2]
        seen = (flat[:, :25, 2] > 0).sum(1) >= MIN_BODY_POINTS
        depth0 = torch.where(seen, depth, p0["transl"][:, 2])
        conf = flat[..., 2] if self.config.fit.use_confidence else (flat[..., 2] > 0).to(self.dtype)
        if world is None:
            world = flat.new_zeros(N * W, 25, 4)
        else:
            world = world.reshape(N * W, 25, 4)
        height = torch.full((N * W,), float(self.image_size[0]), dtype=self.dtype, device=self.device)
        return Targets(flat[..., :2], conf, height, focal, center, depth0, p0["transl"], world[..., :3],
                       world[..., 3].clamp(0, 1), p0["pose_latent"])

    def _solve(self, x0: Tensor, targets: Targets, free_shape: Tensor, context: Tensor, context_valid: Tensor, W: int,
               settings: LBFGSSettings) -> Tensor:
        """Minimise E over every track's window at once (one L-BFGS problem per track)."""
        S, lam = self.num_betas, self.config.acceleration
        C = context.shape[1]
        frame_rows = torch.arange(W, device=self.device)
        available = (self.base > 0).to(self.dtype)  # keypoints this model produces and that are fitted

        def fun(x: Tensor, rows: Tensor | None):
            rows_ = torch.arange(len(x0), device=self.device) if rows is None else rows
            x = x.detach().requires_grad_(True)
            R = x.shape[0]
            t = targets.take((rows_[:, None] * W + frame_rows).reshape(-1))
            e = self.objective.evaluate(self._unpack(x, W), self.stage, t)
            f = sum(e.terms().values()).reshape(R, W).sum(1)
            if lam > 0 and C + W >= 3:
                k = torch.cat([context[rows_], e.keypoints.reshape(R, W, NUM_KEYPOINTS, 3)], 1)  # (R, C + W, 135, 3)
                acc = k[:, 2:] - 2 * k[:, 1:-1] + k[:, :-2]
                valid = torch.cat([context_valid[rows_], torch.ones(R, W, dtype=torch.bool, device=self.device)], 1)
                valid = (valid[:, 2:] & valid[:, 1:-1] & valid[:, :-2]).to(self.dtype)
                per_frame = ((1000 * acc).square().sum(-1) * available).sum(-1) / available.sum()
                f = f + lam * (per_frame * valid).sum(1)
            (g,) = torch.autograd.grad(f.sum(), x)
            g = torch.cat([g[:, :S] * free_shape[rows_, None].to(g.dtype), g[:, S:]], 1)  # a fixed shape never moves
            return f.detach(), g

        return minimize(fun, x0, settings, partial=True).x.detach()

    def _results(self, ids: list[int], x: Tensor, kp: Tensor, W: int, started: set[int]) -> dict[int, WindowFit]:
        """Per-track window results, and each track's state for the next window."""
        N = len(ids)
        p = self._unpack(x, W)
        with torch.no_grad():
            params = self.objective.body_params(p, None)
            out = self.objective.keypoint_model(**params)
            k3 = self.objective.keypoint_regressor(out)
            camera = Camera(torch.full((N * W, 2), self.focal, dtype=self.dtype, device=self.device),
                            torch.tensor([self.image_size[1] / 2, self.image_size[0] / 2], dtype=self.dtype,
                                         device=self.device).expand(N * W, 2))
            proj = camera.project(k3)
        if params["body_pose"].dim() == 4:
            params["body_pose"] = matrix_to_axis_angle(params["body_pose"]).reshape(N * W, -1)
        sizes = self.model.parameter_sizes()
        for name in ("leye_pose", "reye_pose"):
            if name in sizes:
                params[name] = torch.zeros(N * W, 3, dtype=self.dtype, device=self.device)
        params = {k: v.detach().reshape(N, W, -1).cpu().numpy() for k, v in params.items() if k in sizes}
        proj = proj.reshape(N, W, NUM_KEYPOINTS, 2).cpu().numpy()
        joints = out.joints.detach().reshape(N, W, -1, 3).cpu().numpy()
        k3 = k3.detach().reshape(N, W, NUM_KEYPOINTS, 3)
        detected = kp.cpu().numpy()
        fits = {}
        for i, t in enumerate(ids):
            state = self.tracks[t]
            state.last = {k: v.reshape(N, W, -1)[i, -1].detach() for k, v in p.items() if k in self.frame_sizes}
            transl = p["transl"].reshape(N, W, 3)[i]
            state.velocity = (transl[-1] - transl[-2]).detach() if W >= 2 else state.velocity
            state.context = torch.cat([state.context, k3[i]], 0)[-max(self.config.context, 1):]
            fits[t] = WindowFit({k: v[i] for k, v in params.items()}, joints[i], proj[i],
                                _residuals(proj[i], detected[i]), t in started)
        return fits


def _residuals(projected: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """(W,) median pixel distance between detected (confidence > 0) and fitted body keypoints per frame."""
    d = np.linalg.norm(projected[:, :25] - detected[:, :25, :2], axis=-1)
    seen = detected[:, :25, 2] > 0
    out = np.full(len(d), np.nan)
    for t in np.nonzero(seen.any(1))[0]:  # W values, not a hot loop
        out[t] = float(np.median(d[t][seen[t]]))
    return out
