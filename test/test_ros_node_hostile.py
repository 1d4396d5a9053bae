"""Issue #15 through a running relocalization_node: crafted maps at start-up and at run time, thin
strips, a PNG bomb, implausible or non-finite CameraInfo, non-finite parameters and fuzzed images.
Each is refused with a reason (parameter reply or /diagnostics), the node keeps its map, its memory
stays bounded, and it still localizes a good frame afterwards.

One raw-image node serves every case but the compressed ones, which get a second node (the image
transport is fixed at start-up). All ROS traffic stays on loopback in a domain of its own.
"""

from __future__ import annotations

import math
import re
import resource
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros

from ros_support.harness import NodeProcess, RosClient, write_params  # noqa: E402
from ros_support.hostile_images import png_bomb  # noqa: E402
from ros_support.hostile_maps import CASES, make_case  # noqa: E402
from ros_support.node_testing import (CAMERA_FRAME, REMAPS, diag_values, process, queries, ros_env,  # noqa: E402,F401
                                      running_node, tiny, wait_log, wait_warm)

# Growth of the node's peak resident memory allowed across a batch of hostile inputs (decoding the
# PNG bomb alone would add over a gigabyte).
MAX_PEAK_GROWTH_MB = 100.0


def _status_mb(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _cap_address_space(pid: int, extra_gb: float = 2.0) -> None:
    """A safety net: an allocation of gigabytes fails inside the node instead of swapping the host."""
    limit = int((_status_mb(pid, "VmSize") / 1024.0 + extra_gb) * (1 << 30))
    try:
        resource.prlimit(pid, resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    except (OSError, ValueError):
        pass  # not permitted here: the peak-memory assertions still apply


def _bad_count(client) -> int:
    """Bad images counted so far, once /diagnostics (every 0.1 s here) has caught up."""
    time.sleep(0.3)
    return int(diag_values(client).get("bad_images", 0))


def _refused(client, before: int, timeout: float = 5.0) -> str:
    """Wait until /diagnostics counts one more bad image; returns its reason."""
    count = lambda: int(diag_values(client).get("bad_images", 0))  # noqa: E731
    client.wait_for(lambda: count() > before, timeout)
    assert count() > before, "the node did not report the input as bad"
    return diag_values(client)["last_bad_image"]


def _info_msg(K, width, height, stamp_ns, D=None):
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CameraInfo

    ci = CameraInfo()
    ci.header.stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    ci.header.frame_id = CAMERA_FRAME
    ci.width, ci.height = width, height
    K = np.asarray(K, float)
    ci.k = [float(v) for v in K.reshape(-1)]
    ci.p = [float(K[0, 0]), 0.0, float(K[0, 2]), 0.0, 0.0, float(K[1, 1]), float(K[1, 2]), 0.0, 0.0, 0.0, 1.0, 0.0]
    ci.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    ci.distortion_model = "plumb_bob"
    ci.d = [float(v) for v in (D if D is not None else [0.0] * 5)]
    return ci


def _good_latency(client, image, K) -> float:
    t0 = time.monotonic()
    _, pose = process(client, image, K)
    assert pose is not None, "a good frame must still localize"
    return time.monotonic() - t0


@pytest.fixture(scope="module")
def node(ros_env, tiny, tmp_path_factory):
    """Started with a crafted map (it must come up without one), then given the good map."""
    folder = tmp_path_factory.mktemp("hostile_node")
    crafted, _ = make_case(tiny.map_path, "metadata_is_a_list", folder)
    params = write_params(folder / "params.yaml", {
        "map_path": str(crafted), "diagnostics_period": 0.1, "no_image_timeout": 30.0, "device": "cpu"})
    proc = NodeProcess(params, ros_env, folder / "node.log", REMAPS)
    client = RosClient(name="seqace_hostile_client")
    try:
        assert wait_log(proc, "JSON list, expected a JSON object", 120), proc.log()[-3000:]
        assert wait_log(proc, "running without a map", 5) and proc.alive
        res = client.set_parameter("map_path", str(tiny.map_path), timeout=60)
        assert res.successful, res.reason
        if not wait_warm(client, 120):
            pytest.fail(f"node did not warm up:\n{proc.log()[-3000:]}")
        _cap_address_space(proc.proc.pid)
        yield proc, client, folder
    finally:
        client.close()
        rc = proc.stop()
    assert rc == 0, f"node exited with {rc}:\n{proc.log()[-3000:]}"


def test_node_started_with_a_crafted_map_comes_up_without_it_and_takes_a_good_one(node, tiny):
    proc, client, _ = node  # the fixture started it with a crafted map, then set the good one
    log = proc.log()
    assert "JSON list, expected a JSON object" in log and "running without a map" in log
    assert "Traceback" not in log and proc.alive
    assert diag_values(client)["map"] == str(tiny.map_path)


def test_crafted_maps_at_run_time_are_refused_with_the_reason_and_the_old_map_stays(node, tiny, queries):
    proc, client, folder = node
    image, K, _ = queries[0]
    for case in sorted(CASES):
        path, pattern = make_case(tiny.map_path, case, folder)
        t0 = time.monotonic()
        res = client.set_parameter("map_path", str(path), timeout=30)
        assert not res.successful, f"{case} was accepted"
        assert re.search(pattern, res.reason) and str(path) in res.reason, (case, res.reason)
        assert time.monotonic() - t0 < 10.0
    assert client.get_parameter("map_path") == str(tiny.map_path)
    assert diag_values(client)["map"] == str(tiny.map_path)
    _good_latency(client, image, K)
    assert proc.alive


def test_non_finite_parameters_are_refused(node):
    _, client, _ = node
    for value in (math.nan, math.inf):
        res = client.set_parameter("lost_variance", value)
        assert not res.successful and "finite" in res.reason
    assert client.get_parameter("lost_variance") == 1.0e6


def test_thin_strip_wrong_principal_point_and_nan_camera_info_are_refused_quickly(node, queries):
    proc, client, _ = node
    image, K, _ = queries[1]
    baseline = min(_good_latency(client, image, K) for _ in range(2))
    peak0 = _status_mb(proc.proc.pid, "VmHWM")
    cases = []
    # The thin strip: a 1000x16 CameraInfo and a 16 KB mono8 image.
    strip = np.random.default_rng(0).integers(0, 255, (16, 1000), dtype=np.uint8)
    K_strip = np.array([[500.0, 0, 500], [0, 500, 8], [0, 0, 1]])
    cases.append(("thin strip", lambda s: client.publish_frame(strip, K_strip, s,
                                                                CAMERA_FRAME, encoding="mono8"),
                  "aspect ratio of 62.5"))
    zero_pp = np.array(K, float)
    zero_pp[:2, 2] = 0.0
    cases.append(("cx = cy = 0", lambda s: client.publish_frame(image, zero_pp, s, CAMERA_FRAME),
                  "principal point \\(0, 0\\) is not inside"))

    def nan_distortion(s):
        client.info_pub.publish(_info_msg(K, image.shape[1], image.shape[0], s, D=[math.nan, 0, 0, 0, 0]))
        time.sleep(0.1)
        client.publish_frame(image, K, s, CAMERA_FRAME, info=False)
    cases.append(("NaN in D", nan_distortion, "D contains NaN"))

    def declared_huge(s):
        from sensor_msgs.msg import Image
        client.info_pub.publish(_info_msg(K, image.shape[1], image.shape[0], s))
        msg = Image(height=20000, width=20000, encoding="bgr8", step=60000, data=b"\0" * 64)
        msg.header.frame_id = CAMERA_FRAME
        client.image_pub.publish(msg)
    cases.append(("declared 20000x20000", declared_huge, "larger than max_image_pixels"))

    worst = 0.0
    for name, send, pattern in cases:
        before = _bad_count(client)
        send(client.now_ns())
        reason = _refused(client, before)
        assert re.search(pattern, reason), (name, reason)
        # Blocking: a good frame sent right behind the bad one waits for the worker.
        send(client.now_ns())
        time.sleep(0.005)
        worst = max(worst, _good_latency(client, image, K) - baseline)
    peak_growth = _status_mb(proc.proc.pid, "VmHWM") - peak0
    print(f"\nraw node: worst extra latency {1000 * worst:.0f} ms, peak RSS growth {peak_growth:.1f} MB")
    assert worst < 0.5, f"a good frame behind a bad one waited {worst:.2f} s longer"
    assert peak_growth < MAX_PEAK_GROWTH_MB and proc.alive


def test_fuzzed_raw_images_leave_the_node_alive_bounded_and_localizing(node, queries):
    from sensor_msgs.msg import Image

    proc, client, _ = node
    image, K, _ = queries[2]
    rng = np.random.default_rng(15)
    encodings = ["bgr8", "rgb8", "mono8", "mono16", "16UC1", "bayer_rggb8", "yuv422", "32FC1", "", "bgr8; jpeg"]
    peak0 = _status_mb(proc.proc.pid, "VmHWM")
    t0 = time.monotonic()
    client.info_pub.publish(_info_msg(K, image.shape[1], image.shape[0], client.now_ns()))
    for i in range(60):
        h, w = (int(v) for v in rng.choice([0, 1, 15, 16, 17, 480, 640, 4000, 65535, 2 ** 31 - 1], 2))
        msg = Image(height=h, width=w, encoding=str(rng.choice(encodings)),
                    step=int(min(rng.integers(0, 4 * max(w, 1) + 1), 2 ** 32 - 1)),
                    is_bigendian=int(rng.integers(0, 2)),
                    data=rng.integers(0, 256, int(rng.integers(0, 1 << 16)), dtype=np.uint8).tobytes())
        msg.header.frame_id = CAMERA_FRAME
        client.image_pub.publish(msg)
        time.sleep(0.01)
    time.sleep(0.5)
    assert proc.alive
    _good_latency(client, image, K)
    assert time.monotonic() - t0 < 30.0
    assert _status_mb(proc.proc.pid, "VmHWM") - peak0 < MAX_PEAK_GROWTH_MB


def test_compressed_png_bomb_and_thin_strip_are_refused_before_decoding(ros_env, tiny, queries, tmp_path):
    import cv2

    params = write_params(tmp_path / "c.yaml", {
        "map_path": str(tiny.map_path), "image_transport": "compressed", "diagnostics_period": 0.1,
        "no_image_timeout": 30.0, "device": "cpu"}, node_name="reloc_hostile_c")
    proc = NodeProcess(params, ros_env, tmp_path / "node.log", REMAPS + ["-r", "__node:=reloc_hostile_c"])
    client = RosClient(name="seqace_hostile_c_client", node_ns="/reloc_hostile_c", compressed=True)
    image, K, _ = queries[3]
    with running_node(proc, client):
        _cap_address_space(proc.proc.pid)
        baseline = min(_good_latency(client, image, K) for _ in range(2))
        peak0 = _status_mb(proc.proc.pid, "VmHWM")
        bomb = png_bomb()
        strip = cv2.imencode(".png", np.zeros((16, 1000), np.uint8))[1].tobytes()
        worst = 0.0
        for data, K_sent, size, pattern in (
                (bomb, K, image.shape[:2], "refused before decoding: image of 20000x20000 pixels is larger"),
                (strip, np.array([[500.0, 0, 500], [0, 500, 8], [0, 0, 1]]), (16, 1000), "aspect ratio of 62.5"),
                (cv2.imencode(".png", image[:64, :64])[1].tobytes(), K, image.shape[:2],
                 "header says 64x64 but camera_info describes")):
            dummy = np.zeros(size + (3,), np.uint8)  # gives CameraInfo its size; the payload is `data`
            before = _bad_count(client)
            client.publish_frame(dummy, K_sent, client.now_ns(), CAMERA_FRAME, data=data)
            reason = _refused(client, before)
            assert re.search(pattern, reason), reason
            client.publish_frame(dummy, K_sent, client.now_ns(), CAMERA_FRAME, data=data)
            time.sleep(0.005)
            worst = max(worst, _good_latency(client, image, K) - baseline)
        # Fuzz: random PNG / JPEG headers declaring any size, cut short or followed by garbage.
        rng = np.random.default_rng(15)
        for i in range(40):
            w, h = (int(v) for v in rng.choice([0, 1, 16, 256, 192, 5000, 65535, 2 ** 31 - 1], 2))
            if i % 2:
                head = png_bomb(16, 16)[:16] + w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
            else:
                head = (b"\xff\xd8\xff\xc0\x00\x11\x08" + min(h, 65535).to_bytes(2, "big")
                        + min(w, 65535).to_bytes(2, "big") + b"\x03")
            data = head + rng.integers(0, 256, int(rng.integers(0, 4096)), dtype=np.uint8).tobytes()
            client.publish_frame(np.zeros((192, 256, 3), np.uint8), K, client.now_ns(), CAMERA_FRAME, data=data)
            time.sleep(0.01)
        time.sleep(0.5)
        _good_latency(client, image, K)
        peak_growth = _status_mb(proc.proc.pid, "VmHWM") - peak0
        print(f"\ncompressed node: worst extra latency {1000 * worst:.0f} ms, peak RSS growth {peak_growth:.1f} MB")
        assert peak_growth < MAX_PEAK_GROWTH_MB, f"peak memory grew by {peak_growth:.0f} MB"
        assert worst < 0.5 and proc.alive
