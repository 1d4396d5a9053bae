"""ACE's reprojection loss with the tanh hinge, its annealed threshold and invalid handling, and
SeqACE's combination with the cross-frame (keyframe) term."""

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


def sequence_loss(frame_loss: torch.Tensor, keyframe_loss: torch.Tensor, tracked: torch.Tensor,
                  weight: float, mean: str = "tracked") -> torch.Tensor:
    """SeqACE's batch loss: mean frame term + ``weight`` x the keyframe term of tracked samples.

    frame_loss, keyframe_loss (B,) per sample (keyframe_loss is ignored where ``tracked`` is
    False); ``mean``: "tracked" divides the keyframe sum by the number of tracked samples (SeqACE),
    "batch" by B. A batch without tracked samples adds zero (SeqACE's 1/N_track would give NaN).
    Masked, not indexed: no host sync and no data-dependent shapes on a GPU.
    """
    kf_sum = torch.where(tracked, keyframe_loss, torch.zeros_like(keyframe_loss)).sum()
    if mean == "tracked":
        denom = tracked.sum().clamp(min=1).to(kf_sum.dtype)
    elif mean == "batch":
        denom = float(max(tracked.numel(), 1))
    else:
        raise ValueError(f"mean {mean!r} is not 'tracked' or 'batch'")
    return frame_loss.mean() + weight * (kf_sum / denom)
