"""The `bodycapture` command.

    bodycapture --version
    bodycapture models [--folder DIR ...] [--check]
    bodycapture detect IMAGE|FOLDER --out DIR [--show] [--max-people N] [--min-height H]
    bodycapture fit IMAGE|FOLDER|VIDEO [--out DIR] [--keypoints FILE|DIR] [--model open|PATH] [--format obj,ply,glb]
                    [--clip] [--start S] [--end S] [--fps F] [--every N]
    bodycapture eval [--suite synthetic|mocap|DIR] [--n 100] [--landmarks3d]
    bodycapture sample-poses --n 16 --out DIR

User errors (missing or corrupt files, bad options) are printed as one line, with exit status 1;
`-v` shows details, `-vv` debugging output, `-q` nothing but errors. Progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .errors import BodyCaptureError
from .quiet import pin_native_threads

log = logging.getLogger("bodycapture")


def _cmd_models(args: argparse.Namespace) -> int:
    from .models.zoo import ENV_VAR, available_models, check_model_file

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
                line += "  [ok: " + check_model_file(entry.path) + "]"
            except BodyCaptureError as err:
                failed += 1
                line += f"  [invalid: {err.problem if hasattr(err, 'problem') else err}]"
        print(line)
    if folders is None and not any(e.licence.startswith("official") for e in entries):
        print(f"(official SMPL-family files: set {ENV_VAR} to their folder, or pass --folder)")
    return 1 if failed else 0


def _report(report, quiet: bool) -> int:
    """Print a run's problems (one line each, stderr) and its closing line (stdout); the exit status:
    1 when a photo failed, or when a fit found nobody at all to fit (detection writes an empty file then)."""
    for item in [*report.images, *report.clips]:
        if item.status == "failed":
            print(f"bodycapture: error: {item.message}", file=sys.stderr)
        elif item.status in ("empty", "skipped") and not quiet:
            print(f"bodycapture: {item.message}", file=sys.stderr)
    if not quiet:
        print(report.summary())
    nothing = report.task == "fit" and report.count("done") == 0 and report.count("empty") > 0
    return 1 if report.count("failed") or nothing else 0


def _cmd_detect(args: argparse.Namespace) -> int:
    from .pipeline import detect_images

    report = detect_images(args.input, args.out, show=args.show, max_people=args.max_people,
                           min_height=args.min_height, min_confidence=args.min_confidence,
                           progress=not args.quiet, thorough=args.thorough)
    return _report(report, args.quiet)


def _load_fit_model(args: argparse.Namespace):
    from .pipeline import load_fit_model

    return load_fit_model(args.model, args.gender, "float64" if args.float64 else None, args.device)


def _fit_config(args: argparse.Namespace):
    from .fitting import FitConfig, load_config

    config = load_config(args.config) if args.config else FitConfig()
    if getattr(args, "focal", None) is not None:
        config.focal_length = args.focal
    if args.pose_prior:
        config.pose_prior = args.pose_prior
    if args.no_collision:
        config.interpenetration = False
    return config


def _sequence_config(args: argparse.Namespace):
    from .video.sequence import SequenceConfig

    config = SequenceConfig()
    if args.key_every is not None:
        config.key_every = args.key_every
    if args.smoothness is not None:
        config.acceleration = args.smoothness
    return config


def _cmd_fit(args: argparse.Namespace) -> int:
    from .pipeline import CaptureOptions, capture

    if args.show_config:
        print(_fit_config(args).summary())
        if args.input is None:
            return 0
    if args.input is None:
        raise BodyCaptureError("fit: give an image, a folder of images or a video (or --show-config)")
    options = CaptureOptions(out=Path(args.out), keypoints=Path(args.keypoints) if args.keypoints else None,
                             formats=tuple(args.format.split(",")), batch_images=args.batch_images,
                             overwrite=args.overwrite, max_people=args.max_people, min_height=args.min_height,
                             thorough=args.thorough, report=not args.no_report,
                             device=args.device, threads=args.threads, progress=not args.quiet,
                             clip=args.clip, start=args.start, end=args.end, fps=args.fps, every=args.every,
                             source_fps=args.source_fps,
                             min_track_frames=args.min_track_frames, overlay_video=not args.no_overlay_video,
                             sequence=lambda: _sequence_config(args))  # made later: it imports torch
    if args.engine == "ray":
        import torch

        from .engine.ray import RayOptions, capture_ray

        ray = RayOptions(address=args.address, workers=args.workers, cpus_per_task=args.cpus_per_task,
                         gpus_per_task=args.gpus_per_task, shard_images=args.shard_images,
                         shard_frames=args.shard_frames)
        model_args = {"name": args.model, "gender": args.gender, "dtype": torch.float64 if args.float64 else None}
        report = capture_ray(args.input, model_args, _fit_config(args), options, ray)
        return _report(report, args.quiet)
    # model and config are made once detection has started (torch's import overlaps with it)
    report = capture(args.input, model=lambda: _load_fit_model(args), config=lambda: _fit_config(args),
                     options=options)
    log.info("timings: %s", json.dumps({k: round(v, 3) for k, v in report.timings.items()}))
    return _report(report, args.quiet)


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation.runner import LANDMARKS_3D, evaluate_folder, evaluate_synthetic, summary_table
    from .io.atomic import write_bytes_atomic

    import torch

    from .pipeline import choose_threads

    torch.set_num_threads(choose_threads(args.threads))
    config = _fit_config(args)
    model = _load_fit_model(args)
    if args.suite in ("synthetic", "mocap"):
        from .evaluation.synthetic import mocap_test_poses

        poses = mocap_test_poses() if args.suite == "mocap" else None
        report = evaluate_synthetic(model, n=args.n, seed=args.seed, config=config, device=args.device,
                                    body_poses=poses, noise=LANDMARKS_3D if args.landmarks3d else None)
    else:
        folder = Path(args.suite)
        if not folder.is_dir():
            raise BodyCaptureError(f"{folder}: not 'synthetic', 'mocap' or a folder")
        report = evaluate_folder(folder, model, config, device=args.device, focal=args.focal)
    print(summary_table(report))
    write_bytes_atomic(args.json, json.dumps(report.to_dict(), indent=1).encode())
    print(f"wrote {args.json}")
    return 0


def _cmd_sample_poses(args: argparse.Namespace) -> int:
    from .models.zoo import load_model
    from .priors.samples import sample_bodies, write_samples

    model = load_model(None if args.model == "open" else args.model, gender=args.gender)
    poses, vertices = sample_bodies(model, args.n, args.seed, args.temperature)
    sheet = write_samples(args.out, model, poses, vertices)
    print(f"wrote {args.n} sampled bodies and {sheet}")
    return 0


def _height(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be pixels (> 1) or a fraction of the image height (<= 1), got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _people_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-people", type=_positive_int, default=20,
                        help="at most this many people per image, the largest first (default 20)")
    parser.add_argument("--min-height", type=_height, default=0.1,
                        help="ignore people shorter than this: pixels, or a fraction of the image height "
                             "when <= 1 (default 0.1)")
    parser.add_argument("--thorough", action="store_true",
                        help="a finer search for people (crowds, wide shots): about 1 s more per image")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bodycapture",
        description="Expressive 3D humans (body, hands, face) from a single image, SMPL-X compatible.",
    )
    parser.add_argument("--version", action="version", version=f"bodycapture {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more output (-vv for debugging)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary; errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)  # -v also works after the subcommand
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more output")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="errors only")

    models = sub.add_parser("models", parents=[common], help="list the body models that can be loaded, with their licences")
    models.add_argument("--folder", action="append", default=[], metavar="DIR",
                        help="folder laid out like the official downloads (repeatable; default: $BODYCAPTURE_MODELS)")
    models.add_argument("--check", action="store_true", help="read and validate every file found")
    models.set_defaults(func=_cmd_models)

    detect = sub.add_parser("detect", parents=[common], help="detect 2D keypoints (MediaPipe) and write OpenPose JSON")
    detect.add_argument("input", help="an image or a folder of images")
    detect.add_argument("--out", required=True, metavar="DIR", help="writes DIR/NAME_keypoints.json per image")
    detect.add_argument("--show", action="store_true", help="also write DIR/NAME_rendered.png with the skeleton")
    detect.add_argument("--min-confidence", type=float, default=0.5,
                        help="MediaPipe's person detection threshold (default 0.5, also the lowest its detector reports)")
    _people_arguments(detect)
    detect.set_defaults(func=_cmd_detect)

    fitp = sub.add_parser("fit", parents=[common], help="fit the body model to photos or a video")
    fitp.add_argument("input", nargs="?", help="an image, a folder of images, a video, or a folder of frames with --clip")
    fitp.add_argument("--out", default="out", metavar="DIR", help="results go to DIR/NAME/ (default: out)")
    fitp.add_argument("--keypoints", metavar="FILE|DIR",
                      help="OpenPose JSON (a file, or a folder of NAME_keypoints.json) instead of detection")
    fitp.add_argument("--model", default="open", help="'open' (bundled, default), or an official model file/folder")
    fitp.add_argument("--gender", default="neutral", choices=["neutral", "male", "female"])
    fitp.add_argument("--config", metavar="FILE", help="schedule and settings (YAML or TOML; SMPLify-X keys work)")
    fitp.add_argument("--focal", type=float, help="focal length in pixels (default: EXIF, else the image diagonal; "
                      "SMPLify-X used 5000)")
    fitp.add_argument("--format", default="obj", help="mesh formats, comma-separated: obj, ply, glb")
    fitp.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda")
    fitp.add_argument("--batch-images", type=_positive_int, default=8, help="images fitted together in one batch")
    fitp.add_argument("--threads", type=_positive_int, help="torch threads for fitting (default: chosen for this machine)")
    _people_arguments(fitp)
    fitp.add_argument("--float64", action="store_true", help="fit in double precision")
    fitp.add_argument("--overwrite", action="store_true", help="replace existing results")
    fitp.add_argument("--no-report", action="store_true",
                      help="skip report.html in each result and index.html at the top of --out")
    fitp.add_argument("--show-config", action="store_true", help="print the schedule and settings")
    fitp.add_argument("--pose-prior", choices=["vposer", "gmm", "l2"], help="body-pose prior (default: vposer)")
    fitp.add_argument("--no-collision", action="store_true",
                      help="turn off the interpenetration term (on by default for models with hands)")
    video = fitp.add_argument_group("video", "video files (.mp4, .mov, ...), and folders of numbered frames with --clip")
    video.add_argument("--clip", action="store_true", help="a folder given is one clip of numbered frames, not photos")
    video.add_argument("--start", type=float, default=0.0, metavar="S", help="first second of the clip to use")
    video.add_argument("--end", type=float, metavar="S", help="second of the clip to stop at (excluded)")
    video.add_argument("--fps", type=float, help="resample the clip to this frame rate (never above its own)")
    video.add_argument("--every", type=_positive_int, default=1, metavar="N", help="then use every N-th frame")
    video.add_argument("--source-fps", type=float, metavar="F",
                       help="the frame rate of a frame folder (default 30), or to override a video's")
    video.add_argument("--min-track-frames", type=_positive_int, default=5, metavar="N",
                       help="drop people tracked in fewer frames (default: 5)")
    video.add_argument("--key-every", type=_positive_int, metavar="N",
                       help="a still fit every N frames anchors the tracks (default 2; 4: faster, less accurate)")
    video.add_argument("--smoothness", type=float, metavar="W",
                       help="weight of the temporal (3D acceleration) term (default 2; 0: none)")
    video.add_argument("--no-overlay-video", action="store_true", help="skip overlay.mp4")
    scale = fitp.add_argument_group("scale-out", "photos and clips fitted as tasks on a Ray cluster "
                                    "(pip install \"bodycapture[ray]\")")
    scale.add_argument("--engine", choices=["local", "ray"], default="local",
                       help="'ray': shards of photos and of clips' frames as Ray tasks, resumable (default: local)")
    scale.add_argument("--address", help="a running Ray cluster (e.g. auto, or HEAD:6379); default: a local one")
    scale.add_argument("--workers", type=_positive_int, help="tasks at once (default: the cluster's CPUs / --cpus-per-task)")
    scale.add_argument("--cpus-per-task", type=_positive_int, default=1, help="CPUs (and torch threads) per task")
    scale.add_argument("--gpus-per-task", type=float, default=0.0, help="GPUs per task (it then fits on cuda)")
    scale.add_argument("--shard-images", type=_positive_int, default=8, help="photos per task")
    scale.add_argument("--shard-frames", type=_positive_int, default=320,
                       help="frames of a clip per task (whole windows; each shard fits one window more)")
    fitp.set_defaults(func=_cmd_fit)

    evalp = sub.add_parser("eval", parents=[common], help="score the fitter on the synthetic suite or an EHF-like folder")
    evalp.add_argument("--suite", default="synthetic",
                       help="'synthetic' (default: the ten-pose suite), 'mocap' (held-out CMU motion-capture poses) "
                            "or a folder laid out like EHF")
    evalp.add_argument("--n", type=_positive_int, default=100, help="synthetic people")
    evalp.add_argument("--seed", type=int, default=0)
    evalp.add_argument("--config", metavar="FILE")
    evalp.add_argument("--model", default="open")
    evalp.add_argument("--gender", default="neutral", choices=["neutral", "male", "female"])
    evalp.add_argument("--focal", type=float, help="focal length for folder suites (EHF: 1498.22)")
    evalp.add_argument("--device", default=None)
    evalp.add_argument("--float64", action="store_true")
    evalp.add_argument("--json", default="eval.json", type=Path, help="where to write the scores")
    evalp.add_argument("--pose-prior", choices=["vposer", "gmm", "l2"], help="body-pose prior (default: vposer)")
    evalp.add_argument("--no-collision", action="store_true", help="turn off the interpenetration term")
    evalp.add_argument("--threads", type=_positive_int, help="torch threads (default: chosen for this machine)")
    evalp.add_argument("--landmarks3d", action="store_true",
                       help="synthetic suites: also give the fitter simulated MediaPipe-like 3D landmarks")
    evalp.set_defaults(func=_cmd_eval)

    samp = sub.add_parser("sample-poses", parents=[common], help="random bodies from the learned pose prior")
    samp.add_argument("--n", type=_positive_int, default=16)
    samp.add_argument("--out", required=True, metavar="DIR")
    samp.add_argument("--seed", type=int, default=0)
    samp.add_argument("--temperature", type=float, default=1.0, help="scale of the latent samples")
    samp.add_argument("--model", default="open")
    samp.add_argument("--gender", default="neutral", choices=["neutral", "male", "female"])
    samp.set_defaults(func=_cmd_sample_poses)
    return parser


def main(argv: list[str] | None = None) -> int:
    pin_native_threads()  # before numpy loads: native libraries on one thread, as Ray's workers (quiet.py)
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.ERROR if args.quiet else logging.WARNING - 10 * min(args.verbose, 2)
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
        # the work is unwound and its staging folders removed: a second Ctrl-C while the interpreter shuts down
        # must not turn the exit into a traceback or a death by SIGINT (seen once in CI: exit -2 after the line)
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("bodycapture: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # a full or read-only disk, a file that vanished: the system's words, one line
        if args.verbose >= 2:
            raise
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        print(f"bodycapture: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - a bug of ours: one line, the traceback with -vv
        if args.verbose >= 2:
            raise
        print(f"bodycapture: error: unexpected {type(err).__name__}: {err} (run with -vv for the traceback, "
              "and please report it)", file=sys.stderr)
        return 1


def run() -> None:
    """The `bodycapture` command: `main()`, then a quick exit. Once the output is flushed and the atexit
    handlers have run (Ray's shutdown, temporary folders), the interpreter's own teardown (unloading
    torch: about 0.3 s of every run, docs/benchmarks.md "The first result") has nothing left to do. The command
    imports torch without the modules only its tracers read (lazy.torch_without_tracing): it never traces."""
    from .lazy import torch_without_tracing

    with torch_without_tracing():
        code = main()
    import atexit

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
