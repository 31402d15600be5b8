"""The SMPLify-X fitter: a camera / orientation stage, then annealed stages, all batched.

Every person of every image is one item of the batch. People whose shoulders are closer than
`side_view_threshold` pixels in the image (a side view, where front and back are ambiguous) get two
items, one per orientation, and keep the better after the last stage (SMPLify-X runs the two fits one
after the other). The initial orientation of the others follows the image: a person whose left shoulder
is on the image's left is facing away. Each stage minimises every item's own objective with the batched
L-BFGS of lbfgs.py, so a converged person stops changing while the others go on.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..collision import CollisionTerm
from ..keypoints.layout import BODY_25, CAMERA_INIT, CONTOUR, GROUPS, MIN_BODY_POINTS, NAMES, NUM_KEYPOINTS
from ..keypoints.regressors import KeypointRegressor
from ..keypoints.types import ImageKeypoints
from ..models.body_model import BodyModel
from ..models.lbs import axis_angle_to_matrix, matrix_to_axis_angle
from ..priors import PosePrior, bending_prior, make_pose_prior
from .camera import Camera, default_focal, initial_translation
from .lbfgs import minimize
from .losses import data_term, jaw_prior, keypoint_weights, l2
from .schedule import FitConfig, smpl_stages

__all__ = ["fit", "FitResult"]

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    """Fitted people (P = total number of people over the images given).

    params: SMPL-X-named parameters, each (P, n), on the CPU (body_pose decoded to axis-angle; hand poses
        as the model takes them: PCA coefficients or axis-angle). transl is the camera translation.
    vertices (P, V, 3), joints (P, J, 3): camera space (metres, OpenCV axes: x right, y down, z forward).
    keypoints_2d: (P, 135, 2) the model's keypoints projected into the image.
    focal, center: (P, 2) the camera of each person. image_index: (P,) which input image each came from.
    stages: per stage, dict with the final value of every loss term (P,), iterations (P,), evaluations,
        seconds; stages with the interpenetration term also have collisions (P,) (colliding triangle pairs
        at the end of the stage) and collision_seconds (time spent in search + penalty).
        flipped: (P,) whether the kept orientation faces away from the camera. two_orientations:
        (P,) whether both orientations were tried. recovered: (P,) a stage could not start from a finite
        loss and was rolled back. loss: (P,) final total loss.
    """

    params: dict[str, Tensor]
    vertices: Tensor
    joints: Tensor
    keypoints_2d: Tensor
    focal: Tensor
    center: Tensor
    image_index: Tensor
    image_size: Tensor
    stages: list[dict] = field(default_factory=list)
    flipped: Tensor | None = None
    two_orientations: Tensor | None = None
    recovered: Tensor | None = None
    loss: Tensor | None = None
    seconds: float = 0.0
    faces: np.ndarray | None = None

    @property
    def num_people(self) -> int:
        return self.vertices.shape[0]

    def save(self, folder, people=None, keypoints: ImageKeypoints | None = None, image: np.ndarray | None = None,
             formats=("obj",), model_info: dict | None = None, overwrite: bool = False):
        """Write `people` (indices; default: all) as one image's result folder, atomically: params.npz,
        result.pkl, meshes in `formats`, keypoints.json and overlay.png (over `image`, else grey).
        See io/results.py. Returns the folder's path."""
        from ..io.results import save_result

        return save_result(folder, self, people, keypoints, image, formats, model_info, overwrite)


class _Packer:
    """Flattens a dict of (N, k) tensors into one (N, n) vector and back."""

    def __init__(self, sizes: dict[str, int]):
        self.names = list(sizes)
        self.sizes = [sizes[k] for k in self.names]

    def pack(self, params: dict[str, Tensor]) -> Tensor:
        return torch.cat([params[k].reshape(params[k].shape[0], -1) for k in self.names], 1)

    def unpack(self, x: Tensor) -> dict[str, Tensor]:
        return dict(zip(self.names, torch.split(x, self.sizes, dim=1)))


def _pick(t: Tensor, rows: Tensor | None) -> Tensor:
    """The items `rows` of a per-item tensor (all of them for None): for partial objective evaluations."""
    return t if rows is None else t.index_select(0, rows)


def _rot_x_pi(n: int, dtype, device) -> Tensor:
    return torch.tensor([[math.pi, 0.0, 0.0]], dtype=dtype, device=device).expand(n, 3)


def _as_batch(keypoints, image_size) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points (P, 135, 3), image sizes (P, 2) as (H, W), image index (P,)) from what `fit` accepts."""
    if isinstance(keypoints, ImageKeypoints):
        keypoints = [keypoints]
    if isinstance(keypoints, (list, tuple)) and keypoints and isinstance(keypoints[0], ImageKeypoints):
        points, sizes, owner = [], [], []
        for i, kp in enumerate(keypoints):
            size = kp.image_size or image_size
            if size is None:
                raise ValueError(f"keypoints of image {i} ({kp.source}) have no image size; pass image_size=(H, W)")
            points.append(kp.points)
            sizes += [size] * kp.num_people
            owner += [i] * kp.num_people
        return np.concatenate(points), np.asarray(sizes, dtype=np.float64).reshape(-1, 2), np.asarray(owner)
    points = np.asarray(keypoints, dtype=np.float64).reshape(-1, NUM_KEYPOINTS, 3)
    if image_size is None:
        raise ValueError("pass image_size=(H, W) with raw keypoint arrays")
    sizes = np.broadcast_to(np.asarray(image_size, dtype=np.float64).reshape(-1, 2), (len(points), 2))
    return points, np.array(sizes), np.arange(len(points))


def _check_inputs(points: np.ndarray, sizes: np.ndarray) -> None:
    """Refuse what cannot give a meaningful fit: non-finite keypoints, image sizes that are not positive,
    people with (almost) no detected body keypoints (all-zero confidences used to fit a default body 3 m
    away without a word)."""
    from ..errors import BodyCaptureError

    if not np.isfinite(points).all():
        raise BodyCaptureError("keypoints hold NaN or infinite values")
    if not (np.isfinite(sizes).all() and (sizes >= 1).all()):
        raise BodyCaptureError(f"image sizes must be positive (H, W) in pixels, got {sizes[~(sizes >= 1).all(1)][0]}")
    seen = (points[:, :25, 2] > 0).sum(1)
    few = np.nonzero(seen < MIN_BODY_POINTS)[0]
    if len(few):
        raise BodyCaptureError(f"person {few[0]} has {seen[few[0]]} detected body keypoints; at least "
                               f"{MIN_BODY_POINTS} are needed to fit")


@dataclass
class ObjectiveContext:
    """What the body stages' objective needs; `terms` gives every loss term per item (N,)."""

    model: BodyModel
    regressor: KeypointRegressor
    camera: Camera
    pose_prior: PosePrior
    config: FitConfig
    target: Tensor  # (N, 135, 2)
    confidence: Tensor  # (N, 135)
    base_weights: Tensor  # (135,)
    image_height: Tensor  # (N,)
    depth0: Tensor  # (N,)
    fixed_transl: Tensor  # (N, 3), used when the translation is not optimised
    hand_components: dict
    collision: CollisionTerm | None = None  # None: no interpenetration term in this fit

    def body_params(self, p: dict, rows: Tensor | None = None) -> dict:
        """Optimised variables (of the items `rows`, None: all) -> the model's parameters (latent decoded)."""
        out = {k: v for k, v in p.items() if k != "pose_latent"}
        out["body_pose"] = self.pose_prior.decode_rotations(p["pose_latent"])  # axis-angle or (B, N, 3, 3)
        if "transl" not in out:
            out["transl"] = _pick(self.fixed_transl, rows)
        return out

    def terms(self, p: dict, stage, rows: Tensor | None = None) -> dict[str, Tensor]:
        """Every term per item; `rows` (R,): p holds only those items of the batch (None: all)."""
        cfg, dtype, dev = self.config, self.target.dtype, self.target.device
        pick = lambda t: _pick(t, rows)  # noqa: E731
        params = self.body_params(p, rows)
        out = self.model(**params)
        camera = Camera(pick(self.camera.focal), pick(self.camera.center))
        proj = camera.project(self.regressor(out))
        w = keypoint_weights(pick(self.confidence), self.base_weights, GROUPS, stage.hand_joints, stage.face_joints)
        terms = {"data": stage.data**2 * data_term(proj, pick(self.target), w, pick(self.image_height), cfg.rho,
                                                   cfg.robust_per_coordinate)}
        terms["body_pose"] = stage.body_pose**2 * self.pose_prior.penalty(p["pose_latent"])
        terms["bending"] = stage.bending * bending_prior(params["body_pose"])
        terms["shape"] = stage.shape**2 * l2(p["betas"])
        if "expression" in p:
            terms["expression"] = stage.expression**2 * l2(p["expression"])
        hands = [h for h in ("left_hand_pose", "right_hand_pose") if h in p]
        if hands:
            hand_aa = [p[h] @ self.hand_components[h] if h in self.hand_components else p[h] for h in hands]
            terms["hand_pose"] = stage.hand_pose**2 * sum(l2(h) for h in hand_aa)
        if "jaw_pose" in p:
            terms["jaw"] = jaw_prior(p["jaw_pose"], torch.tensor(stage.jaw, dtype=dtype, device=dev))
        if self.collision is not None and stage.collision > 0:  # not squared (SMPLify-X)
            penalty, _ = self.collision(out.vertices)
            terms["collision"] = stage.collision * penalty
        if "transl" in p:
            terms["depth"] = cfg.depth_weight**2 * (p["transl"][:, 2] - pick(self.depth0)).square()
        return terms


def fit(
    keypoints,
    model: BodyModel | None = None,
    config: FitConfig | None = None,
    image_size: tuple[int, int] | None = None,
    device: str | torch.device | None = None,
    focal_length: float | np.ndarray | None = None,
    pose_prior: PosePrior | None = None,
    progress: Callable[[str], None] | None = None,
) -> FitResult:
    """Fit `model` (default: the bundled open model) to 2D keypoints.

    keypoints: an `ImageKeypoints` (all its people are fitted), a list of them (many images at once),
        or an array (P, 135, 3) with `image_size`.
    focal_length: pixels, one value or one per person; default: config.focal_length, else the image
        diagonal (see camera.default_focal).
    progress: called with each stage's name when the stage ends (e.g. to move a progress bar).
    """
    start = time.perf_counter()
    if model is None:
        from ..models.zoo import load_model

        model = load_model(device=device)
    if model.family.name in ("mano", "flame"):
        from ..errors import BodyCaptureError

        raise BodyCaptureError(f"{model.path or 'model'}: a {model.family.display} model has no body; fitting needs "
                               "SMPL, SMPL-H or SMPL-X (or the bundled open model)")
    if config is None:  # SMPLify's four body-only stages for SMPL, SMPLify-X's five for the others
        config = FitConfig(stages=smpl_stages()) if model.family.name == "smpl" else FitConfig()
    config.validate()
    if device is not None:
        model = model.to(device)
    dtype, dev = model.v_template.dtype, model.v_template.device
    points_np, sizes_np, owner_np = _as_batch(keypoints, image_size)
    P = len(points_np)
    if P == 0:
        raise ValueError("no people to fit")
    _check_inputs(points_np, sizes_np)
    kp = torch.as_tensor(points_np, dtype=dtype, device=dev)
    sizes = torch.as_tensor(sizes_np, dtype=dtype, device=dev)
    if focal_length is None:
        focal_length = config.focal_length
    if focal_length is None:
        focal = torch.tensor([default_focal(h, w) for h, w in sizes_np], dtype=dtype, device=dev)
    else:
        focal = torch.as_tensor(np.broadcast_to(np.asarray(focal_length, dtype=np.float64).reshape(-1), (P,)).copy(),
                                dtype=dtype, device=dev)
    focal = focal[:, None].expand(P, 2).contiguous()
    center = sizes.flip(1) / 2  # (W/2, H/2)

    regressor = KeypointRegressor(model)
    pose_prior = pose_prior or make_pose_prior(config.pose_prior, model.parameter_sizes()["body_pose"])

    # ---- orientation candidates
    b = BODY_25.index
    ls, rs = kp[:, b("LShoulder")], kp[:, b("RShoulder")]
    both = (ls[:, 2] > 0) & (rs[:, 2] > 0)
    dx = ls[:, 0] - rs[:, 0]  # > 0: the subject's left is on the image's right, i.e. facing the camera
    ambiguous = ~both | (dx.abs() < config.side_view_threshold)
    away_first = both & (dx < 0)
    owner = torch.cat([torch.arange(P, device=dev), torch.nonzero(ambiguous).flatten()])
    flipped = torch.cat([away_first, ~away_first[ambiguous]])
    N = len(owner)
    kp_n, sizes_n, focal_n, center_n = kp[owner], sizes[owner], focal[owner], center[owner]
    camera = Camera(focal_n, center_n)
    facing = axis_angle_to_matrix(_rot_x_pi(N, dtype, dev))  # upright, facing the camera
    turn = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi], dtype=dtype, device=dev)).expand(N, 3, 3)
    orient0 = matrix_to_axis_angle(torch.where(flipped[:, None, None], turn @ facing, facing))

    # ---- per-keypoint base weights: available in this model, not ignored, contour only if asked
    base = regressor.mask.to(dtype).clone()
    for name in config.ignore_keypoints:
        base[NAMES.index(name)] = 0.0
    if not config.use_face_contour:
        base[CONTOUR] = 0.0
    conf = kp_n[..., 2] if config.use_confidence else (kp_n[..., 2] > 0).to(dtype)
    target = kp_n[..., :2]

    # ---- camera / orientation stage
    zeros = model.zero_parameters(N)
    with torch.no_grad():
        mean_pose = pose_prior.decode(pose_prior.init_latent(N, dtype, dev))  # the prior's mean pose
        rest = model(global_orient=orient0, body_pose=mean_pose)
        rest_kp = regressor(rest)[:, :25]
        transl0 = initial_translation(kp_n, rest_kp, focal_n, center_n)
    depth0 = transl0[:, 2]
    cam_idx = torch.as_tensor(CAMERA_INIT, device=dev)
    cam_w = (kp_n[:, cam_idx, 2] > 0).to(dtype)
    few = cam_w.sum(1) < 4  # a torso point is missing (e.g. hips out of frame): use every detected body point
    body_w = (kp_n[:, :25, 2] > 0).to(dtype) * base[:25]
    stage_log = []

    cam_pack = _Packer({"global_orient": 3, "transl": 3})

    cam_weights = torch.where(few[:, None], body_w, torch.zeros_like(body_w).index_copy(1, cam_idx, cam_w))

    def camera_objective(x: Tensor, rows: Tensor | None):
        pick = lambda t: _pick(t, rows)  # noqa: E731
        x = x.detach().requires_grad_(True)
        p = cam_pack.unpack(x)
        out = model(global_orient=p["global_orient"], transl=p["transl"], body_pose=pick(mean_pose))
        proj = Camera(pick(focal_n), pick(center_n)).project(regressor(out)[:, :25])
        res = (proj - pick(target)[:, :25]) * (1000.0 / pick(sizes_n)[:, 0])[:, None, None]
        sq = res.square().sum(-1)
        f = (pick(cam_weights) * sq).sum(1) + config.depth_weight**2 * (p["transl"][:, 2] - pick(depth0)).square()
        (g,) = torch.autograd.grad(f.sum(), x)
        return f.detach(), g

    t0 = time.perf_counter()
    res = minimize(camera_objective, cam_pack.pack({"global_orient": orient0, "transl": transl0}),
                   config.camera_optimizer, partial=True)
    cam = cam_pack.unpack(res.x)
    stage_log.append({"name": "camera", "iterations": res.iterations.cpu(), "evaluations": res.evaluations,
                      "seconds": time.perf_counter() - t0, "terms": {"total": res.f.cpu()}})
    if progress is not None:
        progress("camera")
    recovered = res.failed.clone()

    # ---- body stages
    sizes_body = dict(model.parameter_sizes())
    free = {"betas": sizes_body["betas"], "global_orient": 3, "pose_latent": pose_prior.latent_size}
    for name in ("left_hand_pose", "right_hand_pose", "jaw_pose", "expression"):
        if name in sizes_body:
            free[name] = sizes_body[name]
    if config.optimize_translation:
        free["transl"] = 3
    pack = _Packer(free)
    state = {k: zeros[k].clone() for k in free if k in zeros}
    state["pose_latent"] = pose_prior.init_latent(N, dtype, dev)
    state["global_orient"] = cam["global_orient"].detach()
    state["transl"] = cam["transl"].detach()
    fixed_transl = cam["transl"].detach()
    hands = [p for p in ("left_hand_pose", "right_hand_pose") if p in free]
    hand_comps = {p: getattr(model, f"{p}_components") for p in hands} if model.use_pca else {}

    collision = None
    if config.uses_collision(model):
        collision = CollisionTerm.for_model(model, config.collision, config.ignored_part_pairs)
    ctx = ObjectiveContext(model, regressor, camera, pose_prior, config, target, conf, base, sizes_n[:, 0],
                           depth0, fixed_transl, hand_comps, collision)
    body_params, terms_for = ctx.body_params, ctx.terms

    for index, stage in enumerate(config.stages):
        def objective(x: Tensor, rows: Tensor | None, stage=stage):
            x = x.detach().requires_grad_(True)
            f = sum(terms_for(pack.unpack(x), stage, rows).values())
            (g,) = torch.autograd.grad(f.sum(), x)
            return f.detach(), g

        t0 = time.perf_counter()
        if collision is not None:
            collision.seconds = 0.0
        x0 = pack.pack(state)
        res = minimize(objective, x0, config.optimizer, partial=True)
        recovered |= res.failed
        state = pack.unpack(res.x)
        with torch.no_grad():
            final_terms = {k: v.cpu() for k, v in terms_for(state, stage).items()}
        final_terms["total"] = sum(final_terms.values())
        entry = {"name": f"stage {index}", "iterations": res.iterations.cpu(), "evaluations": res.evaluations,
                 "seconds": time.perf_counter() - t0, "terms": final_terms}
        if collision is not None and stage.collision > 0:  # final_terms' evaluation ran the term last
            entry["collisions"] = collision.last_counts.cpu()  # colliding pairs at the end of the stage
            entry["collision_seconds"] = collision.seconds
        stage_log.append(entry)
        if progress is not None:
            progress(entry["name"])
        log.info("stage %d: %d evaluations, %.2f s, mean loss %.4g%s", index, res.evaluations, entry["seconds"],
                 float(final_terms["total"].mean()),
                 f"; collision term {entry['collision_seconds']:.2f} s, {float(entry['collisions'].float().mean()):.1f}"
                 " colliding pairs per person" if "collisions" in entry else "")

    # ---- keep the better orientation per person
    final = stage_log[-1]["terms"]["total"].to(dev)
    final = torch.where(torch.isfinite(final), final, torch.full_like(final, float("inf")))
    best_loss = torch.full((P,), float("inf"), dtype=dtype, device=dev).scatter_reduce(0, owner, final, "amin")
    candidate = torch.where(final <= best_loss[owner], torch.arange(N, device=dev), torch.full_like(owner, N))
    best = torch.full((P,), N, dtype=torch.long, device=dev).scatter_reduce(0, owner, candidate, "amin")
    with torch.no_grad():
        params = body_params({k: v[best] for k, v in state.items()})
        out = model(**params)
        if params["body_pose"].dim() == 4:  # results carry axis-angle, as SMPL-X files do
            params["body_pose"] = matrix_to_axis_angle(params["body_pose"]).reshape(P, -1)
        proj = Camera(focal, center).project(regressor(out))
    result_params = {k: v.detach().cpu() for k, v in params.items()}
    for k in ("leye_pose", "reye_pose"):
        if k in model.parameter_sizes():
            result_params[k] = torch.zeros(P, 3)
    stages = [{**s, "iterations": s["iterations"][best.cpu()],
               "terms": {k: v[best.cpu()] for k, v in s["terms"].items()},
               **({"collisions": s["collisions"][best.cpu()]} if "collisions" in s else {})} for s in stage_log]
    return FitResult(
        params=result_params,
        vertices=out.vertices.detach().cpu(),
        joints=out.joints.detach().cpu(),
        keypoints_2d=proj.detach().cpu(),
        focal=focal.cpu(),
        center=center.cpu(),
        image_index=torch.as_tensor(owner_np),
        image_size=sizes.cpu(),
        stages=stages,
        flipped=flipped[best].cpu(),
        two_orientations=ambiguous.cpu(),
        recovered=recovered[best].cpu(),
        loss=best_loss.cpu(),
        seconds=time.perf_counter() - start,
        faces=model.faces,
    )
