"""Camera trajectories: a smooth mapping sweep and query blocks that revisit it from nearby.

Like 7-Scenes: 30 Hz hand-held motion (about 0.25 m/s and 10-20 deg/s), camera at chest height
looking mostly horizontally with some pitch, a mapping sequence and a query sequence of blocks
of consecutive frames. Query frames follow stretches of the mapping path with smooth offsets of
a few centimetres to ~20 cm and a few degrees, so most of them (about 90%, as in redkitchen)
have a mapping frame within 0.2 m and 15 deg but none repeats a mapping view. Frame numbers
jump between query blocks (0-49, 100-149, ...) so sequence code can see block boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...geometry import rotvec_to_matrix
from .scene import Scene

FPS = 30.0


@dataclass
class Trajectory:
    poses: np.ndarray  # (N, 4, 4) camera-to-world, OpenCV camera axes
    frame_ids: np.ndarray  # (N,) int frame numbers (file names)

    def __len__(self) -> int:
        return len(self.poses)

    def names(self) -> list[str]:
        return [f"frame-{i:06d}" for i in self.frame_ids]

    def continuous(self) -> np.ndarray:
        """(N,) bool: frame i directly follows frame i-1 (False at block starts)."""
        cont = np.zeros(len(self.frame_ids), bool)
        cont[1:] = np.diff(self.frame_ids) == 1
        return cont


@dataclass
class Trajectories:
    mapping: Trajectory
    query: Trajectory
    fps: float = FPS


def look_pose(position, yaw_deg: float, pitch_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    """Camera-to-world pose (z-up world, OpenCV camera) at ``position`` looking along yaw
    (around +z, 0 = +x) and pitch (positive = up), rolled about the optical axis."""
    y, p, r = np.radians([yaw_deg, pitch_deg, roll_deg])
    fwd = np.array([np.cos(p) * np.cos(y), np.cos(p) * np.sin(y), np.sin(p)])
    if abs(fwd[2]) > 0.999:
        raise ValueError("pitch of +-90 deg leaves the camera's roll undefined")
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    c, s = np.cos(r), np.sin(r)
    T = np.eye(4)
    T[:3, 0] = c * right + s * down
    T[:3, 1] = -s * right + c * down
    T[:3, 2] = fwd
    T[:3, 3] = position
    return T


def make_trajectories(scene: Scene, n_map: int, n_query: int, seed: int = 0,
                      block_length: int = 50, speed: float = 0.25, fps: float = FPS,
                      offset_m: tuple[float, float] = (0.03, 0.15),
                      offset_deg: tuple[float, float] = (1.0, 6.0)) -> Trajectories:
    """Mapping trajectory of ``n_map`` frames and query trajectory of ``n_query`` frames in
    blocks of ``block_length``; ``speed`` in m/s; query offsets drawn from ``offset_m`` and
    ``offset_deg`` (plus a smaller smooth wobble)."""
    if n_map < 2:
        raise ValueError(f"the mapping trajectory needs at least 2 frames, got {n_map}")
    if n_query < 0 or block_length < 1:
        raise ValueError(f"need n_query >= 0 and block_length >= 1, got {n_query}, {block_length}")
    if not (0 < speed <= 3.0) or fps <= 0:
        raise ValueError(f"speed must be in (0, 3] m/s and fps > 0, got {speed}, {fps}")
    rng = np.random.default_rng([seed, 11])
    path = _Path(scene, rng, length=speed * (n_map - 1) / fps)
    s = _modulated_steps(rng, n_map, fps, path.length)
    mapping = np.stack([path.pose(si) for si in s])
    mapping = _add_shake(rng, mapping, fps)
    q_poses, q_ids = [], []
    n_blocks = int(np.ceil(n_query / block_length))
    for b in range(n_blocks):
        n = min(block_length, n_query - b * block_length)
        q_poses.append(_query_block(rng, path, n, b, n_blocks, speed, fps, offset_m, offset_deg))
        q_ids.append(b * 2 * block_length + np.arange(n))
    query = np.concatenate(q_poses) if q_poses else np.zeros((0, 4, 4))
    ids = np.concatenate(q_ids) if q_ids else np.zeros(0, int)
    return Trajectories(Trajectory(mapping, np.arange(n_map)), Trajectory(query, ids), fps)


class _Path:
    """A smooth random sweep through the scene's camera region, parametrised by arc length.

    Control points wander laterally across the region (reflecting at its ends) with random
    depth, height and viewing angles; a Catmull-Rom spline joins them.
    """

    def __init__(self, scene: Scene, rng: np.random.Generator, length: float) -> None:
        c, ext = scene.camera_center, scene.camera_extent
        spacing = float(np.clip(length / 3.0, 0.05, 0.45))
        k = int(np.ceil(length / spacing)) + 2
        x = c[0] + rng.uniform(-0.5, 0.5) * ext[0]
        y, z = c[1] + rng.uniform(-0.5, 0.5) * ext[1], c[2] + rng.uniform(-0.5, 0.5) * ext[2]
        direction = rng.choice([-1.0, 1.0])
        yaw = pitch = None
        ctrl = []
        for _ in range(k):
            x, flipped = _reflect(x + direction * spacing * rng.uniform(0.6, 1.0), c[0], ext[0])
            direction = -direction if flipped else direction
            # Depth and height drift more slowly than the lateral sweep.
            y = _reflect(y + rng.uniform(-0.6, 0.6) * spacing, c[1], ext[1])[0]
            z = _reflect(z + rng.uniform(-0.5, 0.5) * spacing, c[2], ext[2])[0]
            new_yaw = scene.view_yaw_deg + rng.uniform(-1, 1) * scene.view_yaw_spread_deg
            new_pitch = rng.uniform(*scene.pitch_range_deg)
            if yaw is not None:  # turn at most ~30 deg between control points
                new_yaw = yaw + np.clip(new_yaw - yaw, -30, 30)
                new_pitch = pitch + np.clip(new_pitch - pitch, -15, 15)
            yaw, pitch = new_yaw, new_pitch
            roll = float(np.clip(rng.normal(0, scene.roll_std_deg), -8, 8))
            ctrl.append([x, y, z, yaw, pitch, roll])
        ctrl = np.array(ctrl)
        dense = _catmull_rom(ctrl, 64)
        seg = np.linalg.norm(np.diff(dense[:, :3], axis=0), axis=1)
        self.arc = np.concatenate([[0.0], np.cumsum(seg)])
        self.samples = dense
        # Depth and height moves make the spline longer than the lateral sweep; use only the
        # requested length so the camera keeps the requested speed.
        self.length = float(min(self.arc[-1], length))

    def state(self, s: float) -> np.ndarray:
        """Interpolated [x, y, z, yaw, pitch, roll] at arc length s (clamped to the path)."""
        s = float(np.clip(s, 0.0, self.length))
        return np.array([np.interp(s, self.arc, self.samples[:, j]) for j in range(6)])

    def pose(self, s: float) -> np.ndarray:
        x, y, z, yaw, pitch, roll = self.state(s)
        return look_pose((x, y, z), yaw, pitch, roll)


def _reflect(v: float, center: float, width: float) -> tuple[float, bool]:
    """Fold v back into [center - width/2, center + width/2] as a ball bounces between two
    walls; also say whether it ends up moving the other way (an odd number of bounces)."""
    if width <= 0:
        return center, False
    lo = center - width / 2
    u = (v - lo) % (2 * width)
    bounces = int(np.floor((v - lo) / width))
    return (lo + u if u <= width else lo + 2 * width - u), bool(bounces % 2)


def _catmull_rom(ctrl: np.ndarray, per_segment: int) -> np.ndarray:
    """Uniform Catmull-Rom spline through the rows of ``ctrl`` (endpoints repeated)."""
    p = np.vstack([ctrl[:1], ctrl, ctrl[-1:]])
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    t2, t3 = t * t, t * t * t
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t3))
    out.append(ctrl[-1:])
    return np.vstack(out)


def _smooth_noise(rng: np.random.Generator, n: int, dims: int, period_frames: float) -> np.ndarray:
    """(n, dims) smooth zero-mean unit-scale noise: a few random sinusoids around a period."""
    t = np.arange(n)[:, None]
    out = np.zeros((n, dims))
    for _ in range(3):
        per = period_frames * rng.uniform(0.6, 1.6, dims)
        out += np.sin(2 * np.pi * t / per + rng.uniform(0, 2 * np.pi, dims))
    return out / np.sqrt(1.5)


def _modulated_steps(rng: np.random.Generator, n: int, fps: float, length: float) -> np.ndarray:
    """Arc-length positions of n frames covering [0, length] with a smoothly varying speed."""
    speed = 1.0 + 0.3 * _smooth_noise(rng, n - 1, 1, 5 * fps)[:, 0] / 1.5
    steps = np.clip(speed, 0.3, None)
    return np.concatenate([[0.0], np.cumsum(steps)]) * (length / steps.sum())


def _add_shake(rng: np.random.Generator, poses: np.ndarray, fps: float) -> np.ndarray:
    """Hand-held tremor: ~0.3 deg and ~2 mm at a few Hz, smooth from frame to frame."""
    n = len(poses)
    rot = _smooth_noise(rng, n, 3, fps / 3) * np.radians(0.3)
    pos = _smooth_noise(rng, n, 3, fps / 2) * 0.002
    out = poses.copy()
    for i in range(n):
        out[i, :3, :3] = poses[i, :3, :3] @ rotvec_to_matrix(rot[i])
        out[i, :3, 3] += pos[i]
    return out


def _query_block(rng, path: _Path, n: int, b: int, n_blocks: int, speed: float, fps: float,
                 offset_m, offset_deg) -> np.ndarray:
    """n consecutive query poses following a stretch of the mapping path with a smooth offset."""
    factor = rng.uniform(0.7, 1.3)
    span = min(speed * factor * (n - 1) / fps, path.length)
    free = path.length - span
    s0 = free * (b + rng.uniform(0.1, 0.9)) / max(n_blocks, 1)  # spread blocks along the path
    forward = rng.random() < 0.5
    s = s0 + np.linspace(0, span, n)
    if not forward:
        s = s[::-1]
    direction = rng.normal(size=3) * [1.0, 1.0, 0.5]
    shift = direction / np.linalg.norm(direction) * rng.uniform(*offset_m)
    axis = rng.normal(size=3)
    turn = axis / np.linalg.norm(axis) * np.radians(rng.uniform(*offset_deg))
    wob_t = _smooth_noise(rng, n, 3, 3 * fps) * 0.3 * np.linalg.norm(shift)
    wob_r = _smooth_noise(rng, n, 3, 3 * fps) * np.radians(1.0)
    shake_r = _smooth_noise(rng, n, 3, fps / 3) * np.radians(0.3)
    out = np.empty((n, 4, 4))
    for k in range(n):
        T = path.pose(s[k])
        T[:3, :3] = T[:3, :3] @ rotvec_to_matrix(turn + wob_r[k] + shake_r[k])
        T[:3, 3] += shift + wob_t[k]
        out[k] = T
    return out


def coverage(mapping: np.ndarray, query: np.ndarray, max_m: float = 0.2,
             max_deg: float = 15.0) -> dict:
    """How well the mapping poses cover the query poses: the fraction of query frames with a
    mapping frame within both ``max_m`` and ``max_deg``, and the distance to the nearest mapping
    camera (median and 90th percentile)."""
    if len(query) == 0:
        return {"within_fraction": None, "nearest_m_median": None, "nearest_m_p90": None}
    d = np.linalg.norm(query[:, None, :3, 3] - mapping[None, :, :3, 3], axis=2)
    tr = np.einsum("qij,mij->qm", query[:, :3, :3], mapping[:, :3, :3])
    ang = np.degrees(np.arccos(np.clip((tr - 1) / 2, -1, 1)))
    within = ((d < max_m) & (ang < max_deg)).any(axis=1)
    nearest = d.min(axis=1)
    return {"within_fraction": float(within.mean()), "nearest_m_median": float(np.median(nearest)),
            "nearest_m_p90": float(np.percentile(nearest, 90)),
            "thresholds": {"max_m": max_m, "max_deg": max_deg}}
