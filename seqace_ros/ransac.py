"""Camera pose from 2D-3D correspondences: the native RANSAC / PnP module, wrapped.

The work happens in C++ (``native/``, built into ``seqace_ros._native``): Lambda Twist P3P
hypotheses scored in parallel with DSAC*'s soft inlier count (or hard counting), local
optimisation of new best hypotheses, adaptive stopping with an iteration cap and a time budget,
then Levenberg-Marquardt refinement while the inlier set grows and a covariance for ROS.
This module checks and converts the inputs and returns plain dataclasses.

    >>> result = estimate_pose(points2d, points3d, K, inlier_threshold_px=10.0, seed=0)
    >>> if result.success:
    ...     T_c2w, cov = result.T_c2w, result.covariance  # cov: ROS order x y z rotX rotY rotZ
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Literal, Sequence

import numpy as np

from .errors import SeqaceError

__all__ = [
    "NativeExtensionMissing",
    "RansacOptions",
    "RansacResult",
    "MultiFrameResult",
    "Frame",
    "estimate_pose",
    "estimate_pose_multi",
]


class NativeExtensionMissing(SeqaceError, ImportError):
    """The C++ extension seqace_ros._native has not been built."""


@dataclass
class RansacOptions:
    """Options of :func:`estimate_pose` (mirrors the C++ ``seqace::RansacOptions``).

    Defaults are for ~1000 scene-coordinate correspondences of a 640x480 image.
    """

    inlier_threshold_px: float = 10.0
    """tau: soft-score midpoint / hard inlier threshold (DSAC* uses 10 px)."""
    refine_threshold_px: float = 10.0
    """Inliers are re-collected at this error during refinement. SeqACE uses 4 px; on real SCR
    output of our maps 10 px is clearly better (see native/include/seqace/types.h)."""
    scoring: Literal["soft", "hard"] = "soft"
    """'soft': sum of 1 - sigmoid(beta (e - tau)), beta = 5 / tau; 'hard': inlier count."""
    error_clamp_px: float = 100.0
    confidence: float = 0.9999
    """Adaptive stopping: probability that an all-inlier sample has been drawn."""
    min_iterations: int = 20
    max_iterations: int = 10000
    time_budget_ms: float = 100.0
    """Wall-clock budget of one call; <= 0 disables it (max_iterations still caps)."""
    num_threads: int = 2
    seed: int = 0
    min_inliers: int = 20
    """Fewer final inliers than this gives success = False."""
    local_optimization: bool = True
    early_bailout: bool = True
    max_refine_rounds: int = 10
    refine_iterations: int = 10
    loss: Literal["huber", "cauchy", "trivial"] = "huber"
    loss_scale_px: float = 2.0

    def problems(self) -> list[str]:
        """What is wrong with these options (empty when nothing is), for the callers' validation."""
        out = []
        if not (self.inlier_threshold_px > 0 and self.refine_threshold_px > 0 and self.loss_scale_px > 0):
            out.append("RANSAC thresholds and loss scale must be positive")
        if self.scoring not in ("soft", "hard"):
            out.append(f"RANSAC scoring {self.scoring!r} is not 'soft' or 'hard'")
        if self.loss not in ("huber", "cauchy", "trivial"):
            out.append(f"RANSAC loss {self.loss!r} is not huber, cauchy or trivial")
        if self.max_iterations < 1 or self.min_iterations < 0:
            out.append("RANSAC max_iterations must be >= 1 and min_iterations >= 0")
        if self.num_threads < 1:
            out.append(f"RANSAC num_threads {self.num_threads} < 1")
        return out

    def to_native(self) -> object:
        """The bound C++ struct (raises ValueError for an unknown scoring or loss name)."""
        if not 0 <= int(self.seed) < 2**64:
            raise ValueError(f"RansacOptions.seed must be in [0, 2**64), got {self.seed}")
        native = native_module().RansacOptions()
        for f in dataclasses.fields(self):
            setattr(native, f.name, getattr(self, f.name))
        native.validate()
        return native


@dataclass(frozen=True)
class RansacResult:
    """Outcome of :func:`estimate_pose`.

    ``T_c2w`` is the camera-to-world pose: the best pose found even when ``success`` is False
    (say, too few inliers; useful for diagnostics, not to be published), identity when there is
    none. ``covariance`` is 6x6 in ROS order (x, y, z, rot_x, rot_y, rot_z): the camera centre
    in the world frame and a small rotation about the world axes applied on the left of R_c2w;
    1e6 * I whenever ``success`` is False.
    """

    success: bool
    T_c2w: np.ndarray
    inliers: np.ndarray
    num_inliers: int
    score: float
    covariance: np.ndarray
    reprojection_error_px: float
    iterations: int
    time_ms: float
    message: str
    num_valid: int = 0
    refine_rounds: int = 0


@dataclass(frozen=True)
class MultiFrameResult(RansacResult):
    """Outcome of :func:`estimate_pose_multi`: ``inliers`` is the current (first) frame's mask,
    ``inliers_per_frame`` has one mask per input frame."""

    inliers_per_frame: list[np.ndarray] = field(default_factory=list)


@dataclass(frozen=True)
class Frame:
    """One frame's correspondences for :func:`estimate_pose_multi`."""

    points2d: np.ndarray
    points3d: np.ndarray
    K: np.ndarray
    T_cur_from_frame: np.ndarray = field(default_factory=lambda: np.eye(4))


_NATIVE: ModuleType | None = None


def native_module() -> ModuleType:
    """The C++ extension (RANSAC, triangulation), loaded once; a clear error if it is not built."""
    global _NATIVE
    if _NATIVE is None:
        try:
            module = importlib.import_module("seqace_ros._native")
        except ImportError as exc:
            raise NativeExtensionMissing(
                "seqace_ros._native (the C++ RANSAC) is not built: run `pip install .` or "
                "`python setup.py build_ext --inplace` in the repository root "
                f"(needs a C++17 compiler and Eigen 3). Import error: {exc}") from exc
        _NATIVE = module
    return _NATIVE


def _options(options: RansacOptions | None, overrides: dict) -> object:
    base = options if options is not None else RansacOptions()
    if not isinstance(base, RansacOptions):
        raise TypeError(f"options must be a seqace_ros.ransac.RansacOptions, got {type(base).__name__}")
    try:
        merged = dataclasses.replace(base, **overrides)
    except TypeError as exc:
        known = ", ".join(f.name for f in dataclasses.fields(RansacOptions))
        raise TypeError(f"{exc}; RansacOptions fields are: {known}") from None
    return merged.to_native()


def _as_points(a: object, cols: int, name: str) -> np.ndarray:
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array of shape (N, {cols}): {exc}") from None
    if arr.ndim != 2 or arr.shape[1] != cols:
        raise ValueError(f"{name} must have shape (N, {cols}), got {arr.shape}")
    return np.ascontiguousarray(arr)


def _as_matrix(a: object, shape: tuple[int, int], name: str) -> np.ndarray:
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric {shape[0]}x{shape[1]} matrix: {exc}") from None
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    return np.ascontiguousarray(arr)


def _fields(r: object) -> dict:
    return dict(
        success=bool(r.success),
        T_c2w=np.asarray(r.T_c2w),
        num_inliers=int(r.num_inliers),
        score=float(r.score),
        covariance=np.asarray(r.covariance),
        reprojection_error_px=float(r.reprojection_error_px),
        iterations=int(r.iterations),
        time_ms=float(r.time_ms),
        message=str(r.message),
        num_valid=int(r.num_valid),
        refine_rounds=int(r.refine_rounds),
    )


def estimate_pose(points2d: np.ndarray, points3d: np.ndarray, K: np.ndarray,
                  options: RansacOptions | None = None, **overrides: object) -> RansacResult:
    """Camera-to-world pose from pixel coordinates (N, 2) and world points (N, 3).

    Accepts float32 or float64 (any numeric) arrays. ``K`` is the 3x3 pinhole matrix of the
    (undistorted) image. Keyword arguments override fields of ``options``, e.g.
    ``estimate_pose(p2, p3, K, scoring="hard", seed=3)``.

    Raises ValueError for wrong shapes or a bad K; returns ``success=False`` with a message for
    problems of the data (fewer than 4 finite rows, collinear points, too few inliers, ...).
    Rows with NaN or inf are ignored (their ``inliers`` entry is False).
    """
    p2 = _as_points(points2d, 2, "points2d")
    p3 = _as_points(points3d, 3, "points3d")
    if p2.shape[0] != p3.shape[0]:
        raise ValueError(f"points2d and points3d must have the same number of rows, "
                         f"got {p2.shape[0]} and {p3.shape[0]}")
    Km = _as_matrix(K, (3, 3), "K")
    r = native_module().estimate_pose(p2, p3, Km, _options(options, overrides))
    return RansacResult(inliers=r.inliers_per_frame[0], **_fields(r))


def estimate_pose_multi(frames: Sequence[Frame | tuple], options: RansacOptions | None = None,
                        **overrides: object) -> MultiFrameResult:
    """Pose of the current camera from correspondences of several frames (a generalized camera).

    Each frame is a :class:`Frame` or a tuple ``(points2d, points3d, K, T_cur_from_frame)``
    where ``T_cur_from_frame`` (4x4) maps that frame's camera coordinates into the current
    camera's (identity for the current frame itself). Minimal samples are drawn within one
    frame; scoring and refinement use all frames. Returns the current camera's ``T_c2w``.
    """
    if len(frames) == 0:
        raise ValueError("estimate_pose_multi needs at least one frame")
    converted = []
    for i, f in enumerate(frames):
        if isinstance(f, Frame):
            f = (f.points2d, f.points3d, f.K, f.T_cur_from_frame)
        if len(f) != 4:
            raise ValueError(f"frame {i}: expected (points2d, points3d, K, T_cur_from_frame)")
        p2 = _as_points(f[0], 2, f"frame {i}: points2d")
        p3 = _as_points(f[1], 3, f"frame {i}: points3d")
        if p2.shape[0] != p3.shape[0]:
            raise ValueError(f"frame {i}: points2d and points3d must have the same number of "
                             f"rows, got {p2.shape[0]} and {p3.shape[0]}")
        converted.append((p2, p3, _as_matrix(f[2], (3, 3), f"frame {i}: K"),
                          _as_matrix(f[3], (4, 4), f"frame {i}: T_cur_from_frame")))
    r = native_module().estimate_pose_multi(converted, _options(options, overrides))
    masks = list(r.inliers_per_frame)
    return MultiFrameResult(inliers=masks[0], inliers_per_frame=masks, **_fields(r))
