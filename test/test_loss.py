"""ACE's reprojection loss and its threshold schedule."""

import torch

from seqace_ros.mapping.loss import reprojection_loss, tau_schedule


def test_tau_schedule_goes_from_51_to_1_slowly_at_first():
    taus = [tau_schedule(i, 1000) for i in range(0, 1001, 100)]
    assert taus[0] == 51.0 and abs(taus[-1] - 1.0) < 1e-9
    assert all(a >= b for a, b in zip(taus, taus[1:]))
    assert 40 < tau_schedule(500, 1000) < 46  # ~44 at half-way (METHOD.md)


def _cam(n):
    w2c = torch.eye(4).repeat(n, 1, 1)
    K = torch.tensor([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]).repeat(n, 1, 1)
    return w2c, K


def test_perfect_points_have_zero_loss_and_errors_are_l1():
    w2c, K = _cam(2)
    pts = torch.tensor([[0.0, 0.0, 2.0], [0.4, -0.2, 4.0]])
    pix = torch.tensor([[320.0, 240.0], [370.0, 215.0]])
    loss, valid = reprojection_loss(pts, w2c, K, pix, tau=10.0)
    assert valid.all() and torch.allclose(loss, torch.zeros(2), atol=1e-5)
    loss, _ = reprojection_loss(pts, w2c, K, pix + torch.tensor([3.0, 4.0]), tau=1000.0)
    assert torch.allclose(loss, torch.full((2,), 7.0), atol=1e-2)  # tau*tanh(7/tau) ~ 7


def test_points_behind_the_camera_are_pulled_to_the_ray_proxy():
    w2c, K = _cam(1)
    pts = torch.tensor([[0.0, 0.0, -1.0]], requires_grad=True)
    loss, valid = reprojection_loss(pts, w2c, K, torch.tensor([[320.0, 240.0]]), tau=10.0)
    assert not valid.any()
    assert torch.allclose(loss, torch.tensor([11.0]))  # |(0,0,10) - (0,0,-1)|_1
    loss.sum().backward()
    assert pts.grad[0, 2] < 0  # gradient descent moves z towards +10 m
