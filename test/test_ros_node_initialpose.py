"""relocalization_node with /initialpose (RViz's "2D Pose Estimate") as a prior: a pose near the truth
keeps the node localizing; one far away refuses the poses that disagree with it (nothing on ~/pose,
"lost" with the reason on /diagnostics) until the gate is released (~/relocalize, a new
/initialpose); a large covariance widens the gate; an /initialpose in another frame, or with NaN,
is ignored with a warning. The node is a process of its own (/initialpose is a global topic).
"""

from __future__ import annotations

import time

import pytest

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros

from ros_support.harness import NodeProcess, RosClient, write_params  # noqa: E402
from ros_support.node_testing import (REMAPS, diag_values, initial_pose_msg, pose_matrix, process,  # noqa: E402,F401
                                      queries, ros_env, running_node, stamp_ns, tiny, wait_log)
from seqace_ros.geometry import pose_errors  # noqa: E402

NODE = "reloc_initialpose"
GATE_M = 2.0
MAX_TRANSLATION_M = 0.25
MAX_ROTATION_DEG = 5.0


@pytest.fixture(scope="module")
def gate_node(ros_env, tiny, tmp_path_factory):
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    folder = tmp_path_factory.mktemp("initialpose")
    params = write_params(folder / "params.yaml", {
        "map_path": str(tiny.map_path), "initial_pose_gate": GATE_M, "diagnostics_period": 0.2,
        "no_image_timeout": 30.0, "device": "cpu"}, node_name=NODE)
    proc = NodeProcess(params, ros_env, folder / "node.log", REMAPS + ["-r", f"__node:={NODE}"])
    client = RosClient(name="seqace_initialpose_client", node_ns=f"/{NODE}")
    pub = client.node.create_publisher(PoseWithCovarianceStamped, "/initialpose",
                                       QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    with running_node(proc, client, (pub,)):
        yield proc, client, pub


def _gate(client) -> str:
    return diag_values(client).get("initial_pose_gate", "")


def _set_gate(client, pub, msg) -> None:
    """Publish /initialpose and wait until /diagnostics shows the gate it set."""
    pub.publish(msg)
    assert client.wait_for(lambda: _gate(client).startswith("refusing"), 5), diag_values(client)


def _near_truth(pose, T_true) -> bool:
    t_err, r_err = pose_errors(pose_matrix(pose.pose.pose), T_true)
    return t_err < MAX_TRANSLATION_M and r_err < MAX_ROTATION_DEG


def _localized_pose(client, frames):
    """The first frame of ``frames`` that the node localizes near the truth (the tiny map loses a
    few), or None."""
    for image, K, T_true in frames:
        _, pose = process(client, image, K)
        if pose is not None and _near_truth(pose, T_true):
            return pose
    return None


def test_initialpose_near_the_truth_keeps_the_node_localizing(gate_node, queries):
    proc, client, pub = gate_node
    assert _gate(client) == "none"
    x, y = queries[0][2][:2, 3]
    _set_gate(client, pub, initial_pose_msg(x + 0.4, y - 0.3, variance=0.01))
    assert _gate(client) == f"refusing poses further than {GATE_M:.2f} m from ({x + 0.4:.2f}, {y - 0.3:.2f})"
    assert wait_log(proc, f"/initialpose at ({x + 0.4:.2f}, {y - 0.3:.2f}): relocalizing within {GATE_M:.2f} m")
    assert _localized_pose(client, queries[:3]) is not None
    # A pose inside the gate opens it for good.
    assert client.wait_for(lambda: _gate(client) == "none", 2), diag_values(client)
    assert proc.alive


def test_far_initialpose_refuses_poses_until_the_gate_is_released(gate_node, queries):
    from std_srvs.srv import Trigger

    proc, client, pub = gate_node
    x, y = queries[3][2][:2, 3]
    # 5 m away with a small covariance (3 sigma = 0.3 m): the gate is the configured 2 m.
    _set_gate(client, pub, initial_pose_msg(x + 5.0, y, variance=0.01))
    lost_before = int(diag_values(client)["frames_lost"])
    client.clear("pose", "inliers")
    for image, K, _ in queries[3:7]:
        stamp, pose = process(client, image, K)
        assert pose is None, "a pose 5 m from /initialpose was published"
        marker = [m for _, m in client.messages("inliers") if stamp_ns(m) == stamp]
        assert marker and marker[0].color.r > marker[0].color.g, "the frame must be answered as lost (red inliers)"
    time.sleep(0.5)
    values = diag_values(client)
    state = values["state"]
    assert state.startswith("lost: pose is ") and f"from /initialpose (gate {GATE_M:.2f} m)" in state, values
    distance = float(state.split("pose is ")[1].split(" m")[0])
    assert 4.5 < distance < 5.5, state
    assert int(values["frames_lost"]) >= lost_before + 4
    assert values["initial_pose_gate"].startswith("refusing"), values
    assert client.messages("pose") == []
    # ~/relocalize releases the gate: poses are published again.
    assert client.call(Trigger, f"/{NODE}/relocalize").success
    assert client.wait_for(lambda: _gate(client) == "none", 2)
    assert _localized_pose(client, queries[7:10]) is not None

    # The same far /initialpose with a large covariance (sigma 2 m: a 6 m gate) lets the true pose through.
    x, y = queries[10][2][:2, 3]
    _set_gate(client, pub, initial_pose_msg(x + 5.0, y, variance=4.0))
    assert _gate(client).startswith("refusing poses further than 6.00 m")
    assert _localized_pose(client, queries[10:13]) is not None
    assert proc.alive


def test_initialpose_in_another_frame_or_with_nan_is_ignored_with_a_warning(gate_node, queries):
    proc, client, pub = gate_node
    x, y = queries[13][2][:2, 3]
    pub.publish(initial_pose_msg(x + 5.0, y, frame="odom"))
    assert wait_log(proc, "/initialpose is in frame 'odom', not the map frame 'map': ignored")
    nan = initial_pose_msg(float("nan"), y)
    pub.publish(nan)
    assert wait_log(proc, "/initialpose has a NaN or infinite position or x/y covariance: ignored")
    time.sleep(0.3)
    assert _gate(client) == "none"
    assert _localized_pose(client, queries[13:16]) is not None
    assert proc.alive
