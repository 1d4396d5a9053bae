"""Single-frame relocalization: salient cells -> scene coordinates -> native RANSAC -> pose.

Per image: encode, keep the top-K salient cells (SeqACE's keypoint selection), run the head on
those cells only (the dense head is the slow part on a CPU), then RANSAC + refinement. When too few
inliers support the pose, retry with all cells (the dense path); if that fails too the frame is
reported ``lost`` rather than given a confident wrong pose.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..encoder import PIXEL_CENTER_OFFSET, build_encoder, resolve_device
from ..head import HeadTrunk
from ..inference import BACKENDS, compile_for_cpu
from ..input_bounds import (DEFAULT_MAX_ASPECT_RATIO, DEFAULT_MAX_IMAGE_PIXELS, ImageLimits, array_problem,
                            intrinsics_problem)
from ..mapfile import SceneMap, check_encoder, load_map
from ..precision import autocast_dtype
from .result import LOCALIZED, LOST, RelocResult


# Below this the stride-8 grid has too few cells for RANSAC to work with.
MIN_IMAGE_HEIGHT = 96


@dataclass
class RelocConfig:
    num_cells: int = 1000  # top-K salient cells (SeqACE: ~1000 keypoints)
    # Gates against chance fits: on blank or noise images a 10 px RANSAC finds ~60 inliers at a
    # 5-13% ratio; real redkitchen frames had >= 406 inliers and a >= 0.37 ratio (top-1000 cells).
    min_inliers: int = 100  # fewer: try all cells, then report lost
    min_inlier_ratio: float = 0.2
    max_median_error_px: float = 6.0  # inlier reprojection error above this: not trusted
    dense_fallback: bool = True
    # Degenerate support is not a pose: a blank or featureless image gives near-identical features,
    # hence near-identical scene points, which a 10 px refinement can still "fit".
    min_distinct_points: int = 30  # inlier scene points distinct at 1 cm
    min_spread: float = 0.05  # inlier pixels' std in x and y, as a fraction of the image size
    # RANSAC (native): thresholds in pixels of the input image
    inlier_threshold_px: float = 10.0
    # 10 px, not SeqACE's 4: measured on redkitchen (e1 map, 250 frames) 4 px -> 97.2/87.6/50.0/12.8,
    # 10 px -> 99.2/92.0/55.2/18.0 recall at 10cm/5cm/2cm/1cm (benchmarks/README.md).
    refine_threshold_px: float = 10.0
    max_iterations: int = 1000  # adaptive stopping ends far earlier on good frames
    time_budget_ms: float = 30.0
    ransac_threads: int = 2
    scoring: str = "soft"
    seed: int = 0
    precision: str = "auto"  # head precision: auto (bf16 where the CPU has it) | fp32 | bf16 | fp16
    # Encoder precision: auto = bf16 on CPUs with bf16 units (measured on redkitchen: as accurate
    # as fp32, encoder ~25% faster), fp16 on CUDA, else fp32.
    encoder_precision: str = "auto"
    # Rows the image is resized to before the encoder; None: the map's (what it was trained at).
    # Smaller is faster: 480-row redkitchen maps read at 384 rows cost 11-14% less per frame and
    # ~1 point at 5cm/5deg (mean of 3 maps); at 320 rows recall fell sharply (benchmarks/README.md,
    # "lower resolution").
    image_height: int | None = None
    # Inference backend of the encoder and the head: auto (OpenVINO on a CPU where it is installed,
    # else torch) | torch | openvino (seqace_ros/inference.py).
    backend: str = "auto"
    threads: int = 0  # CPU threads of the networks; 0: torch's current thread count
    # Input bounds (input_bounds.py): larger or thinner images are refused, not resized into
    # seconds of encoder work.
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_image_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO
    extra: dict = field(default_factory=dict)

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(self.max_image_pixels, self.max_image_aspect_ratio)

    def validate(self) -> "RelocConfig":
        problems = []
        if self.num_cells < 4:
            problems.append(f"num_cells {self.num_cells} < 4")
        if self.min_inliers < 4:
            problems.append(f"min_inliers {self.min_inliers} < 4")
        if self.inlier_threshold_px <= 0 or self.refine_threshold_px <= 0:
            problems.append("RANSAC thresholds must be positive")
        if self.scoring not in ("soft", "hard"):
            problems.append(f"scoring {self.scoring!r} is not 'soft' or 'hard'")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            problems.append(f"precision {self.precision!r} is not auto/fp32/bf16/fp16")
        if self.encoder_precision not in ("auto", "fp32", "bf16", "fp16"):
            problems.append(f"encoder_precision {self.encoder_precision!r} is not auto/fp32/bf16/fp16")
        if self.backend not in BACKENDS:
            problems.append(f"backend {self.backend!r} is not one of {'/'.join(BACKENDS)}")
        if self.threads < 0:
            problems.append(f"threads {self.threads} < 0 (0: torch's current thread count)")
        if self.image_height is not None and self.image_height < MIN_IMAGE_HEIGHT:
            problems.append(f"image_height {self.image_height} < {MIN_IMAGE_HEIGHT} (None: the map's own)")
        limits_problem = self.limits.problem()
        if limits_problem is not None:
            problems.append(limits_problem)
        if problems:
            raise ValueError("invalid relocalization settings: " + "; ".join(problems))
        return self


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
                                                precision=self.config.encoder_precision,
                                                backend=self.config.backend, threads=self.config.threads)
        # Refuse a map made for another encoder or with other weights before it is used.
        check_encoder(scene_map.metadata, self.encoder.describe())
        self.map = scene_map
        self.head = scene_map.head.to(self.device).eval()
        self.amp = autocast_dtype(self.config.precision, self.device)
        self._trunk = None  # the head's compiled trunk when the backend is not torch
        if getattr(self.encoder, "backend", "torch") == "openvino":
            # Any row count traces the same graph (rows are a dynamic axis); dense mode asks for 1e9.
            example = torch.zeros(min(self.config.num_cells, 1024), self.head.in_dim)
            self._trunk = compile_for_cpu(HeadTrunk(self.head), example,
                                          "bf16" if self.amp == torch.bfloat16 else "fp32",
                                          self.config.threads or torch.get_num_threads(),
                                          dynamic_axes=(0,))
        self.use_keypoints = scene_map.metadata.get("targets", "keypoint") == "keypoint"
        from .. import ransac  # noqa: F401  (fail early with the build hint if the module is missing)
        self._ransac = ransac

    @classmethod
    def from_file(cls, path: str | Path, config: RelocConfig | None = None,
                  device: str | torch.device | None = "auto") -> "Relocalizer":
        return cls(load_map(path), config, device)

    def _ransac_options(self) -> dict:
        c = self.config
        return dict(inlier_threshold_px=c.inlier_threshold_px, refine_threshold_px=c.refine_threshold_px,
                    max_iterations=c.max_iterations, time_budget_ms=c.time_budget_ms,
                    num_threads=c.ransac_threads, scoring=c.scoring, seed=c.seed,
                    min_inliers=c.min_inliers)

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
                 relative_motion: np.ndarray | None = None) -> RelocResult:
        """Pose of ``image`` (uint8 BGR or gray, any size) with intrinsics ``K`` (3x3, that size).
        ``stamp`` and ``relative_motion`` are accepted for the Localizer interface and unused."""
        problem = array_problem(image, self.config.limits)
        if problem is None:
            problem = intrinsics_problem(K, image.shape[1], image.shape[0])
        if problem is not None:
            raise ValueError(problem)
        K = np.asarray(K, dtype=np.float64)
        timing: dict[str, float] = {}
        t0 = time.perf_counter()
        enc = self.encoder.encode(image)
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
        timing["total"] = (time.perf_counter() - t0) * 1000.0
        result.timing_ms = timing
        return result

    def _solve(self, enc, cells: torch.Tensor, K: np.ndarray, timing: dict) -> RelocResult:
        t0 = time.perf_counter()
        pts3d = self.regress(enc.features[cells]).cpu().numpy().astype(np.float64)
        pos = enc.keypoints if self.use_keypoints else enc.centers
        pts2d = pos[cells].cpu().numpy().astype(np.float64) - PIXEL_CENTER_OFFSET
        t1 = time.perf_counter()
        timing["head"] = timing.get("head", 0.0) + (t1 - t0) * 1000.0
        res = self._ransac.estimate_pose(pts2d, pts3d, K, **self._ransac_options())
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
                "precision": str(self.amp or "fp32"), "encoder": self.encoder.describe(),
                "backend": "openvino" if self._trunk is not None else "torch"}
