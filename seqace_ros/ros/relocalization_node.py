"""relocalization_node: images in, camera pose in the map out (pose, TF, path, cloud, diagnostics).

Thin by design: the image callback only drops the message into a queue of one; a worker thread
decodes it, calls the core relocalizer and publishes. Run it as ROS does:

    ros2 run seqace_ros relocalization_node --ros-args --params-file config/relocalization.yaml
    python -m seqace_ros.ros.relocalization_node --ros-args -p map_path:=maps/kitchen.safetensors
"""

from __future__ import annotations

import collections
import threading
import time
import traceback
from dataclasses import fields

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker

from ..image_msgs import ImageDecodeError, compressed_msg_to_bgr, image_msg_to_bgr
from ..transform_buffer import TransformLookupError
from ..input_bounds import ImageLimits
from . import messages as M
from .camera_model import CameraModel
from .diagnostics import NodeStats
from .engine import EngineError, EngineSettings, LocalizationEngine
from .frame_slot import LatestSlot
from .params import BY_NAME, PARAMETERS, ParamSpec
from .shutdown import run_node
from .tf_io import TfInput, TfOutput
from .odometry import OdometryState
from .tf_math import NS, InitialPoseGate, StampSequencer, map_to_odom

NODE_NAME = "relocalization_node"
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def _descriptor(spec: ParamSpec) -> ParameterDescriptor:
    d = ParameterDescriptor(name=spec.name, description=spec.description, read_only=spec.read_only)
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.type is float and spec.min_value is not None and spec.max_value is not None:
        d.floating_point_range = [FloatingPointRange(from_value=float(spec.min_value),
                                                     to_value=float(spec.max_value), step=0.0)]
    if spec.type is int and spec.min_value is not None and spec.max_value is not None:
        d.integer_range = [IntegerRange(from_value=int(spec.min_value), to_value=int(spec.max_value), step=0)]
    return d


class RelocalizationNode(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self._setup()

    def _setup(self) -> None:
        """Everything but the ROS node itself (managed_node runs it at configure)."""
        self.p = self._declare_parameters()
        self.stats = NodeStats()
        self.engine = LocalizationEngine(EngineSettings(**{f.name: self.p[f.name] for f in fields(EngineSettings)}))
        self._state_lock = threading.Lock()
        self._camera_info = None
        self._camera_model: CameraModel | None = None
        self._latest_tf = None  # (T, parent, child, image_stamp_ns)
        self._last_pose: tuple[np.ndarray, str, int] | None = None
        self._odom = OdometryState()
        self._odom_topic_name = ""
        self._path: collections.deque = collections.deque(maxlen=self.p["path_length"])
        self._reset_requested = False
        self._sequencer = StampSequencer()
        self._gate = InitialPoseGate()

        self.pub_pose = self.create_publisher(PoseWithCovarianceStamped, "~/pose", RELIABLE)
        self.pub_path = self.create_publisher(Path, "~/path", RELIABLE)
        self.pub_cloud = self.create_publisher(PointCloud2, "~/map_cloud", LATCHED)
        self.pub_inliers = self.create_publisher(Marker, "~/inliers", RELIABLE)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE)
        self.tf_out = TfOutput(self)
        self.tf_in = TfInput(self, skip_parent=lambda: self.p["map_frame"])

        image_qos = qos_profile_sensor_data if self.p["image_qos"] == "sensor_data" else RELIABLE
        self._slot = LatestSlot()
        if self.p["image_transport"] == "compressed":
            topic = self.resolve_topic_name("image") + "/compressed"
            self.create_subscription(CompressedImage, topic, self._on_image, image_qos)
        else:
            self.create_subscription(Image, "image", self._on_image, image_qos)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, image_qos)
        self.create_subscription(PoseWithCovarianceStamped, "/initialpose", self._on_initial_pose, RELIABLE)
        if self.p["odom_topic"]:
            self._odom_topic_name = self.resolve_topic_name(self.p["odom_topic"])
            self.create_subscription(Odometry, self.p["odom_topic"], self._on_odometry, RELIABLE)
            if not self.p["odom_frame"] and self.p["publish_tf"]:
                self.get_logger().warning(
                    f"odom_topic {self._odom_topic_name} is set but odom_frame is empty: the node publishes "
                    "map -> camera, so the camera frame gets a second parent next to the odometry's tree; "
                    "set odom_frame to the odometry's frame to publish map -> odom (REP-105)")
        self.create_service(Trigger, "~/relocalize", self._srv_relocalize)
        self.create_service(Trigger, "~/reset", self._srv_reset)
        self.create_service(Trigger, "~/load_map", self._srv_load_map)
        self._tf_timer = None
        self._make_tf_timer()
        self._diag_timer = self.create_timer(self.p["diagnostics_period"], self._publish_diagnostics)

        if self.p["map_path"]:
            try:
                self._load_map(self.p["map_path"])
            except EngineError as exc:
                self.get_logger().error(f"{exc}; running without a map until map_path is set or ~/load_map is called")
        else:
            self.get_logger().warning("map_path is empty: set it (ros2 param set) or call ~/load_map")
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._worker = threading.Thread(target=self._work, name="seqace_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"ready: mode={self.p['mode']} image_transport={self.p['image_transport']} tf={self.tf_out.backend} "
            f"map_frame={self.p['map_frame']} odom_frame={self.p['odom_frame'] or '(none)'}")

    # ---------------------------------------------------------------- parameters
    def _declare_parameters(self) -> dict:
        values = {}
        for spec in PARAMETERS:
            try:
                value = self.declare_parameter(spec.name, spec.default, _descriptor(spec)).value
            except Exception as exc:  # wrong type or out of range in the params file
                self.get_logger().error(f"parameter {spec.name}: {exc}; using the default {spec.default!r}")
                value = self.declare_parameter(spec.name, spec.default, _descriptor(spec), ignore_override=True).value
            reason = spec.validate(value)
            if reason is not None:
                self.get_logger().error(f"{reason}; using the default {spec.default!r}")
                value = spec.default
                if not spec.read_only:
                    self.set_parameters([Parameter(spec.name, value=value)])
            values[spec.name] = float(value) if spec.type is float else value
        if values["odom_frame"] and values["odom_frame"] == values["map_frame"]:
            self.get_logger().error("odom_frame equals map_frame; publishing map -> camera instead")
            values["odom_frame"] = ""
        return values

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        new = dict(self.p)
        for param in params:
            spec = BY_NAME.get(param.name)
            if spec is None:
                continue  # parameters the node does not own (use_sim_time, ...)
            reason = spec.validate(param.value)
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
            new[param.name] = float(param.value) if spec.type is float else param.value
        if new["odom_frame"] and new["odom_frame"] == new["map_frame"]:
            return SetParametersResult(successful=False, reason="odom_frame must differ from map_frame")
        try:
            if new["mode"] != self.p["mode"]:
                self.engine.set_mode(new["mode"])
            if new["num_cells"] != self.p["num_cells"]:
                self.engine.set_num_cells(new["num_cells"])
            if new["map_path"] != self.p["map_path"]:
                self._load_map(new["map_path"])
        except EngineError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        rate_changed = new["tf_publish_rate"] != self.p["tf_publish_rate"]
        if new["path_length"] != self.p["path_length"]:
            with self._state_lock:
                self._path = collections.deque(self._path, maxlen=new["path_length"])
        self.p = new
        if rate_changed:
            self._make_tf_timer()
        return SetParametersResult(successful=True)

    def _make_tf_timer(self) -> None:
        if self._tf_timer is not None:
            self.destroy_timer(self._tf_timer)
            self._tf_timer = None
        if self.p["tf_publish_rate"] > 0:
            self._tf_timer = self.create_timer(1.0 / self.p["tf_publish_rate"], self._republish_tf)

    # ---------------------------------------------------------------- map
    def _load_map(self, path: str) -> None:
        meta = self.engine.load(path)
        points = self.engine.scene_points()
        self.pub_cloud.publish(M.point_cloud(points, self.p["map_frame"], self.get_clock().now().nanoseconds))
        self._request_reset()
        self.get_logger().info(
            f"map {path} loaded in {self.engine.load_seconds:.2f} s ({len(points)} scene points, "
            f"encoder {meta.get('encoder', '?')})")

    # ---------------------------------------------------------------- callbacks (executor thread)
    def _on_image(self, msg) -> None:
        self.stats.image_arrived()
        self._slot.put(msg)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_odometry(self, msg: Odometry) -> None:
        frame, child = msg.header.frame_id.lstrip("/"), msg.child_frame_id.lstrip("/")
        p, o = msg.pose.pose.position, msg.pose.pose.orientation
        topic = self._odom_topic_name
        # One log call per kind of problem: rclpy throttles per call site, and each kind deserves a line.
        reason = self._odom.frame_problem(frame, child, self.p["map_frame"], self.p["odom_frame"])
        if reason is not None:
            self.stats.odometry_message_refused(reason)
            self.get_logger().warning(f"odometry on {topic} refused: {reason}", throttle_duration_sec=5.0)
            return
        reason = self._odom.pose_problem([p.x, p.y, p.z], [o.x, o.y, o.z, o.w])
        if reason is not None:
            self.stats.odometry_message_refused(reason)
            self.get_logger().warning(f"odometry on {topic} refused: {reason}", throttle_duration_sec=5.0)
            return
        stamp = M.stamp_to_ns(msg.header.stamp)
        try:
            self.tf_in.add(frame, child, stamp, M.pose_to_matrix(msg.pose.pose))
        except ValueError as exc:
            self.stats.odometry_message_refused(str(exc))
            self.get_logger().warning(f"odometry on {topic} refused: {exc}", throttle_duration_sec=5.0)
            return
        self._odom.accepted(frame, child, stamp)

    def _on_initial_pose(self, msg: PoseWithCovarianceStamped) -> None:
        map_frame = self.p["map_frame"].lstrip("/")
        if msg.header.frame_id.lstrip("/") != map_frame:
            self.get_logger().warning(
                f"/initialpose is in frame {msg.header.frame_id!r}, not the map frame {map_frame!r}: ignored")
            return
        cov = msg.pose.covariance
        p = msg.pose.pose.position
        if not np.all(np.isfinite([p.x, p.y, cov[0], cov[7]])):
            self.get_logger().warning("/initialpose has a NaN or infinite position or x/y covariance: ignored")
            return
        with self._state_lock:
            self._gate.set(p.x, p.y, cov[0], cov[7], self.p["initial_pose_gate"])
        self._request_reset(clear_gate=False)
        self.get_logger().info(f"/initialpose at ({p.x:.2f}, {p.y:.2f}): relocalizing"
                               + (f" within {self._gate.radius:.2f} m" if self._gate.active else ""))

    def _request_reset(self, clear_gate: bool = True) -> None:
        self._odom.break_chain()
        with self._state_lock:
            self._reset_requested = True
            if clear_gate:
                self._gate.clear()

    def _srv_relocalize(self, request, response):
        self._request_reset()
        response.success = self.engine.ready
        response.message = ("window cleared: the next image is localized from scratch" if self.engine.ready
                            else "no map loaded: set map_path or call ~/load_map")
        return response

    def _srv_reset(self, request, response):
        self._request_reset()
        with self._state_lock:
            self._path.clear()
            self._latest_tf = None
            self._last_pose = None
        self._odom.reset()
        response.success, response.message = True, ("state cleared (window, path, transform, /initialpose gate, "
                                                     "odom_topic frame)")
        return response

    def _srv_load_map(self, request, response):
        try:
            self._load_map(self.p["map_path"])
            response.success, response.message = True, f"loaded {self.p['map_path']}"
        except EngineError as exc:
            response.success, response.message = False, str(exc)
        return response

    # ---------------------------------------------------------------- worker thread
    def _work(self) -> None:
        while not self._slot.closed:
            msg = self._slot.take(timeout=0.5)
            if msg is None:
                self._warm_up()
                continue
            try:
                self._process(msg)
            except Exception as exc:  # the node must survive anything one image can do
                self.stats.bad_image(f"{type(exc).__name__}: {exc}")
                self.get_logger().error(f"failed on one image: {exc}\n{traceback.format_exc()}",
                                        throttle_duration_sec=5.0)

    def _warm_up(self) -> None:
        try:
            if self.engine.warm_up():
                self.get_logger().info(f"warmed up in {self.engine.warm_up_seconds:.1f} s")
        except Exception as exc:  # a failed warm-up only costs time on the first image
            self.engine.warm = True
            self.get_logger().warning(f"warm-up failed: {exc}")

    def _decode(self, msg) -> tuple[np.ndarray, np.ndarray] | None:
        info = self._camera_info
        if info is None:
            self.stats.bad_image("no camera_info received yet")
            self.get_logger().warning(f"no camera_info on {self.resolve_topic_name('camera_info')} yet; "
                                      "images are skipped", throttle_duration_sec=5.0)
            return None
        limits = ImageLimits(self.p["max_image_pixels"], self.p["max_image_aspect_ratio"])
        try:
            if self._camera_model is None or not self._camera_model.matches(info, self.p["image_is_rectified"], limits):
                self._camera_model = CameraModel(info, self.p["image_is_rectified"], limits)
            # Sizes are checked against the limits (and a compressed header against CameraInfo)
            # before any pixel is decoded.
            image = (compressed_msg_to_bgr(msg, limits, self._camera_model.size) if isinstance(msg, CompressedImage)
                     else image_msg_to_bgr(msg, limits))
            return self._camera_model.prepare(image)
        except ImageDecodeError as exc:
            self.stats.bad_image(str(exc))
            self.get_logger().warning(f"image skipped: {exc}", throttle_duration_sec=5.0)
            return None

    def _process(self, msg) -> None:
        t0 = time.perf_counter()
        with self._state_lock:
            reset, self._reset_requested = self._reset_requested, False
        if reset:
            self.engine.reset()
        decoded = self._decode(msg)
        if decoded is None:
            return
        image, K = decoded
        stamp_ns = M.stamp_to_ns(msg.header.stamp) or self.get_clock().now().nanoseconds
        camera_frame = self.p["camera_frame"] or msg.header.frame_id or "camera"
        motion = self._relative_motion(camera_frame, stamp_ns) if self.p["mode"] == "sequence" else None
        result = self.engine.localize(image, K, stamp=stamp_ns / NS, relative_motion=motion)
        if motion is not None:
            self.stats.relative_motion_used()
        if result.localized:
            with self._state_lock:
                refusal = self._gate.check(result.pose_c2w)
            if refusal is not None:
                self._odom.break_chain()
                result.status, result.message = "lost", refusal
                # The sequence window must not carry on from a pose the gate refused.
                self.engine.reset()
        self._publish(result, camera_frame, stamp_ns)
        self.stats.frame_done(result.status if result.localized else f"lost: {result.message or 'no pose'}",
                              int(result.num_inliers), float(result.inlier_ratio),
                              (time.perf_counter() - t0) * 1000.0)

    def _relative_motion(self, camera_frame: str, stamp_ns: int) -> np.ndarray | None:
        """Camera motion since the previous image from odometry (TF odom_frame, or odom_topic's
        frame once a message came), or None."""
        odom = self._odom.frame(self.p["odom_frame"])
        if not odom:
            return None
        try:
            T_odom_cam = self.tf_in.lookup(odom, camera_frame, stamp_ns, self.p["tf_lookup_timeout"])
        except TransformLookupError as exc:
            self._odom.motion(None)
            self.get_logger().warning(f"no {odom} -> {camera_frame} at the image stamp ({exc}); this image is "
                                      "localized without odometry", throttle_duration_sec=5.0)
            return None
        return self._odom.motion(T_odom_cam)

    # ---------------------------------------------------------------- publishing
    def _publish(self, result, camera_frame: str, stamp_ns: int) -> None:
        map_frame = self.p["map_frame"]
        # Visualization messages are built only for a subscriber (RViz): hundreds of points and poses
        # converted to ROS messages every frame cost CPU a robot without a display need not spend.
        if self.p["publish_inliers"] and len(result.points3d) and self.pub_inliers.get_subscription_count():
            inl = np.asarray(result.inliers, bool)
            pts = result.points3d[inl] if inl.shape[:1] == result.points3d.shape[:1] else result.points3d
            self.pub_inliers.publish(M.inlier_marker(pts, map_frame, stamp_ns, result.localized))
        if not result.localized:
            self.get_logger().info(f"lost: {result.message or 'no pose'}", throttle_duration_sec=5.0)
            with self._state_lock:
                last = self._last_pose
            if self.p["publish_when_lost"] and last is not None:
                cov = np.eye(6) * self.p["lost_variance"]
                self.pub_pose.publish(M.pose_with_covariance(last[0], cov, map_frame, stamp_ns))
            return
        T = np.asarray(result.pose_c2w, dtype=np.float64)
        self.pub_pose.publish(M.pose_with_covariance(T, result.covariance, map_frame, stamp_ns))
        with self._state_lock:
            self._last_pose = (T, camera_frame, stamp_ns)
            self._path.append(M.pose_stamped(T, map_frame, stamp_ns))
            path = (Path(header=M.header(map_frame, stamp_ns), poses=list(self._path))
                    if self.pub_path.get_subscription_count() else None)
        if path is not None:
            self.pub_path.publish(path)
        if not self.p["publish_tf"]:
            return
        odom = self.p["odom_frame"]
        if odom:
            try:
                T_odom_cam = self.tf_in.lookup(odom, camera_frame, stamp_ns, self.p["tf_lookup_timeout"])
            except TransformLookupError as exc:
                self.get_logger().warning(f"no {odom} -> {camera_frame} at the image stamp ({exc}); "
                                          "map -> odom not updated", throttle_duration_sec=5.0)
                return
            latest = (map_to_odom(T, T_odom_cam), map_frame, odom, stamp_ns)
        else:
            latest = (T, map_frame, camera_frame, stamp_ns)
        with self._state_lock:
            self._latest_tf = latest
        self._send_latest_tf()

    def _send_latest_tf(self) -> None:
        with self._state_lock:
            latest = self._latest_tf
            if latest is None:
                return
            T, parent, child, image_stamp = latest
            stamp = self._sequencer.next(self.get_clock().now().nanoseconds, image_stamp, self.p["transform_tolerance"])
        if stamp is not None:
            self.tf_out.send(M.matrix_to_transform(T, parent, child, stamp))

    def _republish_tf(self) -> None:
        if self.p["publish_tf"]:
            self._send_latest_tf()

    def _publish_diagnostics(self) -> None:
        v = self.stats.verdict(self.engine.ready, self.engine.map_path or self.p["map_path"], self.p["mode"],
                               self.tf_out.backend, self._slot.replaced, self.p["no_image_timeout"])
        v.values["warmed_up"] = "yes" if self.engine.warm else "no"
        v.values["odometry"] = self._odom.summary(self._odom_topic_name, self.p["odom_frame"],
                                                  self.get_clock().now().nanoseconds)
        with self._state_lock:
            gate = self._gate
            v.values["initial_pose_gate"] = (
                f"refusing poses further than {gate.radius:.2f} m from ({gate.center[0]:.2f}, {gate.center[1]:.2f})"
                if gate.active else "none")
        status = DiagnosticStatus(level=bytes([v.level]), name=f"{self.get_name()}: relocalization",
                                  message=v.message, hardware_id=self.get_fully_qualified_name(),
                                  values=[KeyValue(key=k, value=s) for k, s in v.values.items()])
        self.pub_diag.publish(DiagnosticArray(header=M.header("", self.get_clock().now().nanoseconds),
                                              status=[status]))

    def shutdown(self) -> None:
        self._slot.close()
        self._worker.join(timeout=5.0)


def main(args: list[str] | None = None) -> None:
    run_node(RelocalizationNode, lambda node: node.shutdown(), args)


if __name__ == "__main__":
    main()
