"""ACE's reprojection loss with the tanh hinge, its annealed threshold and invalid handling."""

from __future__ import annotations

import math

import torch


def tau_schedule(iteration: int, total: int, tau_max: float = 50.0, tau_min: float = 1.0) -> float:
    """ACE's "circle" schedule: tau from tau_max + tau_min down to tau_min, slowly at first."""
    t = min(max(iteration / max(total, 1), 0.0), 1.0)
    s = 1.0 - math.sqrt(max(1.0 - t * t, 0.0))
    return (1.0 - s) * tau_max + tau_min


def reprojection_loss(points: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor, pixels: torch.Tensor,
                      tau: float, depth_min: float = 0.1, depth_max: float = 1000.0,
                      max_error: float = 1000.0, proxy_depth: float = 10.0
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample loss for predicted world points.

    points (N, 3) world; w2c (N, 4, 4); K (N, 3, 3); pixels (N, 2). Returns (loss (N,), valid (N,)).
    Valid predictions: tau * tanh(e / tau) with e the L1 reprojection error. Invalid ones (behind or
    too close to the camera, absurdly far, or reprojecting far off) are pulled towards a point
    ``proxy_depth`` metres along the pixel's ray, in camera coordinates.
    """
    cam = torch.einsum("nij,nj->ni", w2c[:, :3, :3], points) + w2c[:, :3, 3]
    z = cam[:, 2]
    fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
    zs = torch.where(z.abs() < 1e-6, torch.full_like(z, 1e-6), z)
    u = fx * cam[:, 0] / zs + cx
    v = fy * cam[:, 1] / zs + cy
    err = (u - pixels[:, 0]).abs() + (v - pixels[:, 1]).abs()
    valid = (z > depth_min) & (z < depth_max) & (err < max_error)
    hinge = tau * torch.tanh(err / tau)
    ray = torch.stack([(pixels[:, 0] - cx) / fx, (pixels[:, 1] - cy) / fy, torch.ones_like(z)], -1)
    proxy = (ray * proxy_depth - cam).abs().sum(-1)
    loss = torch.where(valid, hinge, proxy)
    return loss, valid
