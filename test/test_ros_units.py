"""The node's pure-Python parts, tested without ROS: parameter checks, frame arithmetic, stamp
rules, the queue of one, camera models from CameraInfo, the diagnostics verdict and the engine's
refusal of poses without an honest covariance."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from conftest import textured_image
from seqace_ros.geometry import invert_pose, rotvec_to_matrix
from seqace_ros.relocalization.result import RelocResult
from seqace_ros.ros import params
from seqace_ros.ros.camera_model import CameraModel
from seqace_ros.ros.diagnostics import ERROR, OK, WARN, NodeStats
from seqace_ros.ros.engine import EngineError, EngineSettings, LocalizationEngine
from seqace_ros.ros.frame_slot import LatestSlot
from seqace_ros.ros.odometry import OdometryState
from seqace_ros.ros.tf_math import (InitialPoseGate, StampSequencer, covariance_is_well_formed, map_to_odom,
                                    relative_motion)
from seqace_ros.image_msgs import ImageDecodeError


def _pose(rv, t):
    T = np.eye(4)
    T[:3, :3] = rotvec_to_matrix(rv)
    T[:3, 3] = t
    return T


# ------------------------------------------------------------------ parameters
def test_every_parameter_default_passes_its_own_check():
    for spec in params.PARAMETERS:
        assert spec.validate(spec.default) is None, spec.name


@pytest.mark.parametrize("name,value,message", [
    ("mode", "batch", "must be one of single, sequence"),
    ("num_cells", 10, "must be >= 50"),
    ("num_cells", True, "must be a int"),
    ("image_height", 50, "0 (the map's own) or at least 96"),
    ("image_height", -1, "must be >= 0"),
    ("transform_tolerance", -0.5, "must be >= 0.0"),
    ("transform_tolerance", "soon", "must be a float"),
    ("map_frame", "", "must not be empty"),
    ("odom_frame", "odom frame!", "not a valid frame id"),
    ("device", "tpu", "device must be auto, cpu, cuda or cuda:N"),
    ("image_transport", "theora", "must be one of raw, compressed"),
    ("no_such_param", 1, "unknown parameter"),
])
def test_bad_parameter_values_are_refused_with_a_reason(name, value, message):
    reason = params.validate(name, value)
    assert reason is not None and message in reason


def test_integer_is_accepted_for_a_float_parameter_and_the_table_lists_every_parameter():
    assert params.validate("transform_tolerance", 1) is None
    table = params.markdown_table()
    for spec in params.PARAMETERS:
        assert f"| `{spec.name}` |" in table


# ------------------------------------------------------------------ frames and stamps
def test_map_to_odom_composes_back_to_the_camera_pose():
    T_map_cam = _pose([0.1, -0.3, 0.7], [2.0, 1.0, 0.5])
    T_odom_cam = _pose([0.0, 0.2, 0.1], [0.3, -1.0, 0.4])
    T_map_odom = map_to_odom(T_map_cam, T_odom_cam)
    assert np.allclose(T_map_odom @ T_odom_cam, T_map_cam, atol=1e-12)
    # Relative motion previous -> current camera.
    T_prev, T_cur = _pose([0, 0, 0.1], [0, 0, 0]), _pose([0, 0, 0.3], [1, 0, 0])
    M = relative_motion(T_prev, T_cur)
    assert np.allclose(T_cur @ M, T_prev)


def test_stamps_are_future_dated_and_never_repeat():
    seq = StampSequencer()
    s1 = seq.next(now_ns=1_000_000_000, image_stamp_ns=900_000_000, tolerance_s=0.2)
    assert s1 == 1_200_000_000
    assert seq.next(now_ns=1_000_000_000, image_stamp_ns=900_000_000, tolerance_s=0.2) is None  # same clock
    s2 = seq.next(now_ns=1_050_000_000, image_stamp_ns=900_000_000, tolerance_s=0.2)
    assert s2 == 1_250_000_000 > s1
    # An image stamped ahead of the clock (another host) still gets stamp >= image + tolerance.
    assert seq.next(now_ns=1_060_000_000, image_stamp_ns=2_000_000_000, tolerance_s=0.2) == 2_200_000_000


def test_covariance_checks():
    assert covariance_is_well_formed(np.diag([1e-4] * 3 + [1e-5] * 3))
    assert not covariance_is_well_formed(None)
    assert not covariance_is_well_formed(np.eye(5))
    bad = np.eye(6)
    bad[0, 1] = 0.5  # not symmetric
    assert not covariance_is_well_formed(bad)
    assert not covariance_is_well_formed(-np.eye(6))
    assert not covariance_is_well_formed(np.full((6, 6), np.nan))


def test_initial_pose_gate_refuses_far_poses_until_one_is_near():
    gate = InitialPoseGate()
    gate.set(x=1.0, y=2.0, cov_xx=0.01, cov_yy=0.01, min_radius=1.0)
    assert "from /initialpose" in gate.check(_pose([0, 0, 0], [5.0, 2.0, 0.0]))
    assert gate.active
    assert gate.check(_pose([0, 0, 0], [1.5, 2.2, 1.0])) is None
    assert not gate.active and gate.check(_pose([0, 0, 0], [50.0, 0, 0])) is None
    gate.set(0, 0, cov_xx=4.0, cov_yy=1.0, min_radius=1.0)  # 3 sigma = 6 m > 1 m
    assert gate.radius == pytest.approx(6.0)
    gate.set(0, 0, 1.0, 1.0, min_radius=0.0)
    assert not gate.active


# ------------------------------------------------------------------ queue of one
def test_slot_keeps_only_the_newest_item_and_counts_replacements():
    slot = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(timeout=0.1) == 4
    assert slot.received == 5 and slot.replaced == 4
    assert slot.take(timeout=0.01) is None


def test_slot_wakes_a_waiting_worker_and_close_releases_it():
    slot = LatestSlot()
    got = []
    worker = threading.Thread(target=lambda: got.append(slot.take(timeout=5.0)))
    worker.start()
    time.sleep(0.05)
    slot.put("frame")
    worker.join(timeout=2.0)
    assert got == ["frame"]
    waiter = threading.Thread(target=lambda: got.append(slot.take(timeout=5.0)))
    waiter.start()
    slot.close()
    waiter.join(timeout=2.0)
    assert not waiter.is_alive() and got[-1] is None


# ------------------------------------------------------------------ camera model
def _info(K, D=(), P=None, w=96, h=64, frame="cam"):
    P = np.hstack([np.asarray(K, float).reshape(3, 3), np.zeros((3, 1))]) if P is None else np.asarray(P)
    return SimpleNamespace(k=np.asarray(K, float).reshape(-1), d=np.asarray(D, float), p=P.reshape(-1),
                           r=np.eye(3).reshape(-1), width=w, height=h, header=SimpleNamespace(frame_id=frame))


def test_rectified_images_use_P_and_raw_images_are_undistorted():
    K = np.array([[80.0, 0, 48], [0, 80.0, 32], [0, 0, 1]])
    P = np.array([[70.0, 0, 47, 0], [0, 70.0, 31, 0], [0, 0, 1, 0]])
    img = textured_image(64, 96, 1)
    rect = CameraModel(_info(K, D=[0.1, 0, 0, 0, 0], P=P), rectified=True)
    out, K_used = rect.prepare(img)
    assert np.array_equal(out, img) and np.allclose(K_used, P[:, :3])
    D = np.array([-0.2, 0.05, 0.0, 0.0, 0.0])
    raw = CameraModel(_info(K, D=D), rectified=False)
    out, K_used = raw.prepare(img)
    assert np.allclose(K_used, K)
    assert np.allclose(out, cv2.undistort(img, K, D), atol=2)  # remap vs undistort: rounding only
    assert not np.array_equal(out, img)
    with pytest.raises(ImageDecodeError, match="image is 48x32 but camera_info describes 96x64"):
        raw.prepare(img[:32, :48])
    with pytest.raises(ImageDecodeError, match="unusable K"):
        CameraModel(_info(np.zeros((3, 3))), rectified=True)
    assert raw.matches(_info(K, D=D), False) and not raw.matches(_info(K, D=D * 2), False)


# ------------------------------------------------------------------ diagnostics
def test_diagnostics_verdicts():
    stats = NodeStats()
    v = stats.verdict(False, "", "single", "tf2_msgs", 0, no_image_timeout=2.0)
    assert v.level == ERROR and "no map loaded" in v.message
    stats.image_arrived()
    stats.frame_done("localized", 300, 0.6, 50.0)
    v = stats.verdict(True, "m.safetensors", "single", "tf2_msgs", 3, no_image_timeout=2.0)
    assert v.level == OK and v.values["inliers"] == "300" and v.values["frames_dropped_newer_arrived"] == "3"
    later = time.monotonic() + 10.0
    v = stats.verdict(True, "m.safetensors", "single", "tf2_msgs", 3, no_image_timeout=2.0, now=later)
    assert v.level == WARN and v.message.startswith("no image for 10.")
    stats.frame_done("lost: only 3 inliers", 3, 0.01, 40.0)
    v = stats.verdict(True, "m", "single", "off", 0, no_image_timeout=2.0)
    assert v.level == WARN and "only 3 inliers" in v.message


# ------------------------------------------------------------------ engine
class _FakeReloc:
    """A relocalization.Localizer that always answers ``result``."""

    def __init__(self, result):
        self.result = result

    def localize(self, image, K, *, stamp=None, relative_motion=None):
        return self.result

    def reset(self):
        pass

    def describe(self):
        return {}


def test_engine_never_passes_on_a_pose_without_a_well_formed_covariance():
    engine = LocalizationEngine(EngineSettings())
    img, K = np.zeros((32, 32, 3), np.uint8), np.eye(3)
    assert engine.localize(img, K).message == "no map loaded"
    engine._reloc = _FakeReloc(RelocResult(status="localized", pose_c2w=np.eye(4), covariance=None, num_inliers=80))
    res = engine.localize(img, K)
    assert res.status == "lost" and "covariance" in res.message
    good = RelocResult(status="localized", pose_c2w=np.eye(4), covariance=np.eye(6) * 1e-4, num_inliers=80)
    engine._reloc = _FakeReloc(good)
    assert engine.localize(img, K) is good


def test_engine_passes_image_height_to_the_relocalizer_only_when_set():
    assert LocalizationEngine(EngineSettings())._config().image_height is None
    cfg = LocalizationEngine(EngineSettings(num_cells=700, image_height=384))._config()
    assert (cfg.num_cells, cfg.image_height) == (700, 384)


def test_engine_refuses_missing_or_broken_map_files(tmp_path):
    engine = LocalizationEngine(EngineSettings())
    with pytest.raises(EngineError, match="does not exist"):
        engine.load(str(tmp_path / "none.safetensors"))
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(EngineError, match="cannot load map"):
        engine.load(str(broken))
    assert not engine.ready


# ------------------------------------------------------------------ odometry
def test_odometry_frame_comes_from_the_parameter_or_the_first_accepted_message():
    odom = OdometryState()
    assert odom.frame("") is None and odom.frame("/odom") == "odom"
    assert odom.message_problem("wheel_odom", "base", [0, 0, 0], [0, 0, 0, 1], "map", "") is None
    odom.accepted("wheel_odom", "base", 5)
    assert odom.frame("") == "wheel_odom"
    # Later messages must use that frame (the parameter, when set, wins).
    assert "first accepted message" in odom.message_problem("other", "base", [0, 0, 0], [0, 0, 0, 1], "map", "")
    assert "odom_frame parameter" in odom.message_problem("wheel_odom", "base", [0, 0, 0], [0, 0, 0, 1],
                                                          "map", "odom")
    odom.reset()
    assert odom.frame("") is None


@pytest.mark.parametrize("frame, child, position, quat, why", [
    ("", "base", [0, 0, 0], [0, 0, 0, 1], "distinct and non-empty"),
    ("odom", "odom", [0, 0, 0], [0, 0, 0, 1], "distinct and non-empty"),
    ("map", "base", [0, 0, 0], [0, 0, 0, 1], "map frame"),
    ("odom", "map", [0, 0, 0], [0, 0, 0, 1], "map frame"),
    ("odom", "base", [np.nan, 0, 0], [0, 0, 0, 1], "not finite"),
    ("odom", "base", [0, 0, 0], [0, 0, 0, np.inf], "not finite"),
    ("odom", "base", [0, 0, 0], [0, 0, 0, 2], "unit quaternion"),
])
def test_odometry_messages_that_cannot_be_used_are_refused_with_the_reason(frame, child, position, quat, why):
    assert why in OdometryState().message_problem(frame, child, position, quat, "map", "")


def test_odometry_motion_chains_images_and_breaks_where_odometry_is_missing():
    odom = OdometryState()
    T1, T2, T3 = _pose([0, 0, 0.1], [1, 0, 0]), _pose([0, 0, 0.2], [1.1, 0, 0]), _pose([0, 0, 0.3], [1.2, 0, 0])
    assert odom.motion(T1) is None  # the first image has no predecessor
    assert np.allclose(odom.motion(T2), relative_motion(T1, T2))
    assert odom.motion(None) is None  # no odom -> camera for this image
    assert odom.motion(T3) is None  # ...so the next has no predecessor either
    odom.break_chain()  # a reset or a refused pose
    assert odom.motion(T1) is None
    assert np.allclose(odom.motion(T2), relative_motion(T1, T2))


def test_odometry_summary_says_where_it_comes_from_and_how_old_it_is():
    odom = OdometryState()
    assert odom.summary("", "", 0) == "none"
    assert odom.summary("/odom", "", 0) == "topic /odom: no message yet"
    odom.accepted("odom", "base_link", 1_000_000_000)
    assert odom.summary("/odom", "odom", 3_500_000_000) == ("topic /odom: odom -> base_link, last stamp 2.50 s old; "
                                                          "TF odom -> camera")
