"""Feature tracks: keypoints of several images that see the same 3D point, from pairwise matches."""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def tracks_from_matches(edges: np.ndarray, node_image: np.ndarray) -> tuple[np.ndarray, int]:
    """Track id per node (-1: in no track) from match edges; connected components = union-find.

    A component holding two keypoints of the same image is partly wrong; those observations are
    dropped (the rest of the track stays), and components left with fewer than 2 are discarded.
    """
    n = len(node_image)
    g = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, label = connected_components(g, directed=False)
    size = np.bincount(label)
    label = np.where(size[label] >= 2, label, -1)
    # drop (track, image) duplicates
    key = np.where(label >= 0, label.astype(np.int64) * (node_image.max() + 1) + node_image, -1)
    uniq, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
    label = np.where((cnt[inv] > 1) | (key < 0), -1, label)
    size = np.bincount(label[label >= 0], minlength=label.max() + 1 if (label >= 0).any() else 0)
    label = np.where((label >= 0) & (size[np.maximum(label, 0)] >= 2), label, -1)
    # renumber to 0..T-1
    used, label_new = np.unique(label[label >= 0], return_inverse=True)
    out = np.full(n, -1, np.int64)
    out[label >= 0] = label_new
    return out, len(used)
