"""Checks of a map file's metadata and tensors, run before anything is built from them.

A map can come from anywhere (a download, a colleague, a crafted file), so every value the loader
or the relocalizer uses is checked for type, range and consistency here, and every tensor for
shape, dtype and finite values, before a head is allocated or a running node switches maps.

Pure functions that return ``None`` or a one-line reason; mapfile.py raises MapFileError with it.
"""

from __future__ import annotations

import math
from typing import Mapping

# The relocalizer's floor (relocalization.single.MIN_IMAGE_HEIGHT) and a generous ceiling.
MIN_IMAGE_HEIGHT = 96
MAX_IMAGE_HEIGHT = 4096
HEAD_WIDTH_RANGE = (8, 4096)
HEAD_BLOCKS_RANGE = (1, 16)
# Feature width of each encoder a map may name (encoder.ENCODERS; literal so that this module
# needs neither torch nor the encoder package).
ENCODER_FEATURE_DIM = {"xfeat": 64}
MAX_SCENE_POINTS = 10_000_000
MAX_CALIBRATION_ROWS = 65536
# Metres: a scene mean or camera value beyond this is not a scene anyone maps.
MAX_COORDINATE = 1.0e6
SECTIONS = ("encoder", "head", "training", "camera", "sequence")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int_in(name: str, value, lo: int, hi: int) -> str | None:
    if not _is_int(value):
        return f"{name} must be an integer, got {type(value).__name__} {value!r}"
    if not lo <= value <= hi:
        return f"{name} is {value}, outside {lo}..{hi}"
    return None


def metadata_problem(meta) -> str | None:
    """Why the map's metadata (the parsed JSON) cannot be used, or None."""
    if not isinstance(meta, dict):
        return f"map metadata is a JSON {type(meta).__name__}, expected a JSON object"
    for section in SECTIONS:
        if section in meta and not isinstance(meta[section], dict):
            return f"map metadata '{section}' is a {type(meta[section]).__name__}, expected an object"
    enc = meta.get("encoder", {})
    name = enc.get("name", "xfeat")
    if not isinstance(name, str) or name not in ENCODER_FEATURE_DIM:
        return (f"map was made for encoder {name!r}, which this seqace_ros does not provide "
                f"(available: {', '.join(ENCODER_FEATURE_DIM)}); rebuild the map")
    sha = enc.get("weights_sha256")
    if sha is not None and not isinstance(sha, str):
        return f"encoder weights_sha256 must be a string, got {type(sha).__name__}"
    height = enc.get("image_height")
    if height is not None:
        problem = _int_in("encoder image_height", height, MIN_IMAGE_HEIGHT, MAX_IMAGE_HEIGHT)
        if problem:
            return problem
    head = meta.get("head")
    if head is None:
        return "map metadata has no 'head' section (in_dim, width, num_blocks)"
    for key, (lo, hi) in (("in_dim", (1, 4096)), ("width", HEAD_WIDTH_RANGE), ("num_blocks", HEAD_BLOCKS_RANGE)):
        if key not in head:
            return f"map metadata head has no '{key}'"
        problem = _int_in(f"head {key}", head[key], lo, hi)
        if problem:
            return problem
    if head["in_dim"] != ENCODER_FEATURE_DIM[name]:
        return (f"head in_dim is {head['in_dim']}, but encoder {name!r} gives {ENCODER_FEATURE_DIM[name]} "
                "features; the map does not belong to this encoder")
    mean = meta.get("scene_mean")
    if mean is not None and not (isinstance(mean, list) and len(mean) == 3
                                 and all(_is_number(v) and abs(v) <= MAX_COORDINATE for v in mean)):
        return f"scene_mean must be 3 finite numbers (metres), got {str(mean)[:80]}"
    targets = meta.get("targets", "keypoint")
    if targets not in ("keypoint", "center"):
        return f"targets must be 'keypoint' or 'center', got {str(targets)[:40]!r}"
    return camera_problem(meta.get("camera", {}))


def camera_problem(cam: Mapping) -> str | None:
    """The 'camera' section: the node's warm-up builds an image of this size, so it is bounded."""
    for key in ("fx", "fy", "cx", "cy"):
        value = cam.get(key)
        if value is None:
            continue
        if not _is_number(value) or value <= 0:
            return f"camera {key} must be a positive finite number, got {str(value)[:40]!r}"
        if key in ("fx", "fy") and value > 1.0e6:
            return f"camera {key} {value} is not a plausible focal length in pixels"
    cx, cy = cam.get("cx"), cam.get("cy")
    if cx and cy and (2 * cx) * (2 * cy) > MAX_IMAGE_HEIGHT * MAX_IMAGE_HEIGHT:
        return (f"camera principal point ({cx}, {cy}) implies an image of more than "
                f"{MAX_IMAGE_HEIGHT}x{MAX_IMAGE_HEIGHT} pixels")
    nominal = cam.get("nominal_height")
    if nominal is not None:
        return _int_in("camera nominal_height", nominal, MIN_IMAGE_HEIGHT, MAX_IMAGE_HEIGHT)
    return None


def expected_head_shapes(head: Mapping) -> dict[str, tuple[int, ...]]:
    """Tensor name (without 'head.') -> shape of a SceneHead with this configuration."""
    d, w, n = head["in_dim"], head["width"], head["num_blocks"]
    shapes: dict[str, tuple[int, ...]] = {"input.weight": (w, d), "input.bias": (w,)}
    for b in range(n):
        for layer in ("fc1", "fc2", "fc3"):
            shapes[f"blocks.{b}.{layer}.weight"] = (w, w)
            shapes[f"blocks.{b}.{layer}.bias"] = (w,)
    for layer in ("fc1", "fc2"):
        shapes[f"{layer}.weight"] = (w, w)
        shapes[f"{layer}.bias"] = (w,)
    shapes.update({"out.weight": (4, w), "out.bias": (4,), "mean": (3,)})
    return shapes


def shapes_problem(shapes: Mapping[str, tuple[int, ...]], dtypes: Mapping[str, str], head: Mapping,
                   points_key: str = "scene_points",
                   calibration_key: str = "calibration.features") -> str | None:
    """Why the file's tensors (name -> shape, name -> safetensors dtype string) do not match the
    head metadata; checked before any tensor is read."""
    expected = expected_head_shapes(head)
    found = {k[len("head."):]: tuple(v) for k, v in shapes.items() if k.startswith("head.")}
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        return (f"head tensors do not match the metadata (width {head['width']}, {head['num_blocks']} "
                f"blocks): missing {missing[:3]}, unexpected {extra[:3]}")
    for name, shape in expected.items():
        if found[name] != shape:
            return f"tensor head.{name} has shape {list(found[name])}, the metadata implies {list(shape)}"
    for name, dtype in dtypes.items():
        if (name.startswith("head.") or name in (points_key, calibration_key)) \
                and dtype not in ("F16", "BF16", "F32", "F64"):
            return f"tensor {name} has dtype {dtype}, expected floating point"
    if points_key in shapes:
        shape = tuple(shapes[points_key])
        if len(shape) != 2 or shape[1] != 3:
            return f"{points_key} has shape {list(shape)}, expected (N, 3)"
        if shape[0] > MAX_SCENE_POINTS:
            return f"{points_key} holds {shape[0]} points, more than {MAX_SCENE_POINTS}"
    if calibration_key in shapes:
        shape = tuple(shapes[calibration_key])
        if len(shape) != 2 or shape[1] != head["in_dim"] or shape[0] > MAX_CALIBRATION_ROWS:
            return (f"{calibration_key} has shape {list(shape)}, expected (N <= {MAX_CALIBRATION_ROWS}, "
                    f"{head['in_dim']})")
    return None


# Refinement keyframes (refinement/keyframe_tracking.py): flat arrays under this prefix.
KEYFRAME_PREFIX = "keyframes."
KEYFRAME_RANKS = {"jpeg": 1, "jpeg_offsets": 1, "poses": 3, "intrinsics": 3, "xy": 2, "points": 2,
                  "point_offsets": 1}
MAX_KEYFRAMES = 100_000
MAX_KEYFRAME_BYTES = 1 << 30


def keyframes_shapes_problem(shapes: Mapping[str, tuple[int, ...]], dtypes: Mapping[str, str]) -> str | None:
    """Why the keyframe tensors' header (shapes, dtypes) cannot be a set of keyframes; None if the
    map has none or they look right. Checked before any tensor is read."""
    names = {k[len(KEYFRAME_PREFIX):] for k in shapes if k.startswith(KEYFRAME_PREFIX)}
    if not names:
        return None
    if names != set(KEYFRAME_RANKS):
        return (f"keyframe tensors incomplete or unknown: missing {sorted(set(KEYFRAME_RANKS) - names)}, "
                f"unexpected {sorted(names - set(KEYFRAME_RANKS))}")
    s = {n: tuple(shapes[KEYFRAME_PREFIX + n]) for n in names}
    for n, rank in KEYFRAME_RANKS.items():
        if len(s[n]) != rank:
            return f"{KEYFRAME_PREFIX}{n} has shape {list(s[n])}, expected {rank} dimensions"
    count = s["poses"][0]
    if count > MAX_KEYFRAMES or s["poses"][1:] != (4, 4) or s["intrinsics"] != (count, 3, 3):
        return f"keyframe poses {list(s['poses'])} / intrinsics {list(s['intrinsics'])} do not describe <= {MAX_KEYFRAMES} cameras"
    if s["jpeg_offsets"] != (count + 1,) or s["point_offsets"] != (count + 1,):
        return "keyframe offsets do not match the number of keyframes"
    if s["jpeg"][0] > MAX_KEYFRAME_BYTES or dtypes[KEYFRAME_PREFIX + "jpeg"] != "U8":
        return f"keyframe images: {s['jpeg'][0]} bytes of {dtypes[KEYFRAME_PREFIX + 'jpeg']}, expected <= {MAX_KEYFRAME_BYTES} bytes of U8"
    if s["xy"][1:] != (2,) or s["points"] != (s["xy"][0], 3) or s["xy"][0] > MAX_SCENE_POINTS:
        return f"keyframe points {list(s['points'])} / pixels {list(s['xy'])} do not match"
    for n in ("poses", "intrinsics", "xy", "points"):
        if dtypes[KEYFRAME_PREFIX + n] not in ("F16", "BF16", "F32", "F64"):
            return f"{KEYFRAME_PREFIX}{n} has dtype {dtypes[KEYFRAME_PREFIX + n]}, expected floating point"
    for n in ("jpeg_offsets", "point_offsets"):
        if dtypes[KEYFRAME_PREFIX + n] not in ("I32", "I64"):
            return f"{KEYFRAME_PREFIX}{n} has dtype {dtypes[KEYFRAME_PREFIX + n]}, expected integer"
    return None


def keyframes_content_problem(arrays: Mapping) -> str | None:
    """Why the keyframe arrays (numpy, names without the prefix) cannot be used: offsets that do
    not partition the data, non-finite poses or points, or a K that is not a camera."""
    import numpy as np

    for n, total in (("jpeg_offsets", len(arrays["jpeg"])), ("point_offsets", len(arrays["xy"]))):
        off = np.asarray(arrays[n])
        if len(off) == 0 or off[0] != 0 or off[-1] != total or np.any(np.diff(off) < 0):
            return f"{KEYFRAME_PREFIX}{n} does not partition its {total} entries"
    for n in ("poses", "intrinsics", "xy", "points"):
        a = np.asarray(arrays[n], np.float64)
        if not np.isfinite(a).all() or (a.size and np.abs(a).max() > MAX_COORDINATE):
            return f"{KEYFRAME_PREFIX}{n} has NaN, inf or values beyond {MAX_COORDINATE:g}"
    K = np.asarray(arrays["intrinsics"], np.float64)
    if len(K) and (np.any(K[:, 0, 0] <= 0) or np.any(K[:, 1, 1] <= 0)):
        return "a keyframe's intrinsics have a non-positive focal length"
    return None
