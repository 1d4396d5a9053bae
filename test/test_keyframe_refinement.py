"""Keyframe refinement (refinement/keyframe_tracking.py) on a small generated room with exact poses:
the keyframes' points are where the images say, a perturbed pose is pulled back to the truth, the
relocalizer refines by default and not when told, the map file keeps the keyframes, and damaged
keyframe data is refused with a clear error instead of crashing the caller."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from conftest import small_room, small_room_map
from seqace_ros.cli import build_parser, mapping_config_from_args, reloc_config_from_args
from seqace_ros.data.scene_folder import load_split
from seqace_ros.encoder import to_gray
from seqace_ros.evaluation import localize_frames, summarize
from seqace_ros.mapfile import MapFileError, load_map
from seqace_ros.refinement.keyframe_tracking import (KeyframeRefiner, KeyframeSettings, build_keyframes,
                                                     keyframes_from_arrays, keyframes_to_arrays)
from seqace_ros.refinement.tracking_config import TrackingConfig
from seqace_ros.relocalization import RelocConfig, Relocalizer
from seqace_ros.relocalization.pnp import project

@pytest.fixture(scope="module")
def room(tmp_path_factory):
    return small_room(tmp_path_factory, seed=3, query_frames=40)


@pytest.fixture(scope="module")
def keyframes(room):
    return build_keyframes(load_split(room, "train"), KeyframeSettings(stride=5), progress=False)


@pytest.fixture(scope="module")
def room_map(room, tmp_path_factory):
    return small_room_map(room, tmp_path_factory)


def _perturb(pose: np.ndarray, rng: np.random.Generator, cm: float, deg: float) -> np.ndarray:
    out = pose.copy()
    out[:3, 3] += rng.normal(0.0, cm / 100.0, 3)
    out[:3, :3] = Rotation.from_rotvec(rng.normal(0.0, np.radians(deg), 3)).as_matrix() @ pose[:3, :3]
    return out


def test_keyframe_points_lie_where_every_mapping_view_sees_them(room, keyframes):
    kfs, stats = keyframes
    frames = load_split(room, "train")
    assert stats["keyframes"] >= 20 and stats["points"] >= 20 * 40, stats
    # Each point lies on the ray of the pixel that defines it in its keyframe...
    for kf in kfs:
        uv, front = project(kf.points.astype(np.float64), kf.K, kf.pose_c2w)
        assert np.all(front)
        assert np.max(np.linalg.norm(uv - kf.xy, axis=1)) < 1e-3
    # ...and onto the same surface patch in a mapping frame that is not a keyframe: track it there
    # from the projection with LK and it stays within a pixel.
    _assert_points_track_onto_their_projection(kfs[4], frames[4 * 5 + 2])


def _assert_points_track_onto_their_projection(kf, other) -> None:
    """The keyframe's patches, tracked by LK into the mapping frame ``other`` from where their 3D
    points project, stay there: the points lie where the images say."""
    from seqace_ros.refinement.keyframe_tracking import normalize_for_tracking, track_patches

    img = to_gray(other.load_image())
    K = other.intrinsics(img.shape[1], img.shape[0])
    uv, front = project(kf.points.astype(np.float64), K, np.asarray(other.pose_c2w))
    inside = front & (uv[:, 0] > 10) & (uv[:, 1] > 10) & (uv[:, 0] < img.shape[1] - 10) & (uv[:, 1] < img.shape[0] - 10)
    pos, ok = track_patches(normalize_for_tracking(kf.image), normalize_for_tracking(img), kf.xy[inside],
                            uv[inside], 21, 2, 0.5)
    assert ok.sum() >= 20
    assert np.median(np.linalg.norm(pos[ok] - uv[inside][ok], axis=1)) < 0.5


def test_a_perturbed_pose_is_pulled_back_to_the_truth(room, keyframes):
    refiner = KeyframeRefiner(keyframes[0])
    rng = np.random.default_rng(0)
    start_err, end_err, accepted = [], [], 0
    for f in load_split(room, "test"):
        img = to_gray(f.load_image())
        K = f.intrinsics(img.shape[1], img.shape[0])
        gt = np.asarray(f.pose_c2w, np.float64)
        start = _perturb(gt, rng, 0.7, 0.2)  # the size of a regressed pose's error
        r = refiner.refine(img, K, start)
        out = r.pose_c2w if r.accepted else start
        accepted += r.accepted
        start_err.append(np.linalg.norm(start[:3, 3] - gt[:3, 3]))
        end_err.append(np.linalg.norm(out[:3, 3] - gt[:3, 3]))
        if r.accepted:
            assert r.covariance.shape == (6, 6) and np.all(np.linalg.eigvalsh(r.covariance) > 0)
    assert accepted >= 0.8 * len(end_err), f"refined {accepted}/{len(end_err)}"
    assert np.median(end_err) < 0.25 * np.median(start_err), (np.median(start_err), np.median(end_err))
    # A start far outside what the refinement may correct is kept, with the reason.
    f = load_split(room, "test")[0]
    img = to_gray(f.load_image())
    far = np.asarray(f.pose_c2w, np.float64).copy()
    far[:3, 3] += [0.6, 0.0, 0.0]
    r = refiner.refine(img, f.intrinsics(img.shape[1], img.shape[0]), far)
    assert not r.accepted and r.message


def test_a_refinement_that_leaves_the_regressed_support_is_refused(room, keyframes):
    """The scene-coordinate inliers define the map frame the network learned: a refined pose they no
    longer agree with (keyframes triangulated from noisy mapping poses) is not trusted."""
    refiner = KeyframeRefiner(keyframes[0])
    rng = np.random.default_rng(1)
    f = load_split(room, "test")[5]
    img = to_gray(f.load_image())
    K = f.intrinsics(img.shape[1], img.shape[0])
    gt = np.asarray(f.pose_c2w, np.float64)
    start = _perturb(gt, rng, 1.5, 0.3)
    # Support that agrees exactly with the start pose: the points seen from it where it projects them.
    p3 = np.concatenate([keyframes[0][k].points for k in refiner.nearest(start)]).astype(np.float64)
    p2, front = project(p3, K, start)
    inside = front & (p2[:, 0] >= 0) & (p2[:, 1] >= 0) & (p2[:, 0] < img.shape[1]) & (p2[:, 1] < img.shape[0])
    p2, p3 = p2[inside], p3[inside]
    free = refiner.refine(img, K, start)
    assert free.accepted, free.message
    shift_px = np.median(np.linalg.norm(project(p3, K, free.pose_c2w)[0] - p2, axis=1))
    assert shift_px > 0.3  # the correction moves the support's projections measurably
    loose = refiner.refine(img, K, start, support=(p2, p3, 10.0 * shift_px))
    assert loose.accepted and np.allclose(loose.pose_c2w, free.pose_c2w)
    tight = refiner.refine(img, K, start, support=(p2, p3, 0.5 * shift_px))
    assert not tight.accepted and "scene-coordinate inliers" in tight.message


def test_mapping_warns_when_the_poses_disagree_with_the_images(room, room_map, caplog):
    import logging

    from seqace_ros.mapping.trainer import add_keyframes

    frames = load_split(room, "train")
    rng = np.random.default_rng(4)
    noisy = [dataclasses.replace(f, pose_c2w=_perturb(np.asarray(f.pose_c2w, np.float64), rng, 2.0, 0.5))
             for f in frames]
    with caplog.at_level(logging.WARNING, logger="seqace_ros.mapping.trainer"):
        add_keyframes(load_map(room_map), frames, stride=5, progress=False)
        assert "triangulated consistently" not in caplog.text
        m = add_keyframes(load_map(room_map), noisy, stride=5, progress=False)
    st = m.metadata["keyframes"]
    assert st["points"] < 0.2 * st["corners"], st
    assert "triangulated consistently with the mapping poses" in caplog.text


def test_a_keyframe_of_twice_the_resolution_tracks_into_a_smaller_image():
    """A map from high-resolution photos, a robot camera of half the resolution: the keyframe is
    halved (low-pass, not aliased) before the warp into the query, and its patches land where the
    same scene lies in the smaller image."""
    import cv2

    from seqace_ros.refinement.keyframe_tracking import normalize_for_tracking, track_between_views

    rng = np.random.default_rng(0)

    def noise(sigma: float) -> np.ndarray:
        n = cv2.GaussianBlur(rng.random((960, 1280)).astype(np.float32), (0, 0), sigma)
        return (n - n.mean()) / n.std()

    big = np.clip(128 + 25 * sum(noise(s) for s in (1.0, 3.0, 9.0, 27.0)), 0, 255).astype(np.uint8)
    small = cv2.resize(big, (640, 480), interpolation=cv2.INTER_AREA)
    K_big = np.array([[1050.0, 0, 640], [0, 1050, 480], [0, 0, 1]])
    K_small = np.array([[525.0, 0, 320], [0, 525, 240], [0, 0, 1]])
    xy = cv2.goodFeaturesToTrack(big, 600, 0.005, 10, blockSize=7).reshape(-1, 2).astype(np.float32)
    xy = xy[(xy.min(axis=1) > 40) & (xy[:, 0] < 1240) & (xy[:, 1] < 920)]
    truth = (xy + 0.5) / 2 - 0.5  # pixel centres of an area-averaged half-size image
    start = (truth + rng.normal(0.0, 1.0, truth.shape)).astype(np.float32)
    pos, ok = track_between_views(normalize_for_tracking(big), K_big, np.eye(4), normalize_for_tracking(small),
                                  K_small, np.eye(4), xy, start, 15, 2, 0.0, True)
    err = np.linalg.norm(pos - truth, axis=1)[ok]
    assert ok.mean() > 0.9 and np.median(err) < 0.15 and np.mean(err < 0.5) > 0.6, (ok.mean(), np.median(err))


def test_few_distant_views_get_keyframes_from_the_maps_scene_coordinates(room, room_map):
    """Where fewer than min_neighbours views lie within the neighbour distance, the map's scene
    coordinates say how far neighbours may be (by depth) and where LK starts; without them such
    keyframes cannot be built."""
    frames = load_split(room, "train")[::25]  # 6 views, 16-24 cm apart
    settings = KeyframeSettings(stride=1, neighbour_max_distance_m=0.1, wide_baseline_depth_ratio=0.2)
    reloc = Relocalizer(load_map(room_map), RelocConfig(refine=False), device="cpu")
    kfs, stats = build_keyframes(frames, settings, progress=False, predict=reloc.scene_coordinates)
    assert stats["wide_baseline"] == len(frames) and stats["keyframes"] >= 4, stats
    assert build_keyframes(frames, settings, progress=False)[1]["keyframes"] == 0
    # The points lie where the images say: tracked from a keyframe into a view halfway to the next
    # one (never used to build them), they land within half a pixel of their projection.
    all_frames = load_split(room, "train")
    centres = np.stack([np.asarray(f.pose_c2w)[:3, 3] for f in all_frames])
    for kf in kfs[1:3]:
        i = int(np.argmin(np.linalg.norm(centres - kf.pose_c2w[:3, 3], axis=1)))
        _assert_points_track_onto_their_projection(kf, all_frames[min(i + 12, len(all_frames) - 1)])


def test_a_pose_beyond_the_tight_search_is_refined_by_the_wide_one(room, keyframes):
    """A start several pixels off (more than the tight search's shift bound) is found by the wide
    search and then refined by the tight one; with the wide search off it is mostly kept."""
    wide = KeyframeRefiner(keyframes[0])
    tight = KeyframeRefiner(keyframes[0], TrackingConfig(wide_search=False))
    rng = np.random.default_rng(1)
    start_err, end_err, counts = [], [], {"wide": 0, "tight": 0}
    for f in load_split(room, "test")[::2]:
        img = to_gray(f.load_image())
        K = f.intrinsics(img.shape[1], img.shape[0])
        gt = np.asarray(f.pose_c2w, np.float64)
        start = _perturb(gt, rng, 3.0, 1.0)
        r = wide.refine(img, K, start)
        counts["wide"] += r.accepted
        counts["tight"] += tight.refine(img, K, start).accepted
        start_err.append(np.linalg.norm(start[:3, 3] - gt[:3, 3]))
        end_err.append(np.linalg.norm((r.pose_c2w if r.accepted else start)[:3, 3] - gt[:3, 3]))
    n = len(end_err)
    assert counts["wide"] >= 0.8 * n and counts["tight"] < 0.6 * counts["wide"], counts
    assert np.median(end_err) < 0.15 * np.median(start_err), (np.median(start_err), np.median(end_err))


def test_relocalizer_refines_by_default_and_not_when_told(room, room_map):
    scene_map = load_map(room_map)
    assert scene_map.keyframes, "train_map stores keyframes by default"
    assert scene_map.metadata["keyframes"]["points"] > 0
    test = load_split(room, "test")
    on = Relocalizer(scene_map, RelocConfig(num_cells=500, min_inliers=30), device="cpu")
    off = Relocalizer(scene_map, RelocConfig(num_cells=500, min_inliers=30, refine=False), device="cpu")
    assert on.refiner is not None and off.refiner is None
    assert "keyframes" in on.describe()["refinement"] and off.describe()["refinement"] == "off"
    r_on = localize_frames(on.localize, test, progress=False)
    r_off = localize_frames(off.localize, test, progress=False)
    s_on, s_off = summarize(r_on), summarize(r_off)
    assert s_on["refined"] >= 0.8 * s_on["localized"], s_on
    assert s_off["refined"] == 0 and all(r.refined is None for r in r_off)
    assert "refine" in s_on["timing_ms"]
    assert s_on["median_translation_cm"] < 0.7 * s_off["median_translation_cm"], (s_on, s_off)
    assert s_on["recall"]["10cm_5deg"] >= s_off["recall"]["10cm_5deg"]
    # The tracking settings compose into RelocConfig and reach the refiner.
    one = Relocalizer(scene_map, RelocConfig(num_cells=500, min_inliers=30, tracking=TrackingConfig(keyframes=1)),
                      device="cpu")
    used = []
    for f in test[:3]:
        image = f.load_image()
        used.append(len(one.localize(image, f.intrinsics(image.shape[1], image.shape[0])).refinement.keyframes))
    assert one.refiner.config.keyframes == 1 and used == [1, 1, 1], used


def test_command_line_switches_reach_the_settings():
    p = build_parser()
    args = p.parse_args(["evaluate", "scene", "--map", "m.safetensors", "--no-refine"])
    assert reloc_config_from_args(args).refine is False
    args = p.parse_args(["evaluate", "scene", "--map", "m.safetensors"])
    assert reloc_config_from_args(args).refine is True
    assert reloc_config_from_args(args).tracking.keyframes == TrackingConfig().keyframes
    args = p.parse_args(["evaluate", "scene", "--map", "m.safetensors", "--refine-keyframes", "1"])
    assert reloc_config_from_args(args).tracking.keyframes == 1
    args = p.parse_args(["evaluate", "scene", "--map", "m.safetensors", "--refine-keyframes", "0"])
    with pytest.raises(ValueError, match="tracking.keyframes 0 < 1"):
        reloc_config_from_args(args)
    args = p.parse_args(["map", "scene", "--out", "m.safetensors", "--no-keyframes"])
    assert mapping_config_from_args(args).keyframes is False
    args = p.parse_args(["map", "scene", "--out", "m.safetensors"])
    assert mapping_config_from_args(args).keyframes is True
    assert mapping_config_from_args(args).micro_batches == 4
    args = p.parse_args(["map", "scene", "--out", "m.safetensors", "--micro-batches", "1"])
    assert mapping_config_from_args(args).micro_batches == 1


def test_keyframes_survive_the_map_file_and_damaged_ones_are_refused(room_map, tmp_path):
    scene_map = load_map(room_map)
    kfs = keyframes_from_arrays(scene_map.keyframes)
    again = keyframes_from_arrays(keyframes_to_arrays(kfs))
    assert len(again) == len(kfs)
    assert np.array_equal(again[0].points, kfs[0].points) and again[0].image.shape == kfs[0].image.shape

    def saved_with(**changes):
        m = dataclasses.replace(scene_map, keyframes={**scene_map.keyframes, **changes})
        return m.save(tmp_path / f"bad_{len(list(tmp_path.iterdir()))}.safetensors")

    # Offsets that run past the data: refused when the map is loaded.
    off = scene_map.keyframes["point_offsets"].copy()
    off[-1] += 1000
    with pytest.raises(MapFileError, match="point_offsets"):
        load_map(saved_with(point_offsets=off))
    # NaN points: refused when loaded.
    pts = scene_map.keyframes["points"].copy()
    pts[0, 0] = np.nan
    with pytest.raises(MapFileError, match="NaN"):
        load_map(saved_with(points=pts))
    # A keyframe "image" whose JPEG header claims 60000 x 60000 pixels: refused before decoding.
    jpeg = scene_map.keyframes["jpeg"].copy()
    start, end = scene_map.keyframes["jpeg_offsets"][:2]
    blob = bytes(jpeg[start:end])
    sof = blob.find(b"\xff\xc0")
    assert sof > 0
    bomb = bytearray(blob)
    bomb[sof + 5:sof + 9] = (60000).to_bytes(2, "big") + (60000).to_bytes(2, "big")
    jpeg[start:end] = np.frombuffer(bytes(bomb), np.uint8)
    damaged = load_map(saved_with(jpeg=jpeg))
    with pytest.raises(MapFileError, match="keyframe 0"):
        Relocalizer(damaged, RelocConfig(num_cells=500), device="cpu")
    # The same map still serves with refinement off.
    Relocalizer(damaged, RelocConfig(num_cells=500, refine=False), device="cpu")


def test_int8_encoder_calibrates_on_the_keyframe_images_and_localizes_like_bf16(room, room_map):
    """encoder_precision int8 quantizes the encoder (OpenVINO + NNCF) with the map's keyframe images
    as calibration data; a map without keyframes, or the torch backend, is refused with the fix."""
    pytest.importorskip("nncf")
    from seqace_ros.encoder import EncoderError
    from seqace_ros.inference import openvino_available

    if not openvino_available():
        pytest.skip("openvino is not installed")
    scene_map = load_map(room_map)
    test = load_split(room, "test")
    out = {}
    for precision in ("auto", "int8"):
        reloc = Relocalizer(scene_map, RelocConfig(num_cells=500, min_inliers=30, encoder_precision=precision,
                                                   backend="openvino"), device="cpu")
        assert (reloc.encoder.precision == "int8") == (precision == "int8")
        out[precision] = summarize(localize_frames(reloc.localize, test, progress=False))
    assert out["int8"]["recall"]["10cm_5deg"] >= out["auto"]["recall"]["10cm_5deg"] - 5.0, out
    assert out["int8"]["median_translation_cm"] < 1.5 * out["auto"]["median_translation_cm"] + 0.2, out
    bare = dataclasses.replace(scene_map, keyframes={})
    with pytest.raises(ValueError, match="seqace keyframes"):
        Relocalizer(bare, RelocConfig(encoder_precision="int8", backend="openvino"), device="cpu")
    with pytest.raises(EncoderError, match="OpenVINO backend"):
        Relocalizer(scene_map, RelocConfig(encoder_precision="int8", backend="torch"), device="cpu")


def test_tracking_normalization_removes_exposure_and_follows_local_contrast(room):
    """The half-resolution local statistics give what full-resolution ones would (a few grey
    levels on average), and a change of exposure (gain and offset) leaves the result nearly as is."""
    import cv2

    from seqace_ros.refinement.keyframe_tracking import normalize_for_tracking

    gray = to_gray(load_split(room, "test")[0].load_image())
    out = normalize_for_tracking(gray)
    assert out.shape == gray.shape and out.dtype == np.uint8
    g = gray.astype(np.float32)
    mean = cv2.GaussianBlur(g, (25, 25), 4.0)
    dev = cv2.sqrt(cv2.max(cv2.GaussianBlur(g * g, (25, 25), 4.0) - mean * mean, 0.0)) + 4.0
    full = np.clip(128.0 + 40.0 * (g - mean) / dev, 0, 255)
    assert np.abs(out.astype(float) - full).mean() < 2.0
    assert out.std() > 10.0  # the texture is kept, not flattened
    darker = np.clip(0.6 * g + 10.0, 0, 255).astype(np.uint8)
    assert np.abs(normalize_for_tracking(darker).astype(float) - out.astype(float)).mean() < 4.0
    for shape in ((1, 1), (3, 5), (7, 1)):  # degenerate sizes do not fail
        assert normalize_for_tracking(np.zeros(shape, np.uint8)).shape == shape


def test_nearest_keyframes_weigh_the_viewing_angle_as_configured():
    """A keyframe 2 cm away but turned 10 deg against one 10 cm away looking the same way: which
    comes first follows the configured metres per degree; beyond max_angle_deg neither counts."""
    from seqace_ros.refinement.keyframe_tracking import Keyframe

    def keyframe(x: float, yaw_deg: float) -> Keyframe:
        T = np.eye(4)
        T[:3, :3] = Rotation.from_euler("y", yaw_deg, degrees=True).as_matrix()
        T[0, 3] = x
        return Keyframe(np.zeros((8, 8), np.uint8), T, np.eye(3), np.zeros((1, 2), np.float32),
                        np.array([[0.0, 0.0, 2.0]], np.float32))

    frames = [keyframe(0.10, 0.0), keyframe(0.02, 10.0), keyframe(0.0, 45.0)]
    query = np.eye(4)
    order = lambda w: KeyframeRefiner(frames, TrackingConfig(angle_weight_m_per_deg=w, keyframes=3)).nearest(query)
    assert order(0.01).tolist() == [0, 1]  # 0.10 m against 0.02 + 0.10 m; the 45 deg one is out
    assert order(0.001).tolist() == [1, 0]  # 0.10 m against 0.02 + 0.01 m


def test_depth_aware_pose_trusts_the_direction_of_keyframe_points_more_than_their_depth():
    """Keyframe points whose depths share an error per keyframe (one keyframe's points 1% too far
    along their rays, the other's 0.5% too near, as tracks triangulated from the same neighbours
    do) and a little tracking noise: weighing the error along each ray's image less brings the
    pose nearer the truth than the plain reprojection error; with exact points both recover it."""
    from seqace_ros.refinement.depth_aware_pose import refine_pose_depth_aware

    rng = np.random.default_rng(4)
    K = np.array([[525.0, 0.0, 320.0], [0.0, 525.0, 240.0], [0.0, 0.0, 1.0]])
    truth = np.eye(4)
    truth[:3, :3] = Rotation.from_euler("xyz", [3.0, -5.0, 2.0], degrees=True).as_matrix()
    truth[:3, 3] = [0.1, -0.05, 0.0]
    uv = rng.uniform([20, 20], [620, 460], (400, 2))
    depth = rng.uniform(1.0, 3.0, 400)
    X = (np.hstack([uv, np.ones((400, 1))]) @ np.linalg.inv(K).T * depth[:, None]) @ truth[:3, :3].T + truth[:3, 3]
    first = rng.random(400) < 0.5  # which of two keyframes, 20 and 18 cm from the query, a point comes from
    offsets = np.where(first[:, None], [0.2, 0.0, 0.05], [0.0, 0.15, -0.1])
    origins = truth[:3, 3] + offsets @ truth[:3, :3].T
    dist = np.linalg.norm(X - origins, axis=1, keepdims=True)
    rays = (X - origins) / dist
    X_off = X + rays * (dist * np.where(first, 0.01, -0.005)[:, None] + rng.normal(0.0, 0.005, (400, 1)))
    pixels = uv + rng.normal(0.0, 0.2, uv.shape)
    start = _perturb(truth, rng, cm=1.0, deg=0.3)

    def error_cm(pose):
        return 100.0 * np.linalg.norm(pose[:3, 3] - truth[:3, 3])

    plain = refine_pose_depth_aware(start, pixels, X_off, origins, K, along_weight=1.0, iterations=8)
    aware = refine_pose_depth_aware(start, pixels, X_off, origins, K, along_weight=0.5, iterations=8)
    assert error_cm(aware) < 0.7 * error_cm(plain), (error_cm(aware), error_cm(plain))
    for w in (1.0, 0.5):
        exact = refine_pose_depth_aware(start, uv, X, origins, K, along_weight=w, iterations=8)
        assert error_cm(exact) < 1e-4 and np.allclose(exact[:3, :3], truth[:3, :3], atol=1e-8)


def test_depth_aware_pose_names_mismatched_inputs():
    """The native step checks its arrays and says which one is wrong."""
    from seqace_ros.refinement.depth_aware_pose import refine_pose_depth_aware

    K = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])
    p2, p3 = np.zeros((5, 2)), np.ones((5, 3))
    with pytest.raises(ValueError, match="origins"):
        refine_pose_depth_aware(np.eye(4), p2, p3, np.zeros((5, 2)), K, 0.5)
    with pytest.raises(ValueError, match="same number of rows"):
        refine_pose_depth_aware(np.eye(4), p2, p3, np.zeros((4, 3)), K, 0.5)
    with pytest.raises(ValueError, match="pose_c2w"):
        refine_pose_depth_aware(np.eye(3), p2, p3, np.zeros((5, 3)), K, 0.5)
    with pytest.raises(ValueError, match="along_weight"):
        refine_pose_depth_aware(np.eye(4), p2, p3, np.zeros((5, 3)), K, 0.0)


def test_the_final_fit_follows_all_near_matches_not_the_winning_hypothesis():
    """Matches whose keyframe points share a depth error per keyframe land about 0.5-2 px off along
    their rays' images, half of them beyond RANSAC's 1 px cut. Fitted on the matches within 1 px of each start
    (as RANSAC's inliers depend on the hypothesis that won), the pose depends on the start; fitted
    on the matches within 3 then 1.5 px, starts a millimetre or two apart end at one pose, nearer
    the truth, and slid patches 6-20 px off stay out of it."""
    from seqace_ros.refinement.depth_aware_pose import fit_selected, refine_pose_depth_aware
    from seqace_ros.relocalization.pnp import reprojection_errors

    rng = np.random.default_rng(7)
    K = np.array([[525.0, 0.0, 320.0], [0.0, 525.0, 240.0], [0.0, 0.0, 1.0]])
    truth = np.eye(4)
    truth[:3, :3] = Rotation.from_euler("xyz", [2.0, -4.0, 1.0], degrees=True).as_matrix()
    n = 500
    uv = rng.uniform([20, 20], [620, 460], (n, 2))
    depth = rng.uniform(1.0, 3.0, n)
    X = (np.hstack([uv, np.ones((n, 1))]) @ np.linalg.inv(K).T * depth[:, None]) @ truth[:3, :3].T + truth[:3, 3]
    first = rng.random(n) < 0.5
    origins = truth[:3, 3] + np.where(first[:, None], [0.3, 0.0, 0.05], [-0.05, 0.25, -0.1]) @ truth[:3, :3].T
    dist = np.linalg.norm(X - origins, axis=1, keepdims=True)
    X_off = X + (X - origins) / dist * (dist * np.where(first, 0.015, -0.01)[:, None])
    pixels = uv + rng.normal(0.0, 0.3, uv.shape)
    slid = rng.random(n) < 0.15
    pixels[slid] += rng.uniform(6.0, 20.0, (int(slid.sum()), 1)) * np.array([1.0, 0.0])
    starts = [_perturb(truth, rng, cm=0.1, deg=0.03) for _ in range(6)]  # as far apart as RANSAC's winners

    def spread_cm(poses):
        c = np.array([p[:3, 3] for p in poses])
        return 100.0 * float(np.max(np.linalg.norm(c - c.mean(0), axis=1)))

    hard = []
    for s in starts:
        inl = reprojection_errors(pixels, X_off, K, s) < 1.0
        hard.append(refine_pose_depth_aware(s, pixels[inl], X_off[inl], origins[inl], K, 0.5))
    fitted = [fit_selected(s, pixels, X_off, origins, K, 0.5, (3.0, 1.5)) for s in starts]
    assert spread_cm([p for p, _ in fitted]) < 0.25 * spread_cm(hard), (spread_cm([p for p, _ in fitted]),
                                                                      spread_cm(hard))

    def mean_error_cm(poses):
        return 100.0 * float(np.mean([np.linalg.norm(p[:3, 3] - truth[:3, 3]) for p in poses]))

    assert mean_error_cm([p for p, _ in fitted]) < 0.8 * mean_error_cm(hard)
    for _, used in fitted:
        assert not used[slid].any() and used[~slid].mean() > 0.5
    # Too few matches near the pose: the pose is kept and nothing is used.
    pose, used = fit_selected(starts[0], pixels[:5], X_off[:5], origins[:5], K, 0.5, (3.0, 1.5))
    assert np.array_equal(pose, starts[0]) and not used.any()


def test_tracking_settings_name_a_bad_final_fit_selection_or_warp_ratio():
    assert TrackingConfig().problems() == []
    assert any("final_fit_px" in p for p in TrackingConfig(final_fit_px=(3.0, 0.0)).problems())
    assert any("final_fit_px" in p for p in TrackingConfig(final_fit_px=(float("nan"),)).problems())
    with pytest.raises(ValueError, match="final_fit_px"):
        RelocConfig(tracking=TrackingConfig(final_fit_px=(-1.0,))).validate()
    assert any("point_warp_ratio" in p for p in TrackingConfig(point_warp_ratio=-0.1).problems())
    assert any("point_warp_ratio" in p for p in TrackingConfig(point_warp_ratio=float("inf")).problems())
    assert not TrackingConfig(point_warp_ratio=0.0).problems()
