"""Geometry from KNOWN camera poses: mapping pair selection and epipolar verification (used by the
refinement map and by the structure-based peer in benchmarks/).

Poses are 4x4 camera-to-world (OpenCV optical axes), K is 3x3.
"""

from __future__ import annotations

import numpy as np


def skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def fundamental_from_poses(K1: np.ndarray, T1_c2w: np.ndarray, K2: np.ndarray,
                           T2_c2w: np.ndarray) -> np.ndarray:
    """F with x2^T F x1 = 0 for pixels x1 in camera 1 and x2 in camera 2."""
    T21 = np.linalg.inv(T2_c2w) @ T1_c2w  # camera 1 -> camera 2
    E = skew(T21[:3, 3]) @ T21[:3, :3]
    return np.linalg.inv(K2).T @ E @ np.linalg.inv(K1)


def epipolar_distance(F: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """Symmetric point-to-epipolar-line distance in pixels (the larger of the two), per match."""
    h1 = np.hstack([x1, np.ones((len(x1), 1))])
    h2 = np.hstack([x2, np.ones((len(x2), 1))])
    l2 = h1 @ F.T  # lines in image 2
    l1 = h2 @ F  # lines in image 1
    num = np.abs(np.sum(h2 * l2, axis=1))
    d2 = num / np.maximum(np.hypot(l2[:, 0], l2[:, 1]), 1e-12)
    d1 = num / np.maximum(np.hypot(l1[:, 0], l1[:, 1]), 1e-12)
    return np.maximum(d1, d2)


def viewing_angles_deg(poses_c2w: np.ndarray) -> np.ndarray:
    """(N, N) angles between the optical axes of all camera pairs."""
    z = poses_c2w[:, :3, 2]
    return np.degrees(np.arccos(np.clip(z @ z.T, -1.0, 1.0)))


def select_pairs(poses_c2w: np.ndarray, k: int, max_angle_deg: float = 30.0,
                 max_distance: float = 1.0, min_baseline: float = 0.0) -> np.ndarray:
    """Mapping pairs (i, j), i < j: each frame with its ``k`` nearest frames by camera centre that
    look the same way (optical axes within ``max_angle_deg``), closer than ``max_distance`` metres
    and at least ``min_baseline`` apart (near-identical views add matching cost, not geometry)."""
    poses_c2w = np.asarray(poses_c2w, dtype=np.float64)
    n = len(poses_c2w)
    if k < 1:
        raise ValueError(f"pairs per frame must be >= 1, got {k}")
    centres = poses_c2w[:, :3, 3]
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=2)
    ok = ((viewing_angles_deg(poses_c2w) <= max_angle_deg) & (dist <= max_distance)
          & (dist >= min_baseline))
    np.fill_diagonal(ok, False)
    pairs = set()
    for i in range(n):
        cand = np.flatnonzero(ok[i])
        for j in cand[np.argsort(dist[i, cand])][:k]:
            pairs.add((min(i, j), max(i, j)))
    return np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
