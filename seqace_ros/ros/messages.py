"""Building and reading the ROS messages the node uses (rclpy message classes from the PyPI
wheels or a ROS install). Matrices are 4x4 numpy arrays, stamps integer nanoseconds."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseStamped, PoseWithCovarianceStamped, TransformStamped
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker

from ..geometry import matrix_to_quaternion_xyzw, quaternion_xyzw_to_matrix
from .tf_math import NS


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * NS + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    return Time(sec=int(ns // NS), nanosec=int(ns % NS))


def header(frame_id: str, stamp_ns: int) -> Header:
    return Header(frame_id=frame_id, stamp=ns_to_stamp(stamp_ns))


def matrix_to_pose(T: np.ndarray) -> Pose:
    q = matrix_to_quaternion_xyzw(T[:3, :3])
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in T[:3, 3])
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in q)
    return pose


def pose_to_matrix(pose: Pose) -> np.ndarray:
    T = np.eye(4)
    o = pose.orientation
    T[:3, :3] = quaternion_xyzw_to_matrix([o.x, o.y, o.z, o.w])
    T[:3, 3] = [pose.position.x, pose.position.y, pose.position.z]
    return T


def transform_to_matrix(msg: TransformStamped) -> np.ndarray:
    t, r = msg.transform.translation, msg.transform.rotation
    T = np.eye(4)
    T[:3, :3] = quaternion_xyzw_to_matrix([r.x, r.y, r.z, r.w])
    T[:3, 3] = [t.x, t.y, t.z]
    return T


def matrix_to_transform(T: np.ndarray, parent: str, child: str, stamp_ns: int) -> TransformStamped:
    msg = TransformStamped()
    msg.header = header(parent, stamp_ns)
    msg.child_frame_id = child
    q = matrix_to_quaternion_xyzw(T[:3, :3])
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (
        float(v) for v in T[:3, 3])
    r = msg.transform.rotation
    r.x, r.y, r.z, r.w = (float(v) for v in q)
    return msg


def pose_with_covariance(T: np.ndarray, covariance: np.ndarray, frame: str, stamp_ns: int) -> PoseWithCovarianceStamped:
    msg = PoseWithCovarianceStamped()
    msg.header = header(frame, stamp_ns)
    msg.pose.pose = matrix_to_pose(T)
    msg.pose.covariance = [float(v) for v in np.asarray(covariance, dtype=np.float64).reshape(36)]
    return msg


def pose_stamped(T: np.ndarray, frame: str, stamp_ns: int) -> PoseStamped:
    return PoseStamped(header=header(frame, stamp_ns), pose=matrix_to_pose(T))


def point_cloud(points: np.ndarray, frame: str, stamp_ns: int) -> PointCloud2:
    """An unordered xyz float32 cloud (what RViz's PointCloud2 display reads)."""
    pts = np.ascontiguousarray(np.asarray(points, dtype=np.float32).reshape(-1, 3))
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, n in enumerate("xyz")]
    return PointCloud2(header=header(frame, stamp_ns), height=1, width=len(pts), fields=fields,
                       is_bigendian=False, point_step=12, row_step=12 * len(pts), data=pts.tobytes(),
                       is_dense=True)


def cloud_to_points(msg: PointCloud2) -> np.ndarray:
    data = np.frombuffer(bytes(msg.data), dtype=np.float32)
    return data.reshape(-1, msg.point_step // 4)[:, :3]


def inlier_marker(points: np.ndarray, frame: str, stamp_ns: int, localized: bool, max_points: int = 1000) -> Marker:
    """The inlier scene points of the last image as a POINTS marker (green: localized, red: lost)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(pts) > max_points:
        pts = pts[np.linspace(0, len(pts) - 1, max_points).astype(int)]
    m = Marker(header=header(frame, stamp_ns), ns="seqace_inliers", id=0, type=Marker.POINTS,
               action=Marker.ADD)
    m.pose.orientation.w = 1.0
    m.scale.x = m.scale.y = 0.03
    m.color = ColorRGBA(r=0.1 if localized else 0.9, g=0.9 if localized else 0.1, b=0.1, a=1.0)
    from geometry_msgs.msg import Point

    m.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in pts]
    return m
