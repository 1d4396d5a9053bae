"""The structure-based benchmark peer on a tiny synthetic scene: a textured floor seen from known
poses, rendered exactly by plane homographies, so every pose error can be checked against truth."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from seqace_ros.refinement.known_poses import epipolar_distance, fundamental_from_poses, select_pairs  # noqa: E402
from seqace_ros.refinement.triangulation import (TriangulationSettings, on_reference_rays,  # noqa: E402
                                                 triangulate_tracks)

F_PX, W, H = 300.0, 320, 240
K = np.array([[F_PX, 0, W / 2], [0, F_PX, H / 2], [0, 0, 1.0]])
TEX_PX, TEX_M = 2048, 2.0  # texture pixels across the 2 m x 2 m floor (z = 0, centred at 0)


def _load_peer_script():
    spec = importlib.util.spec_from_file_location("peer_structure",
                                                  REPO / "benchmarks" / "peer_structure.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _look_down_pose(x: float, y: float, z: float, yaw_deg: float, tilt_deg: float = 0.0):
    """Camera-to-world pose of a camera at (x, y, z) looking down at the floor (OpenCV axes)."""
    down = np.diag([1.0, -1.0, -1.0])  # camera z = world -z
    yaw, tilt = np.radians(yaw_deg), np.radians(tilt_deg)
    Rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    Rx = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]])
    T = np.eye(4)
    T[:3, :3] = Rz @ down @ Rx
    T[:3, 3] = [x, y, z]
    return T


def _texture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tex = np.zeros((TEX_PX, TEX_PX), np.float32)
    for cells, weight in ((16, 1.0), (64, 0.6), (256, 0.35)):  # blobs at several scales
        noise = rng.standard_normal((cells, cells)).astype(np.float32)
        tex += weight * cv2.resize(noise, (TEX_PX, TEX_PX), interpolation=cv2.INTER_CUBIC)
    tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return cv2.cvtColor(tex, cv2.COLOR_GRAY2BGR)


def _render(texture: np.ndarray, T_c2w: np.ndarray) -> np.ndarray:
    w2c = np.linalg.inv(T_c2w)
    s = TEX_M / TEX_PX  # texture pixel (u, v) -> floor point (u*s - 1, v*s - 1, 0)
    A = np.array([[s, 0, -TEX_M / 2], [0, s, -TEX_M / 2], [0, 0, 1.0]])
    Hm = K @ np.column_stack([w2c[:3, 0], w2c[:3, 1], w2c[:3, 3]]) @ A
    return cv2.warpPerspective(texture, Hm, (W, H), flags=cv2.INTER_LINEAR)


def _write_split(root: Path, texture: np.ndarray, poses: list[np.ndarray]) -> None:
    for sub in ("rgb", "poses", "calibration"):
        (root / sub).mkdir(parents=True)
    for i, T in enumerate(poses):
        cv2.imwrite(str(root / "rgb" / f"frame-{i:06d}.color.png"), _render(texture, T))
        np.savetxt(root / "poses" / f"frame-{i:06d}.pose.txt", T)
        (root / "calibration" / f"frame-{i:06d}.calibration.txt").write_text(f"{F_PX}\n")


@pytest.fixture(scope="module")
def floor_scene(tmp_path_factory) -> Path:
    scene = tmp_path_factory.mktemp("floor_scene")
    texture = _texture()
    mapping = [_look_down_pose(x, y, 1.2, yaw_deg=10.0 * (i % 3) - 10.0, tilt_deg=5.0 * (i % 2))
               for i, (x, y) in enumerate((x, y) for x in (-0.3, 0.0, 0.3) for y in (-0.25, 0.0, 0.25))]
    queries = [_look_down_pose(0.12, 0.08, 1.1, 5.0, 3.0),
               _look_down_pose(-0.17, -0.11, 1.25, -12.0, -4.0),
               _look_down_pose(0.21, -0.19, 1.15, 15.0, 6.0)]
    _write_split(scene / "train", texture, mapping)
    _write_split(scene / "test", texture, queries)
    return scene


def test_epipolar_distance_is_zero_for_true_projections_and_large_for_others():
    rng = np.random.default_rng(1)
    T1, T2 = _look_down_pose(0, 0, 1.2, 0), _look_down_pose(0.3, 0.1, 1.1, 20, 5)
    X = np.column_stack([rng.uniform(-0.4, 0.4, (50, 2)), rng.uniform(-0.2, 0.2, 50)])

    def project(T):
        Xc = (np.linalg.inv(T) @ np.column_stack([X, np.ones(50)]).T).T[:, :3]
        return (Xc @ K.T)[:, :2] / Xc[:, 2:3]

    F = fundamental_from_poses(K, T1, K, T2)
    x1, x2 = project(T1), project(T2)
    assert np.max(epipolar_distance(F, x1, x2)) < 1e-6
    assert np.median(epipolar_distance(F, x1, x2[::-1])) > 5.0  # shuffled matches fail the check


def test_select_pairs_respects_view_angle_and_neighbour_count():
    poses = [_look_down_pose(0.1 * i, 0, 1.2, 0) for i in range(6)]
    side = np.eye(4)  # a camera looking sideways, 90 deg away from the others
    side[:3, 3] = [0.05, 0, 1.2]
    pairs = select_pairs(np.stack(poses + [side]), k=2, max_angle_deg=30.0)
    assert not np.any(pairs == 6)
    assert {(0, 1), (0, 2), (4, 5)} <= {tuple(p) for p in pairs}
    with pytest.raises(ValueError, match="pairs per frame"):
        select_pairs(np.stack(poses), k=0)


def test_triangulation_recovers_points_and_drops_an_outlier_observation():
    rng = np.random.default_rng(2)
    poses = np.stack([_look_down_pose(0.15 * i - 0.3, 0.05 * i, 1.2, 5 * i) for i in range(5)])
    X = np.column_stack([rng.uniform(-0.3, 0.3, (40, 2)), rng.uniform(-0.1, 0.1, 40)])
    tracks, images, xy = [], [], []
    for t, p in enumerate(X):
        for i, T in enumerate(poses):
            pc = np.linalg.inv(T) @ np.append(p, 1.0)
            tracks.append(t), images.append(i)
            xy.append((K @ pc[:3])[:2] / pc[2] + rng.normal(0, 0.3, 2))
    xy = np.array(xy)
    xy[3] += [25.0, -10.0]  # one wrong observation in track 0
    tri = triangulate_tracks(np.array(tracks), np.array(images), xy, poses, np.stack([K] * 5), 40,
                             TriangulationSettings(max_reproj_px=2.0, min_angle_deg=1.0))
    assert tri.valid.all()
    assert np.max(np.linalg.norm(tri.points - X, axis=1)) < 0.01  # metres
    assert not tri.obs_inlier[3] and tri.obs_inlier.sum() == len(xy) - 1


def test_points_on_their_reference_rays_project_onto_their_pixels_and_fit_the_tracks_depth():
    """A keyframe pixel defines its point: moved onto that pixel's ray at the depth the other views
    fit best, the point projects exactly onto the pixel (a freely triangulated one misses it), lies
    nearer the truth, and a track that disagrees with its pixel shows a large error."""
    rng = np.random.default_rng(5)
    poses = np.stack([_look_down_pose(0.1 * i - 0.2, 0.03 * i, 1.2, 4 * i) for i in range(5)])
    X = np.column_stack([rng.uniform(-0.3, 0.3, (60, 2)), rng.uniform(-0.1, 0.1, 60)])
    clean = np.stack([[(K @ pc[:3])[:2] / pc[2] for pc in (np.linalg.inv(T) @ np.append(p, 1.0) for T in poses)]
                      for p in X])  # (points, views, 2)
    ref_xy = clean[:, 0]  # view 0 is the keyframe: its pixels are exact by definition
    tracks, images = np.repeat(np.arange(60), 4), np.tile(np.arange(1, 5), 60)
    Ks = np.stack([K] * 5)
    noisy = clean[:, 1:].reshape(-1, 2) + rng.normal(0, 0.4, (240, 2))
    noisy[tracks == 7] += [0.0, 3.0]  # track 7 slid off its patch, across the epipolar lines
    free = triangulate_tracks(np.concatenate([np.arange(60), tracks]), np.concatenate([np.zeros(60, int), images]),
                              np.concatenate([ref_xy, noisy]), poses, Ks, 60,
                              TriangulationSettings(max_reproj_px=5.0, min_angle_deg=1.0))
    on_ray, rms = on_reference_rays(free.points, ref_xy, K, poses[0], tracks, images, noisy, poses, Ks)

    def own_pixel_error(points):
        uv = (points - poses[0][:3, 3]) @ poses[0][:3, :3] @ K.T
        return np.linalg.norm(uv[:, :2] / uv[:, 2:] - ref_xy, axis=1)

    assert np.max(own_pixel_error(on_ray)) < 1e-6
    assert np.median(own_pixel_error(free.points)) > 0.05  # the offset the ray removes
    good = np.arange(60) != 7
    err_free, err_ray = (np.linalg.norm(p - X, axis=1)[good] for p in (free.points, on_ray))
    assert np.median(err_ray) < 0.8 * np.median(err_free), (np.median(err_ray), np.median(err_free))
    assert rms[7] > 2.0 and np.median(rms[good]) < 0.6
    exact, exact_rms = on_reference_rays(free.points, ref_xy, K, poses[0], tracks, images,
                                         clean[:, 1:].reshape(-1, 2), poses, Ks)
    assert np.max(np.linalg.norm(exact - X, axis=1)) < 1e-6 and np.max(exact_rms) < 1e-6


def test_triangulation_rejects_too_few_views_a_narrow_angle_and_points_behind():
    poses = np.stack([_look_down_pose(0.02 * i, 0.0, 1.2, 0) for i in range(3)])
    X = np.array([[0.0, 0.0, 0.0], [0.1, 0.1, 0.0]])
    tracks, images, xy = [], [], []
    for t, p in enumerate(X):
        for i, T in enumerate(poses[: 3 if t == 0 else 1]):  # track 1: one view only
            pc = np.linalg.inv(T) @ np.append(p, 1.0)
            tracks.append(t), images.append(i)
            xy.append((K @ pc[:3])[:2] / pc[2])
    args = (np.array(tracks), np.array(images), np.array(xy), poses, np.stack([K] * 3), 2)
    wide = triangulate_tracks(*args, TriangulationSettings(min_angle_deg=1.0))  # 4 cm at 1.2 m: 1.9 deg
    assert wide.valid.tolist() == [True, False] and np.isnan(wide.points[1]).all()
    assert np.isinf(wide.obs_error_px[-1]) and not wide.obs_inlier[-1]
    narrow = triangulate_tracks(*args, TriangulationSettings(min_angle_deg=3.0))
    assert not narrow.valid.any()
    behind = triangulate_tracks(*args, TriangulationSettings(min_angle_deg=1.0, min_depth_m=1.5))
    assert not behind.valid.any()
    with pytest.raises(ValueError, match="obs_image 7 outside"):
        triangulate_tracks(np.array([0, 0]), np.array([0, 7]), np.zeros((2, 2)), poses, np.stack([K] * 3), 1)


def test_peer_localizes_synthetic_queries_and_reuses_its_cache(floor_scene, tmp_path):
    peer = _load_peer_script()
    ms = peer.default_map_settings("sift")
    cache = tmp_path / "cache"
    report = peer.run_peer(floor_scene, "sift", threads=1, cache_dir=cache, map_settings=ms,
                           progress=False, log=lambda *_: None)
    assert report["frames"] == 3 and report["localized"] == 3
    for rec in report["per_frame"]:
        assert rec["translation_cm"] < 0.5 and rec["rotation_deg"] < 0.2, rec
    assert report["map_stats"]["points"] > 200
    assert report["timing_ms"]["total"] > 0 and not report["map_from_cache"]
    assert len(list(cache.glob("*.npz"))) == 1

    again = peer.run_peer(floor_scene, "sift", threads=1, cache_dir=cache, map_settings=ms,
                          progress=False, log=lambda *_: None)
    assert again["map_from_cache"]
    assert [r["pose_c2w"] for r in again["per_frame"]] == [r["pose_c2w"] for r in report["per_frame"]]


def test_bad_input_gives_clear_errors(tmp_path):
    peer = _load_peer_script()
    with pytest.raises(ValueError, match="unknown feature type 'orb'"):
        peer.default_map_settings("orb")
    with pytest.raises(ValueError, match="does not exist"):
        peer.run_peer(tmp_path / "nowhere", cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        peer.run_peer(tmp_path, threads=0, progress=False)


def test_textureless_scene_is_refused_with_a_reason(tmp_path):
    peer = _load_peer_script()
    blank = np.full((256, 256, 3), 128, np.uint8)
    poses = [_look_down_pose(0.1 * i, 0.0, 1.2, 0.0) for i in range(4)]
    for split in ("train", "test"):
        root = tmp_path / "scene" / split
        for sub in ("rgb", "poses", "calibration"):
            (root / sub).mkdir(parents=True)
        for i, T in enumerate(poses):
            cv2.imwrite(str(root / "rgb" / f"{i:04d}.png"), blank)
            np.savetxt(root / "poses" / f"{i:04d}.txt", T)
            (root / "calibration" / f"{i:04d}.txt").write_text(f"{F_PX}\n")
    with pytest.raises(ValueError, match="no verified matches"):
        peer.run_peer(tmp_path / "scene", cache_dir=tmp_path / "cache", progress=False,
                      log=lambda *_: None)


def test_corrupt_cache_entry_is_rebuilt(floor_scene, tmp_path):
    peer = _load_peer_script()
    cache = tmp_path / "cache"
    peer.run_peer(floor_scene, cache_dir=cache, limit=1, progress=False, log=lambda *_: None)
    (entry,) = cache.glob("*.npz")
    entry.write_bytes(b"not an npz file")
    messages = []
    report = peer.run_peer(floor_scene, cache_dir=cache, limit=1, progress=False,
                           log=messages.append)
    assert not report["map_from_cache"] and report["localized"] == 1
    assert any("unreadable" in m for m in messages)


def test_few_mapping_views_far_apart_are_paired_exhaustively(floor_scene, tmp_path):
    """A handful of photos metres apart (Strecha): with fewer mapping frames than
    exhaustive_below, every pair within the angle bound is matched, whatever the distance bound."""
    from dataclasses import replace

    peer = _load_peer_script()
    ms = peer.default_map_settings("sift")
    far = replace(ms, structure=replace(ms.structure, pair_max_distance_m=0.01))  # no pair this close
    report = peer.run_peer(floor_scene, "sift", threads=1, cache_dir=tmp_path / "a", map_settings=far,
                           progress=False, log=lambda *_: None)
    assert report["localized"] == 3
    strict = replace(far, structure=replace(far.structure, exhaustive_below=0))
    with pytest.raises(ValueError, match="no mapping pairs"):
        peer.run_peer(floor_scene, "sift", threads=1, cache_dir=tmp_path / "b", map_settings=strict,
                      progress=False, log=lambda *_: None)
