"""The `bodycapture` command.

    bodycapture --version
    bodycapture models [--folder DIR ...] [--check]
    bodycapture detect IMAGE|FOLDER --out DIR [--show]

User errors (missing or corrupt files, bad options) are printed as one line, with exit status 1;
`-v` shows progress and details, `-vv` debugging output.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import BodyCaptureError

log = logging.getLogger("bodycapture")


def _cmd_models(args: argparse.Namespace) -> int:
    from .models.files import read_model_file
    from .models.zoo import ENV_VAR, available_models

    folders = [Path(f) for f in args.folder] if args.folder else None
    entries = available_models(folders)
    if not entries:
        print(f"no models found (the bundled open model is missing; official files: set {ENV_VAR} or --folder)")
        return 1
    failed = 0
    for entry in entries:
        line = f"{entry.family:<22} {entry.gender:<8} {entry.licence:<44} {entry.path}"
        if args.check:
            try:
                line += "  [ok: " + read_model_file(entry.path).description + "]"
            except BodyCaptureError as err:
                failed += 1
                line += f"  [invalid: {err.problem if hasattr(err, 'problem') else err}]"
        print(line)
    if folders is None and not any(e.licence.startswith("official") for e in entries):
        print(f"(official SMPL-family files: set {ENV_VAR} to their folder, or pass --folder)")
    return 1 if failed else 0


def _image_list(target: Path) -> list[Path]:
    from .keypoints.mediapipe import IMAGE_SUFFIXES

    if target.is_dir():
        images = sorted(p for p in target.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        if not images:
            raise BodyCaptureError(f"{target}: no images in this folder ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return images
    if not target.exists():
        raise BodyCaptureError(f"{target}: no such file or folder")
    return [target]


def _cmd_detect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .io.atomic import atomic_path
    from .io.draw import draw_keypoints
    from .keypoints.mediapipe import MediaPipeDetector, read_image
    from .keypoints.openpose import write_openpose

    images = _image_list(Path(args.input))
    out = Path(args.out)
    failed = 0
    with MediaPipeDetector(min_detection_confidence=args.min_confidence) as detector:
        for path in tqdm(images, desc="detect", unit="image", disable=len(images) < 2):
            try:
                image = read_image(path)
            except BodyCaptureError as err:
                if len(images) == 1:
                    raise
                print(f"bodycapture: error: {err}", file=sys.stderr)
                failed += 1
                continue
            keypoints = detector(image)
            keypoints.source = str(path)
            write_openpose(out / f"{path.stem}_keypoints.json", keypoints)
            if keypoints.num_people == 0:
                tqdm.write(f"{path}: no person found")
            else:
                log.info("%s: %d person(s)", path, keypoints.num_people)
            if args.show:
                with atomic_path(out / f"{path.stem}_rendered.png") as tmp:
                    draw_keypoints(image, keypoints.points).save(tmp, format="PNG")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bodycapture",
        description="Expressive 3D humans (body, hands, face) from a single image, SMPL-X compatible.",
    )
    parser.add_argument("--version", action="version", version=f"bodycapture {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more output (-vv for debugging)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    models = sub.add_parser("models", help="list the body models that can be loaded, with their licences")
    models.add_argument("--folder", action="append", default=[], metavar="DIR",
                        help="folder laid out like the official downloads (repeatable; default: $BODYCAPTURE_MODELS)")
    models.add_argument("--check", action="store_true", help="read and validate every file found")
    models.set_defaults(func=_cmd_models)

    detect = sub.add_parser("detect", help="detect 2D keypoints (MediaPipe) and write OpenPose JSON")
    detect.add_argument("input", help="an image or a folder of images")
    detect.add_argument("--out", required=True, metavar="DIR", help="writes DIR/NAME_keypoints.json per image")
    detect.add_argument("--show", action="store_true", help="also write DIR/NAME_rendered.png with the skeleton")
    detect.add_argument("--min-confidence", type=float, default=0.5, help="MediaPipe's person detection threshold")
    detect.set_defaults(func=_cmd_detect)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except BodyCaptureError as err:
        print(f"bodycapture: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bodycapture: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
