"""Tests of the synthetic scene generator (small images and coarse textures, so they are fast)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seqace_ros.data.scene_folder import load_split
from seqace_ros.data.synthetic import (CameraNoise, coverage, generate_scene, intrinsics,
                                       look_pose, make_scene, make_trajectories, render_frame,
                                       render_sequence)
from seqace_ros.data.synthetic.raycast import FaceTable, cast
from seqace_ros.geometry import pose_errors

W, H = 160, 120
PPM = 64  # coarse textures: a scene builds in about a second


@pytest.fixture(scope="module")
def room():
    return make_scene("room", seed=0, ppm=PPM)


@pytest.fixture(scope="module")
def repetitive():
    return make_scene("repetitive", seed=0, ppm=PPM)


@pytest.fixture(scope="module")
def K():
    return intrinsics(W, H)


def _backproject(pose, K, u, v, depth):
    ray = np.linalg.inv(K) @ np.array([u, v, 1.0])
    return pose[:3, :3] @ (ray * depth) + pose[:3, 3]


def _project(pose, K, X):
    pc = pose[:3, :3].T @ (np.asarray(X) - pose[:3, 3])
    return (K @ (pc / pc[2]))[:2], pc[2]


# ---------------------------------------------------------------- geometry -------------------

def test_intrinsics_follow_7scenes_convention():
    K = intrinsics(640, 480)
    assert K[0, 0] == K[1, 1] == 525.0 and (K[0, 2], K[1, 2]) == (320.0, 240.0)
    assert intrinsics(320, 240)[0, 0] == pytest.approx(262.5)


def test_depth_backprojects_onto_the_face_it_hit(room, K):
    pose = look_pose(room.camera_center, 80.0, -15.0, 3.0)
    r = render_frame(room, pose, K, W, H, with_depth=True)
    assert np.isfinite(r.depth).all() and (r.face >= 0).all(), "a closed room has no holes"
    table = FaceTable.from_faces(room.faces)
    rng = np.random.default_rng(0)
    for u, v in zip(rng.integers(0, W, 200), rng.integers(0, H, 200)):
        X = _backproject(pose, K, u, v, r.depth[v, u])
        f = r.face[v, u]
        a = table.axis[f]
        assert abs(X[a] - table.coord[f]) < 2e-3, "back-projected point is off the face's plane"
        lo, hi = table.corners[f].min(0), table.corners[f].max(0)
        assert np.all(X >= lo - 2e-3) and np.all(X <= hi + 2e-3), "point outside the face"
        # The camera is on the visible side of the face it sees.
        assert (pose[a, 3] - table.coord[f]) * table.facing[f] > 0


def test_box_corner_projects_onto_the_silhouette(room, K):
    """Pixels just inside the projected outline of a box's front face belong to that face and
    pixels just outside do not: the pinhole model and pixel-centre convention match K."""
    idx = next(i for i, f in enumerate(room.faces) if f.name == "microwave-y")
    face = room.faces[idx]
    corners = face.corners()
    centre = corners.mean(0)
    cam = centre - np.array([0.0, 1.6, -0.3])  # in front of the counter, a little above
    fwd = (centre - cam) / np.linalg.norm(centre - cam)
    pose = look_pose(cam, np.degrees(np.arctan2(fwd[1], fwd[0])), np.degrees(np.arcsin(fwd[2])))
    r = render_frame(room, pose, K, W, H, with_depth=True)
    c_px, _ = _project(pose, K, centre)
    checked = 0
    for corner in corners:
        p, z = _project(pose, K, corner)
        assert 0 < p[0] < W and 0 < p[1] < H and z > 0
        inward = (c_px - p) / np.linalg.norm(c_px - p)
        inside = np.round(p + 2.0 * inward).astype(int)
        outside = np.round(p - 2.0 * inward).astype(int)
        assert r.face[inside[1], inside[0]] == idx
        assert r.face[outside[1], outside[0]] != idx
        checked += 1
    assert checked == 4


def test_cast_finds_nearest_of_two_faces(room):
    table = FaceTable.from_faces(room.faces)
    o = np.array([[2.5, 1.0, 1.2]])
    d = np.array([[0.0, 1.0, 0.0]])  # towards the far wall; the counter's cabinets are lower
    hits = cast(table, [o[:, k] for k in range(3)], [d[:, k] for k in range(3)], one_sided=False)
    assert room.faces[hits.face[0]].name == "room+y"
    assert hits.t[0] == pytest.approx(3.0, abs=1e-4)
    d_low = np.array([[0.0, 1.0, -0.2]])  # lower: the counter front (y = 3.35) is in the way
    hits = cast(table, [o[:, k] for k in range(3)], [d_low[:, k] for k in range(3)], one_sided=False)
    assert room.faces[hits.face[0]].name == "counter-y"
    assert hits.t[0] == pytest.approx(2.35, abs=1e-4)


# ---------------------------------------------------------------- trajectories ---------------

def test_trajectories_are_rigid_smooth_and_plausible(room):
    tr = make_trajectories(room, 120, 100, seed=3, block_length=25)
    for poses in (tr.mapping.poses, tr.query.poses):
        R = poses[:, :3, :3]
        assert np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max() < 1e-9
        assert np.allclose(np.linalg.det(R), 1.0)
        assert np.allclose(poses[:, 3], [0, 0, 0, 1])
        assert (poses[:, 2, 3] > 0.9).all() and (poses[:, 2, 3] < 1.9).all(), "camera height"
        assert (np.abs(poses[:, 2, 2]) < 0.6).all(), "optical axis mostly horizontal"
    steps = [pose_errors(a, b) for a, b in zip(tr.mapping.poses[1:], tr.mapping.poses[:-1])]
    steps = np.array(steps)
    assert steps[:, 0].max() < 0.03 and steps[:, 1].max() < 3.0, "30 Hz motion must be smooth"
    assert 0.004 < np.median(steps[:, 0]) < 0.015  # ~0.25 m/s at 30 Hz


def test_query_blocks_numbering_and_nearness(room):
    tr = make_trajectories(room, 150, 120, seed=1, block_length=50)
    ids = tr.query.frame_ids
    assert list(ids[:50]) == list(range(50)) and list(ids[50:100]) == list(range(100, 150))
    assert list(ids[100:]) == list(range(200, 220)), "last block is shorter"
    assert tr.query.continuous().sum() == 120 - 3
    assert tr.query.names()[50] == "frame-000100"
    cov = coverage(tr.mapping.poses, tr.query.poses)
    assert cov["within_fraction"] >= 0.8
    # Near, but never a copy of a mapping view.
    d = np.linalg.norm(tr.query.poses[:, None, :3, 3] - tr.mapping.poses[None, :, :3, 3], axis=2)
    assert d.min() > 0.005
    assert 0.02 < np.median(d.min(axis=1)) < 0.2


def test_control_points_bounce_back_into_the_region():
    from seqace_ros.data.synthetic.trajectory import _reflect
    for v in np.linspace(-3.0, 4.0, 57):
        x, _ = _reflect(float(v), 0.5, 1.0)
        assert 0.0 <= x <= 1.0
    assert _reflect(1.2, 0.5, 1.0) == (pytest.approx(0.8), True)
    assert _reflect(2.3, 0.5, 1.0) == (pytest.approx(0.3), False)


def test_trajectory_arguments_are_checked(room):
    with pytest.raises(ValueError, match="at least 2 frames"):
        make_trajectories(room, 1, 10)
    with pytest.raises(ValueError, match="speed"):
        make_trajectories(room, 10, 10, speed=0.0)


# ---------------------------------------------------------------- determinism ----------------

def test_same_seed_same_images_different_seed_different(room, K):
    other = make_scene("room", seed=1, ppm=PPM)
    pose = look_pose(room.camera_center, 90.0, -10.0)
    a = render_frame(room, pose, K, W, H).image
    b = render_frame(make_scene("room", seed=0, ppm=PPM), pose, K, W, H).image
    c = render_frame(other, pose, K, W, H).image
    assert np.array_equal(a, b)
    assert np.abs(a - c).mean() > 10.0
    t0 = make_trajectories(room, 30, 20, seed=0)
    t1 = make_trajectories(room, 30, 20, seed=1)
    assert np.array_equal(t0.mapping.poses, make_trajectories(room, 30, 20, seed=0).mapping.poses)
    assert np.abs(t0.mapping.poses - t1.mapping.poses).max() > 0.05


@pytest.fixture(scope="module")
def small_scene_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn") / "room"
    generate_scene(out, "room", mapping_frames=12, query_frames=10, width=W, height=H, seed=5,
                   noise="low", block_length=4, ppm=PPM, workers=1, progress=False)
    return out


def test_generate_scene_is_byte_identical_for_a_seed(small_scene_dir, tmp_path):
    again = generate_scene(tmp_path / "again", "room", mapping_frames=12, query_frames=10,
                           width=W, height=H, seed=5, noise="low", block_length=4, ppm=PPM,
                           workers=2, progress=False)  # also: worker threads change nothing
    files = sorted(p.relative_to(small_scene_dir) for p in small_scene_dir.rglob("*") if p.is_file())
    assert len(files) == 1 + 3 * (12 + 10)
    for rel in files:
        assert (small_scene_dir / rel).read_bytes() == (again / rel).read_bytes(), rel


# ---------------------------------------------------------------- folder layout --------------

def test_folder_round_trips_through_load_split(small_scene_dir):
    room = make_scene("room", seed=5, ppm=PPM)
    tr = make_trajectories(room, 12, 10, seed=5, block_length=4)
    for split, expected in (("train", tr.mapping), ("test", tr.query)):
        frames = load_split(small_scene_dir, split)
        assert [f.name for f in frames] == [f"{n}.color" for n in expected.names()]
        for f, pose in zip(frames, expected.poses):
            assert np.abs(f.pose_c2w - pose).max() < 1e-8
            assert np.allclose(f.intrinsics(W, H), intrinsics(W, H))
        img = frames[0].load_image()
        assert img.shape == (H, W, 3) and img.dtype == np.uint8
    info = json.loads((small_scene_dir / "scene.json").read_text())
    assert info["kind"] == "room" and info["seed"] == 5 and info["focal_px"] == pytest.approx(131.25)
    assert info["mapping_frames"] == 12 and info["query_frames"] == 10
    assert [f.name for f in load_split(small_scene_dir, "test")][4] == "frame-000008.color"


def test_in_memory_sequence_matches_written_png(tmp_path, room, K):
    out = generate_scene(tmp_path / "png", "room", mapping_frames=4, query_frames=2, width=W,
                         height=H, seed=0, noise="medium", image_format="png", ppm=PPM,
                         workers=1, progress=False, write_depth=True)
    tr = make_trajectories(room, 4, 2, seed=0)
    frames = list(render_sequence(room, tr.mapping.poses, K, noise="medium", seed=0,
                                  frame_ids=tr.mapping.frame_ids, stream=1))
    written = load_split(out, "train")
    for (image, pose, K_out), f in zip(frames, written):
        assert np.array_equal(image, f.load_image())
        assert np.array_equal(pose, tr.mapping.poses[written.index(f)]) and np.array_equal(K_out, K)
    import cv2
    depth = cv2.imread(str(out / "train" / "depth" / "frame-000000.depth.png"), cv2.IMREAD_UNCHANGED)
    ref = render_frame(room, tr.mapping.poses[0], K, W, H, with_depth=True).depth
    assert depth.dtype == np.uint16 and np.abs(depth / 1000.0 - ref).max() < 6e-4


def test_output_folder_is_protected(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_scene(tmp_path, mapping_frames=2, query_frames=1, width=32, height=32, ppm=PPM,
                       progress=False)
    with pytest.raises(FileExistsError, match="does not look like a generated scene"):
        generate_scene(tmp_path, mapping_frames=2, query_frames=1, width=32, height=32, ppm=PPM,
                       progress=False, overwrite=True)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_overwrite_replaces_a_generated_scene(tmp_path):
    kw = dict(width=32, height=32, ppm=PPM, progress=False, workers=1)
    generate_scene(tmp_path / "s", mapping_frames=4, query_frames=3, **kw)
    generate_scene(tmp_path / "s", mapping_frames=2, query_frames=1, overwrite=True, **kw)
    assert len(load_split(tmp_path / "s", "train")) == 2 and len(load_split(tmp_path / "s", "test")) == 1


def test_bad_arguments_name_the_problem(room, K):
    with pytest.raises(ValueError, match="unknown scene kind 'kitchen'.*repetitive"):
        make_scene("kitchen")
    with pytest.raises(ValueError, match="unknown noise preset"):
        list(render_sequence(room, np.eye(4)[None], K, noise="extreme"))
    bad = np.eye(4)
    bad[:3, :3] *= 2.0
    with pytest.raises(ValueError, match="not a rotation"):
        render_frame(room, bad, K, W, H)
    skewed = K.copy()
    skewed[0, 1] = 0.5
    with pytest.raises(ValueError, match="without skew"):
        render_frame(room, np.eye(4), skewed, W, H)
    with pytest.raises(ValueError, match="image_format"):
        generate_scene("/nonexistent/x", image_format="gif")
    with pytest.raises(ValueError, match="pixel_sigma"):
        CameraNoise(pixel_sigma=-1.0)


# ---------------------------------------------------------------- the repetitive scene -------

def _mad(a, b):
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def _worst_block(a, b, s=16):
    """Largest mean absolute difference over s x s pixel blocks."""
    d = np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=2)
    h, w = d.shape[0] // s * s, d.shape[1] // s * s
    return float(d[:h, :w].reshape(h // s, s, w // s, s).mean(axis=(1, 3)).max())


def test_repetitive_scene_repeats_every_module(repetitive, room, K):
    """Two views a module apart look nearly the same in the repetitive room, not in the room."""
    step = repetitive.info["module_m"]
    # A narrower lens (2x focal) between the few unique things: modules 1 and 2 of the far wall.
    K = intrinsics(W, H, focal=2 * K[0, 0])
    p0 = look_pose([1.5, 1.4, 1.3], 90.0, -10.0)
    p1 = p0.copy()
    p1[0, 3] += step
    a, b = (render_frame(repetitive, p, K, W, H).image for p in (p0, p1))
    r0, r1 = (render_frame(room, p, K, W, H).image for p in (p0, p1))
    assert _mad(a, b) < 2.0, "views one module apart should be near-identical"
    assert _worst_block(a, b) < 10.0, "... everywhere in the image"
    assert _mad(r0, r1) > 20.0, "the plain room must not repeat"
    half = p0.copy()
    half[0, 3] += step / 2  # half a module off: clearly different
    assert _mad(a, render_frame(repetitive, half, K, W, H).image) > 5 * max(_mad(a, b), 1.0)


def test_repetitive_scene_keeps_some_unique_content(repetitive, K):
    """The unique poster makes the view near it differ from the same view a module over."""
    p0 = look_pose([5.25, 1.6, 1.6], 90.0, 5.0)
    p1 = p0.copy()
    p1[0, 3] -= repetitive.info["module_m"]
    assert _worst_block(render_frame(repetitive, p0, K, W, H).image,
                        render_frame(repetitive, p1, K, W, H).image) > 25.0


# ---------------------------------------------------------------- camera noise ---------------

def _sequence(scene, poses, K, noise, seed=0):
    return np.stack([f.image for f in render_sequence(scene, poses, K, noise=noise, seed=seed)])


def test_noise_options_change_the_images(room, K):
    tr = make_trajectories(room, 8, 1, seed=2)
    poses = tr.mapping.poses
    clean = _sequence(room, poses, K, None).astype(np.float32)

    noisy = _sequence(room, poses, K, {"pixel_sigma": 6.0}).astype(np.float32)
    assert 4.0 < np.std(noisy - clean) < 8.0

    blurred = _sequence(room, poses, K, {"blur_sigma": 1.5}).astype(np.float32)

    def sharpness(x):
        return np.abs(np.diff(x, axis=2)).mean()
    assert sharpness(blurred) < 0.8 * sharpness(clean)

    exposed = _sequence(room, poses, K, {"exposure_jitter": 0.3}).astype(np.float32)
    ratio = exposed.mean(axis=(1, 2, 3)) / clean.mean(axis=(1, 2, 3))
    assert np.ptp(ratio) > 0.01 and np.abs(ratio - 1).max() > 0.05

    moving = _sequence(room, poses, K, {"motion_blur": 1.0}).astype(np.float32)
    assert sharpness(moving) < sharpness(clean)

    from seqace_ros.data.synthetic.noise import MAX_BLUR_PX, motion_kernel
    assert motion_kernel(np.array([0.5, 0.2])) is None
    k = motion_kernel(np.array([300.0, 40.0]))  # poses that were not consecutive frames
    assert max(k.shape) <= MAX_BLUR_PX + 2 and k.sum() == pytest.approx(1.0)

    again = _sequence(room, poses, K, "high")
    assert np.array_equal(again, _sequence(room, poses, K, "high")), "noise is seeded"
    assert not np.array_equal(again, _sequence(room, poses, K, "high", seed=1))


def test_cameras_stay_clear_of_the_geometry(room, repetitive):
    K_small = intrinsics(64, 48)
    for scene in (room, repetitive):
        tr = make_trajectories(scene, 60, 60, seed=4, block_length=20)
        for pose in np.concatenate([tr.mapping.poses[::6], tr.query.poses[::6]]):
            depth = render_frame(scene, pose, K_small, 64, 48, with_depth=True).depth
            assert depth.min() > 0.3


def test_courtyard_is_building_scale_and_grows_with_its_size(K):
    """The courtyard kind: facades metres away (not a room), closed above by the sky so no ray is
    lost, cameras clear of the walls, and its length set by size_m (refused for the other kinds)."""
    small, large = make_scene("courtyard", seed=0, ppm=PPM, size_m=12), make_scene("courtyard", seed=0, ppm=PPM,
                                                                                   size_m=24)
    assert large.bounds[1][0] == pytest.approx(24.0) and small.bounds[1][0] == pytest.approx(12.0)
    for scene in (small, large):
        tr = make_trajectories(scene, 200, 20, seed=1, speed=2.0)
        extent = np.ptp(tr.mapping.poses[:, :3, 3], axis=0)
        assert extent[0] > 0.4 * (scene.bounds[1][0] - 6.0)  # the drive spans most of the court
        for pose in tr.mapping.poses[::40]:
            r = render_frame(scene, pose, K, W, H, with_depth=True)
            assert (r.face >= 0).all()
            assert np.median(r.depth) > 3.0 and r.depth.min() > 0.5
    with pytest.raises(ValueError, match="size"):
        make_scene("room", seed=0, ppm=PPM, size_m=20)
    with pytest.raises(ValueError, match="12..120"):
        make_scene("courtyard", seed=0, ppm=PPM, size_m=500)


def test_a_lower_frame_rate_takes_fewer_frames_along_the_same_path():
    """Photos along a drive (benchmarks/courtyard.py --photo-size): the same speed at 1/15 of the
    frame rate walks the same path with a frame where every 15th drive frame is."""
    scene = make_scene("courtyard", seed=0, ppm=PPM, size_m=20)
    drive = make_trajectories(scene, 301, 10, seed=0, speed=2.0).mapping.poses[:, :3, 3]
    photos = make_trajectories(scene, 21, 10, seed=0, speed=2.0, fps=2.0).mapping.poses[:, :3, 3]
    gaps = np.linalg.norm(photos[:, None] - drive[None], axis=2).min(axis=1)
    assert gaps.max() < 0.1  # metres: on the drive's path (drive frames are ~7 cm apart)
    # ...from its start to its end.
    assert np.linalg.norm(photos[0] - drive[0]) < 0.1 and np.linalg.norm(photos[-1] - drive[-1]) < 0.1
