"""Sequence relocalizer: landmark tracking, the multi-frame estimate, gates, resets (synthetic planar scenes).

The single-frame localizer is a stub that knows the true pose of each rendered frame and returns
what a scene-coordinate network would: noisy 2D-3D correspondences with some outliers and a PnP
pose fitted to them. These are tests of the tracker logic, not of the network.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from seqace_ros.geometry import invert_pose, pose_errors, rotvec_to_matrix
from seqace_ros.relocalization.landmarks import disc_nms, track_klt
from seqace_ros.relocalization.pnp import pose_covariance, solve_pnp
from seqace_ros.relocalization.result import LOCALIZED, LOST, RelocResult
from seqace_ros.relocalization.sequence import SequenceConfig, SequenceRelocalizer

W, H = 640, 480
K = np.array([[500.0, 0, W / 2], [0, 500.0, H / 2], [0, 0, 1]])
PLANE_M, TEX_PX = 6.0, 1536  # 4 mm per texel, about one image pixel at 2 m


def make_texture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((TEX_PX, TEX_PX), np.float32)
    for cells in (24, 96, 384):
        img += cv2.resize(rng.uniform(0, 1, (cells, cells)).astype(np.float32), (TEX_PX, TEX_PX),
                          interpolation=cv2.INTER_NEAREST)
    img = cv2.GaussianBlur(img, (0, 0), 1.2)
    return cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


TEXTURE = make_texture()


def camera(x: float, y: float, dist: float = 2.0, yaw_deg: float = 0.0, pitch_deg: float = 0.0
           ) -> np.ndarray:
    """Camera-to-world pose of a camera at (x, y, -dist) looking at the plane z = 0."""
    R = rotvec_to_matrix([0, 0, np.radians(yaw_deg)]) @ rotvec_to_matrix([np.radians(pitch_deg), 0, 0])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, [x, y, -dist]
    return T


def render(T_c2w: np.ndarray) -> np.ndarray:
    T = invert_pose(T_c2w)
    s = PLANE_M / TEX_PX
    tex_to_world = np.array([[s, 0, -PLANE_M / 2], [0, s, -PLANE_M / 2], [0, 0, 1]])
    Hm = K @ np.column_stack([T[:3, 0], T[:3, 1], T[:3, 3]]) @ tex_to_world
    return cv2.warpPerspective(TEXTURE, Hm, (W, H), flags=cv2.INTER_LINEAR)


def backproject(T_c2w: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """World points on the plane z = 0 seen at pixels uv."""
    rays = np.c_[uv, np.ones(len(uv))] @ np.linalg.inv(K).T @ T_c2w[:3, :3].T
    c = T_c2w[:3, 3]
    return c + rays * (-c[2] / rays[:, 2])[:, None]


class Stub:
    """Single-frame localizer for rendered frames: set ``truth`` before each call.

    ``wrong_shift`` makes it return a self-consistent but wrong answer (the map confused this view
    with another place): every 3D point is shifted by that vector, so PnP finds a shifted pose with
    many inliers. ``lost`` makes it fail.
    """

    def __init__(self, n_points=300, outliers=0.1, sigma_px=0.5, sigma_m=0.003, seed=0):
        self.rng = np.random.default_rng(seed)
        self.n, self.outliers, self.sigma_px, self.sigma_m = n_points, outliers, sigma_px, sigma_m
        self.truth, self.wrong_shift, self.lost, self.calls = None, None, False, 0

    def __call__(self, image, K_in):
        self.calls += 1
        if self.lost:
            return RelocResult(LOST, message="stub: lost")
        uv = np.c_[self.rng.uniform(10, W - 10, self.n), self.rng.uniform(10, H - 10, self.n)]
        X = backproject(self.truth, uv) + self.rng.normal(0, self.sigma_m, (self.n, 3))
        uv = uv + self.rng.normal(0, self.sigma_px, uv.shape)
        bad = self.rng.random(self.n) < self.outliers
        X[bad] += self.rng.normal(0, 0.5, (bad.sum(), 3))
        if self.wrong_shift is not None:
            X = X + self.wrong_shift
        pnp = solve_pnp(uv, X, K_in)
        if pnp.pose_c2w is None:
            return RelocResult(LOST, points2d=uv.astype(np.float32), points3d=X.astype(np.float32),
                               inliers=np.zeros(self.n, bool), message="stub: pnp failed")
        return RelocResult(LOCALIZED, pose_c2w=pnp.pose_c2w, covariance=pnp.covariance,
                           num_inliers=pnp.num_inliers, inlier_ratio=pnp.num_inliers / self.n,
                           reprojection_error_px=pnp.reprojection_error_px,
                           points2d=uv.astype(np.float32), points3d=X.astype(np.float32),
                           inliers=pnp.inliers, timing_ms={"total": 1.0})


def run(seq: SequenceRelocalizer, stub: Stub, poses, stamps=None, odometry=False, **kw):
    out = []
    for i, T in enumerate(poses):
        stub.truth = T
        rel = None
        if odometry and i > 0:
            rel = invert_pose(T) @ poses[i - 1]  # previous camera -> current camera
        out.append(seq.localize(render(T), K, None if stamps is None else stamps[i], rel, **kw))
    return out


def landmark_errors(seq: SequenceRelocalizer, T: np.ndarray) -> np.ndarray:
    lm = seq.landmarks
    Tw2c = invert_pose(T)
    Xc = lm.xyz @ Tw2c[:3, :3].T + Tw2c[:3, 3]
    uv = Xc[:, :2] / Xc[:, 2:] @ K[:2, :2].T + K[:2, 2]
    return np.linalg.norm(uv - lm.xy, axis=1)


# --- building blocks ---------------------------------------------------------------------------

def test_klt_follows_a_known_shift_and_drops_inconsistent_tracks():
    prev = render(camera(0, 0))
    cur = np.roll(prev, (3, 7), axis=(0, 1))  # content moves +7 px in x, +3 px in y
    cur[:, :200] = np.random.default_rng(1).integers(0, 255, (H, 200), dtype=np.uint8)  # new junk
    rng = np.random.default_rng(2)
    xy = np.c_[rng.uniform(30, W - 40, 300), rng.uniform(30, H - 40, 300)].astype(np.float32)
    new, ok = track_klt(prev, cur, xy)
    inside = xy[:, 0] + 7 > 200 + 15  # targets well inside the unchanged part
    assert ok[inside].mean() > 0.95
    assert np.median(np.abs(new[ok & inside] - (xy[ok & inside] + [7, 3]))) < 0.05
    assert ok[xy[:, 0] + 7 < 190].mean() < 0.2  # landed in the junk: forward-backward check fails


def test_disc_nms_is_greedy_in_priority_order_with_a_cap():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (400, 2))
    keep = disc_nms(xy, 5.0, cap=10_000)
    kept = []  # brute-force reference
    for i in range(len(xy)):
        if all(np.linalg.norm(xy[i] - xy[j]) >= 5.0 for j in kept):
            kept.append(i)
    assert keep.tolist() == kept
    assert disc_nms(xy, 5.0, cap=7).tolist() == kept[:7]
    assert len(disc_nms(xy[:0], 5.0, 10)) == 0


def pose_delta(T_to: np.ndarray, T_from: np.ndarray) -> np.ndarray:
    """(translation, rotation vector) taking camera-to-world pose T_from to T_to (ROS order)."""
    rv, _ = cv2.Rodrigues(T_to[:3, :3] @ T_from[:3, :3].T)
    return np.r_[T_to[:3, 3] - T_from[:3, 3], rv.ravel()]


def test_pnp_covariance_matches_monte_carlo_spread():
    rng = np.random.default_rng(4)
    T = camera(0.1, -0.2, 2.0, yaw_deg=10, pitch_deg=8)
    uv = np.c_[rng.uniform(0, W, 150), rng.uniform(0, H, 150)]
    X = backproject(T, uv)
    X[:, 2] += rng.uniform(-0.5, 0.5, 150)  # not planar: a well-conditioned pose
    Tw2c = invert_pose(T)
    Xc = X @ Tw2c[:3, :3].T + Tw2c[:3, 3]
    uv = Xc[:, :2] / Xc[:, 2:] @ K[:2, :2].T + K[:2, 2]
    deltas, covs = [], []
    for _ in range(150):
        noisy = uv + rng.normal(0, 1.0, uv.shape)
        r = solve_pnp(noisy, X, K, initial_pose_c2w=T)
        deltas.append(pose_delta(r.pose_c2w, T))
        covs.append(r.covariance)
    emp = np.cov(np.array(deltas).T)
    pred = np.mean(covs, axis=0)
    ratio = np.diag(emp) / np.diag(pred)
    assert np.all((ratio > 0.6) & (ratio < 1.6)), ratio
    assert pose_covariance(uv[:3], X[:3], K, T) is None  # too few points


def test_pnp_from_a_prediction_several_pixels_off_still_converges():
    """A prediction that explains the points only within the RANSAC threshold (the last frame's
    pose, ~7 px off) must not be refined at the tight threshold straight away: that kept a handful
    of points and failed."""
    rng = np.random.default_rng(11)
    T = camera(0.1, -0.05, 2.0, yaw_deg=5, pitch_deg=4)
    uv = np.c_[rng.uniform(0, W, 400), rng.uniform(0, H, 400)]
    X = backproject(T, uv)
    X[:, 2] += rng.uniform(-0.4, 0.4, 400)
    Tw2c = invert_pose(T)
    Xc = X @ Tw2c[:3, :3].T + Tw2c[:3, 3]
    uv = Xc[:, :2] / Xc[:, 2:] @ K[:2, :2].T + K[:2, 2] + rng.normal(0, 0.5, (400, 2))
    guess = T.copy()
    guess[:3, 3] += [0.024, 0.0, 0.0]  # 2.4 cm at ~2 m and f = 500: ~6 px
    from seqace_ros.relocalization.pnp import reprojection_errors
    err = reprojection_errors(uv, X, K, guess)
    assert (err < 4.0).sum() < 20 and (err < 8.0).mean() > 0.5  # the case that failed
    r = solve_pnp(uv, X, K, initial_pose_c2w=guess)
    assert r.pose_c2w is not None and r.num_inliers > 350
    assert pose_errors(r.pose_c2w, T)[0] < 0.003


# --- the tracker -------------------------------------------------------------------------------

def smooth_path(n, step=0.01, yaw_step=0.3):
    return [camera(-0.1 + step * i, 0.02 * np.sin(i / 3), 2.0 + 0.005 * i, yaw_deg=yaw_step * i,
                   pitch_deg=5) for i in range(n)]


def test_landmarks_track_known_motion_and_fuse():
    # low correspondence noise, so that the landmark errors measure the tracking
    stub = Stub(sigma_px=0.05, sigma_m=0.0005)
    seq = SequenceRelocalizer(stub, SequenceConfig())
    poses = smooth_path(12)
    results = run(seq, stub, poses)
    assert results[0].message.endswith("single-frame only")
    for r, T in zip(results[1:], poses[1:]):
        assert r.status == LOCALIZED and "fused (multi-frame RANSAC," in r.message, r.message
        t_err, r_err = pose_errors(r.pose_c2w, T)
        assert t_err < 0.01 and r_err < 0.3
        assert r.covariance.shape == (6, 6)
    assert seq.num_landmarks > 150
    err = landmark_errors(seq, poses[-1])
    assert np.median(err) < 0.5 and np.percentile(err, 95) < 1.5
    assert seq.landmarks.age.max() >= 10  # some landmarks survived the whole sequence


def test_sequence_is_more_accurate_than_single_frame_on_average():
    """Noisy single-frame answers with few points: landmarks gathered over frames average the noise."""
    stub = Stub(n_points=60, sigma_px=1.0, sigma_m=0.005, seed=5)
    seq = SequenceRelocalizer(stub)
    poses = smooth_path(25)
    results = run(seq, stub, poses)
    single, fused = [], []
    for r, T in zip(results[5:], poses[5:]):
        stub.truth = T
        alone = stub(None, K)  # a fresh single-frame answer for the same view
        single.append(pose_errors(alone.pose_c2w, T)[0] if alone.pose_c2w is not None else np.inf)
        fused.append(pose_errors(r.pose_c2w, T)[0] if r.pose_c2w is not None else np.inf)
    assert np.median(fused) < 0.6 * np.median(single)


class FixedPointStub(Stub):
    """Re-detects the same scene points every frame (a 10 cm grid on the plane), each time with fresh
    scene-coordinate noise: what averaging landmark predictions over frames can exploit."""

    def __init__(self, sigma_m=0.01, seed=0):
        super().__init__(outliers=0.0, sigma_px=0.2, sigma_m=sigma_m, seed=seed)
        g = np.arange(-1.5, 1.5, 0.1)
        self.world = np.array([[x, y, 0.0] for x in g for y in g])

    def __call__(self, image, K_in):
        Tw2c = invert_pose(self.truth)
        Xc = self.world @ Tw2c[:3, :3].T + Tw2c[:3, 3]
        uv = Xc[:, :2] / Xc[:, 2:] @ K[:2, :2].T + K[:2, 2]
        vis = (uv[:, 0] > 10) & (uv[:, 0] < W - 10) & (uv[:, 1] > 10) & (uv[:, 1] < H - 10)
        uv = uv[vis] + self.rng.normal(0, self.sigma_px, (vis.sum(), 2))
        X = self.world[vis] + self.rng.normal(0, self.sigma_m, (vis.sum(), 3))
        pnp = solve_pnp(uv, X, K_in)
        return RelocResult(LOCALIZED, pose_c2w=pnp.pose_c2w, covariance=pnp.covariance,
                           num_inliers=pnp.num_inliers, points2d=uv.astype(np.float32),
                           points3d=X.astype(np.float32), inliers=pnp.inliers)


def test_landmark_points_average_repeated_predictions():
    errors = {}
    for associate_px in (0.0, 1.5):
        stub = FixedPointStub()
        # wide gates: this test is about the 3D points, not about rejecting noisy ones
        seq = SequenceRelocalizer(stub, SequenceConfig(associate_px=associate_px,
                                                       update_reprojection_px=20.0))
        poses = smooth_path(15, step=0.005, yaw_step=0.1)
        run(seq, stub, poses)
        lm = seq.landmarks
        nearest = np.linalg.norm(lm.xyz[:, None] - stub.world[None], axis=2).min(axis=1)
        errors[associate_px] = np.median(nearest)
        if associate_px:
            assert np.median(lm.count) >= 10
    assert errors[1.5] < 0.5 * errors[0.0]


class RecordingStub(Stub):
    """A Stub that keeps its last answer (the single-frame pose the sequence mode saw)."""

    def __call__(self, image, K_in):
        self.last = super().__call__(image, K_in)
        return self.last


def test_joint_estimate_beats_the_current_and_the_previous_frame_alone():
    """Two frames with independent correspondence noise: the multi-frame RANSAC over both (the
    previous frame's inliers moved by the measured relative motion) is more accurate than the
    current single-frame pose and than the previous one moved by the true motion."""
    stub = RecordingStub(n_points=100, sigma_px=1.0, sigma_m=0.005, seed=7)
    seq = SequenceRelocalizer(stub, SequenceConfig(multi_frames=2))
    e_joint, e_single, e_prev = [], [], []
    for k in range(24):
        T0 = camera(-0.3 + 0.025 * k, 0.05 * np.sin(k), 2.0, yaw_deg=k, pitch_deg=5)
        T1 = camera(-0.29 + 0.025 * k, 0.05 * np.sin(k) + 0.004, 2.01, yaw_deg=k + 0.3, pitch_deg=5)
        seq.reset()
        r0 = run(seq, stub, [T0])[0]
        obs0 = stub.last
        r1 = run(seq, stub, [T1])[0]
        if not (obs0.localized and stub.last.localized):
            continue  # the stub's own PnP failed on this draw
        assert r0.message == "single-frame only"
        assert "fused (multi-frame RANSAC, 2 frames" in r1.message, r1.message
        e_joint.append(pose_errors(r1.pose_c2w, T1)[0])
        e_single.append(pose_errors(stub.last.pose_c2w, T1)[0])
        e_prev.append(pose_errors(obs0.pose_c2w @ invert_pose(T0) @ T1, T1)[0])
    assert len(e_joint) >= 16
    assert np.mean(e_joint) < 0.85 * np.mean(e_single)
    assert np.mean(e_joint) < 0.85 * np.mean(e_prev)


def test_relative_motion_is_measured_from_the_tracked_landmarks():
    stub = Stub()
    seq = SequenceRelocalizer(stub, SequenceConfig(multi_frames=3))
    poses = smooth_path(3)
    results = run(seq, stub, poses)
    assert "fused (multi-frame RANSAC, 3 frames" in results[-1].message
    # the previous frame's correspondences were moved into the last camera by the measured motion
    prev, last = seq._state.history
    assert np.array_equal(last.T_cur_from_frame, np.eye(4))
    true = invert_pose(poses[-1]) @ poses[-2]
    t_err, r_err = pose_errors(invert_pose(prev.T_cur_from_frame), invert_pose(true))
    assert t_err < 0.002 and r_err < 0.05


def test_odometry_carries_earlier_frames_when_images_cannot_be_tracked():
    """Frames of pure noise: nothing can be tracked, so without odometry every frame stands alone;
    with odometry the earlier frames' correspondences still join the multi-frame RANSAC."""
    poses = smooth_path(6)
    rng = np.random.default_rng(8)
    noise = [rng.integers(0, 255, (H, W), dtype=np.uint8) for _ in poses]
    for odometry in (False, True):
        stub = Stub(seed=9)
        seq = SequenceRelocalizer(stub)
        out = []
        for i, T in enumerate(poses):
            stub.truth = T
            rel = invert_pose(T) @ poses[i - 1] if odometry and i else None
            out.append(seq.localize(noise[i], K, relative_motion=rel))
        for r, T in zip(out[1:], poses[1:]):
            assert r.status == LOCALIZED and pose_errors(r.pose_c2w, T)[0] < 0.01
            if odometry:
                assert "fused (multi-frame RANSAC, 2 frames" in r.message, r.message
            else:
                assert r.message.endswith("single-frame only"), r.message


def test_reset_clears_everything():
    stub = Stub()
    seq = SequenceRelocalizer(stub)
    poses = smooth_path(4)
    run(seq, stub, poses, stamps=[0.0, 0.03, 0.06, 0.09])
    assert seq.num_landmarks > 0 and seq.num_history_frames > 0
    seq.reset()
    assert seq.num_landmarks == 0 and seq.num_history_frames == 0
    # the next frame elsewhere is localized by the single-frame path alone: no tracking leaked
    far = camera(1.0, 0.8, 2.2, yaw_deg=40)
    r = run(seq, stub, [far], stamps=[0.12])[0]
    assert r.message == "single-frame only" and pose_errors(r.pose_c2w, far)[0] < 0.01


@pytest.mark.parametrize("gap, why", [(2.0, "time gap 2.00 s"), (-0.5, "time went back")])
def test_time_gap_triggers_reset(gap, why):
    stub = Stub()
    seq = SequenceRelocalizer(stub, SequenceConfig(max_time_gap_s=0.5))
    poses = smooth_path(4)
    run(seq, stub, poses, stamps=[0.0, 0.03, 0.06, 0.09])
    assert seq.num_landmarks > 0
    # same place after the gap: tracking would work, but the gap must cut the sequence
    r = run(seq, stub, [poses[-1]], stamps=[0.09 + gap])[0]
    assert r.message.startswith(f"reset ({why}") and r.message.endswith("single-frame only")
    # and a normal step afterwards tracks again
    r = run(seq, stub, [poses[-1]], stamps=[0.09 + gap + 0.03])[0]
    assert "fused" in r.message


def test_image_size_change_resets():
    stub = Stub()
    seq = SequenceRelocalizer(stub)
    run(seq, stub, smooth_path(3))
    stub.truth = smooth_path(4)[-1]
    small = cv2.resize(render(stub.truth), (320, 240))
    r = seq.localize(small, K * [[0.5], [0.5], [1]])
    assert r.message.startswith("reset (image size changed")


def test_odometry_prediction_carries_tracking_through_fast_motion():
    # 0.2 m per frame at 2 m and f=500: the image moves ~50 px per frame; the pose needs the
    # tracked landmarks because the single-frame path is lost on those frames
    poses = [camera(-0.4 + 0.2 * i, 0.0, 2.0, pitch_deg=3) for i in range(4)]
    results = {}
    for odometry in (False, True):
        stub = Stub(seed=6)
        seq = SequenceRelocalizer(stub, SequenceConfig(klt_levels=1))  # small search range
        stub.truth = poses[0]
        seq.localize(render(poses[0]), K)
        out = []
        for i in range(1, 4):
            stub.truth, stub.lost = poses[i], True
            rel = invert_pose(poses[i]) @ poses[i - 1] if odometry else None
            out.append(seq.localize(render(poses[i]), K, relative_motion=rel))
            stub.lost = False
            out.append(seq.localize(render(poses[i]), K,
                                    relative_motion=np.eye(4) if odometry else None))
        results[odometry] = out
    assert results[False][0].status == LOST  # optical flow alone cannot follow 50 px
    for r, T in zip(results[True][::2], poses[1:]):
        assert r.status == LOCALIZED and r.message.endswith("tracking only"), r.message
        assert pose_errors(r.pose_c2w, T)[0] < 0.01


def test_odometry_gates_a_wrong_single_frame_pose():
    stub = Stub()
    seq = SequenceRelocalizer(stub)
    poses = smooth_path(6)
    run(seq, stub, poses[:4], odometry=True)
    stub.wrong_shift = np.array([0.4, 0.0, 0.0])
    stub.truth = poses[4]
    r = seq.localize(render(poses[4]), K, relative_motion=invert_pose(poses[4]) @ poses[3])
    assert "single-frame pose rejected" in r.message and "odometry prediction" in r.message
    assert r.status == LOCALIZED and pose_errors(r.pose_c2w, poses[4])[0] < 0.01


def test_odometry_jump_is_not_trusted_without_image_support():
    """Odometry that contradicts the images (a 1 m jump): the single-frame pose is rejected, and
    the earlier frames moved by that motion are not reported either (the tracked landmarks do not
    confirm them): the frame is lost."""
    stub = Stub()
    seq = SequenceRelocalizer(stub)
    poses = smooth_path(5)
    run(seq, stub, poses[:4], odometry=True)
    jump = np.eye(4)
    jump[:3, 3] = [1.0, 0.0, 0.0]
    stub.truth = poses[4]
    r = seq.localize(render(poses[4]), K, relative_motion=jump @ invert_pose(poses[4]) @ poses[3])
    assert "single-frame pose rejected" in r.message and "from the odometry prediction" in r.message
    assert r.status == LOST and r.pose_c2w is None, r.message


def test_wrong_pose_carried_by_odometry_cannot_lock_out_correct_single_frame_poses():
    """The first frame is mislocalized (nothing to check it against) and its landmarks agree with
    the wrong pose, so the odometry prediction carries the error and rejects the correct
    single-frame poses after it; after ``max_disagreements`` in a row the tracker restarts from
    them instead of following the wrong pose for ever."""
    stub = Stub()
    seq = SequenceRelocalizer(stub, SequenceConfig(max_disagreements=3))
    poses = smooth_path(8)
    stub.wrong_shift = np.array([0.3, 0.0, 0.0])
    run(seq, stub, poses[:1])
    stub.wrong_shift = None
    out = []
    for i in range(1, len(poses)):
        stub.truth = poses[i]
        out.append(seq.localize(render(poses[i]), K,
                                relative_motion=invert_pose(poses[i]) @ poses[i - 1]))
    assert all("single-frame pose rejected: " in r.message and r.message.endswith("tracking only")
               for r in out[:2]), [r.message for r in out[:2]]
    assert "3 disagreements in a row: landmarks dropped" in out[2].message
    for r, T in zip(out[2:], poses[3:]):
        assert r.status == LOCALIZED and pose_errors(r.pose_c2w, T)[0] < 0.01, r.message


def test_wrong_single_frame_pose_is_not_fused_blindly():
    stub = Stub()
    seq = SequenceRelocalizer(stub)
    poses = smooth_path(8)
    run(seq, stub, poses[:5])
    n_landmarks = seq.num_landmarks
    stub.wrong_shift = np.array([0.3, -0.1, 0.0])
    r = run(seq, stub, [poses[5]])[0]
    assert "poses disagree" in r.message and "single-frame pose rejected, tracking pose" in r.message
    assert pose_errors(r.pose_c2w, poses[5])[0] < 0.01
    assert seq.num_landmarks <= n_landmarks  # nothing from the wrong frame was added
    # a landmark from the wrong frame would be ~75 px off; stub noise alone stays under the 4 px gate
    assert landmark_errors(seq, poses[5]).max() < 4.5


def test_wrong_first_frame_never_yields_a_wrong_confident_pose_later():
    """The first frame was mislocalized (unavoidable without history); when the next, correct
    single-frame pose conflicts with the landmarks of equal weight, the frame is reported lost and
    tracking restarts: no later frame is reported at the wrong place."""
    stub = Stub()
    seq = SequenceRelocalizer(stub)
    poses = smooth_path(8)
    stub.wrong_shift = np.array([0.3, 0.0, 0.0])
    run(seq, stub, poses[:1])
    stub.wrong_shift = None
    results = run(seq, stub, poses[1:])
    assert results[0].status == LOST and "ambiguous" in results[0].message
    for r, T in zip(results[1:], poses[2:]):
        assert r.status == LOCALIZED and pose_errors(r.pose_c2w, T)[0] < 0.01
    assert np.median(landmark_errors(seq, poses[-1])) < 1.5


def test_wrong_landmarks_are_dropped_after_repeated_disagreement():
    """Landmarks from a wrong first frame outnumber the correct single-frame points: tracking wins
    the first disagreements, but after ``max_disagreements`` in a row the landmarks are dropped."""
    stub = Stub(n_points=600)
    seq = SequenceRelocalizer(stub, SequenceConfig(max_disagreements=3))
    poses = smooth_path(8)
    stub.wrong_shift = np.array([0.3, 0.0, 0.0])
    run(seq, stub, poses[:1])
    stub.wrong_shift, stub.n = None, 120
    results = run(seq, stub, poses[1:])
    assert [r.message.endswith("single-frame pose rejected, tracking pose") for r in results[:2]] == \
        [True, True]
    assert "3 disagreements in a row: landmarks dropped" in results[2].message
    for r, T in zip(results[2:], poses[3:]):
        assert r.status == LOCALIZED and pose_errors(r.pose_c2w, T)[0] < 0.01


def test_equal_support_for_two_different_poses_is_reported_lost():
    stub = Stub(n_points=150, outliers=0.0)
    seq = SequenceRelocalizer(stub, SequenceConfig(max_landmarks=150))
    poses = smooth_path(4)
    run(seq, stub, poses[:3])
    stub.wrong_shift = np.array([0.3, 0.0, 0.0])
    r = run(seq, stub, poses[3:4])[0]
    assert r.status == LOST and r.pose_c2w is None and "ambiguous" in r.message
    assert seq.num_landmarks == 0  # a lost frame resets


def test_lost_when_neither_path_is_trustworthy():
    stub = Stub()
    seq = SequenceRelocalizer(stub)
    run(seq, stub, smooth_path(3))
    stub.lost = True
    stub.truth = smooth_path(4)[-1]
    r = seq.localize(np.full((H, W), 128, np.uint8), K)  # a blank frame: nothing to track
    assert r.status == LOST and r.pose_c2w is None and r.covariance is None
    assert "lost" in r.message and seq.num_landmarks == 0


def test_timing_reports_the_sequence_overhead():
    stub = Stub()
    seq = SequenceRelocalizer(stub)
    r = run(seq, stub, smooth_path(3))[-1]
    for key in ("single_frame", "tracking", "motion", "multi_frame", "update", "sequence_overhead",
                "total"):
        assert key in r.timing_ms and r.timing_ms[key] >= 0
    assert r.timing_ms["total"] >= r.timing_ms["sequence_overhead"]


def test_bad_input_is_refused_clearly():
    seq = SequenceRelocalizer(Stub())
    with pytest.raises(ValueError, match="uint8"):
        seq.localize(np.zeros((H, W), np.float32), K)
    with pytest.raises(ValueError, match="3x3"):
        seq.localize(np.zeros((H, W), np.uint8), np.eye(4))
    bad = np.eye(4)
    bad[0, 0] = 2.0
    with pytest.raises(ValueError, match="rigid"):
        seq.localize(np.zeros((H, W), np.uint8), K, relative_motion=bad)
    with pytest.raises(TypeError, match="RelocResult"):
        SequenceRelocalizer(lambda im, k: (np.eye(4), 10)).localize(np.zeros((H, W), np.uint8), K)
    with pytest.raises(TypeError, match="callable"):
        SequenceRelocalizer(None)
    with pytest.raises(ValueError, match="multi_frames"):
        SequenceConfig(multi_frames=0)


# --- recording boundaries ----------------------------------------------------------------------

def test_sequence_starts_from_frame_numbers():
    from seqace_ros.sequence_boundaries import sequence_starts

    names = [f"frame-{i:06d}.color" for i in [*range(0, 50), *range(100, 150)]]
    assert np.flatnonzero(sequence_starts(names)).tolist() == [0, 50]
    sub = [f"{i:04d}" for i in [0, 10, 20, 30, 40, 600, 610, 620]]  # every 10th frame
    assert np.flatnonzero(sequence_starts(sub)).tolist() == [0, 5]
    assert np.flatnonzero(sequence_starts(["a3", "a4", "a2", "a3"])).tolist() == [0, 2]
    assert np.flatnonzero(sequence_starts(["left", "right", "up"])).tolist() == [0]
    with pytest.raises(ValueError, match="one pose per frame"):
        sequence_starts(["a1", "a2"], [np.eye(4)])


def test_sequence_starts_from_pose_jumps():
    from seqace_ros.sequence_boundaries import sequence_starts

    poses = [camera(0.01 * i, 0, 2.0) for i in range(6)]
    poses[3] = camera(0.5, 0, 2.0)  # a jump out and back: two cuts
    starts = sequence_starts(["x"] * 6, poses)
    assert np.flatnonzero(starts).tolist() == [0, 3, 4]
    turned = [camera(0, 0, 2.0, yaw_deg=0.5 * i) for i in range(4)] + [camera(0, 0, 2.0, yaw_deg=40)]
    assert np.flatnonzero(sequence_starts(["x"] * 5, turned)).tolist() == [0, 4]


@pytest.mark.realdata
def test_redkitchen_query_blocks_are_found(redkitchen):
    from seqace_ros.data.scene_folder import load_split
    from seqace_ros.sequence_boundaries import sequence_starts

    frames = load_split(redkitchen, "test")
    starts = sequence_starts([f.name for f in frames])
    assert np.flatnonzero(starts).tolist() == list(range(0, 500, 50))
    assert np.array_equal(sequence_starts([f.name for f in frames], [f.pose_c2w for f in frames]),
                          starts)


def test_every_sequence_result_carries_its_decision_as_a_type():
    """Callers (the benchmark, reports) read which path produced a pose from RelocResult.decision,
    not by parsing the message."""
    from seqace_ros.relocalization.sequence import SequenceDecision, SequencePath

    stub = Stub(n_points=200, seed=3)
    results = run(SequenceRelocalizer(stub), stub, smooth_path(8))
    for r in results:
        assert isinstance(r.decision, SequenceDecision)
        assert (r.decision.path is SequencePath.LOST) == (not r.localized)
        assert r.decision.frames >= (1 if r.localized else 0)
    assert results[0].decision.path is SequencePath.SINGLE
    assert any(r.decision.path is SequencePath.FUSED and r.decision.frames > 1 for r in results[1:])
