"""The training buffer (ACE): encoder features of many augmented views of the mapping images,
each with its 2D target pixel and the index of its image (pose and intrinsics live per image).

Targets are kept in *nominal* pixels of the image rescaled to ``image_height``, so the loss
thresholds mean the same at any input resolution.

With SeqACE's cross-frame loss (``frame_links`` given), samples on a verified frame-keyframe match
also carry the matched keyframe pixel and the keyframe's index (see cross_frame.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from ..data.scene_folder import ImageReadError, SceneFrame
from ..encoder import PIXEL_CENTER_OFFSET, XFeatEncoder, prepare_image, to_gray
from ..geometry import invert_pose
from ..input_bounds import intrinsics_problem, size_problem
from .augmentation import augment, map_points
from .config import MappingConfig
from .cross_frame import FrameLink, ViewCells, attach_keyframe_targets, keyframes_of

log = logging.getLogger(__name__)


@dataclass
class TrainingBuffer:
    features: torch.Tensor  # (N, C) half precision
    targets: torch.Tensor  # (N, 2) float32, nominal pixels of image `image_index`
    image_index: torch.Tensor  # (N,) int64
    saliency: torch.Tensor  # (N,) float32 (used to pick the map's visualisation points)
    w2c: torch.Tensor  # (M, 4, 4) float32 world -> camera per image
    K: torch.Tensor  # (M, 3, 3) float32 nominal intrinsics per image
    views: int
    skipped: list[str]
    seconds: float
    # Cross-frame (SeqACE) targets; None when sequence training is off.
    kf_targets: torch.Tensor | None = None  # (N, 2) float32, nominal pixels of image `kf_index`
    kf_index: torch.Tensor | None = None  # (N,) int64, -1 = no second target

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def matched_samples(self) -> int:
        """Samples with a second (keyframe) target."""
        return 0 if self.kf_index is None else int((self.kf_index >= 0).sum())

    def to(self, device: torch.device) -> "TrainingBuffer":
        for name in ("features", "targets", "image_index", "saliency", "w2c", "K", "kf_targets",
                     "kf_index"):
            if getattr(self, name) is not None:
                setattr(self, name, getattr(self, name).to(device))
        return self


def _load_gray(frame: SceneFrame) -> np.ndarray:
    return to_gray(frame.load_image())


def _load_usable_gray(frame: SceneFrame) -> np.ndarray:
    """The frame's gray image; ValueError when it is too small, too thin or too large to map, or its
    intrinsics do not fit its size (such a frame would train garbage, or NaN, into the head)."""
    gray = _load_gray(frame)
    h, w = gray.shape[:2]
    problem = size_problem(w, h) or intrinsics_problem(frame.intrinsics(w, h), w, h)
    if problem is None and not np.all(np.isfinite(frame.pose_c2w)):
        problem = "its pose contains NaN or inf"
    if problem is not None:
        raise ValueError(f"unusable for mapping: {problem}")
    return gray


def _nominal_cameras(frames: list[SceneFrame], shapes: dict[int, tuple[int, int]],
                     image_height: int) -> tuple[np.ndarray, np.ndarray]:
    """(K (M, 3, 3), scale (M,)) in nominal pixels for the images of known (H, W); K stays zero and
    the scale 1 for the others (they are never used)."""
    Ks = np.zeros((len(frames), 3, 3), np.float32)
    nominal_scale = np.ones(len(frames))
    for i, (H0, W0) in shapes.items():
        s = image_height / H0
        nominal_scale[i] = s
        Ks[i] = np.diag([s, s, 1.0]) @ frames[i].intrinsics(W0, H0)
    return Ks, nominal_scale


def _keyframe_shapes(frames: list[SceneFrame], links: dict[int, FrameLink], mine: list[int],
                     shapes: dict[int, tuple[int, int]]) -> dict[int, FrameLink]:
    """Add the image sizes of the keyframes ``mine`` is linked to (under torchrun a keyframe may
    belong to another rank); return the links whose keyframe is readable."""
    for k in sorted(keyframes_of(links, mine) - set(shapes)):
        try:
            shapes[k] = _load_gray(frames[k]).shape[:2]
        except (ImageReadError, OSError, ValueError) as exc:
            log.warning("keyframe %s unreadable (%s): its matches are not used", frames[k].name, exc)
    return {i: link for i, link in links.items() if link.keyframe in shapes}


def build_buffer(frames: list[SceneFrame], encoder: XFeatEncoder, config: MappingConfig,
                 progress: bool = True, rank: int = 0, world_size: int = 1,
                 frame_links: dict[int, FrameLink] | None = None) -> TrainingBuffer:
    """Fill the buffer with ``config.buffer_size`` samples (or fewer for tiny scenes).

    Unreadable images are skipped and counted; their poses are never used. ``frame_links``
    (SeqACE's frame -> keyframe matches, see cross_frame.frame_links) adds the keyframe targets;
    without it the buffer is exactly the single-frame one.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(config.seed + 7919 * rank)
    my_frames = list(range(rank, len(frames), world_size))
    # Decode each image once; passes over the data re-augment from memory.
    images: dict[int, np.ndarray] = {}
    skipped: list[str] = []
    for i in my_frames:
        try:
            images[i] = _load_usable_gray(frames[i])
        except (ImageReadError, OSError, ValueError) as exc:
            skipped.append(f"{frames[i].name}: {exc}")
            log.warning("skipping mapping image %s: %s", frames[i].name, exc)
    if not images:
        raise ValueError("no readable mapping image: " + "; ".join(skipped[:5]))
    order = sorted(images)
    n_views = max(len(order), int(np.ceil(config.buffer_size / world_size / config.samples_per_view)))
    w2c = np.stack([invert_pose(f.pose_c2w) for f in frames]).astype(np.float32)
    shapes = {i: img.shape[:2] for i, img in images.items()}
    links = None
    if frame_links is not None:
        links = _keyframe_shapes(frames, frame_links, order, shapes)
    Ks, nominal_scale = _nominal_cameras(frames, shapes, config.image_height)
    feats, targets, index, sal, kf_targets, kf_index = [], [], [], [], [], []
    n_salient = int(round(config.samples_per_view * config.salient_share))
    bar = tqdm(total=n_views, desc="buffer", unit="view", disable=not progress, leave=False)
    for v in range(n_views):
        i = order[v % len(order)]
        view = augment(images[i], config.image_height, rng if config.augment else None,
                       config.scale_range, config.rotation_deg, config.brightness, config.contrast)
        prep = prepare_image(view.image, None, encoder.device)
        enc = encoder.encode_prepared(prep)
        pos = enc.keypoints if config.targets == "keypoint" else enc.centers
        pos_orig = map_points(view.to_original, pos.cpu().numpy().astype(np.float64))
        H0, W0 = images[i].shape[:2]
        inside = ((pos_orig[:, 0] >= 0) & (pos_orig[:, 0] < W0) & (pos_orig[:, 1] >= 0)
                  & (pos_orig[:, 1] < H0) & enc.valid.cpu().numpy())
        cand = np.flatnonzero(inside)
        if cand.size == 0:
            bar.update(1)
            continue
        k = min(config.samples_per_view, cand.size)
        sal_c = enc.saliency.cpu().numpy()[cand]
        top = cand[np.argsort(-sal_c)[:min(n_salient, k)]]
        rest = np.setdiff1d(cand, top, assume_unique=True)
        extra = rng.choice(rest, size=min(k - top.size, rest.size), replace=False) if rest.size else rest
        pick = np.concatenate([top, extra])
        feats.append(enc.features[pick].to("cpu", torch.float16))
        tgt = (pos_orig[pick] - PIXEL_CENTER_OFFSET) * nominal_scale[i]
        if links is not None:
            link = links.get(i)
            cells = ViewCells(view.to_original, (prep.scale_x, prep.scale_y), enc.grid_hw)
            kt, ki = attach_keyframe_targets(link, pick, cells, nominal_scale[i],
                                             nominal_scale[link.keyframe] if link else 1.0, tgt,
                                             config.sequence_targets)
            kf_targets.append(torch.from_numpy(kt))
            kf_index.append(torch.from_numpy(ki))
        targets.append(torch.from_numpy(tgt.astype(np.float32)))
        index.append(torch.full((pick.size,), i, dtype=torch.int64))
        sal.append(enc.saliency[pick].float().cpu())
        bar.update(1)
    bar.close()
    buf = TrainingBuffer(features=torch.cat(feats), targets=torch.cat(targets),
                         image_index=torch.cat(index), saliency=torch.cat(sal),
                         w2c=torch.from_numpy(w2c), K=torch.from_numpy(Ks), views=n_views,
                         skipped=skipped, seconds=time.perf_counter() - t0,
                         kf_targets=torch.cat(kf_targets) if links is not None else None,
                         kf_index=torch.cat(kf_index) if links is not None else None)
    log.info("buffer: %d samples from %d views of %d images in %.1f s (%d skipped)",
             len(buf), n_views, len(order), buf.seconds, len(skipped))
    if links is not None:
        log.info("buffer: %d samples (%.1f%%) carry a keyframe target", buf.matched_samples,
                 100.0 * buf.matched_samples / max(len(buf), 1))
    return buf
