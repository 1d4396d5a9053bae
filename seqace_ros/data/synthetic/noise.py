"""Camera imperfections applied to clean renders: exposure drift, vignetting, defocus and motion
blur, sensor noise. Each effect is a knob of :class:`CameraNoise`; presets name common levels.

Randomness is drawn per frame from ``(seed, stream, frame id)`` so a frame's noise does not
depend on which process renders it or in what order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import lru_cache

import cv2
import numpy as np


@dataclass(frozen=True)
class CameraNoise:
    """Strength of each effect; all zero is a perfect camera."""

    pixel_sigma: float = 0.0  # Gaussian read noise, in 8-bit grey levels
    shot_noise: float = 0.0  # signal-dependent noise: sigma = shot_noise * sqrt(level)
    blur_sigma: float = 0.0  # defocus, Gaussian sigma in pixels
    motion_blur: float = 0.0  # shutter time as a fraction of the frame interval
    exposure_jitter: float = 0.0  # std of the (smoothly drifting) log exposure gain
    vignetting: float = 0.0  # relative darkening in the image corners

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"CameraNoise.{f.name} must be a finite number >= 0, got {v}")
        if self.motion_blur > 1:
            raise ValueError("motion_blur is a fraction of the frame interval (0..1), "
                             f"got {self.motion_blur}")

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def is_clean(self) -> bool:
        return all(v == 0 for v in asdict(self).values())


NOISE_PRESETS: dict[str, CameraNoise] = {
    "none": CameraNoise(),
    "low": CameraNoise(pixel_sigma=1.5, shot_noise=0.15, blur_sigma=0.4, motion_blur=0.15,
                       exposure_jitter=0.05, vignetting=0.15),
    "medium": CameraNoise(pixel_sigma=3.0, shot_noise=0.3, blur_sigma=0.7, motion_blur=0.3,
                          exposure_jitter=0.1, vignetting=0.25),
    "high": CameraNoise(pixel_sigma=6.0, shot_noise=0.5, blur_sigma=1.2, motion_blur=0.6,
                        exposure_jitter=0.2, vignetting=0.35),
}


def camera_noise(spec: "str | CameraNoise | dict | None") -> CameraNoise:
    """A CameraNoise from a preset name, a dict of fields, an instance, or None (no noise)."""
    if spec is None:
        return NOISE_PRESETS["none"]
    if isinstance(spec, CameraNoise):
        return spec
    if isinstance(spec, str):
        if spec not in NOISE_PRESETS:
            raise ValueError(f"unknown noise preset {spec!r}; choose one of {list(NOISE_PRESETS)} "
                             "or pass a CameraNoise")
        return NOISE_PRESETS[spec]
    if isinstance(spec, dict):
        unknown = set(spec) - {f.name for f in fields(CameraNoise)}
        if unknown:
            raise ValueError(f"unknown CameraNoise fields {sorted(unknown)}; valid: "
                             f"{[f.name for f in fields(CameraNoise)]}")
        return CameraNoise(**spec)
    raise TypeError(f"noise must be a preset name, dict, CameraNoise or None, not {type(spec).__name__}")


def exposure_gains(noise: CameraNoise, n: int, seed: int, stream: int) -> np.ndarray:
    """(n,) exposure gains drifting smoothly over the sequence (auto-exposure wandering)."""
    if noise.exposure_jitter == 0 or n == 0:
        return np.ones(n)
    rng = np.random.default_rng([seed, stream, 7])
    t = np.arange(n)[:, None]
    periods = rng.uniform(40, 160, 3)  # frames
    z = np.sin(2 * np.pi * t / periods + rng.uniform(0, 2 * np.pi, 3)).sum(1) / np.sqrt(1.5)
    return np.exp(noise.exposure_jitter * z)


def vignette(width: int, height: int, strength: float) -> np.ndarray:
    """(H, W) float32 radial falloff: 1 at the centre, 1 - strength in the corners."""
    x = (np.arange(width) - (width - 1) / 2) / ((width - 1) / 2 or 1)
    y = (np.arange(height) - (height - 1) / 2) / ((height - 1) / 2 or 1)
    r2 = (x[None, :] ** 2 + y[:, None] ** 2) / 2.0
    return (1.0 - strength * r2).astype(np.float32)


MAX_BLUR_PX = 25.0  # longest motion blur streak; more means the poses are not one shot


def motion_kernel(flow_px: np.ndarray) -> np.ndarray | None:
    """Normalised line kernel along an image motion vector (pixels), or None if too short.
    Streaks are capped at MAX_BLUR_PX: a longer one comes from poses that were not consecutive
    frames (e.g. frame ids that say so wrongly), not from a hand-held camera at 30 Hz."""
    length = float(np.hypot(*flow_px))
    if length < 0.75:
        return None
    if length > MAX_BLUR_PX:
        flow_px = np.asarray(flow_px, float) * (MAX_BLUR_PX / length)
        length = MAX_BLUR_PX
    size = int(np.ceil(length)) | 1
    k = np.zeros((size, size), np.float32)
    c = size // 2
    d = np.asarray(flow_px, float) / length * (length / 2)
    cv2.line(k, (int(round(c - d[0])), int(round(c - d[1]))), (int(round(c + d[0])), int(round(c + d[1]))),
             1.0, 1, cv2.LINE_AA)
    return k / k.sum()


def apply_noise(image: np.ndarray, noise: CameraNoise, rng: np.random.Generator,
                gain: float = 1.0, flow_px: np.ndarray | None = None) -> np.ndarray:
    """Apply the effects to a float32 BGR render (0..255) and quantise to uint8.

    ``flow_px``: how far the image centre moves during one frame interval (for motion blur).
    """
    img = image
    if noise.vignetting > 0 or gain != 1.0:
        h, w = img.shape[:2]
        img = img * (vignette(w, h, noise.vignetting) * np.float32(gain))[..., None]
    if noise.motion_blur > 0 and flow_px is not None:
        k = motion_kernel(np.asarray(flow_px) * noise.motion_blur)
        if k is not None:
            img = cv2.filter2D(img, -1, k, borderType=cv2.BORDER_REFLECT)
    if noise.blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), noise.blur_sigma)
    if noise.pixel_sigma > 0 or noise.shot_noise > 0:
        z = _noise_sample(rng, img.shape)
        sigma = np.float32(noise.pixel_sigma)
        if noise.shot_noise > 0:
            sigma = np.sqrt(sigma * sigma + np.float32(noise.shot_noise ** 2) * np.maximum(img, 0))
        img = img + z * sigma
    return np.clip(img + np.float32(0.5), 0, 255).astype(np.uint8)  # round, not truncate


BANK_MARGIN = 64


@lru_cache(maxsize=4)
def _noise_bank(shape: tuple[int, ...]) -> np.ndarray:
    """Unit Gaussian noise a little larger than an image, drawn once per image shape."""
    h, w = shape[:2]
    rng = np.random.default_rng(0x5EED)
    return rng.standard_normal((h + BANK_MARGIN, w + BANK_MARGIN) + tuple(shape[2:]),
                               dtype=np.float32)


def _noise_sample(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Per-frame sensor noise: a randomly offset, flipped and signed window of the bank.
    Drawing fresh Gaussian noise for every pixel costs about as much as rendering the frame;
    a window of a fixed bank is statistically the same for a single image and nearly free."""
    bank = _noise_bank(tuple(shape))
    dy, dx = rng.integers(0, BANK_MARGIN + 1, 2)
    z = bank[dy:dy + shape[0], dx:dx + shape[1]]
    fy, fx, sign = rng.integers(0, 2, 3)
    z = z[::-1] if fy else z
    z = z[:, ::-1] if fx else z
    return -z if sign else z
