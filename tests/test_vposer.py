"""Our VPoser: architecture pieces, and the shipped weights on held-out CMU poses."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import bodycapture
from bodycapture.models.lbs import axis_angle_to_matrix
from bodycapture.priors.vposer import DEFAULT_WEIGHTS, VPoser, VPoserPrior, load_vposer, rot6d_to_matrix

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "tests" / "data" / "mocap" / "16_48.bvh"  # subject 16: held out of training


def test_rot6d_gives_rotations_and_recovers_them():
    x = torch.randn(100, 6, dtype=torch.float64)
    r = rot6d_to_matrix(x)
    eye = torch.eye(3, dtype=torch.float64).expand(100, 3, 3)
    torch.testing.assert_close(r @ r.transpose(1, 2), eye, atol=1e-12, rtol=0)
    assert torch.allclose(torch.linalg.det(r), torch.ones(100, dtype=torch.float64))
    rot = axis_angle_to_matrix(torch.randn(50, 3, dtype=torch.float64))
    six = torch.cat([rot[..., 0], rot[..., 1]], -1)  # the first two columns
    torch.testing.assert_close(rot6d_to_matrix(six), rot, atol=1e-12, rtol=0)


def test_shapes_and_gradients():
    net = VPoser().double().eval()
    z = torch.zeros(4, 32, dtype=torch.float64, requires_grad=True)
    pose = net.decode(z)
    assert pose.shape == (4, 63)
    pose.square().sum().backward()
    assert torch.isfinite(z.grad).all()
    q = net.encode(pose.detach())
    assert q.mean.shape == (4, 32) and (q.stddev > 0).all()


@pytest.fixture(scope="module")
def heldout():
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import retarget_cmu

    from bodycapture.io.bvh import read_bvh

    model = bodycapture.load_model(dtype=torch.float64)
    bvh = read_bvh(CLIP)
    bvh.motion = bvh.motion[::12]
    _, pose = retarget_cmu.retarget(bvh, model().joints[0].numpy())
    return torch.as_tensor(pose.reshape(len(pose), -1), dtype=torch.float32)


def angles_deg(a, b):
    ra, rb = axis_angle_to_matrix(a.reshape(-1, 21, 3)), axis_angle_to_matrix(b.reshape(-1, 21, 3))
    cos = ((ra.transpose(-1, -2) @ rb).diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    return torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))


def test_shipped_weights_load_without_training_code():
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size < 10e6
    net = load_vposer()
    assert not net.training and not any(p.requires_grad for p in net.parameters())


def test_encode_decode_of_heldout_poses(heldout):
    net = load_vposer()
    with torch.no_grad():
        recon = net.decode(net.encode(heldout).mean)
    err = angles_deg(recon, heldout)
    assert err.mean() < 10.0, float(err.mean())


def test_mean_pose_is_natural_and_real_poses_are_likely(heldout):
    net = load_vposer()
    model = bodycapture.load_model()
    with torch.no_grad():
        mean = net.decode(torch.zeros(1, 32))
        out = model(body_pose=mean)
        j, names = out.joints[0], model.joint_names
        # standing: head above pelvis above knees above ankles, feet under the hips
        assert j[names.index("head"), 1] > j[names.index("pelvis"), 1] > j[names.index("left_knee"), 1] \
            > j[names.index("left_ankle"), 1]
        # arms hang down (our rest pose is a T-pose), every other joint within 50 degrees of rest but the
        # elbows, within 60 (relaxed arms bend them; the mean of the calibrated training poses: 52 degrees)
        assert j[names.index("left_wrist"), 1] < j[names.index("left_shoulder"), 1] - 0.3
        assert j[names.index("right_wrist"), 1] < j[names.index("right_shoulder"), 1] - 0.3
        others = [i for i, n in enumerate(names[1:22]) if "shoulder" not in n and "collar" not in n]
        limits = torch.tensor([60.0 if "elbow" in names[1 + i] else 50.0 for i in others])
        assert (angles_deg(mean, torch.zeros(1, 63))[0, others] < limits).all()
        real = net.encode(heldout).mean.square().sum(-1)
        g = torch.Generator().manual_seed(0)
        random_pose = (torch.rand(len(heldout), 63, generator=g) - 0.5) * 2 * math.pi / 2
        fake = net.encode(random_pose).mean.square().sum(-1)
    assert real.median() * 3 < fake.median()


def test_samples_rarely_bend_joints_backwards():
    net = load_vposer()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        samples = net.sample(500, generator=g)
    random_pose = (torch.rand(500, 63, generator=g) - 0.5) * 2 * math.pi / 2

    def backwards(p):  # elbows about y and knees about x, the wrong way by more than 10 degrees
        le, re, lk, rk = p[:, 52], p[:, 55], p[:, 9], p[:, 12]
        lim = math.radians(10)
        return ((le > lim) | (re < -lim) | (lk < -lim) | (rk < -lim)).float().mean()

    assert backwards(samples) < 0.25 and backwards(samples) < 0.5 * backwards(random_pose)


def test_prior_decodes_for_the_fitter():
    prior = VPoserPrior(body_pose_size=69)  # SMPL: two more (hand) joints, kept at rest
    pose = prior.decode(torch.zeros(2, 32, dtype=torch.float64))
    assert pose.shape == (2, 69) and pose.dtype == torch.float64 and torch.all(pose[:, 63:] == 0)


def test_sample_poses_command(tmp_path):
    from bodycapture.cli import main

    assert main(["sample-poses", "--n", "4", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "samples.png").stat().st_size > 1000
    assert len(list(tmp_path.glob("sample_*.obj"))) == 4
    assert np.load(tmp_path / "samples.npz")["body_pose"].shape == (4, 63)


def test_sample_bodies_are_reproducible_and_posed_with_their_poses(tmp_path):
    import bodycapture
    from bodycapture.priors.samples import sample_bodies, write_samples

    model = bodycapture.load_model()
    poses, vertices = sample_bodies(model, 3, seed=5)
    again, _ = sample_bodies(model, 3, seed=5)
    other, _ = sample_bodies(model, 3, seed=6)
    assert torch.equal(poses, again) and not torch.equal(poses, other)
    with torch.no_grad():
        np.testing.assert_allclose(vertices, model(body_pose=poses).vertices.numpy(), atol=1e-6)
    sheet = write_samples(tmp_path, model, poses, vertices)
    assert sheet == tmp_path / "samples.png" and not list(tmp_path.glob(".*"))  # no temporary file left
    np.testing.assert_array_equal(np.load(tmp_path / "samples.npz")["body_pose"], poses.numpy())


def test_gmm_em_recovers_a_known_mixture():
    from bodycapture.priors.gmm import fit_gmm

    g = torch.Generator().manual_seed(0)
    a = torch.randn(600, 2, generator=g, dtype=torch.float64) * 0.3 + torch.tensor([3.0, 0.0], dtype=torch.float64)
    b = torch.randn(300, 2, generator=g, dtype=torch.float64) * 0.5 - torch.tensor([3.0, 1.0], dtype=torch.float64)
    means, covs, weights = fit_gmm(torch.cat([a, b]), k=2, iters=100)
    order = torch.argsort(means[:, 0])
    torch.testing.assert_close(means[order], torch.tensor([[-3.0, -1.0], [3.0, 0.0]], dtype=torch.float64),
                               atol=0.1, rtol=0)
    torch.testing.assert_close(weights[order], torch.tensor([1 / 3, 2 / 3], dtype=torch.float64), atol=0.02, rtol=0)


def test_shipped_gmm_prefers_real_poses(heldout):
    from bodycapture.priors.gmm import GMMPrior

    prior = GMMPrior()
    g = torch.Generator().manual_seed(0)
    random_pose = (torch.rand(len(heldout), 63, generator=g) - 0.5) * 2 * math.pi / 2
    assert prior.penalty(heldout.double()).median() + 50 < prior.penalty(random_pose.double()).median()
    start = prior.init_latent(2, dtype=torch.float64)
    assert start.shape == (2, 63) and torch.isfinite(prior.penalty(start)).all()


def test_rotations_path_matches_axis_angle_path():
    """The fitter hands VPoser's matrices straight to the model; the bending prior reads them too."""
    from bodycapture.priors import bending_prior

    prior = VPoserPrior()
    z = torch.randn(4, prior.latent_size, generator=torch.Generator().manual_seed(0))
    rot = prior.decode_rotations(z)
    aa = prior.decode(z)
    torch.testing.assert_close(rot, axis_angle_to_matrix(aa.reshape(4, -1, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(bending_prior(rot), bending_prior(aa), atol=1e-4, rtol=1e-4)
    padded = VPoserPrior(prior.net, body_pose_size=69)  # SMPL: two more joints, at rest
    assert padded.decode_rotations(z).shape == (4, 23, 3, 3)
    torch.testing.assert_close(padded.decode_rotations(z)[:, 21:], torch.eye(3).expand(4, 2, 3, 3))
