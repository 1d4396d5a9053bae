"""Train a map from a ROS 2 bag: what ``build_map`` and ``seqace map BAG`` run.

Everything about the bag is checked (topics, intrinsics, poses at the image stamps) before any
training starts; the summary of what was used and skipped is printed and stored in the map's
metadata under ``source``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from .data.ros_bag.reader import BagError, read_bag_frames


def add_bag_arguments(parser: argparse.ArgumentParser) -> None:
    """The bag reading options (the bag path and --out belong to the caller)."""
    g = parser.add_argument_group("ROS 2 bag (when the source is a bag)")
    g.add_argument("--image-topic", help="sensor_msgs/Image or CompressedImage topic (default: the only one)")
    g.add_argument("--camera-info-topic", help="CameraInfo topic (default: <image ns>/camera_info)")
    g.add_argument("--camera-matrix", help="intrinsics 'fx fy cx cy' instead of a CameraInfo topic")
    g.add_argument("--map-frame", default="map", help="world frame of the TF tree (default: map)")
    g.add_argument("--camera-frame", help="camera optical frame (default: the images' header.frame_id)")
    g.add_argument("--pose-topic", help="PoseStamped/PoseWithCovarianceStamped/Odometry/TransformStamped topic "
                                        "with the camera (or body) pose, instead of TF")
    g.add_argument("--camera-extrinsic", help="body -> camera 'x y z qx qy qz qw' for --pose-topic "
                                              "(default: from /tf_static, else identity)")
    g.add_argument("--stride", type=int, default=1, help="use every Nth image")
    g.add_argument("--max-frames", type=int, help="use at most this many images")
    g.add_argument("--max-tf-extrapolation", type=float, default=0.0,
                   help="seconds an image may lie outside the pose stamps and still use the nearest pose")


def _camera_matrix(text: str | None) -> np.ndarray | None:
    if not text:
        return None
    vals = [float(v) for v in text.replace(",", " ").split()]
    if len(vals) != 4 or vals[0] <= 0 or vals[1] <= 0:
        raise BagError(f"--camera-matrix {text!r}: expected 'fx fy cx cy' with positive focal lengths")
    fx, fy, cx, cy = vals
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)


def read_options_from_args(args: argparse.Namespace) -> dict:
    """Keyword arguments of :func:`read_bag_frames` from the parsed options of add_bag_arguments."""
    return {
        "image_topic": args.image_topic, "camera_info_topic": args.camera_info_topic,
        "camera_matrix": _camera_matrix(args.camera_matrix), "map_frame": args.map_frame,
        "camera_frame": args.camera_frame, "pose_topic": args.pose_topic,
        "camera_extrinsic": args.camera_extrinsic, "stride": args.stride, "max_frames": args.max_frames,
        "max_tf_extrapolation_s": args.max_tf_extrapolation,
    }


def build_map_from_bag(bag_path: str | Path, config=None, out: str | Path | None = None, *,
                       progress: bool = True, **read_options):
    """Read ``bag_path`` (see :func:`read_bag_frames` for ``read_options``), train a map with
    ``config`` (a MappingConfig; default: the CPU profile), save it to ``out`` when given, return it.

    ``scene_map.metadata['source']`` holds the bag summary (topics, frames used, skipped counts and
    reasons, image size, time range) and ``['source']['read_seconds']`` the reading time.
    """
    from .mapping import MappingConfig, train_map

    t0 = time.perf_counter()
    frames, summary = read_bag_frames(bag_path, **read_options)
    read_seconds = time.perf_counter() - t0
    if progress:
        print(summary.format(), file=sys.stderr, flush=True)
    scene_map = train_map(frames, config or MappingConfig(), progress=progress)
    scene_map.metadata["source"] = {"type": "ros2_bag", **summary.as_dict(), "read_seconds": read_seconds}
    if out is not None:
        scene_map.save(out)
    return scene_map


def build_map_from_bag_args(args: argparse.Namespace, config=None):
    """`seqace map BAG ...`: the bag is ``args.source``; saving is left to the caller."""
    return build_map_from_bag(args.source, config, progress=not getattr(args, "quiet", False),
                              **read_options_from_args(args))
