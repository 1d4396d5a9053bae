"""One interface for every way of localizing images, and the one place that builds them.

The CLI, the demo, the ROS node's engine, the benchmarks and the tests all call
:func:`make_localizer` and talk to the result through :class:`Localizer`; none of them needs to know
which relocalizer it holds.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from ..mapfile import SceneMap
from .result import RelocResult
from .sequence import SequenceConfig, SequenceRelocalizer
from .single import RelocConfig, Relocalizer

MODES = ("single", "sequence", "dense")
"""single: every image on its own (top-K salient cells); sequence: a sliding window of frames;
dense: every image on its own with all cells (slow; a reference)."""


@runtime_checkable
class Localizer(Protocol):
    def localize(self, image: np.ndarray, K: np.ndarray, *, stamp: float | None = None,
                 relative_motion: np.ndarray | None = None) -> RelocResult:
        """Pose of ``image`` (uint8 BGR or gray) with intrinsics ``K`` (3x3, that image's size).
        ``stamp`` (s) and ``relative_motion`` (4x4, previous camera -> this one) matter to the
        sequence mode and are ignored by single-frame localizers."""

    def reset(self) -> None:
        """Forget everything carried from earlier frames (a new recording starts)."""

    def describe(self) -> dict:
        """Settings and runtime (device, precisions, backend) for reports."""


def make_localizer(scene_map: SceneMap, config: RelocConfig | None = None, mode: str = "single",
                   device: str | torch.device | None = "auto",
                   sequence_config: SequenceConfig | None = None) -> Localizer:
    """The localizer for ``mode`` over ``scene_map``."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: choose one of {', '.join(MODES)}")
    config = config or RelocConfig()
    if mode == "dense":
        config = replace(config, num_cells=10 ** 9)
    single = Relocalizer(scene_map, config, device=device)
    if mode == "sequence":
        return SequenceRelocalizer.around(single, sequence_config or SequenceConfig())
    return single
