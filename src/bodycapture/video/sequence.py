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

How a chunk of frames goes (`SequenceFitter.fit`):
- key frames (every `key_every`-th frame of each track, and each window's last) are fitted as photos,
  all in one batch (fitter.py: several starts, the camera stage, the annealed stages; no interpenetration
  term). Small batches cost about the same per evaluation as one person, so this is cheap per frame, and
  a still fit does not drift: it is what keeps a track out of a wrong minimum (a leg's depth flipped
  while walking, say) that a purely warm-started track drifts into and stays in;
- then window after window, each track gets two starts that compete on the final energy: every frame at
  the previous window's last frame (the translation moved on at its velocity), and a path through the
  key frames' fits (rotations along the geodesic, the rest linearly; the key fits give the body, the
  hands, jaw and expression carry on from the track). A new track starts on the path through its key
  frames, with its shape free; after its first window the shape is fixed (its gradient is zeroed, so
  L-BFGS never moves it: one shape per track);
- no annealing inside a window (the final weights only): the main speed lever with the batching above.
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
from ..fitting.objective import Objective, Targets, pca_hand_components
from ..fitting.schedule import FitConfig
from ..keypoints.layout import NUM_KEYPOINTS, fittable
from ..keypoints.regressors import KeypointRegressor, keypoint_model
from ..keypoints.types import ImageKeypoints
from ..models.body_model import BodyModel
from ..models.lbs import axis_angle_to_matrix, matrix_to_axis_angle
from ..priors import PosePrior, make_pose_prior

__all__ = ["SequenceConfig", "SequenceFitter", "TrackFit"]

log = logging.getLogger(__name__)

# per-frame variables of a window, in packing order (those the model has)
FRAME_VARIABLES = ("global_orient", "pose_latent", "transl", "left_hand_pose", "right_hand_pose", "jaw_pose",
                   "expression")


@dataclass
class SequenceConfig:
    """How a clip is fitted. `fit` configures the still fit that starts each track and gives the stage
    weights of every window (its last stage's) and the focal length (None: the image diagonal)."""

    # defaults measured on the synthetic clips (benchmarks/video_fit.py, docs/video.md): shorter windows
    # (8) let a bad start win a whole window; fewer key frames (every 4th) cost 2-5 % PA-MPJPE
    window: int = 32  # frames per window: one L-BFGS problem per track and start
    context: int = 2  # frames of the previous window fixed in the acceleration term
    max_iter: int = 60  # L-BFGS iterations of a window
    first_max_iter: int = 100  # of a track's first window
    key_max_iter: int = 20  # L-BFGS iterations per stage of the key frames' still fits (10: +15 % PA-MPJPE)
    key_every: int = 2  # a key frame (a still fit) every this many frames, and each window's last
    acceleration: float = 2.0  # weight of the 3D keypoint acceleration term (mm/frame^2, squared)
    fit: FitConfig = field(default_factory=FitConfig)

    def validate(self) -> None:
        if self.window < 1:
            raise BodyCaptureError(f"window must be at least 1 frame, got {self.window}")
        if not 0 <= self.context <= 2:
            raise BodyCaptureError(f"context must be 0, 1 or 2 frames, got {self.context}")
        if min(self.max_iter, self.first_max_iter, self.key_max_iter, self.key_every) < 1:
            raise BodyCaptureError("max_iter, first_max_iter, key_max_iter and key_every must be at least 1")
        if not (self.acceleration >= 0 and np.isfinite(self.acceleration)):
            raise BodyCaptureError(f"acceleration must be a number >= 0, got {self.acceleration}")
        self.fit.validate()


@dataclass
class TrackFit:
    """One track's fit over T consecutive frames, from frame `start` on (of the frames given to `fit`).

    params: SMPL-X-named parameters (T, n) each (body_pose axis-angle; betas the same in every frame);
    joints (T, J, 3) camera space; keypoints_2d (T, 135, 2) the model's keypoints in the image;
    residual_px (T,) the median distance between the detected and the fitted body keypoints (NaN in a
    frame without detections); detected (T,) whether the track was seen in the frame (in the others its
    body is carried by the temporal term)."""

    start: int
    params: dict[str, np.ndarray]
    joints: np.ndarray
    keypoints_2d: np.ndarray
    residual_px: np.ndarray
    detected: np.ndarray

    @staticmethod
    def concatenate(pieces: list["TrackFit"]) -> "TrackFit":
        """Consecutive pieces of one track -> one TrackFit."""
        cat = lambda name: np.concatenate([getattr(p, name) for p in pieces])  # noqa: E731
        params = {k: np.concatenate([p.params[k] for p in pieces]) for k in pieces[0].params}
        return TrackFit(pieces[0].start, params, cat("joints"), cat("keypoints_2d"), cat("residual_px"), cat("detected"))


@dataclass
class _TrackState:
    betas: Tensor  # (S,)
    last: dict[str, Tensor]  # the last frame's variables, (n,) each
    velocity: Tensor  # (3,) translation per frame at the end of the last window
    context: Tensor  # (C, 135, 3) 3D keypoints of the last C frames
    new: bool = False  # started from a still fit, no window fitted yet
    free_shape: bool = True  # its shape is fitted in its first window (not given: `set_shape`)


class SequenceFitter:
    """Fits the windows of a clip's tracks one after another; keeps each track's shape and last frames.

    fitter = SequenceFitter(model, config, image_size=(720, 1280))
    for each chunk of frames: fits = fitter.fit({track id: keypoints (T, 135, 3)})   # -> {track id: TrackFit}
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
        self.base = _base_weights(self.regressor, self.config.fit, self.dtype)
        self.objective = Objective(model, self.regressor, self.pose_prior, self.config.fit, self.base,
                                   pca_hand_components(model), None, fast_model, fast_regressor)
        # the clip's one camera: focal (2,) and principal point (2,), expanded per frame where needed
        self.camera_focal = torch.full((2,), self.focal, dtype=self.dtype, device=self.device)
        self.camera_center = torch.tensor([self.image_size[1] / 2, self.image_size[0] / 2], dtype=self.dtype,
                                          device=self.device)
        # key frames are fitted as photos, but without the interpenetration term (the windows have none: it
        # needs the whole mesh; it is 60 % of a still fit's time) and with key_max_iter iterations in every
        # stage (none settling first)
        self.key_config = dataclasses.replace(self.config.fit, interpenetration=False, optimizer=dataclasses.replace(
            self.config.fit.optimizer, max_iter=self.config.key_max_iter),
            stages=[dataclasses.replace(st, max_iter=None, settle_iter=0) for st in self.config.fit.stages])
        self.stage = dataclasses.replace(self.config.fit.stages[-1], collision=0.0, anchor_pose=False, max_iter=None)
        sizes = model.parameter_sizes()
        self.frame_sizes = {k: (self.pose_prior.latent_size if k == "pose_latent" else sizes[k])
                            for k in FRAME_VARIABLES if k == "pose_latent" or k in sizes}
        self.num_betas = sizes["betas"]
        self.tracks: dict[int, _TrackState] = {}
        self.shapes: dict[int, Tensor] = {}  # shapes given for tracks (set_shape), fixed from their first window
        self.seconds = 0.0  # spent in fit(), the key frames' still fits included
        self.frames_fitted = 0

    # ------------------------------------------------------------------------------------------------
    def fit(self, keypoints: dict[int, np.ndarray], world: dict[int, np.ndarray] | None = None) -> dict[int, TrackFit]:
        """Fit the next T frames of the tracks given: {track id: detections (T, 135, 3)} (zeros where a
        track was not seen), optionally {track id: world landmarks (T, 25, 4)}. The key frames of every
        track and window are still-fitted in one batch first (what batching makes cheap), then the
        windows are fitted in order. Tracks seen before continue; a new one starts in the first window
        where it has enough body keypoints (earlier frames are not fitted: its TrackFit starts later).
        -> {track id: TrackFit} for the tracks fitted."""
        start = time.perf_counter()
        T = self._length(keypoints)
        keys = self._key_fits(keypoints, world)
        pieces: dict[int, list[TrackFit]] = {}
        W = self.config.window
        for s in range(0, T, W):
            e = min(s + W, T)
            window_keys = {t: [(f - s, v, b) for f, v, b in k if s <= f < e] for t, k in keys.items()}
            for t, k in window_keys.items():
                if t not in self.tracks and k:
                    self.tracks[t] = _TrackState(self.shapes.get(t, k[0][2]), k[0][1], torch.zeros_like(k[0][1]["transl"]),
                                                 torch.zeros(0, NUM_KEYPOINTS, 3, dtype=self.dtype, device=self.device),
                                                 new=True, free_shape=t not in self.shapes)
            ids = [t for t in keypoints if t in self.tracks]
            if not ids:
                continue
            w_world = None if world is None else {t: world[t][s:e] for t in ids if t in world}
            fits = self._fit_window(ids, {t: keypoints[t][s:e] for t in ids}, w_world, window_keys, s)
            for t, f in fits.items():
                pieces.setdefault(t, []).append(f)
        self.seconds += time.perf_counter() - start
        out = {t: TrackFit.concatenate(p) for t, p in pieces.items()}
        self.frames_fitted += sum(len(f.residual_px) for f in out.values())
        return out

    def end_track(self, track: int) -> None:
        """Forget a track (it left the clip); the same id given later starts a new track."""
        self.tracks.pop(track, None)
        self.shapes.pop(track, None)

    def set_shape(self, track: int, betas) -> None:
        """Give a track's shape (S,) before it starts: it is never fitted (a clip fitted in shards uses
        the shape its first window gave, video/shards.py)."""
        if track in self.tracks:
            raise ValueError(f"track {track} has started; its shape is set before its first window")
        self.shapes[track] = torch.as_tensor(np.asarray(betas), dtype=self.dtype, device=self.device).reshape(-1)

    def shape(self, track: int) -> np.ndarray:
        """(S,) a started track's shape."""
        return self.tracks[track].betas.cpu().numpy()

    def project(self, params: dict[str, np.ndarray]) -> np.ndarray:
        """The model's keypoints in the image (T, 135, 2) for per-frame parameters in SMPL-X names
        ((T, n) each, body_pose axis-angle, as TrackFit.params), through this clip's camera."""
        T = len(params["transl"])
        given = {k: torch.as_tensor(v, dtype=self.dtype, device=self.device) for k, v in params.items()}
        with torch.no_grad():
            k3 = self.regressor(self.model(**given))
            proj = Camera(self.camera_focal.expand(T, 2), self.camera_center.expand(T, 2)).project(k3)
        return proj.cpu().numpy()

    def _fit_window(self, ids: list[int], keypoints: dict[int, np.ndarray], world: dict[int, np.ndarray] | None,
                    keys: dict[int, list], offset: int) -> dict[int, TrackFit]:
        """One window of the tracks `ids`, every start of every track one L-BFGS problem; each track keeps
        its start with the lowest final energy."""
        W = len(next(iter(keypoints.values())))
        owner, x0, first = self._hypotheses(ids, W, keys)
        kp = torch.as_tensor(np.stack([keypoints[t] for t in ids]), dtype=self.dtype, device=self.device)[owner]
        wl = None
        if world is not None and all(t in world for t in ids):
            wl = torch.as_tensor(np.stack([world[t] for t in ids]), dtype=self.dtype, device=self.device)[owner]
        betas = torch.stack([self.tracks[t].betas for t in ids])[owner]
        targets = self._targets(kp, wl, x0, betas)
        settings = LBFGSSettings(max_iter=self.config.first_max_iter if bool(first.any()) else self.config.max_iter)
        context, context_valid = self._context(ids)
        free = first & torch.tensor([self.tracks[t].free_shape for t in ids], device=self.device)[owner]
        x, f = self._solve(torch.cat([betas, x0.reshape(len(owner), -1)], 1), targets, free, context[owner],
                           context_valid[owner], W, settings)
        best = _best_per_owner(owner, f, len(ids))
        return self._results(ids, x[best], kp[best], W, first[best], offset)

    def _length(self, keypoints: dict[int, np.ndarray]) -> int:
        lengths = {np.shape(v)[0] for v in keypoints.values()}
        if len(lengths) > 1:
            raise ValueError(f"every track must have the same number of frames, got {sorted(lengths)}")
        for t, v in keypoints.items():
            if np.ndim(v) != 3 or np.shape(v)[1:] != (NUM_KEYPOINTS, 3):
                raise ValueError(f"track {t}: keypoints must be (T, {NUM_KEYPOINTS}, 3), got {np.shape(v)}")
        return lengths.pop() if lengths else 0

    def _key_fits(self, keypoints: dict[int, np.ndarray], world: dict[int, np.ndarray] | None) -> dict[int, list]:
        """Still fits, all in one batch, of the key frames: in every window every `key_every`-th frame and
        the last one with enough body keypoints, and for a track not started yet also its first such frame.
        -> {track id: [(frame, its variables, its betas), ...]} in frame order."""
        W, every = self.config.window, self.config.key_every
        chosen, images = [], []
        for t, kp in keypoints.items():
            enough = np.nonzero(fittable(kp))[0]
            if not len(enough):
                continue
            frames = {int(f) for f in enough if (f % W) % every == every - 1}
            frames |= {int(enough[enough // W == w][-1]) for w in np.unique(enough // W)}  # each window's last
            if t not in self.tracks:
                frames.add(int(enough[0]))
            for frame in sorted(frames):
                w = None if world is None or t not in world else world[t][frame : frame + 1]
                images.append(ImageKeypoints(kp[frame : frame + 1], self.image_size, w, f"track {t}"))
                chosen.append((t, frame))
        if not chosen:
            return {}
        result = fit(images, self.model, config=self.key_config, focal_length=self.focal, pose_prior=self.pose_prior)
        out: dict[int, list] = {}
        for i, (t, frame) in enumerate(chosen):
            variables = {k: result.params[k][i] for k in self.frame_sizes if k != "pose_latent"}
            variables["pose_latent"] = result.pose_latent[i]
            variables = {k: v.to(self.device, self.dtype) for k, v in variables.items()}
            out.setdefault(t, []).append((frame, variables, result.params["betas"][i].to(self.device, self.dtype)))
        return out

    def _hypotheses(self, ids: list[int], W: int, key: dict[int, list]) -> tuple[Tensor, Tensor, Tensor]:
        """The starts of this window, one L-BFGS problem each: (owner (I,) index into ids, frame variables
        (I, W, n) packed in FRAME_VARIABLES order, first (I,) a track's first window, whose shape is free).

        A new track: a path between the still fits of its first and last key frames. A continuing one, two starts that compete on the final
        energy: every frame at the last window's last frame (the translation moved on at its velocity),
        and a path from there to this window's still fit of a key frame (interpolated: rotations along
        the geodesic, the rest linearly), which pulls a track out of a wrong minimum it drifted into
        (a leg's depth flipped while walking, say) as a still fit does not drift."""
        frames = torch.arange(W, dtype=self.dtype, device=self.device)[:, None]
        owner, rows, first = [], [], []
        for i, t in enumerate(ids):
            state = self.tracks[t]
            if state.new:  # through the still fits of its key frames
                rows.append(self._pack(_path([(f, v) for f, v, _ in key[t]], W)))
                owner.append(i)
                first.append(True)
                continue
            frame = {k: v[None].expand(W, -1) for k, v in state.last.items()}
            frame["transl"] = state.last["transl"][None] + (frames + 1) * state.velocity[None]
            rows.append(self._pack(frame))
            owner.append(i)
            first.append(False)
            if key.get(t):  # the key fits are body-only: the hands, jaw and expression stay where the track's were
                body = ("global_orient", "pose_latent", "transl")
                points = [(-1, state.last)] + [(k, {**state.last, **{n: v[n] for n in body}}) for k, v, _ in key[t]]
                rows.append(self._pack(_path(points, W)))
                owner.append(i)
                first.append(False)
        dev = self.device
        return (torch.tensor(owner, device=dev), torch.stack(rows), torch.tensor(first, dtype=torch.bool, device=dev))

    def _pack(self, frame: dict[str, Tensor]) -> Tensor:
        """Per-frame variables {name: (W, k)} -> (W, n) in FRAME_VARIABLES order."""
        return torch.cat([frame[k] for k in self.frame_sizes], 1)

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
        focal, center = self.camera_focal.expand(N * W, 2), self.camera_center.expand(N * W, 2)
        with torch.no_grad():
            p_origin = {**p0, "transl": torch.zeros_like(p0["transl"])}
            start_kp = self.objective.keypoint_regressor(self.objective.keypoint_model(
                **self.objective.body_params(p_origin, None)))[:, :25]
            depth = initial_translation(flat, start_kp, focal, center)[:, 2]
        seen = fittable(flat)
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
               settings: LBFGSSettings) -> tuple[Tensor, Tensor]:
        """Minimise E over every start of every track's window at once (one L-BFGS problem each):
        -> (x (I, S + W n), final E (I,))."""
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

        res = minimize(fun, x0, settings, partial=True)
        return res.x.detach(), res.f.detach()

    def _results(self, ids: list[int], x: Tensor, kp: Tensor, W: int, first: Tensor, offset: int) -> dict[int, TrackFit]:
        """Per-track window results, and each track's state for the next window."""
        N = len(ids)
        p = self._unpack(x, W)
        with torch.no_grad():
            params = self.objective.body_params(p, None)
            out = self.objective.keypoint_model(**params)
            k3 = self.objective.keypoint_regressor(out)
            proj = Camera(self.camera_focal.expand(N * W, 2), self.camera_center.expand(N * W, 2)).project(k3)
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
            state.new = False
            state.betas = x[i, : self.num_betas].detach()  # fitted in the first window, unchanged after it
            fits[t] = TrackFit(offset, {k: v[i] for k, v in params.items()}, joints[i], proj[i],
                               _residuals(proj[i], detected[i]), detected[i, :, :25, 2].max(1) > 0)
        return fits


def _residuals(projected: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """(W,) median pixel distance between detected (confidence > 0) and fitted body keypoints per frame."""
    d = np.linalg.norm(projected[:, :25] - detected[:, :25, :2], axis=-1)
    seen = detected[:, :25, 2] > 0
    out = np.full(len(d), np.nan)
    some = seen.any(1)
    out[some] = np.nanmedian(np.where(seen, d, np.nan)[some], axis=1)
    return out


def _best_per_owner(owner: Tensor, loss: Tensor, count: int) -> Tensor:
    """(count,) for each owner the index of its item with the lowest finite loss (ties: the first)."""
    loss = torch.where(torch.isfinite(loss), loss, torch.full_like(loss, float("inf")))
    order = torch.argsort(loss, stable=True)
    best = torch.full((count,), -1, dtype=torch.long, device=loss.device)
    best[owner[order].flip(0)] = order.flip(0)  # the last write wins: the lowest loss of each owner
    return best


def _path(points: list[tuple[int, dict[str, Tensor]]], W: int) -> dict[str, Tensor]:
    """Per-frame variables {name: (W, k)} through `points` [(frame, variables), ...] (frames increasing,
    may lie outside 0..W-1): piecewise geodesic / linear between neighbours, constant beyond the ends."""
    a0 = points[0][1]
    out = {k: v[None].expand(W, -1).clone() for k, v in a0.items()}
    frames = torch.arange(W, dtype=a0["transl"].dtype, device=a0["transl"].device)[:, None]
    for (f0, a), (f1, b) in zip(points[:-1], points[1:]):
        alpha = ((frames - f0) / max(f1 - f0, 1)).clamp(0.0, 1.0)
        segment = _interpolate(a, b, alpha)
        later = (frames[:, 0] > f0)
        for k in out:
            out[k] = torch.where(later[:, None], segment[k], out[k])
    return out


def _interpolate(a: dict[str, Tensor], b: dict[str, Tensor], alpha: Tensor) -> dict[str, Tensor]:
    """Per-frame variables from a (alpha 0) to b (alpha 1), alpha (W, 1): the global orientation along
    the geodesic, everything else linearly. -> {name: (W, k)}."""
    out = {k: a[k][None] + alpha * (b[k] - a[k])[None] for k in a if k != "global_orient"}
    ra, rb = axis_angle_to_matrix(a["global_orient"]), axis_angle_to_matrix(b["global_orient"])
    step = matrix_to_axis_angle(rb @ ra.transpose(-1, -2))  # the turn from a to b, in the camera frame
    out["global_orient"] = matrix_to_axis_angle(axis_angle_to_matrix(alpha * step[None]) @ ra)
    return out
