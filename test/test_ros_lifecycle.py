"""managed_relocalization_node through the lifecycle services, as nav2's lifecycle_manager drives it:
nothing before configure, configure loads the map (and fails without one), activate answers images
and sends the latched cloud, deactivate stops answering, cleanup frees the map and its services,
shutdown finalizes, and SIGINT ends the process cleanly. Needs rclpy and lifecycle_msgs (PyPI wheels)."""

from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
lifecycle_msgs = pytest.importorskip("lifecycle_msgs")
pytestmark = pytest.mark.ros

from ros_support.harness import NodeProcess, RosClient, write_params  # noqa: E402
from ros_support.node_testing import (CAMERA_FRAME, REMAPS, frames_done, pose_matrix, queries, ros_env,  # noqa: E402,F401
                                      stamp_ns, tiny, wait_log)
from seqace_ros.geometry import pose_errors  # noqa: E402

MODULE = "seqace_ros.ros.managed_node"
NS = "/relocalization_node"
MAX_TRANSLATION_M = 0.25
MAX_ROTATION_DEG = 5.0


def _state(client: RosClient) -> str:
    from lifecycle_msgs.srv import GetState

    return client.call(GetState, f"{NS}/get_state").current_state.label


def _transition(client: RosClient, transition_id: int, timeout: float = 120.0) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    req = ChangeState.Request(transition=Transition(id=transition_id))
    return client.call(ChangeState, f"{NS}/change_state", req, timeout=timeout).success


def _service_exists(client: RosClient, name: str) -> bool:
    """Whether the node declares the service. Asked per node (the node's own entity list), not of
    the whole graph: Fast DDS sometimes keeps a destroyed service's endpoints in the graph for more
    than 10 s after the node's own list has dropped it."""
    try:
        services = client.node.get_service_names_and_types_by_node(NS.lstrip("/"), "/")
    except Exception:  # the node is not discovered yet (rclpy raises NodeNameNonExistentError)
        return False
    return any(n == name for n, _ in services)


def _send_frames(client: RosClient, frames, wait_s: float) -> list[int]:
    stamps = []
    for image, K, _ in frames:
        stamp = client.now_ns()
        client.publish_frame(image, K, stamp, CAMERA_FRAME)
        stamps.append(stamp)
        time.sleep(wait_s)
    return stamps


def test_lifecycle_configure_activate_deactivate_cleanup_shutdown(ros_env, tiny, queries, tmp_path,
                                                                  workflow_report):
    from lifecycle_msgs.msg import Transition

    params = write_params(tmp_path / "managed.yaml", {
        "map_path": str(tmp_path / "missing.safetensors"), "diagnostics_period": 0.25, "device": "cpu"})
    proc = NodeProcess(params, ros_env, tmp_path / "node.log", REMAPS, module=MODULE)
    client = RosClient(name="seqace_lifecycle_client")
    client.subscribe_latched_cloud()
    try:
        assert client.wait_for(lambda: _service_exists(client, f"{NS}/change_state"), 60), proc.log()[-3000:]
        assert _state(client) == "unconfigured"
        # Unconfigured: no node services, no answers.
        assert not _service_exists(client, f"{NS}/relocalize")
        # configure without a loadable map fails and stays unconfigured, saying why.
        assert not _transition(client, Transition.TRANSITION_CONFIGURE)
        assert _state(client) == "unconfigured"
        assert wait_log(proc, "configure failed"), proc.log()[-3000:]
        # Parameters exist before configure (declared in the constructor), so the map can be fixed.
        assert client.set_parameter("map_path", str(tiny.map_path)).successful

        t0 = time.monotonic()
        assert _transition(client, Transition.TRANSITION_CONFIGURE), proc.log()[-3000:]
        configure_s = time.monotonic() - t0
        assert _state(client) == "inactive"
        assert client.wait_for(lambda: _service_exists(client, f"{NS}/relocalize"), 10)
        # Inactive: images are ignored, nothing is published (the latched cloud included).
        _send_frames(client, queries[:3], 0.5)
        time.sleep(1.0)
        assert frames_done(client) == 0 and not client.messages("diagnostics") and not client.messages("map_cloud")

        assert _transition(client, Transition.TRANSITION_ACTIVATE)
        assert _state(client) == "active"
        assert client.wait_for(lambda: client.messages("map_cloud"), 10), "no latched cloud after activate"
        good, errors = 0, []
        for image, K, T_true in queries[:6]:
            stamp = client.now_ns()
            n = frames_done(client)
            client.publish_frame(image, K, stamp, CAMERA_FRAME)
            client.wait_for(lambda: frames_done(client) > n, 60)
            time.sleep(0.05)
            pose = [m for _, m in client.messages("pose") if stamp_ns(m) == stamp]
            if pose:
                t_err, r_err = pose_errors(pose_matrix(pose[0].pose.pose), T_true)
                errors.append(t_err)
                good += int(t_err < MAX_TRANSLATION_M and r_err < MAX_ROTATION_DEG)
        assert good >= 4, f"{good}/6 poses within bounds while active"
        assert client.messages("diagnostics")

        assert _transition(client, Transition.TRANSITION_DEACTIVATE)
        assert _state(client) == "inactive"
        time.sleep(0.5)
        done = frames_done(client)
        client.clear("diagnostics")
        _send_frames(client, queries[6:9], 0.5)
        time.sleep(1.0)
        assert frames_done(client) == done, "poses published while inactive"
        assert not client.messages("diagnostics")

        assert _transition(client, Transition.TRANSITION_CLEANUP)
        assert _state(client) == "unconfigured"
        assert client.wait_for(lambda: not _service_exists(client, f"{NS}/relocalize"), 10), \
            "cleanup left the node's services behind"
        assert wait_log(proc, "cleaned up")
        # A second cycle works (parameters and entities were released, not leaked).
        assert _transition(client, Transition.TRANSITION_CONFIGURE), proc.log()[-3000:]
        assert _transition(client, Transition.TRANSITION_ACTIVATE)
        assert _state(client) == "active"
        assert _transition(client, Transition.TRANSITION_ACTIVE_SHUTDOWN)
        assert _state(client) == "finalized"
        workflow_report(f"lifecycle: unconfigured -> (configure without map: refused) -> inactive "
                        f"(configure {configure_s:.1f} s) -> active ({good}/6 poses within "
                        f"{MAX_TRANSLATION_M} m / {MAX_ROTATION_DEG} deg, median error "
                        f"{100 * float(np.median(errors)):.1f} cm) -> inactive (no output) -> unconfigured -> "
                        "active -> finalized")
    finally:
        client.close()
        rc = proc.stop()
    log = proc.log()
    assert rc == 0 and "Traceback" not in log, f"exit {rc}:\n{log[-3000:]}"
