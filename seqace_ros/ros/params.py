"""The relocalization node's parameters: one table with types, defaults, descriptions and checks.

Pure Python (no rclpy, no torch): the node declares these with descriptors, the tests check the
shipped YAML against them, and the docs table is generated from them. Settings the relocalizer has
too take their defaults and bounds from its RelocConfig (seqace_ros/settings.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from ..inference import BACKENDS
from ..input_bounds import HARD_LIMITS
from ..settings import HEAD_PRECISIONS, MIN_IMAGE_HEIGHT, RelocConfig

_RELOC = RelocConfig()

FRAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_/]*$")


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    choices: tuple[str, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None
    read_only: bool = False  # changing it needs new subscriptions: set it at start-up
    allow_empty: bool = True
    frame: bool = False  # a TF frame id
    check: Callable[[Any], str | None] | None = None

    @property
    def type(self) -> type:
        return type(self.default)

    def validate(self, value: Any) -> str | None:
        """None when ``value`` is acceptable, else the reason it is not (names the fix)."""
        expected = self.type
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            return f"{self.name} must be a {expected.__name__}, got {type(value).__name__} {value!r}"
        if expected is float and not math.isfinite(value):
            return f"{self.name} must be a finite number; got {value}"
        if self.choices is not None and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}; got {value!r}"
        if self.min_value is not None and value < self.min_value:
            return f"{self.name} must be >= {self.min_value}; got {value}"
        if self.max_value is not None and value > self.max_value:
            return f"{self.name} must be <= {self.max_value}; got {value}"
        if isinstance(value, str):
            if not value and not self.allow_empty:
                return f"{self.name} must not be empty"
            if self.frame and value and not FRAME_RE.match(value.lstrip("/")):
                return f"{self.name} {value!r} is not a valid frame id (letters, digits, '_' and '/')"
        if self.check is not None:
            return self.check(value)
        return None


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("map_path", "", "Map file (.safetensors) written by build_map / `seqace map`; empty: none yet "
              "(load one later by setting this parameter or calling ~/load_map)."),
    ParamSpec("mode", "single", "single: every image on its own; sequence: a sliding window of frames "
              "(uses odometry when odom_frame or odom_topic is set).", choices=("single", "sequence")),
    ParamSpec("device", "auto", "Where the network runs: auto, cpu, cuda or cuda:N.", read_only=True,
              check=lambda v: None if re.match(r"^(auto|cpu|cuda(:\d+)?)$", v) else
              f"device must be auto, cpu, cuda or cuda:N; got {v!r}"),
    ParamSpec("num_cells", _RELOC.num_cells, "Feature cells (2D-3D correspondences) per image given to RANSAC.",
              min_value=50, max_value=20000),
    ParamSpec("image_height", 0, "Rows images are resized to before the encoder; 0: the map's own (480 for "
              "maps made here). Smaller is faster and somewhat less accurate (benchmarks/README.md, \"lower "
              "resolution\").", min_value=0, max_value=4096, read_only=True,
              check=lambda v: None if v == 0 or v >= MIN_IMAGE_HEIGHT else
              f"image_height must be 0 (the map's own) or at least {MIN_IMAGE_HEIGHT}; got {v}"),
    ParamSpec("backend", "auto", "Inference backend of the networks: auto (OpenVINO on a CPU where it is "
              "installed, else torch), torch or openvino.", choices=BACKENDS, read_only=True),
    ParamSpec("head_precision", _RELOC.precision, "Precision of the head: auto (bf16 where the CPU has it), "
              "fp32, bf16, fp16, or int8 (OpenVINO backend and nncf; faster, as precise once refined: "
              "benchmarks/README.md).", choices=HEAD_PRECISIONS, read_only=True),
    ParamSpec("encoder_precision", _RELOC.encoder_precision, "Precision of the encoder: auto (bf16 where the "
              "CPU has it), fp32, bf16, fp16, or int8 (OpenVINO backend and nncf, calibrated on the map's "
              "keyframe images at load: faster, as precise once refined: benchmarks/README.md).",
              choices=HEAD_PRECISIONS, read_only=True),
    ParamSpec("refine", _RELOC.refine, "Refine each pose by tracking the map's keyframes into the image "
              "(maps made with keyframes, the default since they came); more precise, a few ms more per "
              "frame (benchmarks/README.md, \"Keyframe refinement\").", read_only=True),
    ParamSpec("refine_keyframes", _RELOC.tracking.keyframes, "Nearest keyframes tracked into each image when "
              "refining; 1 costs about a third less refinement time and a little precision within 1 cm "
              "(benchmarks/README.md, \"Session 11\").", min_value=1, max_value=8, read_only=True),
    ParamSpec("threads", 0, "CPU threads of the networks, the refinement (OpenCV) and RANSAC; 0: all cores. "
              "On a robot whose cores are busy with other nodes, give it fewer (docs/ROS.md, \"Sharing the CPU\").",
              min_value=0, max_value=256, read_only=True),
    ParamSpec("max_image_pixels", _RELOC.max_image_pixels, "Images (and CameraInfo sizes, and "
              "compressed-image headers, checked before decoding) with more pixels are refused.",
              min_value=256, max_value=HARD_LIMITS.max_pixels, read_only=True),
    ParamSpec("max_image_aspect_ratio", _RELOC.max_image_aspect_ratio, "Images whose width/height (or "
              "height/width) is larger are "
              "refused: the encoder resizes every image to image_height rows, so a thin strip would become "
              "a very wide one.", min_value=1.0, max_value=HARD_LIMITS.max_aspect_ratio, read_only=True),
    ParamSpec("map_frame", "map", "Frame of the map (the pose's and TF's parent frame).",
              allow_empty=False, frame=True),
    ParamSpec("odom_frame", "", "Odometry frame: when set, publish map -> odom (REP-105) using odom -> camera "
              "from TF at the image stamp; empty: publish map -> camera.", frame=True),
    ParamSpec("camera_frame", "", "Camera optical frame; empty: the images' header.frame_id.", frame=True),
    ParamSpec("publish_tf", True, "Publish the map -> odom (or map -> camera) transform."),
    ParamSpec("transform_tolerance", 0.2, "Seconds the published transform is dated into the future, so "
              "consumers never extrapolate (AMCL uses 1.0, rtabmap 0.1).", min_value=0.0, max_value=10.0),
    ParamSpec("tf_publish_rate", 20.0, "Hz at which the latest transform is republished (0: only with each "
              "new pose).", min_value=0.0, max_value=200.0),
    ParamSpec("tf_lookup_timeout", 0.1, "Seconds to wait for odom -> camera at an image stamp.",
              min_value=0.0, max_value=5.0),
    ParamSpec("image_transport", "raw", "raw: subscribe to `image` (sensor_msgs/Image); compressed: to "
              "`image/compressed` (sensor_msgs/CompressedImage).", choices=("raw", "compressed"), read_only=True),
    ParamSpec("image_qos", "sensor_data", "QoS of the image and camera_info subscriptions: sensor_data "
              "(best effort) or reliable.", choices=("sensor_data", "reliable"), read_only=True),
    ParamSpec("image_is_rectified", True, "true: images are rectified (intrinsics from CameraInfo P); "
              "false: undistort with CameraInfo K, D first (for image_raw)."),
    ParamSpec("publish_when_lost", False, "When lost, publish the last pose with a huge covariance instead "
              "of publishing nothing."),
    ParamSpec("lost_variance", 1.0e6, "Diagonal of the covariance published when lost (publish_when_lost).",
              min_value=1.0),
    ParamSpec("path_length", 500, "Poses kept in ~/path (the message is built only while something subscribes).",
              min_value=1, max_value=100000),
    ParamSpec("publish_inliers", True, "Publish the inlier scene points as markers on ~/inliers (built only "
              "while something subscribes)."),
    ParamSpec("diagnostics_period", 1.0, "Seconds between /diagnostics messages.", min_value=0.05,
              max_value=60.0),
    ParamSpec("no_image_timeout", 2.0, "Report a warning on /diagnostics when no image came for this many "
              "seconds.", min_value=0.1, max_value=3600.0),
    ParamSpec("odom_topic", "", "nav_msgs/Odometry topic for the sequence mode's relative motion when TF "
              "has no odom -> camera; empty: TF only.", read_only=True),
    ParamSpec("initial_pose_gate", 2.0, "After /initialpose, accept only poses whose camera is within this "
              "many metres (x, y) of it, or 3 sigma of its covariance if larger; 0: /initialpose only resets.",
              min_value=0.0, max_value=1000.0),
)

BY_NAME: dict[str, ParamSpec] = {p.name: p for p in PARAMETERS}


def validate(name: str, value: Any) -> str | None:
    """Reason why ``name := value`` is refused, or None; unknown names are refused too."""
    spec = BY_NAME.get(name)
    if spec is None:
        return f"unknown parameter {name!r}; known: {', '.join(sorted(BY_NAME))}"
    return spec.validate(value)


def defaults() -> dict[str, Any]:
    return {p.name: p.default for p in PARAMETERS}


def markdown_table() -> str:
    """The parameters table of docs/ROS.md."""
    rows = ["| parameter | default | description |", "| --- | --- | --- |"]
    for p in PARAMETERS:
        choices = f" One of: {', '.join(p.choices)}." if p.choices else ""
        rows.append(f"| `{p.name}` | `{p.default!r}` | {p.description}{choices} |")
    return "\n".join(rows)
