"""Frame arithmetic and stamp rules of the node (pure numpy, no rclpy).

REP-105: a global localizer publishes map -> odom so that odom -> base_link (from the robot's
odometry) stays continuous: T_map_odom = T_map_camera * inverse(T_odom_camera), both at the image
stamp. Stamps are integer nanoseconds.
"""

from __future__ import annotations

import numpy as np

from ..geometry import invert_pose, project_to_so3

NS = 1_000_000_000


def map_to_odom(T_map_camera: np.ndarray, T_odom_camera: np.ndarray) -> np.ndarray:
    """T_map_odom from the camera's pose in the map and in odom at the same instant."""
    T = np.asarray(T_map_camera, dtype=np.float64) @ invert_pose(T_odom_camera)
    T[:3, :3] = project_to_so3(T[:3, :3])
    return T


def relative_motion(T_odom_prev: np.ndarray, T_odom_cur: np.ndarray) -> np.ndarray:
    """Previous-camera -> current-camera transform from two odometry poses of the camera."""
    return invert_pose(T_odom_cur) @ np.asarray(T_odom_prev, dtype=np.float64)


def seconds_to_ns(seconds: float) -> int:
    return int(round(seconds * NS))


class StampSequencer:
    """Stamps for outgoing transforms: ``max(now, image stamp) + tolerance``, strictly increasing.

    tf2 warns (TF_REPEATED_DATA) and drops a transform whose stamp it already has; stamping every
    publication from the clock plus the tolerance, as slam_toolbox and rtabmap do, keeps them
    unique and lets consumers look up times up to ``tolerance`` ahead without extrapolating.
    """

    def __init__(self) -> None:
        self.last_ns: int | None = None

    def next(self, now_ns: int, image_stamp_ns: int, tolerance_s: float) -> int | None:
        stamp = max(int(now_ns), int(image_stamp_ns)) + seconds_to_ns(tolerance_s)
        if self.last_ns is not None and stamp <= self.last_ns:
            return None  # nothing newer to say: sending it again would repeat a stamp
        self.last_ns = stamp
        return stamp

    def reset(self) -> None:
        self.last_ns = None


def covariance_is_well_formed(cov: np.ndarray | None) -> bool:
    """6x6, finite, symmetric and positive semi-definite (what a consumer may invert or sample)."""
    if cov is None:
        return False
    cov = np.asarray(cov, dtype=np.float64)
    if cov.shape != (6, 6) or not np.all(np.isfinite(cov)):
        return False
    if not np.allclose(cov, cov.T, atol=1e-9 + 1e-6 * np.abs(cov).max()):
        return False
    return bool(np.linalg.eigvalsh(0.5 * (cov + cov.T)).min() >= -1e-9 * max(1.0, np.abs(cov).max()))


class InitialPoseGate:
    """/initialpose as a prior: poses far from it (in x, y) are refused until one falls inside.

    RViz's "2D Pose Estimate" gives a position on the floor plane; the gate radius is the larger of
    the configured radius and 3 sigma of the message's x/y covariance.
    """

    def __init__(self) -> None:
        self.center: np.ndarray | None = None
        self.radius = 0.0

    def set(self, x: float, y: float, cov_xx: float, cov_yy: float, min_radius: float) -> None:
        if min_radius <= 0:
            self.clear()
            return
        self.center = np.array([x, y], dtype=np.float64)
        sigma = float(np.sqrt(max(cov_xx, cov_yy, 0.0)))
        self.radius = max(min_radius, 3.0 * sigma)

    def clear(self) -> None:
        self.center = None

    @property
    def active(self) -> bool:
        return self.center is not None

    def check(self, T_map_camera: np.ndarray) -> str | None:
        """None when the pose passes (the gate then opens for good), else why it is refused."""
        if self.center is None:
            return None
        dist = float(np.linalg.norm(np.asarray(T_map_camera)[:2, 3] - self.center))
        if dist > self.radius:
            return f"pose is {dist:.2f} m from /initialpose (gate {self.radius:.2f} m)"
        self.center = None
        return None
