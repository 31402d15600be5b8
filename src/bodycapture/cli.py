"""The `bodycapture` command.

    bodycapture --version
    bodycapture models [--folder DIR ...] [--check]

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
