"""Mapping settings. Defaults are the CPU profile (2 cores, about 6 minutes for 500 frames); the
``gpu`` profile follows ACE's original scale."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from ..errors import SeqaceError
from ..inference import BACKENDS
from ..sequence_boundaries import BoundaryConfig
from ..settings import MATCHERS, PRECISIONS

MATCHING_RANSAC = ("magsac", "ransac")


class MatchingError(SeqaceError, ValueError):
    """Unusable input to the matcher; the message says what to change."""


@dataclass(frozen=True)
class MatchingConfig:
    """Settings of the frame-keyframe matcher. All but ``use_cache`` and ``device`` are part of the
    cache key."""

    matcher: str = "mnn"  # "mnn" (mutual nearest neighbour) or "lighterglue"
    max_keypoints: int = 1000  # per image, best XFeat scores first (SeqACE: 1000 SuperPoint points)
    detection_threshold: float = 0.05  # XFeat keypoint heatmap threshold
    min_cosine: float = 0.0  # mnn: drop mutual pairs less similar than this (-1 keeps all)
    lighterglue_min_confidence: float = 0.1
    subpixel: bool = True  # refine keypoints on the heatmap (about 0.15 px better repeatability)
    max_image_side: int = 1024  # larger images are downscaled for detection; positions are not
    ransac: str = "magsac"  # "magsac" (cv2.USAC_MAGSAC) or "ransac" (cv2.FM_RANSAC)
    ransac_threshold_px: float = 1.5
    ransac_confidence: float = 0.999
    min_inliers: int = 100  # a frame-keyframe pair with fewer (or equal) inliers is a failure
    # Of the keyframe's keypoints; fewer inliers -> new keyframe. SeqACE uses 0.5 with SuperPoint +
    # LightGlue; XFeat + MNN keeps fewer matches even between adjacent frames, so 0.5 made keyframes
    # of most redkitchen frames, two frames apart (benchmarks/README.md, "frame-keyframe matching").
    min_inlier_fraction: float = 0.4
    max_mean_displacement: float = 0.15  # of min(H, W); larger -> new keyframe
    # A frame that becomes a keyframe because its overlap got small still has good matches to the
    # previous keyframe; SeqACE drops them, keeping them links consecutive keyframes.
    keep_keyframe_matches: bool = True
    boundaries: BoundaryConfig = field(default_factory=BoundaryConfig)
    use_pose_boundaries: bool = True  # also cut where the known poses jump
    use_cache: bool = True
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...

    def __post_init__(self) -> None:
        if self.matcher not in MATCHERS:
            raise MatchingError(f"MatchingConfig.matcher={self.matcher!r}; choose one of {MATCHERS}")
        if self.ransac not in MATCHING_RANSAC:
            raise MatchingError(f"MatchingConfig.ransac={self.ransac!r}; choose one of {MATCHING_RANSAC}")
        if self.max_keypoints < 8:
            raise MatchingError(f"MatchingConfig.max_keypoints={self.max_keypoints}: need at least 8 "
                                "for a fundamental matrix")
        for name in ("ransac_threshold_px", "max_mean_displacement", "detection_threshold",
                     "max_image_side"):
            if not getattr(self, name) > 0:
                raise MatchingError(f"MatchingConfig.{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.ransac_confidence < 1:
            raise MatchingError(f"MatchingConfig.ransac_confidence must be in (0, 1), got "
                                f"{self.ransac_confidence}")
        if not 0 <= self.min_inlier_fraction <= 1:
            raise MatchingError(f"MatchingConfig.min_inlier_fraction must be in [0, 1], got "
                                f"{self.min_inlier_fraction}")
        if self.min_inliers < 7:
            raise MatchingError(f"MatchingConfig.min_inliers={self.min_inliers}: a fundamental matrix "
                                "needs at least 7; SeqACE uses 100")

    def cache_settings(self) -> dict:
        """The settings that change the result (the cache key's part)."""
        d = asdict(self)
        d.pop("use_cache")
        d.pop("device")
        if not self.use_pose_boundaries:
            d["boundaries"].pop("translation_m")
            d["boundaries"].pop("rotation_deg")
            d["boundaries"].pop("pose_step_factor")
        return d



@dataclass
class MappingConfig:
    # Encoder
    encoder: str = "xfeat"
    image_height: int = 480  # images are rescaled to this height (ACE: 480)
    # Head (the map): width and depth trade speed for accuracy
    head_width: int = 512
    head_blocks: int = 2  # residual blocks of 3 layers (ACE: 2)
    # Training buffer
    buffer_size: int = 1_500_000  # feature samples (ACE: 8M)
    samples_per_view: int = 1200  # cells taken from each augmented view
    # Of those, the share taken from the most salient cells: relocalization uses the top-K salient
    # cells, so the head's capacity goes there (with milder augmentation, better than ACE's recipe
    # at 0.5 at every threshold on redkitchen, same budget: benchmarks/README.md).
    salient_share: float = 0.75
    # Augmentation. ACE: scale 2/3..3/2, rotation 15 deg; with a CPU's training budget that much
    # augmentation underfits (mapping-frame reprojection errors stay high), so milder.
    augment: bool = True
    scale_range: tuple[float, float] = (0.8, 1.25)
    rotation_deg: float = 5.0
    brightness: float = 0.1
    contrast: float = 0.1
    # 2D target of a cell: "center" (ACE: cell centre) or "keypoint" (XFeat's sub-cell keypoint;
    # measured worse on redkitchen: the stride-8 feature cannot resolve where in the cell it lies)
    targets: str = "center"
    # Optimisation (ACE: AdamW, one-cycle, max lr 5e-3, batch 5120, ~25k iterations)
    iterations: int = 4000
    batch_size: int = 2048
    learning_rate: float = 5e-3
    weight_decay: float = 0.01
    # Reprojection loss (ACE): tanh hinge with a threshold annealed from tau_max+tau_min to tau_min
    tau_max: float = 50.0
    tau_min: float = 1.0
    depth_min: float = 0.1
    depth_max: float = 1000.0
    max_reprojection_error: float = 1000.0
    proxy_depth: float = 10.0
    # Sequence (SeqACE cross-frame) loss; off = exactly the single-frame recipe. Samples on a
    # verified frame-keyframe match are also reprojected into the keyframe, weighted by
    # sequence_weight. sequence_mean: the keyframe term is averaged over the matched samples of a
    # batch ("tracked", SeqACE: 0.5 * 1/N_track * sum) or over the whole batch ("batch").
    sequence: bool = False
    sequence_weight: float = 0.5
    sequence_mean: str = "tracked"
    # Matched samples: "keypoint" = frame target moved to the match's exact keypoint, keyframe
    # target = its match; "transfer" = frame target unchanged, keyframe target = match + (target -
    # keypoint) (see cross_frame.attach_keyframe_targets). "transfer" keeps every sample's target
    # consistent with the cell centres the relocalizer pairs cells with. On redkitchen the two
    # differ within training noise (benchmarks/README.md).
    sequence_targets: str = "transfer"
    # Runtime
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    # Encoder backend while the buffer is built (seqace_ros/inference.py); training is always torch.
    backend: str = "auto"
    num_threads: int | None = None  # torch threads; None = leave as is
    # On a CPU, each training batch runs as this many equal parts on single-core worker threads
    # (one per torch thread) instead of OpenMP splitting every matrix product: as fast alone, and
    # a worker whose core another process shares takes fewer parts (mapping/micro_batches.py,
    # benchmarks/README.md, "Session 11"). Used with 2 to micro_batches / 2 torch threads, not
    # with the sequence loss or torchrun; otherwise (or 1) OpenMP as before.
    micro_batches: int = 4
    seed: int = 2089
    map_points: int = 20000  # scene points stored in the map for visualisation
    # Refinement keyframes (refinement/keyframe_tracking.py): every keyframe_stride-th mapping frame
    # with its corners tracked into its neighbours and triangulated with the known poses.
    # Frame-keyframe matching for the cross-frame loss (sequence=True); its device "auto" follows
    # the mapping device.
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    keyframes: bool = True
    keyframe_stride: int = 2  # 3: a third smaller map, a point less within 1 cm (benchmarks/README.md, "Session 10")
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MappingConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown mapping settings: {', '.join(sorted(unknown))}")
        d = dict(d)
        if isinstance(d.get("matching"), dict):  # as to_dict wrote it
            m = dict(d["matching"])
            if isinstance(m.get("boundaries"), dict):
                m["boundaries"] = BoundaryConfig(**m["boundaries"])
            d["matching"] = MatchingConfig(**m)
        return cls(**d)

    def validate(self) -> "MappingConfig":
        problems = []
        if self.head_width < 16:
            problems.append(f"head_width {self.head_width} < 16")
        if self.iterations < 1:
            problems.append(f"iterations {self.iterations} < 1")
        if self.keyframe_stride < 1:
            problems.append(f"keyframe_stride {self.keyframe_stride} < 1")
        if self.batch_size < 16:
            problems.append(f"batch_size {self.batch_size} < 16")
        if not 1 <= self.micro_batches <= self.batch_size:
            problems.append(f"micro_batches {self.micro_batches} is not between 1 and batch_size")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            problems.append(f"scale_range {self.scale_range} is not 0 < min <= max")
        if self.targets not in ("keypoint", "center"):
            problems.append(f"targets {self.targets!r} is not 'keypoint' or 'center'")
        if self.precision not in PRECISIONS:
            problems.append(f"precision {self.precision!r} is not {'/'.join(PRECISIONS)}")
        if self.backend not in BACKENDS:
            problems.append(f"backend {self.backend!r} is not {'/'.join(BACKENDS)}")
        if not 0.0 <= self.salient_share <= 1.0:
            problems.append(f"salient_share {self.salient_share} outside [0, 1]")
        if self.sequence_weight < 0:
            problems.append(f"sequence_weight {self.sequence_weight} < 0")
        if self.sequence_targets not in ("keypoint", "transfer"):
            problems.append(f"sequence_targets {self.sequence_targets!r} is not 'keypoint' or 'transfer'")
        if self.sequence_mean not in ("tracked", "batch"):
            problems.append(f"sequence_mean {self.sequence_mean!r} is not 'tracked' or 'batch'")
        if problems:
            raise ValueError("invalid mapping settings: " + "; ".join(problems))
        return self


PROFILES = {
    "cpu": MappingConfig(),
    # A third of the default's mapping time; once refined, nearly as precise at 2 cm and less at
    # 1 cm (benchmarks/README.md, "Mapping recipes, judged after the refinement").
    "fast": MappingConfig(head_width=256, buffer_size=600_000, iterations=2000),
    # The cpu recipe trained 3x longer. Recall keeps rising with iterations (benchmarks/README.md,
    # "Training longer"), so map with this when the minutes are available.
    "quality": MappingConfig(iterations=12_000),
    # ACE's original scale and augmentation, for a GPU (benchmarks/README.md, "On a GPU").
    "gpu": MappingConfig(buffer_size=8_000_000, samples_per_view=1024, iterations=25_000,
                         batch_size=5120, num_threads=None, scale_range=(2.0 / 3.0, 1.5),
                         rotation_deg=15.0, salient_share=0.5),
}


def profile(name: str, **overrides) -> MappingConfig:
    if name not in PROFILES:
        raise ValueError(f"unknown mapping profile {name!r}; choose one of {', '.join(PROFILES)}")
    return replace(PROFILES[name], **overrides).validate()
