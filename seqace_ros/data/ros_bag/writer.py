"""Write posed frames (a scene folder split, a synthetic scene) as a ROS 2 bag with rosbags.

The bag looks like a robot's recording: images (raw bgr8 or CompressedImage), CameraInfo, and the
TF tree map -> odom -> base_link -> camera_optical_frame (map -> odom and odom -> base_link on
/tf at every image stamp, the camera mount on /tf_static), so that ``build_map`` and the node can
be tried without a robot, and so that the bag reader is tested on a bag with a real TF chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from ...geometry import invert_pose, matrix_to_quaternion_xyzw, rotvec_to_matrix
from ..scene_folder import SceneFrame

NS = 1_000_000_000


@dataclass
class BagLayout:
    """Topic and frame names of a written bag (the same defaults the node's config uses)."""

    image_topic: str = "/camera/image_raw"
    camera_info_topic: str = "/camera/camera_info"
    map_frame: str = "map"
    odom_frame: str = "odom"
    base_frame: str = "base_link"
    camera_frame: str = "camera_optical_frame"


def default_camera_mount() -> np.ndarray:
    """T_base_camera of a forward-looking camera 0.2 m ahead and 0.3 m above base_link (REP-103 base,
    optical camera: z forward, x right, y down)."""
    T = np.eye(4)
    T[:3, :3] = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    T[:3, 3] = [0.2, 0.0, 0.3]
    return T


def default_map_to_odom() -> np.ndarray:
    """A non-trivial map -> odom offset (odometry drift), so readers must compose the chain."""
    T = np.eye(4)
    T[:3, :3] = rotvec_to_matrix([0.0, 0.0, 0.3])
    T[:3, 3] = [0.5, -0.25, 0.0]
    return T


def _time(ts, stamp_ns: int):
    Time = ts.types["builtin_interfaces/msg/Time"]
    return Time(sec=int(stamp_ns // NS), nanosec=int(stamp_ns % NS))


def _header(ts, stamp_ns: int, frame_id: str):
    return ts.types["std_msgs/msg/Header"](stamp=_time(ts, stamp_ns), frame_id=frame_id)


def _transform_msg(ts, stamp_ns: int, parent: str, child: str, T: np.ndarray):
    t = ts.types
    q = matrix_to_quaternion_xyzw(T[:3, :3])
    return t["geometry_msgs/msg/TransformStamped"](
        header=_header(ts, stamp_ns, parent), child_frame_id=child,
        transform=t["geometry_msgs/msg/Transform"](
            translation=t["geometry_msgs/msg/Vector3"](x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
            rotation=t["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))))


def _camera_info_msg(ts, stamp_ns: int, frame: str, K: np.ndarray, width: int, height: int):
    t = ts.types
    P = np.zeros((3, 4))
    P[:, :3] = K
    return t["sensor_msgs/msg/CameraInfo"](
        header=_header(ts, stamp_ns, frame), height=height, width=width, distortion_model="plumb_bob",
        d=np.zeros(5), k=K.reshape(-1).astype(np.float64), r=np.eye(3).reshape(-1), p=P.reshape(-1),
        binning_x=0, binning_y=0,
        roi=t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def _image_msg(ts, stamp_ns: int, frame: str, frame_src: SceneFrame, compressed: bool):
    t = ts.types
    header = _header(ts, stamp_ns, frame)
    if compressed and frame_src.image_path is not None and frame_src.image_path.suffix.lower() in (".jpg", ".jpeg", ".png"):
        # Keep the file's own bytes: the bag holds exactly the images the folder holds.
        data = np.fromfile(str(frame_src.image_path), dtype=np.uint8)
        fmt = "png" if frame_src.image_path.suffix.lower() == ".png" else "jpeg"
        image = None
    else:
        image = frame_src.load_image()
        if compressed:
            ok, enc = cv2.imencode(".png", image)
            data, fmt = enc.reshape(-1), "png"
    if compressed:
        return t["sensor_msgs/msg/CompressedImage"](header=header, format=fmt, data=data), image
    return t["sensor_msgs/msg/Image"](
        header=header, height=image.shape[0], width=image.shape[1], encoding="bgr8", is_bigendian=0,
        step=image.shape[1] * 3, data=np.ascontiguousarray(image).reshape(-1)), image


def _image_size(frame: SceneFrame, image: np.ndarray | None) -> tuple[int, int]:
    if image is None:
        image = frame.load_image()
    return image.shape[1], image.shape[0]


def write_scene_bag(
    frames: Iterable[SceneFrame],
    out: str | Path,
    *,
    storage: str = "mcap",
    compressed: bool = False,
    rate_hz: float = 10.0,
    start_time_s: float = 1_700_000_000.0,
    layout: BagLayout | None = None,
    camera_mount: np.ndarray | None = None,
    map_to_odom: np.ndarray | None = None,
) -> Path:
    """Write ``frames`` as a bag at ``out`` (a folder, created; must not exist) and return its path.

    Frames are stamped ``start_time_s + i / rate_hz``. ``compressed`` writes
    ``<image_topic>/compressed`` (a folder's JPEG/PNG files are copied byte for byte, rendered
    images are PNG-encoded, i.e. lossless); otherwise raw bgr8 images.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    layout = layout or BagLayout()
    frames = list(frames)
    if not frames:
        raise ValueError("no frames to write: the bag would be empty")
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; rosbag2 writes a new folder: remove it or choose another name")
    if storage not in ("mcap", "sqlite3"):
        raise ValueError(f"storage {storage!r}: expected 'mcap' or 'sqlite3'")
    if rate_hz <= 0:
        raise ValueError(f"rate_hz must be positive, got {rate_hz}")
    ts = get_typestore(Stores.ROS2_KILTED)
    T_base_cam = default_camera_mount() if camera_mount is None else np.asarray(camera_mount, float)
    T_map_odom = default_map_to_odom() if map_to_odom is None else np.asarray(map_to_odom, float)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    image_topic = layout.image_topic + ("/compressed" if compressed else "")
    image_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    start_ns = int(round(start_time_s * NS))
    step_ns = int(round(NS / rate_hz))
    with Writer(out, version=9, storage_plugin=plugin) as writer:
        c_img = writer.add_connection(image_topic, image_type, typestore=ts)
        c_info = writer.add_connection(layout.camera_info_topic, "sensor_msgs/msg/CameraInfo", typestore=ts)
        c_tf = writer.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=ts)
        c_static = writer.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=ts)
        TFMessage = ts.types["tf2_msgs/msg/TFMessage"]
        static = TFMessage(transforms=[_transform_msg(ts, start_ns, layout.base_frame, layout.camera_frame, T_base_cam)])
        writer.write(c_static, start_ns, ts.serialize_cdr(static, "tf2_msgs/msg/TFMessage"))
        for i, frame in enumerate(frames):
            stamp = start_ns + i * step_ns
            T_map_cam = np.asarray(frame.pose_c2w, dtype=np.float64)
            T_odom_base = invert_pose(T_map_odom) @ T_map_cam @ invert_pose(T_base_cam)
            tf = TFMessage(transforms=[
                _transform_msg(ts, stamp, layout.map_frame, layout.odom_frame, T_map_odom),
                _transform_msg(ts, stamp, layout.odom_frame, layout.base_frame, T_odom_base)])
            writer.write(c_tf, stamp, ts.serialize_cdr(tf, "tf2_msgs/msg/TFMessage"))
            img_msg, image = _image_msg(ts, stamp, layout.camera_frame, frame, compressed)
            width, height = _image_size(frame, image)
            K = frame.intrinsics(width, height)
            writer.write(c_info, stamp, ts.serialize_cdr(
                _camera_info_msg(ts, stamp, layout.camera_frame, K, width, height), "sensor_msgs/msg/CameraInfo"))
            writer.write(c_img, stamp, ts.serialize_cdr(img_msg, image_type))
    return out
