"""Sequence relocalization: one joint pose from the current and the last few frames' correspondences.

SeqACE's sequence mode (METHOD.md section 3) tracks landmarks with optical flow, solves a second
pose from them and blends it with the single-frame pose. Here, instead:

- the tracked landmarks give the *relative motion* between the previous and the current camera
  (visual odometry: the landmarks' previous pixels, back-projected at their depth in the previous
  camera, against their tracked pixels; their scene-coordinate errors cancel out), or the caller's
  odometry gives it (``relative_motion``);
- the inlier correspondences of the last ``multi_frames - 1`` frames are carried along with their
  relative pose to the current camera, and ONE native multi-frame RANSAC + refinement
  (``seqace_ros.ransac.estimate_pose_multi``) solves the current pose from them together with the
  current frame's correspondences;
- two poses that disagree are never averaged: the one that explains more of all the current
  correspondences (tracked landmarks and single-frame points) wins, and an unclear case is
  reported lost; known relative motion (odometry) also seeds the optical flow and gates landmarks
  and the single-frame pose;
- a clean reset on a time gap, a change of image size or camera, lost tracking, or ``reset()``:
  no landmark, image, pose or earlier frame survives it.

What that gains on real data is small: on 7-Scenes redkitchen single-frame errors are strongly
correlated from frame to frame (the map's error for a view changes slowly), so a few frames'
correspondences carry little independent information; see benchmarks/sequence_redkitchen.py.

The single-frame localizer is injected (``Relocalizer.localize`` in the application), so the
tracker can be tested on synthetic geometry.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Callable

import cv2
import numpy as np

from .. import ransac
from ..geometry import invert_pose, pose_errors, rigidity_error
from ..input_bounds import stamp_problem
from .landmarks import Landmarks, associate, disc_nms, track_klt
from .pnp import project, reprojection_errors
from .result import LOCALIZED, LOST, RelocResult

SingleFrameLocalize = Callable[[np.ndarray, np.ndarray], RelocResult]


class SequencePath(str, Enum):
    """Which decision produced a sequence-mode result."""

    FUSED = "fused"  # one multi-frame estimate from this and earlier frames
    TRACKING = "tracking"  # earlier frames alone (the single-frame pose was rejected or missing)
    SINGLE = "single"  # the single-frame pose
    RESTART = "restart"  # the single-frame pose, landmarks and earlier frames dropped
    LOST = "lost"


@dataclass(frozen=True)
class SequenceDecision:
    """The decision behind a sequence-mode result (``RelocResult.decision``)."""

    path: SequencePath
    frames: int  # frames whose correspondences the pose comes from
    landmarks: int  # landmarks tracked into this frame
    disagreements: int  # single-frame poses rejected in a row so far


@dataclass(frozen=True)
class SequenceConfig:
    # Optical flow. SeqACE: 21x21 window, 3 levels, 10 iterations / eps 0.03 on 480 px high images.
    # The same physical window (11x11) on a half-size image costs a third as much, and on
    # redkitchen gave the same relative motion and recall (benchmarks/README.md). Set
    # tracking_max_height=480, klt_window=21 for SeqACE's exact setting.
    klt_window: int = 11
    klt_levels: int = 3
    klt_iterations: int = 10
    klt_epsilon: float = 0.03
    max_fb_error_px: float = 1.0  # forward-backward consistency of a track, input-image pixels
    tracking_max_height: int = 240  # images are tracked at most this high
    # poses (SeqACE: >= 20 inliers to accept, > 50 single-frame inliers to add landmarks)
    min_inliers: int = 20
    min_update_inliers: int = 50
    # Relative motion from the tracked landmarks (when no odometry is given): RANSAC + Huber
    # refinement at this threshold on the landmarks back-projected into the previous camera.
    motion_threshold_px: float = 2.0
    # The joint estimate: native multi-frame RANSAC over the current frame's correspondences and
    # the inliers of the last multi_frames - 1 frames (at most history_points each), with the
    # relative poses from visual or given odometry. joint_landmarks adds the tracked landmarks as
    # one more view. Thresholds and loss are RansacOptions' defaults, as for a single frame.
    multi_frames: int = 2
    history_points: int = 400
    joint_landmarks: bool = False
    ransac: ransac.RansacOptions = field(default_factory=lambda: ransac.RansacOptions(
        max_iterations=1000, time_budget_ms=20.0, num_threads=1))
    # landmark update (SeqACE: 4 px reprojection gate, 5 px disc NMS, ~500 landmarks)
    update_reprojection_px: float = 4.0
    nms_radius_px: float = 5.0
    max_landmarks: int = 500
    # A landmark's 3D point is the running mean of the scene coordinates predicted for it (the
    # single-frame point re-detected within associate_px of it), over at most max_average frames.
    # 0 disables. (Maps that regress cell centres rarely re-detect a tracked point within 1.5 px,
    # so on redkitchen this almost never fires.)
    associate_px: float = 1.5
    max_average: int = 20
    # gates
    gate_translation_m: float = 0.10  # poses further apart than this are not combined
    gate_rotation_deg: float = 5.0
    support_threshold_px: float = 4.0  # inlier radius when two disagreeing poses are compared
    min_support_ratio: float = 1.25  # the winner needs this much more support, else "lost"
    max_disagreements: int = 3  # confident single-frame poses disagreeing in a row -> reset
    # odometry
    odometry_gate_px: float = 20.0  # tracked landmark vs its projection with the predicted pose
    # reset
    max_time_gap_s: float = 0.5  # a larger gap between stamps (or time going back) resets

    def __post_init__(self) -> None:
        if self.klt_window < 3 or self.klt_window % 2 == 0:
            raise ValueError(f"SequenceConfig.klt_window={self.klt_window}: use an odd size >= 3")
        if self.klt_levels < 1:
            raise ValueError(f"SequenceConfig.klt_levels={self.klt_levels}: need at least 1 level")
        if self.min_inliers < 4:
            raise ValueError(f"SequenceConfig.min_inliers={self.min_inliers}: PnP needs at least 4")
        if self.multi_frames < 1:
            raise ValueError(f"SequenceConfig.multi_frames={self.multi_frames}: need at least 1 "
                             "(the current frame)")
        if self.history_points < 4:
            raise ValueError(f"SequenceConfig.history_points={self.history_points}: need at least 4")
        problems = self.ransac.problems()
        if problems:
            raise ValueError("SequenceConfig.ransac: " + "; ".join(problems))
        for name in ("max_fb_error_px", "motion_threshold_px", "update_reprojection_px",
                     "nms_radius_px", "gate_translation_m", "gate_rotation_deg",
                     "support_threshold_px", "odometry_gate_px", "max_time_gap_s",
                     "tracking_max_height"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SequenceConfig.{name} must be positive, got {getattr(self, name)}")
        if self.min_support_ratio < 1:
            raise ValueError("SequenceConfig.min_support_ratio must be >= 1")


@dataclass
class _Frame:
    """An earlier frame's inlier correspondences and its pose relative to the current camera."""

    points2d: np.ndarray  # (n, 2) float64, that frame's pixels
    points3d: np.ndarray  # (n, 3) float64, map frame
    K: np.ndarray
    T_cur_from_frame: np.ndarray  # 4x4, that camera -> the current camera


@dataclass
class _Estimate:
    """A pose with the inlier masks over the correspondences it was solved from."""

    pose_c2w: np.ndarray | None
    covariance: np.ndarray | None = None
    num_inliers: int = 0
    obs_inliers: np.ndarray | None = None  # mask over the single-frame points (None: not used)
    lm_inliers: np.ndarray | None = None  # mask over the tracked landmarks (None: not used)
    reprojection_error_px: float | None = None
    message: str = ""


@dataclass
class _State:
    """Everything carried from one frame to the next; a reset replaces it wholesale."""

    landmarks: Landmarks = field(default_factory=Landmarks.empty)
    track_image: np.ndarray | None = None  # gray image (tracking scale) the landmarks refer to
    image_size: tuple[int, int] | None = None  # (width, height) of the input images
    K: np.ndarray | None = None
    pose_c2w: np.ndarray | None = None  # last reported pose
    stamp: float | None = None
    disagreements: int = 0
    history: deque = field(default_factory=deque)  # _Frame, newest last


class SequenceRelocalizer:
    """Relocalize the frames of a video one by one, using the frames before them.

    ``single_frame_localize(image, K) -> RelocResult`` gives the per-frame pose; its result must
    carry ``points2d``/``points3d``/``inliers`` for landmarks and the joint estimate.
    """

    def __init__(self, single_frame_localize: SingleFrameLocalize,
                 config: SequenceConfig = SequenceConfig()):
        if not callable(single_frame_localize):
            raise TypeError("single_frame_localize must be callable as f(image, K) -> RelocResult, e.g. "
                            "Relocalizer(...).localize")
        self.single_frame_localize = single_frame_localize
        self.config = config
        self._describe_single = None
        # Refines the pose this mode decides on (``around`` sets it when the map has keyframes).
        self.refine_pose = None  # callable(result, image, K, timing) or None
        self._state = _State()

    @classmethod
    def around(cls, relocalizer, config: SequenceConfig = SequenceConfig()) -> "SequenceRelocalizer":
        """Sequence mode over a single-frame relocalizer, which also describes it."""
        if getattr(relocalizer, "refiner", None) is not None:
            # Refine once, the pose this mode decides on, not also each single-frame pose.
            seq = cls(lambda image, K: relocalizer.localize(image, K, refine=False), config)
            seq.refine_pose = relocalizer.refine
        else:
            seq = cls(relocalizer.localize, config)
        seq._describe_single = relocalizer.describe
        return seq

    # -- public API -----------------------------------------------------------------------------

    def describe(self) -> dict:
        single = self._describe_single() if self._describe_single is not None else {}
        return {**single, "mode": "sequence", "sequence": asdict(self.config)}

    def reset(self) -> None:
        """Forget all landmarks, earlier frames, images, poses and stamps (start of a new sequence)."""
        self._state = _State()

    @property
    def num_landmarks(self) -> int:
        return len(self._state.landmarks)

    @property
    def num_history_frames(self) -> int:
        """Earlier frames whose correspondences take part in the next joint estimate."""
        return len(self._state.history)

    @property
    def landmarks(self) -> Landmarks:
        """A copy of the current landmarks (for debug drawing)."""
        return self._state.landmarks.copy()

    def localize(self, image: np.ndarray, K: np.ndarray, stamp: float | None = None,
                 relative_motion: np.ndarray | None = None) -> RelocResult:
        """Pose of ``image`` (uint8 BGR or gray) with intrinsics ``K``.

        ``stamp``: capture time in seconds; a gap above ``max_time_gap_s`` (or time going back)
        starts a new sequence. ``relative_motion``: 4x4 rigid transform from the previous camera
        frame to this one (X_current = relative_motion @ X_previous, i.e.
        inv(T_c2w_current) @ T_c2w_previous), e.g. from wheel odometry; optional. Without it the
        relative motion is measured from the tracked landmarks.
        """
        t_start = time.perf_counter()
        gray, K = self._check_input(image, K)
        problem = stamp_problem(stamp)
        if problem is not None:
            raise ValueError(problem)
        rel = self._check_motion(relative_motion)
        notes = self._maybe_reset(gray, K, stamp)
        st = self._state

        t0 = time.perf_counter()
        obs = self.single_frame_localize(image, K)
        t_single = time.perf_counter() - t0
        if not isinstance(obs, RelocResult):
            raise TypeError(f"single_frame_localize returned {type(obs).__name__}, expected RelocResult")

        t0 = time.perf_counter()
        scale = min(1.0, self.config.tracking_max_height / gray.shape[0])
        small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale,
                                                     interpolation=cv2.INTER_AREA)
        odometry = rel is not None and st.pose_c2w is not None
        predicted = st.pose_c2w @ invert_pose(rel) if odometry else None
        tracked, prev_xy, track_note = self._track(small, scale, K, predicted)
        t_track = time.perf_counter() - t0

        t0 = time.perf_counter()
        motion_note = ""
        if not odometry:
            rel, motion_note = self._visual_motion(tracked, prev_xy, K)
            if rel is not None:
                predicted = st.pose_c2w @ invert_pose(rel)
        self._carry_history(rel)
        t_motion = time.perf_counter() - t0

        t0 = time.perf_counter()
        result, path, est = self._decide(obs, tracked, K, predicted, odometry,
                                         notes + track_note + motion_note)
        frames = (1 + len(st.history) if path is SequencePath.FUSED
                  else 0 if path is SequencePath.LOST else 1)
        result.decision = SequenceDecision(path, frames, len(tracked), st.disagreements)
        t_multi = time.perf_counter() - t0
        refine_ms = {}
        if self.refine_pose is not None and result.localized:
            self.refine_pose(result, image, K, refine_ms)
        elif path in (SequencePath.SINGLE, SequencePath.RESTART):
            result.refinement = obs.refinement  # refined (or not) by the single-frame localizer

        t0 = time.perf_counter()
        self._update(result, path, obs, est, tracked, K, small, stamp, gray.shape)
        t_update = time.perf_counter() - t0

        total = time.perf_counter() - t_start
        timing = {k: v for k, v in obs.timing_ms.items() if k != "total"}
        if refine_ms:
            timing["refine"] = timing.get("refine", 0.0) + refine_ms["refine"]
        timing.update(single_frame=1000 * t_single, tracking=1000 * t_track,
                      motion=1000 * t_motion, multi_frame=1000 * t_multi, update=1000 * t_update,
                      sequence_overhead=1000 * (total - t_single), total=1000 * total)
        result.timing_ms = timing
        return result

    # -- input checks and resets -----------------------------------------------------------------

    @staticmethod
    def _check_input(image: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            raise ValueError(f"image must be a uint8 numpy array, got "
                             f"{getattr(image, 'dtype', type(image).__name__)}")
        if image.ndim == 3 and image.shape[2] == 3:
            gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        elif image.ndim == 2:
            gray = image
        else:
            raise ValueError(f"image must be (H, W) gray or (H, W, 3) BGR, got shape {image.shape}")
        if min(gray.shape) < 32:
            raise ValueError(f"image of {gray.shape[1]}x{gray.shape[0]} px is too small to track")
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ValueError(f"K must be a finite 3x3 intrinsics matrix with positive focal lengths, "
                             f"got {K.tolist() if K.size <= 9 else K.shape}")
        return gray, K

    @staticmethod
    def _check_motion(rel: np.ndarray | None) -> np.ndarray | None:
        if rel is None:
            return None
        rel = np.asarray(rel, dtype=np.float64)
        if rel.shape != (4, 4) or not np.all(np.isfinite(rel)):
            raise ValueError(f"relative_motion must be a finite 4x4 transform, got shape {rel.shape}")
        if not np.allclose(rel[3], [0, 0, 0, 1]) or rigidity_error(rel) > 1e-3:
            raise ValueError("relative_motion is not a rigid transform (rotation part not orthonormal "
                             "or last row not [0 0 0 1])")
        return rel

    def _maybe_reset(self, gray: np.ndarray, K: np.ndarray, stamp: float | None) -> str:
        st, cfg = self._state, self.config
        size = (gray.shape[1], gray.shape[0])
        why = ""
        if stamp is not None and st.stamp is not None:
            gap = float(stamp) - st.stamp
            if gap < 0:
                why = f"time went back by {-gap:.3f} s"
            elif gap > cfg.max_time_gap_s:
                why = f"time gap {gap:.2f} s > {cfg.max_time_gap_s} s"
        if st.image_size is not None and st.image_size != size:
            why = why or f"image size changed {st.image_size} -> {size}"
        if st.K is not None and not np.allclose(st.K, K, rtol=1e-6, atol=1e-6):
            why = why or "camera intrinsics changed"
        if why:
            self.reset()
            return f"reset ({why}); "
        return ""

    # -- tracking and relative motion ------------------------------------------------------------

    def _track(self, small: np.ndarray, scale: float, K: np.ndarray, predicted: np.ndarray | None
               ) -> tuple[Landmarks, np.ndarray, str]:
        """Landmarks moved into the current image (only those that tracked well), and their
        positions in the previous image."""
        st, cfg = self._state, self.config
        lm = st.landmarks
        if len(lm) == 0 or st.track_image is None:
            return Landmarks.empty(), np.zeros((0, 2), np.float32), ""
        guess = None
        if predicted is not None:
            uv, front = project(lm.xyz, K, predicted)
            guess = np.where(front[:, None], uv, lm.xy) * scale
        xy, ok = track_klt(st.track_image, small, lm.xy * scale, guess, window=cfg.klt_window,
                           levels=cfg.klt_levels, iterations=cfg.klt_iterations,
                           epsilon=cfg.klt_epsilon, max_fb_error_px=cfg.max_fb_error_px * scale)
        xy = xy / scale
        note = ""
        if predicted is not None:
            uv, front = project(lm.xyz, K, predicted)
            near = front & (np.linalg.norm(uv - xy, axis=1) < cfg.odometry_gate_px)
            note = f"odometry gate dropped {int((ok & ~near).sum())} tracks; "
            ok &= near
        out = lm.subset(ok)
        out.xy = xy[ok].astype(np.float32)
        return out, lm.xy[ok].astype(np.float32), note

    def _visual_motion(self, tracked: Landmarks, prev_xy: np.ndarray, K: np.ndarray
                       ) -> tuple[np.ndarray | None, str]:
        """Relative motion previous camera -> current camera from the tracked landmarks, or None.

        Each landmark is back-projected through its previous pixel at its depth in the previous
        camera (from its 3D point and the previous pose): those points fit the previous image
        exactly, so the scene-coordinate errors drop out and only depth errors remain, which
        matter little for the small motion between frames.
        """
        st, cfg = self._state, self.config
        if st.pose_c2w is None or len(tracked) < max(cfg.min_inliers, 6):
            return None, (f"no relative motion ({len(tracked)} landmarks tracked); "
                          if len(st.landmarks) else "")
        T_w2p = invert_pose(st.pose_c2w)
        z = tracked.xyz @ T_w2p[2, :3] + T_w2p[2, 3]
        front = z > 1e-3
        rays = np.c_[prev_xy.astype(np.float64), np.ones(len(prev_xy))] @ np.linalg.inv(K).T
        X_prev = rays * np.where(front, z, 1.0)[:, None]
        X_prev[~front] = np.nan  # ignored by the native RANSAC
        res = ransac.estimate_pose(
            tracked.xy, X_prev, K, cfg.ransac, inlier_threshold_px=cfg.motion_threshold_px,
            refine_threshold_px=cfg.motion_threshold_px, loss_scale_px=0.25 * cfg.motion_threshold_px,
            min_inliers=cfg.min_inliers)
        if not res.success:
            return None, f"no relative motion ({res.message}); "
        # estimate_pose's "world" is the previous camera: T_c2w maps current -> previous camera
        return invert_pose(np.asarray(res.T_c2w)), ""

    def _carry_history(self, rel: np.ndarray | None) -> None:
        """Move the earlier frames' relative poses to the current camera (or drop them)."""
        st = self._state
        if rel is None:
            st.history.clear()
            return
        for f in st.history:
            f.T_cur_from_frame = rel @ f.T_cur_from_frame

    # -- estimates ------------------------------------------------------------------------------

    def _solve(self, obs: RelocResult | None, tracked: Landmarks, K: np.ndarray,
               use_landmarks: bool) -> _Estimate:
        """Native multi-frame RANSAC over (the current frame's correspondences,) the earlier frames'
        inliers (and the tracked landmarks, already in the current image)."""
        cfg, st = self.config, self._state
        views, kinds = [], []
        if obs is not None and len(obs.points2d):
            views.append((np.asarray(obs.points2d, np.float64).reshape(-1, 2),
                          np.asarray(obs.points3d, np.float64).reshape(-1, 3), K, np.eye(4)))
            kinds.append("obs")
        for f in reversed(st.history):
            views.append((f.points2d, f.points3d, f.K, f.T_cur_from_frame))
            kinds.append("frame")
        if use_landmarks and len(tracked):
            views.append((tracked.xy.astype(np.float64), tracked.xyz, K, np.eye(4)))
            kinds.append("landmarks")
        if not views or sum(len(v[0]) for v in views) < cfg.min_inliers:
            return _Estimate(None, message="too few correspondences for the joint estimate")
        res = ransac.estimate_pose_multi(views, cfg.ransac, min_inliers=cfg.min_inliers)
        masks = [np.asarray(m, bool) for m in res.inliers_per_frame]
        est = _Estimate(np.asarray(res.T_c2w) if res.success else None,
                        np.asarray(res.covariance) if res.success else None, int(res.num_inliers),
                        reprojection_error_px=float(res.reprojection_error_px) if res.success else None,
                        message=f"{len(views)} views, {int(res.num_inliers)} inliers")
        if "obs" in kinds:
            est.obs_inliers = masks[kinds.index("obs")]
        if "landmarks" in kinds:
            est.lm_inliers = masks[kinds.index("landmarks")]
        if not res.success:
            est.message = f"joint estimate failed ({res.message})"
        return est

    def _sequence_estimate(self, tracked: Landmarks, K: np.ndarray) -> _Estimate:
        """The pose from earlier frames alone (their correspondences moved by the relative motion,
        and the tracked landmarks): used when the single-frame pose is missing or rejected."""
        est = self._solve(None, tracked, K, use_landmarks=True)
        # The earlier frames fit whatever pose the relative motion puts them at (wrong odometry
        # included): the current image must confirm it through its tracked landmarks.
        n_lm = 0 if est.lm_inliers is None else int(est.lm_inliers.sum())
        if est.pose_c2w is not None and n_lm < self.config.min_inliers:
            return _Estimate(None, message=f"{n_lm} tracked landmarks support the pose from earlier "
                                           f"frames, need {self.config.min_inliers}")
        return est

    # -- decision ------------------------------------------------------------------------------

    def _observation_usable(self, obs: RelocResult) -> bool:
        return (obs.status == LOCALIZED and obs.pose_c2w is not None
                and obs.num_inliers >= self.config.min_inliers)

    def _support(self, pose: np.ndarray, tracked: Landmarks, obs: RelocResult, K: np.ndarray) -> int:
        """How many of all current correspondences (landmarks + single-frame points) a pose explains."""
        tau = self.config.support_threshold_px
        n = 0
        if len(tracked):
            n += int((reprojection_errors(tracked.xy, tracked.xyz, K, pose) < tau).sum())
        if len(obs.points2d):
            n += int((reprojection_errors(np.asarray(obs.points2d, np.float64),
                                          np.asarray(obs.points3d, np.float64), K, pose) < tau).sum())
        return n

    def _disagree(self, T_a: np.ndarray, T_b: np.ndarray) -> tuple[bool, str]:
        dt, dr = pose_errors(T_a, T_b)
        bad = dt > self.config.gate_translation_m or dr > self.config.gate_rotation_deg
        return bad, f"{dt * 100:.1f} cm / {dr:.1f} deg"

    def _decide(self, obs: RelocResult, tracked: Landmarks, K: np.ndarray,
                predicted: np.ndarray | None, odometry: bool, notes: str
                ) -> tuple[RelocResult, SequencePath, _Estimate | None]:
        """(result, path, estimate): which SequencePath applies, its result and its estimate."""
        st, cfg = self._state, self.config
        obs_ok = self._observation_usable(obs)
        if obs_ok and predicted is not None:
            bad, by = self._disagree(obs.pose_c2w, predicted)
            if bad and odometry:
                # The prediction wins, but not forever: a wrong pose carried by odometry would
                # reject every correct single-frame pose after it.
                if obs.num_inliers > cfg.min_update_inliers:
                    st.disagreements += 1
                if st.disagreements >= cfg.max_disagreements:
                    return self._single(obs, tracked, notes + (
                        f"single-frame pose {by} from the odometry prediction; "
                        f"{st.disagreements} disagreements in a row: landmarks dropped, "
                        "single-frame pose")), SequencePath.RESTART, None
                obs_ok = False
                notes += f"single-frame pose rejected: {by} from the odometry prediction; "
            elif bad:
                return self._resolve_disagreement(obs, tracked, K, predicted,
                                                  notes + f"poses disagree by {by}; ")
        if obs_ok and predicted is not None:
            st.disagreements = 0
            est = self._solve(obs, tracked, K, use_landmarks=cfg.joint_landmarks)
            # the joint pose explains the most correspondences of all views; it is kept when it
            # stays near the single-frame pose or near the prediction
            if est.pose_c2w is not None and not (self._disagree(est.pose_c2w, obs.pose_c2w)[0]
                                                 and self._disagree(est.pose_c2w, predicted)[0]):
                n_frames = 1 + len(st.history)
                return self._make(est, obs, tracked, notes + (
                    f"fused (multi-frame RANSAC, {n_frames} frames"
                    f"{' + landmarks' if cfg.joint_landmarks else ''}, {est.num_inliers} inliers)")), \
                    SequencePath.FUSED, est
            notes += (f"{est.message}; " if est.pose_c2w is None else
                      "joint estimate far from both the single-frame and the predicted pose; ")
            return self._single(obs, tracked, notes + "single-frame only"), SequencePath.SINGLE, None
        if predicted is not None:
            est = self._sequence_estimate(tracked, K)
            if est.pose_c2w is not None:
                return self._make(est, obs, tracked, notes + "tracking only"), \
                    SequencePath.TRACKING, est
            notes += f"tracking failed ({est.message}); "
        elif len(tracked):
            notes += "tracking failed (no relative motion); "
        if obs_ok:
            return self._single(obs, tracked, notes + "single-frame only"), SequencePath.SINGLE, None
        why = obs.message or f"single-frame {obs.status} with {obs.num_inliers} inliers"
        return RelocResult(LOST, message=notes + f"lost: no trustworthy pose ({why})",
                           points2d=obs.points2d, points3d=obs.points3d, inliers=obs.inliers), \
            SequencePath.LOST, None

    def _resolve_disagreement(self, obs: RelocResult, tracked: Landmarks, K: np.ndarray,
                              predicted: np.ndarray, notes: str
                              ) -> tuple[RelocResult, SequencePath, _Estimate | None]:
        cfg, st = self.config, self._state
        s_obs = self._support(obs.pose_c2w, tracked, obs, K)
        s_seq = self._support(predicted, tracked, obs, K)
        notes += f"support single-frame {s_obs} vs tracking {s_seq}; "
        confident_obs = obs.num_inliers > cfg.min_update_inliers
        if s_seq >= cfg.min_support_ratio * max(s_obs, 1):
            st.disagreements = st.disagreements + 1 if confident_obs else 0
            if st.disagreements >= cfg.max_disagreements:
                # the landmarks may be consistently wrong: start over from the single-frame pose
                return self._single(obs, tracked, notes + f"{st.disagreements} disagreements in a "
                                    "row: landmarks dropped, single-frame pose"), SequencePath.RESTART, None
            est = self._sequence_estimate(tracked, K)
            if est.pose_c2w is not None and not self._disagree(est.pose_c2w, predicted)[0]:
                return self._make(est, obs, tracked,
                                  notes + "single-frame pose rejected, tracking pose"), SequencePath.TRACKING, est
            return RelocResult(LOST, message=notes + "lost: single-frame pose rejected, tracking "
                               f"failed ({est.message})", points2d=obs.points2d,
                               points3d=obs.points3d, inliers=obs.inliers), SequencePath.LOST, None
        if s_obs >= cfg.min_support_ratio * max(s_seq, 1):
            return self._single(obs, tracked, notes + "tracking pose rejected, landmarks dropped"), \
                SequencePath.RESTART, None
        return RelocResult(LOST, message=notes + "lost: ambiguous, neither pose clearly better",
                           points2d=obs.points2d, points3d=obs.points3d, inliers=obs.inliers), \
            SequencePath.LOST, None

    def _single(self, obs: RelocResult, tracked: Landmarks, message: str) -> RelocResult:
        est = _Estimate(obs.pose_c2w, obs.covariance, obs.num_inliers,
                        obs_inliers=np.asarray(obs.inliers, bool) if len(obs.inliers) == len(obs.points2d)
                        else None, reprojection_error_px=obs.reprojection_error_px)
        return self._make(est, obs, tracked, message)

    @staticmethod
    def _make(est: _Estimate, obs: RelocResult, tracked: Landmarks, message: str
              ) -> RelocResult:
        """A localized result; its points are the single-frame points followed by the landmarks."""
        n_obs, n_lm = len(obs.points2d), len(tracked)
        obs_inl = est.obs_inliers if est.obs_inliers is not None and len(est.obs_inliers) == n_obs \
            else np.zeros(n_obs, bool)
        lm_inl = est.lm_inliers if est.lm_inliers is not None and len(est.lm_inliers) == n_lm \
            else np.zeros(n_lm, bool)
        n_total = n_obs + n_lm
        # Counts over this frame's points only, so they agree with ``inliers`` (the joint estimate's
        # total, earlier frames included, is in the message).
        n_in = int(obs_inl.sum() + lm_inl.sum())
        return RelocResult(
            LOCALIZED, pose_c2w=np.asarray(est.pose_c2w, np.float64).copy(),
            covariance=None if est.covariance is None else np.asarray(est.covariance),
            num_inliers=n_in,
            inlier_ratio=n_in / n_total if n_total else 0.0,
            reprojection_error_px=est.reprojection_error_px,
            points2d=np.concatenate([np.asarray(obs.points2d, np.float32).reshape(-1, 2),
                                     np.asarray(tracked.xy, np.float32).reshape(-1, 2)]),
            points3d=np.concatenate([np.asarray(obs.points3d, np.float32).reshape(-1, 3),
                                     np.asarray(tracked.xyz, np.float32).reshape(-1, 3)]),
            inliers=np.concatenate([obs_inl, lm_inl]), message=message)

    # -- state update --------------------------------------------------------------------------

    def _average(self, keep: Landmarks, new: Landmarks) -> tuple[Landmarks, Landmarks]:
        """Fold fresh predictions of the same points into tracked landmarks; (landmarks, the new
        points that matched none)."""
        i, j = associate(keep.xy, new.xy, self.config.associate_px)
        if len(i):
            n = np.minimum(keep.count[i], self.config.max_average - 1).astype(np.float64)[:, None]
            keep.xyz[i] = (n * keep.xyz[i] + new.xyz[j]) / (n + 1)
            keep.count[i] += 1
        unused = np.ones(len(new), bool)
        unused[j] = False
        return keep, new.subset(unused)

    def _update(self, result: RelocResult, path: SequencePath, obs: RelocResult, est: _Estimate | None,
                tracked: Landmarks, K: np.ndarray, small: np.ndarray, stamp: float | None,
                shape: tuple[int, ...]) -> None:
        """Carry the landmarks that fit the reported pose into the current image, add new ones
        and this frame's correspondences from the single-frame inliers, or reset when lost."""
        cfg = self.config
        if result.status != LOCALIZED or path is SequencePath.RESTART:
            self.reset()  # nothing that led here may be reused
            self._state.stamp = None if stamp is None else float(stamp)
            self._state.image_size, self._state.K = (shape[1], shape[0]), K.copy()
            if result.status != LOCALIZED:
                return
        st = self._state
        T = result.pose_c2w

        keep = Landmarks.empty()
        if path in (SequencePath.FUSED, SequencePath.TRACKING) and len(tracked):
            err = reprojection_errors(tracked.xy, tracked.xyz, K, T)
            good = err < cfg.update_reprojection_px
            keep = tracked.subset(good)
            keep.age = keep.age + 1
            keep.error = err[good].astype(np.float32)
            # older, better landmarks first: they win the spacing competition
            keep = keep.subset(np.lexsort((keep.error, -keep.age)))

        new = Landmarks.empty()
        if path in (SequencePath.FUSED, SequencePath.SINGLE, SequencePath.RESTART) \
                and obs.num_inliers > cfg.min_update_inliers \
                and len(obs.points2d):
            p2 = np.asarray(obs.points2d, np.float64).reshape(-1, 2)
            p3 = np.asarray(obs.points3d, np.float64).reshape(-1, 3)
            inl = np.asarray(obs.inliers, bool) if len(obs.inliers) == len(p2) else np.ones(len(p2), bool)
            err = reprojection_errors(p2, p3, K, T)
            w, h = shape[1], shape[0]
            inside = (p2[:, 0] >= 0) & (p2[:, 1] >= 0) & (p2[:, 0] <= w - 1) & (p2[:, 1] <= h - 1)
            ok = inl & (err < cfg.update_reprojection_px) & inside
            idx = np.flatnonzero(ok)
            idx = idx[np.argsort(err[idx], kind="stable")]
            new = Landmarks(p2[idx].astype(np.float32), p3[idx], np.zeros(len(idx), np.int32),
                            err[idx].astype(np.float32), np.ones(len(idx), np.int32))
            if cfg.associate_px > 0 and len(keep):
                keep, new = self._average(keep, new)
            # this frame's inliers (at the joint threshold) join the next joint estimates
            if cfg.multi_frames > 1:
                hist = np.flatnonzero(inl & (err < cfg.ransac.inlier_threshold_px))
                if len(hist) > cfg.history_points:
                    hist = hist[np.linspace(0, len(hist) - 1, cfg.history_points).astype(np.int64)]
                if len(hist) >= cfg.min_inliers:
                    st.history.append(_Frame(p2[hist], p3[hist], K.copy(), np.eye(4)))
                    while len(st.history) > cfg.multi_frames - 1:
                        st.history.popleft()

        merged = Landmarks.concat(keep, new)
        merged = merged.subset(disc_nms(merged.xy, cfg.nms_radius_px, cfg.max_landmarks))
        st.landmarks = merged
        st.track_image = small
        st.pose_c2w = T.copy()
        st.image_size, st.K = (shape[1], shape[0]), K.copy()
        st.stamp = None if stamp is None else float(stamp)
        if path is not SequencePath.TRACKING:
            st.disagreements = 0
