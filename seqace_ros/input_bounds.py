"""Bounds on what enters the relocalizer: image arrays, declared image sizes, compressed-image
headers and camera intrinsics. Pure numpy (no torch, no rclpy), shared by the library, the CLI and
the node.

Each check returns ``None`` when the input is acceptable, else a one-line reason naming the problem
and the fix; callers raise their own error type (ValueError subclasses) with it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

# The encoder's stride-8 grid needs a few cells in each direction (encoder.prepare_image's floor).
MIN_IMAGE_SIDE = 16
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
# Width over height (or height over width). The encoder resizes every image to a fixed number of
# rows, so its work grows with the aspect ratio: a 16-row strip would become a 100k-pixel-wide one.
DEFAULT_MAX_ASPECT_RATIO = 4.0
# Plausible pinhole focal lengths, as a multiple of the image width: 0.1 is a 157 deg field of view
# (beyond what a pinhole model describes), 50 a 1.1 deg telephoto.
MIN_FOCAL_PER_WIDTH = 0.1
MAX_FOCAL_PER_WIDTH = 50.0
# The principal point must lie in the image with this margin (fraction of width / height): a
# principal point at a corner (an unset cx = cy = 0) gives confident, wrong poses.
PRINCIPAL_POINT_MARGIN = 0.05


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO

    def problem(self) -> str | None:
        """Why these limits themselves are unusable, or None."""
        lo, hi = MIN_IMAGE_SIDE * MIN_IMAGE_SIDE, 1 << 28
        if isinstance(self.max_pixels, bool) or not isinstance(self.max_pixels, int) \
                or not lo <= self.max_pixels <= hi:
            return f"max_image_pixels must be an integer in {lo}..{hi}; got {self.max_pixels!r}"
        if not isinstance(self.max_aspect_ratio, (int, float)) or not math.isfinite(self.max_aspect_ratio) \
                or not 1.0 <= self.max_aspect_ratio <= 32.0:
            return f"max_image_aspect_ratio must be a number in 1..32; got {self.max_aspect_ratio!r}"
        return None


DEFAULT_LIMITS = ImageLimits()
# The most any setting may allow; also the encoder's own guard for callers that bypass the
# relocalizer's configured limits.
HARD_LIMITS = ImageLimits(max_pixels=1 << 28, max_aspect_ratio=32.0)


def size_problem(width: int, height: int, limits: ImageLimits = DEFAULT_LIMITS) -> str | None:
    """Why an image of ``width`` x ``height`` pixels is not accepted (before anything is decoded)."""
    if width < MIN_IMAGE_SIDE or height < MIN_IMAGE_SIDE:
        return (f"image of {width}x{height} pixels is too small to localize (at least "
                f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE})")
    if width * height > limits.max_pixels:
        return (f"image of {width}x{height} pixels is larger than max_image_pixels "
                f"({limits.max_pixels}); downscale it or raise the limit")
    aspect = max(width / height, height / width)
    if aspect > limits.max_aspect_ratio:
        return (f"image of {width}x{height} pixels has an aspect ratio of {aspect:.1f}, above "
                f"max_image_aspect_ratio ({limits.max_aspect_ratio:g}); crop it or raise the limit")
    return None


def array_problem(image, limits: ImageLimits = DEFAULT_LIMITS) -> str | None:
    """Why ``image`` is not a usable uint8 gray (H, W) / BGR (H, W, 3) / BGRA (H, W, 4) array."""
    if not isinstance(image, np.ndarray):
        return f"image must be a numpy array, got {type(image).__name__}"
    if image.dtype != np.uint8:
        return f"image must be uint8 (8-bit gray or BGR), got {image.dtype}; convert it first"
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        return f"image must be (H, W) gray or (H, W, 3) BGR, got shape {image.shape}"
    return size_problem(int(image.shape[1]), int(image.shape[0]), limits)


def intrinsics_problem(K, width: int, height: int) -> str | None:
    """Why ``K`` is not a plausible pinhole camera for an image of ``width`` x ``height``."""
    try:
        K = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError):
        return "intrinsics must be a 3x3 matrix of numbers"
    if K.shape != (3, 3):
        return f"intrinsics must be a 3x3 matrix, got shape {K.shape}"
    if not np.all(np.isfinite(K)):
        return "intrinsics contain NaN or inf"
    if not np.allclose(K[2], [0.0, 0.0, 1.0]) or abs(K[1, 0]) > 0:
        return f"intrinsics {K.tolist()} are not a pinhole K (last row [0 0 1], K[1][0] = 0)"
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    lo, hi = MIN_FOCAL_PER_WIDTH * width, MAX_FOCAL_PER_WIDTH * width
    if not (lo <= fx <= hi and lo <= fy <= hi):
        return (f"focal lengths fx={fx:g}, fy={fy:g} are implausible for an image {width} pixels wide "
                f"(expected {lo:g}..{hi:g}); check the calibration")
    mx, my = PRINCIPAL_POINT_MARGIN * width, PRINCIPAL_POINT_MARGIN * height
    if not (mx <= cx <= width - mx and my <= cy <= height - my):
        return (f"principal point ({cx:g}, {cy:g}) is not inside the {width}x{height} image (at least "
                f"{PRINCIPAL_POINT_MARGIN:.0%} from each edge); check the calibration's cx, cy")
    return None


def stamp_problem(stamp) -> str | None:
    """Why a capture time in seconds is unusable (None means "no stamp" and is accepted)."""
    if stamp is None:
        return None
    try:
        value = float(stamp)
    except (TypeError, ValueError):
        return f"stamp must be a number of seconds, got {type(stamp).__name__}"
    return None if math.isfinite(value) else f"stamp {value} is not finite"


# ---------------------------------------------------------------- compressed-image headers

def _png_size(data: bytes) -> tuple[int, int] | None:
    # Signature, then the IHDR chunk first: length(4) "IHDR" width(4) height(4), big-endian.
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic...): not DHT/JPG/DAC.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in _SOF:
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        if length < 2:
            return None
        i += 2 + length
    return None


def compressed_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) declared by a PNG or JPEG header, read without decoding any pixel; None when
    the header is neither (or is cut short)."""
    data = bytes(data[:1 << 20]) if not isinstance(data, bytes) else data
    return _png_size(data) or _jpeg_size(data)
