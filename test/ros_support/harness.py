"""Helpers for tests and benchmarks that run real ROS 2 (rclpy from the PyPI wheels or a ROS install).

- :func:`ros_environment`: the environment every ROS process here gets: discovery on loopback only
  (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``), its own ``ROS_DOMAIN_ID``, the package on
  PYTHONPATH and the Fast DDS profile with a 16 MB shared-memory segment (VGA images do not fit
  the default 512 KB one).
- :class:`NodeProcess`: the relocalization node started as ``ros2 run`` would start it
  (``python -m seqace_ros.ros.relocalization_node --ros-args --params-file X.yaml``).
- :class:`RosClient`: a node in the test process that publishes images and records what comes back.
Call :func:`apply_environment` before ``rclpy.init()`` in the test process.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
FASTDDS_PROFILE = REPO / "config" / "fastdds_shm.xml"


def pick_domain_id() -> int:
    """A domain per test run (1..100), so parallel runs on one machine do not see each other."""
    if os.environ.get("SEQACE_TEST_DOMAIN_ID"):  # a range assigned to this run on a shared machine
        return int(os.environ["SEQACE_TEST_DOMAIN_ID"])
    return 1 + (os.getpid() * 7919 + int(time.time())) % 100


def ros_environment(domain_id: int) -> dict[str, str]:
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated; conflicts with the variable above
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)
    env.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
    return env


def apply_environment(domain_id: int) -> dict[str, str]:
    env = ros_environment(domain_id)
    for key in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "FASTDDS_DEFAULT_PROFILES_FILE",
                "AMENT_PREFIX_PATH"):
        os.environ[key] = env[key]
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    return env


def write_params(path: Path, values: dict[str, Any], node_name: str = "relocalization_node") -> Path:
    path.write_text(yaml.safe_dump({f"/**/{node_name}": {"ros__parameters": values}}, sort_keys=False))
    return path


class NodeProcess:
    """The node as its own process; its output goes to ``log_path``."""

    def __init__(self, params_file: Path, env: dict[str, str], log_path: Path,
                 extra_ros_args: list[str] | None = None, module: str = "seqace_ros.ros.relocalization_node"):
        self.log_path = log_path
        self._log = open(log_path, "w")
        cmd = [sys.executable, "-m", module, "--ros-args", "--params-file", str(params_file),
               *(extra_ros_args or [])]
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        if self.alive:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


class RosClient:
    """A test-side node: publishers for images and camera info, recorders for the node's outputs."""

    def __init__(self, name: str = "seqace_test_client", node_ns: str = "/relocalization_node",
                 image_topic: str = "/camera/image_raw", info_topic: str = "/camera/camera_info",
                 compressed: bool = False):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from nav_msgs.msg import Path as PathMsg
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
        from visualization_msgs.msg import Marker

        self.rclpy = rclpy
        self.node = rclpy.create_node(name)
        self.ns = node_ns
        self.lock = threading.Lock()
        self.received: dict[str, list[tuple[float, Any]]] = collections.defaultdict(list)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(CompressedImage if compressed else Image,
                                                    image_topic + ("/compressed" if compressed else ""), reliable)
        self.info_pub = self.node.create_publisher(CameraInfo, info_topic, reliable)
        self.compressed = compressed
        self._record(PoseWithCovarianceStamped, f"{node_ns}/pose", "pose", reliable)
        self._record(PathMsg, f"{node_ns}/path", "path", reliable)
        self._record(Marker, f"{node_ns}/inliers", "inliers", reliable)
        self._record(DiagnosticArray, "/diagnostics", "diagnostics", reliable)
        try:
            from tf2_msgs.msg import TFMessage

            self._record(TFMessage, "/tf", "tf", QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE))
            self.tf_pub = self.node.create_publisher(TFMessage, "/tf", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        except ImportError:
            self.tf_pub = None
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._running = True
        self._thread.start()

    def _spin(self) -> None:
        while self._running and self.rclpy.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def _record(self, msg_type, topic: str, key: str, qos) -> None:
        def cb(msg, key=key):
            with self.lock:
                self.received[key].append((time.monotonic(), msg))
        self.node.create_subscription(msg_type, topic, cb, qos)

    def subscribe_latched_cloud(self) -> None:
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import PointCloud2

        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._record(PointCloud2, f"{self.ns}/map_cloud", "map_cloud", qos)

    def messages(self, key: str) -> list[tuple[float, Any]]:
        with self.lock:
            return list(self.received[key])

    def clear(self, *keys: str) -> None:
        with self.lock:
            for k in keys or list(self.received):
                self.received[k] = []

    def wait_for(self, predicate: Callable[[], Any], timeout: float, poll: float = 0.02):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(poll)
        return predicate()

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    # ------------------------------------------------------------ publishing
    def publish_frame(self, image: np.ndarray, K: np.ndarray, stamp_ns: int, frame_id: str = "camera_optical_frame",
                      encoding: str = "bgr8", data: bytes | None = None, info: bool = True) -> None:
        import cv2
        from builtin_interfaces.msg import Time
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        h, w = image.shape[:2]
        if info:
            ci = CameraInfo()
            ci.header.stamp, ci.header.frame_id = stamp, frame_id
            ci.width, ci.height = w, h
            ci.k = [float(v) for v in np.asarray(K, float).reshape(-1)]
            ci.p = [float(K[0, 0]), 0.0, float(K[0, 2]), 0.0, 0.0, float(K[1, 1]), float(K[1, 2]), 0.0, 0.0, 0.0, 1.0, 0.0]
            ci.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
            ci.distortion_model = "plumb_bob"
            ci.d = [0.0] * 5
            self.info_pub.publish(ci)
        if self.compressed:
            msg = CompressedImage()
            msg.header.stamp, msg.header.frame_id = stamp, frame_id
            msg.format = "jpeg"
            msg.data = data if data is not None else cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
        else:
            msg = Image()
            msg.header.stamp, msg.header.frame_id = stamp, frame_id
            channels = 1 if image.ndim == 2 else image.shape[2]
            msg.height, msg.width, msg.encoding, msg.step = h, w, encoding, w * channels * image.dtype.itemsize
            msg.data = data if data is not None else np.ascontiguousarray(image).tobytes()
        self.image_pub.publish(msg)

    def publish_transform(self, T: np.ndarray, parent: str, child: str, stamp_ns: int) -> None:
        from seqace_ros.ros.messages import matrix_to_transform
        from tf2_msgs.msg import TFMessage

        self.tf_pub.publish(TFMessage(transforms=[matrix_to_transform(T, parent, child, stamp_ns)]))

    # ------------------------------------------------------------ services and parameters
    def call(self, srv_type, name: str, request=None, timeout: float = 10.0):
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"service {name} did not appear within {timeout} s")
            future = client.call_async(request or srv_type.Request())
            deadline = time.monotonic() + timeout
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.01)
            if not future.done():
                raise TimeoutError(f"service {name} did not answer within {timeout} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameter(self, name: str, value, node: str | None = None, timeout: float = 10.0):
        """SetParameters on the node; returns the SetParametersResult (successful, reason)."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return self.call(SetParameters, f"{node or self.ns}/set_parameters", req, timeout).results[0]

    def get_parameter(self, name: str, node: str | None = None, timeout: float = 10.0):
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        res = self.call(GetParameters, f"{node or self.ns}/get_parameters", GetParameters.Request(names=[name]), timeout)
        return parameter_value_to_python(res.values[0])

    def close(self) -> None:
        self._running = False
        self._thread.join(timeout=2.0)
        self.executor.remove_node(self.node)
        self.node.destroy_node()
