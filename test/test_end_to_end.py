"""The whole path on a small generated scene: map -> relocalize -> accuracy, and the CLI report.

Kept small for CI (320x240, a narrow head, a short schedule); the full-size figures come from
benchmarks/ and `seqace demo`.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import small_room, small_room_map
from seqace_ros.cli import main as seqace
from seqace_ros.data.scene_folder import load_split
from seqace_ros.evaluation import localize_frames, summarize
from seqace_ros.mapfile import load_map
from seqace_ros.relocalization import RelocConfig, Relocalizer


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    return small_room(tmp_path_factory, seed=1, query_frames=50)


@pytest.fixture(scope="module")
def room_map(room, tmp_path_factory):
    return small_room_map(room, tmp_path_factory)


def test_relocalizes_the_small_room_accurately(room, room_map):
    reloc = Relocalizer(load_map(room_map), RelocConfig(num_cells=500, min_inliers=30), device="cpu")
    results = localize_frames(reloc.localize, load_split(room, "test"), progress=False)
    report = summarize(results)
    assert report["frames"] == 50
    assert report["recall"]["10cm_5deg"] >= 85.0, report
    assert report["median_translation_cm"] < 5.0, report


def test_relocalizes_below_the_height_the_map_was_trained_at(room, room_map):
    """RelocConfig.image_height: fewer rows through the encoder (faster) still localize; the
    mapping's scale augmentation (0.8-1.25) covers 192 of 240 rows."""
    reloc = Relocalizer(load_map(room_map), RelocConfig(num_cells=500, image_height=192), device="cpu")
    assert reloc.encoder.image_height == 192
    report = summarize(localize_frames(reloc.localize, load_split(room, "test"), progress=False))
    assert report["recall"]["10cm_5deg"] >= 70.0, report
    with pytest.raises(ValueError, match="image_height 64 < 96"):
        RelocConfig(image_height=64).validate()


def test_localized_poses_carry_a_well_formed_covariance(room, room_map):
    reloc = Relocalizer(load_map(room_map), RelocConfig(num_cells=500), device="cpu")
    f = load_split(room, "test")[5]
    img = f.load_image()
    r = reloc.localize(img, f.intrinsics(img.shape[1], img.shape[0]))
    assert r.localized, r.message
    C = r.covariance
    assert C.shape == (6, 6) and np.allclose(C, C.T)
    assert np.all(np.linalg.eigvalsh(C) > 0)
    # The claimed position uncertainty is not absurd: a few cm at most for a good frame.
    assert np.sqrt(np.trace(C[:3, :3])) < 0.05
    assert r.num_inliers >= 30 and r.inliers.sum() == r.num_inliers
    assert set(r.timing_ms) >= {"encoder", "head", "ransac", "total"}


def test_blank_and_noise_images_are_lost_not_confident(room_map):
    reloc = Relocalizer(load_map(room_map), RelocConfig(num_cells=500), device="cpu")
    K = np.array([[262.5, 0, 160], [0, 262.5, 120], [0, 0, 1]])
    blank = np.full((240, 320, 3), 128, np.uint8)
    assert not reloc.localize(blank, K).localized
    noise = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    r = reloc.localize(noise, K)
    assert not r.localized and r.pose_c2w is None


def test_evaluate_cli_writes_report_plot_and_counts_unreadable_images(room, room_map, tmp_path):
    scene = tmp_path / "scene"
    shutil.copytree(room, scene)
    bad = sorted((scene / "test" / "rgb").iterdir())[3]
    bad.write_bytes(b"broken")
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    rc = seqace(["-q", "evaluate", str(scene), "--map", str(room_map), "--json", str(out_json),
                 "--plot", str(out_png), "--cells", "500"])
    assert rc == 0
    rep = json.loads(out_json.read_text())
    assert rep["frames"] == 50 and rep["failed_to_read"] == 1
    assert set(rep["recall"]) == {"10cm_5deg", "5cm_5deg", "2cm_2deg", "1cm_1deg"}
    assert {"encoder", "head", "ransac", "total"} <= set(rep["timing_ms"]) and rep["fps"] > 0
    assert rep["median_translation_cm"] is not None and rep["median_rotation_deg"] is not None
    broken = [f for f in rep["per_frame"] if f["name"] == bad.stem]
    assert broken and broken[0]["pose_c2w"] is None and broken[0]["error"].startswith("unreadable")
    assert out_png.stat().st_size > 10_000


def test_wrong_map_file_is_refused_by_the_cli(room, tmp_path, capsys):
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x00" * 64)
    rc = seqace(["-q", "evaluate", str(room), "--map", str(fake)])
    assert rc == 2
    assert "not a readable seqace_ros map" in capsys.readouterr().err


def test_every_mapping_profile_is_offered_by_the_cli_and_overrides_apply(capsys):
    from seqace_ros.cli import build_parser, mapping_config_from_args
    from seqace_ros.mapping.config import PROFILES

    base = ["map", "scene", "--out", "m.safetensors", "--seed", "7", "--profile"]
    for name, preset in PROFILES.items():
        cfg = mapping_config_from_args(build_parser().parse_args(base + [name]))
        assert cfg.iterations == preset.iterations and cfg.seed == 7, name
    with pytest.raises(SystemExit):
        build_parser().parse_args(base + ["best"])
    assert "invalid choice: 'best'" in capsys.readouterr().err


def test_sequence_benchmark_runs_on_two_maps_and_writes_the_summary(room, room_map, tmp_path,
                                                                     monkeypatch, capsys):
    """benchmarks/sequence_redkitchen.py end to end (a few frames): tables, summary and JSON."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import sequence_redkitchen

    out = tmp_path / "seq.json"
    monkeypatch.setattr(sys, "argv", ["sequence_redkitchen.py", "--scene", str(room), "--map",
                                      str(room_map), "--map", str(room_map), "--limit", "8",
                                      "--cells", "500", "--json", str(out)])
    sequence_redkitchen.main()
    printed = capsys.readouterr().out
    assert "share: relocalizer" in printed
    data = json.loads(out.read_text())
    assert [m["trained"] for m in data["maps"]] == ["single", "single"]
    means = data["summary"]["means"]["single-trained/single-frame"]
    assert means["maps"] == 2 and 0.0 <= means["recall"]["10cm_5deg"] <= 100.0
    # the same map twice: the single-frame rows agree frame for frame
    a, b = (m["rows"][0]["per_frame"] for m in data["maps"])
    assert [f["name"] for f in a] == [f["name"] for f in b]


def test_one_factory_makes_every_mode_behind_one_interface(room, room_map):
    """make_localizer is how the CLI, the demo and the node build localizers: every mode answers
    localize(image, K, stamp=..., relative_motion=...), reset() and describe() the same way."""
    from seqace_ros.relocalization import MODES, Localizer, make_localizer

    scene_map = load_map(room_map)
    frames = load_split(room, "test")[:3]
    for mode in MODES:
        loc = make_localizer(scene_map, RelocConfig(num_cells=500, min_inliers=30), mode=mode, device="cpu")
        assert isinstance(loc, Localizer)
        localized = 0
        for i, f in enumerate(frames):
            img = f.load_image()
            r = loc.localize(img, f.intrinsics(img.shape[1], img.shape[0]), stamp=0.1 * i,
                             relative_motion=None)
            localized += r.localized
        assert localized >= 2, mode
        loc.reset()
        assert loc.describe()["config"]["num_cells"] == (10 ** 9 if mode == "dense" else 500)
    assert make_localizer(scene_map, mode="sequence", device="cpu").describe()["mode"] == "sequence"
    with pytest.raises(ValueError, match="choose one of"):
        make_localizer(scene_map, mode="fast", device="cpu")


def test_demo_command_maps_localizes_and_writes_its_report_and_plots(room, tmp_path):
    """`seqace demo` on a given scene folder, with a tiny budget: the wiring from the CLI through the
    mapping and the localizer factory to the report and plots (accuracy is the other tests' job)."""
    out = tmp_path / "demo"
    assert seqace(["-q", "demo", "--scene", str(room), "--iterations", "40", "--buffer-size", "20000",
                   "--head-width", "64", "--head-blocks", "1", "--limit", "4", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 4 and len(report["per_frame"]) == 4
    assert report["relocalizer"]["config"]["num_cells"] == 1000
    assert (out / "trajectory.png").stat().st_size > 1000 and (out / "inliers.png").stat().st_size > 1000
