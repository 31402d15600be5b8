"""The HTML report: its size, the time to write it, and the time until headless Chromium shows its first 3D frame.

    python benchmarks/report_render.py [--photo examples/photo.jpg] [--runs 5] [--screenshots]

Fits PHOTO once (the default settings, 1 torch thread) into a temporary folder, then:
- writes report.html again `--runs` times from the same fit (io/report.write_report) and reports the median time;
- opens it `--runs` times in a fresh page of headless Chromium (Debian's, driven by Playwright; WebGL through
  SwiftShader, i.e. on the CPU) and reports the median time from navigation start to the first rendered 3D
  frame (report.js records it) and to the page's load event;
- with --screenshots, writes docs/report.png (the page) and docs/report_views.png (front, side, top).
Figures go to docs/report_render.json. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the headless Chromium launcher the report tests use

import headless  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photo", type=Path, default=ROOT / "examples" / "photo.jpg")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--screenshots", action="store_true", help="write docs/report.png and docs/report_views.png")
    args = parser.parse_args()
    if headless.missing():
        raise SystemExit(headless.missing())

    import numpy as np
    import torch
    from PIL import Image

    from bodycapture.io.report import write_report
    from bodycapture.pipeline import fit_prepared, load_fit_model, prepare_image
    from bodycapture.keypoints.mediapipe import MediaPipeDetector
    from bodycapture.fitting import FitConfig

    torch.set_num_threads(1)
    with MediaPipeDetector() as detector:
        item = prepare_image(args.photo, detector=detector)
    result = fit_prepared([item], load_fit_model(), FitConfig())
    people = np.arange(result.num_people)

    with tempfile.TemporaryDirectory() as tmp:
        from bodycapture.io.overlay import render_overlay

        overlay = render_overlay(item.image, result.vertices.numpy(), result.faces, result.focal.numpy(),
                                 result.center.numpy(), item.image.shape[:2])
        page_path = Path(tmp) / "report.html"
        write_seconds = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            write_report(page_path, result, people, item.keypoints, item.image, overlay,
                         {"name": args.photo.stem, "input": str(args.photo.relative_to(ROOT)),
                          "focal_source": item.focal_source})
            write_seconds.append(time.perf_counter() - t0)

        first_frame, load = [], []
        with headless.browser() as open_page:
            for _ in range(args.runs):
                page, log = open_page(page_path, wait_for="body[data-rendered]")
                first_frame.append(float(page.evaluate("document.body.dataset.firstFrameMs")))
                load.append(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd"))
                errors = log.console_errors()
                page.close()
                if errors:
                    raise SystemExit(f"console errors: {errors}")
            if args.screenshots:
                page, _ = open_page(page_path, wait_for="body[data-rendered]")
                page.wait_for_function("document.body.dataset.frames >= 2")
                page.screenshot(path=str(ROOT / "docs" / "report.png"), full_page=True)
                views = []
                for view in ("front", "side", "top"):
                    page.click(f"button[data-view={view}]")
                    views.append(Image.open(io.BytesIO(page.locator("#view3d").screenshot())).convert("RGB"))
                strip = Image.new("RGB", (sum(v.width for v in views), max(v.height for v in views)))
                x = 0
                for v in views:
                    strip.paste(v, (x, 0))
                    x += v.width
                strip.save(ROOT / "docs" / "report_views.png")

        figures = {
            "photo": str(args.photo.relative_to(ROOT)), "people": int(result.num_people), "runs": args.runs,
            "report_bytes": page_path.stat().st_size,
            "write_seconds_median": round(statistics.median(write_seconds), 3),
            "first_frame_ms_median": round(statistics.median(first_frame)),
            "load_event_ms_median": round(statistics.median(load)),
            "browser": "headless Chromium (Debian), SwiftShader WebGL, 2-core VM",
        }
    print(json.dumps(figures, indent=2))
    (ROOT / "docs" / "report_render.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
