"""Refinement by tracking the map's keyframe patches into the query (no keypoint detection at query time).

Detected keypoints are repeatable only to about a pixel, and that noise enters twice: in the
triangulated points and in the query's keypoints. Here every map point is *defined* by a fixed
pixel of a keyframe (a corner, chosen once); its 3D position comes from tracking that pixel's
patch into neighbouring mapping frames with pyramidal Lucas-Kanade and triangulating with the
known poses, and at query time the same patch is tracked from the keyframe into the query,
starting where the regressed pose projects the point. Both ends measure the same image patch,
so the 2D-3D correspondences are as precise as sub-pixel patch alignment, and the cost is a few
hundred LK tracks instead of a feature extractor.

The map keeps, per keyframe, the grayscale image (JPEG), its pose and intrinsics, and the
reference pixels with their 3D points.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from .. import ransac
from ..geometry import pose_errors
from ..input_bounds import HARD_LIMITS, compressed_size, size_problem
from ..relocalization.pnp import project
from .triangulation import TriangulationSettings, triangulate_tracks


@dataclass
class KeyframeSettings:
    """How the keyframe refinement data is built from the mapping frames."""

    stride: int = 3  # every stride-th mapping frame is a keyframe
    corners: int = 600  # reference pixels per keyframe (Shi-Tomasi corners)
    corner_quality: float = 0.005
    corner_distance_px: int = 10
    # Mapping frames each keyframe's corners are tracked into. LK follows a patch reliably only
    # over modest viewpoint changes, so the neighbours stay within 0.4 m (benchmarks/README.md).
    neighbours: int = 10
    neighbour_max_angle_deg: float = 30.0
    neighbour_max_distance_m: float = 0.4
    neighbour_min_baseline_m: float = 0.03
    window_px: int = 21
    pyramid_levels: int = 4
    forward_backward_px: float = 0.5
    # Warp out the rotation between the views before tracking. Off here: it cost points and
    # precision while mapping (the neighbours are near; benchmarks/README.md), unlike at query time.
    derotate: bool = False
    epipolar_px: float = 1.0
    jpeg_quality: int = 95
    triangulation: TriangulationSettings = field(
        default_factory=lambda: TriangulationSettings(max_reproj_px=1.0, min_angle_deg=2.0, min_views=3))


@dataclass
class TrackingConfig:
    """How a regressed pose is refined against the keyframes (RelocConfig.refine turns it on or off)."""

    keyframes: int = 2  # nearest keyframes tracked into the query (3: slower, no more precise)
    max_angle_deg: float = 30.0
    window_px: int = 15  # as precise as larger windows, and faster (benchmarks/README.md)
    pyramid_levels: int = 2
    # Forward-backward check; 0: none. The shift bound and RANSAC already reject what it would,
    # at half the tracking cost.
    forward_backward_px: float = 0.0
    derotate: bool = True  # warp out the keyframe-query rotation first (LK models a shift only)
    # A patch that LK moved further than this from where the regressed pose projects it has
    # slid onto other structure (the regressed pose is within a few pixels).
    max_shift_px: float = 3.0
    inlier_threshold_px: float = 2.0
    refine_threshold_px: float = 1.0
    min_inliers: int = 30
    # Most tracks of a right pose agree with it; a minority fit means the patches slid onto other
    # structure (benchmarks/README.md, "Keyframe refinement").
    min_inlier_ratio: float = 0.4
    max_correction_m: float = 0.25
    max_correction_deg: float = 5.0
    time_budget_ms: float = 10.0


@dataclass
class Keyframe:
    image: np.ndarray  # (H, W) uint8
    pose_c2w: np.ndarray  # (4, 4) float64
    K: np.ndarray  # (3, 3) float64
    xy: np.ndarray  # (N, 2) float32 reference pixels
    points: np.ndarray  # (N, 3) float32 world


def normalize_for_tracking(gray: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    """uint8 image of local contrast (pixel minus local mean, over local deviation): LK assumes
    constant brightness, and frames taken minutes apart differ in exposure."""
    g = gray.astype(np.float32)
    mean = cv2.GaussianBlur(g, (0, 0), sigma)
    dev = np.sqrt(np.maximum(cv2.GaussianBlur(g * g, (0, 0), sigma) - mean * mean, 0.0)) + 4.0
    return np.clip(128.0 + 40.0 * (g - mean) / dev, 0, 255).astype(np.uint8)


def _lk(prev: np.ndarray, nxt: np.ndarray, xy: np.ndarray, init: np.ndarray, window: int, levels: int
        ) -> tuple[np.ndarray, np.ndarray]:
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)
    out, status, _ = cv2.calcOpticalFlowPyrLK(prev, nxt, xy.reshape(-1, 1, 2).astype(np.float32),
                                              init.reshape(-1, 1, 2).astype(np.float32).copy(),
                                              winSize=(window, window), maxLevel=levels, criteria=crit,
                                              flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    return out.reshape(-1, 2), status.reshape(-1).astype(bool)


def track_patches(src: np.ndarray, dst: np.ndarray, xy: np.ndarray, init: np.ndarray, window: int,
                  levels: int, fb_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``dst`` of the patches of ``src`` centred at ``xy`` (LK from ``init``), and
    which survived the forward-backward check."""
    if len(xy) == 0:
        return np.zeros((0, 2), np.float32), np.zeros(0, bool)
    fwd, ok = _lk(src, dst, xy, init, window, levels)
    if fb_px > 0:  # 0: no backward check (half the cost)
        back, ok2 = _lk(dst, src, fwd, xy, window, levels)
        ok &= ok2 & (np.linalg.norm(back - xy, axis=1) < fb_px)
    inside = (fwd[:, 0] >= 0) & (fwd[:, 1] >= 0) & (fwd[:, 0] <= dst.shape[1] - 1) & (fwd[:, 1] <= dst.shape[0] - 1)
    return fwd, ok & inside


def track_between_views(src: np.ndarray, K_src: np.ndarray, T_src: np.ndarray, dst: np.ndarray,
                        K_dst: np.ndarray, T_dst: np.ndarray, xy: np.ndarray, init: np.ndarray,
                        window: int, levels: int, fb_px: float, derotate: bool = True
                        ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`track_patches` between two posed views. With ``derotate`` the source is first warped
    by the homography of the rotation between the cameras, so the patches LK compares differ only
    by the translation's parallax (LK models a shift, not an in-plane rotation or a tilt)."""
    if not derotate:
        return track_patches(src, dst, xy, init, window, levels, fb_px)
    H = _rotation_homography(K_src, T_src, K_dst, T_dst)
    warped = cv2.warpPerspective(src, H, (dst.shape[1], dst.shape[0]), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
    h = np.hstack([xy, np.ones((len(xy), 1))]) @ H.T
    ok_w = h[:, 2] > 1e-6
    xy_w = (h[:, :2] / np.where(ok_w, h[:, 2], 1.0)[:, None]).astype(np.float32)
    pos, ok = track_patches(warped, dst, xy_w, init, window, levels, fb_px)
    return pos, ok & ok_w


def _rotation_homography(K_src: np.ndarray, T_src: np.ndarray, K_dst: np.ndarray, T_dst: np.ndarray
                         ) -> np.ndarray:
    """Pixels of the source to the destination under the rotation between the cameras alone."""
    return K_dst @ T_dst[:3, :3].T @ T_src[:3, :3] @ np.linalg.inv(K_src)


def _rotation_init(xy: np.ndarray, K_src: np.ndarray, T_src: np.ndarray, K_dst: np.ndarray,
                   T_dst: np.ndarray) -> np.ndarray:
    """Where ``xy`` would land under the rotation between the cameras alone (points at infinity)."""
    H = _rotation_homography(K_src, T_src, K_dst, T_dst)
    h = np.hstack([xy, np.ones((len(xy), 1))]) @ H.T
    return (h[:, :2] / h[:, 2:3]).astype(np.float32)


_BOOTSTRAP = TriangulationSettings(max_reproj_px=2.0, min_angle_deg=0.2, min_views=2)
IMAGE_CACHE = 128  # mapping frames held while keyframes are built (two images of each)


def _neighbours(poses: np.ndarray, i: int, s: KeyframeSettings) -> np.ndarray:
    c = poses[:, :3, 3]
    d = np.linalg.norm(c - c[i], axis=1)
    ang = np.degrees(np.arccos(np.clip(poses[:, :3, 2] @ poses[i, :3, 2], -1.0, 1.0)))
    ok = (ang <= s.neighbour_max_angle_deg) & (d <= s.neighbour_max_distance_m) & (d >= s.neighbour_min_baseline_m)
    cand = np.flatnonzero(ok)
    if len(cand) <= s.neighbours:
        return cand[np.argsort(d[cand])]
    # Spread the picks over the candidates' baselines: short ones track reliably, long ones
    # triangulate precisely.
    cand = cand[np.argsort(d[cand])]
    return cand[np.unique(np.linspace(0, len(cand) - 1, s.neighbours).round().astype(int))]  # ascending


def build_keyframes(frames, settings: KeyframeSettings | None = None, progress: bool = True
                    ) -> tuple[list[Keyframe], dict]:
    """Keyframes with their tracked-and-triangulated reference pixels from posed mapping ``frames``."""
    from tqdm import tqdm

    from ..encoder import to_gray
    from .known_poses import epipolar_distance, fundamental_from_poses

    s = settings or KeyframeSettings()
    t0 = time.perf_counter()
    poses = np.stack([np.asarray(f.pose_c2w, np.float64) for f in frames])
    Ks = np.tile(np.eye(3), (len(frames), 1, 1))  # filled as the frames are read

    # Frames are read when a keyframe needs them; neighbours are near each other, so a bounded
    # cache keeps the memory flat however long the recording.
    @functools.lru_cache(maxsize=IMAGE_CACHE)
    def image(j: int) -> tuple[np.ndarray, np.ndarray]:
        g = to_gray(frames[j].load_image())
        Ks[j] = np.asarray(frames[j].intrinsics(g.shape[1], g.shape[0]), np.float64)
        return g, normalize_for_tracking(g)

    keyframes, n_corners, n_obs = [], 0, 0
    for i in tqdm(range(0, len(frames), max(1, s.stride)), desc="refinement keyframes", disable=not progress,
                  leave=False):
        gray_i, norm_i = image(i)
        found = cv2.goodFeaturesToTrack(gray_i, s.corners, s.corner_quality, s.corner_distance_px, blockSize=7)
        if found is None:
            continue
        xy = found.reshape(-1, 2).astype(np.float32)
        n_corners += len(xy)
        obs_track, obs_image, obs_xy = [np.arange(len(xy))], [np.full(len(xy), i)], [xy]
        # Neighbours from the shortest baseline to the longest: each one's LK starts where the
        # point triangulated from the earlier ones projects (the rotation alone for the first),
        # so the long baselines that give precise depth start within a few pixels.
        X = None
        for j in _neighbours(poses, i, s):
            norm_j = image(int(j))[1]
            init = _rotation_init(xy, Ks[i], poses[i], Ks[j], poses[j])
            if X is not None:
                have = np.isfinite(X).all(axis=1)
                init[have] = project(X[have], Ks[j], poses[j])[0].astype(np.float32)
            pos, ok = track_between_views(norm_i, Ks[i], poses[i], norm_j, Ks[j], poses[j], xy, init,
                                          s.window_px, s.pyramid_levels, s.forward_backward_px, s.derotate)
            F = fundamental_from_poses(Ks[i], poses[i], Ks[j], poses[j])
            idx = np.flatnonzero(ok)
            idx = idx[epipolar_distance(F, xy[idx].astype(np.float64), pos[idx].astype(np.float64)) < s.epipolar_px]
            obs_track.append(idx)
            obs_image.append(np.full(len(idx), j))
            obs_xy.append(pos[idx])
            so_far = triangulate_tracks(np.concatenate(obs_track), np.concatenate(obs_image),
                                        np.concatenate(obs_xy), poses, Ks, len(xy), _BOOTSTRAP)
            X = np.where(so_far.valid[:, None], so_far.points, np.nan)
        tri = triangulate_tracks(np.concatenate(obs_track), np.concatenate(obs_image), np.concatenate(obs_xy),
                                 poses, Ks, len(xy), s.triangulation)
        # The reference observation must be among the inliers: the point is defined by that pixel.
        ref_ok = tri.obs_inlier[:len(xy)] & tri.valid
        n_obs += int(tri.obs_inlier.sum())
        if ref_ok.sum() < 8:
            continue
        keyframes.append(Keyframe(gray_i, poses[i], Ks[i].copy(), xy[ref_ok], tri.points[ref_ok].astype(np.float32)))
    stats = {"mapping_frames": len(frames), "keyframes": len(keyframes), "corners": n_corners,
             "points": int(sum(len(k.xy) for k in keyframes)), "observations": n_obs,
             "seconds": time.perf_counter() - t0, "settings": asdict(s)}
    return keyframes, stats


def keyframes_to_arrays(keyframes: list[Keyframe], jpeg_quality: int = 95) -> dict[str, np.ndarray]:
    """Flat arrays for the map file (``SceneMap.keyframes``; images as JPEG bytes)."""
    blobs = [cv2.imencode(".jpg", k.image, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])[1].reshape(-1)
             for k in keyframes]
    return {
        "jpeg": np.concatenate(blobs).astype(np.uint8),
        "jpeg_offsets": np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64),
        "poses": np.stack([k.pose_c2w for k in keyframes]).astype(np.float64),
        "intrinsics": np.stack([k.K for k in keyframes]).astype(np.float64),
        "xy": np.concatenate([k.xy for k in keyframes]).astype(np.float32),
        "points": np.concatenate([k.points for k in keyframes]).astype(np.float32),
        "point_offsets": np.cumsum([0] + [len(k.xy) for k in keyframes]).astype(np.int64),
    }


def keyframes_from_arrays(t: dict) -> list[Keyframe]:
    """Keyframes from ``SceneMap.keyframes`` (validated by load_map); raises ValueError for an
    image that does not decode or claims a size beyond the hard input bounds."""
    jpeg, jo, po = np.asarray(t["jpeg"]), np.asarray(t["jpeg_offsets"]), np.asarray(t["point_offsets"])
    poses, Ks = np.asarray(t["poses"], np.float64), np.asarray(t["intrinsics"], np.float64)
    xy, pts = np.asarray(t["xy"], np.float32), np.asarray(t["points"], np.float32)
    out = []
    for k in range(len(poses)):
        blob = jpeg[jo[k]:jo[k + 1]]
        size = compressed_size(blob.tobytes())
        problem = "not a JPEG image" if size is None else size_problem(*size, HARD_LIMITS)
        img = cv2.imdecode(blob, cv2.IMREAD_GRAYSCALE) if problem is None else None
        if img is None:
            raise ValueError(f"keyframe {k}: its image does not decode ({problem or 'corrupt data'})")
        out.append(Keyframe(img, poses[k], Ks[k], xy[po[k]:po[k + 1]], pts[po[k]:po[k + 1]]))
    return out


@dataclass
class TrackedRefinement:
    accepted: bool
    pose_c2w: np.ndarray | None = None
    covariance: np.ndarray | None = None
    num_tracks: int = 0
    num_inliers: int = 0
    reprojection_error_px: float | None = None
    correction_m: float | None = None
    correction_deg: float | None = None
    keyframes: tuple[int, ...] = ()
    message: str = ""
    time_ms: float = 0.0


class KeyframeRefiner:
    """Refines regressed poses by tracking the nearest keyframes' reference patches into the query."""

    def __init__(self, keyframes: list[Keyframe], config: TrackingConfig | None = None, threads: int = 2) -> None:
        if not keyframes:
            raise ValueError("no keyframes to refine against")
        self.keyframes = keyframes
        self.config = config or TrackingConfig()
        self.threads = threads
        self.centres = np.stack([k.pose_c2w[:3, 3] for k in keyframes])
        self.axes = np.stack([k.pose_c2w[:3, 2] for k in keyframes])
        self.images = [normalize_for_tracking(k.image) for k in keyframes]

    def nearest(self, pose_c2w: np.ndarray) -> np.ndarray:
        """Keyframes that look the same way, nearest first (a degree weighs like 2 cm)."""
        d = np.linalg.norm(self.centres - pose_c2w[:3, 3], axis=1)
        ang = np.degrees(np.arccos(np.clip(self.axes @ pose_c2w[:3, 2], -1.0, 1.0)))
        score = d + 0.02 * ang
        order = np.argsort(score)
        return order[ang[order] <= self.config.max_angle_deg][: self.config.keyframes]

    def correspondences(self, gray: np.ndarray, K: np.ndarray, pose_c2w: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
        c = self.config
        p2, p3, used = [], [], []
        h, w = gray.shape
        gray = normalize_for_tracking(gray)
        for k in self.nearest(pose_c2w):
            kf = self.keyframes[k]
            init, front = project(kf.points.astype(np.float64), K, pose_c2w)
            vis = front & (init[:, 0] >= 0) & (init[:, 1] >= 0) & (init[:, 0] < w) & (init[:, 1] < h)
            idx = np.flatnonzero(vis)
            pos, ok = track_between_views(self.images[k], kf.K, kf.pose_c2w, gray, K, pose_c2w, kf.xy[idx],
                                          init[idx], c.window_px, c.pyramid_levels, c.forward_backward_px,
                                          c.derotate)
            ok &= np.linalg.norm(pos - init[idx], axis=1) <= c.max_shift_px
            p2.append(pos[ok])
            p3.append(kf.points[idx[ok]])
            used.append(int(k))
        if not p2:
            return np.zeros((0, 2)), np.zeros((0, 3)), ()
        return np.concatenate(p2).astype(np.float64), np.concatenate(p3).astype(np.float64), tuple(used)

    def refine(self, gray: np.ndarray, K: np.ndarray, pose_c2w: np.ndarray, seed: int = 0) -> TrackedRefinement:
        t0 = time.perf_counter()
        c = self.config
        p2, p3, used = self.correspondences(gray, K, pose_c2w)

        def done(r: TrackedRefinement) -> TrackedRefinement:
            r.time_ms = (time.perf_counter() - t0) * 1000.0
            return r

        if len(p2) < c.min_inliers:
            return done(TrackedRefinement(False, num_tracks=len(p2), keyframes=used,
                                          message=f"only {len(p2)} patches tracked from {len(used)} keyframes"))
        res = ransac.estimate_pose(p2, p3, K, inlier_threshold_px=c.inlier_threshold_px,
                                   refine_threshold_px=c.refine_threshold_px, scoring="hard",
                                   min_inliers=c.min_inliers, time_budget_ms=c.time_budget_ms,
                                   num_threads=self.threads, seed=seed, loss_scale_px=1.0)
        if not res.success:
            return done(TrackedRefinement(False, num_tracks=len(p2), num_inliers=int(res.num_inliers),
                                          keyframes=used, message=f"refinement RANSAC failed: {res.message}"))
        pose = np.asarray(res.T_c2w, np.float64)
        shift, turn = pose_errors(pose, pose_c2w)
        out = TrackedRefinement(False, pose, np.asarray(res.covariance, np.float64), len(p2), int(res.num_inliers),
                                float(res.reprojection_error_px), shift, turn, used)
        if out.num_inliers < c.min_inlier_ratio * len(p2):
            out.message = f"only {out.num_inliers} of {len(p2)} tracked patches agree: not trusted"
            return done(out)
        if shift > c.max_correction_m or turn > c.max_correction_deg:
            out.message = f"refined pose {shift:.3f} m / {turn:.2f} deg from the regressed one: not trusted"
            return done(out)
        out.accepted = True
        out.message = f"refined with {out.num_inliers} of {len(p2)} tracked patches"
        return done(out)
