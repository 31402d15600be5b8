"""The capture pipeline on real photos, as `bodycapture fit FOLDER` runs it: people found against the
hand-counted people of each photo (tests/data/people_counts.json), and how well each fit explains what
was detected (median 2D distance between the fitted model's keypoints and the detections, per group).

    python benchmarks/real_photos.py [--images DIR] [--out docs/real_photos.json] [--overlays docs/real]
    python benchmarks/real_photos.py --mirrored     # the held-out check: docs/real_photos_mirrored.json

Default images: ../shared/data/images when present (all 14 COCO photos), else tests/data/images.
There is no 3D truth for these photos. Medians and means are over every fitted person; photos where a
counted person was not found say so in the found / expected column.

--mirrored runs the same on the photos mirrored left to right (lossless PNG copies; the hand counts hold for
them too). The detectors are not mirror-symmetric, so the mirrored photos fail differently: a held-out
check for what was chosen while looking at the originals (no overlays are written for them).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

import bodycapture

ROOT = Path(__file__).resolve().parents[1]


def summarise(rows: dict) -> dict:
    """Totals over the photos. Without per-person ground truth, found people are matched to the count per
    photo: min(found, counted) of them can be counted people (an upper bound on recall), and what is found
    beyond the count is either an uncounted person (under 10 % of the height, less than half visible) or
    a false detection: look at the overlays."""
    counted = {k: r["expected"] or 0 for k, r in rows.items()}
    return {"people_found": sum(r["found"] for r in rows.values()), "people_expected": sum(counted.values()),
            "counted_found": sum(min(r["found"], counted[k]) for k, r in rows.items()),
            "beyond_count": sum(max(r["found"] - counted[k], 0) for k, r in rows.items())}


def mirrored_copies(folder: Path, into: Path) -> Path:
    """Each photo of `folder` mirrored left to right, as a lossless PNG of the same stem in `into`."""
    from PIL import Image, ImageOps

    into.mkdir(parents=True)
    for path in sorted(folder.glob("*.jpg")):
        with Image.open(path) as image:
            ImageOps.mirror(image.convert("RGB")).save(into / f"{path.stem}.png")
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = ROOT.parent / "shared" / "data" / "images"
    parser.add_argument("--images", type=Path, default=shared if shared.is_dir() else ROOT / "tests" / "data" / "images")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "real_photos.json")
    parser.add_argument("--overlays", type=Path, default=ROOT / "docs" / "real")
    parser.add_argument("--thorough", action="store_true", help="the finer person search (bodycapture fit --thorough)")
    parser.add_argument("--mirrored", action="store_true", help="the photos mirrored left to right (held-out check)")
    args = parser.parse_args()
    if args.mirrored and args.out == ROOT / "docs" / "real_photos.json":
        args.out = ROOT / "docs" / "real_photos_mirrored.json"
    expected = json.loads((ROOT / "tests" / "data" / "people_counts.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        images = mirrored_copies(args.images, Path(tmp) / "mirrored") if args.mirrored else args.images
        report = bodycapture.capture(images, out=Path(tmp) / "results", progress=False, thorough=args.thorough)
        if not args.mirrored:
            args.overlays.mkdir(parents=True, exist_ok=True)
        rows = {}
        for item in report.images:
            name = f"{item.input.stem}.jpg" if args.mirrored else item.input.name  # the counts' key
            row = {"found": item.people_found, "expected": expected.get(name, {}).get("people"),
                   "fitted": item.people_fitted, "status": item.status, "seconds": round(item.seconds, 2),
                   "doubtful": len(item.doubtful)}
            for group in ("body", "hands", "face"):
                values = [r[group] for r in item.residuals_px if group in r]
                if values:
                    row[f"px_{group}"] = round(float(np.median(values)), 1)
            if not args.mirrored and item.folder is not None and (item.folder / "overlay.png").exists():
                shutil.copy(item.folder / "overlay.png", args.overlays / f"{item.input.stem}.png")
            rows[name] = row
            print(f"{name}: found {row['found']} / {row['expected']}, "
                  + ", ".join(f"{k} {v}" for k, v in row.items() if k.startswith("px_")))
    summary = {**summarise(rows), "thorough": args.thorough, "mirrored": args.mirrored, "summary": report.summary(),
               "photos": rows}
    args.out.write_text(json.dumps(summary, indent=1))
    print(f"found {summary['people_found']} people: at most {summary['counted_found']} of the "
          f"{summary['people_expected']} counted, {summary['beyond_count']} beyond the count; {report.summary()}")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
