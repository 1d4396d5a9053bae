"""Inference backends: OpenVINO gives what torch gives (encoder, head, whole relocalizer), within
stated tolerances, and the backend setting is resolved and refused clearly."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from seqace_ros.encoder import EncoderError, XFeatEncoder
from seqace_ros.head import HeadTrunk, SceneHead
from seqace_ros.inference import (BackendError, PerShapeModel, compile_for_cpu, convert, openvino_available,
                                  resolve_backend)

needs_openvino = pytest.mark.skipif(not openvino_available(), reason="openvino is not installed")


def test_backend_setting_is_resolved_and_bad_values_are_refused():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_backend("torch", cpu) == "torch"
    assert resolve_backend("auto", cuda) == "torch"
    assert resolve_backend("auto", cpu) == ("openvino" if openvino_available() else "torch")
    with pytest.raises(BackendError, match="choose one of"):
        resolve_backend("tensorrt", cpu)
    with pytest.raises(BackendError, match="runs on the CPU"):
        resolve_backend("openvino", cuda)
    with pytest.raises(EncoderError, match="choose one of"):
        XFeatEncoder(device="cpu", backend="onnx")


@pytest.fixture(scope="module")
def encoders():
    torch_fp32 = XFeatEncoder(device="cpu", precision="fp32", backend="torch")
    ov_fp32 = XFeatEncoder(device="cpu", precision="fp32", backend="openvino")
    ov_bf16 = XFeatEncoder(device="cpu", precision="bf16", backend="openvino")
    return torch_fp32, ov_fp32, ov_bf16


def _relative(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).norm(dim=1) / b.norm(dim=1).clamp(min=1e-6)


@needs_openvino
@pytest.mark.parametrize("shape", [(480, 640), (240, 320), (300, 517)])
def test_openvino_encoder_equals_torch_at_every_image_size(encoders, texture, shape):
    """One compiled model serves every size; fp32 equals torch to rounding, bf16 within the few
    percent that torch's own bf16 path differs by (test_encoder.py)."""
    torch_fp32, ov_fp32, ov_bf16 = encoders
    img = texture(*shape, seed=shape[1])
    ref, a, b = torch_fp32.encode(img), ov_fp32.encode(img), ov_bf16.encode(img)
    assert ov_fp32.backend == "openvino" and ov_fp32.describe()["backend"] == "openvino"
    assert a.features.shape == ref.features.shape and a.grid_hw == ref.grid_hw
    assert float(_relative(a.features, ref.features).max()) < 1e-3
    assert torch.allclose(a.saliency, ref.saliency, rtol=1e-3, atol=1e-5)
    assert float((a.keypoints == ref.keypoints).all(dim=1).float().mean()) > 0.99
    assert torch.equal(a.valid, ref.valid) and torch.equal(a.centers, ref.centers)
    assert float(_relative(b.features, ref.features).median()) < 0.03
    k = min(500, ref.saliency.numel() // 2)
    top_ref = set(torch.topk(ref.saliency, k).indices.tolist())
    assert len(top_ref & set(torch.topk(b.saliency, k).indices.tolist())) > 0.8 * k


@needs_openvino
def test_openvino_head_trunk_equals_torch_for_any_cell_count():
    torch.manual_seed(0)
    head = SceneHead(width=128, num_blocks=2, mean=torch.tensor([1.0, -2.0, 3.0])).eval()
    x = torch.randn(700, 64)
    f32 = compile_for_cpu(HeadTrunk(head), x, "fp32", 2, dynamic_axes=(0,))
    bf16 = compile_for_cpu(HeadTrunk(head), x, "bf16", 2, dynamic_axes=(0,))
    with torch.no_grad():
        for n in (700, 37, 2000):
            xs = torch.randn(n, 64)
            ref = head(xs)
            out32 = head.decode(torch.from_numpy(f32(xs.numpy())[0]))
            out16 = head.decode(torch.from_numpy(bf16(xs.numpy())[0]))
            assert out32.shape == (n, 3)
            assert float((out32 - ref).abs().max()) < 1e-4
            # bf16 rounds the hidden layers only; the output layer and the mean stay fp32.
            assert float(((out16 - ref).norm(dim=1) / (ref - head.mean).norm(dim=1)).median()) < 0.05


@needs_openvino
def test_a_model_compiled_per_input_shape_equals_the_any_shape_one():
    """Each shape met gets its own compilation up to the cap; beyond it the any-shape model
    serves, with the same outputs either way."""
    torch.manual_seed(1)
    head = SceneHead(width=64, num_blocks=1, mean=torch.zeros(3)).eval()
    model = convert(HeadTrunk(head), torch.randn(50, 64), dynamic_axes=(0,))
    per_shape = PerShapeModel(model, "fp32", 2, max_shapes=2)
    any_shape = compile_for_cpu(HeadTrunk(head), torch.randn(50, 64), "fp32", 2, dynamic_axes=(0,))
    for n in (50, 13, 50, 77):
        x = torch.randn(n, 64).numpy()
        (a,), (b,) = per_shape(x), any_shape(x)
        assert a.shape == (n, 64) and np.allclose(a, b, rtol=1e-5, atol=1e-5)
    assert sorted(per_shape._by_shape) == [(13, 64), (50, 64)]
    assert per_shape._any is not None  # 77 rows: past the cap


@needs_openvino
def test_relocalization_results_equal_across_backends(tmp_path_factory):
    """The same map localized with torch and with OpenVINO (both fp32): the same frames localized,
    poses equal to millimetres (features agree to ~1e-5; RANSAC's refinement of a coarse tiny map
    moves by a little more than that). The keyframe refinement is off: it starts its tracking where
    the regressed pose projects, so it is a step of its own, tested in test_keyframe_refinement."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "ros_support"))
    try:
        from tiny_map import build_tiny_scene
    finally:
        sys.path.pop(0)
    from seqace_ros.data.scene_folder import load_split
    from seqace_ros.mapfile import load_map
    from seqace_ros.relocalization import RelocConfig, Relocalizer

    # The ROS tests' tiny map: same folder, so a session builds it once.
    cache = os.environ.get("SEQACE_TEST_CACHE") or tmp_path_factory.getbasetemp() / "ros_tiny_map"
    tiny = build_tiny_scene(Path(cache))
    scene_map = load_map(tiny.map_path)
    frames = load_split(tiny.scene_dir, "test")[:8]
    results = {}
    for backend in ("torch", "openvino"):
        cfg = RelocConfig(num_cells=600, backend=backend, precision="fp32", encoder_precision="fp32",
                          min_inliers=30, refine=False)
        reloc = Relocalizer(scene_map, cfg, device="cpu")
        assert reloc.describe()["backend"] == backend
        images = [f.load_image() for f in frames]
        results[backend] = [reloc.localize(im, f.intrinsics(im.shape[1], im.shape[0]))
                            for im, f in zip(images, frames)]
    assert any(r.localized for r in results["torch"])
    for a, b in zip(results["torch"], results["openvino"]):
        assert a.localized == b.localized
        if a.localized:
            assert np.abs(a.pose_c2w[:3, 3] - b.pose_c2w[:3, 3]).max() < 5e-3
            assert abs(a.num_inliers - b.num_inliers) <= max(3, 0.02 * a.num_inliers)


def _run_python(code: str, **env) -> str:
    import subprocess
    import sys

    full = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True,
                          check=True, timeout=120).stdout.strip()


def test_entry_points_make_openmp_threads_sleep_unless_the_user_chose_a_policy():
    """OpenMP reads OMP_WAIT_POLICY when torch loads: the node's package and the CLI set PASSIVE
    before that; a user's own choice, or torch loaded first, is left alone."""
    code = ("import os, seqace_ros.ros; from seqace_ros.threads import prefer_passive_waiting as p; "
            "print(os.environ.get('OMP_WAIT_POLICY'), p())")
    assert _run_python(code) == "PASSIVE False"
    assert _run_python(code, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE False"
    late = "import torch, os; from seqace_ros.threads import prefer_passive_waiting as p; print(p(), os.environ.get('OMP_WAIT_POLICY'))"
    assert _run_python(late) == "False None"


def test_the_threads_setting_caps_opencv_as_well_as_torch():
    """`seqace --threads 1` caps OpenCV's pool too (the refinement's tracking), which would
    otherwise take every core of the computer."""
    code = ("import cv2, torch, seqace_ros.cli as c; c.main(['--threads', '1', 'info', 'no_such_map.safetensors']); "
            "print(cv2.getNumThreads(), torch.get_num_threads())")
    assert _run_python(code).splitlines()[-1] == "1 1"


@needs_openvino
def test_int8_head_calibrates_on_the_maps_features_and_localizes_like_bf16(tmp_path_factory, tmp_path):
    """Maps carry calibration features (a sample of the buffer); precision int8 quantizes the head
    on them and localizes the frames bf16 localizes, close to the same poses. Without them, or on
    the torch backend, int8 is refused with the fix."""
    pytest.importorskip("nncf")
    import sys
    from dataclasses import replace
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "ros_support"))
    try:
        from tiny_map import build_tiny_scene
    finally:
        sys.path.pop(0)
    from seqace_ros.data.scene_folder import load_split
    from seqace_ros.mapfile import MapFileError, load_map
    from seqace_ros.relocalization import RelocConfig, Relocalizer

    cache = os.environ.get("SEQACE_TEST_CACHE") or tmp_path_factory.getbasetemp() / "ros_tiny_map"
    scene_map = load_map(build_tiny_scene(Path(cache)).map_path)
    assert scene_map.calibration.shape == (8192, 64) and np.isfinite(scene_map.calibration).all()
    frames = load_split(build_tiny_scene(Path(cache)).scene_dir, "test")[:8]
    images = [f.load_image() for f in frames]
    out = {}
    for precision in ("bf16", "int8"):
        reloc = Relocalizer(scene_map, RelocConfig(num_cells=600, min_inliers=30, backend="openvino",
                                                   precision=precision), device="cpu")
        assert (reloc.describe()["precision"] == "int8") == (precision == "int8")
        out[precision] = [reloc.localize(im, f.intrinsics(im.shape[1], im.shape[0])) for im, f in zip(images, frames)]
    assert sum(r.localized for r in out["bf16"]) >= 4
    assert sum(r.localized for r in out["int8"]) >= sum(r.localized for r in out["bf16"]) - 1
    for a, b in zip(out["bf16"], out["int8"]):
        if a.localized and b.localized:
            assert np.abs(a.pose_c2w[:3, 3] - b.pose_c2w[:3, 3]).max() < 0.03

    with pytest.raises(ValueError, match="OpenVINO backend"):
        Relocalizer(scene_map, RelocConfig(backend="torch", precision="int8"), device="cpu")
    old = replace(scene_map, calibration=np.zeros((0, 64), np.float16))
    with pytest.raises(ValueError, match="calibration features"):
        Relocalizer(old, RelocConfig(backend="openvino", precision="int8"), device="cpu")
    # The map file keeps them; a wrong width is refused before use.
    assert np.array_equal(load_map(scene_map.save(tmp_path / "m.safetensors")).calibration, scene_map.calibration)
    replace(scene_map, calibration=np.zeros((2000, 32), np.float16)).save(tmp_path / "bad.safetensors")
    with pytest.raises(MapFileError, match="calibration.features has shape"):
        load_map(tmp_path / "bad.safetensors")


def test_backends_benchmark_reads_each_configuration_and_refuses_unknown_options():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "backends.py"
    spec = importlib.util.spec_from_file_location("backends_benchmark", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.parse_config("openvino:bf16", 1000) == {
        "backend": "openvino", "precision": "bf16", "encoder_precision": None, "cells": 1000,
        "height": None, "refine": True, "keyframes": None}
    c = mod.parse_config("openvino:int8:int8/cells=500/height=384/refine=off", 1000)
    assert (c["encoder_precision"], c["cells"], c["height"], c["refine"]) == ("int8", 500, 384, False)
    assert mod.parse_config("openvino:int8:int8/cells=200/kf=1", 1000)["keyframes"] == 1
    with pytest.raises(SystemExit, match="unknown option 'refine=maybe'"):
        mod.parse_config("torch:fp32/refine=maybe", 1000)
