"""seqace_ros: visual relocalization by scene coordinate regression (after SeqACE / ACE).

The core library (everything outside ``seqace_ros.ros``) never imports rclpy.
"""

__version__ = "0.1.0"
