"""Writing a fit's results for one image: parameters (.npz and SMPLify-X's result.pkl layout), meshes,
keypoints and the overlay, into one folder that appears whole or not at all.

`save_result` stages the folder under a hidden name unique to this process (`.NAME.partial-PID-RANDOM`),
then renames it into place. An existing result is only replaced with `overwrite`: it is renamed aside
first (`.NAME.old-PID-RANDOM`), the new one renamed in, then the old one removed, so at every moment the
target is either the old result or the new one. While a process writes a result it holds `.NAME.lock`
(created with O_EXCL, holding its pid): a second run on the same output skips that result instead of
mixing its files in. Leftovers of killed runs (staging folders, locks of dead processes) are removed by
the next run (`clean_stale_staging`).
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import BodyCaptureError
from ..keypoints.openpose import people_file, write_openpose, write_people
from ..keypoints.types import ImageKeypoints
from .atomic import atomic_path, write_bytes_atomic
from .mesh import write_mesh
from .overlay import MAX_SIDE as OVERLAY_MAX_SIDE, render_overlay

__all__ = ["write_results", "save_result", "result_folder", "check_writable", "clean_stale_staging",
           "ResultExistsError", "MESH_FORMATS", "to_viewer_frame", "VIEWER_TURN"]


class ResultExistsError(BodyCaptureError):
    """The result folder exists (or another run is writing it) and overwriting was not asked for."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_writable(folder: str | Path) -> None:
    """Create `folder` if needed and make sure files can be written in it, before any fitting starts."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BodyCaptureError(f"{folder}: exists and is not a folder (give another --out)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise BodyCaptureError(f"{folder}: cannot write results here ({err.strerror or err})") from None


_STAGING = re.compile(r"^\.(?P<name>.+)\.(partial|old)-(?P<pid>\d+)-[0-9a-f]+$")
_LOCK = re.compile(r"^\.(?P<name>.+)\.lock$")


def clean_stale_staging(folder: str | Path) -> int:
    """Remove staging folders and locks left in `folder` by processes that no longer run; an old result
    that a killed `--overwrite` had moved aside, with nothing in its place, is put back. Returns how many."""
    folder = Path(folder)
    removed = 0
    if not folder.is_dir():
        return 0
    for entry in sorted(folder.iterdir()):
        m = _STAGING.match(entry.name)
        if m and not _pid_alive(int(m["pid"])):
            target = folder / m["name"]
            if entry.name.startswith(f".{m['name']}.old-") and not target.exists():
                os.rename(entry, target)  # killed between moving the old result aside and the new one in
            else:
                shutil.rmtree(entry, ignore_errors=True)
            removed += 1
        elif _LOCK.match(entry.name) and entry.is_file() and not _lock_alive(entry):
            entry.unlink(missing_ok=True)
            removed += 1
    return removed


def _lock_alive(lock: Path) -> bool:
    try:
        pid = int(lock.read_text().strip() or "0")
    except (OSError, ValueError):
        return False
    return pid > 0 and _pid_alive(pid)


@contextmanager
def _target_lock(target: Path) -> Iterator[None]:
    """Hold `.NAME.lock` beside `target` while writing it; a live holder means another run writes it."""
    lock = target.parent / f".{target.name}.lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            if _lock_alive(lock):
                raise ResultExistsError(f"{target}: another bodycapture run is writing this result, skipped") from None
            lock.unlink(missing_ok=True)  # left by a killed run
    else:
        raise ResultExistsError(f"{target}: another bodycapture run is writing this result, skipped")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        lock.unlink(missing_ok=True)


@contextmanager
def result_folder(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh staging folder to write a result into; on success it becomes `target` atomically.
    Raises ResultExistsError when `target` exists (or another run holds it) and not `overwrite`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    with _target_lock(target):
        if target.exists() and not overwrite:
            raise ResultExistsError(f"{target}: exists, skipped (use --overwrite to replace it)")
        staging = target.parent / f".{target.name}.partial-{tag}"
        staging.mkdir()
        try:
            yield staging
            _publish(staging, target, overwrite, tag)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, target: Path, overwrite: bool, tag: str) -> None:
    try:
        os.rename(staging, target)  # fails when target is a non-empty folder (or a file)
        return
    except OSError as err:
        if err.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise BodyCaptureError(f"{target}: cannot write the result ({err.strerror})") from None
    if not overwrite:
        raise ResultExistsError(f"{target}: appeared while fitting (another run?), kept; use --overwrite to replace it")
    old = target.parent / f".{target.name}.old-{tag}"
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError as err:
        os.rename(old, target)  # put the old result back
        raise BodyCaptureError(f"{target}: cannot replace the result ({err.strerror})") from None
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)

MESH_FORMATS = ("obj", "ply", "glb")


# Camera space (OpenCV: y down, z forward) -> viewer space (y up, z towards the viewer): a 180 degree turn
# about x, as SMPLify-X does before saving meshes.
VIEWER_TURN = np.diag([1.0, -1.0, -1.0])


def to_viewer_frame(points: np.ndarray) -> np.ndarray:
    """(..., 3) points from camera space to the viewer frame (VIEWER_TURN)."""
    return points * np.diag(VIEWER_TURN)


def _suffix(k: int, n: int) -> str:
    return "" if n == 1 else f"_{k:03d}"


def write_results(out_dir: str | Path, result, people: np.ndarray, keypoints: ImageKeypoints,
                  image: np.ndarray | None, formats=("obj",), model_info: dict | None = None,
                  report: bool = True, info: dict | None = None) -> list[Path]:
    """Write the fit of `people` (indices into `result`) of one image into out_dir. Returns the files.

    params.npz: every person's parameters stacked (SMPL-X names), camera, loss, per-stage losses.
    result.pkl (result_NNN.pkl for several people): SMPLify-X's per-person layout; body_pose is the
        63-D axis-angle (SMPLify-X stores its 32-D VPoser latent there).
    mesh.obj / .ply / .glb (mesh_NNN.* for several people): viewer frame, y up.
    keypoints.json: the keypoints fitted (OpenPose JSON). overlay.png: the meshes over the photo (scaled down
        to at most overlay.MAX_SIDE pixels on its longer side).
    report.html (unless not `report`): photo, keypoints, a 3D view, quality and parameters (io/report.py);
    `info` adds facts to its header (name, input, focal_source).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    people = np.asarray(people)
    n = len(people)
    written = []
    params = {k: v[people].numpy() for k, v in result.params.items()}
    arrays = {**params,
              "camera_focal": result.focal[people].numpy(), "camera_center": result.center[people].numpy(),
              "camera_translation": params["transl"], "camera_rotation": np.tile(np.eye(3), (n, 1, 1)),
              "image_size": result.image_size[people[0]].numpy().astype(np.int64),
              "loss": result.loss[people].numpy(), "flipped": result.flipped[people].numpy(),
              # the batch's fitting time shared out over the people fitted together in it
              "fit_seconds": np.full(n, result.seconds_per_person)}
    if result.recovered is not None:  # a stage could not start from a finite loss and was rolled back
        arrays["recovered"] = result.recovered[people].numpy()
    for i, stage in enumerate(result.stages):
        for term, values in stage.terms.items():
            arrays[f"stage{i}_{term}"] = values[people].numpy()
        if stage.collisions is not None:  # colliding triangle pairs at the end of the stage
            arrays[f"stage{i}_collisions"] = stage.collisions[people].numpy()
    if result.quality is not None:  # fitting/quality.py: residuals, prior energy, collisions, doubtful
        arrays.update(result.quality.take(people).arrays())
    if result.start:
        arrays["start"] = np.array([result.start[p] for p in people])
    for k, v in (model_info or {}).items():
        arrays[f"model_{k}"] = np.asarray(v)
    with atomic_path(out_dir / "params.npz") as tmp:
        np.savez(tmp, **arrays)
    written.append(out_dir / "params.npz")

    for k, p in enumerate(people):
        pkl = {"camera_rotation": np.eye(3, dtype=np.float32)[None],
               "camera_translation": result.params["transl"][p : p + 1].numpy().astype(np.float32)}
        for name, value in result.params.items():
            if name != "transl":
                pkl[name] = value[p : p + 1].numpy().astype(np.float32)
        path = out_dir / f"result{_suffix(k, n)}.pkl"
        write_bytes_atomic(path, pickle.dumps(pkl, protocol=2))
        written.append(path)
        verts = to_viewer_frame(result.vertices[p].numpy())
        for fmt in formats:
            path = out_dir / f"mesh{_suffix(k, n)}.{fmt}"
            write_mesh(path, verts, result.faces)
            written.append(path)

    write_openpose(out_dir / "keypoints.json", keypoints)
    written.append(out_dir / "keypoints.json")
    if any(x is not None for x in (keypoints.boxes, keypoints.scores, keypoints.visibility, keypoints.world)):
        write_people(people_file(out_dir / "keypoints.json"), keypoints)
        written.append(people_file(out_dir / "keypoints.json"))
    h, w = (int(x) for x in result.image_size[people[0]].tolist())
    overlay = render_overlay(image, result.vertices[people].numpy(), result.faces, result.focal[people].numpy(),
                             result.center[people].numpy(), (h, w), max_side=OVERLAY_MAX_SIDE)
    from PIL import Image

    with atomic_path(out_dir / "overlay.png") as tmp:
        # zlib level 3: a 640 x 480 photo's overlay in 25 instead of 38 ms (level 6), 6 % larger
        Image.fromarray(overlay).save(tmp, format="PNG", compress_level=3)
    written.append(out_dir / "overlay.png")
    if report:
        from .report import write_report

        written.append(write_report(out_dir / "report.html", result, people, keypoints, image, overlay, info))
    return written


def save_result(target: str | Path, result, people=None, keypoints: ImageKeypoints | None = None,
                image: np.ndarray | None = None, formats=("obj",), model_info: dict | None = None,
                overwrite: bool = False, report: bool = True, info: dict | None = None) -> Path:
    """Write the fit of `people` (indices into `result`; default: all) of one image into the folder
    `target`, atomically (see the module docstring). `keypoints`: the fitted ones (default: the result's
    own projections, all with confidence 1). report: write report.html; info: facts for its header.
    Returns `target`."""
    target = Path(target)
    people = np.arange(result.num_people) if people is None else np.asarray(people)
    if keypoints is None:
        pts = np.concatenate([result.keypoints_2d[people].numpy(), np.ones((len(people), 135, 1))], -1)
        h, w = (int(x) for x in result.image_size[people[0]].tolist())
        keypoints = ImageKeypoints(pts, (h, w), None, "fit")
    try:
        with result_folder(target, overwrite) as staging:
            write_results(staging, result, people, keypoints, image, formats, model_info, report,
                          {"name": target.name, **(info or {})})
    except OSError as err:
        raise BodyCaptureError(f"{target}: cannot write the result ({err.strerror or err})") from None
    return target
