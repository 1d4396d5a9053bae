"""Crafted map files (issue #15): each is a valid safetensors file whose metadata or tensors are
wrong in one way. Shared by test_hostile_maps.py (library and CLI) and test_ros_node_hostile.py.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open
from safetensors.torch import save_file

METADATA_KEY = "seqace_ros"


def read_map(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()[METADATA_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return meta, tensors


def write_map(path: Path, meta, tensors: dict[str, torch.Tensor], raw: str | None = None) -> Path:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path),
              metadata={METADATA_KEY: raw if raw is not None else json.dumps(meta)})
    return path


def _meta(fn: Callable[[dict], None]):
    def change(meta, tensors):
        fn(meta)
        return meta, tensors, None
    return change


def _tensor(fn: Callable[[dict], None]):
    def change(meta, tensors):
        fn(tensors)
        return meta, tensors, None
    return change


def _raw(text: str):
    return lambda meta, tensors: (meta, tensors, text)


def _set(section: str | None, key: str, value):
    def fn(meta):
        (meta if section is None else meta.setdefault(section, {}))[key] = value
    return _meta(fn)


def _nan_at(name: str, value: float = math.nan):
    def fn(tensors):
        t = tensors[name].clone()
        t.view(-1)[0] = value
        tensors[name] = t
    return _tensor(fn)


def _narrow_in_dim(meta, tensors):
    # in_dim 32 with tensors that match it: consistent with itself, not with the encoder.
    meta["head"]["in_dim"] = 32
    tensors["head.input.weight"] = tensors["head.input.weight"][:, :32].clone()
    return meta, tensors, None


# name -> (change, pattern the one-line error must match)
CASES: dict[str, tuple[Callable, str]] = {
    "metadata_is_a_list": (_raw(json.dumps([1, 2, 3])), "JSON list, expected a JSON object"),
    "metadata_is_a_string": (_raw(json.dumps("seqace_ros.map")), "JSON str, expected a JSON object"),
    "metadata_nested_3000_deep": (_raw("[" * 3000 + "]" * 3000), "nested too deeply"),
    "encoder_is_a_string": (_set(None, "encoder", "xfeat"), "'encoder' is a str, expected an object"),
    "head_is_null": (_set(None, "head", None), "'head' is a NoneType, expected an object"),
    "unknown_encoder": (_set("encoder", "name", "superpoint9000"), "encoder 'superpoint9000'.*does not provide"),
    "image_height_100000": (_set("encoder", "image_height", 100000), "image_height is 100000, outside 96..4096"),
    "image_height_negative": (_set("encoder", "image_height", -5), "image_height is -5, outside"),
    "image_height_a_string": (_set("encoder", "image_height", "480"), "image_height must be an integer, got str"),
    "in_dim_32_with_matching_tensors": (_narrow_in_dim, "in_dim is 32, but encoder 'xfeat' gives 64"),
    "head_width_1e7": (_set("head", "width", 10_000_000), "head width is 10000000, outside 8..4096"),
    "head_width_disagrees_with_tensors": (_set("head", "width", 64), "shape \\[\\d+, 64\\], the metadata implies \\[64, 64\\]"),
    "head_blocks_bool": (_set("head", "num_blocks", True), "num_blocks must be an integer, got bool"),
    "scene_points_wrong_shape": (_tensor(lambda t: t.__setitem__("scene_points", torch.zeros(10, 2))),
                                 "scene_points has shape \\[10, 2\\], expected \\(N, 3\\)"),
    "head_weight_nan": (_nan_at("head.fc1.weight"), "head.fc1.weight contains NaN or inf"),
    "head_weight_inf": (_nan_at("head.out.bias", math.inf), "head.out.bias contains NaN or inf"),
    "scene_mean_nan": (_nan_at("head.mean"), "head.mean contains NaN or inf"),
    "scene_points_nan": (_nan_at("scene_points"), "scene_points contains NaN or inf"),
    "integer_weights": (_tensor(lambda t: t.__setitem__("head.out.bias", torch.zeros(4, dtype=torch.int32))),
                        "head.out.bias has dtype I32, expected floating point"),
    "camera_principal_point_huge": (_set("camera", "cx", 1.0e6), "implies an image of more than"),
    "targets_unknown": (_set(None, "targets", {"a": 1}), "targets must be 'keypoint' or 'center'"),
}


def make_case(good: Path, name: str, out_dir: Path) -> tuple[Path, str]:
    """Write the crafted variant ``name`` of the good map ``good``; returns (path, error pattern)."""
    change, pattern = CASES[name]
    meta, tensors = read_map(good)
    meta, tensors, raw = change(copy.deepcopy(meta), dict(tensors))
    return write_map(Path(out_dir) / f"{name}.safetensors", meta, tensors, raw), pattern
