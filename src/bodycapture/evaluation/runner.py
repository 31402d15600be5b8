"""Running the fitter on a benchmark and scoring it: the synthetic suite, or a folder laid out like EHF.

Every summary is over all people: means and medians include the failures, and the failure count and rate
stand beside them (a mean over the successes alone hides wrong minima). Scores per person, in millimetres
unless said otherwise: PA-v2v of the whole mesh and of its body, hand
and face regions (each region Procrustes-aligned on its own, as EHF-style tables do), PA-MPJPE of the 22
body joints, the 2D error of the fitted keypoints against the true (noiseless) projections, the time per
person, failures (a non-finite fit, or a whole-mesh PA-v2v above 200 mm), and the number of
self-intersecting triangle pairs of the fitted mesh (collision/search.py, part pairs that touch by
design excluded; reported as a count, not in mm).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import BodyCaptureError
from ..fitting.schedule import FitConfig
from ..keypoints.layout import BODY, NAMES, REPORT_GROUPS
from ..models.body_model import BodyModel
from .metrics import pa_mpjpe, pixel_error, v2v
from .synthetic import NoiseModel, generate

__all__ = ["LANDMARKS_3D", "vertex_regions", "score", "intersecting_pairs", "evaluate_synthetic", "evaluate_folder", "summary_table", "FAILURE_MM"]

FAILURE_MM = 200.0
# The detector error model with MediaPipe-like metric 3D landmarks (BODY_25 about the hips; 3 cm noise
# across the image, 6 cm in depth, twice that for hidden points): `bodycapture eval --landmarks3d`.
LANDMARKS_3D = NoiseModel(world_sigma=(0.03, 0.03, 0.06))


def vertex_regions(model: BodyModel) -> dict[str, torch.Tensor]:
    """(V,) bool masks: 'hands' (vertices whose strongest joint is a wrist or finger), 'face' (strongest
    joint head, jaw or eye, and in front of the head joint), 'body' (the rest)."""
    names = model.joint_names
    strongest = model.lbs_weights.argmax(1)
    hand_joints = [i for i, n in enumerate(names) if n.endswith("wrist") or any(
        f in n for f in ("index", "middle", "ring", "pinky", "thumb"))]
    head_joints = [i for i, n in enumerate(names) if n in ("head", "jaw") or "eye" in n]
    hands = torch.isin(strongest, torch.tensor(hand_joints))
    rest = model()
    head_z = rest.joints[0, names.index("head"), 2] if "head" in names else 0.0
    face = torch.isin(strongest, torch.tensor(head_joints)) & (rest.vertices[0, :, 2] > head_z)
    return {"hands": hands.cpu(), "face": face.cpu(), "body": (~hands & ~face).cpu()}


def intersecting_pairs(model: BodyModel, vertices: torch.Tensor) -> np.ndarray:
    """(P,) self-intersecting triangle pairs of each mesh (P, V, 3) of `model`'s topology."""
    from ..collision import CollisionTerm

    term = CollisionTerm.for_model(model)
    verts = vertices.to(model.v_template)
    finite = torch.nonzero(torch.isfinite(verts).all(2).all(1)).flatten()  # failed fits count 0
    counts = torch.zeros(len(verts), dtype=torch.long, device=verts.device)
    counts[finite] = term.search(verts[finite]).counts(len(finite))
    return counts.cpu().numpy().astype(np.float64)


def score(model: BodyModel, result, true_vertices, true_joints, true_kp2d, available,
          detected: np.ndarray | None = None, ignored: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Per-person scores of a FitResult against the truth (camera space); with `detected` (P, 135, 3),
    the keypoints the fit was given, also `input_px_body`: the mean distance in pixels of the fitted body
    keypoints to the detected ones (how well the fit explains its own input: over the detected body points
    but the `ignored` ones, those the fit gives no weight, by default SMPLify-X's neck and hips), and
    `noise_px_body`: the same distance for the true keypoints, i.e. the noise that was added (what a
    perfect fit would score; 3 px per axis give 3.8 px on visible points, hidden points have 3x that)."""
    pred_v, true_v = result.vertices.double(), true_vertices.double()
    regions = vertex_regions(model)
    scores = {"pa_v2v_all": v2v(pred_v, true_v)}
    for name, mask in regions.items():
        if mask.any():
            scores[f"pa_v2v_{name}"] = v2v(pred_v, true_v, region=mask)
    scores["pa_mpjpe_body"] = pa_mpjpe(result.joints[:, :22].double(), true_joints[:, :22].double())
    avail = available.bool()
    for group, idx in REPORT_GROUPS.items():
        m = avail[:, idx]
        scores[f"px_{group}"] = pixel_error(result.keypoints_2d[:, idx].double(), true_kp2d[:, idx].double(), m)
    out = {k: (v * (1 if k.startswith("px") else 1000)).numpy() for k, v in scores.items()}
    if detected is not None:
        fitted = np.array([NAMES[i] not in ignored for i in BODY])
        seen = (detected[:, BODY, 2] > 0) & avail[:, BODY].numpy() & fitted
        dist = np.linalg.norm(result.keypoints_2d[:, BODY].double().numpy() - detected[:, BODY, :2], axis=-1)
        out["input_px_body"] = (dist * seen).sum(1) / np.maximum(seen.sum(1), 1)
        noise = np.linalg.norm(true_kp2d[:, BODY].double().numpy() - detected[:, BODY, :2], axis=-1)
        out["noise_px_body"] = (noise * seen).sum(1) / np.maximum(seen.sum(1), 1)
    out["intersecting_pairs"] = intersecting_pairs(model, result.vertices)
    finite = torch.isfinite(result.vertices).all(2).all(1).numpy()
    out["failed"] = ~finite | (out["pa_v2v_all"] > FAILURE_MM)
    return out


@dataclass
class EvalReport:
    suite: str
    per_person: dict[str, np.ndarray]
    seconds_per_person: float
    n: int

    @property
    def failures(self) -> int:
        return int(self.per_person["failed"].sum())

    def to_dict(self) -> dict:
        """Means and medians over **all** people, failures included (a failed fit counts with its error, it is
        not left out), with the failure count and rate beside them."""
        scores = {k: v for k, v in self.per_person.items() if k != "failed"}
        return {"suite": self.suite, "n": self.n, "failures": self.failures, "failure_rate": self.failures / self.n,
                "failure_threshold_mm": FAILURE_MM, "seconds_per_person": self.seconds_per_person,
                "mean": {k: float(np.mean(v)) for k, v in scores.items()},
                "median": {k: float(np.median(v)) for k, v in scores.items()},
                "per_person": {k: v.tolist() for k, v in self.per_person.items()}}


def evaluate_synthetic(model: BodyModel, n: int = 100, seed: int = 0, config=None, device=None,
                       fit_model: BodyModel | None = None, batch: int = 32, body_poses=None,
                       noise: NoiseModel | None = None) -> EvalReport:
    """Generate the synthetic suite with `model` (the truth) and fit it with `fit_model` (default: the same).
    body_poses: real poses (M, 63) to draw the bodies from instead of the documented pose set. noise: the
    detector's error model (e.g. LANDMARKS_3D: with simulated MediaPipe-like 3D landmarks)."""
    from ..fitting import fit

    suite = generate(model, n, seed, body_poses=body_poses, noise=noise)
    fit_model = fit_model or model
    parts, start = [], time.perf_counter()
    for s in range(0, n, batch):
        chunk = suite.keypoints[s : s + batch]
        focal = suite.focal[s : s + batch].numpy()
        parts.append(fit(chunk, fit_model, config, device=device, focal_length=focal))
    seconds = (time.perf_counter() - start) / n
    from ..keypoints.regressors import KeypointRegressor

    avail = KeypointRegressor(fit_model).mask.cpu().expand(n, -1)  # every point the model has, seen or not
    scores = {}
    for s, result in zip(range(0, n, batch), parts):
        sl = slice(s, s + batch)
        detected = np.concatenate([k.points for k in suite.keypoints[sl]])
        part = score(fit_model, result, suite.vertices[sl], suite.joints[sl], suite.keypoints2d[sl], avail[sl],
                     detected, (config or FitConfig()).ignore_keypoints)
        for k, v in part.items():
            scores.setdefault(k, []).append(v)
    per_person = {k: np.concatenate(v) for k, v in scores.items()}
    poses = "held-out motion-capture poses" if body_poses is not None else "ten-pose set"
    if noise is not None and noise.world_sigma is not None:
        poses += f", simulated 3D landmarks (sigma {', '.join(f'{100 * s:g}' for s in noise.world_sigma)} cm)"
    return EvalReport(f"synthetic, {poses} (seed {seed}, truth: {model.description})", per_person, seconds, n)


def evaluate_folder(folder: Path, model: BodyModel, config=None, device=None, focal: float | None = None) -> EvalReport:
    """A folder laid out like EHF: NN_img.(png|jpg), NN_2Djnt.json (OpenPose), NN_align.ply (ground-truth
    mesh with the model's topology). PA-v2v is scored; joints are regressed from the true mesh. Images and
    keypoints go through the capture pipeline's own reading and checks, and its focal-length choice
    (`focal`, else EXIF, else the image diagonal; EHF: 1498.22)."""
    import copy

    from ..fitting import FitConfig
    from ..io.mesh import read_ply_vertices
    from ..pipeline import fit_prepared, prepare_image

    folder = Path(folder)
    frames = sorted(p.name[: -len("_align.ply")] for p in folder.glob("*_align.ply"))
    if not frames:
        raise BodyCaptureError(f"{folder}: no NN_align.ply ground-truth meshes (EHF layout)")
    prepared, truths = [], []
    for frame in frames:
        image = next((folder / f"{frame}_img{ext}" for ext in (".png", ".jpg") if (folder / f"{frame}_img{ext}").exists()),
                     None)
        if image is None:
            raise BodyCaptureError(f"{folder}: no image for frame {frame} (needed for its size)")
        prepared.append(prepare_image(image, keypoints=folder / f"{frame}_2Djnt.json", max_people=1))
        verts = read_ply_vertices(folder / f"{frame}_align.ply")
        if len(verts) != model.num_vertices:
            raise BodyCaptureError(f"{folder / (frame + '_align.ply')}: {len(verts)} vertices, the model has "
                                   f"{model.num_vertices}: v2v needs the same topology (official SMPL-X files)")
        truths.append(verts)
    config = copy.deepcopy(config) if config is not None else FitConfig()
    if focal is not None:
        config.focal_length = focal
    start = time.perf_counter()
    result = fit_prepared(prepared, model, config, device=device)
    seconds = (time.perf_counter() - start) / len(frames)
    true_v = torch.as_tensor(np.stack(truths))
    true_j = torch.einsum("jv,bvc->bjc", model.J_regressor.double().cpu(), true_v)
    scores = {"pa_v2v_all": v2v(result.vertices.double(), true_v)}
    for name, mask in vertex_regions(model).items():
        scores[f"pa_v2v_{name}"] = v2v(result.vertices.double(), true_v, region=mask)
    scores["pa_mpjpe_body"] = pa_mpjpe(result.joints[:, :22].double(), true_j[:, :22])
    per_person = {k: (v * 1000).numpy() for k, v in scores.items()}
    per_person["intersecting_pairs"] = intersecting_pairs(model, result.vertices)
    per_person["failed"] = per_person["pa_v2v_all"] > FAILURE_MM
    return EvalReport(f"folder {folder}", per_person, seconds, len(frames))


def summary_table(report: EvalReport) -> str:
    """The report as a small text table: mean and median over all people, failures beside them."""
    d = report.to_dict()
    cols = [("PA-v2v all", "pa_v2v_all"), ("body", "pa_v2v_body"), ("hands", "pa_v2v_hands"), ("face", "pa_v2v_face"),
            ("PA-MPJPE", "pa_mpjpe_body"), ("2D body px", "px_body"), ("vs input px", "input_px_body"),
            ("noise px", "noise_px_body"), ("2D hands px", "px_hands"),
            ("2D face px", "px_face"), ("isect pairs", "intersecting_pairs")]
    cols = [(h, k) for h, k in cols if k in d["mean"]]
    head = "       | " + " | ".join(f"{h:>11}" for h, _ in cols) + " | s/person | failures"
    rows = [f"{stat:<6} | " + " | ".join(f"{d[stat][k]:>11.1f}" for _, k in cols)
            + (f" | {d['seconds_per_person']:>8.2f} | {d['failures']}/{d['n']} ({100 * d['failure_rate']:.0f} %)"
               if stat == "mean" else "") for stat in ("mean", "median")]
    return (f"{d['suite']}\n(over all {d['n']} people, failures included; a failure: PA-v2v above {FAILURE_MM:.0f} mm;"
            f" mm unless px; isect pairs: self-intersecting triangle pairs per person)\n{head}\n" + "\n".join(rows))
