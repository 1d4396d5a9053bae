"""Camera pose from 2D-3D correspondences: RANSAC, iterative refinement, covariance.

``solve_pnp`` is an OpenCV PnP with SeqACE's refinement (the sequence tracker itself now uses the
native RANSAC, ``seqace_ros.ransac``); ``reprojection_errors``, ``project`` and
``pose_covariance`` are shared helpers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..geometry import invert_pose


@dataclass
class PnPResult:
    pose_c2w: np.ndarray | None  # None when no pose was found
    inliers: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # mask over the inputs
    covariance: np.ndarray | None = None  # 6x6, RelocResult convention
    reprojection_error_px: float | None = None  # median over inliers
    message: str = ""

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())


def reprojection_errors(points2d: np.ndarray, points3d: np.ndarray, K: np.ndarray,
                        pose_c2w: np.ndarray) -> np.ndarray:
    """Pixel distance between each 2D point and its 3D point projected with the pose (inf behind)."""
    T = invert_pose(pose_c2w)
    Xc = points3d @ T[:3, :3].T + T[:3, 3]
    z = Xc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (Xc[:, :2] / z[:, None]) @ K[:2, :2].T + K[:2, 2]
        err = np.linalg.norm(uv - points2d, axis=1)
    err[~(z > 1e-6)] = np.inf
    return err


def project(points3d: np.ndarray, K: np.ndarray, pose_c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions of map points and whether they lie in front of the camera."""
    T = invert_pose(pose_c2w)
    Xc = points3d @ T[:3, :3].T + T[:3, 3]
    front = Xc[:, 2] > 1e-6
    z = np.where(front, Xc[:, 2], 1.0)
    uv = (Xc[:, :2] / z[:, None]) @ K[:2, :2].T + K[:2, 2]
    return uv, front


def pose_covariance(points2d: np.ndarray, points3d: np.ndarray, K: np.ndarray,
                    pose_c2w: np.ndarray) -> np.ndarray | None:
    """Gauss-Newton covariance sigma^2 (J^T J)^-1 of the pose from its inlier correspondences.

    J is the analytic Jacobian of the projections with respect to the RelocResult tangent
    (camera centre in the map frame; rotation about the map axes on the left of R_c2w); sigma^2 is
    the residual variance. None when the system is degenerate.
    """
    n = len(points2d)
    if n < 4:
        return None
    R, c = pose_c2w[:3, :3], pose_c2w[:3, 3]
    d = points3d - c  # map-frame rays
    Xc = d @ R  # = R^T d for each row
    x, y, z = Xc[:, 0], Xc[:, 1], Xc[:, 2]
    if np.any(z <= 1e-6):
        return None
    fx, fy = K[0, 0], K[1, 1]
    dpi = np.zeros((n, 2, 3))
    dpi[:, 0, 0] = fx / z
    dpi[:, 0, 2] = -fx * x / z ** 2
    dpi[:, 1, 1] = fy / z
    dpi[:, 1, 2] = -fy * y / z ** 2
    # dXc/dc = -R^T ; dXc/dr = R^T [d]_x  (from R' = exp(r) R, c' = c + dc)
    skew = np.zeros((n, 3, 3))
    skew[:, 0, 1], skew[:, 0, 2] = -d[:, 2], d[:, 1]
    skew[:, 1, 0], skew[:, 1, 2] = d[:, 2], -d[:, 0]
    skew[:, 2, 0], skew[:, 2, 1] = -d[:, 1], d[:, 0]
    dX = np.concatenate([np.broadcast_to(-R.T, (n, 3, 3)), R.T[None] @ skew], axis=2)  # (n, 3, 6)
    J = (dpi @ dX).reshape(2 * n, 6)
    uv = np.stack([fx * x / z + K[0, 2], fy * y / z + K[1, 2]], axis=1)
    r = (uv - points2d).ravel()
    dof = max(2 * n - 6, 1)
    sigma2 = max(float(r @ r) / dof, 0.25 ** 2)  # floor: sub-quarter-pixel fits are not real
    JtJ = J.T @ J
    if np.linalg.cond(JtJ) > 1e12:
        return None
    cov = sigma2 * np.linalg.inv(JtJ)
    return 0.5 * (cov + cov.T)


def _to_pose_c2w(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], _ = cv2.Rodrigues(rvec)
    T[:3, 3] = tvec.ravel()
    return invert_pose(T)


def _to_rvec_tvec(pose_c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    T = invert_pose(pose_c2w)
    rvec, _ = cv2.Rodrigues(T[:3, :3])
    return rvec, T[:3, 3].reshape(3, 1).copy()


def solve_pnp(points2d: np.ndarray, points3d: np.ndarray, K: np.ndarray, *,
              ransac_threshold_px: float = 8.0, refine_threshold_px: float = 4.0,
              min_inliers: int = 20, iterations: int = 100, confidence: float = 0.999,
              initial_pose_c2w: np.ndarray | None = None, max_refinements: int = 10) -> PnPResult:
    """Pose from 2D-3D pairs: OpenCV RANSAC (AP3P), then LM refits on the inliers within
    ``refine_threshold_px`` while their number grows (SeqACE's refinement).

    With ``initial_pose_c2w`` (a prediction) RANSAC is skipped when the prediction already explains
    at least half of the points within ``ransac_threshold_px``; it is then fitted on those points
    before the refinement.
    """
    p2 = np.ascontiguousarray(points2d, dtype=np.float64).reshape(-1, 2)
    p3 = np.ascontiguousarray(points3d, dtype=np.float64).reshape(-1, 3)
    n = len(p2)
    if len(p3) != n:
        raise ValueError(f"solve_pnp: {n} 2D points but {len(p3)} 3D points; pass pairs")
    none = PnPResult(None, np.zeros(n, bool))
    if n < max(min_inliers, 4):
        none.message = f"{n} correspondences, need {max(min_inliers, 4)}"
        return none
    K = np.asarray(K, dtype=np.float64)

    pose, from_guess = None, False
    if initial_pose_c2w is not None:
        err = reprojection_errors(p2, p3, K, initial_pose_c2w)
        wide = err < ransac_threshold_px
        if wide.sum() >= max(min_inliers, n // 2):
            pose, from_guess = np.asarray(initial_pose_c2w, dtype=np.float64), True
    if pose is None:
        ok, rvec, tvec, idx = cv2.solvePnPRansac(
            p3, p2, K, None, iterationsCount=iterations, reprojectionError=ransac_threshold_px,
            confidence=confidence, flags=cv2.SOLVEPNP_AP3P)
        if not ok or idx is None or len(idx) < min_inliers:
            none.message = f"RANSAC found {0 if idx is None else len(idx)} inliers, need {min_inliers}"
            return none
        pose = _to_pose_c2w(rvec, tvec)

    rvec, tvec = _to_rvec_tvec(pose)
    inl = reprojection_errors(p2, p3, K, pose) < refine_threshold_px
    if from_guess:
        # A prediction (say the last frame's pose) can be several pixels off: fit it first on the
        # points within the RANSAC threshold, as RANSAC's own pose is, before the tighter rounds.
        # (Refining from the prediction at the tight threshold kept few tracked points and lost
        # frames on redkitchen.)
        rvec, tvec = cv2.solvePnPRefineLM(p3[wide], p2[wide], K, None, rvec, tvec)
        pose = _to_pose_c2w(rvec, tvec)
        inl = reprojection_errors(p2, p3, K, pose) < refine_threshold_px
    for _ in range(max_refinements):
        if inl.sum() < max(min_inliers, 4):
            break
        rvec, tvec = cv2.solvePnPRefineLM(p3[inl], p2[inl], K, None, rvec, tvec)
        new_pose = _to_pose_c2w(rvec, tvec)
        new_inl = reprojection_errors(p2, p3, K, new_pose) < refine_threshold_px
        pose = new_pose
        grew = new_inl.sum() > inl.sum()
        inl = new_inl
        if not grew:
            break
    if inl.sum() < min_inliers:
        return PnPResult(None, inl, message=f"{int(inl.sum())} inliers after refinement, need "
                                            f"{min_inliers}")
    err = reprojection_errors(p2[inl], p3[inl], K, pose)
    return PnPResult(pose, inl, pose_covariance(p2[inl], p3[inl], K, pose), float(np.median(err)))
