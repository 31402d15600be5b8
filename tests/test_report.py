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
from conftest import quick_config

DATA = Path(__file__).resolve().parent / "data"
LSP = DATA / "openpose" / "lsp_im1010.jpg"
LSP_JSON = DATA / "openpose" / "lsp_im1010_keypoints.json"


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
    report = capture(photos, config=quick_config(), out=out, keypoints=kps, progress=False, threads=1)
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
    assert report.index == out / "index.html" and report.summary().endswith(f"to look at them: {out / 'index.html'}")


def test_no_report_when_asked(tmp_path):
    report = capture(LSP, config=quick_config(), out=tmp_path, keypoints=LSP_JSON, progress=False, threads=1,
                     report=False)
    assert report.images[0].status == "done" and report.index is None and "to look at them" not in report.summary()
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
        assert not page.locator("#timeline").is_visible() and not page.locator("#view-message").is_visible()
        box = page.locator("#view3d").bounding_box()  # dragging on the canvas turns the view (OrbitControls)
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2 + 120, box["y"] + box["height"] / 2 + 30, steps=8)
        page.mouse.up()
        assert np.abs(_canvas(page) - front).mean() > 5
        page.click("button[data-view=front]")

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


# ---------------------------------------------------------------------------------------------------------------
# animation (video results): each track's rest mesh skinned per frame in the browser


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """Two tracks of the open model over 8 frames at 10 fps: one walks right for 6 frames while its pose
    blends from rest to a random pose, the other walks in frames 2-7. Camera space, upright, facing the camera."""
    import torch

    import bodycapture
    from bodycapture.io.report import write_animation_report

    model = bodycapture.load_model()
    g = torch.Generator().manual_seed(0)
    tracks, expected = [], []
    for T, x0, z in ((6, -0.6, 4.0), (6, 0.7, 5.0)):
        s = torch.linspace(0, 1, T)[:, None]
        params = {"betas": 0.8 * torch.randn(1, model.num_betas, generator=g).expand(T, -1),
                  "global_orient": torch.tensor([[np.pi, 0.0, 0.0]]).expand(T, 3),
                  "body_pose": s * 0.4 * torch.randn(1, 63, generator=g),
                  "transl": torch.stack([x0 + 0.1 * s[:, 0], torch.full((T,), 0.3), torch.full((T,), z)], 1)}
        tracks.append({k: v.numpy() for k, v in params.items()})
        with torch.no_grad():
            expected.append(to_viewer_frame(model(**params).vertices.double().numpy()))
    path = tmp_path_factory.mktemp("clip") / "report.html"
    write_animation_report(path, model, tracks, fps=10, focal=(900.0, 900.0), center=(320.0, 240.0),
                           image_size=(480, 640), first_frames=[0, 2], info={"name": "clip"})
    return path, expected, [0, 2]


def _skin_in_numpy(anim: dict, k: int, frame: int, num_vertices: int) -> np.ndarray:
    """What report.js computes for track k at clip frame `frame`, in numpy (from the page's data)."""
    K, J = anim["influences"], anim["num_joints"]
    joints = _decode(anim["skin_joints"], np.uint8).reshape(num_vertices, K).astype(int)
    weights = _decode(anim["skin_weights"], np.uint16).reshape(num_vertices, K) / 65535.0
    track = anim["tracks"][k]
    rest = _decode(track["rest"], np.float32).reshape(num_vertices, 3).astype(np.float64)
    A = _decode(track["transforms"], np.float32).reshape(track["frames"], J, 3, 4)[frame - track["first_frame"]]
    blended = np.einsum("vk,vkrc->vrc", weights, A[joints].astype(np.float64))
    return np.einsum("vrc,vc->vr", blended[..., :3], rest) + blended[..., 3]


def test_animation_data_reproduces_the_model_per_frame(clip):
    path, expected, firsts = clip
    data = _embedded(path)
    anim = data["animation"]
    assert anim["frames"] == 8 and anim["fps"] == 10 and [t["first_frame"] for t in anim["tracks"]] == firsts
    assert anim["influences"] <= 8 and data["people"] == []
    for k, verts in enumerate(expected):
        for f in range(len(verts)):
            got = _skin_in_numpy(anim, k, firsts[k] + f, data["num_vertices"])
            np.testing.assert_allclose(got, verts[f], atol=2e-4)  # uint16 weights, float32 transforms


@pytest.mark.browser
@needs_browser
def test_animation_plays_in_headless_chromium(clip):
    path, expected, firsts = clip
    with headless.browser() as open_page:
        page, log = open_page(path, wait_for="body[data-rendered]")
        assert page.locator("#timeline").is_visible() and not page.locator("#photo-panel").is_visible()
        assert page.evaluate("bodycaptureReport.visible(1)") is False  # track 1 starts at frame 2
        first = _canvas(page)
        page.locator("#frame").fill("3")
        assert page.evaluate("bodycaptureReport.frame()") == 3 and page.evaluate("bodycaptureReport.visible(1)")
        assert "frame 4 / 8" in page.locator("#frame-label").inner_text()
        for k in (0, 1):  # the browser's skinning equals the model at that frame
            got = np.array(page.evaluate(f"bodycaptureReport.positions({k})")).reshape(-1, 3)
            np.testing.assert_allclose(got, expected[k][3 - firsts[k]], atol=2e-4)
        assert np.abs(_canvas(page) - first).mean() > 0.5
        page.locator("#frame").fill("7")
        assert page.evaluate("bodycaptureReport.visible(0)") is False  # track 0 ended at frame 5
        page.click("#play")
        page.wait_for_function("bodycaptureReport.frame() !== 7", timeout=10000)
        page.click("#play")
    assert log.console_errors() == [] and log.failed == []


def test_index_rows_carry_the_quality_warnings(tmp_path):
    from bodycapture.pipeline import CaptureReport, ImageReport

    done = ImageReport(tmp_path / "a.jpg", "a", status="done", people_found=2, people_fitted=2,
                       doubtful=[f"{tmp_path / 'a.jpg'}: person 1: doubtful fit (implausible pose (prior energy 57))"])
    empty = ImageReport(tmp_path / "b.jpg", "b", status="empty", message=f"{tmp_path / 'b.jpg'}: no person found")
    rows = {r["name"]: r for r in index_rows(CaptureReport([done, empty], tmp_path))}
    assert rows["a"]["doubtful"] == 1 and rows["a"]["message"] == "person 1: doubtful fit (implausible pose (prior energy 57))"
    assert rows["b"]["status"] == "empty" and rows["b"]["message"].endswith("no person found")
    assert rows["a"]["report"] is None  # no result folder written: nothing to link
