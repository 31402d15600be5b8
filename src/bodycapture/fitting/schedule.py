"""The fitting schedule as data: per-stage weights and optimiser settings, and how to load them.

Defaults are SMPLify-X's `cfg_files/fit_smplx.yaml` (Pavlakos et al. 2019): five stages whose prior
weights anneal while the hand and face keypoints are switched on in the last two. Weights follow the
code's convention: the data, pose, shape, expression, hand and jaw weights are squared in the loss, the
bending and collision weights are not. A config file (YAML or TOML) may use SMPLify-X's own key names
(`body_pose_prior_weights`, `shape_weights`, ...), so its yaml files load as they are.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..collision.parts import DEFAULT_IGNORED_PAIRS
from ..collision.penalty import CollisionSettings
from ..errors import BodyCaptureError
from .lbfgs import LBFGSSettings

__all__ = ["Stage", "FitConfig", "load_config", "smplx_stages", "smpl_stages"]


@dataclass
class Stage:
    """Weights of one stage (paper notation in brackets)."""

    body_pose: float  # body pose prior, squared [lambda_theta_b]
    shape: float  # shape prior, squared [lambda_beta]
    expression: float  # expression prior, squared [lambda_E]
    hand_pose: float  # hand pose prior, squared [lambda_m_h]
    jaw: tuple[float, float, float]  # jaw prior per axis (x opens the mouth), squared [lambda_theta_f]
    hand_joints: float  # weight of the hand keypoints in the data term
    face_joints: float  # weight of the face keypoints in the data term
    collision: float = 0.0  # interpenetration, not squared [lambda_C]
    data: float = 1.0  # data term, squared
    world: float = 0.0  # bone directions from the detector's 3D landmarks, squared (ours; objective.py)
    anchor_pose: bool = False  # set by the fitter for the first `anchor_stages` stages (FitConfig)
    max_iter: int | None = None  # L-BFGS iterations of this stage; None: FitConfig.optimizer.max_iter
    # ours: L-BFGS iterations run first without the collision term, on the keypoint-only model (cheap),
    # before the stage's own `max_iter` (with it). Lets the keypoints converge where iterations cost little
    settle_iter: int = 0

    @property
    def bending(self) -> float:
        """SMPLify-X's bending prior weight: 3.17 x the body pose weight, not squared (0.317 x 10 of SMPLify)."""
        return 3.17 * self.body_pose


# Weight of the 3D bone-direction term (ours; only where the detector gave 3D landmarks). Measured on the
# first 30 people of the ten-pose suite with simulated landmarks: 0 -> 100.6 mm mean PA-v2v, 30 -> 72.5,
# 60 -> 68.6; on the 14 real photos 60 cost well-fitted people up to 2.6 px of 2D agreement and 30 about
# none (docs/fitting.md, "Robust fitting"): MediaPipe's 3D and 2D disagree more than the simulation's, so 30.
WORLD_WEIGHT = 30.0


# The body-pose prior weights are SMPLify-X's times this factor (ours; the bending prior, 3.17 x the body
# pose weight, follows). Our VPoser's latent is closer to N(0, I) than it was (tools/train_vposer.py,
# KL_WEIGHT) and a pose costs less |z|^2; measured 2026-11-30, n = 100, seed 0, from 2D keypoints:
# factor 1 -> 2: ten poses 77.6 -> 75.1 mm PA-v2v, 2 -> 1 failures; motion capture 56.1 -> 56.9 mm,
# 1 -> 0 failures (docs/fitting.md, Robust fitting)
BODY_POSE_FACTOR = 2.0


def smplx_stages() -> list[Stage]:
    """fit_smplx.yaml's five stages, but for the interpenetration weight of stage 4 (see below) and the body-pose
    prior weights (x BODY_POSE_FACTOR)."""
    pose = [404.0, 404.0, 57.4, 4.78, 4.78]
    shape = [100.0, 50.0, 10.0, 5.0, 5.0]
    expr = [100.0, 50.0, 10.0, 5.0, 5.0]
    hands = [0.0, 0.0, 0.0, 0.1, 2.0]
    face = [0.0, 0.0, 0.0, 0.0, 2.0]
    # fit_smplx.yaml: [0, 0, 0, 0.01, 1]. Measured (docs/fitting.md, ablations.py --only-collision, n = 60): the 0.01
    # stage changes neither PA-v2v (110.2 vs 109.7 mm) nor much the intersections (25.4 vs 27.4 pairs)
    # and costs 30 % of the fit time, so it is off; `coll_loss_weights: [0, 0, 0, 0.01, 1]` restores it.
    coll = [0.0, 0.0, 0.0, 0.0, 1.0]
    # L-BFGS iterations: FitConfig.optimizer's 60 in stages 0-3, SMPLify-X's 30 in the last (the collision
    # stage poses the whole mesh: 60 there doubled the time per person for 93.8 instead of 99.0 mm; docs/evaluation.md)
    iters = [None, None, None, None, 30]
    # ...but first up to 150 without the collision term on the keypoint-only model: the hand and face points
    # switched on in this stage pull the body off its keypoints, and 30 iterations did not bring it back
    # (ten-pose suite, body residual against the input 9.9 px, the noise alone 4.6; docs/fitting.md)
    settle = [0, 0, 0, 0, 150]
    return [
        Stage(BODY_POSE_FACTOR * pose[i], shape[i], expr[i], pose[i], (10 * pose[i], 100 * pose[i], 100 * pose[i]),
              hands[i], face[i], coll[i], world=WORLD_WEIGHT, max_iter=iters[i], settle_iter=settle[i])
        for i in range(5)
    ]


def smpl_stages() -> list[Stage]:
    """fit_smpl.yaml's four stages (= SMPLify 2016's schedule): body keypoints only (body-pose prior weights x
    BODY_POSE_FACTOR, as for SMPL-X)."""
    pose = [404.0, 404.0, 57.4, 4.78]
    shape = [100.0, 50.0, 10.0, 5.0]
    coll = [0.0, 0.0, 0.01, 1.0]
    return [Stage(BODY_POSE_FACTOR * pose[i], shape[i], shape[i], pose[i], (0.0, 0.0, 0.0), 0.0, 0.0, coll[i],
                  world=WORLD_WEIGHT) for i in range(4)]


MAX_WEIGHT = 1e8  # the largest weight a config may give (SMPLify-X's largest default is 4.04e4)


@dataclass
class FitConfig:
    """Everything a fit needs besides the model and the keypoints."""

    stages: list[Stage] = field(default_factory=smplx_stages)
    # 60 L-BFGS iterations per stage without their own max_iter (SMPLify-X's config: 30; smplx_stages keeps
    # 30 in the last): measured 2026-11-30, n = 100, ten-pose suite 102.1 -> 99.0 mm PA-v2v and 12 -> 9
    # failures for 1.3x the time per person (docs/fitting.md, Robust fitting)
    optimizer: LBFGSSettings = field(default_factory=lambda: LBFGSSettings(max_iter=60))
    camera_optimizer: LBFGSSettings = field(default_factory=lambda: LBFGSSettings(max_iter=40))
    # camera
    focal_length: float | None = None  # pixels; None: from EXIF, else the image diagonal (see camera.py)
    depth_weight: float = 100.0  # keeps the depth near its similar-triangles estimate (SMPLify-X: 100), squared
    side_view_threshold: float = 25.0  # shoulder distance (px) under which both orientations are fitted (SMPLify-X)
    # hypotheses (start.py): the starts of each person, fitted together; after stage `prune_after_stage`
    # only each person's best goes on (-1: all run to the end). Default: the 3D-landmark start where the
    # detector gave landmarks, else SMPLify-X's (the shoulders' orientation, both for side views)
    starts: tuple[str, ...] = ("side", "world")
    prune_after_stage: int = 2
    pose_starts_kept: int = 2  # "poses" starts: the best this many per person after the camera stage go on
    # after stage `prune_after_stage`, copies of each person's fit with a limb, both thighs or the trunk
    # mirrored in depth run one stage beside it, and the best goes on (start.depth_flips)
    depth_flips: bool = True
    # the first `anchor_stages` body stages measure the pose prior from each item's start rather than from the
    # prior's mean (for the mean-pose starts the same thing): their high prior weights would otherwise pull
    # every start back to the mean pose before the 2D evidence can choose between them
    anchor_stages: int = 2
    optimize_translation: bool = True  # also in the body stages (SMPLify-X freezes it after the camera stage)
    # data term
    rho: float = 100.0  # Geman-McClure scale, in pixels of a 1000-pixel-high image (SMPLify-X: 100 px)
    robust_per_coordinate: bool = False  # SMPLify-X's code robustifies x and y separately; we robustify |r|
    use_face_contour: bool = False  # SMPLify-X's default: the 17 jaw-line points are not fitted
    ignore_keypoints: tuple[str, ...] = ("Neck", "RHip", "LHip")  # SMPLify-X's joints_to_ign
    use_confidence: bool = True
    pose_prior: str = "vposer"  # body-pose prior: "vposer" (ours, trained on CMU mocap), "gmm" or "l2"
    # interpenetration (the stages' `collision` weights): None = on when the model has hands
    interpenetration: bool | None = None
    collision: CollisionSettings = field(default_factory=CollisionSettings)  # SMPLify-X fit_smplx.yaml values
    ignored_part_pairs: tuple = DEFAULT_IGNORED_PAIRS  # part pairs that touch by design (joint names or ids)

    def validate(self, source: str = "config") -> "FitConfig":
        """Every value finite, of the right kind and in a sane range, or a BodyCaptureError naming it.
        Weights may be 0 (a term switched off) up to MAX_WEIGHT; NaN, infinities and 1e30 are refused."""
        def number(name, value, lo, hi, integer=False):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or not lo <= value <= hi or (integer and value != int(value)):
                kind = "an integer" if integer else "a number"
                raise BodyCaptureError(f"{source}: {name} must be {kind} in [{lo:g}, {hi:g}], got {value!r}")

        if not self.stages:
            raise BodyCaptureError(f"{source}: the schedule has no stages")
        for i, st in enumerate(self.stages):
            for name in ("body_pose", "shape", "expression", "hand_pose", "hand_joints", "face_joints", "collision",
                         "data", "world"):
                number(f"stage {i} {name} weight", getattr(st, name), 0.0, MAX_WEIGHT)
            if len(st.jaw) != 3:
                raise BodyCaptureError(f"{source}: stage {i} jaw weights must be 3 numbers, got {st.jaw!r}")
            for w in st.jaw:
                number(f"stage {i} jaw weight", w, 0.0, MAX_WEIGHT)
            if st.max_iter is not None:
                number(f"stage {i} max_iter", st.max_iter, 0, 100_000, integer=True)
            number(f"stage {i} settle_iter", st.settle_iter, 0, 100_000, integer=True)
        if self.focal_length is not None:
            number("focal_length", self.focal_length, 1e-3, 1e7)
        number("depth_weight", self.depth_weight, 0.0, MAX_WEIGHT)
        number("side_view_threshold", self.side_view_threshold, 0.0, 1e6)
        number("rho", self.rho, 1e-6, 1e6)
        for label, opt in (("optimizer", self.optimizer), ("camera optimizer", self.camera_optimizer)):
            number(f"{label} max_iter", opt.max_iter, 0, 100_000, integer=True)
            number(f"{label} history", opt.history, 1, 1_000, integer=True)
            for name in ("ftol", "gtol", "xtol"):
                number(f"{label} {name}", getattr(opt, name), 0.0, 1e6)
        c = self.collision
        number("df_cone_height", c.sigma, 0.0, 10.0)
        number("max_collisions", c.max_collisions, 1, 100_000, integer=True)
        number("collision_exponent", c.exponent, 1, 8, integer=True)
        from .start import START_KINDS

        if not self.starts or any(k not in START_KINDS for k in self.starts):
            raise BodyCaptureError(f"{source}: starts must be some of {', '.join(START_KINDS)}, got {self.starts!r}")
        number("prune_after_stage", self.prune_after_stage, -1, len(self.stages), integer=True)
        number("pose_starts_kept", self.pose_starts_kept, 1, 64, integer=True)
        number("anchor_stages", self.anchor_stages, 0, len(self.stages), integer=True)
        if self.pose_prior not in ("vposer", "gmm", "l2"):
            raise BodyCaptureError(f"{source}: pose_prior must be 'vposer', 'gmm' or 'l2', not {self.pose_prior!r}")
        return self

    def uses_collision(self, model) -> bool:
        """Whether a fit of `model` computes the interpenetration term."""
        wanted = bool(model.family.hand_parts) if self.interpenetration is None else self.interpenetration
        return wanted and any(st.collision > 0 for st in self.stages)

    def summary(self) -> str:
        """A human-readable table of the schedule (for `bodycapture fit --show-config`)."""
        head = f"{'stage':>5} {'pose':>7} {'shape':>7} {'expr':>7} {'hands':>7} {'jaw (x, y, z)':>24} " \
               f"{'hand kp':>8} {'face kp':>8} {'bend':>8} {'coll':>6}"
        lines = [head]
        for i, st in enumerate(self.stages):
            jaw = ", ".join(f"{w:g}" for w in st.jaw)
            lines.append(f"{i:>5} {st.body_pose:>7g} {st.shape:>7g} {st.expression:>7g} {st.hand_pose:>7g} "
                         f"{jaw:>24} {st.hand_joints:>8g} {st.face_joints:>8g} {st.bending:>8.1f} {st.collision:>6g}")
        o = self.optimizer
        iters = ", ".join((f"{st.settle_iter}+" if st.settle_iter else "") + str(o.max_iter if st.max_iter is None
                          else st.max_iter) for st in self.stages)
        lines.append(f"L-BFGS (strong Wolfe): max {iters} iterations in the stages (a+b: a without the collision "
                     f"term first), history {o.history}, "
                     f"ftol {o.ftol:g}, gtol {o.gtol:g}; camera stage max {self.camera_optimizer.max_iter}")
        focal = "EXIF, else image diagonal" if self.focal_length is None else f"{self.focal_length:g} px"
        lines.append(f"camera: focal {focal}; depth weight {self.depth_weight:g}; side-view threshold "
                     f"{self.side_view_threshold:g} px; translation optimised in body stages: {self.optimize_translation}")
        lines.append(f"body-pose prior: {self.pose_prior}")
        flips = ", with copies of it flipped in depth for one stage" if self.depth_flips else ""
        lines.append(f"starts: {', '.join(self.starts)} (start.py); after stage {self.prune_after_stage} only each "
                     f"person's best goes on{flips}"
                     f"; prior anchored at the start in the first {self.anchor_stages} stages; "
                     f"3D bone-direction weights {', '.join(f'{st.world:g}' for st in self.stages)}")
        c = self.collision
        on = {None: "on for models with hands", True: "on", False: "off"}[self.interpenetration]
        lines.append(f"interpenetration: {on}; cone height {c.sigma:g} m, penalise outside {c.penalize_outside}, "
                     f"max {c.max_collisions} pairs per triangle, exponent {c.exponent}, "
                     f"{len(self.ignored_part_pairs)} ignored part pairs")
        lines.append(f"data: Geman-McClure rho {self.rho:g} (per {'coordinate' if self.robust_per_coordinate else 'point'}), "
                     f"confidences {'on' if self.use_confidence else 'off'}, face contour "
                     f"{'on' if self.use_face_contour else 'off'}, ignored: {', '.join(self.ignore_keypoints)}")
        return "\n".join(lines)


_STAGE_KEYS = {  # SMPLify-X yaml key -> Stage field
    "body_pose_prior_weights": "body_pose",
    "shape_weights": "shape",
    "expr_weights": "expression",
    "hand_pose_prior_weights": "hand_pose",
    "jaw_pose_prior_weights": "jaw",
    "hand_joints_weights": "hand_joints",
    "face_joints_weights": "face_joints",
    "coll_loss_weights": "collision",
    "data_weights": "data",
    "world_weights": "world",
    "stage_maxiters": "max_iter",
    "stage_settle_iters": "settle_iter",
}
_SCALAR_KEYS = {  # SMPLify-X name or ours -> FitConfig field
    "focal_length": "focal_length", "depth_loss_weight": "depth_weight", "depth_weight": "depth_weight",
    "side_view_thsh": "side_view_threshold", "side_view_threshold": "side_view_threshold", "rho": "rho",
    "use_face_contour": "use_face_contour", "robust_per_coordinate": "robust_per_coordinate",
    "optimize_translation": "optimize_translation", "use_joints_conf": "use_confidence",
}  # fmt: skip
_STRING_KEYS = {"pose_prior": "pose_prior"}
_SCALAR_KEYS.update(prune_after_stage="prune_after_stage", pose_starts_kept="pose_starts_kept",
                    anchor_stages="anchor_stages", depth_flips="depth_flips")
_COLLISION_KEYS = {  # SMPLify-X name or ours -> CollisionSettings field
    "df_cone_height": "sigma", "penalize_outside": "penalize_outside", "max_collisions": "max_collisions",
    "point2plane": "point2plane", "collision_exponent": "exponent",
}  # fmt: skip
_OPTIMIZER_KEYS = {"maxiters": "max_iter", "max_iter": "max_iter", "ftol": "ftol", "gtol": "gtol", "history": "history"}
_IGNORED = {"dataset", "model_type", "gender", "float_dtype", "use_cuda", "use_hands", "use_face", "use_pca",
            "num_pca_comps", "flat_hand_mean", "num_gaussians", "body_prior_type", "left_hand_prior_type",
            "right_hand_prior_type", "jaw_prior_type", "optim_type", "lr", "interactive", "visualize", "use_vposer",
            "vposer_ckpt", "batch_size", "max_persons", "init_joints_idxs", "body_tri_idxs", "output_folder",
            "data_folder", "model_folder", "part_segm_fn", "result_folder", "mesh_folder", "save_meshes"}  # fmt: skip


def _parse_jaw(value) -> tuple[float, float, float]:
    if isinstance(value, str):  # SMPLify-X writes "4.04e03,4.04e04,4.04e04"
        value = [float(v) for v in value.split(",")]
    if isinstance(value, (int, float)):
        value = [value] * 3
    return tuple(float(v) for v in value)


def _parse_part_pairs(value, source: str) -> tuple:
    """SMPLify-X writes ["9,16", "9,17", ...] (joint ids); we also take [["spine3", "left_shoulder"], ...]."""
    pairs = []
    for item in value:
        parts = [p.strip() for p in item.split(",")] if isinstance(item, str) else list(item)
        if len(parts) != 2:
            raise BodyCaptureError(f"{source}: ign_part_pairs entry {item!r} is not a pair")
        pairs.append(tuple(int(p) if isinstance(p, int) or str(p).isdigit() else str(p) for p in parts))
    return tuple(pairs)


def config_from_dict(data: dict, source: str = "<config>") -> FitConfig:
    """A FitConfig from a mapping of SMPLify-X or bodycapture keys; every value is checked (`validate`)."""
    try:
        return _config_from_dict(data, source).validate(source)
    except (TypeError, ValueError, OverflowError, AttributeError) as err:  # a string, a list, a mapping...
        raise BodyCaptureError(f"{source}: a setting has the wrong type ({type(err).__name__}: {err})") from None


def _config_from_dict(data: dict, source: str) -> FitConfig:
    cfg = FitConfig()
    unknown = [k for k in data if k not in _STAGE_KEYS and k not in _SCALAR_KEYS and k not in _OPTIMIZER_KEYS
               and k not in _IGNORED and k not in _STRING_KEYS and k not in _COLLISION_KEYS
               and k not in ("interpenetration", "ign_part_pairs", "starts")]
    if unknown:
        raise BodyCaptureError(f"{source}: unknown setting(s) {', '.join(sorted(unknown))}")
    lists = {k: v for k, v in data.items() if k in _STAGE_KEYS and v is not None}
    for key, values in lists.items():
        if not isinstance(values, (list, tuple)) or not 1 <= len(values) <= 20:
            raise BodyCaptureError(f"{source}: {key} must be a list of 1 to 20 per-stage values")
    if lists:
        lengths = {len(v) for v in lists.values()}
        if len(lengths) != 1:
            raise BodyCaptureError(f"{source}: per-stage lists have different lengths {sorted(lengths)}")
        n = lengths.pop()
        last = cfg.stages[-1]  # another number of stages: each like the last, which alone settles first
        base = cfg.stages if len(cfg.stages) == n else [
            dataclasses.replace(last, settle_iter=last.settle_iter if i == n - 1 else 0) for i in range(n)]
        stages = [dataclasses.replace(st) for st in base[:n]]
        for key, values in lists.items():
            name = _STAGE_KEYS[key]
            for st, v in zip(stages, values):
                integer = name in ("max_iter", "settle_iter")
                setattr(st, name, _parse_jaw(v) if name == "jaw" else int(v) if integer else float(v))
        if "jaw_pose_prior_weights" not in lists and "body_pose_prior_weights" in lists:
            for st in stages:  # SMPLify-X then derives the jaw weights from the pose weights' scale
                st.jaw = (10 * st.body_pose, 100 * st.body_pose, 100 * st.body_pose)
        cfg.stages = stages
    for key, name in _SCALAR_KEYS.items():
        if key in data and data[key] is not None:
            setattr(cfg, name, bool(data[key]) if isinstance(getattr(cfg, name), bool) else float(data[key]))
    if data.get("starts") is not None:
        if not isinstance(data["starts"], (list, tuple)) or not all(isinstance(k, str) for k in data["starts"]):
            raise BodyCaptureError(f"{source}: starts must be a list of names, e.g. [shoulders, side, world]")
        cfg.starts = tuple(data["starts"])
    if "pose_prior" in data:
        if data["pose_prior"] not in ("vposer", "gmm", "l2"):
            raise BodyCaptureError(f"{source}: pose_prior must be 'vposer', 'gmm' or 'l2', not {data['pose_prior']!r}")
        cfg.pose_prior = data["pose_prior"]
    if data.get("interpenetration") is not None:
        cfg.interpenetration = bool(data["interpenetration"])
    for key, name in _COLLISION_KEYS.items():
        if data.get(key) is not None:
            setattr(cfg.collision, name, type(getattr(cfg.collision, name))(data[key]))
    if data.get("ign_part_pairs") is not None:
        cfg.ignored_part_pairs = _parse_part_pairs(data["ign_part_pairs"], source)
    for key, name in _OPTIMIZER_KEYS.items():
        if key in data:
            setattr(cfg.optimizer, name, type(getattr(cfg.optimizer, name))(data[key]))
    if any(k in data for k in ("maxiters", "max_iter")) and "stage_maxiters" not in lists:
        for st in cfg.stages:  # SMPLify-X's maxiters is every stage's
            st.max_iter = None
    return cfg


def load_config(path: str | Path) -> FitConfig:
    """Read a YAML (.yaml/.yml) or TOML (.toml) fitting configuration."""
    path = Path(path)
    if not path.is_file():
        raise BodyCaptureError(f"{path}: no such config file")
    if path.stat().st_size > 1_000_000:
        raise BodyCaptureError(f"{path}: over 1 MB, not a fitting configuration")
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(path.read_text())
        else:
            import yaml

            data = yaml.safe_load(path.read_text()) or {}
    except Exception as err:  # yaml / toml syntax errors of every kind
        raise BodyCaptureError(f"{path}: not a valid config file ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict):
        raise BodyCaptureError(f"{path}: expected a mapping of settings")
    return config_from_dict(data, str(path))
