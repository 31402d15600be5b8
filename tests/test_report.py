"""The HTML report (report.html per result, index.html per run): what it embeds, that it stands alone
(no network, no file beside it needed), and, in headless Chromium, that it renders without errors, that its
3D view draws the people and its view buttons change the picture, and that the index lists failures."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bodycapture.io.report import _script_json, index_rows
from bodycapture.io.results import to_viewer_frame
from bodycapture.keypoints.openpose import read_keypoints, write_openpose
from bodycapture.keypoints.types import ImageKeypoints
from bodycapture.pipeline import capture

import headless

DATA = Path(__file__).resolve().parent / "data"
LSP = DATA / "openpose" / "lsp_im1010.jpg"
LSP_JSON = DATA / "openpose" / "lsp_im1010_keypoints.json"


def _quick_config():
    from bodycapture.fitting import FitConfig
    from bodycapture.fitting.lbfgs import LBFGSSettings

    config = FitConfig(interpenetration=False)
    config.optimizer = LBFGSSettings(max_iter=3)
    config.camera_optimizer = LBFGSSettings(max_iter=3)
    return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A folder run (fitted once per module): `pair.jpg`, two copies of one photo side by side with two people,
    and `broken.jpg`, not an image. Short fits: the report shows whatever the fit gave."""
    root = tmp_path_factory.mktemp("report")
    photos, kps = root / "photos", root / "keypoints"
    photos.mkdir()
    kps.mkdir()
    image = np.asarray(Image.open(LSP).convert("RGB"))
    h, w = image.shape[:2]
    Image.fromarray(np.concatenate([image, image], axis=1)).save(photos / "pair.jpg", quality=92)
    one = read_keypoints(LSP_JSON).points[0]
    other = one.copy()
    other[:, 0] = np.where(other[:, 2] > 0, other[:, 0] + w, 0.0)
    write_openpose(kps / "pair_keypoints.json", ImageKeypoints(np.stack([one, other]), (h, 2 * w)))
    (photos / "broken.jpg").write_bytes(b"not a jpeg at all")
    out = root / "out"
    report = capture(photos, config=_quick_config(), out=out, keypoints=kps, progress=False, threads=1)
    return report, out


def _embedded(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    m = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(m[1])


def _decode(b64: str, dtype) -> np.ndarray:
    import base64

    return np.frombuffer(base64.b64decode(b64), dtype=dtype)


def _read_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    lines = path.read_text().splitlines()
    v = np.array([[float(x) for x in line.split()[1:4]] for line in lines if line.startswith("v ")])
    f = np.array([[int(x.split("/")[0]) - 1 for x in line.split()[1:4]] for line in lines if line.startswith("f ")])
    return v, f


def test_report_embeds_the_fitted_people(run):
    report, out = run
    assert [im.status for im in report.images] == ["failed", "done"]  # broken.jpg, pair.jpg
    folder = out / "pair"
    data = _embedded(folder / "report.html")
    lsp_w, lsp_h = Image.open(LSP).size
    assert len(data["people"]) == 2 and (data["info"]["width"], data["info"]["height"]) == (2 * lsp_w, lsp_h)
    faces = _decode(data["faces"], np.dtype(data["face_type"])).reshape(-1, 3)
    params = np.load(folder / "params.npz")
    for k, person in enumerate(data["people"]):
        verts = _decode(person["vertices"], np.float32).reshape(-1, 3)
        obj_v, obj_f = _read_obj(folder / f"mesh_{k:03d}.obj")
        np.testing.assert_allclose(verts, obj_v, atol=1e-5)  # the same mesh as the OBJ, in the viewer frame
        np.testing.assert_array_equal(faces, obj_f)
        # the viewer frame: y up, the people in front of the camera (negative z)
        assert (verts[:, 2] < 0).all()
        transl = np.array([row["values"] for row in person["params"] if row["name"] == "transl"][0])
        np.testing.assert_allclose(transl, params["transl"][k], atol=1e-4)
        assert sum(row["name"].startswith("body_pose: ") for row in person["params"]) == 21
        assert person["quality"]["doubtful"] == bool(params["quality_doubtful"][k])
        detected = np.array(person["detected"])
        fitted_kp = read_keypoints(folder / "keypoints.json").points[k]
        np.testing.assert_allclose(detected, fitted_kp, atol=0.051)
        assert person["fit_seconds"] == pytest.approx(float(params["fit_seconds"][k]), abs=1e-3) and person["fit_seconds"] > 0
    assert data["photo"].startswith("data:image/jpeg;base64,") and data["overlay"].startswith("data:image/jpeg;base64,")
    # the two people stand side by side: their meshes do not overlap in x
    xs = [_decode(p["vertices"], np.float32).reshape(-1, 3)[:, 0] for p in data["people"]]
    assert xs[0].max() < xs[1].min()


def test_report_stands_alone_and_is_small(run):
    _, out = run
    page = out / "pair" / "report.html"
    text = page.read_text(encoding="utf-8")
    assert page.stat().st_size < 3_000_000  # two people, photo and overlay, three.js: under the 3 MB of one person
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)  # nothing fetched from the network
    assert "<script src" not in text and "<link" not in text  # scripts and styles inline
    from importlib import resources

    viewer = resources.files("bodycapture").joinpath("data", "viewer")
    assert "MIT License" in viewer.joinpath("three.LICENSE").read_text()
    assert "three.js r187" in viewer.joinpath("three.min.js").read_text()[:200]


def test_embedded_data_cannot_close_its_script_element():
    text = _script_json({"name": "</script><script>alert(1)</script>"})
    assert "</" not in text and json.loads(text)["name"] == "</script><script>alert(1)</script>"


def test_index_lists_every_image_and_the_failure(run):
    report, out = run
    rows = {r["name"]: r for r in index_rows(report)}
    assert rows["pair"]["status"] == "done" and rows["pair"]["people"] == 2 and rows["pair"]["report"] == "pair/report.html"
    assert rows["broken"]["status"] == "failed" and "broken.jpg" in rows["broken"]["message"]
    assert rows["broken"]["report"] is None and rows["broken"]["thumbnail"] is None
    embedded = {r["name"]: r for r in _embedded(out / "index.html")["rows"]}
    assert embedded.keys() == rows.keys()


def test_no_report_when_asked(tmp_path):
    report = capture(LSP, config=_quick_config(), out=tmp_path, keypoints=LSP_JSON, progress=False, threads=1,
                     report=False)
    assert report.images[0].status == "done"
    assert not (tmp_path / "index.html").exists() and not (tmp_path / "lsp_im1010" / "report.html").exists()
    assert (tmp_path / "lsp_im1010" / "overlay.png").exists()


# ---------------------------------------------------------------------------------------------------------------
# in a real browser: headless Chromium (CI installs it; elsewhere these skip unless BODYCAPTURE_REQUIRE_BROWSER=1)

_why_not = headless.missing()
needs_browser = pytest.mark.skipif(_why_not is not None and not os.environ.get("BODYCAPTURE_REQUIRE_BROWSER"),
                                   reason=_why_not or "")
BACKGROUND = np.array([0x20, 0x24, 0x2C])  # the 3D view's background colour (report.js)


def _canvas(page) -> np.ndarray:
    import io

    return np.asarray(Image.open(io.BytesIO(page.locator("#view3d").screenshot())).convert("RGB")).astype(int)


def _drawn(pixels: np.ndarray) -> float:
    """Fraction of the canvas that is not background."""
    return float((np.abs(pixels - BACKGROUND).sum(-1) > 30).mean())


@pytest.mark.browser
@needs_browser
def test_report_renders_in_headless_chromium(run, tmp_path):
    _, out = run
    with headless.browser() as open_page:
        page, log = open_page(out / "pair" / "report.html", wait_for="body[data-rendered]")
        assert page.evaluate("document.body.dataset.rendered") == "yes"  # WebGL worked, a frame was drawn
        page.wait_for_function("document.body.dataset.frames >= 2")  # the photo texture arrived and was drawn
        front = _canvas(page)
        assert _drawn(front) > 0.3  # the front view: the photo on its image plane and the people over it

        page.click("button[data-view=side]")
        side = _canvas(page)
        assert 0.01 < _drawn(side) < 0.9 and np.abs(side - front).mean() > 10
        page.click("button[data-view=top]")
        top = _canvas(page)
        assert 0.01 < _drawn(top) < 0.9 and np.abs(top - side).mean() > 5
        assert page.locator("button.active").inner_text() == "top"

        # hiding a person changes the picture; hiding the image plane too
        page.locator("#person-1 input[type=checkbox]").uncheck()
        assert np.abs(_canvas(page) - top).mean() > 0.5
        page.click("button[data-view=front]")
        with_plane = _canvas(page)
        page.locator("#show-plane").uncheck()
        assert _drawn(_canvas(page)) < _drawn(with_plane) - 0.2

        # the photo panel: keypoint layers toggle, two skeletons drawn
        assert page.locator("#detected > g").count() == 2
        assert page.locator("#fitted").evaluate("g => getComputedStyle(g).display") == "none"
        page.locator("#show-fitted").check()
        assert page.locator("#fitted").evaluate("g => getComputedStyle(g).display") != "none"
        page.locator("#show-detected").uncheck()
        assert page.locator("#detected").evaluate("g => getComputedStyle(g).display") == "none"
        assert page.locator(".person").count() == 2
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)

    assert log.console_errors() == []
    assert log.failed == []
    assert all(url.startswith(("file:", "data:", "blob:")) for url in log.requests), log.requests


@pytest.mark.browser
@needs_browser
def test_index_in_headless_chromium_lists_the_failure_and_sorts(run):
    _, out = run
    with headless.browser() as open_page:
        page, log = open_page(out / "index.html", wait_for="#index tbody tr")
        names = lambda: page.locator("#index tbody tr").evaluate_all("rows => rows.map(r => r.dataset.name)")  # noqa: E731
        assert sorted(names()) == ["broken", "pair"]
        assert "broken.jpg" in page.locator("tr.failed").inner_text()
        assert "1 failed" in page.locator("#summary").inner_text()
        header = page.locator("th[data-key=people]")
        header.click()
        assert names() == ["broken", "pair"]  # ascending: 0 people, then 2
        header.click()
        assert names() == ["pair", "broken"]
        assert page.locator("tr.done img").evaluate("img => img.complete && img.naturalWidth > 0")  # the thumbnail
        assert page.locator("tr.done a").first.get_attribute("href") == "pair/report.html"
    assert log.console_errors() == [] and log.failed == []
