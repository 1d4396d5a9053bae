"""What a relocalizer returns for one image."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LOCALIZED = "localized"
LOST = "lost"


@dataclass
class RelocResult:
    """Pose of one image in the map frame, with the evidence behind it.

    ``pose_c2w`` maps camera (OpenCV optical frame) to map coordinates. ``covariance`` is 6x6 in
    ROS order (x, y, z, rot_x, rot_y, rot_z): the camera centre in the map frame and a small
    rotation about the map axes applied on the left of R_c2w. When ``status`` is ``lost`` there is
    no pose: callers must not publish one as if it were confident.
    """

    status: str
    pose_c2w: np.ndarray | None = None
    covariance: np.ndarray | None = None
    num_inliers: int = 0
    inlier_ratio: float = 0.0
    reprojection_error_px: float | None = None  # median over inliers
    points2d: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # input-image px
    points3d: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))  # map frame
    inliers: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))
    timing_ms: dict[str, float] = field(default_factory=dict)  # encoder, head, ransac, total
    message: str = ""  # why lost, or which path produced the pose (e.g. "dense fallback"), for people
    decision: object | None = None  # sequence mode: its SequenceDecision (which path, from how many frames)
    refinement: object | None = None  # the keyframe refinement's outcome (TrackedRefinement), when it ran

    @property
    def localized(self) -> bool:
        return self.status == LOCALIZED
