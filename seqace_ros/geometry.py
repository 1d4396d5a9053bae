"""Small rigid-body helpers shared by the data readers, the relocalizer and the evaluation.

Conventions: poses are 4x4 homogeneous matrices. ``T_c2w`` maps camera coordinates to world
(map) coordinates (the DSAC*/ACE pose files); ``T_w2c`` is its inverse. Cameras are OpenCV optical
frames: x right, y down, z forward.
"""

from __future__ import annotations

import numpy as np


def project_to_so3(R: np.ndarray) -> np.ndarray:
    """Nearest rotation matrix (Frobenius norm) to ``R``.

    7-Scenes rotations have determinants of 0.9995-0.9998; scoring them unprojected reports
    ~1.4 deg of error for a perfect estimate.
    """
    U, _, Vt = np.linalg.svd(np.asarray(R, dtype=np.float64))
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U @ Vt))
    return U @ D @ Vt


def rigidity_error(T: np.ndarray) -> float:
    """How far the rotation block of ``T`` is from SO(3) (max abs deviation of R R^T from I)."""
    R = np.asarray(T, dtype=np.float64)[:3, :3]
    return float(np.abs(R @ R.T - np.eye(3)).max() + abs(np.linalg.det(R) - 1.0))


def invert_pose(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform."""
    T = np.asarray(T, dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out


def rotation_angle_deg(R: np.ndarray) -> float:
    """Angle of a rotation matrix in degrees (robust near 0 and 180 deg)."""
    cos = np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)
    # arccos loses precision near zero; the axis-angle vector from the skew part does not.
    sin = 0.5 * np.linalg.norm([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    return float(np.degrees(np.arctan2(sin, cos)))


def pose_errors(T_est_c2w: np.ndarray, T_gt_c2w: np.ndarray) -> tuple[float, float]:
    """(translation error in metres between camera centres, rotation error in degrees)."""
    T_est = np.asarray(T_est_c2w, dtype=np.float64)
    T_gt = np.asarray(T_gt_c2w, dtype=np.float64)
    t_err = float(np.linalg.norm(T_est[:3, 3] - T_gt[:3, 3]))
    r_err = rotation_angle_deg(T_est[:3, :3] @ T_gt[:3, :3].T)
    return t_err, r_err


def rotvec_to_matrix(rv: np.ndarray) -> np.ndarray:
    """Rodrigues' formula."""
    rv = np.asarray(rv, dtype=np.float64)
    theta = float(np.linalg.norm(rv))
    if theta < 1e-12:
        return np.eye(3)
    k = rv / theta
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * Kx + (1 - np.cos(theta)) * Kx @ Kx


def matrix_to_quaternion_xyzw(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) of a rotation matrix, w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    tr = np.trace(R)
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2]) * 2
        q = [0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s]
    elif R[1, 1] > R[2, 2]:
        s = np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2]) * 2
        q = [(R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s]
    else:
        s = np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1]) * 2
        q = [(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s, (R[1, 0] - R[0, 1]) / s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return q if q[3] >= 0 else -q


def quaternion_xyzw_to_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
