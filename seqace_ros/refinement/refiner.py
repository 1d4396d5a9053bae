"""Pose refinement against the map's triangulated points, after scene coordinate regression.

The regressed pose is already close (centimetres), so matching needs no retrieval and no global
search: the map's points are projected with it and each query keypoint is matched only to the
points that land near it (guided matching), by descriptor, with a ratio test among those
candidates. RANSAC + refinement on the sub-pixel 2D-3D matches gives the refined pose and its
covariance; a second pass re-matches with the refined pose in a tighter radius. The refined pose
replaces the regressed one only when it is well supported and close to it; otherwise the
regressed pose stands.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .. import ransac
from ..encoder import EncodedImage
from .point_map import PointMap
from .sparse_features import LocalFeatures, sparse_features


@dataclass
class RefineConfig:
    """How the regressed pose is refined (``enabled=False``: it is not)."""

    enabled: bool = True
    max_keypoints: int = 2048  # query keypoints (the most salient cells)
    subpixel_window: int = 0  # half-size of the corner refinement window (0: the detector's positions)
    detector: str = "xfeat"  # query keypoints: xfeat (salient cells) | corners (Shi-Tomasi); as the map's
    radius_px: float = 16.0  # first pass: candidates within this distance of the projection
    second_radius_px: float = 4.0  # second pass with the refined pose (0: one pass only)
    candidates: int = 32  # nearest projected points considered per keypoint
    match_ratio: float = 0.9  # best candidate's descriptor distance below ratio x the second's
    min_similarity: float = 0.5  # cosine similarity of a match
    inlier_threshold_px: float = 3.0
    refine_threshold_px: float = 2.0
    min_inliers: int = 30
    max_correction_m: float = 0.25  # a refined pose further than this from the regressed one is not trusted
    max_correction_deg: float = 5.0
    time_budget_ms: float = 20.0

    def validate(self) -> "RefineConfig":
        problems = []
        if self.max_keypoints < 8:
            problems.append(f"max_keypoints {self.max_keypoints} < 8")
        if self.radius_px <= 0 or self.second_radius_px < 0:
            problems.append("radius_px must be > 0 and second_radius_px >= 0")
        if self.candidates < 1:
            problems.append(f"candidates {self.candidates} < 1")
        if not 0 < self.match_ratio <= 1:
            problems.append(f"match_ratio {self.match_ratio} outside (0, 1]")
        if self.inlier_threshold_px <= 0 or self.refine_threshold_px <= 0:
            problems.append("refinement thresholds must be positive")
        if self.min_inliers < 4:
            problems.append(f"min_inliers {self.min_inliers} < 4")
        if problems:
            raise ValueError("invalid refinement settings: " + "; ".join(problems))
        return self


@dataclass
class Refinement:
    """Outcome of :meth:`PoseRefiner.refine`."""

    accepted: bool
    pose_c2w: np.ndarray | None = None
    covariance: np.ndarray | None = None
    num_matches: int = 0
    num_inliers: int = 0
    reprojection_error_px: float | None = None
    correction_m: float | None = None
    correction_deg: float | None = None
    message: str = ""
    time_ms: float = 0.0


def _angle_deg(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))


class PoseRefiner:
    """Refines regressed poses against a :class:`PointMap`."""

    def __init__(self, point_map: PointMap, config: RefineConfig | None = None, threads: int = 2) -> None:
        self.config = (config or RefineConfig()).validate()
        self.points = np.ascontiguousarray(point_map.points, np.float64)
        self.descriptors = np.ascontiguousarray(point_map.descriptors, np.float32)
        self.threads = threads

    def project(self, pose_c2w: np.ndarray, K: np.ndarray, size_wh: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (M, 2) and ids (M,) of the map points in front of the camera and inside the image."""
        R, t = pose_c2w[:3, :3], pose_c2w[:3, 3]
        Xc = (self.points - t) @ R  # world -> camera: R^T (X - t)
        front = Xc[:, 2] > 0.05
        ids = np.flatnonzero(front)
        uv = Xc[ids, :2] / Xc[ids, 2:3] @ K[:2, :2].T + K[:2, 2]
        w, h = size_wh
        inside = (uv[:, 0] >= -0.5) & (uv[:, 1] >= -0.5) & (uv[:, 0] < w - 0.5) & (uv[:, 1] < h - 0.5)
        return uv[inside], ids[inside]

    def match(self, feats: LocalFeatures, pose_c2w: np.ndarray, K: np.ndarray, size_wh: tuple[int, int],
              radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Guided matches (query keypoint index, map point id) under ``pose_c2w``."""
        uv, ids = self.project(pose_c2w, K, size_wh)
        if len(uv) == 0 or len(feats) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        k = min(self.config.candidates, len(uv))
        dist, nn = cKDTree(uv).query(feats.keypoints, k=k, distance_upper_bound=radius)
        dist, nn = dist.reshape(len(feats), k), nn.reshape(len(feats), k)
        ok = nn < len(uv)
        cand = ids[np.where(ok, nn, 0)]
        sim = np.einsum("nd,nkd->nk", feats.descriptors, self.descriptors[cand])
        sim = np.where(ok, sim, -np.inf)
        order = np.argsort(-sim, axis=1)
        rows = np.arange(len(feats))
        best, second = sim[rows, order[:, 0]], (sim[rows, order[:, 1]] if k > 1 else np.full(len(feats), -np.inf))
        d1 = np.maximum(2.0 - 2.0 * best, 0.0)
        d2 = np.where(np.isfinite(second), np.maximum(2.0 - 2.0 * second, 0.0), np.inf)
        keep = np.isfinite(best) & (best >= self.config.min_similarity)
        keep &= d1 < self.config.match_ratio ** 2 * d2
        qi = np.flatnonzero(keep)
        pid = cand[qi, order[qi, 0]]
        # One keypoint per map point: the most similar.
        by_sim = np.argsort(-best[qi], kind="stable")
        _, first = np.unique(pid[by_sim], return_index=True)
        sel = by_sim[first]
        return qi[sel], pid[sel]

    def refine(self, enc: EncodedImage, K: np.ndarray, pose_c2w: np.ndarray,
               size_wh: tuple[int, int], seed: int = 0, gray: np.ndarray | None = None) -> Refinement:
        """Refine ``pose_c2w`` (the regressed pose of the image ``enc`` was computed from)."""
        t0 = time.perf_counter()
        c = self.config
        feats = sparse_features(enc, c.max_keypoints, gray=gray, subpixel_window=c.subpixel_window,
                                detector=c.detector)
        pose, result, matches = pose_c2w, None, 0
        for radius in (c.radius_px, c.second_radius_px):
            if radius <= 0:
                continue
            qi, pid = self.match(feats, pose, K, size_wh, radius)
            if len(qi) < c.min_inliers:
                if result is None:
                    return Refinement(False, num_matches=len(qi), message=f"only {len(qi)} guided matches",
                                      time_ms=(time.perf_counter() - t0) * 1000.0)
                break
            res = ransac.estimate_pose(feats.keypoints[qi].astype(np.float64), self.points[pid], K,
                                       inlier_threshold_px=c.inlier_threshold_px,
                                       refine_threshold_px=c.refine_threshold_px, scoring="hard",
                                       min_inliers=c.min_inliers, time_budget_ms=c.time_budget_ms,
                                       num_threads=self.threads, seed=seed, loss_scale_px=1.0)
            if not res.success:
                if result is None:
                    return Refinement(False, num_matches=len(qi), num_inliers=int(res.num_inliers),
                                      message=f"refinement RANSAC failed: {res.message}",
                                      time_ms=(time.perf_counter() - t0) * 1000.0)
                break
            result, matches = res, len(qi)
            pose = np.asarray(res.T_c2w, dtype=np.float64)
        shift = float(np.linalg.norm(pose[:3, 3] - pose_c2w[:3, 3]))
        turn = _angle_deg(pose[:3, :3].T @ pose_c2w[:3, :3])
        out = Refinement(False, pose, np.asarray(result.covariance, np.float64), matches,
                         int(result.num_inliers), float(result.reprojection_error_px), shift, turn,
                         time_ms=(time.perf_counter() - t0) * 1000.0)
        if shift > c.max_correction_m or turn > c.max_correction_deg:
            out.message = (f"refined pose {shift:.3f} m / {turn:.2f} deg from the regressed one: "
                           "not trusted")
            return out
        out.accepted = True
        out.message = f"refined with {out.num_inliers} of {matches} guided matches"
        return out
