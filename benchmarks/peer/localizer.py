"""Localisation of one query image against the peer's map: retrieval, 2D-3D matching, PnP.

Timing covers everything after image decoding: feature extraction, global descriptor and
retrieval, matching, and PoseLib's LO-RANSAC with its non-linear refinement.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import poselib


from .descriptor_matching import match_descriptors
from .features import LocalFeatures, make_extractor
from .reconstruction import Reconstruction
from .retrieval import top_k_images, vlad


@dataclass
class LocalizeSettings:
    retrieval_k: int = 10
    match_ratio: float = 0.9
    match_mutual: bool = False
    match_precision: str = "float32"
    ransac_px: float = 12.0
    ransac_max_iterations: int = 10_000
    ransac_seed: int = 0  # PoseLib's sampling seed (benchmarks compare means over seeds)
    refine_loss_px: float = 4.0  # Cauchy scale of PoseLib's final refinement on the inliers
    min_inliers: int = 12


@dataclass
class QueryResult:
    pose_c2w: np.ndarray | None
    num_inliers: int = 0
    num_matches: int = 0
    timing_ms: dict[str, float] = field(default_factory=dict)
    message: str = ""


def _pose_c2w(pose: "poselib.CameraPose") -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = pose.R.T
    T[:3, 3] = -pose.R.T @ pose.t
    return T


class StructureLocalizer:
    def __init__(self, reconstruction: Reconstruction,
                 settings: LocalizeSettings = LocalizeSettings()) -> None:
        self.rec = reconstruction
        self.settings = settings
        s = reconstruction.settings
        self.extractor = make_extractor(s.features, s.max_features, **s.feature_options)

    def localize(self, image: np.ndarray, K: np.ndarray) -> QueryResult:
        """Pose of a decoded image (uint8 BGR or grey) with intrinsics K."""
        t0 = time.perf_counter()
        feats = self.extractor(image)
        features_ms = (time.perf_counter() - t0) * 1e3
        return self.localize_features(feats, K, image.shape[:2], features_ms)

    def localize_features(self, feats: LocalFeatures, K: np.ndarray, image_hw: tuple[int, int],
                          features_ms: float = 0.0) -> QueryResult:
        """Pose from already extracted query features (timing includes ``features_ms``)."""
        s = self.settings
        timing: dict[str, float] = {"features": features_ms}
        t1 = time.perf_counter()

        def done(result: QueryResult) -> QueryResult:
            timing["total"] = features_ms + (time.perf_counter() - t1) * 1e3
            result.timing_ms = timing
            return result

        if len(feats) < 4:
            return done(QueryResult(None, message=f"lost: {len(feats)} keypoints"))
        retrieved = top_k_images(vlad(feats.descriptors, self.rec.vlad_centres),
                                 self.rec.image_vlad, s.retrieval_k)
        t2 = time.perf_counter()
        timing["retrieval"] = (t2 - t1) * 1e3
        cand = self.rec.points_seen_by(retrieved)
        iq, ip = match_descriptors(feats.descriptors, self.rec.point_desc[cand], s.match_ratio,
                                   s.match_mutual, s.match_precision)
        t3 = time.perf_counter()
        timing["matching"] = (t3 - t2) * 1e3
        if len(iq) < 4:
            return done(QueryResult(None, 0, len(iq), message=f"lost: {len(iq)} 2D-3D matches"))
        h, w = image_hw
        camera = {"model": "PINHOLE", "width": int(w), "height": int(h),
                  "params": [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]}
        pose, info = poselib.estimate_absolute_pose(
            feats.keypoints[iq].astype(np.float64), self.rec.points[cand[ip]], camera,
            {"max_reproj_error": s.ransac_px, "max_iterations": s.ransac_max_iterations,
             "seed": s.ransac_seed},
            {"loss_type": "CAUCHY", "loss_scale": s.refine_loss_px})
        timing["ransac"] = (time.perf_counter() - t3) * 1e3
        n_inl = int(info.get("num_inliers", 0))
        if n_inl < s.min_inliers:
            return done(QueryResult(None, n_inl, len(iq),
                                    message=f"lost: {n_inl} inliers < {s.min_inliers}"))
        return done(QueryResult(_pose_c2w(pose), n_inl, len(iq), message="localized"))
