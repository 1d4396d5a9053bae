"""Sequence relocalization: a single-frame pose fused with a pose from tracked landmarks.

SeqACE's sequence mode (METHOD.md section 3), with these changes:
- poses are fused on SE(3) with covariance (or inlier-count) weights, not by blending rotation
  vectors; two poses that disagree are never averaged: the one that explains more of all the
  correspondences (landmarks and single-frame points) wins, and an unclear case is reported lost;
- known relative motion (odometry) predicts the pose, seeds the optical flow, and gates landmarks
  and the single-frame pose;
- a clean reset on a time gap, a change of image size or camera, lost tracking, or ``reset()``:
  no landmark, image or pose survives it;
- the landmark positions move to the current image whenever tracking succeeds, so the optical flow
  always spans one frame;
- a landmark's 3D point is the running mean of the scene coordinates predicted for it in the
  frames where its keypoint is re-detected, not one frame's prediction.

The single-frame localizer is injected (``Relocalizer.localize`` in the application), so the
tracker can be tested on synthetic geometry. PnP on the landmarks goes through ``solve_pnp``,
replaceable by the native RANSAC.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from ..geometry import invert_pose, pose_errors, rigidity_error
from .landmarks import Landmarks, associate, disc_nms, track_klt
from .pnp import PnPResult, project, reprojection_errors, solve_pnp
from .pose_fusion import count_covariance, fuse_poses, valid_covariance
from .result import LOCALIZED, LOST, RelocResult

SingleFrameLocalize = Callable[[np.ndarray, np.ndarray], RelocResult]
PnPSolver = Callable[..., PnPResult]


@dataclass(frozen=True)
class SequenceConfig:
    # Optical flow. SeqACE: 21x21 window, 3 levels, 10 iterations / eps 0.03 on 480 px high images.
    # With the forward-backward check that costs ~11 ms of CPU for 500 points at 640x480; the same
    # physical window (11x11) on a half-size image costs ~3.3 ms and moves the tracks by 0.15 px
    # median (measured on redkitchen), far below the scene-coordinate noise. Set
    # tracking_max_height=480, klt_window=21 for SeqACE's exact setting.
    klt_window: int = 11
    klt_levels: int = 3
    klt_iterations: int = 10
    klt_epsilon: float = 0.03
    max_fb_error_px: float = 1.0  # forward-backward consistency of a track, input-image pixels
    tracking_max_height: int = 240  # images are tracked at most this high
    # poses (SeqACE: >= 20 inliers to accept, > 50 single-frame inliers to add landmarks)
    min_inliers: int = 20
    ransac_threshold_px: float = 8.0
    refine_threshold_px: float = 4.0
    min_update_inliers: int = 50
    # landmark update (SeqACE: 4 px reprojection gate, 5 px disc NMS, ~500 landmarks)
    update_reprojection_px: float = 4.0
    nms_radius_px: float = 5.0
    max_landmarks: int = 500
    # A landmark's 3D point is the running mean of the scene coordinates predicted for it (the
    # single-frame point re-detected within associate_px of it), over at most max_average frames:
    # one frame's prediction errors are correlated, several frames' much less. 0 disables.
    associate_px: float = 1.5
    max_average: int = 20
    # Fusion and gates. "auto": covariances when both poses have one, else inlier counts. On
    # redkitchen (a quick CPU map) both covariances were 4-10x optimistic, the tracking one more so,
    # and "inliers" scored within noise of "auto" (+2/+3 points at 5/2 cm, -1.8 at 1 cm).
    fusion: str = "auto"
    gate_translation_m: float = 0.10  # poses further apart than this are not averaged
    gate_rotation_deg: float = 5.0
    support_threshold_px: float = 4.0  # inlier radius when two disagreeing poses are compared
    min_support_ratio: float = 1.25  # the winner needs this much more support, else "lost"
    max_disagreements: int = 3  # confident single-frame poses disagreeing in a row -> reset
    # odometry
    odometry_gate_px: float = 20.0  # tracked landmark vs its projection with the predicted pose
    # reset
    max_time_gap_s: float = 0.5  # a larger gap between stamps (or time going back) resets

    def __post_init__(self) -> None:
        if self.fusion not in ("auto", "covariance", "inliers"):
            raise ValueError(f"SequenceConfig.fusion={self.fusion!r}; choose 'auto', 'covariance' "
                             "or 'inliers'")
        if self.klt_window < 3 or self.klt_window % 2 == 0:
            raise ValueError(f"SequenceConfig.klt_window={self.klt_window}: use an odd size >= 3")
        if self.klt_levels < 1:
            raise ValueError(f"SequenceConfig.klt_levels={self.klt_levels}: need at least 1 level")
        if self.min_inliers < 4:
            raise ValueError(f"SequenceConfig.min_inliers={self.min_inliers}: PnP needs at least 4")
        for name in ("max_fb_error_px", "ransac_threshold_px", "refine_threshold_px",
                     "update_reprojection_px", "nms_radius_px", "gate_translation_m",
                     "gate_rotation_deg", "support_threshold_px", "odometry_gate_px",
                     "max_time_gap_s", "tracking_max_height"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SequenceConfig.{name} must be positive, got {getattr(self, name)}")
        if self.min_support_ratio < 1:
            raise ValueError("SequenceConfig.min_support_ratio must be >= 1")


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


class SequenceRelocalizer:
    """Relocalize the frames of a video one by one, using the frames before them.

    ``single_frame_localize(image, K) -> RelocResult`` gives the per-frame pose; its result must
    carry ``points2d``/``points3d``/``inliers`` for landmarks to be created.
    """

    def __init__(self, single_frame_localize: SingleFrameLocalize,
                 config: SequenceConfig = SequenceConfig(), pnp_solver: PnPSolver = solve_pnp):
        if not callable(single_frame_localize):
            raise TypeError("single_frame_localize must be callable as f(image, K) -> RelocResult, e.g. "
                            "Relocalizer(...).localize")
        self.single_frame_localize = single_frame_localize
        self.config = config
        self.pnp_solver = pnp_solver
        self._state = _State()

    # -- public API -----------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget all landmarks, images, poses and stamps (start of a new sequence)."""
        self._state = _State()

    @property
    def num_landmarks(self) -> int:
        return len(self._state.landmarks)

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
        inv(T_c2w_current) @ T_c2w_previous), e.g. from wheel odometry; optional.
        """
        t_start = time.perf_counter()
        gray, K = self._check_input(image, K)
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
        predicted = None
        if rel is not None and st.pose_c2w is not None:
            predicted = st.pose_c2w @ invert_pose(rel)
        tracked, track_note = self._track(small, scale, K, predicted)
        t_track = time.perf_counter() - t0

        t0 = time.perf_counter()
        track_pose = self._pose_from_landmarks(tracked, K, predicted)
        t_pnp = time.perf_counter() - t0

        t0 = time.perf_counter()
        result, path = self._decide(obs, track_pose, tracked, K, predicted, notes + track_note)
        self._update(result, path, obs, track_pose, tracked, K, small, stamp, gray.shape)
        t_update = time.perf_counter() - t0

        total = time.perf_counter() - t_start
        timing = {k: v for k, v in obs.timing_ms.items() if k != "total"}
        timing.update(single_frame=1000 * t_single, tracking=1000 * t_track, tracking_pnp=1000 * t_pnp,
                      fusion_update=1000 * t_update, sequence_overhead=1000 * (total - t_single),
                      total=1000 * total)
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

    # -- tracking ------------------------------------------------------------------------------

    def _track(self, small: np.ndarray, scale: float, K: np.ndarray, predicted: np.ndarray | None
               ) -> tuple[Landmarks, str]:
        """Landmarks moved into the current image (only those that tracked well)."""
        st, cfg = self._state, self.config
        lm = st.landmarks
        if len(lm) == 0 or st.track_image is None:
            return Landmarks.empty(), ""
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
        return out, note

    def _pose_from_landmarks(self, tracked: Landmarks, K: np.ndarray, predicted: np.ndarray | None
                             ) -> PnPResult:
        """PnP on the tracked landmarks, seeded with the predicted pose or (no odometry) the last
        one: at video rate the last pose usually explains most tracks, and RANSAC is skipped."""
        cfg = self.config
        guess = predicted if predicted is not None else self._state.pose_c2w
        if len(tracked) < cfg.min_inliers:
            return PnPResult(None, np.zeros(len(tracked), bool),
                             message=f"{len(tracked)} landmarks tracked")
        return self.pnp_solver(tracked.xy, tracked.xyz, K, ransac_threshold_px=cfg.ransac_threshold_px,
                               refine_threshold_px=cfg.refine_threshold_px,
                               min_inliers=cfg.min_inliers, initial_pose_c2w=guess)

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

    def _decide(self, obs: RelocResult, trk: PnPResult, tracked: Landmarks, K: np.ndarray,
                predicted: np.ndarray | None, notes: str) -> tuple[RelocResult, str]:
        """Choose or fuse the poses: (result, path) with path one of "fused", "tracking",
        "single", "restart" (single-frame pose, landmarks dropped) or "lost"."""
        st = self._state
        obs_ok = self._observation_usable(obs)
        trk_ok = trk.pose_c2w is not None
        if obs_ok and predicted is not None:
            bad, by = self._disagree(obs.pose_c2w, predicted)
            if bad:
                obs_ok = False
                notes += f"single-frame pose rejected: {by} from the odometry prediction; "
        if not trk_ok and len(tracked):
            notes += f"tracking failed ({trk.message}); "

        if obs_ok and trk_ok:
            bad, by = self._disagree(obs.pose_c2w, trk.pose_c2w)
            if bad:
                return self._resolve_disagreement(obs, trk, tracked, K, notes + f"poses disagree by {by}; ")
            st.disagreements = 0
            return self._fused(obs, trk, tracked, K, notes), "fused"
        if trk_ok:
            return self._make("tracking", trk.pose_c2w, trk.covariance, trk.num_inliers, len(tracked),
                              obs, trk, tracked, notes + "tracking only"), "tracking"
        if obs_ok:
            return self._make("single", obs.pose_c2w, obs.covariance, obs.num_inliers,
                              len(obs.points2d), obs, trk, tracked,
                              notes + "single-frame only"), "single"
        why = obs.message or f"single-frame {obs.status} with {obs.num_inliers} inliers"
        return RelocResult(LOST, message=notes + f"lost: no trustworthy pose ({why})",
                           points2d=obs.points2d, points3d=obs.points3d, inliers=obs.inliers), "lost"

    def _resolve_disagreement(self, obs: RelocResult, trk: PnPResult, tracked: Landmarks,
                              K: np.ndarray, notes: str) -> tuple[RelocResult, str]:
        cfg, st = self.config, self._state
        s_obs = self._support(obs.pose_c2w, tracked, obs, K)
        s_trk = self._support(trk.pose_c2w, tracked, obs, K)
        notes += f"support single-frame {s_obs} vs tracking {s_trk}; "
        confident_obs = obs.num_inliers > cfg.min_update_inliers
        if s_trk >= cfg.min_support_ratio * max(s_obs, 1):
            st.disagreements = st.disagreements + 1 if confident_obs else 0
            if st.disagreements >= cfg.max_disagreements:
                # the landmarks may be consistently wrong: start over from the single-frame pose
                return self._make("restart", obs.pose_c2w, obs.covariance, obs.num_inliers,
                                  len(obs.points2d), obs, trk, tracked,
                                  notes + f"{st.disagreements} disagreements in a row: landmarks "
                                          "dropped, single-frame pose"), "restart"
            return self._make("tracking", trk.pose_c2w, trk.covariance, trk.num_inliers, len(tracked),
                              obs, trk, tracked,
                              notes + "single-frame pose rejected, tracking pose"), "tracking"
        if s_obs >= cfg.min_support_ratio * max(s_trk, 1):
            return self._make("restart", obs.pose_c2w, obs.covariance, obs.num_inliers,
                              len(obs.points2d), obs, trk, tracked,
                              notes + "tracking pose rejected, landmarks dropped"), "restart"
        return RelocResult(LOST, message=notes + "lost: ambiguous, neither pose clearly better",
                           points2d=obs.points2d, points3d=obs.points3d, inliers=obs.inliers), "lost"

    def _fused(self, obs: RelocResult, trk: PnPResult, tracked: Landmarks, K: np.ndarray,
               notes: str) -> RelocResult:
        cfg = self.config
        have_cov = valid_covariance(obs.covariance) and valid_covariance(trk.covariance)
        use_cov = cfg.fusion == "covariance" or (cfg.fusion == "auto" and have_cov)
        if use_cov and have_cov:
            T, cov = fuse_poses(trk.pose_c2w, trk.covariance, obs.pose_c2w, obs.covariance)
            how = "covariance-weighted"
        else:
            T, _ = fuse_poses(trk.pose_c2w, count_covariance(trk.num_inliers), obs.pose_c2w,
                              count_covariance(obs.num_inliers))
            cov = trk.covariance if valid_covariance(trk.covariance) else (
                obs.covariance if valid_covariance(obs.covariance) else None)
            how = "inlier-weighted"
        message = (f"fused ({how}, tracking {trk.num_inliers} + single-frame {obs.num_inliers} "
                   "inliers)")
        return self._make("fused", T, cov, trk.num_inliers + obs.num_inliers,
                          len(obs.points2d) + len(tracked), obs, trk, tracked, notes + message)

    @staticmethod
    def _make(path: str, pose: np.ndarray, cov: np.ndarray | None, n_inliers: int, n_total: int,
              obs: RelocResult, trk: PnPResult, tracked: Landmarks, message: str) -> RelocResult:
        """A localized result; its points are the single-frame points followed by the landmarks."""
        lm_xy = tracked.xy
        ratio = n_inliers / n_total if n_total else 0.0
        trk_inl = trk.inliers if len(trk.inliers) == len(lm_xy) else np.zeros(len(lm_xy), bool)
        obs_inl = np.asarray(obs.inliers, bool) if len(obs.inliers) == len(obs.points2d) else \
            np.zeros(len(obs.points2d), bool)
        return RelocResult(
            LOCALIZED, pose_c2w=pose, covariance=None if cov is None else np.asarray(cov),
            num_inliers=int(n_inliers), inlier_ratio=float(min(ratio, 1.0)),
            reprojection_error_px=trk.reprojection_error_px if path == "tracking"
            else obs.reprojection_error_px,
            points2d=np.concatenate([np.asarray(obs.points2d, np.float32).reshape(-1, 2),
                                     np.asarray(lm_xy, np.float32).reshape(-1, 2)]),
            points3d=np.concatenate([np.asarray(obs.points3d, np.float32).reshape(-1, 3),
                                     np.asarray(tracked.xyz, np.float32).reshape(-1, 3)]),
            inliers=np.concatenate([obs_inl, trk_inl]), message=message)

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

    def _update(self, result: RelocResult, path: str, obs: RelocResult, trk: PnPResult,
                tracked: Landmarks, K: np.ndarray, small: np.ndarray, stamp: float | None,
                shape: tuple[int, ...]) -> None:
        """Carry the landmarks that fit the reported pose into the current image, add new ones
        from the single-frame inliers, or reset when lost."""
        cfg = self.config
        if result.status != LOCALIZED:
            self.reset()  # nothing that led here may be reused
            self._state.stamp = None if stamp is None else float(stamp)
            self._state.image_size, self._state.K = (shape[1], shape[0]), K.copy()
            return
        st = self._state
        T = result.pose_c2w

        keep = Landmarks.empty()
        if path in ("fused", "tracking") and len(tracked):
            err = reprojection_errors(tracked.xy, tracked.xyz, K, T)
            good = trk.inliers & (err < cfg.update_reprojection_px) if len(trk.inliers) == len(tracked) \
                else err < cfg.update_reprojection_px
            keep = tracked.subset(good)
            keep.age = keep.age + 1
            keep.error = err[good].astype(np.float32)
            # older, better landmarks first: they win the spacing competition
            keep = keep.subset(np.lexsort((keep.error, -keep.age)))

        new = Landmarks.empty()
        if path in ("fused", "single", "restart") and obs.num_inliers > cfg.min_update_inliers \
                and len(obs.points2d):
            p2 = np.asarray(obs.points2d, np.float64).reshape(-1, 2)
            p3 = np.asarray(obs.points3d, np.float64).reshape(-1, 3)
            inl = np.asarray(obs.inliers, bool) if len(obs.inliers) == len(p2) else np.ones(len(p2), bool)
            err = reprojection_errors(p2, p3, K, T)
            w, h = shape[1], shape[0]
            ok = inl & (err < cfg.update_reprojection_px) & (p2[:, 0] >= 0) & (p2[:, 1] >= 0) \
                & (p2[:, 0] <= w - 1) & (p2[:, 1] <= h - 1)
            idx = np.flatnonzero(ok)
            idx = idx[np.argsort(err[idx], kind="stable")]
            new = Landmarks(p2[idx].astype(np.float32), p3[idx], np.zeros(len(idx), np.int32),
                            err[idx].astype(np.float32), np.ones(len(idx), np.int32))
            if cfg.associate_px > 0 and len(keep):
                keep, new = self._average(keep, new)

        merged = Landmarks.concat(keep, new)
        merged = merged.subset(disc_nms(merged.xy, cfg.nms_radius_px, cfg.max_landmarks))
        st.landmarks = merged
        st.track_image = small
        st.pose_c2w = T.copy()
        st.image_size, st.K = (shape[1], shape[0]), K.copy()
        st.stamp = None if stamp is None else float(stamp)
        if path != "tracking":
            st.disagreements = 0
