"""Image and camera-info messages -> numpy, for sensor_msgs from rosbags and from rclpy alike.

Both libraries give messages with the same field names (``encoding``, ``data``, ``k``, ``d``...),
so these functions take any object with those attributes and never import rclpy.
"""

from __future__ import annotations

import cv2
import numpy as np

from .errors import SeqaceError
from .input_bounds import DEFAULT_LIMITS, ImageLimits, compressed_size, size_problem


class ImageDecodeError(SeqaceError, ValueError):
    """An image message that cannot be turned into a BGR image; the message says why."""


# encoding -> (channels, dtype, OpenCV conversion to BGR or None)
_RAW_ENCODINGS: dict[str, tuple[int, type, int | None]] = {
    "bgr8": (3, np.uint8, None),
    "rgb8": (3, np.uint8, cv2.COLOR_RGB2BGR),
    "bgra8": (4, np.uint8, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, np.uint8, cv2.COLOR_RGBA2BGR),
    "mono8": (1, np.uint8, cv2.COLOR_GRAY2BGR),
    "8uc1": (1, np.uint8, cv2.COLOR_GRAY2BGR),
    "8uc3": (3, np.uint8, None),
    "mono16": (1, np.uint16, cv2.COLOR_GRAY2BGR),
    "16uc1": (1, np.uint16, cv2.COLOR_GRAY2BGR),
    "bayer_rggb8": (1, np.uint8, cv2.COLOR_BayerRG2BGR),
    "bayer_bggr8": (1, np.uint8, cv2.COLOR_BayerBG2BGR),
    "bayer_gbrg8": (1, np.uint8, cv2.COLOR_BayerGB2BGR),
    "bayer_grbg8": (1, np.uint8, cv2.COLOR_BayerGR2BGR),
    "yuv422": (2, np.uint8, cv2.COLOR_YUV2BGR_UYVY),
    "uyvy": (2, np.uint8, cv2.COLOR_YUV2BGR_UYVY),
    "yuv422_yuy2": (2, np.uint8, cv2.COLOR_YUV2BGR_YUY2),
    "yuyv": (2, np.uint8, cv2.COLOR_YUV2BGR_YUY2),
}
SUPPORTED_ENCODINGS = tuple(sorted(_RAW_ENCODINGS))


def _byte_array(data) -> np.ndarray:
    """uint8 view of a message's data: numpy (rosbags), array.array or bytes (rclpy), or a list."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    if isinstance(data, (list, tuple)):
        return np.asarray(data, dtype=np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def image_msg_to_bgr(msg, limits: ImageLimits = DEFAULT_LIMITS) -> np.ndarray:
    """A sensor_msgs/Image as uint8 BGR (H, W, 3).

    16-bit images are scaled to 8 bit by their maximum (they are usually IR or depth cameras used
    as intensity); anything else that is not a colour or grey image is refused with the list of
    supported encodings.
    """
    encoding = str(msg.encoding).lower()
    if encoding not in _RAW_ENCODINGS:
        raise ImageDecodeError(
            f"unsupported image encoding {msg.encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)} "
            "(depth or float images cannot be used for relocalization)")
    channels, dtype, conversion = _RAW_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"image has size {width}x{height}; expected a positive width and height")
    problem = size_problem(width, height, limits)
    if problem is not None:
        raise ImageDecodeError(problem)
    if step < row_bytes:
        raise ImageDecodeError(
            f"image step {step} is smaller than width*channels*bytes = {row_bytes} for {msg.encoding}")
    buf = _byte_array(msg.data)
    if buf.size < step * height:
        raise ImageDecodeError(
            f"image data has {buf.size} bytes; {msg.encoding} {width}x{height} with step {step} "
            f"needs {step * height} (truncated or mislabelled message)")
    rows = buf[: step * height].reshape(height, step)[:, :row_bytes]
    big_endian = bool(getattr(msg, "is_bigendian", 0))
    pixels = np.ascontiguousarray(rows).view(np.dtype(dtype).newbyteorder(">" if big_endian else "<"))
    pixels = pixels.reshape(height, width, channels) if channels > 1 else pixels.reshape(height, width)
    if dtype == np.uint16:
        top = int(pixels.max())
        pixels = (pixels.astype(np.float32) * (255.0 / top) if top > 0 else pixels).astype(np.uint8)
    else:
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    return pixels if conversion is None else cv2.cvtColor(pixels, conversion)


def compressed_msg_to_bgr(msg, limits: ImageLimits = DEFAULT_LIMITS,
                          expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """A sensor_msgs/CompressedImage (jpeg or png) as uint8 BGR (H, W, 3).

    The size in the header is checked against ``limits`` (and ``expected_size``, (width, height)
    from CameraInfo, when given) before any pixel is decoded: a small PNG can declare an image of
    gigabytes.
    """
    data = _byte_array(msg.data)
    fmt = getattr(msg, "format", "?")
    declared = compressed_size(data) if data.size else None
    if declared is None:
        raise ImageDecodeError(
            f"cannot decode compressed image ({data.size} bytes, format {fmt!r}): no jpeg or png header")
    problem = size_problem(*declared, limits)
    if problem is None and expected_size and tuple(expected_size) != (0, 0) and tuple(expected_size) != declared:
        problem = (f"its header says {declared[0]}x{declared[1]} but camera_info describes "
                   f"{expected_size[0]}x{expected_size[1]}: pair the image topic with its own camera_info")
    if problem is not None:
        raise ImageDecodeError(f"compressed image refused before decoding: {problem}")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None or (image.shape[1], image.shape[0]) != declared:
        raise ImageDecodeError(
            f"cannot decode compressed image ({data.size} bytes, format {fmt!r}); "
            "expected a jpeg or png payload")
    return image


def camera_info_to_intrinsics(msg) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(K 3x3, distortion coefficients, (width, height)) of a sensor_msgs/CameraInfo.

    Refuses an all-zero K (an uncalibrated camera driver publishes one).
    """
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0 or K[2, 2] != 1.0:
        raise ImageDecodeError(
            f"camera_info has an unusable K {K.reshape(-1).tolist()}: calibrate the camera "
            "(fx, fy > 0 and K[2][2] == 1 are required)")
    dist = np.asarray(msg.d, dtype=np.float64).reshape(-1)
    for name in ("d", "r", "p"):
        if not np.all(np.isfinite(np.asarray(getattr(msg, name, ()), dtype=np.float64))):
            raise ImageDecodeError(f"camera_info {name.upper()} contains NaN or inf: fix the camera driver's calibration")
    return K, dist, (int(msg.width), int(msg.height))


def image_to_raw_fields(image: np.ndarray, encoding: str = "bgr8") -> dict:
    """Fields (height, width, encoding, step, data bytes) of a sensor_msgs/Image holding ``image``.

    ``data`` is ``bytes``: assigning bytes to an rclpy message is ~50x faster than a numpy array.
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 (H, W) or (H, W, C) image, got {image.dtype} {image.shape}")
    channels = 1 if image.ndim == 2 else image.shape[2]
    image = np.ascontiguousarray(image)
    return {"height": image.shape[0], "width": image.shape[1], "encoding": encoding,
            "is_bigendian": 0, "step": image.shape[1] * channels, "data": image.tobytes()}
