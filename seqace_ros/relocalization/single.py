"""Single-frame relocalization: salient cells -> scene coordinates -> native RANSAC -> pose.

Per image: encode, keep the top-K salient cells (SeqACE's keypoint selection), run the head on
those cells only (the dense head is the slow part on a CPU), then RANSAC + refinement. When too few
inliers support the pose, retry with all cells (the dense path); if that fails too the frame is
reported ``lost`` rather than given a confident wrong pose.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from ..encoder import PIXEL_CENTER_OFFSET, build_encoder, resolve_device, to_gray
from ..head import HeadTrunk
from ..inference import compile_model, convert, quantize_int8
from ..input_bounds import array_problem, intrinsics_problem
from ..mapfile import SceneMap, check_encoder, load_map
from ..precision import autocast_dtype
from ..settings import MIN_IMAGE_HEIGHT, RelocConfig  # noqa: F401  (re-exported)
from .result import LOCALIZED, LOST, RelocResult

# Fewer calibration rows than this give int8 ranges that do not represent the map.
MIN_CALIBRATION_ROWS = 1024
# Keyframe images an int8 encoder is calibrated on (spread over the map).
MAX_CALIBRATION_IMAGES = 50


class Relocalizer:
    """Localizes single images against a map."""

    def __init__(self, scene_map: SceneMap, config: RelocConfig | None = None,
                 device: str | torch.device | None = "auto", encoder=None) -> None:
        self.config = (config or RelocConfig()).validate()
        self.device = resolve_device(device)
        enc_meta = scene_map.metadata.get("encoder", {})
        height = self.config.image_height or enc_meta.get("image_height") or 480
        self.encoder = encoder or build_encoder(scene_map.encoder_name, device=self.device,
                                                image_height=height,
                                                precision=("auto" if self.config.encoder_precision == "int8"
                                                           else self.config.encoder_precision),
                                                backend=self.config.backend, threads=self.config.threads)
        # Refuse a map made for another encoder or with other weights before it is used.
        check_encoder(scene_map.metadata, self.encoder.describe())
        self.map = scene_map
        self.head = scene_map.head.to(self.device).eval()
        self.amp = autocast_dtype(self.config.precision, self.device)
        self._trunk = None  # the head's compiled trunk when the backend is not torch
        openvino = getattr(self.encoder, "backend", "torch") == "openvino"
        int8 = self.config.precision == "int8"
        if int8 and not openvino:
            raise ValueError("head precision int8 runs on the OpenVINO backend (a CPU with openvino "
                             "installed): use backend auto or openvino, or precision bf16")
        if int8 and len(scene_map.calibration) < MIN_CALIBRATION_ROWS:
            raise ValueError("head precision int8 calibrates on the map's calibration features, which "
                             "this map lacks (made before int8 came): rebuild it with `seqace map`, or "
                             "use precision bf16")
        if openvino:
            # Any row count traces the same graph (rows are a dynamic axis); dense mode asks for 1e9.
            example = torch.zeros(min(self.config.num_cells, 1024), self.head.in_dim)
            model = convert(HeadTrunk(self.head), example, dynamic_axes=(0,))
            if int8:
                model = quantize_int8(model, scene_map.calibration)
            self._trunk = compile_model(model, "bf16" if self.amp == torch.bfloat16 else "fp32",
                                        self.config.threads or torch.get_num_threads())
        self.use_keypoints = scene_map.metadata.get("targets", "keypoint") == "keypoint"
        self.refiner = None
        int8_encoder = self.config.encoder_precision == "int8"
        keyframes = []
        if (self.config.refine or int8_encoder) and scene_map.keyframes:
            from ..mapfile import MapFileError
            from ..refinement.keyframe_tracking import keyframes_from_arrays
            try:
                keyframes = keyframes_from_arrays(scene_map.keyframes)
            except ValueError as exc:
                raise MapFileError(f"{exc}; rebuild the map with `seqace map`, or turn refinement off") from exc
        if int8_encoder:
            if encoder is not None:
                raise ValueError("encoder precision int8 quantizes the encoder the relocalizer builds; "
                                 "do not pass one")
            if not keyframes:
                raise ValueError("encoder precision int8 calibrates on the map's keyframe images, which this "
                                 "map lacks: add them with `seqace keyframes MAP SCENE`, or use bf16")
            step = max(1, len(keyframes) // MAX_CALIBRATION_IMAGES)
            self.encoder.quantize_int8([kf.image for kf in keyframes[::step]])
        if self.config.refine and keyframes:
            from ..refinement.keyframe_tracking import KeyframeRefiner
            self.refiner = KeyframeRefiner(keyframes, self.config.tracking, threads=self.config.ransac.num_threads)
        from .. import ransac  # noqa: F401  (fail early with the build hint if the module is missing)
        self._ransac = ransac

    @classmethod
    def from_file(cls, path: str | Path, config: RelocConfig | None = None,
                  device: str | torch.device | None = "auto") -> "Relocalizer":
        return cls(load_map(path), config, device)

    def _ransac_options(self):
        return replace(self.config.ransac, min_inliers=self.config.min_inliers)

    @torch.no_grad()
    def regress(self, features: torch.Tensor) -> torch.Tensor:
        """(N, C) encoder features -> (N, 3) scene coordinates (fp32)."""
        if self._trunk is not None:
            (hidden,) = self._trunk(features.numpy())
            return self.head.decode(torch.from_numpy(hidden))
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            return self.head(features).float()

    def reset(self) -> None:
        """Nothing is carried between frames (the Localizer interface)."""

    @torch.no_grad()
    def localize(self, image: np.ndarray, K: np.ndarray, *, stamp: float | None = None,
                 relative_motion: np.ndarray | None = None, refine: bool = True) -> RelocResult:
        """Pose of ``image`` (uint8 BGR or gray, any size) with intrinsics ``K`` (3x3, that size).
        ``stamp`` and ``relative_motion`` are accepted for the Localizer interface and unused.
        ``refine=False`` skips the keyframe refinement for this call (sequence mode refines the
        pose it decides on instead)."""
        problem = array_problem(image, self.config.limits)
        if problem is None:
            problem = intrinsics_problem(K, image.shape[1], image.shape[0])
        if problem is not None:
            raise ValueError(problem)
        K = np.asarray(K, dtype=np.float64)
        timing: dict[str, float] = {}
        t0 = time.perf_counter()
        gray = to_gray(image)  # once: the encoder and the refinement both take it
        enc = self.encoder.encode(gray)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # CUDA runs asynchronously: time the encoder, not its launch
        t1 = time.perf_counter()
        timing["encoder"] = (t1 - t0) * 1000.0
        valid = torch.nonzero(enc.valid).squeeze(1)
        k = min(self.config.num_cells, valid.numel())
        sel = valid[torch.topk(enc.saliency[valid], k).indices]
        result = self._solve(enc, sel, K, timing)
        if (not result.localized and self.config.dense_fallback and valid.numel() > k):
            dense = self._solve(enc, valid, K, timing)
            dense.message = "dense fallback: " + dense.message
            if dense.localized or dense.num_inliers > result.num_inliers:
                result = dense
        if refine and result.localized and self.refiner is not None:
            self.refine(result, gray, K, timing)
        timing["total"] = (time.perf_counter() - t0) * 1000.0
        result.timing_ms = timing
        return result

    @torch.no_grad()
    def scene_coordinates(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The map's scene coordinates for every cell of ``image``: pixels (M, 2) in the image's
        own coordinates and world points (M, 3)."""
        enc = self.encoder.encode(image)
        valid = torch.nonzero(enc.valid).squeeze(1)
        pos = enc.keypoints if self.use_keypoints else enc.centers
        return ((pos[valid].cpu().numpy() - PIXEL_CENTER_OFFSET).astype(np.float64),
                self.regress(enc.features[valid]).cpu().numpy().astype(np.float64))

    def refine(self, result: RelocResult, image: np.ndarray, K: np.ndarray, timing: dict | None = None) -> None:
        """Replace ``result``'s regressed pose by the keyframe-tracked one where that is trusted
        (``result.refinement`` says what happened either way)."""
        inl = np.asarray(result.inliers, bool)
        support = ((result.points2d[inl], result.points3d[inl], self.config.ransac.inlier_threshold_px)
                   if len(inl) and inl.any() else None)
        r = self.refiner.refine(to_gray(image), K, result.pose_c2w, seed=self.config.ransac.seed, support=support)
        result.refinement = r
        if timing is not None:
            timing["refine"] = r.time_ms
        if r.accepted:
            result.pose_c2w, result.covariance = r.pose_c2w, r.covariance
            result.message = (result.message + "; " if result.message else "") + r.message

    def _solve(self, enc, cells: torch.Tensor, K: np.ndarray, timing: dict) -> RelocResult:
        t0 = time.perf_counter()
        pts3d = self.regress(enc.features[cells]).cpu().numpy().astype(np.float64)
        pos = enc.keypoints if self.use_keypoints else enc.centers
        pts2d = pos[cells].cpu().numpy().astype(np.float64) - PIXEL_CENTER_OFFSET
        t1 = time.perf_counter()
        timing["head"] = timing.get("head", 0.0) + (t1 - t0) * 1000.0
        res = self._ransac.estimate_pose(pts2d, pts3d, K, self._ransac_options())
        timing["ransac"] = timing.get("ransac", 0.0) + (time.perf_counter() - t1) * 1000.0
        inliers = np.asarray(res.inliers, dtype=bool)
        n_in = int(inliers.sum())
        out = RelocResult(status=LOST, num_inliers=n_in,
                          inlier_ratio=n_in / max(len(pts2d), 1),
                          reprojection_error_px=float(res.reprojection_error_px) if n_in else None,
                          points2d=pts2d.astype(np.float32), points3d=pts3d.astype(np.float32),
                          inliers=inliers, message=str(res.message))
        if not res.success:
            return out
        if n_in < self.config.min_inliers:
            out.message = f"only {n_in} inliers (< {self.config.min_inliers})"
            return out
        if out.inlier_ratio < self.config.min_inlier_ratio:
            out.message = f"inlier ratio {out.inlier_ratio:.2f} < {self.config.min_inlier_ratio}"
            return out
        if out.reprojection_error_px is not None and out.reprojection_error_px > self.config.max_median_error_px:
            out.message = f"median inlier error {out.reprojection_error_px:.1f} px too large"
            return out
        distinct = len(np.unique(np.round(pts3d[inliers] / 0.01).astype(np.int64), axis=0))
        if distinct < self.config.min_distinct_points:
            out.message = f"degenerate: only {distinct} distinct inlier scene points"
            return out
        size = np.array([2.0 * K[0, 2], 2.0 * K[1, 2]])  # image size from the principal point
        spread = pts2d[inliers].std(axis=0) / np.maximum(size, 1.0)
        if np.any(spread < self.config.min_spread):
            out.message = f"degenerate: inliers bunched in one spot (spread {spread.min():.3f})"
            return out
        out.status = LOCALIZED
        out.pose_c2w = np.asarray(res.T_c2w, dtype=np.float64)
        out.covariance = np.asarray(res.covariance, dtype=np.float64)
        return out

    def describe(self) -> dict:
        return {"config": asdict(self.config), "device": str(self.device),
                "precision": "int8" if self.config.precision == "int8" else str(self.amp or "fp32"),
                "encoder": self.encoder.describe(),
                "backend": "openvino" if self._trunk is not None else "torch",
                "refinement": (f"{len(self.refiner.keyframes)} keyframes" if self.refiner is not None
                               else "off" if not self.config.refine else "the map has no keyframes")}
