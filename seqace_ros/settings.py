"""The relocalizer's settings, defined once and importable without torch.

``RelocConfig`` is read by the library, the ``seqace`` command (its defaults), the ROS node's
parameter table (its defaults and bounds), and through that table by config/relocalization.yaml
(checked by a test) and docs/ROS.md (generated).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .inference import BACKENDS
from .input_bounds import DEFAULT_MAX_ASPECT_RATIO, DEFAULT_MAX_IMAGE_PIXELS, ImageLimits
from .ransac import RansacOptions
from .refinement.tracking_config import TrackingConfig

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# The head and the encoder may also run in int8 (OpenVINO backend; the head calibrated on the map's
# calibration features, the encoder on its keyframe images).
HEAD_PRECISIONS = PRECISIONS + ("int8",)

# Frame-keyframe matchers of the cross-frame loss (mapping.config.MatchingConfig).
MATCHERS = ("mnn", "lighterglue")

# Below this the stride-8 grid has too few cells for RANSAC to work with.
MIN_IMAGE_HEIGHT = 96


def _single_frame_ransac() -> RansacOptions:
    # RansacOptions' thresholds (10 px; refinement at 10 px, not SeqACE's 4: better recall at every
    # threshold on redkitchen, benchmarks/README.md) and soft scoring, with a single frame's
    # budget. Adaptive stopping ends far before max_iterations on good frames.
    return RansacOptions(max_iterations=1000, time_budget_ms=30.0, num_threads=2)


@dataclass
class RelocConfig:
    num_cells: int = 1000  # top-K salient cells (SeqACE: ~1000 keypoints)
    # Gates against chance fits: blank or noise images give a few dozen inliers at a low ratio, real
    # frames several hundred (benchmarks/README.md).
    min_inliers: int = 100  # fewer: try all cells, then report lost
    min_inlier_ratio: float = 0.2
    max_median_error_px: float = 6.0  # inlier reprojection error above this: not trusted
    dense_fallback: bool = True
    # Degenerate support is not a pose: a blank or featureless image gives near-identical features,
    # hence near-identical scene points, which a 10 px refinement can still "fit".
    min_distinct_points: int = 30  # inlier scene points distinct at 1 cm
    min_spread: float = 0.05  # inlier pixels' std in x and y, as a fraction of the image size
    # The native RANSAC's options (thresholds in pixels of the input image); its min_inliers is
    # set from min_inliers above at each call.
    ransac: RansacOptions = field(default_factory=_single_frame_ransac)
    # Head precision: auto (bf16 where the CPU has it) | fp32 | bf16 | fp16 | int8 (OpenVINO backend;
    # maps made since int8 came carry the features it calibrates on).
    precision: str = "auto"
    # Encoder precision: auto = bf16 on CPUs with bf16 units (as accurate as fp32 on redkitchen and
    # faster, benchmarks/README.md), fp16 on CUDA, else fp32; int8 (OpenVINO backend, nncf),
    # calibrated on the map's keyframe images.
    encoder_precision: str = "auto"
    # Rows the image is resized to before the encoder; None: the map's (what it was trained at).
    # Fewer rows are faster and somewhat less accurate (benchmarks/README.md, "lower resolution").
    image_height: int | None = None
    # Inference backend of the encoder and the head: auto (OpenVINO on a CPU where it is installed,
    # else torch) | torch | openvino (seqace_ros/inference.py).
    backend: str = "auto"
    threads: int = 0  # CPU threads of the networks; 0: torch's current thread count
    # Input bounds (input_bounds.py): larger or thinner images are refused, not resized into
    # seconds of encoder work.
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_image_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO
    # Refine each pose by tracking the map's keyframe patches into the image (maps made with
    # keyframes; refinement/keyframe_tracking.py). Off, or a map without keyframes: the regressed pose.
    refine: bool = True
    # How the refinement tracks the keyframes (its query-time settings, defined once there).
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    extra: dict = field(default_factory=dict)

    def with_threads(self, threads: int) -> "RelocConfig":
        """The same settings on ``threads`` CPU threads (networks and RANSAC)."""
        return replace(self, threads=threads, ransac=replace(self.ransac, num_threads=threads))

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(self.max_image_pixels, self.max_image_aspect_ratio)

    def validate(self) -> "RelocConfig":
        problems = []
        if self.num_cells < 4:
            problems.append(f"num_cells {self.num_cells} < 4")
        if self.min_inliers < 4:
            problems.append(f"min_inliers {self.min_inliers} < 4")
        problems += self.ransac.problems()
        problems += self.tracking.problems()
        if self.precision not in HEAD_PRECISIONS:
            problems.append(f"precision {self.precision!r} is not {'/'.join(HEAD_PRECISIONS)}")
        if self.encoder_precision not in HEAD_PRECISIONS:
            problems.append(f"encoder_precision {self.encoder_precision!r} is not {'/'.join(HEAD_PRECISIONS)}")
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
