"""Fixtures and helpers shared by the real-rclpy node tests (test_ros_node*.py).

Import the fixtures into a test module (``from ros_support.node_testing import ros_env, tiny,
queries``) so pytest finds them.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import pytest

from .harness import RosClient, apply_environment, pick_domain_id
from .tiny_map import build_tiny_scene, core_missing

CAMERA_FRAME = "camera_optical_frame"
REMAPS = ["-r", "image:=/camera/image_raw", "-r", "camera_info:=/camera/camera_info"]


def have_tf2_msgs() -> bool:
    try:
        import tf2_msgs.msg  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def ros_env():
    """Loopback-only discovery in a domain of this run's own; rclpy initialised in this process."""
    import rclpy

    env = apply_environment(pick_domain_id())
    rclpy.init()
    yield env
    rclpy.try_shutdown()


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The tiny synthetic scene and its map, built once per session (SEQACE_TEST_CACHE: reuse a folder)."""
    reason = core_missing()
    if reason:
        pytest.skip(f"core not available: {reason}")
    # One folder for the whole session: every module importing this fixture gets its own fixture
    # instance, and build_tiny_scene reuses a map it finds there.
    cache = os.environ.get("SEQACE_TEST_CACHE")
    return build_tiny_scene(cache if cache else tmp_path_factory.getbasetemp() / "ros_tiny_map")


@pytest.fixture(scope="session")
def queries(tiny):
    """(image, K, true pose) of the tiny scene's query frames."""
    from seqace_ros.data.scene_folder import load_split

    out = []
    for f in load_split(tiny.scene_dir, "test"):
        image = f.load_image()
        out.append((image, f.intrinsics(image.shape[1], image.shape[0]), f.pose_c2w))
    return out


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def diag_status(client: RosClient):
    """The latest DiagnosticStatus of the client's node (other nodes publish on /diagnostics too)."""
    for _, m in reversed(client.messages("diagnostics")):
        for st in m.status:
            if st.hardware_id == client.ns:
                return st
    return None


def diag_values(client: RosClient) -> dict[str, str]:
    st = diag_status(client)
    return {kv.key: kv.value for kv in st.values} if st is not None else {}


def wait_warm(client: RosClient, timeout: float) -> bool:
    """The node is up, its map loaded and its encoder traced (so the first image is not slow)."""
    return bool(client.wait_for(lambda: diag_values(client).get("warmed_up") == "yes", timeout))


@contextmanager
def running_node(proc, client: RosClient, publishers: tuple = (), warm_timeout: float = 120.0
                 ) -> Iterator[None]:
    """The node process up and warm (and ``publishers`` matched by it) for the ``with`` body; then
    the client closed, the node stopped, and its clean exit asserted."""
    try:
        if not wait_warm(client, warm_timeout) or not all(wait_matched(p) for p in publishers):
            pytest.fail(f"node did not come up:\n{proc.log()[-3000:]}")
        yield
    finally:
        client.close()
        rc = proc.stop()
    assert rc == 0, f"node exited with {rc}:\n{proc.log()[-3000:]}"


def frames_done(client: RosClient) -> int:
    """Frames the node has answered: a pose, or the inlier marker of a lost frame (by stamp)."""
    stamps = {stamp_ns(m) for _, m in client.messages("pose")} | {stamp_ns(m) for _, m in client.messages("inliers")}
    return len(stamps)


def answered(client: RosClient, stamp: int) -> bool:
    """The node has answered the frame with this stamp (a pose, or the inlier marker of a lost frame)."""
    return any(stamp_ns(m) == stamp for key in ("pose", "inliers") for _, m in client.messages(key))


def await_answer(client: RosClient, stamp: int, timeout: float = 20.0):
    """Wait until the node has answered the frame with this stamp; returns its pose msg or None."""
    client.wait_for(lambda: answered(client, stamp), timeout)

    def pose():
        return next((m for _, m in client.messages("pose") if stamp_ns(m) == stamp), None)

    # The pose follows the marker. A green marker says the frame was localized, so its pose is on
    # the way: wait for it rather than for a fixed time a loaded machine may overrun.
    marker = next((m for _, m in client.messages("inliers") if stamp_ns(m) == stamp), None)
    if marker is not None and marker.color.g > 0.5:
        client.wait_for(lambda: pose() is not None, 5.0)
    else:
        time.sleep(0.05)  # a lost frame's pose (publish_when_lost) follows its red marker too
    return pose()


def process(client: RosClient, image, K, timeout: float = 20.0, **kw):
    """Publish one frame and wait until the node has answered it; returns (stamp, pose msg or None)."""
    stamp = client.now_ns()
    client.publish_frame(image, K, stamp, CAMERA_FRAME, **kw)
    return stamp, await_answer(client, stamp, timeout)


def pose_matrix(pose) -> np.ndarray:
    from seqace_ros.ros.messages import pose_to_matrix

    return pose_to_matrix(pose)


def wait_matched(publisher, timeout: float = 10.0) -> bool:
    """A publisher created after the node came up has been matched by the node's subscription
    (a message published before that is lost on a volatile topic)."""
    deadline = time.monotonic() + timeout
    while publisher.get_subscription_count() < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    return publisher.get_subscription_count() >= 1


def wait_log(proc, text: str, timeout: float = 5.0) -> bool:
    """``text`` has appeared in the node process's output."""
    deadline = time.monotonic() + timeout
    while text not in proc.log():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def odometry_msg(T: np.ndarray, frame: str, child: str, stamp: int):
    """nav_msgs/Odometry with pose ``T`` (T_frame_child) at ``stamp`` (ns)."""
    from nav_msgs.msg import Odometry
    from seqace_ros.ros.messages import header, matrix_to_pose

    msg = Odometry(header=header(frame, stamp), child_frame_id=child)
    msg.pose.pose = matrix_to_pose(T)
    return msg


def initial_pose_msg(x: float, y: float, frame: str = "map", variance: float = 0.01, stamp: int = 0):
    """geometry_msgs/PoseWithCovarianceStamped as RViz's "2D Pose Estimate" sends it."""
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from seqace_ros.ros.messages import header

    msg = PoseWithCovarianceStamped(header=header(frame, stamp))
    msg.pose.pose.position.x, msg.pose.pose.position.y = float(x), float(y)
    msg.pose.pose.orientation.w = 1.0
    cov = np.zeros(36)
    cov[0] = cov[7] = variance
    cov[35] = 0.07
    msg.pose.covariance = [float(v) for v in cov]
    return msg
