"""Landmarks of the sequence tracker and the image operations on them: KLT tracking, disc NMS.

A landmark is a 2D position in the last stored image, the map-frame 3D point it sees (a scene
coordinate predicted earlier) and a quality record (frames survived, last reprojection error).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import cKDTree


@dataclass
class Landmarks:
    xy: np.ndarray  # (N, 2) float32, pixels in the stored image
    xyz: np.ndarray  # (N, 3) float64, map frame
    age: np.ndarray  # (N,) int32, frames this landmark has been tracked and kept
    error: np.ndarray  # (N,) float32, reprojection error (px) at the last update
    count: np.ndarray  # (N,) int32, scene-coordinate predictions averaged into xyz

    @staticmethod
    def empty() -> "Landmarks":
        return Landmarks(np.zeros((0, 2), np.float32), np.zeros((0, 3)), np.zeros(0, np.int32),
                         np.zeros(0, np.float32), np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.xy)

    def copy(self) -> "Landmarks":
        return Landmarks(self.xy.copy(), self.xyz.copy(), self.age.copy(), self.error.copy(),
                         self.count.copy())

    def subset(self, index: np.ndarray) -> "Landmarks":
        return Landmarks(self.xy[index], self.xyz[index], self.age[index], self.error[index],
                         self.count[index])

    @staticmethod
    def concat(a: "Landmarks", b: "Landmarks") -> "Landmarks":
        return Landmarks(np.concatenate([a.xy, b.xy]), np.concatenate([a.xyz, b.xyz]),
                         np.concatenate([a.age, b.age]), np.concatenate([a.error, b.error]),
                         np.concatenate([a.count, b.count]))


def track_klt(prev: np.ndarray, cur: np.ndarray, xy: np.ndarray,
              guess: np.ndarray | None = None, *, window: int = 21, levels: int = 3,
              iterations: int = 10, epsilon: float = 0.03, max_fb_error_px: float = 1.0
              ) -> tuple[np.ndarray, np.ndarray]:
    """Track points from the previous to the current gray image; (new xy, ok mask).

    (OpenCV 5's Python binding no longer accepts prebuilt pyramids, so each call builds its own;
    that is cheap next to the per-point work.)

    A track is kept when both directions converge, the backward track returns within
    ``max_fb_error_px`` of its start, and the point stays inside the image. ``guess`` (e.g. the
    projection of the landmark with an odometry-predicted pose) seeds the forward search.
    """
    n = len(xy)
    if n == 0:
        return np.zeros((0, 2), np.float32), np.zeros(0, bool)
    p0 = np.ascontiguousarray(xy, dtype=np.float32).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, iterations, epsilon)
    kw = dict(winSize=(window, window), maxLevel=levels - 1, criteria=criteria)
    if guess is not None:
        p1 = np.ascontiguousarray(guess, dtype=np.float32).reshape(-1, 1, 2).copy()
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev, cur, p0, p1,
                                              flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **kw)
    else:
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev, cur, p0, None, **kw)
    back = p0.copy()
    back, st2, _ = cv2.calcOpticalFlowPyrLK(cur, prev, p1, back,
                                            flags=cv2.OPTFLOW_USE_INITIAL_FLOW, **kw)
    p1 = p1.reshape(-1, 2)
    h, w = cur.shape[:2]
    fb = np.linalg.norm(back.reshape(-1, 2) - p0.reshape(-1, 2), axis=1)
    ok = (st1.ravel() == 1) & (st2.ravel() == 1) & (fb < max_fb_error_px)
    ok &= (p1[:, 0] >= 0) & (p1[:, 1] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] <= h - 1)
    return p1, ok


def associate(xy_a: np.ndarray, xy_b: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one pairs (i, j) with |xy_a[i] - xy_b[j]| < radius, nearest first."""
    if len(xy_a) == 0 or len(xy_b) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    dist, j = cKDTree(xy_b).query(xy_a, distance_upper_bound=radius)
    i = np.flatnonzero(np.isfinite(dist))
    i = i[np.argsort(dist[i], kind="stable")]
    _, first = np.unique(j[i], return_index=True)  # each b point goes to its nearest a point
    i = i[np.sort(first)]
    return i, j[i]


def disc_nms(xy: np.ndarray, radius: float, cap: int) -> np.ndarray:
    """Indices of points kept by greedy non-maximum suppression in input order (first = best):
    a point is dropped when a kept, earlier point lies within ``radius``; at most ``cap`` kept."""
    n = len(xy)
    if n == 0 or cap <= 0:
        return np.zeros(0, np.int64)
    pairs = cKDTree(xy).query_pairs(radius, output_type="ndarray")
    if len(pairs) == 0:
        return np.arange(min(n, cap))
    lo, hi = pairs.min(axis=1), pairs.max(axis=1)
    order = np.lexsort((lo, hi))
    suppressed = bytearray(n)
    # pairs sorted by their later point: when a point's pairs come up, every earlier point is final
    # (a plain loop: numpy calls per pair would cost more than the pairs)
    for a, b in zip(lo[order].tolist(), hi[order].tolist()):
        if not suppressed[a]:
            suppressed[b] = 1
    return np.flatnonzero(np.frombuffer(bytes(suppressed), np.uint8) == 0)[:cap]
