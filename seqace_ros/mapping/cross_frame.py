"""SeqACE's cross-frame targets: buffer samples that sit on a verified frame-keyframe match get a
second target in the keyframe. By default ("transfer") the sample keeps its own target (the cell
centre) and the keyframe target is the match shifted by the same offset; "keypoint" (SeqACE) moves
the frame target to the match's exact keypoint and uses the matched keyframe pixel as is.

Pixel conventions: the matcher's positions (``FrameMatches.xy_frame`` / ``xy_keyframe``) follow
OpenCV (integer = pixel centre), the same convention as the intrinsics and the buffer's targets;
the encoder's cells live in continuous coordinates (pixel i spans [i, i+1)), so a match is shifted
by ``PIXEL_CENTER_OFFSET`` before it is placed in a cell of an augmented view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..encoder import PIXEL_CENTER_OFFSET, STRIDE
from .augmentation import map_points

if TYPE_CHECKING:  # the matcher (XFeat, OpenCV RANSAC) is only needed when sequence training is on
    from .matching import FrameMatches


@dataclass(frozen=True)
class FrameLink:
    """Verified matches of one mapping frame into another frame (its keyframe), OpenCV pixels of
    the original images."""

    keyframe: int
    xy_frame: np.ndarray  # (M, 2) float64
    xy_keyframe: np.ndarray  # (M, 2) float64


@dataclass(frozen=True)
class ViewCells:
    """Where the encoder's cells of one augmented view lie: the view's warp and its cell grid."""

    to_original: np.ndarray  # 2x3 affine, view pixel -> original pixel (continuous coordinates)
    encoder_scale: tuple[float, float]  # encoder input = view * scale (x, y)
    grid_hw: tuple[int, int]  # cells (rows, cols)


def frame_links(matches: Sequence[FrameMatches]) -> dict[int, FrameLink]:
    """Frame index -> its matches into another frame, for every frame that has some.

    Keyframes that kept their matches into the previous keyframe (``keep_keyframe_matches``) are
    linked too: that is what the matcher keeps them for.
    """
    links = {}
    for m in matches:
        if m.num_matches and m.keyframe_index != m.frame_index:
            links[m.frame_index] = FrameLink(m.keyframe_index, m.xy_frame.astype(np.float64),
                                             m.xy_keyframe.astype(np.float64))
    return links


def keyframes_of(links: dict[int, FrameLink], frame_indices: Sequence[int]) -> set[int]:
    """The keyframes the given frames are linked to."""
    return {links[i].keyframe for i in frame_indices if i in links}


def match_per_cell(xy_frame: np.ndarray, cells: ViewCells) -> np.ndarray:
    """For each cell of the view (row-major), the index of the match that falls into it, or -1.

    Where several matches share a cell, the one nearest the cell centre wins (its keypoint is the
    one the cell's feature describes best).
    """
    h, w = cells.grid_hw
    lut = np.full(h * w, -1, np.int64)
    if len(xy_frame) == 0:
        return lut
    from_original = np.linalg.inv(np.vstack([cells.to_original, [0.0, 0.0, 1.0]]))[:2]
    # Match (OpenCV pixel) -> continuous original -> continuous view -> encoder-cell units.
    cell_xy = map_points(from_original, xy_frame + PIXEL_CENTER_OFFSET) \
        * np.asarray(cells.encoder_scale) / STRIDE
    col, row = np.floor(cell_xy[:, 0]).astype(np.int64), np.floor(cell_xy[:, 1]).astype(np.int64)
    inside = np.flatnonzero((col >= 0) & (col < w) & (row >= 0) & (row < h))
    if inside.size == 0:
        return lut
    cell = row[inside] * w + col[inside]
    dist = np.sum((cell_xy[inside] - np.floor(cell_xy[inside]) - 0.5) ** 2, axis=1)
    order = np.lexsort((dist, cell))  # by cell, nearest to the centre first
    first = np.unique(cell[order], return_index=True)[1]
    lut[cell[order][first]] = inside[order][first]
    return lut


def attach_keyframe_targets(link: FrameLink | None, picked_cells: np.ndarray, cells: ViewCells,
                            frame_scale: float, keyframe_scale: float, targets: np.ndarray,
                            mode: str = "keypoint") -> tuple[np.ndarray, np.ndarray]:
    """Cross-frame targets of one view's samples.

    ``picked_cells``: the sampled cells (indices into the view's grid); ``targets`` (len(picked), 2)
    their frame targets in nominal pixels. ``mode``:
    - "keypoint": where a match lies in the cell, the frame target becomes the exact match keypoint
      (overwritten in place) and the keyframe target its match;
    - "transfer": the frame target stays (e.g. the cell centre the relocalizer pairs the cell with)
      and the keyframe target is the match shifted by the same offset, target - keypoint: exact for
      a locally translating image, and free of SeqACE's snap-to-centre bias.
    ``frame_scale`` / ``keyframe_scale``: nominal pixels per original pixel of the frame and of the
    keyframe. Returns (keyframe targets (n, 2) float32 in the keyframe's nominal pixels, keyframe
    index (n,) int64, -1 where the sample has none).
    """
    kf_targets = np.zeros((picked_cells.size, 2), np.float32)
    kf_index = np.full(picked_cells.size, -1, np.int64)
    if link is None:
        return kf_targets, kf_index
    match = match_per_cell(link.xy_frame, cells)[picked_cells]
    hit = match >= 0
    keypoint, matched = link.xy_frame[match[hit]], link.xy_keyframe[match[hit]]
    if mode == "keypoint":
        targets[hit] = keypoint * frame_scale
        kf_targets[hit] = matched * keyframe_scale
    elif mode == "transfer":
        kf_targets[hit] = (matched + targets[hit] / frame_scale - keypoint) * keyframe_scale
    else:
        raise ValueError(f"cross-frame target mode {mode!r} is not 'keypoint' or 'transfer'")
    kf_index[hit] = link.keyframe
    return kf_targets, kf_index
