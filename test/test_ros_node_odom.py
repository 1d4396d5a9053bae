"""relocalization_node with odometry from TF: map -> odom (REP-105) computed from the camera pose and
odom -> camera looked up at the image stamp, with compressed images. A process of its own, so that
no other node's transforms are on /tf. Needs rclpy and tf2_msgs (setup_ros_env.py generates it)."""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros

from ros_support.harness import NodeProcess, RosClient, write_params  # noqa: E402
from ros_support.node_testing import (CAMERA_FRAME, REMAPS, frames_done, have_tf2_msgs, pose_matrix,  # noqa: E402,F401
                                      queries, ros_env, stamp_ns, tiny, wait_warm)
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
    try:
        assert wait_warm(client, 120), proc.log()[-3000:]
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
    finally:
        client.close()
        assert proc.stop() == 0, proc.log()[-3000:]
