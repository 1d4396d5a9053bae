"""The map file: one safetensors file with the head's fp16 weights and JSON metadata.

safetensors, not pickle: ``torch.load`` of a map downloaded from somewhere would execute code.
Loading checks the metadata (format version, encoder and its weight hash) *before* any tensor is
used, and refuses a truncated file, a map made for another encoder, or a newer format.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import SeqaceError
from .head import SceneHead
from .map_validation import (KEYFRAME_PREFIX, keyframes_content_problem, keyframes_shapes_problem,
                             metadata_problem, shapes_problem)

FORMAT_NAME = "seqace_ros.map"
FORMAT_VERSION = 1
METADATA_KEY = "seqace_ros"
POINTS_KEY = "scene_points"
# Encoder features of salient mapping cells: what int8 inference calibrates its ranges on.
CALIBRATION_KEY = "calibration.features"


class MapFileError(SeqaceError, ValueError):
    """A map file that cannot be used; the message says why and what to do."""


@dataclass
class SceneMap:
    """A trained map: the head plus what is needed to use and to describe it."""

    head: SceneHead
    metadata: dict = field(default_factory=dict)
    scene_points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    calibration: np.ndarray = field(default_factory=lambda: np.zeros((0, 64), np.float16))
    # Refinement keyframes (refinement/keyframe_tracking.py) as flat arrays, names without the
    # "keyframes." prefix; empty for maps made without them.
    keyframes: dict = field(default_factory=dict)

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
    problem = map_output_problem(path)
    if problem is not None:
        raise MapFileError(problem)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"head.{k}": v.detach().cpu().to(torch.float16).contiguous()
               for k, v in scene_map.head.state_dict().items() if k != "mean"}
    # The scene mean is an offset of metres: fp16 would cost millimetres far from the origin.
    tensors["head.mean"] = scene_map.head.mean.detach().cpu().float().contiguous()
    tensors[POINTS_KEY] = torch.from_numpy(np.ascontiguousarray(scene_map.scene_points, np.float32))
    if len(scene_map.calibration):
        tensors[CALIBRATION_KEY] = torch.from_numpy(np.ascontiguousarray(scene_map.calibration, np.float16))
    for name, array in scene_map.keyframes.items():
        tensors[KEYFRAME_PREFIX + name] = torch.from_numpy(np.ascontiguousarray(array))
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


def map_path_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a map file that can be opened (missing, a folder, a link loop...)."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"map path {path} is a symbolic link loop"
        if os.path.islink(path):
            return f"map path {path} is a broken symbolic link"
        if exc.errno == errno.ENOENT:
            return (f"map file {path} does not exist (build one with `seqace map` or "
                    "`ros2 run seqace_ros build_map`)")
        return f"map file {path} cannot be opened ({exc.strerror})"
    if path.is_dir():
        return f"map path {path} is a directory, not a map file"
    if not path.is_file():
        return f"map path {path} is not a regular file"
    return None


def map_output_problem(path: str | Path, needed_bytes: int = 0) -> str | None:
    """Why a map cannot be written to ``path`` (checked before training, so that a run of minutes
    is not lost at the end): empty, a directory, not a regular file, an unwritable folder, or
    less free space than ``needed_bytes``."""
    if not str(path).strip():
        return "the output map path is empty: give a file name such as maps/scene.safetensors"
    path = Path(path)
    if path.is_dir():
        return f"{path} is a directory: give a file name, e.g. {path / 'map.safetensors'}"
    if os.path.lexists(path) and not path.is_file():
        return (f"{path} exists and is not a regular file (a device, pipe, socket or broken link): "
                "a map is only written to a regular file")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # save_map creates the missing folders under the nearest existing one
    if not folder.is_dir():
        return f"cannot create {path}: {folder} is not a folder"
    try:  # a real write: permissions, read-only file systems, quotas
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".seqace_write_probe", delete=True)
        probe.close()
    except OSError as exc:
        return f"cannot write the map into {folder}: {exc.strerror or exc}"
    free = shutil.disk_usage(folder).free
    if needed_bytes and free < needed_bytes:
        return (f"only {free / 1e6:.1f} MB free in {folder}; the map needs about "
                f"{needed_bytes / 1e6:.1f} MB")
    return None


def read_metadata(path: str | Path) -> dict:
    """The map's metadata, validated for format and content; no tensor is read."""
    from safetensors import safe_open

    path = Path(path)
    problem = map_path_problem(path)
    if problem is not None:
        raise MapFileError(problem)
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
    except RecursionError as exc:
        raise MapFileError(f"{path}: map metadata is nested too deeply to be a seqace_ros map") from exc
    if not isinstance(meta, dict):
        raise MapFileError(f"{path}: {metadata_problem(meta)}")
    version = meta.get("format_version")
    if meta.get("format") != FORMAT_NAME or not isinstance(version, int) or isinstance(version, bool):
        raise MapFileError(f"{path}: unknown map format {str(meta.get('format'))[:60]!r}")
    if version > FORMAT_VERSION:
        raise MapFileError(f"{path}: map format version {version} is newer than this seqace_ros "
                           f"reads ({FORMAT_VERSION}); upgrade seqace_ros")
    problem = metadata_problem(meta)
    if problem is not None:
        raise MapFileError(f"{path}: {problem}; rebuild it with `seqace map`")
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
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_metadata(path)
    if expect_encoder is not None:
        check_encoder(meta, expect_encoder, str(path))
    cfg = meta["head"]
    try:
        # Shapes from the header only: a head the metadata makes huge is refused unallocated.
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            dtypes = {k: str(f.get_slice(k).get_dtype()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise MapFileError(f"{path} is truncated or corrupt ({exc}); rebuild it with `seqace map`") from exc
    problem = (shapes_problem(shapes, dtypes, cfg, POINTS_KEY, CALIBRATION_KEY)
               or keyframes_shapes_problem(shapes, dtypes))
    if problem is not None:
        raise MapFileError(f"{path}: {problem}; rebuild it with `seqace map`")
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise MapFileError(f"{path} is truncated or corrupt ({exc}); rebuild it with `seqace map`") from exc
    for name, tensor in tensors.items():
        if (name.startswith("head.") or name in (POINTS_KEY, CALIBRATION_KEY)) \
                and not bool(torch.isfinite(tensor).all()):
            raise MapFileError(f"{path}: tensor {name} contains NaN or inf: the map is broken "
                               "(training diverged?); rebuild it with `seqace map`")
    try:
        head = SceneHead(in_dim=int(cfg["in_dim"]), width=int(cfg["width"]),
                         num_blocks=int(cfg["num_blocks"]))
        state = {k[len("head."):]: v.float() for k, v in tensors.items() if k.startswith("head.")}
        head.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise MapFileError(f"{path}: head weights do not match the metadata ({exc})") from exc
    points = tensors.get(POINTS_KEY, torch.zeros((0, 3))).float().numpy()
    calibration = tensors.get(CALIBRATION_KEY, torch.zeros((0, head.in_dim))).to(torch.float16).numpy()
    keyframes = {k[len(KEYFRAME_PREFIX):]: v.numpy() for k, v in tensors.items() if k.startswith(KEYFRAME_PREFIX)}
    if keyframes:
        problem = keyframes_content_problem(keyframes)
        if problem is not None:
            raise MapFileError(f"{path}: {problem}; rebuild it with `seqace map`")
    head.eval().requires_grad_(False).to(device)
    return SceneMap(head=head, metadata=meta, scene_points=points, calibration=calibration,
                    keyframes=keyframes)
