"""Issue #15, maps: every crafted map is refused by one validation, before a head is allocated,
with a one-line error naming the file and the problem, in the library and in the CLI alike."""

from __future__ import annotations

import json
import os
import random
import resource
import time

import numpy as np
import pytest
import torch

from ros_support.hostile_maps import CASES, make_case, read_map, write_map
from seqace_ros.cli import main as seqace_main
from seqace_ros.head import SceneHead
from seqace_ros.mapfile import MapFileError, SceneMap, load_map, read_metadata

ENC = {"name": "xfeat", "weights_sha256": "abc123", "image_height": 480}


@pytest.fixture(scope="module")
def good_map(tmp_path_factory):
    torch.manual_seed(0)
    head = SceneHead(in_dim=64, width=32, num_blocks=1, mean=torch.tensor([1.0, -2.0, 3.5]))
    m = SceneMap(head=head, metadata={"encoder": ENC, "targets": "keypoint",
                                      "camera": {"fx": 500.0, "fy": 500.0, "cx": 320.0, "cy": 240.0}},
                 scene_points=np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32))
    return m.save(tmp_path_factory.mktemp("good") / "good.safetensors")


def test_the_good_map_loads(good_map):
    assert load_map(good_map).head.width == 32


@pytest.mark.parametrize("case", sorted(CASES))
def test_crafted_map_is_refused_with_one_line_naming_file_and_problem(good_map, tmp_path, case):
    path, pattern = make_case(good_map, case, tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(MapFileError, match=pattern) as info:
        load_map(path)
    assert time.perf_counter() - t0 < 2.0
    message = str(info.value)
    assert "\n" not in message and str(path) in message


@pytest.mark.parametrize("case", ["metadata_is_a_list", "metadata_nested_3000_deep", "unknown_encoder",
                                  "head_is_null", "scene_points_wrong_shape", "head_weight_nan"])
def test_cli_prints_one_line_errors_for_crafted_maps(good_map, tmp_path, capsys, case):
    path, pattern = make_case(good_map, case, tmp_path)
    # evaluate loads the map before it looks at the scene; info reads the metadata only.
    for argv in (["evaluate", str(tmp_path / "no_scene"), "--map", str(path)], ["info", str(path)]):
        if argv[0] == "info" and case in ("scene_points_wrong_shape", "head_weight_nan"):
            continue  # tensors are not read by info
        assert seqace_main(["-q", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
        assert err.startswith(f"seqace {argv[0]}: error:") and str(path) in err


def test_head_width_1e7_allocates_nothing(good_map, tmp_path):
    path, _ = make_case(good_map, "head_width_1e7", tmp_path)
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(MapFileError):
        load_map(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20e6, f"{peak / 1e6:.0f} MB allocated before the map was refused"


def test_directory_symlink_loop_and_broken_link_are_named_as_such(tmp_path):
    loop = tmp_path / "loop.safetensors"
    os.symlink(loop, loop)
    broken = tmp_path / "broken.safetensors"
    os.symlink(tmp_path / "nowhere", broken)
    for path, pattern in ((tmp_path, "is a directory"), (loop, "symbolic link loop"),
                          (broken, "broken symbolic link"), (tmp_path / "missing", "does not exist")):
        with pytest.raises(MapFileError, match=pattern):
            read_metadata(path)


def test_fuzzed_maps_load_or_fail_with_map_file_error_in_bounded_time_and_memory(good_map, tmp_path):
    """Random mutations of metadata values and bytes: a MapFileError or a valid map, never anything
    else, under an address-space cap (a huge allocation fails instead of swapping)."""
    meta, tensors = read_map(good_map)
    rng = random.Random(15)
    values = [None, True, -1, 0, 1e308, float("nan"), "x" * 10, [], {}, [1, 2], 2 ** 40, "480", 1e7]
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (min(hard, 8 << 30) if hard > 0 else 8 << 30, hard))
    t0 = time.perf_counter()
    try:
        for i in range(60):
            m = json.loads(json.dumps(meta))
            section = rng.choice([None, "encoder", "head", "camera"])
            target = m if section is None else m.setdefault(section, {})
            keys = list(target) or ["x"]
            target[rng.choice(keys)] = rng.choice(values)
            path = write_map(tmp_path / f"fuzz{i}.safetensors", m, tensors)
            if i % 3 == 0:  # and flip a few bytes anywhere in the file
                data = bytearray(path.read_bytes())
                for _ in range(4):
                    data[rng.randrange(len(data))] = rng.randrange(256)
                path.write_bytes(bytes(data))
            try:
                loaded = load_map(path)
            except MapFileError as exc:
                assert "\n" not in str(exc)
            else:  # what loads is usable: finite, consistent
                assert all(torch.isfinite(p).all() for p in loaded.head.parameters())
                assert loaded.scene_points.ndim == 2 and loaded.scene_points.shape[1] == 3
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    assert time.perf_counter() - t0 < 30.0
