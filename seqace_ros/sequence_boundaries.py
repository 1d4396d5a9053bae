"""Where a list of frames breaks into separate recordings.

Sorted scene folders mix recordings: the 7-Scenes redkitchen splits are blocks of 50 consecutive
frames (frame numbers 0-49, 100-149, ...). Matching, tracking and fusion must not reach across
such a break, so both the mapping matcher and the sequence evaluation ask this module where the
breaks are: a jump in the frame numbering, or a jump in the camera pose when poses are known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .geometry import pose_errors

_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


@dataclass(frozen=True)
class BoundaryConfig:
    """A frame starts a new recording when its step from the previous frame is unusually large.

    "Unusually" is relative to the typical (median) step, so subsampled sequences (every 10th
    frame) are not cut everywhere, with an absolute floor so that smooth sequences are not cut on
    noise.
    """

    number_gap_factor: float = 3.0  # numbering step > factor * median step (and > 1)
    translation_m: float = 0.15  # camera centre moved more than max(this, factor * median)
    rotation_deg: float = 15.0  # camera turned more than max(this, factor * median)
    pose_step_factor: float = 10.0

    def __post_init__(self) -> None:
        for name in ("number_gap_factor", "translation_m", "rotation_deg", "pose_step_factor"):
            if not getattr(self, name) > 0:
                raise ValueError(f"BoundaryConfig.{name} must be positive, got {getattr(self, name)}")


def frame_number(name: str) -> int | None:
    """The last run of digits in a frame name ('frame-000049.color' -> 49), or None."""
    m = _LAST_NUMBER.search(name)
    return int(m.group(1)) if m else None


def sequence_starts(names: Sequence[str], poses_c2w: Sequence[np.ndarray | None] | None = None,
                    config: BoundaryConfig = BoundaryConfig()) -> np.ndarray:
    """Boolean array, True where a frame starts a new recording (always True for frame 0).

    ``names`` are frame names in the order they will be processed; ``poses_c2w`` (optional, same
    length, entries may be None) are 4x4 camera-to-world poses. A numbering that goes backwards
    also starts a new recording.
    """
    n = len(names)
    if poses_c2w is not None and len(poses_c2w) != n:
        raise ValueError(f"sequence_starts: {n} names but {len(poses_c2w)} poses; pass one pose per "
                         "frame (or None where unknown)")
    starts = np.zeros(n, dtype=bool)
    if n == 0:
        return starts
    starts[0] = True

    numbers = [frame_number(s) for s in names]
    if all(v is not None for v in numbers) and n > 1:
        gaps = np.diff(np.asarray(numbers, dtype=np.int64))
        positive = gaps[gaps > 0]
        typical = float(np.median(positive)) if positive.size else 1.0
        limit = max(1.0, config.number_gap_factor * typical)
        starts[1:] |= (gaps <= 0) | (gaps > limit)

    if poses_c2w is not None and n > 1:
        steps = [pose_errors(a, b) if a is not None and b is not None else (np.nan, np.nan)
                 for a, b in zip(poses_c2w[:-1], poses_c2w[1:])]
        t = np.array([s[0] for s in steps])
        r = np.array([s[1] for s in steps])
        if np.isfinite(t).any():
            t_lim = max(config.translation_m, config.pose_step_factor * float(np.nanmedian(t)))
            r_lim = max(config.rotation_deg, config.pose_step_factor * float(np.nanmedian(r)))
            with np.errstate(invalid="ignore"):
                starts[1:] |= (t > t_lim) | (r > r_lim)
    return starts
