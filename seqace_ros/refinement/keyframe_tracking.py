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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from .. import ransac
from ..geometry import pose_errors
from ..input_bounds import HARD_LIMITS, compressed_size, size_problem
from ..relocalization.pnp import project, reprojection_errors
from .depth_aware_pose import fit_selected, refine_pose_depth_aware
from .patch_warp import facing_normals, point_homographies, track_through_homographies
from .tracking_config import TrackingConfig
from .triangulation import TriangulationSettings, on_reference_rays, triangulate_tracks


@dataclass
class KeyframeSettings:
    """How the keyframe refinement data is built from the mapping frames."""

    # Every stride-th mapping frame is a keyframe, and so is any frame further than the neighbour
    # distance (or angle) from all keyframes chosen before it: few views far apart are all kept.
    stride: int = 3
    # Reference pixels (Shi-Tomasi corners) per keyframe of 640x480, in proportion to the area for
    # other sizes: the same density on a high-resolution camera.
    corners: int = 600
    corner_quality: float = 0.005
    corner_distance_px: int = 10
    # Mapping frames each keyframe's corners are tracked into. LK follows a patch reliably only
    # over modest viewpoint changes, so the neighbours stay within 0.4 m (benchmarks/README.md).
    neighbours: int = 10
    neighbour_max_angle_deg: float = 30.0
    neighbour_max_distance_m: float = 0.4
    neighbour_min_baseline_m: float = 0.03
    # Few views far apart (a building photographed from a few places): when fewer than
    # min_neighbours lie within the distance above, the nearest ones up to this share of the
    # keyframe's scene depth are used, and LK starts from the map's own scene coordinates
    # (the rotation alone is too far off there).
    min_neighbours: int = 2
    wide_baseline_depth_ratio: float = 0.5
    # True: such a keyframe is first warped into each neighbour by the homography of the plane
    # facing it at its median depth (rotation, scale change, average parallax). It kept more points
    # on a facade seen 10-20 deg apart but fewer, and less precise ones, on the courtyard's sparse
    # views (benchmarks/README.md), so off.
    wide_baseline_plane_warp: bool = False
    window_px: int = 21
    pyramid_levels: int = 4
    forward_backward_px: float = 0.5
    # Warp out the rotation between the views before tracking. Off here: it cost points and
    # precision while mapping (the neighbours are near; benchmarks/README.md), unlike at query time.
    derotate: bool = False
    epipolar_px: float = 1.0
    # Each point is moved onto the ray of the keyframe pixel that defines it (its depth fitted to
    # the tracks), and dropped if the tracks then miss it by more than the triangulation's error
    # bound: a freely triangulated point misses its own pixel by a fraction of a pixel, an offset
    # every query tracking that pixel inherited (benchmarks/README.md, "Session 10").
    on_reference_rays: bool = True
    jpeg_quality: int = 95
    triangulation: TriangulationSettings = field(
        default_factory=lambda: TriangulationSettings(max_reproj_px=1.0, min_angle_deg=2.0, min_views=3))


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
    h, w = g.shape
    # The local mean and deviation vary slowly: computed at half resolution and interpolated back,
    # they cost a quarter of the full-resolution blurs, with no loss in the refined poses
    # (benchmarks/README.md, "A cheaper refinement").
    size = (max(1, w // 2), max(1, h // 2))
    s = sigma / 2.0
    k = 2 * int(np.ceil(3.0 * s)) + 1
    mean = cv2.GaussianBlur(cv2.resize(g, size, interpolation=cv2.INTER_AREA), (k, k), s)
    mean_sq = cv2.GaussianBlur(cv2.resize(g * g, size, interpolation=cv2.INTER_AREA), (k, k), s)
    scale = 40.0 / (cv2.sqrt(cv2.max(mean_sq - mean * mean, 0.0)) + 4.0)
    offset = 128.0 - mean * scale
    scale = cv2.resize(scale, (w, h), interpolation=cv2.INTER_LINEAR)
    offset = cv2.resize(offset, (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.add(cv2.multiply(g, scale), offset, dtype=cv2.CV_8U)  # saturates to 0..255


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
                        window: int, levels: int, fb_px: float, derotate: bool = True,
                        plane_depth: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`track_patches` between two posed views. With ``derotate`` the source is first warped
    by the homography of the rotation between the cameras, so the patches LK compares differ only
    by the translation's parallax (LK models a shift, not an in-plane rotation or a tilt)."""
    if not derotate:
        return track_patches(src, dst, xy, init, window, levels, fb_px)
    H = (_rotation_homography(K_src, T_src, K_dst, T_dst) if plane_depth is None
         else _plane_homography(K_src, T_src, K_dst, T_dst, plane_depth))
    # A warp that shrinks the source (a high-resolution keyframe, a lower-resolution query) would
    # sample it without low-pass filtering, aliasing its texture: halve it first as often as needed.
    pyramid, shrink = src, _local_scale(H, src.shape[1] / 2.0, src.shape[0] / 2.0)
    halvings = 0
    while shrink < 0.75 and halvings < 3 and min(pyramid.shape) > 32:
        pyramid, shrink, halvings = cv2.pyrDown(pyramid), 2.0 * shrink, halvings + 1
    H_pyr = H @ np.diag([2.0 ** halvings, 2.0 ** halvings, 1.0])  # pyrDown: level pixel i is source pixel 2i
    warped = cv2.warpPerspective(pyramid, H_pyr, (dst.shape[1], dst.shape[0]), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE)
    h = np.hstack([xy, np.ones((len(xy), 1))]) @ H.T
    ok_w = h[:, 2] > 1e-6
    xy_w = (h[:, :2] / np.where(ok_w, h[:, 2], 1.0)[:, None]).astype(np.float32)
    pos, ok = track_patches(warped, dst, xy_w, init, window, levels, fb_px)
    return pos, ok & ok_w


def _local_scale(H: np.ndarray, x: float, y: float) -> float:
    """How much the homography ``H`` scales lengths around the pixel (x, y)."""
    p = np.array([[x, y, 1.0], [x + 1.0, y, 1.0], [x, y + 1.0, 1.0]]) @ H.T
    q = p[:, :2] / p[:, 2:3]
    return float(np.sqrt(abs(np.linalg.det(np.stack([q[1] - q[0], q[2] - q[0]])))))


def _rotation_homography(K_src: np.ndarray, T_src: np.ndarray, K_dst: np.ndarray, T_dst: np.ndarray
                         ) -> np.ndarray:
    """Pixels of the source to the destination under the rotation between the cameras alone."""
    return K_dst @ T_dst[:3, :3].T @ T_src[:3, :3] @ np.linalg.inv(K_src)


def _plane_homography(K_src: np.ndarray, T_src: np.ndarray, K_dst: np.ndarray, T_dst: np.ndarray,
                      depth: float) -> np.ndarray:
    """Pixels of the source to the destination for points on the plane facing the source camera
    at ``depth``: the rotation and the translation's average parallax and scale change."""
    T = np.linalg.inv(T_dst) @ T_src  # source camera -> destination camera
    n = np.array([0.0, 0.0, 1.0])
    return K_dst @ (T[:3, :3] + np.outer(T[:3, 3], n) / depth) @ np.linalg.inv(K_src)


def _rotation_init(xy: np.ndarray, K_src: np.ndarray, T_src: np.ndarray, K_dst: np.ndarray,
                   T_dst: np.ndarray) -> np.ndarray:
    """Where ``xy`` would land under the rotation between the cameras alone (points at infinity)."""
    H = _rotation_homography(K_src, T_src, K_dst, T_dst)
    h = np.hstack([xy, np.ones((len(xy), 1))]) @ H.T
    return (h[:, :2] / h[:, 2:3]).astype(np.float32)


_BOOTSTRAP = TriangulationSettings(max_reproj_px=2.0, min_angle_deg=0.2, min_views=2)
IMAGE_CACHE = 128  # mapping frames held while keyframes are built (two images of each)


def _keyframe_indices(poses: np.ndarray, s: KeyframeSettings) -> list[int]:
    """Every stride-th frame, and any frame no chosen keyframe covers (for coverage where views are few)."""
    chosen: list[int] = []
    c, axis = poses[:, :3, 3], poses[:, :3, 2]
    for i in range(len(poses)):
        if chosen and i % max(1, s.stride):
            d = np.linalg.norm(c[chosen] - c[i], axis=1)
            ang = np.degrees(np.arccos(np.clip(axis[chosen] @ axis[i], -1.0, 1.0)))
            if ((d <= s.neighbour_max_distance_m) & (ang <= s.neighbour_max_angle_deg)).any():
                continue
        chosen.append(i)
    return chosen


def _neighbours(poses: np.ndarray, i: int, s: KeyframeSettings, max_distance_m: float | None = None
                ) -> np.ndarray:
    c = poses[:, :3, 3]
    d = np.linalg.norm(c - c[i], axis=1)
    ang = np.degrees(np.arccos(np.clip(poses[:, :3, 2] @ poses[i, :3, 2], -1.0, 1.0)))
    usable = (ang <= s.neighbour_max_angle_deg) & (d >= s.neighbour_min_baseline_m)
    if max_distance_m is not None:  # few views: the nearest ones within the wider bound
        cand = np.flatnonzero(usable & (d <= max_distance_m))
        return cand[np.argsort(d[cand])][: s.neighbours]
    cand = np.flatnonzero(usable & (d <= s.neighbour_max_distance_m))
    if len(cand) <= s.neighbours:
        return cand[np.argsort(d[cand])]
    # Spread the picks over the candidates' baselines: short ones track reliably, long ones
    # triangulate precisely.
    cand = cand[np.argsort(d[cand])]
    return cand[np.unique(np.linspace(0, len(cand) - 1, s.neighbours).round().astype(int))]  # ascending


SceneCoordinates = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _predicted_points(predict: SceneCoordinates, image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """The map's scene coordinate for each pixel ``xy`` of ``image``: that of the nearest cell."""
    cells, points = predict(image)
    out = np.full((len(xy), 3), np.nan)
    if len(cells) == 0:
        return out
    for a in range(0, len(xy), 256):  # bounded memory: (256, cells) distances at a time
        d = ((xy[a:a + 256, None, :] - cells[None, :, :]) ** 2).sum(-1)
        out[a:a + 256] = points[d.argmin(axis=1)]
    return out


def build_keyframes(frames, settings: KeyframeSettings | None = None, progress: bool = True,
                    predict: SceneCoordinates | None = None) -> tuple[list[Keyframe], dict]:
    """Keyframes with their tracked-and-triangulated reference pixels from posed mapping ``frames``.

    ``predict(image)`` (optional): the map's scene coordinates for an image, as cell pixels (M, 2)
    and world points (M, 3). Where the views are few and far apart (fewer than
    ``min_neighbours`` within ``neighbour_max_distance_m``) it sets how far the neighbours may be
    (by the keyframe's scene depth) and where LK starts; without it such keyframes are skipped.
    """
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

    keyframes, n_corners, n_obs, n_wide = [], 0, 0, 0
    near_corners = near_points = 0  # of keyframes with near neighbours: how consistent the poses are
    for i in tqdm(_keyframe_indices(poses, s), desc="refinement keyframes", disable=not progress, leave=False):
        gray_i, norm_i = image(i)
        n_wanted = max(1, round(s.corners * gray_i.size / (640 * 480)))
        found = cv2.goodFeaturesToTrack(gray_i, n_wanted, s.corner_quality, s.corner_distance_px, blockSize=7)
        if found is None:
            continue
        xy = found.reshape(-1, 2).astype(np.float32)
        n_corners += len(xy)
        obs_track, obs_image, obs_xy = [np.arange(len(xy))], [np.full(len(xy), i)], [xy]
        neighbours, X, plane, wide = _neighbours(poses, i, s), None, None, False
        if len(neighbours) < s.min_neighbours and predict is not None:
            # Few views, far apart: the map's scene coordinates say how deep the scene is (so how
            # far a neighbour may be) and where each corner lands in the first neighbour.
            X = _predicted_points(predict, gray_i, xy)
            z = (X - poses[i][:3, 3]) @ poses[i][:3, 2]
            z = z[np.isfinite(z) & (z > 0)]
            if len(z):
                neighbours = _neighbours(poses, i, s, s.wide_baseline_depth_ratio * float(np.median(z)))
                plane = float(np.median(z)) if s.wide_baseline_plane_warp else None
                n_wide += 1
                wide = True
        # Neighbours from the shortest baseline to the longest: each one's LK starts where the
        # point triangulated from the earlier ones (or predicted by the map) projects, the
        # rotation alone for the first, so the long baselines that give precise depth start
        # within a few pixels.
        for j in neighbours:
            norm_j = image(int(j))[1]
            init = _rotation_init(xy, Ks[i], poses[i], Ks[j], poses[j])
            if X is not None:
                have = np.isfinite(X).all(axis=1)
                init[have] = project(X[have], Ks[j], poses[j])[0].astype(np.float32)
            pos, ok = track_between_views(norm_i, Ks[i], poses[i], norm_j, Ks[j], poses[j], xy, init,
                                          s.window_px, s.pyramid_levels, s.forward_backward_px,
                                          s.derotate or plane is not None, plane)
            F = fundamental_from_poses(Ks[i], poses[i], Ks[j], poses[j])
            idx = np.flatnonzero(ok)
            idx = idx[epipolar_distance(F, xy[idx].astype(np.float64), pos[idx].astype(np.float64)) < s.epipolar_px]
            obs_track.append(idx)
            obs_image.append(np.full(len(idx), j))
            obs_xy.append(pos[idx])
            so_far = triangulate_tracks(np.concatenate(obs_track), np.concatenate(obs_image),
                                        np.concatenate(obs_xy), poses, Ks, len(xy), _BOOTSTRAP)
            X = np.where(so_far.valid[:, None], so_far.points, X if X is not None else np.nan)
        all_track, all_image, all_xy = np.concatenate(obs_track), np.concatenate(obs_image), np.concatenate(obs_xy)
        tri = triangulate_tracks(all_track, all_image, all_xy, poses, Ks, len(xy), s.triangulation)
        # The reference observation must be among the inliers: the point is defined by that pixel.
        ref_ok = tri.obs_inlier[:len(xy)] & tri.valid
        points = tri.points
        if s.on_reference_rays:
            fit = tri.obs_inlier & (np.arange(len(all_track)) >= len(xy))  # the tracks, not the pixel itself
            points, rms = on_reference_rays(tri.points, xy, Ks[i], poses[i], all_track[fit], all_image[fit],
                                            all_xy[fit], poses, Ks)
            fits = np.nan_to_num(rms, nan=np.inf) <= s.triangulation.max_reproj_px
            ref_ok &= np.isfinite(points).all(axis=1) & fits
        n_obs += int(tri.obs_inlier.sum())
        if not wide:
            near_corners += len(xy)
            near_points += int(ref_ok.sum()) if ref_ok.sum() >= 8 else 0
        if ref_ok.sum() < 8:
            continue
        keyframes.append(Keyframe(gray_i, poses[i], Ks[i].copy(), xy[ref_ok], points[ref_ok].astype(np.float32)))
    stats = {"mapping_frames": len(frames), "keyframes": len(keyframes), "wide_baseline": n_wide,
             "corners": n_corners, "near_corners": near_corners, "near_points": near_points,
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


def support_kept(refined_c2w: np.ndarray, regressed_c2w: np.ndarray, K: np.ndarray, points2d: np.ndarray,
                 points3d: np.ndarray, threshold_px: float) -> float:
    """Share of the correspondences within ``threshold_px`` of the regressed pose that are still
    within it under the refined pose (1.0 when there are none)."""
    p2, p3 = np.asarray(points2d, np.float64), np.asarray(points3d, np.float64)
    before = reprojection_errors(p2, p3, K, regressed_c2w) < threshold_px
    if not before.any():
        return 1.0
    after = reprojection_errors(p2, p3, K, refined_c2w) < threshold_px
    return float((after & before).sum() / before.sum())


def _in_view(points: np.ndarray, K: np.ndarray, pose_c2w: np.ndarray, w: int, h: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the world ``points`` that project in front of the camera and inside a
    ``w`` x ``h`` image, and all the projections."""
    uv, front = project(points.astype(np.float64), K, pose_c2w)
    inside = front & (uv[:, 0] >= 0) & (uv[:, 1] >= 0) & (uv[:, 0] < w) & (uv[:, 1] < h)
    return np.flatnonzero(inside), uv


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
        self.depths = [float(np.median((k.points - k.pose_c2w[:3, 3]) @ k.pose_c2w[:3, 2])) if len(k.points)
                       else None for k in keyframes]

    def nearest(self, pose_c2w: np.ndarray) -> np.ndarray:
        """Keyframes that look the same way (within ``max_angle_deg``), nearest first."""
        d = np.linalg.norm(self.centres - pose_c2w[:3, 3], axis=1)
        ang = np.degrees(np.arccos(np.clip(self.axes @ pose_c2w[:3, 2], -1.0, 1.0)))
        score = d + self.config.angle_weight_m_per_deg * ang
        order = np.argsort(score)
        return order[ang[order] <= self.config.max_angle_deg][: self.config.keyframes]

    def correspondences(self, gray: np.ndarray, K: np.ndarray, pose_c2w: np.ndarray, wide: bool = False
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, ...]]:
        """2D-3D matches of the nearest keyframes' points in ``gray`` (already normalized by
        :func:`normalize_for_tracking`), tracked from where ``pose_c2w`` projects them: pixels,
        world points, the centre of the keyframe each point comes from, and those keyframes."""
        return self._tracks(gray, K, pose_c2w, wide)[:4]

    def _tracks(self, gray: np.ndarray, K: np.ndarray, pose_c2w: np.ndarray, wide: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, ...], np.ndarray]:
        """:meth:`correspondences`, and the keyframe of each match."""
        c = self.config
        window, levels = (c.wide_window_px, c.wide_pyramid_levels) if wide else (c.window_px, c.pyramid_levels)
        h, w = gray.shape
        max_shift = c.wide_max_shift_ratio * w if wide else c.max_shift_px
        p2, p3, origin, used, source = [], [], [], [], []
        for k in self.nearest(pose_c2w):
            kf = self.keyframes[k]
            idx, init = _in_view(kf.points, K, pose_c2w, w, h)
            pos, ok = track_between_views(self.images[k], kf.K, kf.pose_c2w, gray, K, pose_c2w, kf.xy[idx],
                                          init[idx], window, levels, c.forward_backward_px, c.derotate,
                                          self.depths[k] if c.plane_warp else None)
            ok &= np.linalg.norm(pos - init[idx], axis=1) <= max_shift
            p2.append(pos[ok])
            p3.append(kf.points[idx[ok]])
            origin.append(np.broadcast_to(kf.pose_c2w[:3, 3], (int(ok.sum()), 3)))
            used.append(int(k))
            source.append(np.full(int(ok.sum()), int(k)))
        if not p2:
            return np.zeros((0, 2)), np.zeros((0, 3)), np.zeros((0, 3)), (), np.zeros(0, int)
        return (np.concatenate(p2).astype(np.float64), np.concatenate(p3).astype(np.float64),
                np.concatenate(origin).astype(np.float64), tuple(used), np.concatenate(source))

    def _warped_tracks(self, gray: np.ndarray, K: np.ndarray, pose_c2w: np.ndarray, k: int
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Keyframe ``k``'s points tracked into ``gray`` (normalized) from where ``pose_c2w``
        projects them, each patch resampled through the homography of the plane through its point
        facing the keyframe: pixels and world points."""
        kf = self.keyframes[k]
        h, w = gray.shape
        idx, _ = _in_view(kf.points, K, pose_c2w, w, h)
        T = np.linalg.inv(kf.pose_c2w)
        cam = kf.points[idx].astype(np.float64) @ T[:3, :3].T + T[:3, 3]
        H = point_homographies(kf.K, kf.pose_c2w, K, pose_c2w, cam, facing_normals(cam))
        pos, ok = track_through_homographies(self.images[k], gray, kf.xy[idx].astype(np.float64), H,
                                             self.config.window_px, self.config.max_shift_px)
        return pos[ok].astype(np.float64), kf.points[idx[ok]].astype(np.float64)

    def _warp_far_keyframes(self, gray: np.ndarray, K: np.ndarray, pose_c2w: np.ndarray, p2: np.ndarray,
                            p3: np.ndarray, origins: np.ndarray, source: np.ndarray, used: tuple[int, ...]
                            ) -> np.ndarray:
        """``pose_c2w`` fitted again after the keyframes at least ``point_warp_ratio`` of their
        depth away were tracked through each point's plane (the others' tracks kept)."""
        c = self.config
        far = [k for k in used if self.depths[k] and np.linalg.norm(self.centres[k] - pose_c2w[:3, 3])
               >= c.point_warp_ratio * self.depths[k]]
        if not far:
            return pose_c2w
        keep = ~np.isin(source, far)
        q2, q3, qo = [p2[keep]], [p3[keep]], [origins[keep]]
        for k in far:
            a, b = self._warped_tracks(gray, K, pose_c2w, k)
            q2.append(a)
            q3.append(b)
            qo.append(np.broadcast_to(self.centres[k], (len(a), 3)))
        q2, q3, qo = np.concatenate(q2), np.concatenate(q3), np.concatenate(qo)
        if len(q2) < c.min_inliers:
            return pose_c2w
        return fit_selected(pose_c2w, q2, q3, qo, K, c.along_epipolar_weight,
                            c.final_fit_px or (c.refine_threshold_px,))[0]

    def refine(self, gray: np.ndarray, K: np.ndarray, pose_c2w: np.ndarray, seed: int = 0,
               support: tuple[np.ndarray, np.ndarray, float] | None = None) -> TrackedRefinement:
        """The refined pose of the image ``gray`` whose regressed pose is ``pose_c2w`` (``accepted``
        says whether it is trusted). ``support``: the regressed pose's inlier correspondences
        (pixels (N, 2), scene points (N, 3)) and their inlier threshold in pixels; a refined pose
        that loses more than ``1 - min_support_kept`` of them is not trusted."""
        t0 = time.perf_counter()
        norm = normalize_for_tracking(gray)
        out = self._attempt(norm, K, pose_c2w, pose_c2w, seed, wide=False)
        if not out.accepted and self.config.wide_search:
            coarse = self._attempt(norm, K, pose_c2w, pose_c2w, seed, wide=True)
            if coarse.accepted:
                out = self._attempt(norm, K, coarse.pose_c2w, pose_c2w, seed, wide=False,
                                    min_ratio=self.config.wide_min_inlier_ratio)
                out.message = ("wide search, then " if out.accepted else "after a wide search: ") + out.message
            else:
                out.message += f"; wide search: {coarse.message}"
        if out.accepted and support is not None:
            kept = support_kept(out.pose_c2w, pose_c2w, K, *support)
            if kept < self.config.min_support_kept:
                out.accepted = False
                out.message = (f"refined pose keeps only {kept:.0%} of the regressed pose's scene-coordinate "
                               f"inliers: not trusted ({out.message})")
        out.time_ms = (time.perf_counter() - t0) * 1000.0
        return out

    def _attempt(self, norm: np.ndarray, K: np.ndarray, start_c2w: np.ndarray, regressed_c2w: np.ndarray,
                 seed: int, wide: bool, min_ratio: float | None = None) -> TrackedRefinement:
        """One tracking pass from ``start_c2w``, judged against the regressed pose."""
        c = self.config
        min_ratio = c.min_inlier_ratio if min_ratio is None else min_ratio
        p2, p3, origins, used, source = self._tracks(norm, K, start_c2w, wide)
        if len(p2) < c.min_inliers:
            return TrackedRefinement(False, num_tracks=len(p2), keyframes=used,
                                     message=f"only {len(p2)} patches tracked from {len(used)} keyframes")
        res = ransac.estimate_pose(
            p2, p3, K, inlier_threshold_px=c.wide_inlier_threshold_px if wide else c.inlier_threshold_px,
            refine_threshold_px=c.wide_refine_threshold_px if wide else c.refine_threshold_px, scoring="hard",
            min_inliers=c.min_inliers, min_iterations=c.min_iterations, time_budget_ms=c.time_budget_ms,
            num_threads=self.threads, seed=seed, loss_scale_px=1.0)
        if not res.success:
            return TrackedRefinement(False, num_tracks=len(p2), num_inliers=int(res.num_inliers),
                                     keyframes=used, message=f"refinement RANSAC failed: {res.message}")
        pose = np.asarray(res.T_c2w, np.float64)
        if (c.along_epipolar_weight < 1.0 or c.final_fit_px) and not wide:
            # RANSAC's covariance is kept for the result: the fit moves the pose by millimetres.
            if c.final_fit_px:
                pose, _ = fit_selected(pose, p2, p3, origins, K, c.along_epipolar_weight, c.final_fit_px)
            else:
                inl = np.asarray(res.inliers, bool)
                pose = refine_pose_depth_aware(pose, p2[inl], p3[inl], origins[inl], K, c.along_epipolar_weight)
        if c.point_warp_ratio > 0 and not wide and res.num_inliers >= min_ratio * len(p2):
            pose = self._warp_far_keyframes(norm, K, pose, p2, p3, origins, source, used)
        shift, turn = pose_errors(pose, regressed_c2w)
        out = TrackedRefinement(False, pose, np.asarray(res.covariance, np.float64), len(p2), int(res.num_inliers),
                                float(res.reprojection_error_px), shift, turn, used)
        if out.num_inliers < min_ratio * len(p2):
            out.message = f"only {out.num_inliers} of {len(p2)} tracked patches agree: not trusted"
            return out
        depth = float(np.median((p3 - pose[:3, 3]) @ pose[:3, 2]))
        if shift > max(c.max_correction_m, c.max_correction_depth_ratio * depth) or turn > c.max_correction_deg:
            out.message = f"refined pose {shift:.3f} m / {turn:.2f} deg from the regressed one: not trusted"
            return out
        out.accepted = True
        out.message = f"refined with {out.num_inliers} of {len(p2)} tracked patches"
        return out
