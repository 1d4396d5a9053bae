"""The ROS 2 user's workflow, for real: a colcon workspace built plain and with --symlink-install,
`ros2 pkg executables`, `ros2 launch` of the node on a synthetic scene's map with a publisher of its
query images, the node with odom_frame and the real tf2_ros (map -> odom, future-dated stamps, no
TF_REPEATED_DATA), clean SIGINT shutdowns, `ros2 launch ... build_map.launch.py` on a synthetic bag,
and `rviz:=true` without rviz2.

Needs launch, ros2cli, tf2_ros and colcon: scripts/setup_env.sh builds them from
../shared/ros2-from-source (skipped with the reason where that folder or cmake is absent). Marked
`workflow` (and `ros`): minutes on 2 cores; `pytest -m "not workflow"` leaves them out.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from ros_support.workspace import Workspace, base_env, colcon_build, copy_package, workflow_missing  # noqa: E402

MISSING = workflow_missing()
pytestmark = [pytest.mark.ros, pytest.mark.workflow, pytest.mark.skipif(MISSING is not None, reason=str(MISSING))]

from ros_support.harness import FASTDDS_PROFILE, RosClient  # noqa: E402
from ros_support.node_testing import (CAMERA_FRAME, diag_values, frames_done, pose_matrix, queries,  # noqa: E402,F401
                                      ros_env, stamp_ns, tiny)
from seqace_ros.geometry import invert_pose, pose_errors, rotvec_to_matrix  # noqa: E402

MAX_TRANSLATION_M = 0.25
MAX_ROTATION_DEG = 5.0
MIN_GOOD_SHARE = 0.7
TOLERANCE_S = 0.2
SHUTDOWN_RUNS = int(os.environ.get("SEQACE_SHUTDOWN_RUNS", "10"))
SIGINT_GRACE_S = 10.0


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory, workflow_report) -> dict[str, Workspace]:
    """One workspace, built plain and with --symlink-install (separate build and install bases)."""
    ws = tmp_path_factory.mktemp("colcon_ws")
    copy_package(ws)
    out = {}
    for tag, symlink in (("plain", False), ("symlink", True)):
        out[tag] = colcon_build(ws, symlink, tag)
        workflow_report(f"colcon build{' --symlink-install' if symlink else ''}: ok in {out[tag].build_seconds:.0f} s")
    return out


def _node_env(env: dict[str, str]) -> dict[str, str]:
    e = base_env(int(env["ROS_DOMAIN_ID"]))
    e["FASTDDS_DEFAULT_PROFILES_FILE"] = str(FASTDDS_PROFILE)
    return e


def _stop(proc: subprocess.Popen, grace: float = SIGINT_GRACE_S) -> tuple[int | None, float]:
    """SIGINT to the process group (Ctrl-C); returns (exit code or None if it hung, seconds)."""
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    try:
        rc = proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
        rc = None
    return rc, time.monotonic() - t0


def _wait_text(path: Path, pattern: str, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, path.read_text(errors="replace")):
            return True
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.1)
    return bool(re.search(pattern, path.read_text(errors="replace")))


def _localize_queries(client: RosClient, queries, timeout: float = 60.0):
    """Publish each query and wait for the node's answer; (t_err, r_err) of the published poses."""
    errors = []
    for image, K, T_true in queries:
        stamp = client.now_ns()
        n = frames_done(client)
        client.publish_frame(image, K, stamp, CAMERA_FRAME)
        client.wait_for(lambda: frames_done(client) > n, timeout)
        time.sleep(0.05)
        pose = [m for _, m in client.messages("pose") if stamp_ns(m) == stamp]
        if pose:
            errors.append(pose_errors(pose_matrix(pose[0].pose.pose), T_true))
    return errors


def _summary(errors, n: int) -> tuple[int, str]:
    good = sum(t < MAX_TRANSLATION_M and r < MAX_ROTATION_DEG for t, r in errors)
    t = np.array([e[0] for e in errors]) * 100 if errors else np.array([np.nan])
    r = np.array([e[1] for e in errors]) if errors else np.array([np.nan])
    return good, (f"{len(errors)}/{n} answered with a pose, {good}/{n} within {MAX_TRANSLATION_M * 100:.0f} cm / "
                  f"{MAX_ROTATION_DEG:.0f} deg; translation error median {np.median(t):.1f} cm, max "
                  f"{np.max(t):.1f} cm; rotation median {np.median(r):.2f} deg")


def test_colcon_build_plain_and_symlink_install_and_ros2_pkg_executables(workspaces, ros_env, workflow_report):
    env = _node_env(ros_env)
    for tag, ws in workspaces.items():
        r = ws.run("ros2 pkg executables seqace_ros", env)
        assert r.returncode == 0, r.stdout + r.stderr
        found = set(r.stdout.split())
        assert {"relocalization_node", "managed_relocalization_node", "build_map", "seqace"} <= found, r.stdout
        # What runs is the workspace's install (with its native module), not the repository.
        probe = ws.run("python -c 'import seqace_ros, seqace_ros._native, os; "
                       "print(os.path.realpath(seqace_ros.__file__))'", env, cwd=ws.root)
        assert probe.returncode == 0, probe.stderr
        origin = Path(probe.stdout.strip())
        assert str(ws.root) in str(origin), f"{tag}: seqace_ros imported from {origin}"
        launch_file = ws.install / "seqace_ros" / "share" / "seqace_ros" / "launch" / "relocalization.launch.py"
        assert launch_file.is_file()
        if tag == "symlink":
            # --symlink-install really links (setuptools >= 80 silently copies).
            assert launch_file.is_symlink(), "--symlink-install copied the launch file"
            assert origin.is_relative_to(ws.root / "src"), f"the package runs from {origin}, not the sources"
        else:
            assert not launch_file.is_symlink()
        workflow_report(f"ros2 pkg executables seqace_ros ({tag}): {' '.join(sorted(found - {'seqace_ros'}))}")


def test_ros2_launch_localizes_the_synthetic_scene_and_stops_on_sigint(workspaces, ros_env, tiny, queries,
                                                                       tmp_path, workflow_report):
    ws = workspaces["symlink"]
    env = _node_env(ros_env)
    env.pop("FASTDDS_DEFAULT_PROFILES_FILE")  # the launch file's shm_transport (default true) sets it
    show = ws.run("ros2 launch seqace_ros relocalization.launch.py --show-args", env)
    assert show.returncode == 0 and "'managed'" in show.stdout and "'shm_transport'" in show.stdout, show.stdout
    log = tmp_path / "launch.log"
    proc = ws.popen(f"ros2 launch seqace_ros relocalization.launch.py map:={tiny.map_path} "
                    "image:=/camera/image_raw camera_info:=/camera/camera_info", env, log)
    client = RosClient(name="seqace_launch_client")
    try:
        assert client.wait_for(lambda: diag_values(client).get("warmed_up") == "yes", 180), log.read_text()[-3000:]
        # The launched node got the shipped Fast DDS profile (shm_transport defaults to true).
        pid = int(re.search(r"relocalization_node-1\]: process started with pid \[(\d+)\]", log.read_text()).group(1))
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        profile = [v for v in environ if v.startswith(b"FASTDDS_DEFAULT_PROFILES_FILE=")]
        assert profile and profile[0].endswith(b"share/seqace_ros/config/fastdds_shm.xml"), profile
        errors = _localize_queries(client, queries)
    finally:
        client.close()
        rc, seconds = _stop(proc)
    text = log.read_text(errors="replace")
    good, line = _summary(errors, len(queries))
    workflow_report(f"ros2 launch relocalization.launch.py (synthetic scene, {len(queries)} queries): {line}")
    assert good >= MIN_GOOD_SHARE * len(queries), line
    assert rc == 0 and not re.search(r"Traceback|escalating|process has died", text), f"exit {rc}:\n{text[-3000:]}"
    workflow_report(f"ros2 launch: SIGINT -> clean exit in {seconds:.1f} s")


def test_map_to_odom_through_the_real_tf2_ros(workspaces, ros_env, tiny, queries, tmp_path, workflow_report):
    import tf2_ros
    from rclpy.duration import Duration
    from rclpy.time import Time
    from seqace_ros.ros.messages import transform_to_matrix

    ws = workspaces["symlink"]
    log = tmp_path / "node.log"
    proc = ws.popen(f"ros2 run seqace_ros relocalization_node --ros-args -p map_path:={tiny.map_path} "
                    f"-p odom_frame:=odom -p transform_tolerance:={TOLERANCE_S} -p tf_lookup_timeout:=0.5 "
                    "-p diagnostics_period:=0.25 -p device:=cpu "
                    "-r image:=/camera/image_raw -r camera_info:=/camera/camera_info", _node_env(ros_env), log)
    client = RosClient(name="seqace_tf2_client")
    buffer = tf2_ros.Buffer(cache_time=Duration(seconds=60))
    listener = tf2_ros.TransformListener(buffer, client.node, spin_thread=False)  # the client's executor spins it
    T_map_odom = np.eye(4)
    T_map_odom[:3, :3] = rotvec_to_matrix([0, 0, 0.4])
    T_map_odom[:3, 3] = [0.7, -0.3, 0.0]
    odom_errors, truth_errors, checked, future = [], [], 0, []
    try:
        assert client.wait_for(lambda: diag_values(client).get("warmed_up") == "yes", 180), log.read_text()[-3000:]
        assert "tf=tf2_ros" in log.read_text(), "the node did not use tf2_ros"
        for image, K, T_true in queries[:8]:
            stamp = client.now_ns()
            client.publish_transform(invert_pose(T_map_odom) @ T_true, "odom", CAMERA_FRAME, stamp)
            time.sleep(0.05)
            n = frames_done(client)
            client.publish_frame(image, K, stamp, CAMERA_FRAME)
            client.wait_for(lambda: frames_done(client) > n, 60)
            time.sleep(0.3)
            pose = [m for _, m in client.messages("pose") if stamp_ns(m) == stamp]
            if not pose:
                continue
            tfs = [tf for _, m in client.messages("tf") for tf in m.transforms
                   if tf.header.frame_id == "map" and tf.child_frame_id == "odom"]
            # This frame's map -> odom (pose * (odom -> camera)^-1): every stamp it is sent with lies at
            # least transform_tolerance after the image stamp.
            expected = pose_matrix(pose[0].pose.pose) @ invert_pose(invert_pose(T_map_odom) @ T_true)
            mine = [tf for tf in tfs if pose_errors(transform_to_matrix(tf), expected)[0] < 1e-4]
            future += [stamp_ns(tf) - stamp for tf in mine]
            if not mine:
                continue
            # Through tf2: the node's map -> odom is future-dated, so look up at its newest stamp, with
            # odom -> camera (ours) republished there; tf2's buffer chains the two.
            s = max(stamp_ns(tf) for tf in mine)
            client.publish_transform(invert_pose(T_map_odom) @ T_true, "odom", CAMERA_FRAME, s)
            try:
                T_map_cam = transform_to_matrix(buffer.lookup_transform("map", CAMERA_FRAME, Time(nanoseconds=s),
                                                                        timeout=Duration(seconds=1.0)))
                T_map_odom_tf = transform_to_matrix(buffer.lookup_transform("map", "odom", Time(nanoseconds=s),
                                                                            timeout=Duration(seconds=1.0)))
            except Exception as exc:  # tf2's own exception family
                pytest.fail(f"tf2_ros lookup failed: {exc}\n{log.read_text()[-2000:]}")
            checked += 1
            T_pose = pose_matrix(pose[0].pose.pose)
            odom_errors.append(pose_errors(T_map_odom_tf, T_pose @ invert_pose(invert_pose(T_map_odom) @ T_true)))
            truth_errors.append(pose_errors(T_map_odom_tf, T_map_odom))
            t_cam, r_cam = pose_errors(T_map_cam, T_pose)
            assert t_cam < 1e-3 and r_cam < 0.05, "tf2's map -> camera differs from the published pose"
    finally:
        del listener
        client.close()
        rc, seconds = _stop(proc)
    text = log.read_text(errors="replace")
    assert checked >= 5, f"only {checked} of 8 frames gave a pose and map -> odom:\n{text[-3000:]}"
    worst_t = max(e[0] for e in odom_errors)
    worst_r = max(e[1] for e in odom_errors)
    assert worst_t < 1e-3 and worst_r < 0.05, f"map -> odom does not match pose * (odom -> camera)^-1: {odom_errors}"
    assert future and min(future) >= TOLERANCE_S * 1e9 * 0.99, "map -> odom not future-dated by transform_tolerance"
    good, truth = _summary(truth_errors, checked)
    assert good >= MIN_GOOD_SHARE * checked, f"map -> odom against the true map -> odom: {truth}"
    assert "TF_REPEATED_DATA" not in text, text[-3000:]
    assert rc == 0 and "Traceback" not in text, f"exit {rc}:\n{text[-3000:]}"
    workflow_report(f"tf2_ros: map -> odom against the truth: {truth}")
    workflow_report(f"tf2_ros: map -> odom checked on {checked} frames through a tf2_ros Buffer (max deviation "
                    f"{worst_t * 1000:.3f} mm / {worst_r:.4f} deg from pose * (odom -> camera)^-1), stamps "
                    f">= image stamp + {min(future) / 1e9:.2f} s, no TF_REPEATED_DATA; SIGINT -> exit 0 in "
                    f"{seconds:.1f} s")


def test_clean_shutdown_on_sigint_every_time(workspaces, ros_env, tiny, tmp_path, workflow_report):
    """Ctrl-C on `ros2 launch` (SIGINT to the process group, so the node gets it from the terminal and
    again from launch) while the node spins, its tf2_ros listener receives /tf and its worker warms up."""
    ws = workspaces["symlink"]
    env = _node_env(ros_env)
    client = RosClient(name="seqace_sigint_client")
    results = []
    try:
        for i in range(SHUTDOWN_RUNS):
            log = tmp_path / f"launch_{i}.log"
            proc = ws.popen(f"ros2 launch seqace_ros relocalization.launch.py map:={tiny.map_path}", env, log)
            up = _wait_text(log, r"ready: mode=", 120, proc)
            for _ in range(10):  # traffic for the listener while it shuts down
                client.publish_transform(np.eye(4), "odom", CAMERA_FRAME, client.now_ns())
                time.sleep(0.03)
            rc, seconds = _stop(proc)
            text = log.read_text(errors="replace")
            clean = (up and rc == 0 and "process has finished cleanly" in text
                     and not re.search(r"Traceback|Exception|escalating|process has died", text))
            results.append((clean, rc, seconds, text))
    finally:
        client.close()
    n_clean = sum(r[0] for r in results)
    worst = max(r[2] for r in results)
    workflow_report(f"SIGINT (Ctrl-C) on ros2 launch of relocalization_node with its tf2_ros listener: "
                    f"{n_clean}/{len(results)} clean exits, slowest {worst:.1f} s")
    bad = [r for r in results if not r[0]]
    assert not bad, f"{len(bad)} unclean: exit {bad[0][1]} after {bad[0][2]:.1f} s:\n{bad[0][3][-3000:]}"


def test_build_map_launch_on_a_synthetic_bag_makes_a_map_that_localizes(workspaces, ros_env, tiny, queries,
                                                                        tmp_path, workflow_report):
    ws = workspaces["symlink"]
    env = _node_env(ros_env)
    bag = tmp_path / "room_bag"
    r = subprocess.run([sys.executable, "-m", "seqace_ros.data.ros_bag.synthetic_bag", str(bag), "--scene",
                        str(tiny.scene_dir), "--query-frames", "0"], capture_output=True, text=True, env=env,
                       cwd=ws.root)
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "room.safetensors"
    s = tiny.settings
    # The bag map trains at build_map's image height (480) on these 256x192 images: more iterations than
    # the tiny map needs.
    options = (f"--iterations {3 * s.iterations} --head-width {s.head_width} --head-blocks {s.head_blocks} "
               f"--buffer-size {s.buffer_size} --batch-size {s.batch_size} --threads 2 --device cpu -q")
    t0 = time.perf_counter()
    r = ws.run(f"ros2 launch seqace_ros build_map.launch.py bag:={bag} out:={out} profile:=fast "
               f"options:='{options}'", env, timeout=900)
    seconds = time.perf_counter() - t0
    assert r.returncode == 0 and out.is_file(), (r.stdout + r.stderr)[-4000:]
    assert "process has finished cleanly" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    from seqace_ros.mapfile import load_map
    from seqace_ros.relocalization import RelocConfig, Relocalizer

    reloc = Relocalizer(load_map(out), RelocConfig(), device="cpu")
    errors = []
    for image, K, T_true in queries:
        res = reloc.localize(image, K)
        if res.localized:
            errors.append(pose_errors(res.pose_c2w, T_true))
    good, line = _summary(errors, len(queries))
    workflow_report(f"ros2 launch build_map.launch.py (synthetic bag, {seconds:.0f} s): the map localizes "
                    f"{line}")
    assert good >= MIN_GOOD_SHARE * len(queries), line


def test_rviz_true_without_rviz2_fails_before_anything_starts(workspaces, ros_env, tiny, workflow_report):
    ws = workspaces["symlink"]
    env = _node_env(ros_env)
    if ws.run("ros2 pkg prefix rviz2", env).returncode == 0:
        pytest.skip("rviz2 is installed here")
    r = ws.run(f"ros2 launch seqace_ros relocalization.launch.py map:={tiny.map_path} rviz:=true", env, timeout=60)
    text = r.stdout + r.stderr
    assert r.returncode != 0, text
    assert "rviz2' is not installed" in text and "nothing was started" in text, text[-2000:]
    assert "process started" not in text, text[-2000:]
    workflow_report("rviz:=true without rviz2: launch refused before starting anything: "
                    + next(line for line in text.splitlines() if "rviz2' is not installed" in line).strip()[:160])


def test_ros2_launch_managed_true_starts_the_lifecycle_node(workspaces, ros_env, tiny, queries, tmp_path,
                                                            workflow_report):
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    ws = workspaces["symlink"]
    log = tmp_path / "managed.log"
    proc = ws.popen(f"ros2 launch seqace_ros relocalization.launch.py managed:=true map:={tiny.map_path}",
                    _node_env(ros_env), log)
    client = RosClient(name="seqace_managed_launch_client")
    ns = "/relocalization_node"
    try:
        assert client.wait_for(lambda: any(n == f"{ns}/change_state" for n, _ in
                                           client.node.get_service_names_and_types()), 120), log.read_text()[-3000:]
        assert client.call(GetState, f"{ns}/get_state").current_state.label == "unconfigured"
        for tid in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            req = ChangeState.Request(transition=Transition(id=tid))
            assert client.call(ChangeState, f"{ns}/change_state", req, timeout=120).success, log.read_text()[-3000:]
        assert client.call(GetState, f"{ns}/get_state").current_state.label == "active"
        errors = _localize_queries(client, queries[:5])
    finally:
        client.close()
        rc, seconds = _stop(proc)
    text = log.read_text(errors="replace")
    good, line = _summary(errors, 5)
    assert "managed_relocalization_node" in text and good >= 3, line
    assert rc == 0 and not re.search(r"Traceback|escalating|process has died", text), f"exit {rc}:\n{text[-3000:]}"
    workflow_report(f"ros2 launch managed:=true: unconfigured -> configure -> activate through the services; {line}; "
                    f"SIGINT -> exit 0 in {seconds:.1f} s")
