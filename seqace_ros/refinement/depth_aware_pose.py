"""Pose refinement that trusts a keyframe point's depth less than its direction.

A keyframe point lies on the ray of the keyframe pixel that defines it; what is uncertain is how
far along that ray. In the query, an error in that depth moves the point's projection along one
line (the projection of the keyframe ray: the epipolar line of the pixel), by more the further
the query is from the keyframe, while the tracking error has no preferred direction. Weighting
the reprojection error along that line by ``along_weight`` (< 1) and across it by 1 lets the
depth-free part of every match decide more of the pose (benchmarks/README.md, "Session 10").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._native import refine_pose_depth_aware as _native_refine
from ..relocalization.pnp import reprojection_errors


def refine_pose_depth_aware(pose_c2w: np.ndarray, points2d: np.ndarray, points3d: np.ndarray,
                            origins: np.ndarray, K: np.ndarray, along_weight: float,
                            loss_scale_px: float = 1.0, iterations: int = 3) -> np.ndarray:
    """The camera-to-world pose minimizing the Cauchy-robust reprojection error of the matches
    (pixels ``points2d``, world points ``points3d`` seen from keyframe centres ``origins``), with
    the error along each point's keyframe ray (as projected into the image) weighted by
    ``along_weight`` and across it by 1. Starts from ``pose_c2w`` (Gauss-Newton, in the native
    module: a per-match loop that numpy would spend most of its time dispatching; from RANSAC's
    pose, 3 iterations end within micrometres of where 5 do). ``K`` has no skew, as everywhere in
    the package."""
    return np.asarray(_native_refine(np.asarray(pose_c2w, np.float64), np.asarray(points2d, np.float64),
                                     np.asarray(points3d, np.float64), np.asarray(origins, np.float64),
                                     np.asarray(K, np.float64), float(along_weight), float(loss_scale_px),
                                     int(iterations)))


def fit_selected(pose_c2w: np.ndarray, points2d: np.ndarray, points3d: np.ndarray, origins: np.ndarray,
                 K: np.ndarray, along_weight: float, selections_px: Sequence[float]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`refine_pose_depth_aware` on the matches within each of ``selections_px`` of the pose
    so far, in turn (one fit per entry): the pose, and which matches the last fit used. A fit with
    fewer than 6 matches ends the sequence there."""
    pose = np.asarray(pose_c2w, np.float64)
    p2, p3, o = (np.asarray(a, np.float64) for a in (points2d, points3d, origins))
    used = np.zeros(len(p2), bool)
    for threshold in selections_px:
        near = reprojection_errors(p2, p3, K, pose) < threshold
        if near.sum() < 6:
            break
        pose = refine_pose_depth_aware(pose, p2[near], p3[near], o[near], K, along_weight)
        used = near
    return pose, used
