"""Tracking each keyframe patch through the homography of its own surface.

LK models a patch's motion as a shift. Between views far apart relative to the scene's depth
(a facade photographed from a few places), a patch is also scaled, sheared and foreshortened by
the translation, differently for every point: one rotation (or one plane) for the whole image
leaves each patch deformed by several pixels at its border, and LK's centre then depends on the
texture. Once a pose is known to a pixel, each patch can instead be resampled through the
homography of the plane through its own point (facing the keyframe: the surface's own normal
measured no better), so the patches LK compares differ by little more than the pose's remaining
error (benchmarks/README.md, "Session 13").
"""

from __future__ import annotations

import cv2
import numpy as np

MAX_LEVEL = 3  # source pyramid levels a shrinking warp may sample from (against aliasing)
CHUNK = 1024  # patches resampled at a time: each holds a few cells of float64 maps (bounded memory)


def facing_normals(points_cam: np.ndarray) -> np.ndarray:
    """Unit normals of the planes through each point (keyframe camera coordinates) that face the
    keyframe: perpendicular to the point's viewing ray."""
    return -points_cam / np.linalg.norm(points_cam, axis=1, keepdims=True)


def point_homographies(K_src: np.ndarray, T_src: np.ndarray, K_dst: np.ndarray, T_dst: np.ndarray,
                       points_cam: np.ndarray, normals_cam: np.ndarray) -> np.ndarray:
    """(N, 3, 3): source pixels to destination pixels for the plane through each point (source
    camera coordinates) with its normal. ``T_*``: camera-to-world poses."""
    T = np.linalg.inv(T_dst) @ T_src  # source camera -> destination camera
    R, t = T[:3, :3], T[:3, 3]
    dist = (normals_cam * points_cam).sum(axis=1)  # n . X = dist on the plane
    A = R[None] + t[None, :, None] * normals_cam[:, None, :] / dist[:, None, None]
    return K_dst[None] @ A @ np.linalg.inv(K_src)[None]


def track_through_homographies(src: np.ndarray, dst: np.ndarray, xy_src: np.ndarray, H: np.ndarray,
                               window: int, max_shift_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``dst`` of the patches of ``src`` at ``xy_src``, each first resampled through
    its homography ``H[i]`` (source to destination pixels) around where it maps the point; LK then
    only refines a residual shift of at most ``max_shift_px`` (no pyramid: the pose is already
    within a pixel or two). Returns positions (N, 2) and which are trusted."""
    n = len(xy_src)
    if n == 0:
        return np.zeros((0, 2), np.float32), np.zeros(0, bool)
    if n > CHUNK:
        parts = [track_through_homographies(src, dst, xy_src[a:a + CHUNK], H[a:a + CHUNK], window, max_shift_px)
                 for a in range(0, n, CHUNK)]
        return np.concatenate([p for p, _ in parts]), np.concatenate([o for _, o in parts])
    h = np.einsum("nij,nj->ni", H, np.hstack([xy_src, np.ones((n, 1))]))
    ok = h[:, 2] > 1e-9
    u = h[:, :2] / np.where(ok, h[:, 2], 1.0)[:, None]
    r = window // 2 + int(np.ceil(max_shift_px)) + 2  # the window may move max_shift from the centre
    P = 2 * r + 1
    centre = np.round(u)
    off = np.arange(-r, r + 1, dtype=np.float64)
    gx, gy = np.meshgrid(off, off)  # (P, P)
    qx = centre[:, 0, None, None] + gx[None]  # destination pixels of each cell, (N, P, P)
    qy = centre[:, 1, None, None] + gy[None]
    Hinv = np.linalg.inv(np.where(ok[:, None, None], H, np.eye(3)[None]))
    sx = Hinv[:, 0, 0, None, None] * qx + Hinv[:, 0, 1, None, None] * qy + Hinv[:, 0, 2, None, None]
    sy = Hinv[:, 1, 0, None, None] * qx + Hinv[:, 1, 1, None, None] * qy + Hinv[:, 1, 2, None, None]
    sw = Hinv[:, 2, 0, None, None] * qx + Hinv[:, 2, 1, None, None] * qy + Hinv[:, 2, 2, None, None]
    sw = np.where(np.abs(sw) > 1e-12, sw, 1e-12)
    sx, sy = sx / sw, sy / sw
    # Source pixels per destination pixel around each point: a warp that shrinks the source
    # samples a coarser pyramid level instead, so its texture does not alias.
    step = np.sqrt(np.abs((sx[:, r, r + 1] - sx[:, r, r]) * (sy[:, r + 1, r] - sy[:, r, r])
                          - (sx[:, r + 1, r] - sx[:, r, r]) * (sy[:, r, r + 1] - sy[:, r, r])))
    level = np.clip(np.floor(np.log2(np.maximum(step, 1e-6) / 0.75 + 1e-9)), 0, MAX_LEVEL).astype(int)
    cols = max(1, int(np.ceil(np.sqrt(n))))
    rows = int(np.ceil(n / cols))

    def mosaic(a: np.ndarray) -> np.ndarray:  # (N, P, P) -> (rows * P, cols * P), of a's type
        full = np.zeros((rows * cols, P, P), np.float32 if a.dtype == np.float64 else a.dtype)
        full[:len(a)] = a
        return np.ascontiguousarray(full.reshape(rows, cols, P, P).transpose(0, 2, 1, 3).reshape(rows * P, cols * P))

    template = np.zeros((n, P, P), np.uint8)
    pyramid = [src]
    for lv in range(1, int(level.max()) + 1):
        pyramid.append(cv2.pyrDown(pyramid[-1]))
    for lv in np.unique(level):
        sel = level == lv
        s = 2.0 ** lv  # pyrDown: level pixel i is source pixel 2i (+ a half pixel's offset, ignored)
        mx, my = mosaic(sx[sel] / s), mosaic(sy[sel] / s)
        warped = cv2.remap(pyramid[lv], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        template[sel] = _cells(warped, int(sel.sum()), rows, cols, P)
    qmx, qmy = mosaic(qx), mosaic(qy)
    query = cv2.remap(dst, qmx, qmy, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    tmpl = mosaic(template)
    idx = np.arange(n)
    origin = np.stack([(idx % cols) * P + r, (idx // cols) * P + r], axis=1).astype(np.float64)
    start = (origin + (u - centre)).astype(np.float32).reshape(-1, 1, 2)
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)
    found, status, _ = cv2.calcOpticalFlowPyrLK(tmpl, query, start, start.copy(), winSize=(window, window),
                                                maxLevel=0, criteria=crit, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    pos = found.reshape(-1, 2).astype(np.float64) - origin + centre
    h_dst, w_dst = dst.shape[:2]
    ok &= status.reshape(-1).astype(bool) & (np.linalg.norm(pos - u, axis=1) <= max_shift_px)
    ok &= (pos[:, 0] >= 0) & (pos[:, 1] >= 0) & (pos[:, 0] <= w_dst - 1) & (pos[:, 1] <= h_dst - 1)
    return pos.astype(np.float32), ok


def _cells(mosaic_image: np.ndarray, m: int, rows: int, cols: int, P: int) -> np.ndarray:
    """The first ``m`` cells of a (rows * P, cols * P) mosaic, as (m, P, P)."""
    return mosaic_image.reshape(rows, P, cols, P).transpose(0, 2, 1, 3).reshape(rows * cols, P, P)[:m]
