"""Multi-view triangulation of feature tracks from KNOWN camera poses, vectorised over tracks.

Each track is initialised by the linear DLT on normalised image coordinates, refined by
Gauss-Newton on the pixel reprojection error with Cauchy weights, stripped of observations whose
error exceeds the threshold, and re-triangulated from the remaining ones. A point survives if it
keeps ``min_views`` observations, lies in front of all of them, and is seen under a triangulation
angle of at least ``min_angle_deg`` (small angles give depth that is mostly noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


def _dlt(u: np.ndarray, R: np.ndarray, t: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Points (T, 3) minimising the algebraic error; u (T, L, 2) normalised coordinates, R (T, L, 3, 3),
    t (T, L, 3) world-to-camera, w (T, L) weights (0 for padding)."""
    P = np.concatenate([R, t[..., None]], axis=-1)  # (T, L, 3, 4)
    rows = np.stack([u[..., 0:1] * P[..., 2, :] - P[..., 0, :],
                     u[..., 1:2] * P[..., 2, :] - P[..., 1, :]], axis=2)  # (T, L, 2, 4)
    rows = rows * w[..., None, None]
    A = rows.reshape(len(u), -1, 4)
    _, vecs = np.linalg.eigh(np.einsum("tni,tnj->tij", A, A))
    X = vecs[:, :, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return X[:, :3] / X[:, 3:4]


def _project(X: np.ndarray, R: np.ndarray, t: np.ndarray, K: np.ndarray):
    """Pixels (T, L, 2), camera points (T, L, 3)."""
    Xc = np.einsum("tlij,tj->tli", R, X) + t
    z = Xc[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        n = Xc[..., :2] / z[..., None]
    px = np.einsum("tlij,tlj->tli", K[..., :2, :2], n) + K[..., :2, 2]
    return px, Xc


def _refine(X, x, R, t, K, w, iterations, cauchy_scale):
    """Gauss-Newton on pixel reprojection error with Cauchy IRLS weights (damped for stability)."""
    for _ in range(iterations):
        px, Xc = _project(X, R, t, K)
        r = px - x  # (T, L, 2)
        z = np.where(np.abs(Xc[..., 2]) < 1e-9, 1e-9, Xc[..., 2])
        # d(normalised)/d(Xc): [[1/z, 0, -x/z^2], [0, 1/z, -y/z^2]]
        dn = np.zeros(Xc.shape[:-1] + (2, 3))
        dn[..., 0, 0] = 1.0 / z
        dn[..., 1, 1] = 1.0 / z
        dn[..., 0, 2] = -Xc[..., 0] / z**2
        dn[..., 1, 2] = -Xc[..., 1] / z**2
        J = K[..., :2, :2] @ dn @ R  # (T, L, 2, 3)
        e2 = np.sum(r * r, axis=-1)
        wr = w / (1.0 + e2 / cauchy_scale**2)  # Cauchy weights
        H = np.einsum("tl,tlai,tlaj->tij", wr, J, J)
        g = np.einsum("tl,tlai,tla->ti", wr, J, r)
        H += 1e-6 * np.trace(H, axis1=1, axis2=2)[:, None, None] * np.eye(3) + 1e-12 * np.eye(3)
        dX = np.linalg.solve(H, -g[..., None])[..., 0]
        X = X + np.where(np.isfinite(dX), dX, 0.0)
    return X


def _triangle_angles_ok(X, centres, w, min_angle_deg) -> np.ndarray:
    rays = centres - X[:, None, :]
    rays /= np.maximum(np.linalg.norm(rays, axis=-1, keepdims=True), 1e-12)
    cos = np.einsum("tli,tmi->tlm", rays, rays)
    both = (w[:, :, None] > 0) & (w[:, None, :] > 0)
    cos = np.where(both, cos, 1.0)
    return cos.min(axis=(1, 2)) <= np.cos(np.radians(min_angle_deg))


def triangulate_tracks(obs_track: np.ndarray, obs_image: np.ndarray, obs_xy: np.ndarray,
                       poses_c2w: np.ndarray, Ks: np.ndarray, num_tracks: int,
                       settings: TriangulationSettings = TriangulationSettings(),
                       chunk: int = 20000) -> Triangulated:
    """Triangulate ``num_tracks`` tracks given observations (track id, image id, pixel xy)."""
    obs_track = np.asarray(obs_track, np.int64)
    obs_image = np.asarray(obs_image, np.int64)
    obs_xy = np.asarray(obs_xy, np.float64)
    if not (len(obs_track) == len(obs_image) == len(obs_xy)):
        raise ValueError("obs_track, obs_image and obs_xy must have the same length")
    w2c = np.linalg.inv(np.asarray(poses_c2w, np.float64))
    Ks = np.asarray(Ks, np.float64)
    centres_all = np.asarray(poses_c2w, np.float64)[:, :3, 3]

    points = np.full((num_tracks, 3), np.nan)
    valid = np.zeros(num_tracks, bool)
    obs_inlier = np.zeros(len(obs_track), bool)
    obs_err = np.full(len(obs_track), np.inf)

    order = np.argsort(obs_track, kind="stable")
    counts = np.bincount(obs_track, minlength=num_tracks)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # Bucket tracks by padded length (powers of two) so the padding wastes at most half the work.
    pad = np.where(counts > 0, 2 ** np.ceil(np.log2(np.maximum(counts, 2))).astype(np.int64), 0)
    for L in np.unique(pad[pad >= 2]):
        tracks_L = np.flatnonzero((pad == L) & (counts >= settings.min_views))
        step = max(1, chunk * 8 // int(L))
        for c0 in range(0, len(tracks_L), step):
            tr = tracks_L[c0:c0 + step]
            T = len(tr)
            slot = np.arange(L)[None, :]
            w = (slot < counts[tr][:, None]).astype(np.float64)
            idx = order[np.minimum(starts[tr][:, None] + slot, len(order) - 1)]  # (T, L) obs indices
            img = obs_image[idx]
            x = obs_xy[idx]
            R, t, K = w2c[img, :3, :3], w2c[img, :3, 3], Ks[img]
            Kinv = np.linalg.inv(Ks)[img]
            u = np.einsum("tlij,tlj->tli", Kinv[..., :2, :2], x) + Kinv[..., :2, 2]
            X = _dlt(u, R, t, w)
            X = np.where(np.isfinite(X), X, 0.0)
            X = _refine(X, x, R, t, K, w, settings.iterations, settings.max_reproj_px)
            for _ in range(2):  # drop outlier observations, re-initialise and refine on the rest
                px, _ = _project(X, R, t, K)
                err = np.linalg.norm(px - x, axis=-1)
                w = w * (err < settings.max_reproj_px)
                X = _dlt(u, R, t, w)
                X = np.where(np.isfinite(X), X, 0.0)
                X = _refine(X, x, R, t, K, w, settings.iterations, settings.max_reproj_px)
            px, Xc = _project(X, R, t, K)
            err = np.linalg.norm(px - x, axis=-1)
            err = np.where(np.isfinite(err), err, np.inf)
            inl = (w > 0) & (err < settings.max_reproj_px) & (Xc[..., 2] > settings.min_depth_m)
            # Cheirality: a point behind any of its cameras is wrong, not merely noisy.
            behind = ((w > 0) & (Xc[..., 2] <= settings.min_depth_m)).any(axis=1)
            ok = (inl.sum(axis=1) >= settings.min_views) & ~behind & np.isfinite(X).all(axis=1)
            ok &= _triangle_angles_ok(X, centres_all[img], inl.astype(np.float64),
                                      settings.min_angle_deg)
            points[tr[ok]] = X[ok]
            valid[tr[ok]] = True
            real = slot < counts[tr][:, None]  # slots beyond a track's length are padding
            obs_err[idx[real]] = np.where(ok[:, None], err, np.inf)[real]
            obs_inlier[idx[real]] = (inl & ok[:, None])[real]
    return Triangulated(points, valid, obs_inlier, obs_err)
