"""The HTML report of a result folder (`report.html`) and the index of a folder run (`index.html`).

A report is one self-contained file that opens from `file://` with no network: the photo, the overlay and
the keypoints (SVG, toggled), an interactive 3D view of every fitted person in camera space (three.js,
vendored in data/viewer/ with its licence, inlined as a classic script because browsers refuse ES module
imports from `file://`), each person's quality record, fit time and parameters. Meshes are embedded as
base64 float32 vertices and one shared face list; the photo and overlay as JPEG (at most 1600 px a side).

The page's logic lives in data/viewer/report.js, its layout in report.css; this module only gathers the
data (`report_data`) and fills the template (`render_report`).
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import numpy as np

from ..keypoints.layout import BODY_25, LEFT_HAND, RIGHT_HAND
from ..models.joint_names import SMPL_JOINTS
from .atomic import write_bytes_atomic
from .animation import skin_influences
from .draw import HAND_BONES, LIMBS

__all__ = ["report_data", "animation_data", "render_report", "write_report", "write_animation_report", "write_index",
           "index_rows", "MAX_IMAGE_SIDE"]

MAX_IMAGE_SIDE = 1600  # the photo and overlay are embedded at most this large (pixels, longer side)


def _asset(name: str) -> str:
    """A file of the page's assets (data/viewer/): templates, stylesheet, scripts, the three.js bundle."""
    return resources.files("bodycapture").joinpath("data", "viewer", name).read_text(encoding="utf-8")


def _fill(template: str, **values: str) -> str:
    """Replace each {{NAME}} of `template` in one pass (inserted text is never scanned again)."""
    return re.sub(r"\{\{([A-Z]+)\}\}", lambda m: values[m[1]], template)


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def jpeg_data_url(image: np.ndarray, max_side: int = MAX_IMAGE_SIDE, quality: int = 85) -> str:
    """(H, W, 3) uint8 -> a `data:image/jpeg;base64,...` URL, scaled down to at most `max_side` pixels."""
    from PIL import Image

    img = Image.fromarray(np.asarray(image, dtype=np.uint8)[..., :3])
    scale = max_side / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _skeleton() -> list[list[int]]:
    """Keypoint index pairs drawn as bones: BODY_25 limbs and both hands (OpenPose's drawing)."""
    bones = [[BODY_25.index(a), BODY_25.index(b)] for a, b in LIMBS]
    for hand in (LEFT_HAND, RIGHT_HAND):
        bones += [[int(hand[a]), int(hand[b])] for a, b in HAND_BONES]
    return bones


def _rounded(a, digits: int) -> list:
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


def _param_rows(params: dict[str, np.ndarray]) -> list[dict]:
    """SMPL-X-named parameters of one person -> table rows {name, values}; body_pose one row per joint."""
    rows = []
    for name, value in params.items():
        value = np.asarray(value, dtype=np.float64).reshape(-1)
        if name == "body_pose" and len(value) % 3 == 0:
            names = SMPL_JOINTS[1:] if len(value) // 3 <= len(SMPL_JOINTS) - 1 else []
            for j in range(len(value) // 3):
                joint = names[j] if j < len(names) else f"joint {j + 1}"
                rows.append({"name": f"body_pose: {joint}", "values": _rounded(value[3 * j : 3 * j + 3], 4)})
        else:
            rows.append({"name": name, "values": _rounded(value, 4)})
    return rows


def _mesh_data(faces: np.ndarray, num_vertices: int) -> dict:
    """The face list shared by every mesh of the page (base64, uint16 when the indices fit) and the
    vertex count."""
    faces = np.asarray(faces)
    face_type = np.uint16 if faces.max() < 65536 else np.uint32
    return {"faces": _b64(faces.astype(face_type)), "face_type": np.dtype(face_type).name,
            "num_vertices": int(num_vertices)}


def _quality_record(quality, k: int) -> dict:
    if quality is None:
        return {}
    nan_to_none = lambda v: None if not np.isfinite(v) else round(float(v), 2)  # noqa: E731
    return {"residual_percent": {g: nan_to_none(v[k]) for g, v in quality.residual.items()},
            "pose_prior": nan_to_none(quality.pose_prior[k]) if quality.check_prior else None,
            "collisions": int(quality.collisions[k]), "rolled_back": bool(quality.rolled_back[k]),
            "doubtful": bool(quality.doubtful[k]), "reasons": list(quality.reasons[k])}


def report_data(result, people, keypoints, image: np.ndarray | None, overlay: np.ndarray | None = None,
                info: dict | None = None) -> dict:
    """What report.html shows, as JSON-ready data, for `people` (indices into `result`) of one image.

    keypoints: the ImageKeypoints fitted (person k of it is people[k]); image: the photo (H, W, 3) or None;
    overlay: the rendered overlay (H, W, 3); info: extra header facts (name, input, focal_source).
    Vertices are in the viewer frame (y up, the camera at the origin looking along -z), float32 base64.
    """
    from .results import to_viewer_frame

    people = np.asarray(people)
    h, w = (int(x) for x in result.image_size[people[0]].tolist())
    quality = result.quality.take(people) if result.quality is not None else None
    persons = []
    for k, p in enumerate(people):
        params = {name: v[p].numpy() for name, v in result.params.items()}
        persons.append({
            "vertices": _b64(to_viewer_frame(result.vertices[p].numpy()).astype(np.float32)),
            "detected": _rounded(keypoints.points[k], 1) if k < keypoints.num_people else None,
            "fitted": _rounded(result.keypoints_2d[p].numpy(), 1),
            "loss": float(result.loss[p]) if result.loss is not None else None,
            "start": result.start[p] if result.start else None,
            "fit_seconds": round(result.seconds_per_person, 3),
            "quality": _quality_record(quality, k),
            "params": _param_rows(params),
        })
    focal = result.focal[people[0]].tolist()
    center = result.center[people[0]].tolist()
    return {
        "info": {"width": w, "height": h, **(info or {})},
        "camera": {"focal": focal, "center": center},
        "photo": jpeg_data_url(image) if image is not None else None,
        "overlay": jpeg_data_url(overlay) if overlay is not None else None,
        **_mesh_data(result.faces, result.vertices.shape[1]),
        "skeleton": _skeleton(),
        "people": persons,
        "batch": {"people": int(result.num_people), "seconds": round(float(result.seconds), 3)},
    }


def animation_data(model, tracks: list[dict], fps: float, first_frames: list[int] | None = None) -> dict:
    """An animation for the report's 3D view: each track's rest mesh and per-frame skinning transforms,
    which report.js blends per vertex (linear blend skinning in the browser, a few ms a frame).

    tracks: per track its parameters for T frames with SMPL-X names, as FitResult.params holds them
        (camera space: `transl` is the camera translation), each (T, n) or (1, n); the first frame's betas
        shape the rest mesh (io/animation.track_motion). first_frames: the clip frame each track starts at.
    Per frame and track this stores 12 floats per joint, not the mesh. The preview leaves out pose
    correctives and per-frame expression (official SMPL-X files; the open model has no correctives).
    """
    import torch

    from ..models.lbs import batch_rigid_transform
    from .animation import track_motion

    first_frames = first_frames or [0] * len(tracks)
    joints, weights = skin_influences(model.lbs_weights.cpu().numpy())
    out = []
    for params, first in zip(tracks, first_frames):
        motion = track_motion(model, params, fps)  # viewer frame: the root turned, `transl` adjusted
        T = len(motion.rotations)
        rest_joints = torch.as_tensor(motion.rest_joints)[None].expand(T, -1, -1)
        _, transforms = batch_rigid_transform(torch.as_tensor(motion.rotations), rest_joints, model.parents.cpu())
        transforms = transforms[:, :, :3].clone()  # (T, J, 3, 4)
        transforms[..., 3] += torch.as_tensor(motion.params["transl"])[:, None]
        out.append({"first_frame": int(first), "frames": int(T),
                    "rest": _b64(motion.rest_vertices.astype(np.float32)),
                    "transforms": _b64(transforms.numpy().astype(np.float32))})
    return {"fps": float(fps), "frames": max(t["first_frame"] + t["frames"] for t in out) if out else 0,
            "num_joints": int(model.num_joints), "influences": int(joints.shape[1]),
            "skin_joints": _b64(joints), "skin_weights": _b64(weights), "tracks": out}


def _script_json(data) -> str:
    """JSON safe inside <script>: no '</' can end the element early."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def render_report(data: dict) -> str:
    """The report page: the template with the data, the stylesheet and the scripts inlined."""
    from .. import __version__

    info = data["info"]
    title = info.get("name") or "bodycapture result"
    return _fill(_asset("report.html"), TITLE=html.escape(str(title)), VERSION=html.escape(__version__),
                 CSS=_asset("report.css"), DATA=_script_json(data), THREE=_asset("three.min.js"),
                 SCRIPT=_asset("report.js"))


def write_report(path: str | Path, result, people, keypoints, image: np.ndarray | None,
                 overlay: np.ndarray | None = None, info: dict | None = None) -> Path:
    """Write report.html for `people` of one image (see report_data), atomically. Returns the path."""
    path = Path(path)
    write_bytes_atomic(path, render_report(report_data(result, people, keypoints, image, overlay, info)).encode())
    return path


def write_animation_report(path: str | Path, model, tracks: list[dict], fps: float, focal: tuple[float, float],
                           center: tuple[float, float], image_size: tuple[int, int], first_frames=None,
                           image: np.ndarray | None = None, info: dict | None = None) -> Path:
    """report.html for a clip: the tracks' animation (see animation_data) in the 3D view with a frame slider,
    under the clip's camera (focal, center in pixels; image_size (height, width)); `image`: a frame to show
    in the photo panel and on the image plane (optional). Written atomically; returns the path."""
    h, w = image_size
    data = {"info": {"width": int(w), "height": int(h), **(info or {})},
            "camera": {"focal": [float(f) for f in focal], "center": [float(c) for c in center]},
            "photo": jpeg_data_url(image) if image is not None else None, "overlay": None,
            **_mesh_data(model.faces, model.v_template.shape[0]), "skeleton": _skeleton(), "people": [],
            "batch": {"people": len(tracks), "seconds": None},
            "animation": animation_data(model, tracks, fps, first_frames)}
    path = Path(path)
    write_bytes_atomic(path, render_report(data).encode())
    return path


# --------------------------------------------------------------------------------------------------------------
# index.html: every result folder under a run's --out, and the photos of this run that failed or had nobody


def folder_summary(folder: Path) -> dict:
    """People, doubtful fits and fit seconds of an existing result folder, read from its params.npz."""
    row = {"people": 0, "doubtful": 0, "seconds": None}
    try:
        with np.load(folder / "params.npz") as z:
            row["people"] = int(len(z["loss"])) if "loss" in z.files else 0
            if "quality_doubtful" in z.files:
                row["doubtful"] = int(np.sum(z["quality_doubtful"]))
            if "fit_seconds" in z.files:
                row["seconds"] = round(float(np.sum(z["fit_seconds"])), 2)
    except (OSError, ValueError, KeyError):
        row["problem"] = f"{folder}: params.npz missing or unreadable"
    return row


def _clip_summary(folder: Path) -> dict:
    """Tracks and seconds of an existing clip result folder, read from its clip.json."""
    try:
        data = json.loads((folder / "clip.json").read_text())
        return {"people": len(data.get("tracks", [])), "seconds": round(float(data.get("seconds", 0.0)), 2),
                "message": f"clip: {data.get('frames', 0)} frames"}
    except (OSError, ValueError, TypeError):
        return {"people": 0, "seconds": None, "message": f"{folder}: clip.json missing or unreadable"}


def index_rows(capture_report) -> list[dict]:
    """One row per image and clip of the run (done, skipped, empty, failed), then earlier result folders in
    --out."""
    out = Path(capture_report.out)
    rows, seen = [], set()
    for im in capture_report.images:
        row = {"name": im.name, "input": str(im.input), "status": im.status,
               "message": im.message or "; ".join(line.split(": ", 1)[-1] for line in im.doubtful),  # the warnings
               "people": im.people_fitted, "found": im.people_found, "doubtful": len(im.doubtful),
               "seconds": round(im.seconds, 2) if im.status == "done" else None, "folder": None}
        folder = out / im.name
        if im.status in ("done", "skipped") and (folder / "params.npz").is_file():
            summary = folder_summary(folder)
            row.update(people=summary["people"], doubtful=summary["doubtful"], folder=im.name,
                       found=max(row["found"], summary["people"]))
            if summary["seconds"] is not None:
                row["seconds"] = summary["seconds"]
            if "problem" in summary:
                row["message"] = summary["problem"]
        rows.append(row)
        seen.add(im.name)
    for clip in getattr(capture_report, "clips", []):  # people = tracks fitted
        folder = clip.name if clip.status in ("done", "skipped") and (out / clip.name / "clip.json").is_file() else None
        row = {"name": clip.name, "input": str(clip.input), "status": clip.status, "message": clip.message,
               "people": len(clip.tracks), "found": len(clip.tracks), "doubtful": 0, "folder": folder,
               "seconds": round(clip.seconds, 2) if clip.status == "done" else None}
        if folder and clip.status == "skipped":
            row.update(_clip_summary(out / folder))
        rows.append(row)
        seen.add(clip.name)
    if out.is_dir():
        for folder in sorted(out.iterdir()):
            if folder.name in seen or folder.name.startswith("."):
                continue
            if (folder / "clip.json").is_file():
                rows.append({"name": folder.name, "input": "", "status": "earlier run", "found": None,
                             "folder": folder.name, "doubtful": 0, **_clip_summary(folder)})
                continue
            if not (folder / "params.npz").is_file():
                continue
            summary = folder_summary(folder)
            rows.append({"name": folder.name, "input": "", "status": "earlier run", "found": None,
                         "folder": folder.name, "people": summary["people"], "doubtful": summary["doubtful"],
                         "seconds": summary["seconds"], "message": summary.get("problem", "")})
    for row in rows:  # links relative to index.html, to files that exist
        folder, href = row["folder"], quote(row["folder"] or "")
        row["report"] = f"{href}/report.html" if folder and (out / folder / "report.html").is_file() else None
        row["thumbnail"] = f"{href}/overlay.png" if folder and (out / folder / "overlay.png").is_file() else None
    return rows


def write_index(capture_report) -> Path:
    """Write index.html at the top of `capture_report.out`, atomically: thumbnails, people per image,
    failures and doubtful fits, a sortable table linking each image's report. Returns its path."""
    from .. import __version__

    path = Path(capture_report.out) / "index.html"
    page = _fill(_asset("index.html"), VERSION=html.escape(__version__), CSS=_asset("report.css"),
                 DATA=_script_json({"rows": index_rows(capture_report)}), SCRIPT=_asset("index.js"))
    write_bytes_atomic(path, page.encode())
    return path
