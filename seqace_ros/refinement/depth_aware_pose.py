"""Pose refinement that trusts a keyframe point's depth less than its direction.

A keyframe point lies on the ray of the keyframe pixel that defines it; what is uncertain is how
far along that ray. In the query, an error in that depth moves the point's projection along one
line (the projection of the keyframe ray: the epipolar line of the pixel), by more the further
the query is from the keyframe, while the tracking error has no preferred direction. Weighting
the reprojection error along that line by ``along_weight`` (< 1) and across it by 1 lets the
depth-free part of every match decide more of the pose (benchmarks/README.md, "Session 10").
"""

from __future__ import annotations

import numpy as np

from ..geometry import rotvec_to_matrix


def refine_pose_depth_aware(pose_c2w: np.ndarray, points2d: np.ndarray, points3d: np.ndarray,
                            origins: np.ndarray, K: np.ndarray, along_weight: float,
                            loss_scale_px: float = 1.0, iterations: int = 3) -> np.ndarray:
    """The camera-to-world pose minimizing the Cauchy-robust reprojection error of the matches
    (pixels ``points2d``, world points ``points3d`` seen from keyframe centres ``origins``), with
    the error along each point's keyframe ray (as projected into the image) weighted by
    ``along_weight`` and across it by 1. Starts from ``pose_c2w`` (Gauss-Newton; from RANSAC's
    pose, 3 iterations end within micrometres of where 5 do)."""
    x = np.asarray(points2d, np.float64)
    X = np.asarray(points3d, np.float64)
    rays = X - np.asarray(origins, np.float64)
    rays /= np.maximum(np.linalg.norm(rays, axis=1, keepdims=True), 1e-12)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]  # no skew (as everywhere in the package)
    T = np.linalg.inv(np.asarray(pose_c2w, np.float64))  # world -> camera
    R, t = T[:3, :3], T[:3, 3]
    for _ in range(iterations):
        Xc = X @ R.T + t
        z = Xc[:, 2]
        if np.any(z <= 1e-9):
            break
        u, v, iz = Xc[:, 0] / z, Xc[:, 1] / z, 1.0 / z
        res = np.stack([fx * u + cx - x[:, 0], fy * v + cy - x[:, 1]], 1)
        # Rows of d(pixel)/d(rotation, translation) for a perturbation applied in the camera frame.
        Ju = np.stack([-fx * u * v, fx * (1 + u * u), -fx * v, fx * iz, np.zeros_like(z), -fx * u * iz], 1)
        Jv = np.stack([-fy * (1 + v * v), fy * u * v, fy * u, np.zeros_like(z), fy * iz, -fy * v * iz], 1)
        # Where a deeper point would move in the image: the keyframe ray's direction, projected.
        rc = rays @ R.T
        a = np.stack([fx * (rc[:, 0] - u * rc[:, 2]), fy * (rc[:, 1] - v * rc[:, 2])], 1) * iz[:, None]
        a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        r_across = a[:, 0] * res[:, 1] - a[:, 1] * res[:, 0]
        r_along = along_weight * (a[:, 0] * res[:, 0] + a[:, 1] * res[:, 1])
        J_across = a[:, :1] * Jv - a[:, 1:] * Ju
        J_along = along_weight * (a[:, :1] * Ju + a[:, 1:] * Jv)
        w = 1.0 / (1.0 + (r_across ** 2 + r_along ** 2) / loss_scale_px ** 2)  # Cauchy (IRLS)
        H = (J_across * w[:, None]).T @ J_across + (J_along * w[:, None]).T @ J_along
        g = (J_across * w[:, None]).T @ r_across + (J_along * w[:, None]).T @ r_along
        try:
            d = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            break
        dR = rotvec_to_matrix(d[:3])
        R, t = dR @ R, dR @ t + d[3:]
        if np.linalg.norm(d) < 1e-10:
            break
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = R.T, -R.T @ t
    return out
