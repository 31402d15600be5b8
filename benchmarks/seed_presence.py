"""Why a person-detector seed gives no person: Holistic's pose-presence score on each seed's region.

    python benchmarks/seed_presence.py [PHOTO ...]   (default: coco_257 and coco_544 of ../shared/data/images)

For every seed of `PersonSeedDetector` (keypoints/person_seeds.py) it runs a probe graph made of the wheel's
own calculators (the seed -> MediaPipe's region, the 256 x 256 crop, the pose landmark model) and prints
the model's pose-presence score. Holistic keeps a pose only where this score is at least 0.5
(TensorsToPoseLandmarksAndSegmentation's threshold), so a seed scored far below it would not give usable
landmarks even with a lower gate (docs/evaluation.md: real photos).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bodycapture.keypoints import mediapipe as mp_keypoints
from bodycapture.keypoints.person_seeds import graph_from_text

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "images"

PRESENCE_GRAPH = """
input_stream: "image"
input_stream: "detection"
output_stream: "pose_presence_score"
""" + mp_keypoints.SEED_REGION_NODES + """
node { calculator: "ImageToTensorCalculator" input_stream: "IMAGE:image" input_stream: "NORM_RECT:pose_rect"
       output_stream: "TENSORS:input_tensors" output_stream: "LETTERBOX_PADDING:letterbox_padding"
       options { [mediapipe.ImageToTensorCalculatorOptions.ext] { output_tensor_width: 256 output_tensor_height: 256
                 keep_aspect_ratio: true output_tensor_float_range { min: 0.0 max: 1.0 } } } }
node { calculator: "PoseLandmarkModelLoader" input_side_packet: "MODEL_COMPLEXITY:model_complexity"
       output_side_packet: "MODEL:model" }
node { calculator: "InferenceCalculator" input_side_packet: "MODEL:model" input_stream: "TENSORS:input_tensors"
       output_stream: "TENSORS:output_tensors"
       options { [mediapipe.InferenceCalculatorOptions.ext] { delegate { xnnpack {} } } } }
node { calculator: "SplitTensorVectorCalculator" input_stream: "output_tensors" output_stream: "pose_flag_tensor"
       options { [mediapipe.SplitVectorCalculatorOptions.ext] { ranges: { begin: 1 end: 2 } } } }
node { calculator: "TensorsToFloatsCalculator" input_stream: "TENSORS:pose_flag_tensor"
       output_stream: "FLOAT:pose_presence_score" }
"""


def main() -> None:
    photos = [Path(p) for p in sys.argv[1:]] or [SHARED / "coco_257.jpg", SHARED / "coco_544.jpg"]
    mp_keypoints._import_mediapipe()
    probe = graph_from_text(PRESENCE_GRAPH, {"model_complexity": 1})
    with mp_keypoints.MediaPipeDetector() as detector:
        for photo in photos:
            image = mp_keypoints.read_image(photo)
            height, width = image.shape[:2]
            print(photo.name)
            for i, seed in enumerate(detector._get_seeds()(image)):
                if seed.keypoints is None:
                    continue
                score = probe.process({"image": image, "detection": mp_keypoints.seed_detection(seed, width, height)})
                hip = tuple(int(v) for v in np.round(seed.hip))
                print(f"  seed {i}: detector {seed.score:.2f}, hip at {hip}, {2 * seed.radius:.0f} px tall: "
                      f"pose presence {score.pose_presence_score:.3f}")
    probe.close()


if __name__ == "__main__":
    main()
