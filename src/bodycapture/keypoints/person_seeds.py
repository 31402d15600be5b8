"""Where the people are: MediaPipe's BlazePose person detector, run over the image and over tiles of it.

Holistic follows one person per image: its graph takes the first of the person detector's detections.
The detector itself (`PoseDetectionCpu`, the wheel's `pose_detection.tflite`) returns every person after
non-maximum suppression, so we run it alone (a one-node graph) and then drive Holistic with one crop per
person (mediapipe.py). Each detection is a box around the face and four points: the hip centre, a point
whose distance from the hip centre gives the full body's size, the shoulder centre and an upper-body
point. Only the box's centre means something: its size is the anchor's (always 0.2 of the input's
width, measured), so we make the face box from the body's size instead.

The detector sees a 224 x 224 letterboxed copy of its input, so a person 50 px tall in a 640 x 480 photo
is 17 px to it and is missed (and, measured on the COCO test photos, even some 230 px tall players were
missed at full frame). We therefore also run it on overlapping square tiles (half the image's short side,
stride a quarter): people of 10 % of the image height become about 20 % of a tile. Detections of the
same person from different tiles are merged (non-maximum suppression on their regions).

The wheel's detector keeps detections scoring at least 0.5. Some people clearly in view score less at full
frame (seen from behind, a cap instead of a face: coco_257's man with a stroller, 0.30-0.47), and lowering
the threshold everywhere lets in statues and faces in crowds (and, tiles included, lost a catcher whose
detection the weaker ones dragged away in the detector's weighted non-maximum suppression). So the whole
image is searched a second time at DOUBTFUL_SCORE, for its doubtful detections only (its confident ones are
those of the wheel's graph: the weighted suppression averages weaker detections into them, and a confident
person's region that moved by 0.04 px cost coco_564's player his face points), and each
doubtful detection that is nobody found already is looked at again: the detector on a crop around it
(RECHECK_SCALE x its body radius, so the person fills the detector's input) must find a person there
scoring at least 0.5, and that detection becomes the seed.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ..cpus import usable_cores

__all__ = ["PersonSeed", "PersonSeedDetector", "tiles", "tiles_near", "tiles_near_small", "edge_tiles", "merge_seeds",
           "square_crop", "graph_from_text", "default_workers"]

# MediaPipe's region of interest around a detection: a square of side 2 x 1.25 x |size point - hip centre|
# (AlignmentPointsRectsCalculator + RectTransformationCalculator scale 1.25 in pose_landmark_cpu).
ROI_SCALE = 2.5
FACE_SIZE = 0.3  # face box side / body radius (a head is about an eighth of a body's height)
# Detector runs per image on tiles (about 14 ms each on a 2-core CPU). A 4:3 photo needs 15; a wide one more,
# and with fewer its tiles grow and its small people shrink in them: coco_357 (640 x 218, fielders 22-30 px
# tall) got 16 tiles of 158 px under a cap of 24 and 4 of its 7 players; 44 tiles of 109 px find 5 (+0.28 s).
MAX_TILES = 48
# ...for a photo up to WIDE_RATIO times as wide as it is tall (or as tall as wide); a wider one, a panorama, is
# searched as the row of such photos it holds: its cap grows in proportion, up to WIDE_PHOTOS of them. With a
# fixed cap, coco_357 three times side by side (1920 x 218) got 48 tiles of 158 px and 12 of its 21 players;
# with the cap in proportion (140 tiles of 109 px, coco_357's own) 19, in about three times coco_357's time.
WIDE_RATIO = 3.0
WIDE_PHOTOS = 8
# No tile is smaller than this (pixels): a person in it would be too small for the pose model, and a strip of an
# image a few pixels high had thousands of them (2000 x 10 pixels: 400 tiles, 3 s, for nobody). The smallest
# tiles on the 14 COCO photos are 72 px (coco_357, `thorough`).
MIN_TILE_SIDE = 32
# `thorough` adds a level of tiles of a third of the short side (at most 60): measured on the COCO photos,
# 3 instead of 1 person at a food truck, 6 instead of 4 players in a wide field, for about 1 s per photo.
THOROUGH_LEVEL = (1 / 3, 60)
# Without it, the tiles of that level centred in the region of a small person (body under SMALL_PERSON of
# the image height) are searched: small people come in groups (a crowd, a field), and a finer tile
# separates neighbours that one detection covered. Measured on the 14 COCO photos: a third person at
# coco_257's food truck (and a head in coco_395's crowd), about 3 more tiles a photo (46 over the 14).
SMALL_PERSON = 0.3
# ...widened by this fraction of a tile's side. Measured on the 14 COCO photos (bench_detect, interleaved, two
# runs each, Intel VM 2026-12-01): 0 (tiles centred in the region) 167-174 ms + 39-44 ms per person, 34
# people; 0.25: 195-213 ms + 44-47 ms, 35 (coco_357's home-plate umpire); 0.33: the same 35, slower; 0.5
# (every tile touching a region): 206 ms + 62 ms, 36 (a fourth at coco_257's food truck), over the target
NEAR_MARGIN = 0.25

# People cut by the photo's left or right edge (coco_564's seated spectator: the detector does not fire on
# him in any tile that the photo holds) are found in tiles centred on the edge, the outside black: as many
# as the tiles' rows, on each side. Such tiles also see people found already (dropped: a seed whose hip
# centre lies within EDGE_NEW radii of a known one, or whose region overlaps one by more than 0.3) and parts of
# people, so the rest need two regions' confirmation (PersonSeed.needs_confirmation). Measured on the 14 COCO
# photos (docs/evaluation.md, real photos): the spectator found, nothing false.
EDGE_NEW = 0.3

# A person half hidden behind a small person who is found (coco_544's second man in the dugout, seated behind
# the first) gets no seed of his own in any tile: one detection covers both. A closer look around each small
# person found: the detector, at DOUBTFUL_SCORE, on a square of BESIDE_SIDE x that person's keypoint height
# centred on their keypoints, mirrored (the detector is not mirror-symmetric, so the mirrored crop is a view
# that no tile gave; measured on the 14 COCO photos around every found person under SMALL_PERSON: sides 1.2,
# 1.5, 2 and 2.5, mirrored or not, gave the dugout man in the mirrored 1.2 crop only, and nobody else new).
# Its detections of the people found already are dropped: hip centre within EDGE_NEW radii of a found one's,
# or face centre within BESIDE_FACE radii of a found nose (measured: 0.04-0.4 for such re-detections that
# the hip test lets through, 0.58 for the dugout man); the rest need two regions' confirmation.
BESIDE_SIDE = 1.2
BESIDE_FACE = 0.4

# The wheel's person detector as it ships (a one-node graph): the reference that detection_graph_text's
# "detections" output equals (tests/test_pipeline.py)
WHEEL_GRAPH = """
input_stream: "image"
output_stream: "detections"
node { calculator: "PoseDetectionCpu" input_stream: "IMAGE:image" output_stream: "DETECTIONS:detections" }
"""
# Close-ups: when a face fills much of the photo the person detector does not fire (coco_395), but the
# wheel's short-range face detector does (a few ms per image); a face becomes a seed whose hip centre
# and body radius follow from the face's size (FACE_TO_HIP, FACE_TO_RADIUS face widths; measured on three
# close-ups, where 2.5-3.5 and 3.5-5 gave the same person).
_FACE_GRAPH = """
input_stream: "image"
output_stream: "detections"
node { calculator: "FaceDetectionShortRangeCpu" input_stream: "IMAGE:image" output_stream: "DETECTIONS:detections" }
"""
FACE_TO_HIP = 3.0
FACE_TO_RADIUS = 4.0

# The wheel's PoseDetectionCpu, node for node (mediapipe/modules/pose_detection/pose_detection_cpu.pbtxt,
# Apache-2.0), with its score threshold as a parameter (WHEEL_GRAPH cannot lower it), and one model
# run decoded twice: at the wheel's threshold, WHEEL_SCORE (output "detections", the same detections as the
# wheel's graph, tested) and at a lower one (output "doubtful"). One graph per worker thread instead of two: each
# graph loads the model and prepares it for XNNPACK on its first run (70-80 ms of CPU on the AMD VM, against
# 12 ms a run), and the whole image needs one run for both.
WHEEL_SCORE = 0.5
_DETECTION_NODES = """
node { calculator: "ImageToTensorCalculator" input_stream: "IMAGE:image" output_stream: "TENSORS:tensors"
  output_stream: "LETTERBOX_PADDING:padding"
  options { [mediapipe.ImageToTensorCalculatorOptions.ext] { output_tensor_width: 224 output_tensor_height: 224
    keep_aspect_ratio: true output_tensor_float_range { min: -1.0 max: 1.0 } border_mode: BORDER_ZERO } } }
node { calculator: "InferenceCalculator" input_stream: "TENSORS:tensors" output_stream: "TENSORS:raw"
  options { [mediapipe.InferenceCalculatorOptions.ext] {
    model_path: "mediapipe/modules/pose_detection/pose_detection.tflite" delegate { xnnpack {} } } } }
node { calculator: "SsdAnchorsCalculator" output_side_packet: "anchors"
  options { [mediapipe.SsdAnchorsCalculatorOptions.ext] { num_layers: 5 min_scale: 0.1484375 max_scale: 0.75
    input_size_height: 224 input_size_width: 224 anchor_offset_x: 0.5 anchor_offset_y: 0.5
    strides: 8 strides: 16 strides: 32 strides: 32 strides: 32 aspect_ratios: 1.0 fixed_anchor_size: true } } }
"""
_DECODE_NODES = """
node { calculator: "TensorsToDetectionsCalculator" input_stream: "TENSORS:raw" input_side_packet: "ANCHORS:anchors"
  output_stream: "DETECTIONS:%(name)s_all"
  options { [mediapipe.TensorsToDetectionsCalculatorOptions.ext] { num_classes: 1 num_boxes: 2254 num_coords: 12
    box_coord_offset: 0 keypoint_coord_offset: 4 num_keypoints: 4 num_values_per_keypoint: 2 sigmoid_score: true
    score_clipping_thresh: 100.0 reverse_output_order: true x_scale: 224.0 y_scale: 224.0 h_scale: 224.0
    w_scale: 224.0 min_score_thresh: %(threshold)r } } }
node { calculator: "NonMaxSuppressionCalculator" input_stream: "%(name)s_all" output_stream: "%(name)s_kept"
  options { [mediapipe.NonMaxSuppressionCalculatorOptions.ext] { min_suppression_threshold: 0.3
    overlap_type: INTERSECTION_OVER_UNION algorithm: WEIGHTED } } }
node { calculator: "DetectionLetterboxRemovalCalculator" input_stream: "DETECTIONS:%(name)s_kept"
  input_stream: "LETTERBOX_PADDING:padding" output_stream: "DETECTIONS:%(name)s" }
"""


def detection_graph_text(low: float) -> str:
    """The person detector's graph: outputs "detections" (scoring at least WHEEL_SCORE, as the wheel's
    PoseDetectionCpu gives them) and "doubtful" (at least `low`, decoded and suppressed on their own) of one
    model run."""
    return ('input_stream: "image"\noutput_stream: "detections"\noutput_stream: "doubtful"\n' + _DETECTION_NODES
            + _DECODE_NODES % {"name": "detections", "threshold": WHEEL_SCORE}
            + _DECODE_NODES % {"name": "doubtful", "threshold": float(low)})


# Doubtful detections (DOUBTFUL_SCORE up to min_score) of the whole image get a second look on a crop of
# RECHECK_SCALE body radii around them, at most MAX_RECHECKS per image (about 15 ms each). Measured on the
# 14 COCO photos (tests/data/people_counts.json): 0.3 and a crop of 3 radii found the stroller man and
# coco_395's man in black; crops of 2.5 or 4 radii found fewer.
DOUBTFUL_SCORE = 0.3
RECHECK_SCALE = 3.0
RECHECK_TOLERANCE = 0.6  # the second look's hip centre within this many radii of the doubtful one's
MAX_RECHECKS = 6
RECHECK_PX = 256  # the crop's side in pixels (the detector sees 224 x 224)


def default_workers() -> int:
    """Threads for the tile search: two where there are two cores to use (measured on the 2-core VM,
    coco_488, whole image + 24 tiles: 400 ms with one, 215 ms with two; benchmarks/bench_detect.py).
    The threads are independent graphs, not one parallel computation, so sharing a core with the fitter
    slows each down in proportion instead of stalling both, as torch's threads do when oversubscribed."""
    return 2 if usable_cores() >= 2 else 1


def graph_from_text(text: str, side_inputs: dict | None = None):
    """A runnable MediaPipe graph (SolutionBase) from a text CalculatorGraphConfig of the wheel's calculators
    and subgraphs; `.process({"image": ..., ...})` runs it on one input set."""
    from google.protobuf import text_format
    from mediapipe.framework import calculator_pb2
    from mediapipe.python.solution_base import SolutionBase

    config = text_format.Parse(text, calculator_pb2.CalculatorGraphConfig())
    return SolutionBase(graph_config=config, side_inputs=side_inputs)


@dataclass
class PersonSeed:
    """One detected person, in image pixels.

    score: the detector's score in [0, 1]. face: (4,) face box x0, y0, x1, y1 (its centre is the
    detector's; its side FACE_SIZE x radius). hip: (2,) hip centre. radius: |full-body size point - hip
    centre| (the body's half-extent, roughly).
    """

    score: float
    face: np.ndarray
    hip: np.ndarray
    radius: float
    keypoints: np.ndarray | None = None  # (4, 2) the detector's four points in image pixels
    # found only in a tile across the photo's edge: a person is kept only where two regions confirm it
    # (mediapipe.py REGION_VARIANTS), not on the crops that a seed's failed region otherwise falls back to
    needs_confirmation: bool = False

    @classmethod
    def upright(cls, score: float, hip: np.ndarray, radius: float, face: np.ndarray | None = None,
                needs_confirmation: bool = False) -> "PersonSeed":
        """A seed standing straight up: the size point `radius` above the hip centre `hip` (2,) (the
        detector's four points as hip, size, hip, size). face: its box, default FACE_SIZE x radius around
        the size point."""
        top = hip - np.array([0.0, radius])
        if face is None:
            face = np.concatenate([top - FACE_SIZE * radius / 2, top + FACE_SIZE * radius / 2])
        return cls(score, face, hip, radius, np.stack([hip, top, hip, top]), needs_confirmation)

    @property
    def roi(self) -> np.ndarray:
        """(4,) MediaPipe's square region around the person, x0, y0, x1, y1."""
        half = ROI_SCALE * self.radius / 2
        return np.array([self.hip[0] - half, self.hip[1] - half, self.hip[0] + half, self.hip[1] + half])


def tiles(height: int, width: int, fraction: float = 0.5, overlap: float = 0.5,
          max_tiles: int = MAX_TILES) -> list[tuple[int, int, int]]:
    """Square tiles (x0, y0, side) of side `fraction` x the short side, covering the image, neighbours
    overlapping by `overlap` of a side; for very wide or tall images the side grows until there are at
    most `max_tiles` (each tile is one detector run) per WIDE_RATIO:1 of the image, at most WIDE_PHOTOS times
    `max_tiles` in all (where the tiles cannot grow further, they overlap less). None for an image whose short side
    is under MIN_TILE_SIDE. The whole image is not included."""
    short = min(height, width)
    if short < MIN_TILE_SIDE:
        return []
    side = min(max(int(round(short * fraction)), MIN_TILE_SIDE), short)
    ratio = max(height, width) / short
    most = int(max_tiles * min(max(ratio / WIDE_RATIO, 1.0), WIDE_PHOTOS))
    while len(_starts(height, side, overlap)) * len(_starts(width, side, overlap)) > most and side < short:
        side = min(int(side * 1.05) + 1, short)  # small steps: as many tiles as the cap allows
    ys, xs = _starts(height, side, overlap), _starts(width, side, overlap)
    if len(ys) * len(xs) > most:  # as large as they can be and still too many (a long strip): evenly spread
        long_starts = np.unique(np.linspace(0, max(height, width) - side, max(most, 1)).round().astype(int))
        ys, xs = (ys, long_starts.tolist()) if width > height else (long_starts.tolist(), xs)
    return [(x, y, side) for y in ys for x in xs]


def _starts(extent: int, side: int, overlap: float) -> list[int]:
    """Where tiles of `side` start along an `extent`, neighbours overlapping by `overlap` of a side."""
    if extent <= side:
        return [0]
    return list(range(0, extent - side, max(int(side * (1 - overlap)), 1))) + [extent - side]


def edge_tiles(height: int, width: int, fraction: float = 0.5,
               max_tiles: int = MAX_TILES) -> list[tuple[int, int, int]]:
    """Square tiles (x0, y0, side) centred on the image's left and right edges (x0 = -side / 2 and
    width - side / 2, so half of each lies outside): the side and the rows of `tiles(height, width,
    fraction, max_tiles=max_tiles)`, two a row."""
    inside = tiles(height, width, fraction, max_tiles=max_tiles)
    if not inside:
        return []
    side = inside[0][2]
    return [(x, y, side) for y in sorted({y for _, y, _ in inside}) for x in (-(side // 2), width - side // 2)]


def tiles_near(height: int, width: int, people: list, fraction: float, max_tiles: int,
               margin: float = NEAR_MARGIN) -> list[tuple[int, int, int]]:
    """The tiles (x0, y0, side) of `tiles(height, width, fraction, max_tiles=max_tiles)` whose centre lies in
    the region (PersonSeed.roi) of any of `people`, widened on every side by `margin` x the tile side."""
    if not people:
        return []
    rois = np.stack([p.roi for p in people])
    near = []
    for x, y, side in tiles(height, width, fraction, max_tiles=max_tiles):
        cx, cy, m = x + side / 2, y + side / 2, margin * side
        if ((rois[:, 0] - m < cx) & (rois[:, 2] + m > cx) & (rois[:, 1] - m < cy) & (rois[:, 3] + m > cy)).any():
            near.append((x, y, side))
    return near


def tiles_near_small(height: int, width: int, seeds: list) -> list[tuple[int, int, int]]:
    """The finer level's tiles (THOROUGH_LEVEL) around the small seeds (body under SMALL_PERSON of the image
    height; tiles_near, widened by NEAR_MARGIN): where the search looks again for their neighbours, and where
    the selfie segmentation reads (person_masks.py)."""
    small = [s for s in seeds if 2 * s.radius < SMALL_PERSON * height]
    return tiles_near(height, width, small, *THOROUGH_LEVEL, margin=NEAR_MARGIN)


def square_crop(image: np.ndarray, centre: np.ndarray, side: float, px: int) -> tuple[np.ndarray, float, float]:
    """The square of `side` photo pixels around `centre` (2,) of `image` (H, W, 3) uint8, resampled
    (bilinear) to (px, px, 3); parts outside the photo are black. Returns (crop, x0, y0): crop pixel
    (u, v) is photo point (x0 + u side / px, y0 + v side / px)."""
    from PIL import Image

    x0, y0 = float(centre[0]) - side / 2, float(centre[1]) - side / 2
    crop = Image.fromarray(image).transform((px, px), Image.Transform.EXTENT, (x0, y0, x0 + side, y0 + side),
                                             Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(crop)), x0, y0


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes (N, 4) and (M, 4), x0 y0 x1 y1 -> (N, M)."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def merge_seeds(seeds: list[PersonSeed], iou: float = 0.3) -> list[PersonSeed]:
    """Non-maximum suppression: of seeds whose face boxes or regions overlap by more than `iou`, the
    highest-scoring one is kept. Returned by descending score."""
    if not seeds:
        return []
    order = sorted(seeds, key=lambda s: -s.score)
    faces = np.stack([s.face for s in order])
    rois = np.stack([s.roi for s in order])
    same = (box_iou(faces, faces) > iou) | (box_iou(rois, rois) > 0.6)
    keep: list[int] = []
    for i in range(len(order)):
        if not any(same[i, k] for k in keep):
            keep.append(i)
    return [order[i] for i in keep]


def _score(detection) -> float:
    """A MediaPipe Detection proto's score (0 where it has none)."""
    return float(detection.score[0]) if detection.score else 0.0


def _seeds(detections, lowest: float, w: int, h: int, x0: float, y0: float, scale: float,
           mirrored: bool) -> list[PersonSeed]:
    """A detector graph's detections (MediaPipe Detection protos, relative to a w x h input whose pixel (u, v) is
    (x0 + scale u, y0 + scale v) of the full image; the input mirrored left to right if `mirrored`) scoring at
    least `lowest` -> seeds in the full image's pixels."""
    offset = np.array([x0, y0])
    seeds = []
    for det in detections or []:
        score = _score(det)
        if score < lowest:
            continue
        loc = det.location_data
        bb = loc.relative_bounding_box
        kp = np.array([[k.x, k.y] for k in loc.relative_keypoints]).reshape(-1, 2)
        if len(kp) < 2:
            continue
        centre = np.array([bb.xmin + bb.width / 2, bb.ymin + bb.height / 2])
        if mirrored:
            kp[:, 0], centre[0] = 1 - kp[:, 0], 1 - centre[0]
        kp = kp * (w, h) * scale + offset
        centre = centre * (w, h) * scale + offset
        radius = float(np.linalg.norm(kp[1] - kp[0]))
        half = FACE_SIZE * radius / 2
        face = np.concatenate([centre - half, centre + half])
        seeds.append(PersonSeed(score, face, kp[0], radius, kp[:4]))
    return seeds


def _new_across_edges(found: list[list[PersonSeed]], known: list[PersonSeed]) -> list[PersonSeed]:
    """Seeds of people cut by the left or right edge: of the seeds found on the edge tiles (one list a
    tile), merged, those that are nobody `known` (EDGE_NEW), each marked as needing confirmation."""
    rois = np.stack([s.roi for s in known]) if known else np.zeros((0, 4))
    new = []
    for seed in merge_seeds([s for tile_seeds in found for s in tile_seeds]):
        near = any(np.linalg.norm(seed.hip - k.hip) < EDGE_NEW * max(seed.radius, k.radius) for k in known)
        if seed.keypoints is None or near or (len(rois) and box_iou(seed.roi[None], rois).max() > 0.3):
            continue
        seed.needs_confirmation = True
        new.append(seed)
    return new


class PersonSeedDetector:
    """Every person in an image: the BlazePose person detector on the whole image and on tiles.

    workers: threads searching the tiles, each with its own detector graph (default_workers()).
    tile_fraction: tile side as a fraction of the image's short side (None: whole image only).
    thorough: also a second, finer level of tiles (THOROUGH_LEVEL), for crowds and wide shots.
    min_score: detections below it are dropped (the graph itself keeps >= 0.5).
    doubtful_score: whole-image detections from this score up to min_score get a second look on a crop
        (module docstring); None: none.
    edges: with tiles, also search tiles centred on the left and right edges for people cut by them
        (EDGE_NEW); their new seeds need two regions' confirmation.
    """

    def __init__(self, tile_fraction: float | None = 0.5, min_score: float = 0.5, faces: bool = True,
                 thorough: bool = False, workers: int | None = None,
                 doubtful_score: float | None = DOUBTFUL_SCORE, edges: bool = True):
        self.tile_fraction = tile_fraction
        self.edges = edges
        self.thorough = thorough
        self.min_score = min_score
        self.doubtful_score = doubtful_score
        self.faces = faces
        self.workers = default_workers() if workers is None else max(1, int(workers))
        self._graphs: dict = {}  # (the "doubtful" output's threshold, worker) -> detector graph
        self._face_graph = None
        self._pool = None

    @property
    def low_score(self) -> float:
        """The threshold of the detector graph's "doubtful" output: doubtful_score, else DOUBTFUL_SCORE."""
        return DOUBTFUL_SCORE if self.doubtful_score is None else self.doubtful_score

    def _get(self, worker: int = 0, low: float | None = None):
        """Worker `worker`'s detector graph whose "doubtful" output keeps what scores at least `low` (None:
        low_score, the graph that every search uses unless a caller asks for another threshold)."""
        key = (self.low_score if low is None else low, worker)
        if key not in self._graphs:
            self._graphs[key] = graph_from_text(detection_graph_text(key[0]))
        return self._graphs[key]

    def _run(self, image: np.ndarray, x0: float, y0: float, worker: int = 0, scale: float = 1.0,
             threshold: float | None = None, mirrored: bool = False) -> list[PersonSeed]:
        """Detections in `image` (H, W, 3) uint8 whose pixel (u, v) is (x0 + scale u, y0 + scale v) of the
        full image, in the full image's pixels, by the graph of `worker` (each worker thread has its own: a
        graph runs one image at a time). threshold: keep what scores at least that (the graph's "doubtful"
        output); None: the wheel's detections, keeping what scores at least min_score. mirrored: the detector
        sees the image mirrored left to right (its detections are mapped back)."""
        return self._run_both(image, x0, y0, worker, scale, threshold, mirrored)[0 if threshold is None else 1]

    def _run_both(self, image: np.ndarray, x0: float, y0: float, worker: int = 0, scale: float = 1.0,
                  low: float | None = None, mirrored: bool = False) -> tuple[list[PersonSeed], list[PersonSeed]]:
        """_run's seeds of one model run: (the wheel's detections scoring at least min_score, the doubtful
        output's scoring at least `low`; None: low_score)."""
        h, w = image.shape[:2]
        if mirrored:
            image = image[:, ::-1]
        result = self._get(worker, low).process({"image": np.ascontiguousarray(image)})
        low = self.low_score if low is None else low
        return (_seeds(result.detections, self.min_score, w, h, x0, y0, scale, mirrored),
                _seeds(result.doubtful, low, w, h, x0, y0, scale, mirrored))

    def first_detection(self, image: np.ndarray, worker: int = 0, min_score: float | None = None):
        """The person detector's first detection in `image` (H, W, 3) uint8, its most confident, as MediaPipe Pose's
        own person search takes it: a Detection proto relative to the image, or None where none scores at least
        min_score (None: this detector's min_score; never below WHEEL_SCORE)."""
        detections = self._get(worker).process({"image": np.ascontiguousarray(image)}).detections or []
        lowest = self.min_score if min_score is None else min_score
        if not detections or _score(detections[0]) < lowest:
            return None
        return detections[0]

    def _recheck(self, image: np.ndarray, doubtful: PersonSeed, worker: int = 0) -> PersonSeed | None:
        """The second look at a doubtful seed: the detector on a crop around it; its best detection whose
        hip centre lies within RECHECK_TOLERANCE radii of the doubtful one's, or None."""
        side = max(RECHECK_SCALE * doubtful.radius, 32.0)
        crop, x0, y0 = square_crop(image, doubtful.hip, side, RECHECK_PX)
        again = self._run(crop, x0, y0, worker, scale=side / RECHECK_PX)
        near = [s for s in again if np.linalg.norm(s.hip - doubtful.hip) < RECHECK_TOLERANCE * doubtful.radius]
        return max(near, key=lambda s: s.score, default=None)

    def parallel(self, jobs: list) -> list:
        """Run `jobs` (functions of a worker index) on the workers, each worker taking the next job not yet
        taken when it is free (so one long job does not leave the other workers idle behind it); results in
        job order, the same as on one worker (a job's result does not depend on which worker's graphs ran it)."""
        workers = min(self.workers, len(jobs))
        if workers <= 1:
            return [job(0) for job in jobs]
        from concurrent.futures import ThreadPoolExecutor, wait

        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="person-seeds")
        out = [None] * len(jobs)
        taken = itertools.count()  # its next() is atomic: each job is taken by one worker
        failed = []

        def work(worker: int) -> None:
            try:
                while not failed and (i := next(taken)) < len(jobs):
                    out[i] = jobs[i](worker)
            except BaseException:
                failed.append(worker)  # the other workers take no further job
                raise

        # MediaPipe releases the GIL while a graph runs: the jobs run in parallel
        running = [self._pool.submit(work, worker) for worker in range(workers)]
        wait(running)  # every worker done (a graph runs one image at a time: none may still be busy after a failure)
        for done in running:
            done.result()  # raises a job's exception
        return out

    def __call__(self, image: np.ndarray) -> list[PersonSeed]:
        """(H, W, 3) uint8 RGB -> seeds, merged, by descending score."""
        h, w = image.shape[:2]
        windows = [(0, 0, None)]  # the whole image, then the tiles of each level
        levels = [(self.tile_fraction, MAX_TILES)] if self.tile_fraction else []
        if self.thorough:
            levels.append(THOROUGH_LEVEL)
        for fraction, most in levels:
            windows += tiles(h, w, fraction, max_tiles=most)
        doubtful = self.doubtful_score is not None and self.doubtful_score < self.min_score
        for worker in range(self.workers):  # made here, not raced for in the threads (windows, rechecks, near tiles)
            self._get(worker)

        def window(x: int, y: int, side: int):  # a job: the detector on a tile
            return lambda k: self._run(image[y : y + side, x : x + side], x, y, k)

        # the whole image's run gives its doubtful detections too (for those only: the graph's weighted non-maximum
        # suppression at the lower threshold averages weaker detections into the confident ones and moves their
        # regions (coco_564's player lost his face points that way), so the confident seeds are the wheel's);
        # the tiles across the edges run in the same batch (they depend on nothing found), their seeds kept below
        edges = self._edge_jobs(image) if self.tile_fraction and self.edges else []
        jobs = [lambda k: self._run_both(image, 0, 0, k)] + [window(*tile) for tile in windows[1:]]
        found = self.parallel(jobs + edges)
        found, across = found[: len(jobs)], found[len(jobs) :]
        found[0], low = found[0]
        faces = self._faces(image) if self.faces else []  # after the whole image's seeds, before the tiles'
        seeds = merge_seeds(found[0] + faces + [seed for tile_seeds in found[1:] for seed in tile_seeds])
        if doubtful:  # the doubtful ones that are nobody found already (merged away by a confident seed otherwise)
            unsure = [s for s in merge_seeds(seeds + low) if s.score < self.min_score][:MAX_RECHECKS]
            confirmed = self.parallel([lambda k, s=s: self._recheck(image, s, k) for s in unsure])
            seeds = merge_seeds(seeds + [s for s in confirmed if s is not None])
        if self.tile_fraction and not self.thorough:  # around small people, the finer level's tiles
            more = self.parallel([window(*tile) for tile in tiles_near_small(h, w, seeds)])
            seeds = merge_seeds(seeds + [s for tile_seeds in more for s in tile_seeds])
        if edges:
            seeds += _new_across_edges(across, seeds)
        return seeds

    def _edge_jobs(self, image: np.ndarray) -> list:
        """Jobs (functions of a worker index) running the detector on the tiles across the left and right
        edges (edge_tiles), each giving its seeds; _new_across_edges keeps the new people among them."""
        h, w = image.shape[:2]

        def job(x: int, y: int, side: int):
            def run(k: int) -> list[PersonSeed]:
                px = min(side, RECHECK_PX)
                crop, x0, y0 = square_crop(image, np.array([x + side / 2, y + side / 2]), side, px)
                return self._run(crop, x0, y0, k, scale=side / px)
            return run

        return [job(*tile) for tile in edge_tiles(h, w, self.tile_fraction)]

    def beside(self, image: np.ndarray, boxes: np.ndarray, hips: np.ndarray, noses: np.ndarray,
               side: float = BESIDE_SIDE, mirrored: bool = True) -> list[PersonSeed]:
        """Seeds of people half hidden beside the small people found (BESIDE_SIDE, BESIDE_FACE): the
        detector on a square of `side` x their height around each found person under SMALL_PERSON of the
        image height, mirrored (or not). boxes: (N, 4) the found people's keypoint boxes; hips, noses: (N, 2)
        their hip centres and noses (NaN where unknown: such a person is not looked around, or not compared
        with). New seeds only, each marked as needing confirmation."""
        h, w = image.shape[:2]
        heights = boxes[:, 3] - boxes[:, 1]
        small = np.flatnonzero(heights < SMALL_PERSON * h)
        if not len(small):
            return []

        def job(centre: np.ndarray, crop_side: float):
            def run(k: int) -> list[PersonSeed]:
                crop, x0, y0 = square_crop(image, centre, crop_side, RECHECK_PX)
                return self._run(crop, x0, y0, k, scale=crop_side / RECHECK_PX, threshold=DOUBTFUL_SCORE,
                                 mirrored=mirrored)
            return run

        centres = (boxes[small, :2] + boxes[small, 2:]) / 2
        found = self.parallel([job(c, max(side * hh, 32.0)) for c, hh in zip(centres, heights[small])])
        new = []
        for seed in merge_seeds([s for crop_seeds in found for s in crop_seeds]):
            face = (seed.face[:2] + seed.face[2:]) / 2
            inside = 0 <= seed.hip[0] < w and 0 <= seed.hip[1] < h
            near_hip = np.linalg.norm(hips - seed.hip, axis=1) < EDGE_NEW * seed.radius  # NaN: False
            near_face = np.linalg.norm(noses - face, axis=1) < BESIDE_FACE * seed.radius
            if inside and not (near_hip.any() or near_face.any()):
                seed.needs_confirmation = True
                new.append(seed)
        return new

    def _faces(self, image: np.ndarray) -> list[PersonSeed]:
        """Seeds from the short-range face detector: close-ups that the person detector misses."""
        if self._face_graph is None:
            self._face_graph = graph_from_text(_FACE_GRAPH)
        h, w = image.shape[:2]
        seeds = []
        for det in self._face_graph.process({"image": np.ascontiguousarray(image)}).detections or []:
            score = _score(det)
            if score < self.min_score:
                continue
            bb = det.location_data.relative_bounding_box
            size = bb.width * w
            centre = np.array([(bb.xmin + bb.width / 2) * w, (bb.ymin + bb.height / 2) * h])
            hip = centre + np.array([0.0, FACE_TO_HIP * size])
            face = np.concatenate([centre - size / 2, centre + size / 2])
            seeds.append(PersonSeed.upright(score, hip, FACE_TO_RADIUS * size, face))
        return seeds

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        for graph in [*self._graphs.values(), self._face_graph]:
            if graph is not None:
                graph.close()
        self._graphs, self._face_graph = {}, None
