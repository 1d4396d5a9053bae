"""Posed frames from a ROS 2 bag (sqlite3 or mcap, read with rosbags; no ROS install needed).

Images come from one sensor_msgs/Image or CompressedImage topic, intrinsics from CameraInfo,
camera poses from the TF tree (a chain from the map frame to the camera frame, interpolated at
each image stamp) or from a pose topic (PoseStamped, PoseWithCovarianceStamped, Odometry,
TransformStamped) plus the body -> camera extrinsic (from /tf_static or given).
Everything is checked before any training starts: a missing topic, a bag that is not a bag, or
images and poses that never overlap in time are errors that say what the bag does contain.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ...errors import SeqaceError
from ...geometry import project_to_so3, quaternion_xyzw_to_matrix
from ..scene_folder import SceneFrame
from ...image_msgs import ImageDecodeError, camera_info_to_intrinsics, compressed_msg_to_bgr, image_msg_to_bgr
from ...transform_buffer import TransformBuffer, TransformLookupError

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TF_TYPE = "tf2_msgs/msg/TFMessage"
POSE_TYPES = ("geometry_msgs/msg/PoseStamped", "geometry_msgs/msg/PoseWithCovarianceStamped",
              "nav_msgs/msg/Odometry", "geometry_msgs/msg/TransformStamped")


class BagError(SeqaceError, ValueError):
    """A bag that cannot be turned into posed frames; the message says what is missing and what exists."""


@dataclass
class BagReadSummary:
    """What was used from a bag and what was skipped (printed by build_map, stored in the map)."""

    bag: str
    image_topic: str
    compressed: bool
    camera_info_topic: str | None
    pose_source: str
    map_frame: str
    camera_frame: str
    images_in_bag: int = 0
    frames_used: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    image_size: tuple[int, int] | None = None  # (width, height)
    undistorted: bool = False
    time_range_s: tuple[float, float] | None = None

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    def format(self) -> str:
        lines = [
            f"bag            {self.bag}",
            f"images         {self.image_topic} ({'compressed' if self.compressed else 'raw'}), "
            f"{self.images_in_bag} messages, {self.frames_used} used",
            f"intrinsics     {self.camera_info_topic or 'given on the command line'}"
            + (" (images undistorted)" if self.undistorted else ""),
            f"poses          {self.pose_source}: {self.map_frame} <- {self.camera_frame}",
        ]
        if self.image_size:
            lines.append(f"image size     {self.image_size[0]}x{self.image_size[1]}")
        for reason, count in sorted(self.skipped.items()):
            lines.append(f"skipped        {count:6d}  {reason}")
        return "\n".join(lines)


def stamp_seconds(stamp) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def transform_to_matrix(translation, rotation) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = quaternion_xyzw_to_matrix([rotation.x, rotation.y, rotation.z, rotation.w])
    T[:3, 3] = [translation.x, translation.y, translation.z]
    return T


def parse_extrinsic(values: list[float] | str | np.ndarray) -> np.ndarray:
    """A body -> camera extrinsic given as 'x y z qx qy qz qw' (7 numbers) or a 4x4 matrix."""
    if isinstance(values, str):
        values = [float(v) for v in values.replace(",", " ").split()]
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape == (4, 4):
        return arr
    if arr.size != 7 or abs(np.linalg.norm(arr[3:]) - 1.0) > 1e-3:
        raise BagError(f"camera extrinsic {arr.tolist()}: expected 'x y z qx qy qz qw' with a unit quaternion")
    T = np.eye(4)
    T[:3, :3] = quaternion_xyzw_to_matrix(arr[3:])
    T[:3, 3] = arr[:3]
    return T


def _open_reader(bag_path: Path):
    from rosbags.highlevel import AnyReader

    if not bag_path.exists():
        raise BagError(f"{bag_path}: no such bag (give the bag folder with metadata.yaml, or an .mcap/.db3 file)")
    try:
        reader = AnyReader([bag_path])
        reader.open()
    except Exception as exc:  # rosbags raises several reader errors for non-bags
        raise BagError(f"{bag_path}: not a readable ROS 2 bag ({type(exc).__name__}: {exc}); "
                       "expected a rosbag2 folder (sqlite3 or mcap) or a single .mcap file") from exc
    return reader


def _describe_topics(reader) -> str:
    return ", ".join(f"{c.topic} [{c.msgtype}]" for c in reader.connections) or "no topics"


def _pick_topic(reader, wanted: str | None, types: tuple[str, ...], what: str) -> tuple[str, str]:
    by_topic = {c.topic: c.msgtype for c in reader.connections}
    if wanted and wanted not in by_topic and by_topic.get(wanted + "/compressed") in types:
        wanted += "/compressed"  # the base name of an image_transport topic
    if wanted:
        if wanted not in by_topic:
            raise BagError(f"{what} topic {wanted} is not in the bag; it holds: {_describe_topics(reader)}")
        if by_topic[wanted] not in types:
            raise BagError(f"{what} topic {wanted} has type {by_topic[wanted]}; expected one of {', '.join(types)}")
        return wanted, by_topic[wanted]
    found = sorted((t, m) for t, m in by_topic.items() if m in types)
    if len(found) == 1:
        return found[0]
    if not found:
        raise BagError(f"the bag has no {what} topic ({', '.join(types)}); it holds: {_describe_topics(reader)}")
    raise BagError(f"the bag has several {what} topics ({', '.join(t for t, _ in found)}); choose one "
                   f"with --{what.replace(' ', '-')}-topic")


def _camera_info_for(image_topic: str, infos: list[str]) -> str | None:
    """The CameraInfo topic beside an image topic (/cam/image_raw[/compressed] -> /cam/camera_info)."""
    base = image_topic[: -len("/compressed")] if image_topic.endswith("/compressed") else image_topic
    sibling = base.rsplit("/", 1)[0] + "/camera_info"
    if sibling in infos:
        return sibling
    return infos[0] if len(infos) == 1 else None


def _fill_tf(reader, buffer: TransformBuffer) -> int:
    conns = [c for c in reader.connections if c.msgtype == TF_TYPE]
    count = 0
    if not conns:  # rosbags reads every topic when given no connections
        return 0
    for conn, _, raw in reader.messages(connections=conns):
        msg = reader.deserialize(raw, conn.msgtype)
        static = conn.topic.endswith("tf_static")
        for tf in msg.transforms:
            buffer.add(tf.header.frame_id, tf.child_frame_id, stamp_seconds(tf.header.stamp),
                       transform_to_matrix(tf.transform.translation, tf.transform.rotation), static=static)
            count += 1
    return count


def _fill_pose_topic(reader, topic: str, msgtype: str, buffer: TransformBuffer) -> tuple[str, str]:
    """Add a pose topic to the buffer as edges parent -> body; returns (parent frame, body frame)."""
    conns = [c for c in reader.connections if c.topic == topic]
    parent = body = None
    for conn, _, raw in reader.messages(connections=conns):
        msg = reader.deserialize(raw, msgtype)
        if msgtype.endswith("TransformStamped"):
            T = transform_to_matrix(msg.transform.translation, msg.transform.rotation)
            child = msg.child_frame_id
        else:
            pose = msg.pose.pose if msgtype.endswith(("WithCovarianceStamped", "Odometry")) else msg.pose
            T = transform_to_matrix(pose.position, pose.orientation)
            child = getattr(msg, "child_frame_id", "")
        parent = parent or msg.header.frame_id or "map"
        body = body or child or f"{topic.strip('/').replace('/', '_')}_body"
        buffer.add(parent, body, stamp_seconds(msg.header.stamp), T)
    if parent is None:
        raise BagError(f"pose topic {topic} has no messages")
    return parent, body


def read_bag_frames(
    bag_path: str | Path,
    *,
    image_topic: str | None = None,
    camera_info_topic: str | None = None,
    map_frame: str = "map",
    camera_frame: str | None = None,
    pose_topic: str | None = None,
    camera_extrinsic: np.ndarray | list[float] | str | None = None,
    camera_matrix: np.ndarray | None = None,
    stride: int = 1,
    max_frames: int | None = None,
    max_tf_extrapolation_s: float = 0.0,
) -> tuple[list[SceneFrame], BagReadSummary]:
    """Posed frames of a bag, in time order, and a summary of what was used and skipped.

    ``camera_frame`` defaults to the images' header.frame_id. With ``pose_topic`` the poses are of
    that topic's body frame; the camera extrinsic comes from ``camera_extrinsic`` (body -> camera),
    else from the bag's TF when it links the two frames, else the body is taken to be the camera.
    Each frame holds its image message and decodes it on demand (``frame.load_image()``).
    """
    if stride < 1:
        raise BagError(f"stride must be >= 1, got {stride}")
    bag_path = Path(bag_path)
    reader = _open_reader(bag_path)
    try:
        return _read(reader, bag_path, image_topic, camera_info_topic, map_frame, camera_frame, pose_topic,
                     camera_extrinsic, camera_matrix, stride, max_frames, max_tf_extrapolation_s)
    finally:
        reader.close()


def _read(reader, bag_path, image_topic, camera_info_topic, map_frame, camera_frame, pose_topic,
          camera_extrinsic, camera_matrix, stride, max_frames, max_extrapolation):
    image_topic, image_type = _pick_topic(reader, image_topic, (IMAGE_TYPE, COMPRESSED_TYPE), "image")
    compressed = image_type == COMPRESSED_TYPE
    infos = sorted(c.topic for c in reader.connections if c.msgtype == CAMERA_INFO_TYPE)
    if camera_info_topic:
        _pick_topic(reader, camera_info_topic, (CAMERA_INFO_TYPE,), "camera info")
    elif camera_matrix is None:
        camera_info_topic = _camera_info_for(image_topic, infos)
        if camera_info_topic is None:
            raise BagError(
                f"no CameraInfo topic pairs with {image_topic} (CameraInfo topics: {', '.join(infos) or 'none'}); "
                "choose one with --camera-info-topic or give the intrinsics with --camera-matrix")

    buffer = TransformBuffer()
    n_tf = _fill_tf(reader, buffer)
    if pose_topic:
        pose_topic, pose_type = _pick_topic(reader, pose_topic, POSE_TYPES, "pose")
        map_frame, body = _fill_pose_topic(reader, pose_topic, pose_type, buffer)
        pose_source = f"pose topic {pose_topic} [{pose_type}]"
    elif n_tf == 0:
        raise BagError(f"the bag has no /tf or /tf_static messages and no pose topic was given; it holds: "
                       f"{_describe_topics(reader)}. Give --pose-topic for a PoseStamped/Odometry topic")
    else:
        body = None
        pose_source = "TF (/tf, /tf_static)"

    # Camera intrinsics: latest CameraInfo at or before each image (they rarely change).
    info_stamps: list[float] = []
    info_values: list[tuple[np.ndarray, np.ndarray, tuple[int, int]]] = []
    if camera_info_topic and camera_matrix is None:
        conns = [c for c in reader.connections if c.topic == camera_info_topic]
        for conn, t_ns, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            try:
                info_values.append(camera_info_to_intrinsics(msg))
            except ImageDecodeError as exc:
                raise BagError(f"{camera_info_topic}: {exc}") from exc
            info_stamps.append(stamp_seconds(msg.header.stamp) or t_ns * 1e-9)
        if not info_values:
            raise BagError(f"camera info topic {camera_info_topic} has no messages")

    image_conns = [c for c in reader.connections if c.topic == image_topic]
    skipped: Counter[str] = Counter()
    frames: list[SceneFrame] = []
    summary = BagReadSummary(bag=str(bag_path), image_topic=image_topic, compressed=compressed,
                             camera_info_topic=camera_info_topic if camera_matrix is None else None,
                             pose_source=pose_source, map_frame=map_frame, camera_frame=camera_frame or "")
    extrinsic_added = False
    image_stamps: list[float] = []
    decode = compressed_msg_to_bgr if compressed else image_msg_to_bgr
    for index, (conn, t_ns, raw) in enumerate(reader.messages(connections=image_conns)):
        summary.images_in_bag += 1
        if index % stride:
            continue
        if max_frames is not None and len(frames) >= max_frames:
            skipped["beyond --max-frames"] += 1
            continue
        msg = reader.deserialize(raw, conn.msgtype)
        stamp = stamp_seconds(msg.header.stamp) or t_ns * 1e-9
        image_stamps.append(stamp)
        frame_id = camera_frame or msg.header.frame_id
        if not frame_id:
            raise BagError(f"images on {image_topic} have an empty header.frame_id; give --camera-frame")
        summary.camera_frame = frame_id
        if body is not None and not extrinsic_added:
            extrinsic_added = True
            if camera_extrinsic is not None:
                buffer.add(body, frame_id, 0.0, parse_extrinsic(camera_extrinsic), static=True)
            elif frame_id not in buffer.frames() and body != frame_id:
                # No extrinsic anywhere: the pose topic's body is the camera.
                buffer.add(body, frame_id, 0.0, np.eye(4), static=True)
                summary.pose_source += " (no body -> camera extrinsic: identity)"
        try:
            image = decode(msg)
        except ImageDecodeError as exc:
            skipped[f"undecodable image ({exc})"] += 1
            continue
        height, width = image.shape[:2]
        if camera_matrix is not None:
            K, dist = np.asarray(camera_matrix, dtype=np.float64).reshape(3, 3), np.zeros(0)
        else:
            i = int(np.searchsorted(info_stamps, stamp, side="right")) - 1
            K, dist, size = info_values[max(i, 0)]
            if size != (width, height) and size != (0, 0):
                skipped[f"camera_info size {size[0]}x{size[1]} differs from the image's {width}x{height}"] += 1
                continue
        try:
            T = buffer.lookup(map_frame, frame_id, stamp, max_extrapolation)
        except TransformLookupError as exc:
            reason = str(exc)
            skipped["no pose at the image stamp" if "extrapolation" in reason else f"no pose ({reason})"] += 1
            continue
        T[:3, :3] = project_to_so3(T[:3, :3])
        undistort = bool(np.any(np.abs(dist) > 0))
        summary.undistorted |= undistort
        summary.image_size = (width, height)
        frames.append(SceneFrame(
            image_path=None, pose_c2w=T, calibration=K.copy(),
            name=f"{len(frames):06d}_{msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}",
            loader=_make_loader(msg, decode, K if undistort else None, dist)))

    summary.frames_used = len(frames)
    summary.skipped = dict(skipped)
    if image_stamps:
        summary.time_range_s = (min(image_stamps), max(image_stamps))
    if summary.images_in_bag == 0:
        raise BagError(f"image topic {image_topic} has no messages")
    if not frames:
        detail = "; ".join(f"{n} x {r}" for r, n in skipped.items())
        ranges = _pose_time_hint(buffer, map_frame, summary.camera_frame, pose_topic)
        raise BagError(
            f"none of the {summary.images_in_bag} images on {image_topic} has a pose: {detail}. "
            f"Images span {summary.time_range_s[0]:.3f}-{summary.time_range_s[1]:.3f} s{ranges}")
    return frames, summary


def _pose_time_hint(buffer: TransformBuffer, map_frame: str, camera_frame: str, pose_topic) -> str:
    spans = []
    for frame in sorted(buffer.frames()):
        r = buffer.time_range(frame)
        if r is not None:
            spans.append(f"{frame}: {r[0]:.3f}-{r[1]:.3f} s")
    known = ", ".join(sorted(buffer.frames()))
    return (f"; dynamic transforms span {'; '.join(spans) or 'nothing'}; frames in the tree: {known}. "
            f"Check --map-frame ({map_frame}) and --camera-frame ({camera_frame})")


def _make_loader(msg, decode, K, dist) -> Callable[[], np.ndarray]:
    # The message stays in memory (compressed bags are small; raw ones cost their size); the image
    # is decoded, and undistorted when CameraInfo has a distortion model, only when asked for.
    def load() -> np.ndarray:
        image = decode(msg)
        return image if K is None else cv2.undistort(image, K, dist)

    return load
