"""Multi-view triangulation of feature tracks from KNOWN camera poses.

Each track is initialised by the linear DLT on normalised image coordinates, refined by
Gauss-Newton on the pixel reprojection error with Cauchy weights, stripped of observations whose
error exceeds the threshold, and re-triangulated from the remaining ones. A point survives if it
keeps ``min_views`` observations, lies in front of all of them, and is seen under a triangulation
angle of at least ``min_angle_deg`` (small angles give depth that is mostly noise).

The tracks are solved in the native module (native/src/triangulation.cpp): one small problem per
track, which numpy could only batch through its slow small-matrix kernels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..ransac import native_module


@dataclass
class TriangulationSettings:
    max_reproj_px: float = 2.0
    min_angle_deg: float = 0.5
    min_views: int = 2
    min_depth_m: float = 0.05
    iterations: int = 6


@dataclass
class Triangulated:
    points: np.ndarray  # (T, 3) world coordinates, NaN where the track failed
    valid: np.ndarray  # (T,) bool
    obs_inlier: np.ndarray  # (M,) bool, per input observation
    obs_error_px: np.ndarray  # (M,) reprojection error of each observation (inf if its track failed)


def triangulate_tracks(obs_track: np.ndarray, obs_image: np.ndarray, obs_xy: np.ndarray,
                       poses_c2w: np.ndarray, Ks: np.ndarray, num_tracks: int,
                       settings: TriangulationSettings = TriangulationSettings()) -> Triangulated:
    """Triangulate ``num_tracks`` tracks given observations (track id, image id, pixel xy)."""
    obs_track = np.asarray(obs_track, np.int64)
    obs_image = np.asarray(obs_image, np.int64)
    obs_xy = np.asarray(obs_xy, np.float64).reshape(-1, 2)
    if not (len(obs_track) == len(obs_image) == len(obs_xy)):
        raise ValueError("obs_track, obs_image and obs_xy must have the same length")
    w2c = np.linalg.inv(np.asarray(poses_c2w, np.float64))[:, :3, :]
    native = native_module()
    options = native.TriangulationOptions()
    for name, value in asdict(settings).items():  # the C++ struct mirrors the dataclass field by field
        setattr(options, name, value)
    points, valid, inlier, error = native.triangulate_tracks(
        obs_track, obs_image, obs_xy, np.ascontiguousarray(w2c), np.asarray(Ks, np.float64), int(num_tracks),
        options)
    return Triangulated(points, valid, inlier, error)
