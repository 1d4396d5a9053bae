"""Fusing two camera poses on SE(3), weighted by their covariances or inlier counts.

Tangent convention (the one of ``RelocResult.covariance``): a 6-vector (dx, dy, dz, rx, ry, rz)
moves the camera centre by (dx, dy, dz) in the map frame and rotates the camera by the rotation
vector (rx, ry, rz) about the map axes, applied on the left of R_c2w. SeqACE blends rotation
vectors linearly, which is only right for nearby rotations about similar axes; here the fused pose is
the weighted (information-form) mean on the manifold, found by Gauss-Newton, which for scalar
weights is exactly SLERP of the rotations and linear interpolation of the centres.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..geometry import rotvec_to_matrix

# Scale of count-based covariances: one inlier ~ (5 cm, 3 deg) standard deviation. Only the
# ratio between two such covariances matters for the fused pose.
COUNT_SIGMA_T_M = 0.05
COUNT_SIGMA_R_RAD = np.radians(3.0)


def rotation_log(R: np.ndarray) -> np.ndarray:
    """Rotation vector of a rotation matrix."""
    rv, _ = cv2.Rodrigues(np.asarray(R, dtype=np.float64))
    return rv.ravel()


def pose_delta(T_to: np.ndarray, T_from: np.ndarray) -> np.ndarray:
    """Tangent vector d with ``apply_delta(T_from, d) == T_to`` (camera-to-world poses)."""
    d = np.empty(6)
    d[:3] = T_to[:3, 3] - T_from[:3, 3]
    d[3:] = rotation_log(T_to[:3, :3] @ T_from[:3, :3].T)
    return d


def apply_delta(T: np.ndarray, d: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = rotvec_to_matrix(d[3:]) @ T[:3, :3]
    out[:3, 3] = T[:3, 3] + d[:3]
    return out


def count_covariance(num_inliers: int) -> np.ndarray:
    """A covariance that shrinks like 1/n, for poses that come without one."""
    n = max(int(num_inliers), 1)
    return np.diag([COUNT_SIGMA_T_M ** 2] * 3 + [COUNT_SIGMA_R_RAD ** 2] * 3) / n


def valid_covariance(cov: np.ndarray | None) -> bool:
    """Finite, symmetric, positive definite 6x6."""
    if cov is None:
        return False
    cov = np.asarray(cov, dtype=np.float64)
    if cov.shape != (6, 6) or not np.all(np.isfinite(cov)):
        return False
    if not np.allclose(cov, cov.T, rtol=1e-6, atol=1e-12 * max(1.0, float(np.abs(cov).max()))):
        return False
    return bool(np.linalg.eigvalsh(0.5 * (cov + cov.T)).min() > 0)


def _right_jacobian_inverse(phi: np.ndarray) -> np.ndarray:
    """J_r^-1 of SO(3): log(exp(phi) exp(d)) ~= phi + J_r^-1(phi) d for small d."""
    theta = float(np.linalg.norm(phi))
    Kx = np.array([[0, -phi[2], phi[1]], [phi[2], 0, -phi[0]], [-phi[1], phi[0], 0]])
    if theta < 1e-6:
        return np.eye(3) + 0.5 * Kx + Kx @ Kx / 12.0
    coef = 1.0 / theta ** 2 - (1 + np.cos(theta)) / (2 * theta * np.sin(theta))
    return np.eye(3) + 0.5 * Kx + coef * Kx @ Kx


def fuse_poses(T_a: np.ndarray, cov_a: np.ndarray, T_b: np.ndarray, cov_b: np.ndarray,
               iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Information-weighted mean of two poses and its covariance.

    Minimises ||d(T_a, T)||^2_{cov_a^-1} + ||d(T_b, T)||^2_{cov_b^-1} over T (d = pose_delta) by
    Gauss-Newton with the exact SO(3) Jacobian, starting at T_b. The rotations must be less than
    180 deg apart.
    """
    if not (valid_covariance(cov_a) and valid_covariance(cov_b)):
        raise ValueError("fuse_poses needs two finite, symmetric, positive definite 6x6 covariances; "
                         "use count_covariance(num_inliers) for a pose without one")
    infos = (np.linalg.inv(cov_a), np.linalg.inv(cov_b))
    T = np.asarray(T_b, dtype=np.float64).copy()
    for _ in range(iterations):
        A, g = np.zeros((6, 6)), np.zeros(6)
        for T_i, info in zip((T_a, T_b), infos):
            d = pose_delta(T_i, T)
            J = np.eye(6)  # d(T_i, apply_delta(T, e)) ~= d - J e
            J[3:, 3:] = _right_jacobian_inverse(d[3:])
            A += J.T @ info @ J
            g += J.T @ info @ d
        step = np.linalg.solve(A, g)
        T = apply_delta(T, step)
        if np.abs(step).max() < 1e-12:
            break
    cov = np.linalg.inv(A)
    return T, 0.5 * (cov + cov.T)


def mahalanobis(T_a: np.ndarray, cov_a: np.ndarray, T_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Distance between two uncertain poses in units of their combined standard deviation."""
    d = pose_delta(T_a, T_b)
    return float(np.sqrt(d @ np.linalg.solve(cov_a + cov_b, d)))
