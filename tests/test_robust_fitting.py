"""Fits that land right: starts as batch items, the 3D-landmark start and term, quality flags, and honest
evaluation summaries. Ground truth from posing the open model (evaluation/synthetic.py)."""

import dataclasses

import numpy as np
import pytest
import torch

import bodycapture
from bodycapture.errors import BodyCaptureError
from bodycapture.evaluation.metrics import pa_mpjpe, v2v
from bodycapture.evaluation.runner import EvalReport, summary_table
from bodycapture.evaluation.synthetic import NoiseModel, generate
from bodycapture.fitting import FitConfig, fit
from bodycapture.fitting.lbfgs import LBFGSSettings
from bodycapture.fitting.start import make_starts, world_landmark_start
from bodycapture.keypoints.regressors import KeypointRegressor
from bodycapture.keypoints.types import ImageKeypoints
from bodycapture.models.lbs import axis_angle_to_matrix
from bodycapture.priors import make_pose_prior

# seed 0 of the ten-pose suite: 3 sitting and 14 crouching facing the camera (thighs towards it: from 2D
# alone the fit leans the torso forward instead), 6 turning away (seen from behind)
PEOPLE = [3, 6, 14]


@pytest.fixture(scope="module")
def model():
    return bodycapture.load_model()


@pytest.fixture(scope="module")
def suite(model):
    return generate(model, 15, 0, noise=NoiseModel(world_sigma=(0.03, 0.03, 0.06)))


@pytest.fixture(scope="module")
def fits(model, suite):
    """The same people fitted with their simulated 3D landmarks and from their 2D keypoints alone."""
    with_3d = [suite.keypoints[i] for i in PEOPLE]
    only_2d = [dataclasses.replace(k, world=None) for k in with_3d]
    focal = suite.focal[PEOPLE].numpy()
    return fit(with_3d, model, focal_length=focal), fit(only_2d, model, focal_length=focal)


def _errors(result, suite) -> np.ndarray:
    return (v2v(result.vertices.double(), suite.vertices[PEOPLE].double()) * 1000).numpy()


def test_the_3d_landmark_start_recovers_what_2d_leaves_ambiguous(fits, suite):
    with_3d, only_2d = fits
    e3, e2 = _errors(with_3d, suite), _errors(only_2d, suite)
    assert with_3d.start == ["world"] * 3 and only_2d.start[0].split(",")[0] in ("shoulders", "side")
    assert (e3 < 110).all(), e3
    # sitting: the 2D-only fit lands in the leaning-forward minimum (v2v measured 127 mm against 45 with the
    # 3D start; 246 against 45 with 30 iterations in every stage; 95 against 33 on the AMD VM of 2026-12-02,
    # the fits following the CPU's rounding); crouching: the default 60 iterations in the first stages take
    # the 2D-only fit out of it (95 against 73 mm; with 30 iterations 162 against 91)
    assert e2[0] > 2 * e3[0] and e2[0] > e3[0] + 50, (e2, e3)
    assert e3[2] < e2[2] + 10, (e2, e3)


def test_a_person_seen_from_behind_is_fitted_facing_away(fits, suite, model):
    with_3d, _ = fits
    assert bool(with_3d.flipped[1])
    forward = axis_angle_to_matrix(with_3d.params["global_orient"][1:2].double())[0, :, 2]  # the body's front
    true_forward = axis_angle_to_matrix(suite.params["global_orient"][6:7].double())[0, :, 2]
    assert forward[2] > 0.5 and float(forward @ true_forward) > 0.9  # away from the camera, as the truth


def test_world_landmark_ik_matches_exact_landmarks(model, suite):
    """From exact (noise-free) landmarks the inverse kinematics puts every limb where the landmarks say:
    body joints within a few centimetres after alignment, and the body's front where the truth's is."""
    exact = generate(model, 10, 0, noise=NoiseModel(world_sigma=(0.0, 0.0, 0.0), world_hidden_confidence=1.0))
    world = torch.as_tensor(np.concatenate([k.world for k in exact.keypoints]), dtype=torch.float32)
    prior = make_pose_prior("vposer", 63)
    orient, latent = world_landmark_start(world, model, KeypointRegressor(model), prior)
    out = model(global_orient=orient, body_pose=prior.decode(latent))
    true = model(global_orient=exact.params["global_orient"].float(), body_pose=exact.params["body_pose"].float())
    errors = pa_mpjpe(out.joints[:, :22].double(), true.joints[:, :22].double()) * 1000
    assert errors.max() < 70, errors
    front = axis_angle_to_matrix(orient.double())[:, :, 2]
    true_front = axis_angle_to_matrix(exact.params["global_orient"].double())[:, :, 2]
    assert ((front * true_front).sum(1) > 0.9).all()


def test_upper_body_with_hips_out_of_frame_is_sane_or_flagged(model, suite):
    """The coco_294 case: an upper body, hips and legs out of the frame. The fit must either keep a sane
    upper body or say that it is doubtful; it must never pass silently with a twisted body."""
    kp = suite.keypoints[0]
    points = kp.points.copy()
    lower = [8, 9, 10, 11, 12, 13, 14, 19, 20, 21, 22, 23, 24]  # hips, legs, feet (BODY_25)
    points[:, lower] = 0.0
    result = fit(ImageKeypoints(points, kp.image_size), model, focal_length=float(suite.focal[0]))
    upper = [0, 3, 6, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]  # pelvis..wrists (SMPL-X joints) without the legs
    error = float(pa_mpjpe(result.joints[:, upper].double(), suite.joints[0:1, upper].double())[0]) * 1000
    assert error < 80 or bool(result.quality.doubtful[0]), error
    assert result.quality.residual["body"][0] < 5.0  # what was seen is explained


def test_a_fit_that_misses_its_keypoints_is_doubtful_and_says_why(model, suite, tmp_path):
    cfg = FitConfig(starts=("shoulders",))
    cfg.optimizer = LBFGSSettings(max_iter=1)
    cfg.camera_optimizer = LBFGSSettings(max_iter=1)
    cfg.stages[-1].settle_iter = 0
    result = fit(suite.keypoints[4], model, cfg, focal_length=float(suite.focal[4]))  # a crouch, barely fitted
    q = result.quality
    assert bool(q.doubtful[0]) and any("body keypoints not reached" in r for r in q.reasons[0]), q.reasons
    result.save(tmp_path / "person", keypoints=suite.keypoints[4])
    saved = np.load(tmp_path / "person" / "params.npz")
    assert bool(saved["quality_doubtful"][0]) and saved["quality_residual_body"][0] > 5.0
    assert str(saved["start"][0]) == "shoulders"


def test_pose_starts_are_screened_after_the_camera_stage(model, suite):
    cfg = FitConfig(starts=("shoulders", "poses"), pose_starts_kept=2, prune_after_stage=0)
    cfg.optimizer = LBFGSSettings(max_iter=2)
    cfg.stages = cfg.stages[:2]
    kps = [suite.keypoints[i] for i in (0, 1)]
    result = fit(kps, model, cfg, focal_length=suite.focal[[0, 1]].numpy())
    assert result.starts.tolist() == [17, 17]  # the mean pose and 16 pose clusters each
    assert [s.items for s in result.stages] == [34, 6, 2]  # camera: all; then 1 + 2 each; pruned after stage 0
    assert set(result.start) <= {"shoulders", "poses"}


def test_start_kinds_are_validated_and_everybody_gets_a_start(model, suite):
    with pytest.raises(BodyCaptureError, match="starts"):
        FitConfig(starts=("sideways",)).validate()
    kp = torch.as_tensor(np.concatenate([suite.keypoints[i].points for i in (0, 1)]), dtype=torch.float32)
    world = torch.as_tensor(np.concatenate([suite.keypoints[i].world for i in (0, 1)]), dtype=torch.float32)
    world[1, :, 3] = 0  # the second person has no 3D landmarks: the 2D start instead
    prior = make_pose_prior("vposer", 63)
    starts = make_starts(kp, world, model, KeypointRegressor(model), prior, ("world",), 25.0)
    assert sorted(zip(starts.owner.tolist(), starts.kind)) == [(0, "world"), (1, "shoulders")]


def test_eval_summaries_are_over_all_people_with_failures_beside_them():
    per_person = {"pa_v2v_all": np.array([50.0, 60.0, 250.0, 70.0]), "pa_mpjpe_body": np.array([40.0, 50, 220, 60]),
                  "failed": np.array([False, False, True, False])}
    report = EvalReport("test", per_person, 1.0, 4)
    d = report.to_dict()
    assert d["mean"]["pa_v2v_all"] == pytest.approx(np.mean(d["per_person"]["pa_v2v_all"])) == 107.5
    assert d["median"]["pa_v2v_all"] == 65.0
    assert d["failures"] == 1 and d["failure_rate"] == 0.25
    table = summary_table(report)
    assert "107.5" in table and "1/4 (25 %)" in table and "failures included" in table


def test_true_bodies_are_rarely_flagged_for_their_collisions(model):
    """The colliding-pairs flag is calibrated on true bodies: a correct body with its hands near its face
    touches itself, and must not be called doubtful for it (at 400 pairs, 9 % of the motion-capture suite's
    true bodies were)."""
    from bodycapture.collision.penalty import CollisionTerm
    from bodycapture.evaluation.synthetic import mocap_test_poses
    from bodycapture.fitting.quality import THRESHOLDS

    config = FitConfig()
    term = CollisionTerm.for_model(model, config.collision, config.ignored_part_pairs)
    counts = []
    for kwargs in ({}, {"body_poses": mocap_test_poses()}):
        truth = generate(model, n=40, seed=5, **kwargs)
        counts += term.search(truth.vertices).counts(len(truth.vertices)).tolist()
    counts = np.array(counts)
    assert np.median(counts) > 10  # the search sees the contacts of true bodies: the check below means something
    assert (counts > THRESHOLDS["collisions"]).mean() <= 0.03, np.sort(counts)[-5:]


def test_the_command_line_warns_about_a_doubtful_fit_and_counts_it(tmp_path, capsys, caplog):
    """One warning line naming the photo and the person, and the closing line counts doubtful fits."""
    from pathlib import Path

    from bodycapture.cli import main

    data = Path(__file__).resolve().parent / "data" / "openpose"
    cfg = tmp_path / "rushed.yaml"
    # one L-BFGS iteration per stage and none settling: the keypoints are not reached
    cfg.write_text("maxiters: 1\nstage_settle_iters: [0, 0, 0, 0, 0]\n")
    argv = ["fit", str(data / "lsp_im1010.jpg"), "--keypoints", str(data / "lsp_im1010_keypoints.json"),
            "--config", str(cfg), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    captured = capsys.readouterr()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "doubtful fit" in r.getMessage()]
    assert len(warnings) == 1 and "lsp_im1010.jpg: person 0" in warnings[0] and "body keypoints" in warnings[0]
    assert "1 fitted, 1 doubtful" in captured.out
    saved = np.load(tmp_path / "out" / "lsp_im1010" / "params.npz")
    assert bool(saved["quality_doubtful"][0])


def test_iterations_can_be_set_per_stage(model, suite, tmp_path):
    from bodycapture.fitting import load_config

    path = tmp_path / "fit.yaml"
    path.write_text("stage_maxiters: [1, 2, 60, 60, 60]\n")
    cfg = load_config(path)
    assert [st.max_iter for st in cfg.stages] == [1, 2, 60, 60, 60]
    assert "max 1, 2, 60, 60, 150+60 iterations" in cfg.summary()  # the last stage settles first
    cfg.stages = cfg.stages[:2]
    result = fit(suite.keypoints[0], model, cfg, focal_length=float(suite.focal[0]))
    assert int(result.stages[1].iterations[0]) <= 1 and int(result.stages[2].iterations[0]) <= 2
    path.write_text("stage_maxiters: [1, 2, -3, 60, 60]\n")
    with pytest.raises(BodyCaptureError, match="max_iter"):
        load_config(path).validate()


def test_the_last_stage_settles_the_keypoints_before_the_collision_term(model, suite, tmp_path):
    """The hand and face points switched on in the last stage pull the body off its keypoints; the default
    settle iterations (without the collision term) bring it back: the fitted body keypoints (those the fit
    is given) lie closer to their input than without them, within 1.5x of the distance of the true
    keypoints (the added noise)."""
    from bodycapture.fitting import load_config
    from bodycapture.keypoints.layout import BODY, IGNORED_BY_DEFAULT

    people = [0, 5, 7]  # standing, pointing, hands near the face: fits in the right reading
    keypoints = [dataclasses.replace(suite.keypoints[i], world=None) for i in people]
    cfg = FitConfig()
    assert cfg.stages[-1].settle_iter > 0 and all(st.settle_iter == 0 for st in cfg.stages[:-1])
    settled = fit(keypoints, model, cfg, focal_length=suite.focal[people].numpy())
    cfg.stages[-1].settle_iter = 0
    loose = fit(keypoints, model, cfg, focal_length=suite.focal[people].numpy())
    fitted = np.setdiff1d(BODY, IGNORED_BY_DEFAULT)
    detected = np.concatenate([k.points for k in keypoints])[:, fitted]
    seen = detected[..., 2] > 0

    def residual(kp2d):
        return float((np.linalg.norm(kp2d[:, fitted] - detected[..., :2], axis=-1) * seen).sum() / seen.sum())

    noise = residual(suite.keypoints2d[people].numpy())
    tight, free = residual(settled.keypoints_2d.numpy()), residual(loose.keypoints_2d.numpy())
    assert tight < 0.8 * free and tight < 1.5 * noise, (tight, free, noise)
    assert int(settled.stages[-1].iterations.max()) > cfg.stages[-1].max_iter  # the report counts them
    path = tmp_path / "fit.yaml"
    path.write_text("stage_settle_iters: [0, 0, 0, 10, 0]\n")
    loaded = load_config(path)
    assert [st.settle_iter for st in loaded.stages] == [0, 0, 0, 10, 0]
    assert "60, 60, 60, 10+60, 30 iterations" in loaded.summary()
    path.write_text("stage_settle_iters: [0, 0, 0, 0, -1]\n")
    with pytest.raises(BodyCaptureError, match="settle_iter"):
        load_config(path)


def test_depth_flips_mirror_one_bone_and_keep_every_other():
    """Each copy mirrors its bones' depth about their parent end: the image of every point under an
    orthographic camera, every bone's length and every other bone's direction stay; shallow bones are
    not flipped (the copy would be the same reading)."""
    from bodycapture.fitting.losses import BONES
    from bodycapture.fitting.start import DEPTH_FLIPS, depth_flips

    torch.manual_seed(0)
    points = torch.randn(3, 25, 3, dtype=torch.float64)
    points[2, 10, 2] = points[2, 9, 2]  # person 2's right thigh lies in the image plane
    copies, source, names = depth_flips(points)
    assert not any(s == 2 and n in ("right thigh", "thighs") for s, n in zip(source.tolist(), names))
    bones = list(BONES) + [(10, 11), (11, 22), (13, 14), (14, 19), (1, 0), (0, 15)]
    for copy, s, name in zip(copies, source.tolist(), names):
        original = points[s]
        assert torch.allclose(copy[:, :2], original[:, :2])  # the same picture
        flipped = DEPTH_FLIPS[name]
        for a, b in bones:
            d0, d1 = original[b] - original[a], copy[b] - copy[a]
            assert torch.allclose(d0.norm(), d1.norm())
            if (a, b) in flipped:
                assert torch.allclose(d1, d0 * torch.tensor([1.0, 1.0, -1.0], dtype=d0.dtype))
            else:
                assert torch.allclose(d1, d0)
    assert len(copies) >= 2 * len(DEPTH_FLIPS) - 2  # random bones are mostly deep enough


def test_depth_flips_leave_the_wrong_reading(model):
    """A crouching person fitted from 2D alone lands in the reading with the thighs mirrored in depth (the
    torso leans forward instead; measured 256 mm PA-v2v); the copy with both thighs flipped
    (FitConfig.depth_flips, the default) finds the true one (61 mm) at a lower objective."""
    suite = generate(model, 100, 0)
    people = [24, 55]  # crouching, pointing (seed 0 of the 100-person ten-pose suite)
    errors, losses = {}, {}
    for flips in (False, True):
        result = fit([suite.keypoints[i] for i in people], model, FitConfig(depth_flips=flips),
                     focal_length=suite.focal[people].numpy())
        errors[flips] = (v2v(result.vertices.double(), suite.vertices[people].double()) * 1000).numpy()
        losses[flips] = result.loss.numpy()
        if flips:
            assert result.start[0] == "shoulders, thighs flipped", result.start
    assert errors[False][0] > 200 and errors[True][0] < errors[False][0] - 100, errors
    assert losses[True][0] < 0.8 * losses[False][0], losses
