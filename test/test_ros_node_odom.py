"""relocalization_node with odometry: from TF, map -> odom (REP-105) computed from the camera pose and
odom -> camera looked up at the image stamp, with compressed images; from a nav_msgs/Odometry topic
(odom_topic), the relative motion of the sequence mode, and refusal of odometry in a wrong frame or
with NaN values. Each node is a process of its own, so that no other node's transforms are on /tf.
Needs rclpy and tf2_msgs (setup_ros_env.py generates it)."""

from __future__ import annotations

import importlib.util
import re
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros

from ros_support.harness import NodeProcess, RosClient, write_params  # noqa: E402
from ros_support.node_testing import (CAMERA_FRAME, REMAPS, await_answer, diag_values,  # noqa: E402,F401
                                      frames_done, have_tf2_msgs, odometry_msg, pose_matrix, queries, ros_env,
                                      running_node, stamp_ns, tiny, wait_log)
from seqace_ros.geometry import invert_pose, pose_errors, rotvec_to_matrix  # noqa: E402

TOLERANCE_S = 0.2
MAX_TRANSLATION_M = 0.25
MAX_ROTATION_DEG = 5.0
MIN_GOOD_SHARE = 0.7


@pytest.mark.skipif(not have_tf2_msgs(), reason="tf2_msgs not installed (run test/ros_support/setup_ros_env.py)")
def test_map_to_odom_from_tf_odometry_with_compressed_images(ros_env, tiny, queries, tmp_path):
    from seqace_ros.ros.messages import transform_to_matrix

    params = write_params(tmp_path / "odom.yaml", {
        "map_path": str(tiny.map_path), "odom_frame": "odom", "image_transport": "compressed",
        "transform_tolerance": TOLERANCE_S, "tf_lookup_timeout": 0.5, "diagnostics_period": 0.25, "device": "cpu"},
        node_name="reloc_odom")
    proc = NodeProcess(params, ros_env, tmp_path / "node.log", REMAPS + ["-r", "__node:=reloc_odom"])
    client = RosClient(name="seqace_odom_client", node_ns="/reloc_odom", compressed=True)
    with running_node(proc, client):
        T_map_odom = np.eye(4)
        T_map_odom[:3, :3] = rotvec_to_matrix([0, 0, 0.4])
        T_map_odom[:3, 3] = [0.7, -0.3, 0.0]
        checked, good = 0, 0
        for image, K, T_true in queries[:6]:
            stamp = client.now_ns()
            # Odometry: the camera in odom at the image stamp (odom = map moved by T_map_odom).
            T_odom_cam = invert_pose(T_map_odom) @ T_true
            client.publish_transform(T_odom_cam, "odom", CAMERA_FRAME, stamp)
            time.sleep(0.05)
            n_before = frames_done(client)
            client.publish_frame(image, K, stamp, CAMERA_FRAME)  # JPEG: image_transport is compressed
            client.wait_for(lambda: frames_done(client) > n_before, 20)
            time.sleep(0.15)
            pose = [m for _, m in client.messages("pose") if stamp_ns(m) == stamp]
            tfs = [tf for _, m in client.messages("tf") for tf in m.transforms
                   if tf.header.frame_id == "map" and tf.child_frame_id == "odom"]
            if not pose or not tfs:
                continue
            checked += 1
            E = transform_to_matrix(tfs[-1])
            # map -> odom is exactly the camera pose composed with odom -> camera at the image stamp...
            assert np.allclose(E @ T_odom_cam, pose_matrix(pose[0].pose.pose), atol=1e-5)
            # ...so it is as accurate as the camera pose (a translation bound on map -> odom itself
            # would grow with the lever arm from the camera to odom's origin).
            t_err, r_err = pose_errors(E @ T_odom_cam, T_true)
            good += int(t_err < MAX_TRANSLATION_M and r_err < MAX_ROTATION_DEG
                        and pose_errors(E, T_map_odom)[1] < MAX_ROTATION_DEG)
        assert checked >= 4, f"map -> odom published for {checked} of 6 frames:\n{proc.log()[-3000:]}"
        assert good >= MIN_GOOD_SHARE * checked, f"{good}/{checked} within bounds"
        assert not any(tf.child_frame_id == CAMERA_FRAME and tf.header.frame_id == "map"
                       for _, m in client.messages("tf") for tf in m.transforms)


# ------------------------------------------------------------------ odometry from a nav_msgs/Odometry topic
# The robot's odometry: odom -> base_link on /odom; the camera is mounted on base_link (static TF).
T_MAP_ODOM = np.eye(4)
T_MAP_ODOM[:3, :3] = rotvec_to_matrix([0, 0, -0.3])
T_MAP_ODOM[:3, 3] = [-0.4, 0.6, 0.0]
T_BASE_CAM = np.eye(4)
T_BASE_CAM[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]  # optical frame: z forward = base x
T_BASE_CAM[:3, 3] = [0.1, 0.0, 0.2]
FRAME_STEP_NS = 100_000_000  # 10 Hz stamps: within the sequence mode's 0.5 s gap


@pytest.fixture(scope="module")
def topic_node(ros_env, tiny, tmp_path_factory):
    """The node in sequence mode with odometry only from odom_topic (no odom_frame, no TF odometry)."""
    from nav_msgs.msg import Odometry
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from tf2_msgs.msg import TFMessage
    from seqace_ros.ros.messages import matrix_to_transform

    folder = tmp_path_factory.mktemp("odom_topic")
    params = write_params(folder / "params.yaml", {
        "map_path": str(tiny.map_path), "mode": "sequence", "odom_topic": "/odom", "tf_lookup_timeout": 0.3,
        "diagnostics_period": 0.25, "no_image_timeout": 30.0, "device": "cpu"}, node_name="reloc_odom_topic")
    proc = NodeProcess(params, ros_env, folder / "node.log", REMAPS + ["-r", "__node:=reloc_odom_topic"])
    client = RosClient(name="seqace_odom_topic_client", node_ns="/reloc_odom_topic")
    odom_pub = client.node.create_publisher(Odometry, "/odom",
                                            QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    static_pub = client.node.create_publisher(TFMessage, "/tf_static", QoSProfile(
        depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    static_pub.publish(TFMessage(transforms=[matrix_to_transform(T_BASE_CAM, "base_link", CAMERA_FRAME, 0)]))
    with running_node(proc, client, (odom_pub,)):
        yield proc, client, odom_pub


def _odom_frame(client, odom_pub, image, K, T_odom_base, stamp, timeout=20.0):
    """Odometry at the image stamp, then the image; returns the pose message or None."""
    odom_pub.publish(odometry_msg(T_odom_base, "odom", "base_link", stamp))
    time.sleep(0.03)
    client.publish_frame(image, K, stamp, CAMERA_FRAME)
    return await_answer(client, stamp, timeout)


def _true_odom_base(T_map_cam):
    return invert_pose(T_MAP_ODOM) @ T_map_cam @ invert_pose(T_BASE_CAM)


@pytest.mark.skipif(not have_tf2_msgs(), reason="tf2_msgs not installed (run test/ros_support/setup_ros_env.py)")
def test_sequence_mode_uses_relative_motion_from_an_odometry_topic(topic_node, queries):
    proc, client, odom_pub = topic_node
    values = diag_values(client)
    assert values["odometry"] == "topic /odom: no message yet", values
    used_before = int(values["odometry_frames_used"])
    frames = queries[:10]
    base = client.now_ns()
    good = published = 0
    for i, (image, K, T_true) in enumerate(frames):
        pose = _odom_frame(client, odom_pub, image, K, _true_odom_base(T_true), base + i * FRAME_STEP_NS)
        if pose is None:
            continue
        published += 1
        t_err, r_err = pose_errors(pose_matrix(pose.pose.pose), T_true)
        good += int(t_err < MAX_TRANSLATION_M and r_err < MAX_ROTATION_DEG)
    assert good >= MIN_GOOD_SHARE * len(frames), f"{good}/{len(frames)} within bounds ({published} published)"
    time.sleep(0.4)
    values = diag_values(client)
    # Every image after the first had odometry at its stamp: its relative motion reached the relocalizer.
    assert int(values["odometry_frames_used"]) - used_before == len(frames) - 1, (values, proc.log()[-2000:])
    assert values["odometry"].startswith("topic /odom: odom -> base_link, last stamp "), values["odometry"]
    assert values["odometry_refused"] == "0", values
    # map -> camera and the odometry's base_link -> camera give the camera two parents: the node says so.
    assert "odom_frame is empty: the node publishes map -> camera" in proc.log()

    # Odometry that contradicts the images (the robot "jumped" 1 m) reaches the relocalizer too: the
    # sequence mode refuses the single-frame pose, which is about 1 m from the odometry prediction.
    # (It needs a localized frame before the jump, and the tiny map loses a frame now and then: up
    # to three tries.)
    j, state, found = len(frames), "", None
    for _ in range(3):
        image, K, T_true = queries[j]
        localized = _odom_frame(client, odom_pub, image, K, _true_odom_base(T_true), base + j * FRAME_STEP_NS)
        image, K, T_true = queries[j + 1]
        T_jump = _true_odom_base(T_true)
        T_jump[:3, 3] += [1.0, 0.0, 0.0]
        jumped = _odom_frame(client, odom_pub, image, K, T_jump, base + (j + 1) * FRAME_STEP_NS)
        j += 2
        if localized is None:
            continue
        time.sleep(0.4)
        state = diag_values(client)["state"]
        found = re.search(r"single-frame pose rejected: ([0-9.]+) cm / [0-9.]+ deg from the odometry prediction",
                          state)
        if found:
            break
    assert found and 80.0 < float(found.group(1)) < 120.0 and jumped is None, state
    # Odometry that agrees again: localized again.
    poses = [_odom_frame(client, odom_pub, img, k, _true_odom_base(T), base + i * FRAME_STEP_NS)
             for i, (img, k, T) in enumerate(queries[j:j + 3], start=j)]
    assert sum(p is not None for p in poses) >= 2
    assert proc.alive


@pytest.mark.skipif(not have_tf2_msgs(), reason="tf2_msgs not installed (run test/ros_support/setup_ros_env.py)")
def test_odometry_in_a_wrong_frame_or_with_nan_is_refused_with_a_warning(topic_node, queries):
    proc, client, odom_pub = topic_node
    values = diag_values(client)
    refused, used = int(values["odometry_refused"]), int(values["odometry_frames_used"])
    image, K, T_true = queries[12]
    stamp = client.now_ns()
    T = _true_odom_base(T_true)
    nan_pose = T.copy()
    nan_pose[0, 3] = float("nan")
    bad = [odometry_msg(T, "odom_other", "base_link", stamp),  # not the frame of the odometry so far
           odometry_msg(T, "map", "base_link", stamp),  # the frame this node publishes
           odometry_msg(nan_pose, "odom", "base_link", stamp)]
    zero_q = odometry_msg(T, "odom", "base_link", stamp)
    zero_q.pose.pose.orientation.x = zero_q.pose.pose.orientation.y = 0.0
    zero_q.pose.pose.orientation.z = zero_q.pose.pose.orientation.w = 0.0
    for msg in bad + [zero_q]:
        odom_pub.publish(msg)
    assert client.wait_for(lambda: int(diag_values(client)["odometry_refused"]) >= refused + 4, 5), diag_values(client)
    assert diag_values(client)["last_refused_odometry"].startswith("orientation is not a unit quaternion")
    assert wait_log(proc, "odometry on /odom refused: odometry in frame 'odom_other', but the odometry frame is 'odom'")
    assert wait_log(proc, "odometry on /odom refused: pose is not finite")
    # The node keeps running and keeps using the good odometry that follows.
    for j, (img, k, T_j) in enumerate(queries[12:15]):
        _odom_frame(client, odom_pub, img, k, _true_odom_base(T_j), stamp + j * FRAME_STEP_NS)
    time.sleep(0.4)
    values = diag_values(client)
    assert int(values["odometry_frames_used"]) >= used + 2, values
    assert int(values["frames_localized"]) > 0 and proc.alive
    assert values["odometry"].startswith("topic /odom: odom -> base_link"), values["odometry"]


def test_tf_input_feeds_odometry_to_tf2_and_keeps_the_map_frame_out_of_its_own_buffer(ros_env, monkeypatch):
    """TfInput, in-process, wiring only: with tf2_ros (a stand-in here; the next test uses the real
    one where it is installed) odometry from the topic also goes into tf2's buffer, where the robot's
    static TF is; without it, the node's own map -> camera on /tf does not replace the camera's parent
    in its own buffer."""
    import types

    from seqace_ros.ros import tf_io
    from seqace_ros.ros.messages import matrix_to_transform, stamp_to_ns

    got = []

    class Buffer:
        def __init__(self, cache_time=None):
            pass

        def set_transform(self, transform, authority):
            got.append((transform, authority))

        def lookup_transform(self, *args, **kwargs):
            raise RuntimeError("not in this stand-in")

    fake = types.SimpleNamespace(Buffer=Buffer, TransformListener=lambda *a, **k: None)
    node = rclpy.create_node("seqace_tf_input_check")
    try:
        with monkeypatch.context() as m:
            m.setattr(tf_io, "optional_module", lambda name: fake if name == "tf2_ros" else None)
            tf_in = tf_io.TfInput(node)
            assert tf_in.backend == "tf2_ros"
            T = np.eye(4)
            T[:3, 3] = [1.0, 2.0, 0.0]
            tf_in.add("odom", "base_link", 5_000_000_000, T)
            (msg, authority), = got
            assert (msg.header.frame_id, msg.child_frame_id, stamp_to_ns(msg.header.stamp)) == \
                ("odom", "base_link", 5_000_000_000)
            assert authority == "odom_topic" and msg.transform.translation.y == 2.0
            # tf2 has nothing: the own buffer answers.
            assert np.allclose(tf_in.lookup("odom", "base_link", 5_000_000_000, 0.01), T)
        if not have_tf2_msgs():
            return
        from tf2_msgs.msg import TFMessage

        tf_in = tf_io.TfInput(node, prefer_tf2_ros=False, skip_parent=lambda: "map")
        assert tf_in.backend == "tf2_msgs"
        tf_in._on_tf(TFMessage(transforms=[matrix_to_transform(T_BASE_CAM, "base_link", CAMERA_FRAME, 0)]), True)
        tf_in.add("odom", "base_link", 5_000_000_000, T)
        tf_in._on_tf(TFMessage(transforms=[matrix_to_transform(np.eye(4), "map", CAMERA_FRAME, 5_000_000_000)]),
                     False)
        assert np.allclose(tf_in.lookup("odom", CAMERA_FRAME, 5_000_000_000, 0.01), T @ T_BASE_CAM)
    finally:
        node.destroy_node()


@pytest.mark.skipif(importlib.util.find_spec("tf2_ros") is None,
                    reason="tf2_ros not installed (scripts/setup_env.sh builds it from ../shared/ros2-from-source)")
def test_tf_input_with_the_real_tf2_ros_chains_topic_odometry_with_the_static_tf(ros_env):
    """The real tf2_ros: odometry fed by TfInput.add (the odom_topic path) is chained by tf2 with a
    static base_link -> camera from /tf_static, received by the listener that the node's own executor
    spins (spin_thread=False)."""
    import threading

    import tf2_ros
    from rclpy.executors import SingleThreadedExecutor
    from seqace_ros.ros import tf_io
    from seqace_ros.ros.messages import matrix_to_transform

    # A domain of its own: /tf from the earlier tests' nodes (this module shares one domain) must
    # not reach this buffer, or tf2 may hold odom -> base_link only from later stamps.
    domain = (int(ros_env["ROS_DOMAIN_ID"]) + 50) % 100 + 1
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("seqace_real_tf2_check", context=context)
    other = rclpy.create_node("seqace_static_tf_publisher", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(other)
    spinning = threading.Event()
    spinning.set()

    def spin():
        while spinning.is_set():
            executor.spin_once(timeout_sec=0.05)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        tf_in = tf_io.TfInput(node)
        assert tf_in.backend == "tf2_ros"
        tf2_ros.StaticTransformBroadcaster(other).sendTransform(
            matrix_to_transform(T_BASE_CAM, "base_link", CAMERA_FRAME, 0))
        T = np.eye(4)
        T[:3, 3] = [1.0, 2.0, 0.0]
        stamp = node.get_clock().now().nanoseconds
        tf_in.add("odom", "base_link", stamp, T)
        got = tf_in.lookup("odom", CAMERA_FRAME, stamp, timeout_s=5.0)
        assert np.allclose(got, T @ T_BASE_CAM, atol=1e-9)
    finally:
        spinning.clear()
        thread.join(timeout=2.0)
        executor.shutdown()
        other.destroy_node()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
