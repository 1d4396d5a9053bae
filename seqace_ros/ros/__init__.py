"""The ROS 2 side of seqace_ros: the only code that imports rclpy.

- ``relocalization_node``: the node (``ros2 run seqace_ros relocalization_node``).
- ``build_map``: a map from a ROS 2 bag (``ros2 run seqace_ros build_map BAG``; needs no rclpy).
- pure helpers tested without ROS: ``params``, ``tf_math``, ``frame_slot``, ``camera_model``,
  ``diagnostics``, ``engine``.
tf2_ros, message_filters and cv_bridge are used where installed and never required.
"""

from ..threads import prefer_passive_waiting

# The nodes share a robot's cores: before anything here imports torch (seqace_ros/threads.py).
prefer_passive_waiting()
