"""relocalization_node with a real rclpy: the node runs as its own process (as `ros2 run` starts it,
with --ros-args --params-file), the test publishes images of a mapped synthetic scene and checks
what comes back: poses near the truth with a well-formed covariance, /tf contents and stamps,
diagnostics, services and parameters, the latched map cloud, survival of bad input, no backlog
when images come 3x faster than they are processed, and map -> odom from TF odometry.

All ROS traffic stays on loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) in a domain of its own.
Needs the [ros] extra (rclpy, messages) and, for the TF tests, tf2_msgs
(test/ros_support/setup_ros_env.py generates it where ROS is not installed).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros

from ros_support.harness import NodeProcess, RosClient, write_params  # noqa: E402
from ros_support.node_testing import (CAMERA_FRAME, REMAPS, answered, diag_status, diag_values,  # noqa: E402,F401
                                      frames_done, have_tf2_msgs, pose_matrix, process, queries, ros_env,
                                      running_node, stamp_ns, tiny)
from seqace_ros.geometry import pose_errors  # noqa: E402
from seqace_ros.ros.tf_math import covariance_is_well_formed  # noqa: E402

TOLERANCE_S = 0.2
# The tiny map (60 frames, 400 iterations, 256x192) is coarse (about 10 cm, 3 deg): the bounds say
# "localized in the right place", not benchmark accuracy.
MAX_TRANSLATION_M = 0.25
MAX_ROTATION_DEG = 5.0
MIN_GOOD_SHARE = 0.7


@pytest.fixture(scope="module")
def node(ros_env, tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("node")
    params = write_params(folder / "params.yaml", {
        "map_path": str(tiny.map_path), "diagnostics_period": 0.25, "no_image_timeout": 1.0,
        "transform_tolerance": TOLERANCE_S, "tf_publish_rate": 20.0, "device": "cpu"})
    proc = NodeProcess(params, ros_env, folder / "node.log", REMAPS)
    client = RosClient()
    with running_node(proc, client):
        yield proc, client


def test_poses_of_query_images_are_near_the_truth_with_a_well_formed_covariance(node, queries):
    proc, client = node
    good, published = 0, 0
    for image, K, T_true in queries:
        stamp, pose = process(client, image, K)
        if pose is None:
            continue
        published += 1
        assert pose.header.frame_id == "map" and stamp_ns(pose) == stamp
        cov = np.asarray(pose.pose.covariance).reshape(6, 6)
        assert covariance_is_well_formed(cov) and np.all(np.diag(cov) > 0)
        t_err, r_err = pose_errors(pose_matrix(pose.pose.pose), T_true)
        good += int(t_err < MAX_TRANSLATION_M and r_err < MAX_ROTATION_DEG)
    assert good >= MIN_GOOD_SHARE * len(queries), f"{good}/{len(queries)} within bounds ({published} published)"
    assert proc.alive


@pytest.mark.skipif(not have_tf2_msgs(), reason="tf2_msgs not installed (run test/ros_support/setup_ros_env.py)")
def test_tf_is_the_latest_pose_future_dated_and_never_repeats_a_stamp(node, queries):
    proc, client = node
    image, K, _ = queries[0]
    client.clear("tf")
    stamp, pose = process(client, image, K)
    assert pose is not None
    time.sleep(1.0)  # republishing at 20 Hz
    tfs = [(t, tf) for t, m in client.messages("tf") for tf in m.transforms
           if tf.header.frame_id == "map" and tf.child_frame_id == CAMERA_FRAME]
    assert len(tfs) >= 5, f"only {len(tfs)} map -> camera transforms in 1 s"
    stamps = [stamp_ns(tf) for _, tf in tfs]
    assert all(b > a for a, b in zip(stamps, stamps[1:])), "transform stamps must strictly increase"
    T_pose = pose_matrix(pose.pose.pose)
    from seqace_ros.ros.messages import transform_to_matrix

    assert np.allclose(transform_to_matrix(tfs[-1][1]), T_pose, atol=1e-6)
    # The timer may republish the previous test's pose between clear() and this frame's answer,
    # stamped from a clock reading just before `stamp`; the bound holds for the new pose's transforms.
    new = [stamp_ns(tf) for _, tf in tfs if np.allclose(transform_to_matrix(tf), T_pose, atol=1e-6)]
    assert len(new) >= 5 and min(new) >= stamp + int(TOLERANCE_S * 1e9)


def test_late_subscriber_gets_the_latched_map_cloud(node, tiny):
    from seqace_ros.mapfile import load_map
    from seqace_ros.ros.messages import cloud_to_points

    _, client = node
    client.subscribe_latched_cloud()
    got = client.wait_for(lambda: client.messages("map_cloud"), timeout=10)
    assert got, "no map cloud reached a subscriber that joined after the node published it"
    cloud = got[-1][1]
    expected = np.asarray(load_map(tiny.map_path).scene_points, np.float32)
    assert cloud.header.frame_id == "map" and cloud.width == len(expected) > 0
    assert np.allclose(cloud_to_points(cloud), expected)


def test_diagnostics_report_state_inliers_rates_and_silence(node, queries):
    _, client = node
    image, K, _ = queries[1]
    process(client, image, K)
    time.sleep(0.4)
    msg = diag_status(client)
    values = {kv.key: kv.value for kv in msg.values}
    assert msg.level == b"\x00" and msg.message == "localized", (msg.message, values)
    assert int(values["inliers"]) > 0 and float(values["processing_ms_median"]) > 0
    assert values["map"].endswith(".safetensors")
    time.sleep(1.5)  # no_image_timeout is 1 s
    msg = diag_status(client)
    assert msg.level == b"\x01" and msg.message.startswith("no image for"), msg.message


def test_services_and_parameter_validation(node, queries, tmp_path):
    from std_srvs.srv import Trigger

    proc, client = node
    image, K, T_true = queries[2]
    r = client.call(Trigger, "/relocalization_node/reset")
    assert r.success
    client.clear("path")
    process(client, image, K)
    paths = client.wait_for(lambda: client.messages("path"), 5)
    assert paths and len(paths[-1][1].poses) == 1, "reset must clear the path"
    assert client.call(Trigger, "/relocalization_node/relocalize").success
    r = client.call(Trigger, "/relocalization_node/load_map")
    assert r.success and "loaded" in r.message
    # Bad values are refused with a reason and the old value stays.
    res = client.set_parameter("map_path", str(tmp_path / "missing.safetensors"))
    assert not res.successful and "does not exist" in res.reason
    res = client.set_parameter("mode", "turbo")
    assert not res.successful and "single, sequence" in res.reason
    res = client.set_parameter("transform_tolerance", -1.0)
    assert not res.successful
    assert client.get_parameter("transform_tolerance") == pytest.approx(TOLERANCE_S)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a map")
    res = client.set_parameter("map_path", str(broken))
    assert not res.successful and "cannot load map" in res.reason
    _, pose = process(client, image, K)
    assert pose is not None, "the old map must still be in use"
    # The sequence mode can be switched on at run time.
    assert client.set_parameter("mode", "sequence").successful
    poses = [process(client, img, k)[1] for img, k, _ in queries[:4]]
    assert sum(p is not None for p in poses) >= 2
    assert client.set_parameter("mode", "single").successful
    assert proc.alive


def test_node_survives_garbage_wrong_encodings_and_wrong_sizes(node, queries):
    proc, client = node
    image, K, _ = queries[3]
    bad_before = int(diag_values(client).get("bad_images", 0))
    stamp = client.now_ns()
    big = np.zeros((image.shape[0] * 2, image.shape[1] * 2, 3), np.uint8)
    # One at a time: the queue of one would otherwise replace a bad frame before it is looked at.
    for i, (img, kw) in enumerate([(image, {"encoding": "32FC1"}), (image, {"data": b"\x00" * 17}),
                                   (big, {"info": False})]):  # wrong encoding, truncated, wrong size
        client.publish_frame(img, K, stamp + i, CAMERA_FRAME, **kw)
        client.wait_for(lambda i=i: int(diag_values(client).get("bad_images", 0)) >= bad_before + i + 1, 5)
    noise = np.random.default_rng(0).integers(0, 255, image.shape, dtype=np.uint8)
    _, pose_noise = process(client, noise, K)
    time.sleep(0.5)
    assert proc.alive
    assert int(diag_values(client)["bad_images"]) >= bad_before + 3
    # Still localizes a real image afterwards.
    _, pose = process(client, image, K)
    assert pose is not None and proc.alive


def test_no_backlog_when_images_come_three_times_faster_than_processing(node, queries):
    proc, client = node
    # Round trip of single frames (processing plus transport): an upper bound on the processing time.
    trips = []
    for image, K, _ in queries[:5]:
        stamp = client.now_ns()
        t0 = time.monotonic()
        client.publish_frame(image, K, stamp, CAMERA_FRAME)
        client.wait_for(lambda: answered(client, stamp), 20.0)
        trips.append(time.monotonic() - t0)
    processing_ms = 1000.0 * float(np.median(trips))
    # A fifth of the round trip: at least 3x the processing rate even when the round trip
    # overestimates processing by the polling and transport time.
    period = max(processing_ms / 5000.0, 0.002)
    dropped_before = int(diag_values(client)["frames_dropped_newer_arrived"])
    client.clear("pose", "inliers")
    sent = []
    for i in range(36):
        image, K, _ = queries[i % len(queries)]
        stamp = client.now_ns()
        client.publish_frame(image, K, stamp, CAMERA_FRAME)
        sent.append(stamp)
        time.sleep(period)
    t_last = time.monotonic()
    time.sleep(3 * processing_ms / 1000.0 + 1.0)
    outputs = {}
    for t, m in client.messages("pose") + client.messages("inliers"):
        outputs.setdefault(stamp_ns(m), t)
    assert set(outputs) <= set(sent)
    assert len(outputs) < len(sent), f"all {len(sent)} frames processed: the input was not faster than the node"
    after_stop = [s for s, t in outputs.items() if t > t_last]
    # A queue of one: at most the frame in work and the one waiting are handled after the last send.
    assert len(after_stop) <= 2, f"{len(after_stop)} frames handled after publishing stopped (backlog)"
    assert max(outputs) in sent[-2:], "the newest image must win"
    time.sleep(0.4)
    assert int(diag_values(client)["frames_dropped_newer_arrived"]) > dropped_before


def test_tf_output_is_off_without_tf2_and_the_node_says_so(ros_env, monkeypatch):
    from seqace_ros.ros import tf_io

    monkeypatch.setattr(tf_io, "optional_module", lambda name: None)
    node = rclpy.create_node("seqace_tf_off_check")
    try:
        out = tf_io.TfOutput(node)
        assert out.backend == "off"
        from geometry_msgs.msg import TransformStamped

        assert out.send(TransformStamped()) is False
        lookup = tf_io.TfInput(node)
        assert lookup.backend == "off"
        with pytest.raises(tf_io.TransformLookupError):
            lookup.lookup("odom", "camera", 0, timeout_s=0.01)
    finally:
        node.destroy_node()
