"""The node's odometry, without ROS: which frame it is in, which messages are refused and why, and
the camera motion between consecutive images (what sequence mode takes as ``relative_motion``).

Odometry reaches the node as TF (``odom_frame``) or as nav_msgs/Odometry on ``odom_topic``, whose
messages the node adds to its transform buffer; either way the motion between two images is
looked up there as odom -> camera at their stamps. This class holds the state that decision needs
and is safe to call from the executor and the worker thread.
"""

from __future__ import annotations

import threading

import numpy as np

from .tf_math import NS, relative_motion


class OdometryState:
    """Odometry frame, last accepted message and the previous image's odom -> camera transform."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._topic_frame: str | None = None  # the first accepted odom_topic message's frame
        self._last: tuple[str, str, int] | None = None  # (frame, child, stamp ns) of the last message
        self._previous: np.ndarray | None = None  # odom -> camera at the previous localized image

    def frame(self, odom_frame: str) -> str | None:
        """The odometry frame: the ``odom_frame`` parameter, else the topic's once a message came."""
        with self._lock:
            return odom_frame.lstrip("/") or self._topic_frame or None

    def message_problem(self, frame: str, child: str, position, quaternion_xyzw, map_frame: str,
                        odom_frame: str) -> str | None:
        """Why an Odometry message (header frame, child frame, pose) cannot be used, or None."""
        return (self.frame_problem(frame, child, map_frame, odom_frame)
                or self.pose_problem(position, quaternion_xyzw))

    def frame_problem(self, frame: str, child: str, map_frame: str, odom_frame: str) -> str | None:
        """Why a message's frames cannot be odometry's, or None."""
        frame, child, map_frame = frame.lstrip("/"), child.lstrip("/"), map_frame.lstrip("/")
        if not frame or not child or frame == child:
            return f"header.frame_id {frame!r} and child_frame_id {child!r} must be distinct and non-empty"
        if map_frame in (frame, child):
            return (f"odometry from {frame!r} to {child!r} involves the map frame {map_frame!r}, which "
                    "this node publishes; odometry must come in an odom frame")
        expected = self.frame(odom_frame)
        if expected and frame != expected:
            source = "the odom_frame parameter" if odom_frame else "the first accepted message"
            return f"odometry in frame {frame!r}, but the odometry frame is {expected!r} ({source})"
        return None

    @staticmethod
    def pose_problem(position, quaternion_xyzw) -> str | None:
        """Why a message's pose cannot be used (not finite, not a unit quaternion), or None."""
        q = np.asarray(quaternion_xyzw, dtype=np.float64)
        if not np.all(np.isfinite(np.asarray(position, dtype=np.float64))) or not np.all(np.isfinite(q)):
            return "pose is not finite (NaN or inf)"
        if abs(float(q @ q) - 1.0) > 0.01:  # what tf2 refuses as a denormalized quaternion
            return f"orientation is not a unit quaternion (norm {np.sqrt(q @ q):.3g})"
        return None

    def accepted(self, frame: str, child: str, stamp_ns: int) -> None:
        """A message passed :meth:`message_problem` and went into the transform buffer."""
        with self._lock:
            if self._topic_frame is None:
                self._topic_frame = frame.lstrip("/")
            self._last = (frame.lstrip("/"), child.lstrip("/"), int(stamp_ns))

    def motion(self, T_odom_camera: np.ndarray | None) -> np.ndarray | None:
        """Camera motion from the previous image to this one (None for the first image after a
        reset, or when this image's odom -> camera is unknown, which also breaks the chain)."""
        with self._lock:
            previous, self._previous = self._previous, T_odom_camera
        if previous is None or T_odom_camera is None:
            return None
        return relative_motion(previous, T_odom_camera)

    def break_chain(self) -> None:
        """The next image starts without motion (a reset, or a pose that was refused)."""
        with self._lock:
            self._previous = None

    def reset(self) -> None:
        """Forget everything, the odom_topic frame included (~/reset)."""
        with self._lock:
            self._previous = None
            self._topic_frame = None

    def summary(self, topic: str, odom_frame: str, now_ns: int) -> str:
        """Where odometry comes from and, for a topic, how old the last accepted stamp is."""
        parts = []
        if topic:
            with self._lock:
                last = self._last
            if last is None:
                parts.append(f"topic {topic}: no message yet")
            else:
                frame, child, stamp = last
                parts.append(f"topic {topic}: {frame} -> {child}, last stamp {(now_ns - stamp) / NS:.2f} s old")
        if odom_frame:
            parts.append(f"TF {odom_frame} -> camera")
        return "; ".join(parts) or "none"
