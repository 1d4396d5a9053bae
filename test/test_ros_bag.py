"""ROS 2 bags with rosbags (no ROS install needed): writing scenes, reading posed frames back,
the TF buffer's interpolation, image message decoding, and the errors for unusable bags."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from conftest import textured_image
from seqace_ros.data.ros_bag import (BagError, ImageDecodeError, TransformBuffer, TransformLookupError,
                                     image_msg_to_bgr, read_bag_frames, write_scene_bag)
from seqace_ros.image_msgs import compressed_msg_to_bgr, image_to_raw_fields
from seqace_ros.transform_buffer import interpolate_pose
from seqace_ros.data.scene_folder import SceneFrame
from seqace_ros.geometry import pose_errors, rotvec_to_matrix


def _pose(rv, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = rotvec_to_matrix(rv)
    T[:3, 3] = t
    return T


def _frames(n: int = 6, h: int = 64, w: int = 96) -> list[SceneFrame]:
    frames = []
    for i in range(n):
        img = textured_image(h, w, seed=i)
        frames.append(SceneFrame(image_path=None, pose_c2w=_pose([0.1, 0.2 * i, 0.05], [0.3 * i, -0.1, 1.0 + 0.05 * i]),
                                 calibration=np.array([[80.0, 0, 47.5], [0, 80.0, 31.5], [0, 0, 1]]),
                                 name=f"f{i}", loader=lambda img=img: img))
    return frames


@pytest.mark.parametrize("storage,compressed", [("mcap", False), ("sqlite3", True)])
def test_written_bag_reads_back_with_exact_poses_images_and_intrinsics(tmp_path, storage, compressed):
    frames = _frames()
    bag = write_scene_bag(frames, tmp_path / "bag", storage=storage, compressed=compressed)
    read, summary = read_bag_frames(bag)
    assert len(read) == len(frames) and summary.frames_used == len(frames)
    assert summary.compressed == compressed and summary.image_size == (96, 64)
    assert summary.camera_frame == "camera_optical_frame" and not summary.skipped
    for a, b in zip(read, frames):
        t_err, r_err = pose_errors(a.pose_c2w, b.pose_c2w)
        # The pose goes through map -> odom -> base_link -> camera (three transforms composed).
        assert t_err < 1e-9 and r_err < 1e-6
        assert np.allclose(a.calibration, b.calibration)
        assert np.array_equal(a.load_image(), b.load_image())  # raw bgr8 and PNG are both lossless


def test_pose_topic_with_extrinsic_gives_camera_poses(tmp_path):
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    t = ts.types
    body_to_cam = _pose([0.0, 0.0, 0.3], [0.1, 0.0, 0.2])
    frames = _frames(4)
    bag = tmp_path / "posebag"
    with Writer(bag, version=9) as w:
        c_img = w.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=ts)
        c_pose = w.add_connection("/robot/pose", "geometry_msgs/msg/PoseStamped", typestore=ts)
        for i, f in enumerate(frames):
            stamp = t["builtin_interfaces/msg/Time"](sec=100 + i, nanosec=0)
            T_body = f.pose_c2w @ np.linalg.inv(body_to_cam)
            from seqace_ros.geometry import matrix_to_quaternion_xyzw
            q = matrix_to_quaternion_xyzw(T_body[:3, :3])
            pose = t["geometry_msgs/msg/Pose"](
                position=t["geometry_msgs/msg/Point"](x=T_body[0, 3], y=T_body[1, 3], z=T_body[2, 3]),
                orientation=t["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))
            hdr = t["std_msgs/msg/Header"](stamp=stamp, frame_id="world")
            w.write(c_pose, (100 + i) * 10**9, ts.serialize_cdr(t["geometry_msgs/msg/PoseStamped"](header=hdr, pose=pose),
                                                                 "geometry_msgs/msg/PoseStamped"))
            img = f.load_image()
            msg = t["sensor_msgs/msg/Image"](header=t["std_msgs/msg/Header"](stamp=stamp, frame_id="cam"),
                                             **{**image_to_raw_fields(img), "data": img.reshape(-1)})
            w.write(c_img, (100 + i) * 10**9, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    from seqace_ros.geometry import matrix_to_quaternion_xyzw
    q = matrix_to_quaternion_xyzw(body_to_cam[:3, :3])
    extrinsic = [*body_to_cam[:3, 3], *q]
    read, summary = read_bag_frames(bag, pose_topic="/robot/pose", camera_extrinsic=extrinsic,
                                    camera_matrix=frames[0].calibration)
    assert len(read) == 4 and summary.map_frame == "world"
    for a, b in zip(read, frames):
        t_err, r_err = pose_errors(a.pose_c2w, b.pose_c2w)
        assert t_err < 1e-6 and r_err < 1e-4


def test_images_between_tf_stamps_get_interpolated_poses():
    buf = TransformBuffer()
    T0, T1 = _pose([0, 0, 0], [0, 0, 0]), _pose([0, 0, 0.4], [1.0, 2.0, 0])
    buf.add("map", "base", 10.0, T0)
    buf.add("map", "base", 11.0, T1)
    buf.add("base", "cam", 0.0, _pose([0, 0, 0], [0.5, 0, 0]), static=True)
    mid = buf.lookup("map", "cam", 10.5)
    expected = interpolate_pose(T0, T1, 0.5) @ _pose([0, 0, 0], [0.5, 0, 0])
    assert np.allclose(mid, expected)
    assert np.allclose(mid[:3, :3], rotvec_to_matrix([0, 0, 0.2]))  # half the rotation
    # The inverse direction and an unrelated frame.
    assert np.allclose(buf.lookup("cam", "map", 10.5), np.linalg.inv(expected))
    with pytest.raises(TransformLookupError, match="extrapolation"):
        buf.lookup("map", "cam", 12.0)
    buf.add("other_root", "x", 10.0, np.eye(4))
    with pytest.raises(TransformLookupError, match="not connected"):
        buf.lookup("map", "x", 10.5)
    with pytest.raises(TransformLookupError, match="not in the transform tree"):
        buf.lookup("map", "nope", 10.5)


def test_buffer_history_is_bounded():
    buf = TransformBuffer(history_s=1.0)
    for i in range(100):
        buf.add("odom", "base", i * 0.1, np.eye(4))
    lo, hi = buf.time_range("base")
    assert hi == pytest.approx(9.9) and hi - lo <= 1.0 + 1e-9


def test_not_a_bag_missing_topics_and_no_overlap_are_clear_errors(tmp_path):
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"this is not a bag")
    with pytest.raises(BagError, match="not a readable ROS 2 bag"):
        read_bag_frames(junk)
    with pytest.raises(BagError, match="no such bag"):
        read_bag_frames(tmp_path / "missing")
    bag = write_scene_bag(_frames(3), tmp_path / "bag")
    with pytest.raises(BagError, match=r"/nope is not in the bag; it holds: .*/camera/image_raw"):
        read_bag_frames(bag, image_topic="/nope")
    with pytest.raises(BagError, match="pose topic .* not in the bag"):
        read_bag_frames(bag, pose_topic="/odom")
    # A TF tree that does not contain the requested map frame.
    with pytest.raises(BagError, match=r"none of the 3 images .* has a pose.*--map-frame \(world\)"):
        read_bag_frames(bag, map_frame="world")


def test_images_outside_the_pose_time_range_are_refused_before_training(tmp_path):
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    t = ts.types
    bag = tmp_path / "late"
    with Writer(bag, version=9) as w:
        c_img = w.add_connection("/cam/image", "sensor_msgs/msg/Image", typestore=ts)
        c_info = w.add_connection("/cam/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts)
        c_tf = w.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=ts)
        Time = t["builtin_interfaces/msg/Time"]
        for i in range(3):  # poses at 10..12 s, images at 50..52 s
            tf = t["geometry_msgs/msg/TransformStamped"](
                header=t["std_msgs/msg/Header"](stamp=Time(sec=10 + i, nanosec=0), frame_id="map"),
                child_frame_id="cam",
                transform=t["geometry_msgs/msg/Transform"](translation=t["geometry_msgs/msg/Vector3"](x=i, y=0, z=0),
                                                           rotation=t["geometry_msgs/msg/Quaternion"](x=0, y=0, z=0, w=1)))
            w.write(c_tf, (10 + i) * 10**9, ts.serialize_cdr(t["tf2_msgs/msg/TFMessage"](transforms=[tf]),
                                                             "tf2_msgs/msg/TFMessage"))
        img = textured_image(32, 48, 0)
        for i in range(3):
            hdr = t["std_msgs/msg/Header"](stamp=Time(sec=50 + i, nanosec=0), frame_id="cam")
            info = t["sensor_msgs/msg/CameraInfo"](
                header=hdr, height=32, width=48, distortion_model="", d=np.zeros(0), k=np.array([40.0, 0, 24, 0, 40, 16, 0, 0, 1]),
                r=np.eye(3).reshape(-1), p=np.zeros(12), binning_x=0, binning_y=0,
                roi=t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
            w.write(c_info, (50 + i) * 10**9, ts.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
            msg = t["sensor_msgs/msg/Image"](header=hdr, **{**image_to_raw_fields(img), "data": img.reshape(-1)})
            w.write(c_img, (50 + i) * 10**9, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    with pytest.raises(BagError, match=r"no pose at the image stamp.*Images span 50.000-52.000 s.*cam: 10.000-12.000 s"):
        read_bag_frames(bag)
    # Allowing extrapolation by the gap makes them usable (nearest pose).
    frames, summary = read_bag_frames(bag, max_tf_extrapolation_s=40.0)
    assert len(frames) == 3 and np.allclose(frames[0].pose_c2w[:3, 3], [2, 0, 0])


def _msg(img: np.ndarray, encoding: str, **over):
    fields = image_to_raw_fields(img, encoding)
    fields.update(over)
    return SimpleNamespace(**fields)


def test_image_encodings_decode_to_the_same_bgr_image():
    bgr = textured_image(24, 40, 3)
    bgr[..., 2] = 255 - bgr[..., 0]  # make the channels differ
    assert np.array_equal(image_msg_to_bgr(_msg(bgr, "bgr8")), bgr)
    assert np.array_equal(image_msg_to_bgr(_msg(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), "rgb8")), bgr)
    assert np.array_equal(image_msg_to_bgr(_msg(cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), "bgra8")), bgr)
    gray = bgr[..., 0].copy()
    out = image_msg_to_bgr(_msg(gray, "mono8"))
    assert out.shape == (24, 40, 3) and np.array_equal(out[..., 1], gray)
    # Padded rows (step > width * channels) are cropped.
    padded = np.zeros((24, 128), np.uint8)
    padded[:, :120] = bgr.reshape(24, 120)
    assert np.array_equal(image_msg_to_bgr(SimpleNamespace(height=24, width=40, encoding="bgr8", is_bigendian=0,
                                                           step=128, data=padded.tobytes())), bgr)
    # 16-bit, big-endian: scaled by its maximum.
    mono16 = (gray.astype(np.uint16) * 200)
    msg = SimpleNamespace(height=24, width=40, encoding="mono16", is_bigendian=1, step=80,
                          data=mono16.astype(">u2").tobytes())
    out16 = image_msg_to_bgr(msg)[..., 0].astype(int)
    assert np.abs(out16 - (mono16 * 255.0 / mono16.max()).astype(int)).max() <= 1


def test_bad_image_messages_are_refused_with_the_reason():
    bgr = textured_image(24, 40, 3)
    with pytest.raises(ImageDecodeError, match="unsupported image encoding '32FC1'"):
        image_msg_to_bgr(_msg(bgr, "32FC1"))
    with pytest.raises(ImageDecodeError, match="truncated or mislabelled"):
        image_msg_to_bgr(_msg(bgr, "bgr8", data=bgr.tobytes()[:100]))
    with pytest.raises(ImageDecodeError, match="step 10 is smaller"):
        image_msg_to_bgr(_msg(bgr, "bgr8", step=10))
    with pytest.raises(ImageDecodeError, match="size 0x24"):
        image_msg_to_bgr(_msg(bgr, "bgr8", width=0))
    with pytest.raises(ImageDecodeError, match="cannot decode compressed image"):
        compressed_msg_to_bgr(SimpleNamespace(format="jpeg", data=b"\xff\xd8garbage"))
    ok, png = cv2.imencode(".png", bgr)
    assert np.array_equal(compressed_msg_to_bgr(SimpleNamespace(format="png", data=png.tobytes())), bgr)


def test_build_map_command_helpers():
    from seqace_ros.ros.build_map import default_output, split_global_options, strip_ros_args

    assert default_output("/data/run1/") == "maps/run1.safetensors"
    assert default_output("rec.mcap") == "maps/rec.safetensors"
    assert strip_ros_args(["bag", "--ros-args", "-r", "__node:=x", "--", "--stride", "2"]) == ["bag", "--stride", "2"]
    assert split_global_options(["bag", "-q", "--threads", "2", "--stride", "3"]) == (
        ["-q", "--threads", "2"], ["bag", "--stride", "3"])


@pytest.mark.slow
def test_build_map_from_bag_trains_and_records_the_bag_summary(tmp_path):
    from seqace_ros.bag_mapping import build_map_from_bag
    from seqace_ros.mapfile import load_map
    from seqace_ros.mapping import MappingConfig

    bag = write_scene_bag(_frames(6, h=96, w=128), tmp_path / "bag", compressed=True)
    config = MappingConfig(image_height=96, head_width=32, head_blocks=1, buffer_size=3000, samples_per_view=200,
                           iterations=5, batch_size=256, augment=False, device="cpu", num_threads=1)
    out = tmp_path / "map.safetensors"
    build_map_from_bag(bag, config, out, progress=False, stride=2)
    source = load_map(out).metadata["source"]
    assert source["type"] == "ros2_bag" and source["frames_used"] == 3 and source["images_in_bag"] == 6
    assert source["image_topic"] == "/camera/image_raw/compressed" and source["image_size"] == [128, 96]
