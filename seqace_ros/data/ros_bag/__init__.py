"""ROS 2 bags as a data source (read with rosbags; no ROS install needed) and as a demo output.

- :func:`read_bag_frames`: images + CameraInfo + TF (or a pose topic) -> posed SceneFrames.
- :func:`write_scene_bag`: posed frames -> a bag with images, CameraInfo and a TF chain.
- :func:`build_map_from_bag`: read a bag and train a map (what ``build_map`` / ``seqace map BAG`` run).
"""

from .build import add_bag_arguments, build_map_from_bag, build_map_from_bag_args, read_options_from_args
from .images import ImageDecodeError, camera_info_to_intrinsics, compressed_msg_to_bgr, image_msg_to_bgr
from .reader import BagError, BagReadSummary, read_bag_frames
from .tf_buffer import TransformBuffer, TransformLookupError
from .writer import BagLayout, write_scene_bag

__all__ = [
    "add_bag_arguments", "build_map_from_bag", "build_map_from_bag_args", "read_options_from_args", "BagError", "BagLayout", "BagReadSummary", "ImageDecodeError", "TransformBuffer",
    "TransformLookupError", "camera_info_to_intrinsics", "compressed_msg_to_bgr", "image_msg_to_bgr",
    "read_bag_frames", "write_scene_bag",
]
