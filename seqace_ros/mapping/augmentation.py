"""Photometric and geometric augmentation of mapping images (ACE: scale, in-plane rotation,
brightness/contrast).

Geometric augmentation is an affine warp of the image; instead of changing the camera pose and
intrinsics (as ACE does), cell positions found in the warped image are mapped back to the original
image with the inverse warp, so every training target keeps the original pose and K.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SIZE_MULTIPLE = 32  # sizes snap to multiples of 32: no padding, and few distinct encoder shapes


@dataclass
class AugmentedView:
    image: np.ndarray  # uint8 gray, warped
    to_original: np.ndarray  # 2x3 affine: warped pixel -> original pixel


def _snap(v: float) -> int:
    return max(SIZE_MULTIPLE, int(round(v / SIZE_MULTIPLE)) * SIZE_MULTIPLE)


def augment(gray: np.ndarray, image_height: int, rng: np.random.Generator | None,
            scale_range: tuple[float, float] = (1.0, 1.0), rotation_deg: float = 0.0,
            brightness: float = 0.0, contrast: float = 0.0) -> AugmentedView:
    """Rescale to ``image_height`` times a random scale, rotate about the centre, jitter intensity.

    With ``rng=None`` the view is the plain rescaled image (no augmentation).
    """
    H0, W0 = gray.shape[:2]
    s = 1.0 if rng is None else float(rng.uniform(*scale_range))
    Ht = _snap(image_height * s)
    Wt = _snap(W0 * image_height / H0 * s)
    sx, sy = Wt / W0, Ht / H0
    angle = 0.0 if rng is None or rotation_deg <= 0 else float(rng.uniform(-rotation_deg, rotation_deg))
    # original -> warped: scale, then rotate about the warped image centre.
    S = np.array([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], np.float64)
    R = np.vstack([cv2.getRotationMatrix2D((Wt / 2.0, Ht / 2.0), angle, 1.0), [0, 0, 1]])
    A = R @ S
    # warpAffine samples at pixel centres (i + 0.5 in continuous coords) with integer-index
    # matrices; shift so the continuous-coordinate affine A is honoured exactly.
    shift = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    unshift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    A_idx = shift @ A @ unshift
    interp = cv2.INTER_AREA if min(sx, sy) < 1 and angle == 0.0 else cv2.INTER_LINEAR
    warped = cv2.warpAffine(gray, A_idx[:2], (Wt, Ht), flags=interp, borderMode=cv2.BORDER_REFLECT_101)
    if rng is not None and (brightness > 0 or contrast > 0):
        c = 1.0 + rng.uniform(-contrast, contrast)
        b = 255.0 * rng.uniform(-brightness, brightness)
        mean = float(warped.mean())
        warped = np.clip((warped.astype(np.float32) - mean) * c + mean + b, 0, 255).astype(np.uint8)
    to_original = np.linalg.inv(A)[:2]
    return AugmentedView(image=warped, to_original=to_original)


def map_points(to_original: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to (N, 2) points."""
    return xy @ to_original[:, :2].T + to_original[:, 2]
