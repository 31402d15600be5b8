"""The SMPLify-X fitter: starts, a camera / orientation stage, then annealed stages, all batched.

`fit()` is the whole job in five steps, each a function of its own:
1. `_as_batch` / `_check_inputs`: what the caller gave -> people (P, 135, 3), image sizes, focal lengths;
2. `start.make_starts`: several starts per person (start.py), N >= P batch items in all;
3. `_camera_stage`: orientation and translation of each item with its start pose fixed;
4. `_body_stage` per stage of the schedule: every variable, the objective of objective.py, batched L-BFGS
   (lbfgs.py: a converged item stops changing while the others go on); after `prune_after_stage` only each
   person's best item goes on;
5. `_finish`: each person keeps its item with the lowest final objective; its quality is assessed
   (quality.py).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..collision import CollisionTerm
from ..keypoints.layout import CAMERA_INIT, CONTOUR, MIN_BODY_POINTS, NAMES, NUM_KEYPOINTS
from ..keypoints.regressors import KeypointRegressor, keypoint_model
from ..keypoints.types import ImageKeypoints
from ..models.body_model import BodyModel
from ..models.lbs import axis_angle_to_matrix, matrix_to_axis_angle
from ..priors import PosePrior, make_pose_prior
from .camera import Camera, default_focal, initial_translation
from .lbfgs import LBFGSResult, minimize
from .losses import data_term
from .objective import Objective, Targets, pca_hand_components
from .quality import FitQuality, assess
from .schedule import FitConfig, Stage, smpl_stages
from .start import Starts, depth_flips, make_starts, turned_away, world_landmark_start

__all__ = ["fit", "FitResult", "StageReport"]

log = logging.getLogger(__name__)


@dataclass
class StageReport:
    """One stage of a fit, per person (P,) once the fit is done (per batch item while it runs).

    terms: the final value of every term and 'total'; iterations: L-BFGS iterations (a stage's settle_iter
    included); evaluations and seconds: for the whole batch; items: batch items (starts) still running in
    this stage; collisions: colliding triangle pairs at the end (stages with the interpenetration term) and
    collision_seconds, the time spent in its search and penalty."""

    name: str
    terms: dict[str, Tensor]
    iterations: Tensor
    evaluations: int
    seconds: float
    items: int
    collisions: Tensor | None = None
    collision_seconds: float = 0.0

    def take(self, rows: Tensor) -> "StageReport":
        rows = rows.cpu()
        return StageReport(self.name, {k: v[rows] for k, v in self.terms.items()}, self.iterations[rows],
                           self.evaluations, self.seconds, self.items,
                           None if self.collisions is None else self.collisions[rows], self.collision_seconds)


@dataclass
class FitResult:
    """Fitted people (P = total number of people over the images given).

    params: SMPL-X-named parameters, each (P, n), on the CPU (body_pose decoded to axis-angle; hand poses
        as the model takes them: PCA coefficients or axis-angle). transl is the camera translation.
    vertices (P, V, 3), joints (P, J, 3): camera space (metres, OpenCV axes: x right, y down, z forward).
    keypoints_2d: (P, 135, 2) the model's keypoints projected into the image.
    focal, center: (P, 2) the camera of each person. image_index: (P,) which input image each came from.
    stages: a StageReport per stage (the camera stage first), per person.
    flipped: (P,) whether the kept start faced away from the camera. two_orientations: (P,) whether both
        orientations were tried. start: (P,) the kind of start kept (start.py); starts: (P,) how many were
        tried. recovered: (P,) a stage could not start from a finite loss and was rolled back. loss: (P,)
        final objective. quality: residuals, prior energy, collisions and the doubtful flag (quality.py).
    """

    params: dict[str, Tensor]
    vertices: Tensor
    joints: Tensor
    keypoints_2d: Tensor
    focal: Tensor
    center: Tensor
    image_index: Tensor
    image_size: Tensor
    stages: list[StageReport] = field(default_factory=list)
    flipped: Tensor | None = None
    two_orientations: Tensor | None = None
    recovered: Tensor | None = None
    loss: Tensor | None = None
    quality: FitQuality | None = None
    start: list[str] = field(default_factory=list)
    starts: Tensor | None = None
    seconds: float = 0.0
    faces: np.ndarray | None = None
    pose_latent: Tensor | None = None  # (P, L) the pose prior's latent of each person (to warm-start a fit)

    @property
    def num_people(self) -> int:
        return self.vertices.shape[0]

    @property
    def seconds_per_person(self) -> float:
        """The fitting time shared out over the people fitted together (one batch)."""
        return self.seconds / max(self.num_people, 1)

    def save(self, folder, people=None, keypoints: ImageKeypoints | None = None, image: np.ndarray | None = None,
             formats=("obj",), model_info: dict | None = None, overwrite: bool = False, report: bool = True):
        """Write `people` (indices; default: all) as one image's result folder, atomically: params.npz,
        result.pkl, meshes in `formats`, keypoints.json, overlay.png (over `image`, else grey) and
        report.html (unless not `report`). See io/results.py. Returns the folder's path."""
        from ..io.results import save_result

        return save_result(folder, self, people, keypoints, image, formats, model_info, overwrite, report)


class _Packer:
    """Flattens a dict of (N, k) tensors into one (N, n) vector and back."""

    def __init__(self, sizes: dict[str, int]):
        self.names = list(sizes)
        self.sizes = [sizes[k] for k in self.names]

    def pack(self, params: dict[str, Tensor]) -> Tensor:
        return torch.cat([params[k].reshape(params[k].shape[0], -1) for k in self.names], 1)

    def unpack(self, x: Tensor) -> dict[str, Tensor]:
        return dict(zip(self.names, torch.split(x, self.sizes, dim=1)))


def _as_batch(keypoints, image_size) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(points (P, 135, 3), image sizes (P, 2) as (H, W), image index (P,), world landmarks (P, 25, 4) or
    None) from what `fit` accepts. People of images without world landmarks get zero confidences."""
    if isinstance(keypoints, ImageKeypoints):
        keypoints = [keypoints]
    if isinstance(keypoints, (list, tuple)) and keypoints and isinstance(keypoints[0], ImageKeypoints):
        points, sizes, owner, world = [], [], [], []
        for i, kp in enumerate(keypoints):
            size = kp.image_size or image_size
            if size is None:
                raise ValueError(f"keypoints of image {i} ({kp.source}) have no image size; pass image_size=(H, W)")
            points.append(kp.points)
            sizes += [size] * kp.num_people
            owner += [i] * kp.num_people
            has_world = kp.world is not None and len(kp.world) == kp.num_people
            world.append(np.asarray(kp.world, dtype=np.float64) if has_world else np.zeros((kp.num_people, 25, 4)))
        world = np.concatenate(world)
        world = world if (world[..., 3] > 0).any() else None
        return (np.concatenate(points), np.asarray(sizes, dtype=np.float64).reshape(-1, 2), np.asarray(owner),
                world)
    points = np.asarray(keypoints, dtype=np.float64).reshape(-1, NUM_KEYPOINTS, 3)
    if image_size is None:
        raise ValueError("pass image_size=(H, W) with raw keypoint arrays")
    sizes = np.broadcast_to(np.asarray(image_size, dtype=np.float64).reshape(-1, 2), (len(points), 2))
    return points, np.array(sizes), np.arange(len(points)), None


def _check_inputs(points: np.ndarray, sizes: np.ndarray, world: np.ndarray | None = None) -> None:
    """Refuse what cannot give a meaningful fit: non-finite keypoints, image sizes that are not positive,
    people with (almost) no detected body keypoints (all-zero confidences used to fit a default body 3 m
    away without a word)."""
    from ..errors import BodyCaptureError

    if not np.isfinite(points).all():
        raise BodyCaptureError("keypoints hold NaN or infinite values")
    if world is not None and not np.isfinite(world).all():
        raise BodyCaptureError("3D (world) landmarks hold NaN or infinite values")
    if not (np.isfinite(sizes).all() and (sizes >= 1).all()):
        raise BodyCaptureError(f"image sizes must be positive (H, W) in pixels, got {sizes[~(sizes >= 1).all(1)][0]}")
    seen = (points[:, :25, 2] > 0).sum(1)
    few = np.nonzero(seen < MIN_BODY_POINTS)[0]
    if len(few):
        raise BodyCaptureError(f"person {few[0]} has {seen[few[0]]} detected body keypoints; at least "
                               f"{MIN_BODY_POINTS} are needed to fit")


def _focal_lengths(focal_length, config: FitConfig, sizes_np: np.ndarray, dtype, dev) -> Tensor:
    """(P, 2) focal lengths: the caller's (one or one per person), else the config's, else the diagonal."""
    P = len(sizes_np)
    if focal_length is None:
        focal_length = config.focal_length
    if focal_length is None:
        focal = torch.tensor([default_focal(h, w) for h, w in sizes_np], dtype=dtype, device=dev)
    else:
        focal = torch.as_tensor(np.broadcast_to(np.asarray(focal_length, dtype=np.float64).reshape(-1), (P,)).copy(),
                                dtype=dtype, device=dev)
    return focal[:, None].expand(P, 2).contiguous()


def _base_weights(regressor: KeypointRegressor, config: FitConfig, dtype) -> Tensor:
    """(135,) per-keypoint base weights: available in this model, not ignored, contour only if asked."""
    base = regressor.mask.to(dtype).clone()
    for name in config.ignore_keypoints:
        base[NAMES.index(name)] = 0.0
    if not config.use_face_contour:
        base[CONTOUR] = 0.0
    return base


def turned_about_root(local: Tensor, root: Tensor, global_orient: Tensor, transl: Tensor) -> Tensor:
    """Points of bodies posed with a zero root rotation, given relative to the root joint `local` (N, K, 3),
    as the model poses them with root rotation `global_orient` (N, 3) axis-angle and translation `transl`
    (N, 3): R local + root + transl, with `root` (N, 3) the root joint (which the rotation leaves in place)."""
    return local @ axis_angle_to_matrix(global_orient).transpose(1, 2) + (root + transl)[:, None]


def _camera_stage(model: BodyModel, regressor: KeypointRegressor, keypoints: Tensor, targets: Targets,
                  orient0: Tensor, pose: Tensor, transl0: Tensor, base: Tensor, config: FitConfig):
    """Orientation and translation of every item (N,) with its start pose `pose` fixed, on the torso
    keypoints (every detected body point when a torso point is missing, e.g. hips out of frame).
    Returns (global_orient (N, 3), transl (N, 3), StageReport, failed (N,))."""
    dtype = keypoints.dtype
    cam_idx = torch.as_tensor(CAMERA_INIT, device=keypoints.device)
    cam_w = (keypoints[:, cam_idx, 2] > 0).to(dtype)
    few = cam_w.sum(1) < 4
    body_w = (keypoints[:, :25, 2] > 0).to(dtype) * base[:25]
    weights = torch.where(few[:, None], body_w, torch.zeros_like(body_w).index_copy(1, cam_idx, cam_w))
    pack = _Packer({"global_orient": 3, "transl": 3})
    # the pose is fixed here, so the body is posed once: its 25 points relative to the root joint, which the
    # root's rotation turns about (LBS: every point moves by T(J_0) R T(-J_0)); an evaluation then costs a
    # rotation instead of the whole kinematic chain
    with torch.no_grad():
        rest = model(body_pose=pose)
        root = rest.joints[:, 0]  # (N, 3) the root joint, where the rotation leaves it
        local = regressor(rest)[:, :25] - root[:, None]  # (N, 25, 3)

    def objective(x: Tensor, rows: Tensor | None):
        pick = (lambda t: t) if rows is None else (lambda t: t.index_select(0, rows))  # noqa: E731
        t = targets.take(rows)
        x = x.detach().requires_grad_(True)
        p = pack.unpack(x)
        proj = t.camera.project(turned_about_root(pick(local), pick(root), p["global_orient"], p["transl"]))
        res = (proj - t.points[:, :25]) * (1000.0 / t.image_height)[:, None, None]
        f = (pick(weights) * res.square().sum(-1)).sum(1) + config.depth_weight**2 * (p["transl"][:, 2] - t.depth0).square()
        (g,) = torch.autograd.grad(f.sum(), x)
        return f.detach(), g

    t0 = time.perf_counter()
    res = minimize(objective, pack.pack({"global_orient": orient0, "transl": transl0}), config.camera_optimizer,
                   partial=True)
    cam = pack.unpack(res.x)
    report = StageReport("camera", {"total": res.f.cpu()}, res.iterations.cpu(), res.evaluations,
                         time.perf_counter() - t0, len(res.x))
    return cam["global_orient"].detach(), cam["transl"].detach(), report, res.failed


def _screen_pose_starts(model: BodyModel, regressor: KeypointRegressor, starts: Starts, orient: Tensor,
                        transl: Tensor, pose: Tensor, targets: Targets, base: Tensor, config: FitConfig) -> Tensor:
    """Indices of the items that go on to the body stages: every start but the "poses" ones, of which
    each person keeps the `pose_starts_kept` whose body keypoints, after the camera stage, are nearest to
    the detections (the robust data term of the body points)."""
    is_pose = torch.tensor([k == "poses" for k in starts.kind], dtype=torch.bool, device=orient.device)
    if not bool(is_pose.any()):
        return torch.arange(len(starts), device=orient.device)
    with torch.no_grad():
        proj = targets.camera.project(regressor(model(global_orient=orient, transl=transl, body_pose=pose)))
        w = targets.confidence[:, :25] * base[:25]
        cost = data_term(proj[:, :25], targets.points[:, :25], w, targets.image_height, config.rho)
    cost = torch.where(is_pose & torch.isfinite(cost), cost, torch.full_like(cost, float("inf")))
    keep = ~is_pose
    order = torch.argsort(cost)  # the best pose starts first, then group by person (stable)
    ranked = order[torch.argsort(starts.owner[order], stable=True)]
    owners = starts.owner[ranked]
    first = torch.searchsorted(owners, owners)  # where each person's run starts in `ranked`
    rank = torch.arange(len(ranked), device=orient.device) - first
    chosen = ranked[(rank < config.pose_starts_kept) & is_pose[ranked] & torch.isfinite(cost[ranked])]
    keep[chosen] = True
    return torch.nonzero(keep).flatten()


def _body_stage(objective: Objective, pack: _Packer, state: dict[str, Tensor], stage: Stage, targets: Targets,
                config: FitConfig, name: str):
    """One stage of the schedule for every item: -> (new state, StageReport, failed (N,)). A stage with
    `settle_iter` first runs that many iterations without its collision term (on the keypoint-only model);
    then only the items whose mesh intersects itself run the stage's own iterations with the term."""
    stats: dict = {}
    N = len(targets.focal)

    def function(st: Stage, held: dict | None = None, search: bool = True):
        """The stage's objective for `minimize`. With `held`, the collision term is measured on held["pairs"]
        (every item's colliding pairs) and a `search` evaluation finds them anew and keeps them there."""
        def fun(x: Tensor, rows: Tensor | None):
            x = x.detach().requires_grad_(True)
            pairs = None
            if held is not None and not search:
                pairs = held["pairs"] if rows is None else held["pairs"].select(rows, N)
            f = sum(objective.terms(pack.unpack(x), st, targets.take(rows), stats, pairs).values())
            if held is not None and search:
                found = stats["pairs"]
                held["pairs"] = found if rows is None else held["pairs"].replace(rows, found)
            (g,) = torch.autograd.grad(f.sum(), x)
            return f.detach(), g

        return fun

    t0 = time.perf_counter()
    x, iterations, evaluations = pack.pack(state), 0, 0
    final = None  # the terms at the stage's end, where already evaluated there
    failed = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    if stage.settle_iter > 0:
        settings = dataclasses.replace(config.optimizer, max_iter=stage.settle_iter)
        settle = minimize(function(dataclasses.replace(stage, collision=0.0)), x, settings, partial=True)
        x, iterations, evaluations, failed = settle.x, settle.iterations, settle.evaluations, settle.failed
    settings = config.optimizer if stage.max_iter is None else dataclasses.replace(config.optimizer, max_iter=stage.max_iter)
    if objective.collision is not None and stage.collision > 0:
        # the colliding pairs are found at each iterate and held through its line search: the penalty of a
        # pair appears at full strength when two triangles start to intersect, and with pairs searched at
        # every trial the searches stalled on that jump after a few iterations (docs/fitting.md, Interpenetration)
        held: dict = {"pairs": None}
        colliding = None
        if stage.settle_iter > 0:  # settled: the term has work only where the mesh intersects itself
            colliding, terms = _colliding(objective, pack.unpack(x), stage, targets, stats)
            evaluations += 1
        if colliding is not None and not bool(colliding.any()):
            none = torch.zeros(len(x), dtype=torch.long, device=x.device)
            res = LBFGSResult(x, x.new_zeros(len(x)), none, 0, none == 0, none != 0)  # nothing to do
            final = terms  # the stage ends where that search was made
        else:
            res = minimize(function(stage, held, search=False), x, settings, active=colliding, partial=True,
                           refresh=function(stage, held, search=True))
    else:
        res = minimize(function(stage), x, settings, partial=True)
    state = pack.unpack(res.x)
    if final is None:
        stats.pop("collisions", None)
        with torch.no_grad():  # the final evaluation: its terms, and the colliding pairs left at the end
            final = objective.terms(state, stage, targets, stats)
    terms = {k: v.cpu() for k, v in final.items()}
    terms["total"] = sum(terms.values())
    collisions = stats["collisions"].cpu() if "collisions" in stats else None
    report = StageReport(name, terms, (res.iterations + iterations).cpu(), res.evaluations + evaluations,
                         time.perf_counter() - t0, len(res.x), collisions, stats.get("collision_seconds", 0.0))
    log.info("%s: %d items, %d evaluations, %.2f s, mean loss %.4g%s", name, len(res.x), report.evaluations,
             report.seconds, float(terms["total"].mean()),
             f"; collision term {report.collision_seconds:.2f} s, {float(collisions.float().mean()):.1f} colliding "
             "pairs per item" if collisions is not None else "")
    return state, report, res.failed | failed


def _colliding(objective: Objective, p: dict[str, Tensor], stage: Stage, targets: Targets,
               stats: dict) -> tuple[Tensor, dict[str, Tensor]]:
    """Whether each item's whole mesh, posed by `p`, has colliding triangle pairs (one search, no gradient):
    -> ((N,) bool, the terms there)."""
    with torch.no_grad():
        terms = objective.terms(p, stage, targets, stats)
    return stats["collisions"].to(targets.points.device) > 0, terms


def _add_depth_flips(objective: Objective, starts: Starts, alive: Tensor, state: dict[str, Tensor], targets: Targets,
                     failed: Tensor):
    """Each running item's copies with a limb, both thighs or the trunk mirrored in depth (start.depth_flips;
    not for items with 3D landmarks, whose 3D term knows the depth order), posed by inverse kinematics on
    the flipped points and appended as new items (new starts of the same person, the rest of their state
    copied). -> (starts, alive, state, targets, failed) extended."""
    model, regressor = objective.keypoint_model or objective.model, objective.keypoint_regressor or objective.regressor
    blind = torch.nonzero(targets.world_confidence.sum(1) == 0).flatten()  # the items without 3D landmarks
    if not len(blind):
        return starts, alive, state, targets, failed
    with torch.no_grad():
        points = regressor(model(**objective.body_params({k: v[blind] for k, v in state.items()},
                                                         targets.take(blind))))[:, :25]
    flipped, source, names = depth_flips(points)
    if not len(source):
        return starts, alive, state, targets, failed
    source = blind[source]  # rows of the running items
    world = torch.cat([flipped, torch.ones_like(flipped[..., :1])], -1)
    orient, latent = world_landmark_start(world, model, regressor, objective.pose_prior)
    parent = alive[source]
    kinds = [f"{starts.kind[i]}, {name} flipped" for i, name in zip(parent.tolist(), names)]
    new = Starts(starts.owner[parent], orient, latent, turned_away(orient), kinds)
    copies = {k: v[source].clone() for k, v in state.items()}
    copies.update(global_orient=orient, pose_latent=latent)
    state = {k: torch.cat([v, copies[k]]) for k, v in state.items()}
    alive = torch.cat([alive, len(starts) + torch.arange(len(source), device=alive.device)])
    targets = targets.take(torch.cat([torch.arange(len(targets.points), device=source.device), source]))
    return starts.extended(new), alive, state, targets, torch.cat([failed, failed[parent]])


def _best_per_person(owner: Tensor, loss: Tensor, people: int) -> Tensor:
    """(people,) the index of each person's item with the lowest loss (non-finite losses lose; ties: the
    first item, i.e. the earlier start kind)."""
    loss = torch.where(torch.isfinite(loss), loss, torch.full_like(loss, float("inf")))
    best = torch.full((people,), float("inf"), dtype=loss.dtype, device=loss.device).scatter_reduce(
        0, owner, loss, "amin")
    n = len(owner)
    candidate = torch.where(loss <= best[owner], torch.arange(n, device=owner.device), torch.full_like(owner, n))
    return torch.full((people,), n, dtype=torch.long, device=owner.device).scatter_reduce(0, owner, candidate, "amin")


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

    keypoints: an `ImageKeypoints` (all its people are fitted; its `world` landmarks, when the detector gave
        them, add a 3D-informed start), a list of them (many images at once), or an array (P, 135, 3)
        with `image_size`.
    focal_length: pixels, one value or one per person; default: config.focal_length, else the image
        diagonal (see camera.default_focal).
    device: where to fit; a model elsewhere is copied there (the caller's model is left where it was).
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
    if device is not None and torch.device(device) != model.v_template.device:
        model = copy.deepcopy(model).to(device)
    dtype, dev = model.v_template.dtype, model.v_template.device
    points_np, sizes_np, owner_np, world_np = _as_batch(keypoints, image_size)
    P = len(points_np)
    if P == 0:
        raise ValueError("no people to fit")
    _check_inputs(points_np, sizes_np, world_np)
    kp = torch.as_tensor(points_np, dtype=dtype, device=dev)
    sizes = torch.as_tensor(sizes_np, dtype=dtype, device=dev)
    world = None if world_np is None else torch.as_tensor(world_np, dtype=dtype, device=dev)
    focal = _focal_lengths(focal_length, config, sizes_np, dtype, dev)
    center = sizes.flip(1) / 2  # (W/2, H/2)
    regressor = KeypointRegressor(model)
    fast_model, fast_regressor = keypoint_model(model, regressor)  # same keypoints, ~10x cheaper: no mesh
    pose_prior = pose_prior or make_pose_prior(config.pose_prior, model.parameter_sizes()["body_pose"])
    base = _base_weights(regressor, config, dtype)

    # ---- starts: N items, several per person
    starts = make_starts(kp, world, fast_model, fast_regressor, pose_prior, config.starts, config.side_view_threshold)
    owner = starts.owner
    kp_n = kp[owner]
    with torch.no_grad():
        start_pose = pose_prior.decode(starts.pose_latent)
        start_kp = fast_regressor(fast_model(global_orient=starts.global_orient, body_pose=start_pose))[:, :25]
        transl0 = initial_translation(kp_n, start_kp, focal[owner], center[owner])
    N = len(owner)
    world_n = world[owner] if world is not None else kp.new_zeros(N, 25, 4)
    conf = kp_n[..., 2] if config.use_confidence else (kp_n[..., 2] > 0).to(dtype)
    targets = Targets(kp_n[..., :2], conf, sizes[owner, 0], focal[owner], center[owner], transl0[:, 2], transl0,
                      world_n[..., :3], world_n[..., 3].clamp(0, 1), starts.pose_latent)

    # ---- camera stage, then only the best "poses" starts of each person go on
    orient, transl, cam_report, failed = _camera_stage(fast_model, fast_regressor, kp_n, targets, starts.global_orient,
                                                       start_pose, transl0, base, config)
    targets.fixed_transl = transl
    alive = _screen_pose_starts(fast_model, fast_regressor, starts, orient, transl, start_pose, targets, base, config)
    reports = [cam_report]
    rows = [torch.arange(N, device=dev)]  # which items each stage ran
    if progress is not None:
        progress("camera")

    # ---- body stages
    sizes_body = dict(model.parameter_sizes())
    free = {"betas": sizes_body["betas"], "global_orient": 3, "pose_latent": pose_prior.latent_size}
    for name in ("left_hand_pose", "right_hand_pose", "jaw_pose", "expression"):
        if name in sizes_body:
            free[name] = sizes_body[name]
    if config.optimize_translation:
        free["transl"] = 3
    pack = _Packer(free)
    zeros = model.zero_parameters(N)
    state = {k: zeros[k].clone() for k in free if k in zeros}
    state.update(pose_latent=starts.pose_latent.clone(), global_orient=orient, transl=transl)
    state = {k: v[alive] for k, v in state.items()}
    targets = targets.take(alive)
    hand_comps = pca_hand_components(model)
    collision = None
    if config.uses_collision(model):
        collision = CollisionTerm.for_model(model, config.collision, config.ignored_part_pairs)
    objective = Objective(model, regressor, pose_prior, config, base, hand_comps, collision, fast_model, fast_regressor)
    for index, stage in enumerate(config.stages):  # `alive`: the items still running, indices into the N starts
        stage = dataclasses.replace(stage, anchor_pose=index < config.anchor_stages)
        state, report, stage_failed = _body_stage(objective, pack, state, stage, targets, config, f"stage {index}")
        failed[alive] |= stage_failed
        reports.append(report)
        rows.append(alive)
        if progress is not None:
            progress(report.name)
        last = index == len(config.stages) - 1  # after the last stage _finish chooses
        prune = int(config.prune_after_stage)
        if prune >= 0 and index in (prune, prune + 1) and len(alive) > P and not last:  # each person's best goes on
            keep = _best_per_person(starts.owner[alive], report.terms["total"].to(dev), P)
            alive, targets = alive[keep], targets.take(keep)
            state = {k: v[keep] for k, v in state.items()}
        if prune >= 0 and index == prune and config.depth_flips and not last:  # copies, a limb flipped in depth
            starts, alive, state, targets, failed = _add_depth_flips(objective, starts, alive, state, targets, failed)
    return _finish(model, regressor, pose_prior, objective, kp, focal, center, sizes, owner_np, starts, alive,
                   state, targets, reports, rows, failed, time.perf_counter() - start)


def _finish(model, regressor, pose_prior, objective, kp, focal, center, sizes, owner_np, starts: Starts,
            alive: Tensor, state: dict, targets: Targets, reports: list[StageReport], rows: list[Tensor],
            failed: Tensor, seconds: float) -> FitResult:
    """Each person's best item (lowest final objective), as a FitResult with per-person stage reports."""
    P, dev = len(kp), kp.device
    chosen = _best_per_person(starts.owner[alive], reports[-1].terms["total"].to(dev), P)  # rows of `alive`
    item = alive[chosen]  # (P,) index into the starts
    with torch.no_grad():
        params = objective.body_params({k: v[chosen] for k, v in state.items()}, targets.take(chosen))
        out = model(**params)
        if params["body_pose"].dim() == 4:  # results carry axis-angle, as SMPL-X files do
            params["body_pose"] = matrix_to_axis_angle(params["body_pose"]).reshape(P, -1)
        proj = Camera(focal, center).project(regressor(out))
        prior_energy = pose_prior.penalty(state["pose_latent"][chosen])
    result_params = {k: v.detach().cpu() for k, v in params.items()}
    for k in ("leye_pose", "reye_pose"):
        if k in model.parameter_sizes():
            result_params[k] = torch.zeros(P, 3)
    position = torch.full((len(starts),), -1, dtype=torch.long)
    per_person = []
    for report, ran in zip(reports, rows):  # each stage's row of every person's kept item
        position[ran.cpu()] = torch.arange(len(ran))
        per_person.append(report.take(position[item.cpu()]))
    ambiguous_kinds = torch.tensor([k in ("side", "turned") for k in starts.kind], dtype=torch.bool)
    tried_turned = torch.zeros(P, dtype=torch.bool).index_put_((starts.owner.cpu(),), ambiguous_kinds, accumulate=True)
    loss = reports[-1].terms["total"][chosen.cpu()]
    quality = assess(kp, proj, prior_energy, per_person[-1].collisions, failed[item].cpu(),
                     check_prior=pose_prior.name == "vposer")
    return FitResult(
        params=result_params,
        vertices=out.vertices.detach().cpu(),
        joints=out.joints.detach().cpu(),
        keypoints_2d=proj.detach().cpu(),
        focal=focal.cpu(),
        center=center.cpu(),
        image_index=torch.as_tensor(owner_np),
        image_size=sizes.cpu(),
        stages=per_person,
        flipped=starts.flipped[item].cpu(),
        two_orientations=tried_turned,
        recovered=failed[item].cpu(),
        loss=loss,
        seconds=seconds,
        faces=model.faces,
        quality=quality,
        start=[starts.kind[i] for i in item.tolist()],
        starts=torch.bincount(starts.owner.cpu(), minlength=P),
        pose_latent=state["pose_latent"][chosen].detach().cpu(),
    )
