import math

import pytest
import torch

from bodycapture.models.lbs import _SMALL_ANGLE_SQ, axis_angle_to_matrix, matrix_to_axis_angle


def closed_form(aa: torch.Tensor) -> torch.Tensor:
    """R = cos(a) I + sin(a) [k]x + (1 - cos(a)) k k^T for a unit axis k, written out per element."""
    out = []
    for v in aa.reshape(-1, 3).tolist():
        a = math.sqrt(sum(x * x for x in v))
        if a == 0:
            out.append(torch.eye(3, dtype=torch.float64))
            continue
        x, y, z = (c / a for c in v)
        c, s, t = math.cos(a), math.sin(a), 1 - math.cos(a)
        out.append(
            torch.tensor(
                [
                    [c + x * x * t, x * y * t - z * s, x * z * t + y * s],
                    [y * x * t + z * s, c + y * y * t, y * z * t - x * s],
                    [z * x * t - y * s, z * y * t + x * s, c + z * z * t],
                ],
                dtype=torch.float64,
            )
        )
    return torch.stack(out).reshape(*aa.shape[:-1], 3, 3)


def test_matches_closed_form_for_all_angle_sizes():
    g = torch.Generator().manual_seed(0)
    axes = torch.nn.functional.normalize(torch.randn(60, 3, generator=g, dtype=torch.float64), dim=-1)
    angles = torch.cat([torch.logspace(-9, 0, 30, dtype=torch.float64), torch.linspace(1, 3.14, 30, dtype=torch.float64)])
    aa = axes * angles[:, None]
    assert torch.allclose(axis_angle_to_matrix(aa), closed_form(aa), atol=1e-14)
    # straddling the switch to the Taylor series: no jump
    edge = axes[:2] * torch.tensor([math.sqrt(_SMALL_ANGLE_SQ) * (1 - 1e-9), math.sqrt(_SMALL_ANGLE_SQ) * (1 + 1e-9)],
                                   dtype=torch.float64)[:, None]
    assert torch.allclose(axis_angle_to_matrix(edge), closed_form(edge), atol=1e-15)


def test_orthonormal_with_unit_determinant_and_batched_shapes():
    aa = torch.randn(4, 5, 3, dtype=torch.float64) * 2
    aa[0, 0] = 0
    r = axis_angle_to_matrix(aa)
    assert r.shape == (4, 5, 3, 3)
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(r @ r.transpose(-1, -2), eye.expand_as(r), atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones(4, 5, dtype=torch.float64), atol=1e-12)
    assert torch.equal(r[0, 0], eye)


def test_rotates_vectors_about_the_axis():
    axis = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    r = axis_angle_to_matrix(axis * math.pi / 2)
    assert torch.allclose(r @ torch.tensor([1.0, 0, 0], dtype=torch.float64), torch.tensor([0, 1.0, 0], dtype=torch.float64))
    assert torch.allclose(r @ axis, axis)


@pytest.mark.parametrize("scale", [0.0, 1e-6, 1e-3, 0.7, 3.0])
def test_gradcheck(scale):
    g = torch.Generator().manual_seed(1)
    aa = (torch.randn(6, 3, generator=g, dtype=torch.float64) * scale).requires_grad_()
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (aa,), eps=1e-7, atol=1e-7)


def test_gradient_at_zero_is_the_skew_basis():
    jac = torch.autograd.functional.jacobian(axis_angle_to_matrix, torch.zeros(3, dtype=torch.float64))
    for i in range(3):
        e = torch.zeros(3, dtype=torch.float64)
        e[i] = 1
        skew = torch.linalg.cross(e.expand(3, 3), torch.eye(3, dtype=torch.float64)).T  # skew(e) @ x = e x x
        assert torch.allclose(jac[..., i], skew, atol=1e-15)
    assert torch.isfinite(jac).all()


def test_matrix_to_axis_angle_inverts_for_angles_up_to_pi():
    g = torch.Generator().manual_seed(2)
    axes = torch.nn.functional.normalize(torch.randn(200, 3, generator=g, dtype=torch.float64), dim=-1)
    angles = torch.rand(200, generator=g, dtype=torch.float64) * (math.pi - 1e-6)
    angles[:3] = torch.tensor([0.0, 1e-9, math.pi - 1e-6])
    aa = axes * angles[:, None]
    back = matrix_to_axis_angle(axis_angle_to_matrix(aa))
    assert torch.allclose(back[1:], aa[1:], atol=1e-6)
    assert torch.allclose(back[0], torch.zeros(3, dtype=torch.float64))
    # at exactly pi the axis sign is ambiguous; the rotation must still be the same
    half_turn = torch.tensor([[0.0, math.pi, 0.0]], dtype=torch.float64)
    assert torch.allclose(axis_angle_to_matrix(matrix_to_axis_angle(axis_angle_to_matrix(half_turn))),
                          axis_angle_to_matrix(half_turn), atol=1e-12)


def test_short_matrix_to_axis_angle_equals_the_quaternion_route_below_pi():
    from bodycapture.models.lbs import matrix_to_axis_angle_below_pi

    g = torch.Generator().manual_seed(4)
    axes = torch.nn.functional.normalize(torch.randn(300, 3, generator=g, dtype=torch.float64), dim=-1)
    angles = torch.rand(300, generator=g, dtype=torch.float64) * (math.pi - 1e-3)
    angles[:4] = torch.tensor([0.0, 1e-9, 1e-4, math.pi - 1e-3])
    mats = axis_angle_to_matrix(axes * angles[:, None])
    torch.testing.assert_close(matrix_to_axis_angle_below_pi(mats), matrix_to_axis_angle(mats), atol=1e-9, rtol=0)
    # batched shapes, and the gradient against finite differences (at zero too)
    assert matrix_to_axis_angle_below_pi(mats.reshape(3, 100, 3, 3)).shape == (3, 100, 3)
    for scale in (0.0, 1e-3, 1.0, 2.5):
        aa = (torch.randn(5, 3, generator=g, dtype=torch.float64) * scale).requires_grad_()
        assert torch.autograd.gradcheck(lambda x: matrix_to_axis_angle_below_pi(axis_angle_to_matrix(x)), (aa,),
                                        eps=1e-7, atol=1e-6)
    # past pi - 1e-4 the value shrinks towards zero but stays finite
    near = axis_angle_to_matrix(torch.tensor([[0.0, math.pi - 1e-7, 0.0]], dtype=torch.float64))
    out = matrix_to_axis_angle_below_pi(near)
    assert torch.isfinite(out).all() and out.norm() <= math.pi


def test_shortest_arc_maps_directions_and_handles_opposites():
    from bodycapture.models.lbs import shortest_arc

    g = torch.Generator().manual_seed(3)
    a = torch.randn(50, 3, generator=g, dtype=torch.float64)
    b = torch.randn(50, 3, generator=g, dtype=torch.float64)
    b[0] = -a[0]  # opposite directions
    r = shortest_arc(a, b)
    torch.testing.assert_close((r @ a[..., None])[..., 0], torch.nn.functional.normalize(b, dim=-1) * a.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(50, 3, 3))
    assert torch.allclose(torch.linalg.det(r), torch.ones(50, dtype=torch.float64))
    # the smallest angle: the rotation angle equals the angle between a and b
    cos = (torch.nn.functional.normalize(a, dim=-1) * torch.nn.functional.normalize(b, dim=-1)).sum(-1)
    angle = torch.arccos(((r.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1))
    torch.testing.assert_close(angle[1:], torch.arccos(cos[1:].clamp(-1, 1)), atol=1e-6, rtol=0)


def test_atan2_gives_each_element_the_same_bits_whatever_the_tensor_size():
    """torch.atan2's vectorised and leftover-element paths round differently (on the CPU); `atan2` pads so
    that an element's value does not depend on how many others it is computed with (a person's fit must not
    depend on its batch mates). Values and gradients equal torch.atan2's to rounding."""
    from bodycapture.models.lbs import atan2

    g = torch.Generator().manual_seed(0)
    y, x = torch.randn(300, generator=g), torch.randn(300, generator=g)
    full = atan2(y, x)
    plain = torch.atan2(y, x)
    torch.testing.assert_close(full, plain, atol=1e-6, rtol=0)
    for n in range(1, 41):
        assert torch.equal(atan2(y[:n], x[:n]), full[:n]), n
        assert torch.equal(atan2(y[:n, None].expand(n, 3), x[:n, None]), full[:n, None].expand(n, 3)), n
    # broadcasting and shapes as torch.atan2's
    assert atan2(y[:6].reshape(2, 3, 1), x[:4]).shape == (2, 3, 4)
    yd, xd = y[:5].double().requires_grad_(), x[:5].double().requires_grad_()
    assert torch.autograd.gradcheck(atan2, (yd, xd))
