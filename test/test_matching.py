"""Frame-keyframe matching: geometry of the matches, keyframe decisions, the on-disk cache."""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np
import pytest
import torch

from seqace_ros.data.scene_folder import SceneFrame
from seqace_ros.mapping import match_cache, matching
from seqace_ros.mapping.matching import (FrameMatches, MatchingConfig, MatchingError, detect,
                                         match_features, match_sequence, summarize_matches,
                                         verify_fundamental)

torch.set_num_threads(1)
W, H = 320, 240
K = np.array([[250.0, 0, W / 2], [0, 250.0, H / 2], [0, 0, 1]])


def texture(seed: int, size: int = 1024) -> np.ndarray:
    """Blocky multi-scale noise: plenty of corners for a keypoint detector, no repetition."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), np.float32)
    for cells in (8, 24, 64):
        small = rng.uniform(0, 1, (cells, cells)).astype(np.float32)
        img += cv2.resize(small, (size, size), interpolation=cv2.INTER_NEAREST)
    img = cv2.GaussianBlur(img, (0, 0), 1.0)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def plane_homography(pose_c2w: np.ndarray, plane_size_m: float, tex_px: int) -> np.ndarray:
    """Texture pixel -> image pixel for a texture lying on the world plane z=0 (centred at 0)."""
    T_w2c = np.linalg.inv(pose_c2w)
    s = plane_size_m / tex_px
    tex_to_world = np.array([[s, 0, -plane_size_m / 2], [0, s, -plane_size_m / 2], [0, 0, 1]])
    return K @ np.column_stack([T_w2c[:3, 0], T_w2c[:3, 1], T_w2c[:3, 3]]) @ tex_to_world


def look_at_plane(cx: float, cy: float, height: float, yaw_deg: float = 0.0) -> np.ndarray:
    """Camera at (cx, cy, -height) looking along +z at the plane z=0."""
    a = np.radians(yaw_deg)
    R = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = [cx, cy, -height]
    return T


def render(tex: np.ndarray, pose_c2w: np.ndarray, plane_size_m: float = 4.0) -> np.ndarray:
    Hm = plane_homography(pose_c2w, plane_size_m, tex.shape[0])
    return cv2.warpPerspective(tex, Hm, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)


def skew(v):
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def sampson(F, p0, p1):
    x0 = np.c_[p0, np.ones(len(p0))]
    x1 = np.c_[p1, np.ones(len(p1))]
    Fx0, Ftx1 = x0 @ F.T, x1 @ F
    num = np.sum(x1 * Fx0, 1) ** 2
    return np.sqrt(num / (Fx0[:, 0] ** 2 + Fx0[:, 1] ** 2 + Ftx1[:, 0] ** 2 + Ftx1[:, 1] ** 2))


# --- geometry of the matches -------------------------------------------------------------------

def test_matches_follow_a_known_homography_to_subpixel_accuracy():
    img0 = cv2.resize(texture(1), (W, H), interpolation=cv2.INTER_AREA)
    Hm = np.array([[1.02, 0.05, -6.0], [-0.03, 0.98, 4.0], [1e-5, -2e-5, 1.0]])
    img1 = cv2.warpPerspective(img0, Hm, (W, H), flags=cv2.INTER_CUBIC)
    cfg = MatchingConfig()
    f0, f1 = detect(img0, cfg), detect(img1, cfg)
    i0, i1 = match_features(f0, f1, cfg)
    p0, p1 = f0.keypoints[i0], f1.keypoints[i1]
    mask = verify_fundamental(p0, p1, cfg)
    assert mask is not None and mask.sum() >= 100
    err = np.linalg.norm(cv2.perspectiveTransform(p0[mask][None].astype(np.float64), Hm)[0]
                         - p1[mask], axis=1)
    assert np.median(err) < 1.0
    assert np.percentile(err, 90) < 2.5


def test_lighterglue_matcher_works_offline_and_agrees_with_the_homography():
    img0 = cv2.resize(texture(6), (W, H), interpolation=cv2.INTER_AREA)
    Hm = np.array([[0.99, 0.03, 5.0], [-0.02, 1.01, -3.0], [0.0, 1e-5, 1.0]])
    img1 = cv2.warpPerspective(img0, Hm, (W, H), flags=cv2.INTER_CUBIC)
    cfg = MatchingConfig(matcher="lighterglue")
    f0, f1 = detect(img0, cfg), detect(img1, cfg)
    i0, i1 = match_features(f0, f1, cfg)
    p0, p1 = f0.keypoints[i0], f1.keypoints[i1]
    err = np.linalg.norm(cv2.perspectiveTransform(p0[None].astype(np.float64), Hm)[0] - p1, axis=1)
    assert len(p0) >= 100 and np.median(err) < 1.0


def test_subpixel_keypoints_are_not_on_a_grid():
    img = cv2.resize(texture(2), (320, 256), interpolation=cv2.INTER_AREA)
    kp = detect(img, MatchingConfig(subpixel=True)).keypoints
    frac = np.abs(kp - np.round(kp))
    assert (frac > 0.05).mean() > 0.5  # refined positions
    kp_int = detect(img, MatchingConfig(subpixel=False)).keypoints
    assert np.allclose(kp_int, np.round(kp_int))  # 320x256: multiples of 32, exact pixels


def test_matches_between_known_poses_satisfy_the_epipolar_constraint():
    tex = texture(3)
    T0 = look_at_plane(0.0, 0.0, 2.0)
    T1 = look_at_plane(0.12, 0.05, 1.9, yaw_deg=4.0)
    img0, img1 = render(tex, T0), render(tex, T1)
    cfg = MatchingConfig()
    f0, f1 = detect(img0, cfg), detect(img1, cfg)
    i0, i1 = match_features(f0, f1, cfg)
    mask = verify_fundamental(f0.keypoints[i0], f1.keypoints[i1], cfg)
    p0, p1 = f0.keypoints[i0][mask], f1.keypoints[i1][mask]
    T01 = np.linalg.inv(T1) @ T0  # camera 0 -> camera 1
    F_gt = np.linalg.inv(K).T @ skew(T01[:3, 3]) @ T01[:3, :3] @ np.linalg.inv(K)
    e = sampson(F_gt, p0, p1)
    assert len(p0) >= 100
    assert np.median(e) < 0.7 and np.percentile(e, 95) < 2.0


def test_image_and_config_errors_are_clear():
    with pytest.raises(MatchingError, match="too small"):
        detect(np.zeros((16, 16), np.uint8))
    with pytest.raises(MatchingError, match="uint8"):
        detect(np.zeros((64, 64), np.float32))
    with pytest.raises(MatchingError, match="matcher"):
        MatchingConfig(matcher="superglue")
    with pytest.raises(MatchingError, match="min_inliers"):
        MatchingConfig(min_inliers=3)
    with pytest.raises(MatchingError, match="no frames"):
        match_sequence([], MatchingConfig(use_cache=False), progress=False)


# --- keyframe decisions ------------------------------------------------------------------------

class FakeDetector:
    """Features from projected random 3D points, so the decisions can be steered exactly.

    Frame content: for each frame a camera x-offset and the subset of scene points it "detects".
    Matching points share a descriptor, so mutual nearest neighbours recover exactly the common
    points; the fundamental-matrix RANSAC sees a general 3D scene.
    """

    def __init__(self, offsets, visible, n_points=1000, seed=0):
        rng = np.random.default_rng(seed)
        self.X = np.c_[rng.uniform(-3, 3, n_points), rng.uniform(-2, 2, n_points),
                       rng.uniform(3, 8, n_points)]
        d = rng.normal(size=(n_points, 64)).astype(np.float32)
        self.desc = torch.from_numpy(d / np.linalg.norm(d, axis=1, keepdims=True))
        self.offsets, self.visible = offsets, visible
        self.calls = 0

    def frame(self, i):
        return SceneFrame(image_path=None, pose_c2w=np.eye(4), calibration=K.copy(),
                          name=f"frame-{i:06d}", loader=lambda i=i: np.full((H, W), i % 256, np.uint8))

    def __call__(self, image, config, device="cpu"):
        i = int(image[0, 0])
        self.calls += 1
        vis = np.asarray(self.visible[i], dtype=np.int64)
        Xc = self.X[vis] - np.array([self.offsets[i], 0, 0])
        uv = (Xc[:, :2] / Xc[:, 2:]) * K[0, 0] + K[:2, 2]
        return matching.Features(uv.astype(np.float32), self.desc[vis], torch.ones(len(vis)), (W, H))


def test_keyframe_decisions_follow_the_rules(monkeypatch):
    all_pts = np.arange(1000)
    # 0 first; 1-2 small motion, full overlap; 3 keeps only 40% of the keyframe's points (< 50%:
    # overlap);
    # 4 matched to 3; 5 moves far (motion); 6 shares too few points (failed)
    offsets = [0.0, 0.01, 0.02, 0.03, 0.04, 0.9, 0.9]
    visible = [all_pts, all_pts, all_pts, all_pts[:400], all_pts[:400], all_pts[:400],
               np.r_[all_pts[:50], np.arange(400, 1000)]]
    fake = FakeDetector(offsets, visible)
    monkeypatch.setattr(matching, "detect", fake)
    frames = [fake.frame(i) for i in range(len(offsets))]
    out = match_sequence(frames, MatchingConfig(use_cache=False, use_pose_boundaries=False,
                                                min_inlier_fraction=0.5), progress=False)
    got = [(m.keyframe_index, m.is_keyframe, m.reason) for m in out]
    assert got == [(0, True, "first"), (0, False, ""), (0, False, ""), (0, True, "overlap"),
                   (3, False, ""), (3, True, "motion"), (6, True, "failed")]
    # matched pixels are the projections of the same 3D points in both frames
    m = out[4]
    assert m.num_matches == 400
    Xc4 = fake.X[:400] - [0.04, 0, 0]
    Xc3 = fake.X[:400] - [0.03, 0, 0]
    uv4 = Xc4[:, :2] / Xc4[:, 2:] * K[0, 0] + K[:2, 2]
    uv3 = Xc3[:, :2] / Xc3[:, 2:] * K[0, 0] + K[:2, 2]
    order = np.lexsort(m.xy_frame.T)
    ref = np.lexsort(uv4.T.astype(np.float32))
    assert np.allclose(m.xy_frame[order], uv4[ref], atol=1e-3)
    assert np.allclose(m.xy_keyframe[order], uv3[ref], atol=1e-3)


def test_keyframe_matches_can_be_dropped_like_seqace(monkeypatch):
    all_pts = np.arange(1000)
    fake = FakeDetector([0.0, 0.01, 0.02], [all_pts, all_pts, all_pts[:300]])
    monkeypatch.setattr(matching, "detect", fake)
    frames = [fake.frame(i) for i in range(3)]
    cfg = MatchingConfig(use_cache=False, keep_keyframe_matches=False, use_pose_boundaries=False)
    out = match_sequence(frames, cfg, progress=False)
    assert (out[2].keyframe_index, out[2].is_keyframe, out[2].num_matches) == (2, True, 0)


def test_numbering_jump_and_pose_jump_start_new_keyframes(monkeypatch):
    all_pts = np.arange(1000)
    fake = FakeDetector([0.0] * 6, [all_pts] * 6)
    monkeypatch.setattr(matching, "detect", fake)
    names = ["frame-000000", "frame-000001", "frame-000002", "frame-000100", "frame-000101",
             "frame-000102"]
    frames = [fake.frame(i) for i in range(6)]
    for f, n in zip(frames, names):
        f.name = n
    poses = [np.eye(4) for _ in range(6)]
    for i in range(6):
        poses[i][0, 3] = 0.005 * i
    poses[5] = poses[5].copy()
    poses[5][0, 3] += 1.0  # a pose jump without a numbering jump
    for f, p in zip(frames, poses):
        f.pose_c2w = p
    out = match_sequence(frames, MatchingConfig(use_cache=False), progress=False)
    assert [m.reason for m in out] == ["first", "", "", "boundary", "", "boundary"]
    out = match_sequence(frames, MatchingConfig(use_cache=False, use_pose_boundaries=False),
                         progress=False)
    assert [m.reason for m in out] == ["first", "", "", "boundary", "", ""]


def test_real_xfeat_sequence_with_blank_frame_and_motion(tmp_path):
    """End to end on rendered images: small motion is matched, a blank frame fails."""
    tex = texture(4)
    poses = [look_at_plane(0.02 * i, 0.0, 2.0) for i in range(4)]
    images = [render(tex, T) for T in poses] + [np.full((H, W), 90, np.uint8)]
    frames = [SceneFrame(None, np.eye(4), K.copy(), f"f{i:03d}", loader=lambda im=im: im)
              for i, im in enumerate(images)]
    out = match_sequence(frames, MatchingConfig(use_cache=False, use_pose_boundaries=False,
                                                min_inlier_fraction=0.3), progress=False)
    assert [m.keyframe_index for m in out[:4]] == [0, 0, 0, 0]
    assert all(m.num_matches > 100 for m in out[1:4])
    assert (out[4].is_keyframe, out[4].reason, out[4].num_matches) == (True, "failed", 0)
    # plane at 2 m, 0.02 m steps at f=250: matches move by 2.5 px per step (camera moves right)
    d = (out[3].xy_keyframe - out[3].xy_frame)[:, 0]
    assert abs(np.median(d) - 7.5) < 0.5
    s = summarize_matches(out)
    assert s["keyframes"] == 2 and s["frames_with_matches"] == 3


# --- cache -------------------------------------------------------------------------------------

def _write_scene(tmp_path, n=3):
    rgb = tmp_path / "scene" / "train" / "rgb"
    rgb.mkdir(parents=True)
    tex = texture(5)
    frames = []
    for i in range(n):
        p = rgb / f"frame-{i:06d}.color.png"
        cv2.imwrite(str(p), render(tex, look_at_plane(0.02 * i, 0.0, 2.0)))
        frames.append(SceneFrame(p, np.eye(4), 250.0, p.stem))
    return frames


class Counter:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *a, **k):
        self.calls += 1
        return self.fn(*a, **k)


def test_cache_hit_and_invalidation(tmp_path, monkeypatch, caplog):
    frames = _write_scene(tmp_path)
    counter = Counter(matching._match_uncached)
    monkeypatch.setattr(matching, "_match_uncached", counter)
    cfg = MatchingConfig(min_inlier_fraction=0.3)
    cache = tmp_path / "cache"
    first = match_sequence(frames, cfg, cache_dir=cache, progress=False)
    assert counter.calls == 1 and len(list(cache.glob("*.npz"))) == 1

    again = match_sequence(frames, cfg, cache_dir=cache, progress=False)
    assert counter.calls == 1
    for a, b in zip(first, again):
        assert (a.frame_index, a.keyframe_index, a.is_keyframe, a.reason) == \
               (b.frame_index, b.keyframe_index, b.is_keyframe, b.reason)
        assert np.array_equal(a.xy_frame, b.xy_frame) and np.array_equal(a.keypoints, b.keypoints)

    # settings that do not change results share the cache
    match_sequence(frames, MatchingConfig(min_inlier_fraction=0.3, device="cpu"), cache_dir=cache,
                   progress=False)
    assert counter.calls == 1

    with caplog.at_level(logging.INFO, logger="seqace_ros.mapping.match_cache"):
        match_sequence(frames, MatchingConfig(min_inlier_fraction=0.3, ransac_threshold_px=2.0),
                       cache_dir=cache, progress=False)
    assert counter.calls == 2 and "ransac_threshold_px" in caplog.text

    caplog.clear()
    img = cv2.imread(str(frames[1].image_path))
    cv2.imwrite(str(frames[1].image_path), 255 - img)  # same size, new content
    with caplog.at_level(logging.INFO, logger="seqace_ros.mapping.match_cache"):
        changed = match_sequence(frames, MatchingConfig(min_inlier_fraction=0.3,
                                                        ransac_threshold_px=2.0),
                                 cache_dir=cache, progress=False)
    assert counter.calls == 3 and "image(s) changed, first at index 1" in caplog.text
    assert len(list(cache.glob("*.npz"))) == 1  # overwritten, not accumulated
    assert not np.array_equal(changed[1].keypoints, first[1].keypoints)


def test_corrupt_cache_file_is_recomputed(tmp_path, monkeypatch, caplog):
    frames = _write_scene(tmp_path, n=2)
    cache = tmp_path / "cache"
    cfg = MatchingConfig(min_inlier_fraction=0.3)
    match_sequence(frames, cfg, cache_dir=cache, progress=False)
    (path,) = cache.glob("*.npz")
    path.write_bytes(path.read_bytes()[:200])
    counter = Counter(matching._match_uncached)
    monkeypatch.setattr(matching, "_match_uncached", counter)
    with caplog.at_level(logging.WARNING, logger="seqace_ros.mapping.match_cache"):
        out = match_sequence(frames, cfg, cache_dir=cache, progress=False)
    assert counter.calls == 1 and "cannot read" in caplog.text and out[1].num_matches > 100


def test_default_cache_dir_is_the_xdg_cache_never_the_dataset(tmp_path, monkeypatch):
    frames = _write_scene(tmp_path, n=1)
    split = (tmp_path / "scene" / "train").resolve()
    monkeypatch.delenv("SEQACE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    d = match_cache.default_cache_dir(frames)
    assert d.parent == tmp_path / "xdg" / "seqace_ros" / "matching" and d.name.startswith("scene-train-")
    assert split not in d.parents
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: ignore relative paths
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert match_cache.default_cache_dir(frames).parent == tmp_path / "home" / ".cache" / "seqace_ros" / "matching"
    monkeypatch.setenv("SEQACE_CACHE_DIR", str(tmp_path / "chosen"))
    assert match_cache.default_cache_dir(frames).parent == tmp_path / "chosen" / "matching"
    loader_frame = SceneFrame(None, np.eye(4), 250.0, "x", loader=lambda: np.zeros((H, W), np.uint8))
    assert match_cache.default_cache_dir([loader_frame]) is None


def test_frame_matches_round_trip_through_arrays():
    rng = np.random.default_rng(0)
    ms = [FrameMatches(0, 0, np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32), True,
                       rng.random((5, 2), dtype=np.float32), "first"),
          FrameMatches(1, 0, rng.random((3, 2), dtype=np.float32), rng.random((3, 2), dtype=np.float32),
                       False, rng.random((4, 2), dtype=np.float32), "")]
    back = matching._from_arrays(matching._to_arrays(ms))
    for a, b in zip(ms, back):
        assert a.frame_index == b.frame_index and a.reason == b.reason
        assert np.array_equal(a.xy_frame, b.xy_frame) and np.array_equal(a.xy_keyframe, b.xy_keyframe)
        assert np.array_equal(a.keypoints, b.keypoints)


@pytest.mark.realdata
def test_redkitchen_matches_agree_with_ground_truth_poses(redkitchen):
    from seqace_ros.data.scene_folder import load_split

    frames = load_split(redkitchen, "train")[:10]
    out = match_sequence(frames, MatchingConfig(use_cache=False), progress=False)
    assert out[0].reason == "first" and all(m.num_matches > 300 for m in out[1:])
    errs = []
    for m in out[1:]:
        a, b = frames[m.frame_index], frames[m.keyframe_index]
        Kr = a.intrinsics(640, 480)
        T = np.linalg.inv(b.pose_c2w) @ a.pose_c2w  # frame camera -> keyframe camera
        F_gt = np.linalg.inv(Kr).T @ skew(T[:3, 3]) @ T[:3, :3] @ np.linalg.inv(Kr)
        errs.append(sampson(F_gt, m.xy_frame, m.xy_keyframe))
    e = np.concatenate(errs)
    assert np.median(e) < 1.0 and np.percentile(e, 90) < 3.0  # 7-Scenes poses are good to ~1 cm
