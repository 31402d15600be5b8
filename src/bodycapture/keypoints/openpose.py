"""Keypoint files: OpenPose JSON (format 1.0-1.3, BODY_25 or COCO-18 bodies), COCO-WholeBody
annotations, and our own `.npz`. All read into `ImageKeypoints` in our 135-point layout.

OpenPose writes one file per image, `NAME_keypoints.json`, with a `people` list; each person has
`pose_keypoints_2d` (25 x 3 for BODY_25), `hand_left_keypoints_2d`, `hand_right_keypoints_2d` (21 x 3)
and `face_keypoints_2d` (70 x 3: iBUG-68 plus two pupils). Absent arrays and zero triples mean "not
detected". Format 1.0 names the arrays without the `_2d` suffix.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path, write_bytes_atomic
from .layout import BODY, CONTOUR, FACE, LEFT_HAND, NUM_KEYPOINTS, RIGHT_HAND, BODY_25
from .types import ImageKeypoints, KeypointFileError, midpoint

__all__ = ["read_keypoints", "read_openpose", "write_openpose", "read_coco_wholebody", "read_npz", "write_npz",
           "people_file", "write_people", "read_people"]

# OpenPose's COCO-18 body model, in its own order, as BODY_25 indices.
_COCO18_TO_BODY25 = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]
# COCO-17 body (+ 6 COCO-WholeBody foot points) as BODY_25 indices.
_COCO17_TO_BODY25 = [0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11]
_COCO_FOOT_TO_BODY25 = [19, 20, 21, 22, 23, 24]


def _triples(values, expected: int, path, key: str) -> np.ndarray:
    arr = _numbers(values if values is not None else [], path, key)
    if arr.size == 0:
        return np.zeros((expected, 3))
    if arr.size != 3 * expected:
        raise KeypointFileError(path, f"{key} has {arr.size} values, expected {3 * expected} ({expected} x, y, c)")
    return arr.reshape(expected, 3)


def _person_from_openpose(person: dict, path) -> tuple[np.ndarray, np.ndarray | None]:
    if not isinstance(person, dict):
        raise KeypointFileError(path, "each entry of 'people' must be an object")
    out = np.zeros((NUM_KEYPOINTS, 3))
    body = person.get("pose_keypoints_2d", person.get("pose_keypoints"))
    n_body = len(body) // 3 if isinstance(body, list) else 0
    if n_body == 18:  # COCO-18 model: no MidHip, no feet
        coco = _triples(body, 18, path, "pose_keypoints_2d")
        out[_COCO18_TO_BODY25] = coco
        out[BODY_25.index("MidHip")] = midpoint(out, BODY_25.index("RHip"), BODY_25.index("LHip"))
    else:
        out[BODY] = _triples(body, 25, path, "pose_keypoints_2d")
    for key, idx in (("hand_left_keypoints", LEFT_HAND), ("hand_right_keypoints", RIGHT_HAND)):
        out[idx] = _triples(person.get(key + "_2d", person.get(key)), 21, path, key + "_2d")
    face = person.get("face_keypoints_2d", person.get("face_keypoints"))
    if face:
        face = _numbers(face, path, "face_keypoints_2d")
        if face.size not in (70 * 3, 68 * 3):
            raise KeypointFileError(path, f"face_keypoints_2d has {face.size} values, expected 210 (70 x, y, c)")
        face = face.reshape(-1, 3)
        out[FACE], out[CONTOUR] = face[17:68], face[:17]
    world = None
    body3d = person.get("pose_keypoints_3d")
    if body3d:
        arr = _numbers(body3d, path, "pose_keypoints_3d")
        if arr.size != 25 * 4:
            raise KeypointFileError(path, f"pose_keypoints_3d has {arr.size} values, expected 100 (25 x, y, z, c)")
        world = arr.reshape(25, 4)
    return out, world


def _numbers(values, path, key: str) -> np.ndarray:
    """A JSON array as finite float64 numbers, flattened, or a one-line error naming the array."""
    try:
        arr = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise KeypointFileError(path, f"{key} must be a flat list of numbers") from None
    if not np.isfinite(arr).all():
        raise KeypointFileError(path, f"{key} holds NaN or infinite values")
    return arr


def read_openpose(path: str | Path) -> ImageKeypoints:
    """Read an OpenPose JSON file (one image, any number of people)."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or "people" not in data:
        raise KeypointFileError(path, "not an OpenPose keypoint file (no 'people' list)")
    if not isinstance(data["people"], list):
        raise KeypointFileError(path, "'people' must be a list")
    people = [_person_from_openpose(p, path) for p in data["people"]]
    points = np.stack([p for p, _ in people]) if people else np.zeros((0, NUM_KEYPOINTS, 3))
    worlds = [w for _, w in people]
    world = np.stack(worlds) if people and all(w is not None for w in worlds) else None
    size = data.get("image_size")  # our addition; OpenPose itself does not store it
    kp = ImageKeypoints(points, tuple(size) if size else None, world, str(path))
    side = people_file(path)
    if side.is_file():
        read_people(side, kp)
    return kp


def people_file(keypoint_file: str | Path) -> Path:
    """The side file that holds what OpenPose JSON has no field for: NAME_keypoints.json -> NAME_people.json
    (keypoints.json -> people.json)."""
    path = Path(keypoint_file)
    if path.name == "keypoints.json":  # in a result folder: keypoints.json + people.json
        return path.with_name("people.json")
    stem = path.name[: -len("_keypoints.json")] if path.name.endswith("_keypoints.json") else path.stem
    return path.with_name(f"{stem}_people.json")


def write_people(path: str | Path, keypoints: ImageKeypoints) -> None:
    """Write the detector's record of each person (box, score, MediaPipe's per-point visibility and metric
    world landmarks, in the order of the OpenPose file's `people`) as JSON, atomically."""
    people = []
    for i in range(keypoints.num_people):
        entry = {}
        if keypoints.boxes is not None:
            entry["box"] = _flat(keypoints.boxes[i])
        if keypoints.scores is not None:
            entry["score"] = float(keypoints.scores[i])
        if keypoints.visibility is not None:
            entry["visibility"] = _flat(keypoints.visibility[i])
        if keypoints.world is not None:
            entry["world_landmarks"] = np.asarray(keypoints.world[i], dtype=float).round(5).tolist()
        people.append(entry)
    data = {"format": "bodycapture people 1", "points": "BODY_25", "box": "x0 y0 x1 y1 (pixels)",
            "world_landmarks": "MediaPipe world landmarks: metres, hip-centred, x y z confidence",
            "people": people}
    write_bytes_atomic(path, json.dumps(data).encode())


def read_people(path: str | Path, keypoints: ImageKeypoints) -> ImageKeypoints:
    """Attach a people side file's boxes, scores, visibility and world landmarks to `keypoints` (in place)."""
    path = Path(path)
    data = _load_json(path)
    people = data.get("people") if isinstance(data, dict) else None
    if not isinstance(people, list) or len(people) != keypoints.num_people:
        raise KeypointFileError(path, f"expected a 'people' list of {keypoints.num_people} entries, one per "
                                      "person of the keypoint file")
    fields = {"box": 4, "score": 1, "visibility": 25, "world_landmarks": 100}
    arrays = {}
    for key, size in fields.items():
        if people and all(isinstance(p, dict) and key in p for p in people):
            try:
                values = np.asarray([p[key] for p in people], dtype=np.float64).reshape(len(people), -1)
            except (TypeError, ValueError):
                raise KeypointFileError(path, f"'{key}' must be {size} numbers per person") from None
            if values.shape[1] != size or not np.isfinite(values).all():
                raise KeypointFileError(path, f"'{key}' must be {size} finite numbers per person")
            arrays[key] = values
    if "box" in arrays:
        keypoints.boxes = arrays["box"]
    if "score" in arrays:
        keypoints.scores = arrays["score"][:, 0]
    if "visibility" in arrays:
        keypoints.visibility = arrays["visibility"]
    if "world_landmarks" in arrays and keypoints.world is None:
        keypoints.world = arrays["world_landmarks"].reshape(-1, 25, 4)
    return keypoints


def _flat(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(values).ravel()]


def write_openpose(path: str | Path, keypoints: ImageKeypoints) -> None:
    """Write OpenPose JSON (version 1.3) atomically. The face gets 70 points (pupils undetected); with
    world points, `pose_keypoints_3d` holds them."""
    people = []
    for i, person in enumerate(keypoints.points):
        face = np.zeros((70, 3))
        face[:17], face[17:68] = person[CONTOUR], person[FACE]
        entry = {
            "person_id": [-1],
            "pose_keypoints_2d": _flat(person[BODY]),
            "face_keypoints_2d": _flat(face),
            "hand_left_keypoints_2d": _flat(person[LEFT_HAND]),
            "hand_right_keypoints_2d": _flat(person[RIGHT_HAND]),
            "pose_keypoints_3d": _flat(keypoints.world[i]) if keypoints.world is not None else [],
            "face_keypoints_3d": [],
            "hand_left_keypoints_3d": [],
            "hand_right_keypoints_3d": [],
        }
        people.append(entry)
    data = {"version": 1.3, "people": people}
    if keypoints.image_size is not None:
        data["image_size"] = [int(s) for s in keypoints.image_size]
    write_bytes_atomic(path, json.dumps(data).encode())


def read_coco_wholebody(path: str | Path, image: str | int | None = None) -> ImageKeypoints:
    """Read COCO-WholeBody style annotations (`annotations` with keypoints, foot_kpts, face_kpts,
    lefthand_kpts, righthand_kpts) for one image: by file name or id, or the only image in the file.
    Visibility flags 1/2 become confidence 1; float scores are kept."""
    path = Path(path)
    data = _load_json(path)
    anns = data.get("annotations") if isinstance(data, dict) else data
    if not isinstance(anns, list):
        raise KeypointFileError(path, "not a COCO-WholeBody file (no 'annotations' list)")
    images = {img.get("id"): img for img in data.get("images", [])} if isinstance(data, dict) else {}
    ids = sorted({a.get("image_id") for a in anns}, key=str)
    if image is None:
        if len(ids) > 1:
            raise KeypointFileError(path, f"holds {len(ids)} images; say which one (file name or id)")
        wanted = ids[0] if ids else None
    else:
        by_name = {Path(img.get("file_name", "")).stem: i for i, img in images.items()}
        wanted = by_name.get(Path(str(image)).stem, image)
    points = []
    for ann in (a for a in anns if a.get("image_id") == wanted):
        out = np.zeros((NUM_KEYPOINTS, 3))
        body = _triples(ann.get("keypoints"), 17, path, "keypoints")
        out[_COCO17_TO_BODY25] = body
        out[_COCO_FOOT_TO_BODY25] = _triples(ann.get("foot_kpts"), 6, path, "foot_kpts")
        out[BODY_25.index("Neck")] = midpoint(out, BODY_25.index("RShoulder"), BODY_25.index("LShoulder"))
        out[BODY_25.index("MidHip")] = midpoint(out, BODY_25.index("RHip"), BODY_25.index("LHip"))
        out[LEFT_HAND] = _triples(ann.get("lefthand_kpts"), 21, path, "lefthand_kpts")
        out[RIGHT_HAND] = _triples(ann.get("righthand_kpts"), 21, path, "righthand_kpts")
        face = _triples(ann.get("face_kpts"), 68, path, "face_kpts")
        out[FACE], out[CONTOUR] = face[17:], face[:17]
        points.append(out)
    pts = np.stack(points) if points else np.zeros((0, NUM_KEYPOINTS, 3))
    if pts.size and np.isin(pts[..., 2], (0.0, 1.0, 2.0)).all():  # visibility flags, not scores
        pts[..., 2] = (pts[..., 2] > 0).astype(np.float64)
    info = images.get(wanted, {})
    size = (info["height"], info["width"]) if "height" in info and "width" in info else None
    return ImageKeypoints(pts, size, None, str(path))


def read_npz(path: str | Path) -> ImageKeypoints:
    """Our own format: `keypoints` (P, 135, 3), optional `image_size` (2,) and `world` (P, 25, 4)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "keypoints" not in npz.files:
                raise KeypointFileError(path, "missing key 'keypoints'")
            points = npz["keypoints"]
            size = tuple(int(s) for s in npz["image_size"]) if "image_size" in npz.files else None
            world = npz["world"] if "world" in npz.files else None
    except KeypointFileError:
        raise
    except Exception as err:  # zip / format errors of every kind
        raise KeypointFileError(path, f"not a readable .npz file ({type(err).__name__}: {err})") from None
    if points.ndim != 3 or points.shape[1:] != (NUM_KEYPOINTS, 3):
        raise KeypointFileError(path, f"'keypoints' has shape {points.shape}, expected (P, {NUM_KEYPOINTS}, 3)")
    return ImageKeypoints(points, size, world, str(path))


def write_npz(path: str | Path, keypoints: ImageKeypoints) -> None:
    arrays = {"keypoints": keypoints.points}
    if keypoints.image_size is not None:
        arrays["image_size"] = np.asarray(keypoints.image_size)
    if keypoints.world is not None:
        arrays["world"] = keypoints.world
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)


def read_keypoints(path: str | Path, image: str | int | None = None) -> ImageKeypoints:
    """Read any supported keypoint file: OpenPose JSON, COCO-WholeBody JSON or our `.npz`."""
    path = Path(path)
    if not path.is_file():
        raise KeypointFileError(path, "no such file")
    if path.suffix.lower() == ".npz":
        return read_npz(path)
    data = _load_json(path)
    if isinstance(data, dict) and "people" in data:
        return read_openpose(path)
    if isinstance(data, dict) and "annotations" in data:
        return read_coco_wholebody(path, image)
    raise KeypointFileError(path, "unknown keypoint format (expected OpenPose 'people' or COCO 'annotations')")


def _load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise KeypointFileError(path, "no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise KeypointFileError(path, f"malformed JSON ({err})") from None
