"""ROS 2 bags as a data source (read with rosbags; no ROS install needed) and as a demo output.

- :func:`read_bag_frames`: images + CameraInfo + TF (or a pose topic) -> posed SceneFrames.
- :func:`write_scene_bag`: posed frames -> a bag with images, CameraInfo and a TF chain.

Training a map from a bag is an application step: seqace_ros.bag_mapping. Image message decoding
and the transform buffer, shared with the live node, are seqace_ros.image_msgs and
seqace_ros.transform_buffer (re-exported here).
"""

from ...image_msgs import ImageDecodeError, camera_info_to_intrinsics, compressed_msg_to_bgr, image_msg_to_bgr
from .reader import BagError, BagReadSummary, read_bag_frames
from ...transform_buffer import TransformBuffer, TransformLookupError
from .writer import BagLayout, write_scene_bag

__all__ = [
    "BagError", "BagLayout", "BagReadSummary", "ImageDecodeError", "TransformBuffer",
    "TransformLookupError", "camera_info_to_intrinsics", "compressed_msg_to_bgr", "image_msg_to_bgr",
    "read_bag_frames", "write_scene_bag",
]
