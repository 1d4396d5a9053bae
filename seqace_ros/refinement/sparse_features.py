"""Sparse keypoints with descriptors, taken from the encoder's own dense outputs.

The relocalizer already ran XFeat on the image: every 8x8 cell has its most likely keypoint
position (XFeat's keypoint head) and a saliency; the descriptor of a keypoint is the dense
feature map, unit-normalised per cell, sampled bilinearly at that position (as XFeat's own
sparse mode samples it). So the refinement's features cost a top-k and one sampling, not a
second network pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..encoder import PIXEL_CENTER_OFFSET, EncodedImage


@dataclass
class LocalFeatures:
    keypoints: np.ndarray  # (N, 2) float32, pixels of the input image (OpenCV convention: centre of pixel i is i)
    descriptors: np.ndarray  # (N, D) float32 (or float16 in storage), unit L2 norm

    def __len__(self) -> int:
        return len(self.keypoints)


DETECTORS = ("xfeat", "corners")


@torch.no_grad()
def sparse_features(enc: EncodedImage, max_keypoints: int, min_saliency: float = 0.0,
                    gray: np.ndarray | None = None, subpixel_window: int = 0,
                    detector: str = "xfeat") -> LocalFeatures:
    """Keypoints and descriptors of the image ``enc`` was computed from.

    ``detector``: ``xfeat``, the ``max_keypoints`` most salient cells' keypoints; ``corners``,
    Shi-Tomasi corners of ``gray`` (the uint8 image). With ``subpixel_window`` > 0 keypoints are
    moved to the sub-pixel corner position. Descriptors always come from the encoder's features."""
    if detector not in DETECTORS:
        raise ValueError(f"detector {detector!r}: choose one of {', '.join(DETECTORS)}")
    if detector == "corners":
        if gray is None:
            raise ValueError("the corners detector needs the gray image")
        found = cv2.goodFeaturesToTrack(gray, int(max_keypoints), 0.001, 4, blockSize=5)
        xy = (found.reshape(-1, 2) if found is not None else np.zeros((0, 2))).astype(np.float32)
    else:
        valid = torch.nonzero(enc.valid & (enc.saliency > min_saliency)).squeeze(1)
        k = min(int(max_keypoints), valid.numel())
        sel = valid[torch.topk(enc.saliency[valid], k).indices] if k else valid[:0]
        xy = (enc.keypoints[sel].float() - PIXEL_CENTER_OFFSET).cpu().numpy().astype(np.float32)
    if gray is not None and subpixel_window > 0 and len(xy):
        refined = cv2.cornerSubPix(gray, xy.reshape(-1, 1, 2).copy(), (subpixel_window, subpixel_window),
                                   (-1, -1), (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 10, 0.01))
        refined = refined.reshape(-1, 2)
        # A keypoint that slid away is not a corner at this scale: keep the detector's position.
        moved = np.linalg.norm(refined - xy, axis=1) <= 1.0
        xy = np.where(moved[:, None], refined, xy)
    h, w = enc.grid_hw
    fmap = F.normalize(enc.features.float().t().reshape(1, -1, h, w), dim=1)
    cell_xy = _to_cell_units(enc, torch.from_numpy(xy + PIXEL_CENTER_OFFSET))
    grid = torch.stack([2.0 * (cell_xy[:, 0] + 0.5) / w - 1.0, 2.0 * (cell_xy[:, 1] + 0.5) / h - 1.0], -1)
    desc = F.grid_sample(fmap, grid[None, None], mode="bilinear", align_corners=False)[0, :, 0].t()
    desc = F.normalize(desc, dim=1)
    return LocalFeatures(xy, desc.cpu().numpy().astype(np.float32))


def _to_cell_units(enc: EncodedImage, xy: torch.Tensor) -> torch.Tensor:
    """Continuous input-image pixels -> feature-map coordinates where cell (i, j)'s centre is (j, i)."""
    h, w = enc.grid_hw
    # Cell centres in input pixels are ((j + 0.5) * 8) / scale: recover the scale from two cells.
    c = enc.centers.reshape(h, w, 2)
    sx = 8.0 / float(c[0, 1, 0] - c[0, 0, 0]) if w > 1 else 1.0
    sy = 8.0 / float(c[1, 0, 1] - c[0, 0, 1]) if h > 1 else 1.0
    return torch.stack([xy[:, 0] * sx / 8.0 - 0.5, xy[:, 1] * sy / 8.0 - 0.5], -1)
