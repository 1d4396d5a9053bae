"""Issue #15, inputs: images, intrinsics, calibration files, stamps and parameters are bounded where
they enter the library and the CLI; a bad query costs one frame, a bad output path costs no training.
(The same bounds in the running node: test_ros_node_hostile.py.)"""

from __future__ import annotations

import math
import os
import stat
import time
import tracemalloc
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from conftest import textured_image
from ros_support.hostile_images import png_bomb
from seqace_ros.cli import main as seqace_main
from seqace_ros.image_msgs import ImageDecodeError, compressed_msg_to_bgr, image_msg_to_bgr
from seqace_ros.data.scene_folder import SceneError, load_split, read_calibration
from seqace_ros.input_bounds import ImageLimits, compressed_size, intrinsics_problem, size_problem

K640 = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])


# ---------------------------------------------------------------- pure bounds
def test_size_and_aspect_bounds():
    assert size_problem(640, 480) is None and size_problem(1920, 1080) is None
    assert "too small" in size_problem(1, 1)
    assert "aspect ratio of 250.0" in size_problem(4000, 16)
    assert "aspect ratio" in size_problem(16, 4000)
    assert "larger than max_image_pixels" in size_problem(20000, 20000)
    assert size_problem(512, 16, ImageLimits(max_aspect_ratio=32.0)) is None
    assert "1..32" in ImageLimits(max_aspect_ratio=0.5).problem()


def test_intrinsics_must_fit_the_image():
    assert intrinsics_problem(K640, 640, 480) is None
    zero_pp = K640.copy()
    zero_pp[:2, 2] = 0.0
    assert "principal point (0, 0) is not inside the 640x480 image" in intrinsics_problem(zero_pp, 640, 480)
    nan = K640.copy()
    nan[0, 0] = np.nan
    assert "NaN" in intrinsics_problem(nan, 640, 480)
    tiny_f = K640.copy()
    tiny_f[0, 0] = tiny_f[1, 1] = 2.0
    assert "implausible" in intrinsics_problem(tiny_f, 640, 480)
    assert "3x3" in intrinsics_problem(np.eye(2), 640, 480)


def test_compressed_header_sizes_are_read_without_decoding():
    jpg = cv2.imencode(".jpg", textured_image(48, 64, 0))[1].tobytes()
    assert compressed_size(jpg) == (64, 48)
    assert compressed_size(png_bomb(300, 200)) == (300, 200)
    assert compressed_size(b"\xff\xd8garbage") is None and compressed_size(b"") is None


def test_png_bomb_is_refused_before_decoding():
    bomb = png_bomb()  # 20000 x 20000: 1.2 GB as BGR
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(ImageDecodeError, match="refused before decoding: image of 20000x20000 pixels is larger"):
        compressed_msg_to_bgr(SimpleNamespace(format="png", data=bomb))
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # cv2 allocates outside tracemalloc's view, so time is the witness that nothing was decoded.
    assert elapsed < 0.1 and peak < 10e6
    # A header that disagrees with CameraInfo is refused before decoding too.
    small = cv2.imencode(".png", textured_image(48, 64, 0))[1].tobytes()
    with pytest.raises(ImageDecodeError, match="header says 64x48 but camera_info describes 640x480"):
        compressed_msg_to_bgr(SimpleNamespace(format="png", data=small), expected_size=(640, 480))
    assert compressed_msg_to_bgr(SimpleNamespace(format="png", data=small), expected_size=(64, 48)).shape == (48, 64, 3)


def test_png_bomb_as_a_scene_image_file_is_unreadable_not_decoded(tmp_path):
    from seqace_ros.data.scene_folder import ImageReadError, read_image

    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb())
    t0 = time.perf_counter()
    with pytest.raises(ImageReadError, match="bomb.png: its header declares 20000x20000 pixels"):
        read_image(path)
    assert time.perf_counter() - t0 < 0.2


def test_raw_image_message_size_is_bounded_before_its_data_is_read():
    msg = SimpleNamespace(height=16, width=1000, encoding="mono8", step=1000, is_bigendian=0, data=b"\0" * 16000)
    with pytest.raises(ImageDecodeError, match="aspect ratio of 62.5"):
        image_msg_to_bgr(msg)
    huge = SimpleNamespace(height=100000, width=100000, encoding="bgr8", step=300000, is_bigendian=0, data=b"")
    with pytest.raises(ImageDecodeError, match="larger than max_image_pixels"):
        image_msg_to_bgr(huge)


def test_camera_info_size_intrinsics_and_non_finite_values_are_checked():
    from seqace_ros.ros.camera_model import CameraModel

    def info(K, w, h, D=(0.0,) * 5, P=None):
        K = np.asarray(K, float)
        P = np.hstack([K, np.zeros((3, 1))]) if P is None else np.asarray(P, float)
        return SimpleNamespace(k=K.reshape(-1), d=np.asarray(D, float), p=P.reshape(-1), r=np.eye(3).reshape(-1),
                               width=w, height=h, header=SimpleNamespace(frame_id="cam"))

    thin = np.array([[500.0, 0, 500], [0, 500.0, 8], [0, 0, 1]])
    t0 = time.perf_counter()
    with pytest.raises(ImageDecodeError, match="camera_info: image of 1000x16 pixels has an aspect ratio"):
        CameraModel(info(thin, 1000, 16, D=(0.1, 0, 0, 0, 0)), rectified=False)
    assert time.perf_counter() - t0 < 0.05
    zero_pp = K640.copy()
    zero_pp[:2, 2] = 0.0
    with pytest.raises(ImageDecodeError, match="principal point"):
        CameraModel(info(zero_pp, 640, 480), rectified=False)
    with pytest.raises(ImageDecodeError, match="D contains NaN"):
        CameraModel(info(K640, 640, 480, D=(math.nan, 0, 0, 0, 0)), rectified=False)
    assert CameraModel(info(K640, 640, 480), rectified=True).K[0, 0] == 500.0


def test_non_finite_parameters_are_refused():
    from seqace_ros.ros import params

    for value in (math.nan, math.inf, -math.inf):
        assert "finite" in params.validate("lost_variance", value)
    assert "must be <= 32.0" in params.validate("max_image_aspect_ratio", 100.0)
    assert params.validate("max_image_pixels", 640 * 480) is None


# ---------------------------------------------------------------- relocalizer (library)
@pytest.fixture(scope="module")
def relocalizer():
    from seqace_ros.encoder import build_encoder
    from seqace_ros.head import SceneHead
    from seqace_ros.mapfile import SceneMap
    from seqace_ros.relocalization import RelocConfig, Relocalizer

    enc = build_encoder("xfeat", device="cpu", image_height=96, optimize=False)  # no tracing: faster here
    torch.manual_seed(0)
    scene_map = SceneMap(head=SceneHead(in_dim=64, width=16, num_blocks=1), metadata={"encoder": enc.describe()})
    return Relocalizer(scene_map, RelocConfig().with_threads(1), device="cpu", encoder=enc)


@pytest.mark.parametrize("image,pattern", [
    (np.zeros((16, 4000), np.uint8), "aspect ratio of 250.0.*max_image_aspect_ratio"),
    (np.zeros((1, 1, 3), np.uint8), "1x1 pixels is too small"),
    (np.zeros((96, 128, 3), np.int64), "must be uint8.*got int64"),
    (np.zeros((96, 128), bool), "must be uint8.*got bool"),
    ([[0] * 128] * 96, "must be a numpy array, got list"),
    (np.zeros((96, 128, 2), np.uint8), "got shape \\(96, 128, 2\\)"),
])
def test_relocalizer_refuses_unusable_images_quickly_with_value_error(relocalizer, image, pattern):
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=pattern):
        relocalizer.localize(image, K640)
    assert time.perf_counter() - t0 < 0.1


def test_relocalizer_refuses_intrinsics_that_do_not_fit_the_image(relocalizer):
    image = textured_image(96, 128, 0)
    K = np.array([[100.0, 0, 0.0], [0, 100.0, 0.0], [0, 0, 1]])
    with pytest.raises(ValueError, match="principal point \\(0, 0\\) is not inside the 128x96 image"):
        relocalizer.localize(image, K)
    K[:2, 2] = (64, 48)
    assert relocalizer.localize(image, K).status in ("localized", "lost")  # runs


def test_sequence_mode_refuses_a_nan_stamp(relocalizer):
    from seqace_ros.relocalization.sequence import SequenceRelocalizer

    seq = SequenceRelocalizer(relocalizer.localize)
    K = np.array([[100.0, 0, 64], [0, 100.0, 48], [0, 0, 1]])
    with pytest.raises(ValueError, match="stamp nan is not finite"):
        seq.localize(textured_image(96, 128, 0), K, stamp=float("nan"))


# ---------------------------------------------------------------- scene files, mapping, CLI
def _scene(root, split="train", sizes=((96, 128),) * 3, calibration="100"):
    for sub in ("rgb", "poses", "calibration"):
        (root / split / sub).mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate(sizes):
        cv2.imwrite(str(root / f"{split}/rgb/{i:04d}.png"), textured_image(max(h, 16), max(w, 16), i)[:h, :w])
        T = np.eye(4)
        T[:3, 3] = [0.1 * i, 0, 0]
        np.savetxt(root / f"{split}/poses/{i:04d}.txt", T)
        (root / f"{split}/calibration/{i:04d}.txt").write_text(calibration)
    return root


def test_nan_in_a_calibration_file_is_refused_naming_it(tmp_path, capsys):
    bad = tmp_path / "calib.txt"
    bad.write_text("500 0 320\n0 nan 240\n0 0 1\n")
    with pytest.raises(SceneError, match=f"{bad}: intrinsics matrix contains NaN"):
        read_calibration(bad)
    scene = _scene(tmp_path / "scene")
    (scene / "train/calibration/0001.txt").write_text("500 0 64\n0 nan 48\n0 0 1\n")
    out = tmp_path / "m.safetensors"
    assert seqace_main(["-q", "map", str(scene), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "calibration/0001.txt: intrinsics matrix contains NaN" in err
    assert not out.exists()


def test_mapping_frames_of_one_pixel_are_skipped_and_an_all_bad_scene_is_refused(tmp_path, capsys):
    scene = _scene(tmp_path / "scene", sizes=((1, 1), (1, 1)))
    out = tmp_path / "m.safetensors"
    assert seqace_main(["-q", "map", str(scene), "--out", str(out), "--iterations", "2"]) == 2
    err = capsys.readouterr().err
    assert "no readable mapping image" in err and "1x1 pixels is too small" in err and "0000" in err
    assert not out.exists()


def test_mapping_frames_with_implausible_intrinsics_or_pose_are_unusable(tmp_path):
    from seqace_ros.data.scene_folder import SceneFrame
    from seqace_ros.mapping.buffer import _load_usable_gray

    image = textured_image(96, 128, 0)
    corner = np.array([[100.0, 0, 0], [0, 100.0, 0], [0, 0, 1]])  # cx = cy = 0
    frame = SceneFrame(None, np.eye(4), corner, "f0", loader=lambda: image)
    with pytest.raises(ValueError, match="unusable for mapping: principal point"):
        _load_usable_gray(frame)
    nan_pose = np.eye(4)
    nan_pose[0, 0] = np.nan
    with pytest.raises(ValueError, match="pose contains NaN"):
        _load_usable_gray(SceneFrame(None, nan_pose, 100.0, "f1", loader=lambda: image))
    assert _load_usable_gray(SceneFrame(None, np.eye(4), 100.0, "f2", loader=lambda: image)).shape == (96, 128)


def test_non_finite_training_loss_names_the_frame(tmp_path):
    from seqace_ros.encoder import XFeatEncoder
    from seqace_ros.mapping import MappingConfig, train_map
    from seqace_ros.mapping import buffer as buffer_mod

    frames = load_split(_scene(tmp_path / "scene"), "train")
    cfg = MappingConfig(buffer_size=600, samples_per_view=200, image_height=96, iterations=3, batch_size=512,
                        head_width=16, head_blocks=1, device="cpu")
    enc = XFeatEncoder(device="cpu", image_height=96, optimize=False)
    real = buffer_mod.build_buffer

    def poisoned(*args, **kwargs):  # a NaN that got past every input check
        buf = real(*args, **kwargs)
        buf.targets[buf.image_index == 1] = float("nan")
        return buf

    import seqace_ros.mapping.trainer as trainer_mod
    original = trainer_mod.build_buffer
    trainer_mod.build_buffer = poisoned
    try:
        with pytest.raises(ValueError, match="training loss became nan at iteration 0; non-finite samples come "
                                             "from 0001 .*0001.png"):
            train_map(frames, cfg, progress=False, encoder=enc)
    finally:
        trainer_mod.build_buffer = original


def _unwritable(folder: str) -> bool:
    import tempfile
    try:
        tempfile.NamedTemporaryFile(dir=folder).close()
    except OSError:
        return True
    return False


def test_map_output_is_checked_before_training(tmp_path, capsys, monkeypatch):
    scene = tmp_path / "not_even_read"  # the output check comes first: no scene is needed
    folder = tmp_path / "out"
    folder.mkdir()
    cases = [(str(folder), "is a directory"), ("", "output map path is empty"),
             ("/dev/null", "not a regular file")]
    if _unwritable("/sys"):  # a read-only folder even for root (in containers)
        cases.append(("/sys/seqace_map.safetensors", "cannot write the map into /sys"))
    for out, pattern in cases:
        t0 = time.perf_counter()
        assert seqace_main(["-q", "map", str(scene), "--out", out]) == 2
        err = capsys.readouterr().err.strip()
        assert pattern in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert time.perf_counter() - t0 < 5.0
    assert list(folder.iterdir()) == [] and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    import seqace_ros.mapfile as mapfile
    monkeypatch.setattr(mapfile.shutil, "disk_usage", lambda p: SimpleNamespace(free=1000))
    assert seqace_main(["-q", "map", str(scene), "--out", str(folder / "m.safetensors")]) == 2
    assert "only 0.0 MB free" in capsys.readouterr().err


def test_save_map_never_replaces_a_device_or_leaves_a_tmp_file(tmp_path):
    from seqace_ros.head import SceneHead
    from seqace_ros.mapfile import MapFileError, SceneMap

    m = SceneMap(head=SceneHead(in_dim=64, width=16, num_blocks=1), metadata={})
    for out in ("/dev/null", tmp_path):
        with pytest.raises(MapFileError):
            m.save(out)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and list(tmp_path.iterdir()) == []


def test_evaluate_records_an_unusable_query_and_goes_on(tmp_path, capsys):
    import json

    from seqace_ros.encoder import build_encoder
    from seqace_ros.head import SceneHead
    from seqace_ros.mapfile import SceneMap

    enc = build_encoder("xfeat", device="cpu", image_height=96)
    map_path = SceneMap(head=SceneHead(in_dim=64, width=16, num_blocks=1),
                        metadata={"encoder": enc.describe()}).save(tmp_path / "m.safetensors")
    scene = _scene(tmp_path / "scene", split="test", sizes=((96, 128), (1, 1), (96, 128)))
    report = tmp_path / "r.json"
    assert seqace_main(["-q", "evaluate", str(scene), "--map", str(map_path), "--json", str(report),
                        "--reloc-device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "1 query image(s) unusable, e.g. 0001" in out and "0001.png" in out
    data = json.loads(report.read_text())
    assert data["frames"] == 3 and data["unusable"] == 1
    errors = [f["error"] for f in data["per_frame"]]
    assert errors[1].startswith("unusable: ") and "0001.png" in errors[1] and "1x1 pixels" in errors[1]
    assert not errors[0].startswith("unusable") and not errors[2].startswith("unusable")
