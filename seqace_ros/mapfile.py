"""The map file: one safetensors file with the head's fp16 weights and JSON metadata.

safetensors, not pickle: ``torch.load`` of a map downloaded from somewhere would execute code.
Loading checks the metadata (format version, encoder and its weight hash) *before* any tensor is
used, and refuses a truncated file, a map made for another encoder, or a newer format.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .head import SceneHead

FORMAT_NAME = "seqace_ros.map"
FORMAT_VERSION = 1
METADATA_KEY = "seqace_ros"
POINTS_KEY = "scene_points"


class MapFileError(ValueError):
    """A map file that cannot be used; the message says why and what to do."""


@dataclass
class SceneMap:
    """A trained map: the head plus what is needed to use and to describe it."""

    head: SceneHead
    metadata: dict = field(default_factory=dict)
    scene_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))

    @property
    def encoder_name(self) -> str:
        return self.metadata.get("encoder", {}).get("name", "xfeat")

    def save(self, path: str | Path) -> Path:
        return save_map(self, path)


def _current_umask() -> int:
    """The process umask; read from /proc where possible (setting it to read it races other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def save_map(scene_map: SceneMap, path: str | Path) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"head.{k}": v.detach().cpu().to(torch.float16).contiguous()
               for k, v in scene_map.head.state_dict().items() if k != "mean"}
    # The scene mean is an offset of metres: fp16 would cost millimetres far from the origin.
    tensors["head.mean"] = scene_map.head.mean.detach().cpu().float().contiguous()
    tensors[POINTS_KEY] = torch.from_numpy(np.ascontiguousarray(scene_map.scene_points, np.float32))
    meta = dict(scene_map.metadata)
    meta.update({"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                 "head": scene_map.head.config()})
    meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})
    tmp.replace(path)  # atomic: a crash mid-write never leaves a half map under the real name
    # safetensors creates files 0600 whatever the umask: give the map the mode any new file gets, so a
    # node running as another user can read it.
    os.chmod(path, 0o666 & ~_current_umask())
    return path


def read_metadata(path: str | Path) -> dict:
    """The map's metadata, validated for format; no tensor is read."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise MapFileError(f"map file {path} does not exist (build one with `seqace map` or "
                           "`ros2 run seqace_ros build_map`)")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise MapFileError(f"{path} is not a readable seqace_ros map (truncated or not a safetensors "
                           f"file: {exc}); rebuild it with `seqace map`") from exc
    if raw is None:
        raise MapFileError(f"{path} is a safetensors file but not a seqace_ros map (no "
                           f"'{METADATA_KEY}' metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise MapFileError(f"{path}: map metadata is not valid JSON ({exc})") from exc
    version = meta.get("format_version")
    if meta.get("format") != FORMAT_NAME or not isinstance(version, int):
        raise MapFileError(f"{path}: unknown map format {meta.get('format')!r}")
    if version > FORMAT_VERSION:
        raise MapFileError(f"{path}: map format version {version} is newer than this seqace_ros "
                           f"reads ({FORMAT_VERSION}); upgrade seqace_ros")
    return meta


def check_encoder(meta: dict, encoder: dict, what: str = "the map") -> None:
    """Refuse a map made for another encoder or other weights (``encoder``: its ``describe()``)."""
    enc = meta.get("encoder", {})
    if enc.get("name") != encoder.get("name"):
        raise MapFileError(f"{what} was made for encoder {enc.get('name')!r}, but the relocalizer "
                           f"uses {encoder.get('name')!r}; rebuild the map or change the "
                           "encoder setting")
    if enc.get("weights_sha256") != encoder.get("weights_sha256"):
        raise MapFileError(
            f"{what} was made with {enc.get('name')} weights {str(enc.get('weights_sha256'))[:12]}..., "
            f"the installed weights are {str(encoder.get('weights_sha256'))[:12]}...; "
            "the map is only valid with the encoder it was trained on: rebuild it")


def load_map(path: str | Path, expect_encoder: dict | None = None,
             device: str | torch.device = "cpu") -> SceneMap:
    """Load and validate a map. ``expect_encoder`` (the encoder's ``describe()``) is checked first."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_metadata(path)
    if expect_encoder is not None:
        check_encoder(meta, expect_encoder, str(path))
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise MapFileError(f"{path} is truncated or corrupt ({exc}); rebuild it with `seqace map`") from exc
    cfg = meta.get("head", {})
    try:
        head = SceneHead(in_dim=int(cfg["in_dim"]), width=int(cfg["width"]),
                         num_blocks=int(cfg["num_blocks"]))
        state = {k[len("head."):]: v.float() for k, v in tensors.items() if k.startswith("head.")}
        head.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise MapFileError(f"{path}: head weights do not match the metadata ({exc})") from exc
    points = tensors.get(POINTS_KEY, torch.zeros((0, 3))).float().numpy()
    head.eval().requires_grad_(False).to(device)
    return SceneMap(head=head, metadata=meta, scene_points=points)
