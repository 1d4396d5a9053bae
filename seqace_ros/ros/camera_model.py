"""Intrinsics for the relocalizer from a sensor_msgs/CameraInfo (duck-typed: no rclpy here).

ROS semantics (image_pipeline): a rectified image (image_rect) is described by the projection
matrix P, a raw one (image_raw) by K and the distortion D. For raw images the node undistorts with
OpenCV into P's camera (K when P is empty), since the relocalizer has no distortion model.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..image_msgs import ImageDecodeError, camera_info_to_intrinsics
from ..input_bounds import DEFAULT_LIMITS, ImageLimits, intrinsics_problem, size_problem


class CameraModel:
    def __init__(self, info_msg, rectified: bool, limits: ImageLimits = DEFAULT_LIMITS):
        K, dist, (width, height) = camera_info_to_intrinsics(info_msg)
        # Before the undistortion maps are allocated: their size is the CameraInfo's.
        problem = None if (width, height) == (0, 0) else size_problem(width, height, limits)
        if problem is not None:
            raise ImageDecodeError(f"camera_info: {problem}")
        P = np.asarray(info_msg.p, dtype=np.float64).reshape(3, 4)
        P3 = P[:, :3] if P[0, 0] > 0 and P[1, 1] > 0 else K
        self.size = (width, height)
        self.rectified = rectified
        self.frame_id = info_msg.header.frame_id
        self._maps = None
        if rectified or not np.any(np.abs(dist) > 0):
            self.K = P3.copy() if rectified else K.copy()
        else:
            R = np.asarray(info_msg.r, dtype=np.float64).reshape(3, 3)
            if not np.any(R):
                R = np.eye(3)
            self.K = P3.copy()
            self._maps = cv2.initUndistortRectifyMap(K, dist, R, P3, (width, height), cv2.CV_16SC2)
        if (width, height) != (0, 0):
            problem = intrinsics_problem(self.K, width, height)
            if problem is not None:
                raise ImageDecodeError(f"camera_info: {problem}")
        self.limits = limits
        self._key = self.signature(info_msg, rectified)

    @staticmethod
    def signature(info_msg, rectified: bool) -> tuple:
        """What the model depends on: rebuild it only when this changes (undistortion maps cost ms)."""
        return (rectified, int(info_msg.width), int(info_msg.height), tuple(np.asarray(info_msg.k).tolist()),
                tuple(np.asarray(info_msg.d).tolist()), tuple(np.asarray(info_msg.p).tolist()))

    def matches(self, info_msg, rectified: bool, limits: ImageLimits = DEFAULT_LIMITS) -> bool:
        return self._key == self.signature(info_msg, rectified) and self.limits == limits

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(image ready for the relocalizer, its 3x3 K); refuses an image of another size."""
        h, w = image.shape[:2]
        if self.size != (0, 0) and (w, h) != self.size:
            raise ImageDecodeError(
                f"image is {w}x{h} but camera_info describes {self.size[0]}x{self.size[1]}: "
                "pair the image topic with its own camera_info")
        problem = intrinsics_problem(self.K, w, h) if self.size == (0, 0) else None
        if problem is not None:
            raise ImageDecodeError(f"camera_info: {problem}")
        if self._maps is not None:
            image = cv2.remap(image, self._maps[0], self._maps[1], cv2.INTER_LINEAR)
        return image, self.K
