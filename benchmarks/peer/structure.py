"""The peer's map: 3D points triangulated from the mapping frames with their KNOWN poses.

Pairs of mapping frames are chosen by pose proximity, matched (mutual nearest neighbour + ratio
test), verified against the fundamental matrix the two poses imply, chained into tracks and
triangulated (multi-view DLT + robust Gauss-Newton; seqace_ros.refinement.triangulation). Each
point keeps the mean of its observations' descriptors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from seqace_ros.refinement.known_poses import epipolar_distance, fundamental_from_poses, select_pairs
from seqace_ros.refinement.triangulation import TriangulationSettings, triangulate_tracks

from .descriptor_matching import match_descriptors
from .features import LocalFeatures
from .tracks import tracks_from_matches


@dataclass
class StructureSettings:
    pairs_per_frame: int = 5
    pair_max_angle_deg: float = 30.0
    pair_max_distance_m: float = 1.0
    pair_min_baseline_m: float = 0.03
    # Fewer mapping frames than this: every pair within the angle bound, however far apart (hloc's
    # exhaustive pairs for small sets; a few photos of a building are metres apart).
    exhaustive_below: int = 30
    match_ratio: float = 0.9
    match_mutual: bool = True
    match_precision: str = "bfloat16"  # similarity matmul; see descriptor_matching.similarity
    epipolar_px: float = 3.0
    triangulation: TriangulationSettings = field(
        default_factory=lambda: TriangulationSettings(min_angle_deg=1.0))


@dataclass
class KnownPoseStructure:
    points: np.ndarray  # (P, 3) world
    point_desc: np.ndarray  # (P, D) float32, unit norm (mean of the observations' descriptors)
    obs_point: np.ndarray  # (M,) point id of each observation
    obs_image: np.ndarray  # (M,) image id
    obs_xy: np.ndarray  # (M, 2) float32 pixels
    stats: dict


def verified_matches(feats: list[LocalFeatures], poses: np.ndarray, Ks: np.ndarray,
                     pairs: np.ndarray, settings: StructureSettings, progress: bool = True
                     ) -> tuple[np.ndarray, int]:
    """Match edges (global keypoint ids, as offsets into the concatenated features) of all pairs
    that pass the epipolar check with the known poses, and the number of matches before it."""
    from tqdm import tqdm

    offsets = np.concatenate([[0], np.cumsum([len(x) for x in feats])])
    edges, n_raw = [], 0
    for i, j in tqdm(pairs, desc="map: matching", disable=not progress, leave=False):
        ia, ib = match_descriptors(feats[i].descriptors.astype(np.float32),
                                   feats[j].descriptors.astype(np.float32),
                                   settings.match_ratio, settings.match_mutual,
                                   settings.match_precision)
        n_raw += len(ia)
        F = fundamental_from_poses(Ks[i], poses[i], Ks[j], poses[j])
        ok = epipolar_distance(F, feats[i].keypoints[ia].astype(np.float64),
                               feats[j].keypoints[ib].astype(np.float64)) < settings.epipolar_px
        edges.append(np.stack([ia[ok] + offsets[i], ib[ok] + offsets[j]], axis=1))
    return np.concatenate(edges) if edges else np.zeros((0, 2), np.int64), n_raw


def structure_from_known_poses(feats: list[LocalFeatures], poses: np.ndarray, Ks: np.ndarray,
                               settings: StructureSettings, progress: bool = True
                               ) -> KnownPoseStructure:
    """Pairs, verified matches, tracks and triangulated points from per-image features."""
    t0 = time.perf_counter()
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in feats])])
    node_image = np.repeat(np.arange(len(feats)), np.diff(offsets))
    few = len(feats) < settings.exhaustive_below
    pairs = select_pairs(poses, len(feats) if few else settings.pairs_per_frame, settings.pair_max_angle_deg,
                         np.inf if few else settings.pair_max_distance_m, settings.pair_min_baseline_m)
    if len(pairs) == 0:
        raise ValueError("no mapping pairs: no two mapping frames look the same way within "
                         f"{settings.pair_max_distance_m} m / {settings.pair_max_angle_deg} deg")
    edges, n_raw = verified_matches(feats, poses, Ks, pairs, settings, progress)
    t_match = time.perf_counter() - t0
    if len(edges) == 0:
        raise ValueError(
            f"no verified matches between the {len(pairs)} mapping pairs ({n_raw} before the "
            "epipolar check, {:.0f} keypoints per image): the images may be textureless or the "
            "poses wrong; check the scene, or loosen epipolar_px / match_ratio".format(
                float(np.mean(np.diff(offsets)))))
    track, num_tracks = tracks_from_matches(edges, node_image)
    nodes = np.flatnonzero(track >= 0)
    all_xy = np.concatenate([x.keypoints for x in feats])
    tri = triangulate_tracks(track[nodes], node_image[nodes], all_xy[nodes], poses, Ks,
                             num_tracks, settings.triangulation)
    keep_obs = tri.obs_inlier
    obs_nodes = nodes[keep_obs]
    used, obs_point = np.unique(track[obs_nodes], return_inverse=True)
    points = tri.points[used]
    if len(points) == 0:
        raise ValueError(f"no 3D point survived triangulation of {num_tracks} tracks: the mapping "
                         "baselines may be too small for the minimum triangulation angle "
                         f"({settings.triangulation.min_angle_deg} deg), or the poses wrong")
    all_desc = np.concatenate([x.descriptors for x in feats])
    desc = np.zeros((len(used), all_desc.shape[1]), np.float32)
    np.add.at(desc, obs_point, all_desc[obs_nodes].astype(np.float32))
    desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
    track_len = np.bincount(obs_point)
    stats = {
        "images": len(feats), "pairs": int(len(pairs)),
        "features_per_image": float(np.mean(np.diff(offsets))),
        "raw_matches": int(n_raw), "verified_matches": int(len(edges)),
        "tracks": int(num_tracks), "points": int(len(points)),
        "observations": int(len(obs_point)),
        "mean_track_length": float(track_len.mean()) if len(track_len) else 0.0,
        "median_obs_error_px": float(np.median(tri.obs_error_px[keep_obs])) if keep_obs.any() else None,
        "seconds": {"matching": t_match, "triangulation": time.perf_counter() - t0 - t_match},
    }
    return KnownPoseStructure(points, desc, obs_point.astype(np.int64),
                              node_image[obs_nodes].astype(np.int64),
                              all_xy[obs_nodes].astype(np.float32), stats)
