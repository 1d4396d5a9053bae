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


def on_reference_rays(points: np.ndarray, ref_xy: np.ndarray, K_ref: np.ndarray, ref_c2w: np.ndarray,
                      obs_track: np.ndarray, obs_image: np.ndarray, obs_xy: np.ndarray,
                      poses_c2w: np.ndarray, Ks: np.ndarray, iterations: int = 5
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Points moved onto the rays of the reference pixels that define them, at the depth that best
    fits the other observations, and each point's RMS reprojection error there (NaN without any).

    A point triangulated freely from a keyframe pixel and its tracks spreads the tracks' error over
    all the views, its own included, so it no longer projects onto that pixel: every query tracking
    the pixel then inherits the offset. On the ray, one depth per point is fitted (Gauss-Newton on
    the pixel error; ``points`` give the start, NaN where a track failed and stays failed).
    ``obs_*``: the observations to fit (track id, image id, pixel), the reference ones excluded."""
    points = np.asarray(points, np.float64)
    ref_xy = np.asarray(ref_xy, np.float64).reshape(-1, 2)
    R, C = ref_c2w[:3, :3], ref_c2w[:3, 3]
    rays = np.hstack([ref_xy, np.ones((len(ref_xy), 1))]) @ np.linalg.inv(K_ref).T @ R.T  # depth 1 along the axis
    depth = (points - C) @ R[:, 2]
    t, j = np.asarray(obs_track, np.int64), np.asarray(obs_image, np.int64)
    use = np.isfinite(depth[t]) & (depth[t] > 0)
    t, j, x = t[use], j[use], np.asarray(obs_xy, np.float64).reshape(-1, 2)[use]
    Rj = np.asarray(poses_c2w, np.float64)[j, :3, :3]
    a = np.einsum("mki,mk->mi", Rj, C - np.asarray(poses_c2w, np.float64)[j, :3, 3])  # R_j^T (C - C_j)
    e = np.einsum("mki,mk->mi", Rj, rays[t])
    f = np.asarray(Ks, np.float64)[j]

    def residuals(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Y = a + d[t, None] * e  # the observing camera's coordinates of the point at depth d
        z = np.where(Y[:, 2] > 1e-9, Y[:, 2], np.nan)
        r = np.stack([f[:, 0, 0] * Y[:, 0] / z + f[:, 0, 2], f[:, 1, 1] * Y[:, 1] / z + f[:, 1, 2]], 1) - x
        J = np.stack([f[:, 0, 0] * (e[:, 0] * Y[:, 2] - Y[:, 0] * e[:, 2]),
                      f[:, 1, 1] * (e[:, 1] * Y[:, 2] - Y[:, 1] * e[:, 2])], 1) / (z * z)[:, None]
        return r, J

    for _ in range(iterations):
        r, J = residuals(depth)
        H = np.bincount(t, np.nan_to_num((J * J).sum(1)), minlength=len(points))
        g = np.bincount(t, np.nan_to_num((J * r).sum(1)), minlength=len(points))
        depth = depth - np.where(H > 0, g / np.where(H > 0, H, 1.0), 0.0)
    err = (residuals(depth)[0] ** 2).sum(1)
    n = np.bincount(t, minlength=len(points))
    rms = np.sqrt(np.bincount(t, np.nan_to_num(err, nan=1e12), minlength=len(points)) / np.maximum(n, 1))
    rms[n == 0] = np.nan
    out = C + depth[:, None] * rays
    out[~np.isfinite(depth) | (depth <= 0)] = np.nan
    return out, rms
