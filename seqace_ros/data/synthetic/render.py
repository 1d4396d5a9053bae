"""Render a scene from a pose: ray casting, mip-mapped texture lookup and baked lighting.

Pixel centres sit at integer coordinates (OpenCV's convention): pixel (u, v) sees the ray
through ``K^-1 [u, v, 1]``. With ``supersample = s`` each pixel averages s x s sub-pixel rays;
independently of that, textures are read from the mip level that matches each pixel's
footprint (trilinear), so distant and grazing surfaces do not alias.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .raycast import FaceTable, Hits, cast
from .scene import Scene

NEAR = 0.01  # metres: nothing closer than this is drawn


@dataclass
class FrameRender:
    image: np.ndarray  # (H, W, 3) float32 BGR, 0..255 before camera effects
    depth: np.ndarray | None  # (H, W) float32 metres along the optical axis, inf where no hit
    face: np.ndarray | None  # (H, W) int32 face index, -1 where no hit


class SceneTables:
    """Per-face lookup tables for the renderer (last row: a sentinel for 'no hit')."""

    def __init__(self, scene: Scene) -> None:
        if scene.lightmap is None:
            raise ValueError("scene has no lightmap: build scenes with make_scene()")
        self.faces = FaceTable.from_faces(scene.faces)
        tex = np.array([f.texture for f in scene.faces])
        at, lm = scene.atlas, scene.lightmap

        def col(values, pad=0.0):
            return np.append(np.asarray(values, np.float32), np.float32(pad))

        self.tex_x = col(at.rects[tex, 0])
        self.tex_y = col(at.rects[tex, 1])
        self.ppm = col(at.ppm[tex])
        # fu * ppm lies in [0, texture width] for a face its texture covers; wrapped faces
        # take it modulo the tile size, the others modulo a period they never reach.
        self.any_wrap = bool(at.wrap[tex].any())
        self.period_x = col(np.where(at.wrap[tex], at.rects[tex, 2], 1e9), 1e9)
        self.period_y = col(np.where(at.wrap[tex], at.rects[tex, 3], 1e9), 1e9)
        self.lm_x, self.lm_y = col(lm.offsets[:, 0]), col(lm.offsets[:, 1])
        self.lm_sx, self.lm_sy = col(lm.scales[:, 0]), col(lm.scales[:, 1])
        n = len(at.level_offsets)
        self.n_levels = n
        self.level_scale = (0.5 ** np.arange(n)).astype(np.float32)
        # level coordinate = (level-0 coordinate + 0.5) * scale - 0.5 + level offset
        self.level_x = (at.level_offsets[:, 0] - 0.5).astype(np.float32)
        self.level_y = (at.level_offsets[:, 1] - 0.5).astype(np.float32)


_TABLES: dict[int, tuple[Scene, SceneTables]] = {}


def scene_tables(scene: Scene) -> SceneTables:
    """Cached tables for a scene object (keyed by identity)."""
    key = id(scene)
    if key not in _TABLES or _TABLES[key][0] is not scene:
        _TABLES.clear()  # one scene at a time is the common case; do not hold old atlases
        _TABLES[key] = (scene, SceneTables(scene))
    return _TABLES[key][1]


@lru_cache(maxsize=4)
def _pixel_grid(fx: float, fy: float, cx: float, cy: float, width: int, height: int,
                ss: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised camera coordinates of the sub-pixel sample centres, X (1, W*ss) and
    Y (H*ss, 1), and the length of each ray (X, Y, 1) (H*ss, W*ss)."""
    us = (np.arange(width * ss, dtype=np.float64) + 0.5) / ss - 0.5
    vs = (np.arange(height * ss, dtype=np.float64) + 0.5) / ss - 0.5
    X = ((us - cx) / fx).astype(np.float32)[None, :]
    Y = ((vs - cy) / fy).astype(np.float32)[:, None]
    return X, Y, np.sqrt(X * X + Y * Y + 1.0).astype(np.float32)


def check_camera(pose_c2w: np.ndarray, K: np.ndarray, width: int, height: int) -> None:
    if np.shape(pose_c2w) != (4, 4) or not np.all(np.isfinite(pose_c2w)):
        raise ValueError(f"pose must be a finite 4x4 camera-to-world matrix, got shape {np.shape(pose_c2w)}")
    R = np.asarray(pose_c2w)[:3, :3]
    if np.abs(R @ R.T - np.eye(3)).max() > 1e-4 or np.linalg.det(R) < 0:
        raise ValueError("pose rotation is not a rotation matrix (R R^T != I or det < 0)")
    if np.shape(K) != (3, 3) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"K must be a 3x3 intrinsics matrix with positive focal lengths, got {K}")
    if K[0, 1] != 0 or K[1, 0] != 0 or not np.allclose(K[2], [0, 0, 1]):
        raise ValueError(f"K must be a pinhole matrix without skew ([[fx,0,cx],[0,fy,cy],[0,0,1]]), got {K}")
    if int(width) < 1 or int(height) < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")


def render_frame(scene: Scene, pose_c2w: np.ndarray, K: np.ndarray, width: int, height: int,
                 supersample: int = 1, with_depth: bool = False) -> FrameRender:
    """Render the clean (noise-free) image of ``scene`` seen from ``pose_c2w`` with ``K``.

    ``with_depth`` also returns the depth and face index at the pixel centres.
    """
    check_camera(pose_c2w, K, width, height)
    if int(supersample) < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    ss = int(supersample)
    tables = scene_tables(scene)
    ray_norm, hits = _cast_camera(tables, pose_c2w, K, width, height, ss)
    image = _shade(scene, tables, ray_norm, hits, float(K[0, 0]) * ss)
    if ss > 1:
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    depth = face = None
    if with_depth:
        if ss > 1:
            _, hits = _cast_camera(tables, pose_c2w, K, width, height, 1)
        depth, face = hits.t, hits.face
    return FrameRender(image, depth, face)


def _cast_camera(tables: SceneTables, pose: np.ndarray, K: np.ndarray, width: int, height: int,
                 ss: int) -> tuple[np.ndarray, Hits]:
    X, Y, norm = _pixel_grid(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]),
                       int(width), int(height), ss)
    R = np.asarray(pose, np.float64)[:3, :3]
    c = np.asarray(pose, np.float64)[:3, 3]
    # Camera-frame ray (X, Y, 1) rotated to the world; t along it is the depth.
    dirs = [np.float32(R[k, 0]) * X + np.float32(R[k, 1]) * Y + np.float32(R[k, 2]) for k in range(3)]
    regions = _screen_regions(tables.faces, R, c, K, width * ss, height * ss, ss)
    return norm, cast(tables.faces, [float(v) for v in c], dirs, t_min=NEAR, regions=regions)


def _screen_regions(faces: FaceTable, R: np.ndarray, c: np.ndarray, K: np.ndarray, W: int, H: int,
                    ss: int) -> list:
    """Per face the pixel rectangle (slices) its near-clipped projection can cover, or None."""
    cam = (faces.corners - c) @ R  # (F, 4, 3) camera coordinates
    regions = []
    for quad in cam:
        poly = _clip_near(quad)
        if poly is None:
            regions.append(None)
            continue
        u = (K[0, 0] * poly[:, 0] / poly[:, 2] + K[0, 2] + 0.5) * ss - 0.5
        v = (K[1, 1] * poly[:, 1] / poly[:, 2] + K[1, 2] + 0.5) * ss - 0.5
        u0, u1 = max(0, int(np.floor(u.min())) - 1), min(W, int(np.ceil(u.max())) + 2)
        v0, v1 = max(0, int(np.floor(v.min())) - 1), min(H, int(np.ceil(v.max())) + 2)
        regions.append((slice(v0, v1), slice(u0, u1)) if u0 < u1 and v0 < v1 else None)
    return regions


def _clip_near(poly: np.ndarray) -> np.ndarray | None:
    """Sutherland-Hodgman clip of a polygon (n, 3) to z >= NEAR; None if nothing is left."""
    z = poly[:, 2]
    if (z >= NEAR).all():
        return poly
    if (z < NEAR).all():
        return None
    out = []
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        if a[2] >= NEAR:
            out.append(a)
        if (a[2] >= NEAR) != (b[2] >= NEAR):
            s = (NEAR - a[2]) / (b[2] - a[2])
            out.append(a + s * (b - a))
    return np.array(out)


def _shade(scene: Scene, tb: SceneTables, ray_norm: np.ndarray, hits: Hits,
           focal_px: float) -> np.ndarray:
    """Texture (trilinear between two mip levels) times baked lighting, as float32 BGR."""
    f = hits.face
    missing = f < 0
    t = np.where(missing, np.float32(0), hits.t)
    ppm = np.take(tb.ppm, f)
    # Footprint of a pixel on the surface in texels, squared: (depth * ppm / focal)^2 stretched
    # by the obliquity 1/cos (cos = |d_normal| / |d|); using 1/cos rather than 1/cos^2 is the
    # usual compromise between blur and aliasing at grazing angles.
    tp = t * ppm
    fp2 = tp * tp
    fp2 *= ray_norm
    fp2 /= np.maximum(np.abs(hits.dn), np.float32(1e-4))
    lod = np.log2(np.maximum(fp2, np.float32(1e-12)))
    lod *= np.float32(0.5)
    lod -= np.float32(np.log2(focal_px))
    np.clip(lod, 0.0, tb.n_levels - 1.001, out=lod)
    l0 = lod.astype(np.intp)  # floor, as lod >= 0
    frac = lod - l0.astype(np.float32)

    xh = hits.fu * ppm
    yh = hits.fv * ppm
    if tb.any_wrap:
        xh = np.mod(xh, np.take(tb.period_x, f))
        yh = np.mod(yh, np.take(tb.period_y, f))
    xh += np.take(tb.tex_x, f) + np.float32(0.5)
    yh += np.take(tb.tex_y, f) + np.float32(0.5)
    s0 = np.take(tb.level_scale, l0)
    samples = []
    for lev, s in ((l0, s0), (l0 + 1, s0 * np.float32(0.5))):
        mx = xh * s
        mx += np.take(tb.level_x, lev)
        my = yh * s
        my += np.take(tb.level_y, lev)
        samples.append(cv2.remap(scene.atlas.image, mx, my, cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE))
    texture = cv2.blendLinear(samples[0], samples[1], 1.0 - frac, frac)

    lx = hits.fu * np.take(tb.lm_sx, f)
    lx += np.take(tb.lm_x, f)
    ly = hits.fv * np.take(tb.lm_sy, f)
    ly += np.take(tb.lm_y, f)
    light = cv2.remap(scene.lightmap.image, lx, ly, cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REPLICATE)
    if missing.any():
        light[missing] = 0.0
    return np.multiply(texture, light[..., None], dtype=np.float32)
