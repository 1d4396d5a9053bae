"""TF in and out, with tf2_ros where it is installed and plain /tf topics where it is not.

tf2_ros is not on PyPI. Without it the node publishes tf2_msgs/TFMessage on /tf itself and keeps
its own TransformBuffer fed from /tf and /tf_static; without tf2_msgs either (a bare pip install),
TF is off and the node says so once. Everything else keeps working.
"""

from __future__ import annotations

import importlib
import threading
import time
from typing import Callable

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from ..transform_buffer import TransformBuffer, TransformLookupError
from .messages import matrix_to_transform, stamp_to_ns, transform_to_matrix
from .tf_math import NS


def optional_module(name: str):
    """The module, or None when it is not installed (only ImportError is swallowed)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


class TfOutput:
    """Sends TransformStamped messages on /tf; ``backend`` says how: tf2_ros, tf2_msgs or off."""

    def __init__(self, node: Node, prefer_tf2_ros: bool = True):
        self._node = node
        tf2_ros = optional_module("tf2_ros") if prefer_tf2_ros else None
        self._broadcaster = self._publisher = None
        if tf2_ros is not None:
            self._broadcaster = tf2_ros.TransformBroadcaster(node)
            self.backend = "tf2_ros"
            return
        tf2_msgs = optional_module("tf2_msgs.msg")
        if tf2_msgs is not None:
            self._TFMessage = tf2_msgs.TFMessage
            self._publisher = node.create_publisher(tf2_msgs.TFMessage, "/tf", TF_QOS)
            self.backend = "tf2_msgs"
            return
        self.backend = "off"
        node.get_logger().warning(
            "TF output is off: neither tf2_ros nor tf2_msgs is installed (install ROS 2, or run "
            "test/ros_support/setup_ros_env.py to generate tf2_msgs); poses are still published on ~/pose")

    def send(self, transform) -> bool:
        if self._broadcaster is not None:
            self._broadcaster.sendTransform(transform)
        elif self._publisher is not None:
            self._publisher.publish(self._TFMessage(transforms=[transform]))
        else:
            return False
        return True


class TfInput:
    """Looks up transforms at a stamp, waiting up to a timeout (tf2_ros Buffer or our own buffer).

    ``skip_parent`` (called per message) names a frame whose transforms on /tf are not taken into
    our own buffer nor tf2_ros's: the node's map frame, whose transforms the node publishes itself. Taken in,
    the node's map -> camera would become the camera frame's newest parent and cut it off from
    odom -> base_link -> camera.
    """

    def __init__(self, node: Node, history_s: float = 30.0, prefer_tf2_ros: bool = True,
                 skip_parent: Callable[[], str] | None = None):
        tf2_ros = optional_module("tf2_ros") if prefer_tf2_ros else None
        self._lock = threading.Lock()
        self._skip_parent = skip_parent
        self._own = TransformBuffer(history_s=history_s)
        self._tf2_buffer = None
        if tf2_ros is not None:
            from rclpy.duration import Duration

            self._tf2_buffer = tf2_ros.Buffer(cache_time=Duration(seconds=history_s))
            tf2_msgs = optional_module("tf2_msgs.msg")
            if skip_parent is not None and tf2_msgs is not None:
                # What TransformListener does, minus the map frame's transforms: the node's own
                # map -> camera would otherwise become the camera's newest parent in tf2's buffer and
                # cut it off from odom -> base_link -> camera ("two or more unconnected trees").
                node.create_subscription(tf2_msgs.TFMessage, "/tf", lambda m: self._on_tf2(m, False), TF_QOS)
                node.create_subscription(tf2_msgs.TFMessage, "/tf_static", lambda m: self._on_tf2(m, True),
                                         TF_STATIC_QOS)
            else:
                # The node's own executor spins the listener's subscriptions: a second spinning thread
                # races the executor at shutdown (ExternalShutdownException, hangs in threading._shutdown).
                self._listener = tf2_ros.TransformListener(self._tf2_buffer, node, spin_thread=False)
            self.backend = "tf2_ros"
            return
        tf2_msgs = optional_module("tf2_msgs.msg")
        if tf2_msgs is None:
            self.backend = "off"
            return
        node.create_subscription(tf2_msgs.TFMessage, "/tf", lambda m: self._on_tf(m, False), TF_QOS)
        node.create_subscription(tf2_msgs.TFMessage, "/tf_static", lambda m: self._on_tf(m, True), TF_STATIC_QOS)
        self.backend = "tf2_msgs"

    def _on_tf2(self, msg, static: bool) -> None:
        skip = self._skip_parent().lstrip("/") if self._skip_parent is not None else None
        for tf in msg.transforms:
            if skip and tf.header.frame_id.lstrip("/") == skip:
                continue
            try:
                if static:
                    self._tf2_buffer.set_transform_static(tf, "default_authority")
                else:
                    self._tf2_buffer.set_transform(tf, "default_authority")
            except Exception:  # tf2 refuses malformed transforms; someone else's must not stop the node
                continue

    def _on_tf(self, msg, static: bool) -> None:
        skip = self._skip_parent().lstrip("/") if self._skip_parent is not None else None
        with self._lock:
            for tf in msg.transforms:
                if skip and tf.header.frame_id.lstrip("/") == skip:
                    continue
                try:
                    self._own.add(tf.header.frame_id, tf.child_frame_id, stamp_to_ns(tf.header.stamp) / NS,
                                  transform_to_matrix(tf), static=static)
                except ValueError:
                    continue  # a malformed transform from someone else must not stop the node

    def add(self, parent: str, child: str, stamp_ns: int, T: np.ndarray) -> None:
        """Feed a transform from another source (a nav_msgs/Odometry topic). With tf2_ros it goes into
        tf2's buffer too, so that a lookup can chain it with transforms from /tf and /tf_static
        (odom -> base_link from the topic, base_link -> camera from the robot's static TF)."""
        # tf2 first: a transform it refuses must not linger in the node's own buffer either.
        if self._tf2_buffer is not None:
            try:
                self._tf2_buffer.set_transform(matrix_to_transform(T, parent, child, stamp_ns), "odom_topic")
            except Exception as exc:  # tf2 raises its own exception family
                raise ValueError(f"tf2 refused {parent} -> {child}: {exc}") from exc
        with self._lock:
            self._own.add(parent, child, stamp_ns / NS, T)

    def lookup(self, target: str, source: str, stamp_ns: int, timeout_s: float) -> np.ndarray:
        """T_target_source at the stamp; raises TransformLookupError after ``timeout_s``."""
        if self._tf2_buffer is not None:
            import rclpy.time
            from rclpy.duration import Duration

            try:
                msg = self._tf2_buffer.lookup_transform(
                    target, source, rclpy.time.Time(nanoseconds=stamp_ns), timeout=Duration(seconds=timeout_s))
                return transform_to_matrix(msg)
            except Exception as exc:  # tf2 raises its own exception family
                if not self._own.frames():
                    raise TransformLookupError(str(exc)) from exc
                tf2_error = str(exc)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with self._lock:
                    return self._own.lookup(target, source, stamp_ns / NS)
            except TransformLookupError as exc:
                if time.monotonic() >= deadline:
                    if self._tf2_buffer is not None:  # tf2's reason matters more than our fallback's
                        raise TransformLookupError(f"{exc}; tf2: {tf2_error}") from exc
                    raise
            time.sleep(0.005)
