"""Image retrieval by VLAD (Jegou et al. 2010) over the same local descriptors the peer matches.

A vocabulary of k-means centres is learnt from the mapping images' descriptors; each image becomes
the sum of its descriptors' residuals to their nearest centre, intra-normalised per centre
(Arandjelovic & Zisserman 2013), power-normalised and L2-normalised. Similarity is a dot product.
"""

from __future__ import annotations

import cv2
import numpy as np


def train_vocabulary(descriptors: np.ndarray, num_words: int = 64, seed: int = 0,
                     max_samples: int = 200_000) -> np.ndarray:
    """k-means centres (num_words, D) from a random sample of descriptors."""
    if len(descriptors) < num_words:
        raise ValueError(f"{len(descriptors)} descriptors cannot train {num_words} VLAD words; "
                         "map more images or lower the vocabulary size")
    rng = np.random.default_rng(seed)
    if len(descriptors) > max_samples:
        descriptors = descriptors[rng.choice(len(descriptors), max_samples, replace=False)]
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 25, 1e-4)
    _, _, centres = cv2.kmeans(np.ascontiguousarray(descriptors, np.float32), num_words, None,
                               criteria, 1, cv2.KMEANS_PP_CENTERS)
    return centres.astype(np.float32)


def vlad(descriptors: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The normalised VLAD vector (num_words * D,) of one image's descriptors."""
    k, d = centres.shape
    out = np.zeros((k, d), np.float32)
    if len(descriptors):
        # nearest centre by L2: argmax of d.c - |c|^2 / 2
        score = descriptors @ centres.T - 0.5 * np.sum(centres * centres, axis=1)
        word = np.argmax(score, axis=1)
        np.add.at(out, word, descriptors - centres[word])
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)  # intra-normalisation
    v = out.reshape(-1)
    v = np.sign(v) * np.sqrt(np.abs(v))
    return v / max(float(np.linalg.norm(v)), 1e-12)


def top_k_images(query_vector: np.ndarray, database: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` most similar database vectors, best first."""
    sim = database @ query_vector
    k = min(k, len(sim))
    idx = np.argpartition(-sim, k - 1)[:k]
    return idx[np.argsort(-sim[idx])]
