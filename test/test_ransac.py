"""Native RANSAC / PnP (seqace_ros.ransac over seqace_ros._native) on synthetic correspondences.

Scenes: points 1-10 m in front of a 640x480 camera with f = 500, a random camera pose, Gaussian
pixel noise and a fraction of rows replaced by uniform random pixels (outliers).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from seqace_ros import ransac
from seqace_ros.geometry import invert_pose, pose_errors, rotvec_to_matrix
from seqace_ros.ransac import Frame, RansacOptions, estimate_pose, estimate_pose_multi

W, H, F = 640, 480, 500.0
K = np.array([[F, 0.0, 320.0], [0.0, F, 240.0], [0.0, 0.0, 1.0]])


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.random(random_state=rng).as_matrix()


def make_scene(rng: np.random.Generator, n: int = 1000, outlier_ratio: float = 0.0,
               noise_px: float = 0.0, K: np.ndarray = K, T_c2w: np.ndarray | None = None):
    """(points2d, points3d, T_c2w, inlier mask) for a given or random camera."""
    uv = rng.uniform([0, 0], [W, H], (n, 2))
    depth = rng.uniform(1.0, 10.0, n)
    cam = np.c_[(uv[:, 0] - K[0, 2]) / K[0, 0], (uv[:, 1] - K[1, 2]) / K[1, 1], np.ones(n)]
    cam *= depth[:, None]
    if T_c2w is None:
        T_c2w = np.eye(4)
        T_c2w[:3, :3] = random_rotation(rng)
        T_c2w[:3, 3] = rng.uniform(-5, 5, 3)
    world = cam @ T_c2w[:3, :3].T + T_c2w[:3, 3]
    p2 = uv + rng.normal(scale=noise_px, size=uv.shape) if noise_px > 0 else uv.copy()
    outlier = rng.random(n) < outlier_ratio
    p2[outlier] = rng.uniform([0, 0], [W, H], (int(outlier.sum()), 2))
    return p2, world, T_c2w, ~outlier


def project(T_c2w: np.ndarray, world: np.ndarray, K: np.ndarray = K) -> np.ndarray:
    T_w2c = invert_pose(T_c2w)
    cam = world @ T_w2c[:3, :3].T + T_w2c[:3, 3]
    uv = cam @ K.T
    return uv[:, :2] / uv[:, 2:]


# ---- accuracy ---------------------------------------------------------------------------------

def test_exact_data_gives_exact_pose():
    rng = np.random.default_rng(0)
    p2, p3, T, truth = make_scene(rng, n=200)
    r = estimate_pose(p2, p3, K, seed=1)
    assert r.success, r.message
    assert r.message == "ok"
    t_err, r_err = pose_errors(r.T_c2w, T)
    assert t_err < 1e-6 and r_err < 1e-5
    assert r.inliers.all() and r.num_inliers == 200
    assert r.reprojection_error_px < 1e-4


@pytest.mark.parametrize("scoring", ["soft", "hard"])
@pytest.mark.parametrize("outlier_ratio,noise_px", [(0.0, 1.0), (0.3, 2.0), (0.5, 1.0), (0.8, 1.0)])
def test_pose_within_bounds_of_truth(scoring, outlier_ratio, noise_px):
    good = 0
    for seed in range(8):
        rng = np.random.default_rng(100 + seed)
        p2, p3, T, truth = make_scene(rng, 1000, outlier_ratio, noise_px)
        r = estimate_pose(p2, p3, K, scoring=scoring, seed=seed, time_budget_ms=0)
        assert r.success, r.message
        t_err, r_err = pose_errors(r.T_c2w, T)
        good += t_err < 0.02 and r_err < 0.5
        # The mask agrees with the truth: outliers that land within 10 px by chance are rare,
        # and true inliers are kept unless their noise exceeds the 10 px refine threshold
        # (2D Gaussian noise: P(e > 10 px) = exp(-50 / sigma^2)).
        assert np.mean(truth[r.inliers]) > 0.98
        assert np.mean(r.inliers[truth]) > 1 - np.exp(-50 / noise_px**2) - 0.01
    assert good >= 7


def test_ninety_percent_outliers_still_found():
    rng = np.random.default_rng(7)
    p2, p3, T, truth = make_scene(rng, 2000, 0.9, 1.0)
    r = estimate_pose(p2, p3, K, max_iterations=30000, time_budget_ms=0, seed=3)
    assert r.success, r.message
    t_err, r_err = pose_errors(r.T_c2w, T)
    assert t_err < 0.05 and r_err < 1.0
    assert np.mean(r.inliers[truth]) > 0.95
    assert r.inliers[~truth].sum() < 20


def test_float32_input_matches_float64():
    rng = np.random.default_rng(3)
    p2, p3, T, _ = make_scene(rng, 500, 0.3, 1.0)
    p3 = p3 - p3.mean(axis=0)  # float32 keeps mm precision near the origin
    r64 = estimate_pose(p2, p3, K, seed=0)
    r32 = estimate_pose(p2.astype(np.float32), p3.astype(np.float32), K.astype(np.float32), seed=0)
    assert r64.success and r32.success
    t_err, r_err = pose_errors(r32.T_c2w, r64.T_c2w)
    assert t_err < 1e-3 and r_err < 0.05


def test_points_behind_the_camera_are_outliers():
    rng = np.random.default_rng(11)
    p2, p3, T, _ = make_scene(rng, 600, 0.0, 0.5)
    # Mirroring a camera-frame point through the centre keeps its pixel but puts it behind.
    behind = rng.random(600) < 0.4
    C = T[:3, 3]
    p3[behind] = 2 * C - p3[behind]
    r = estimate_pose(p2, p3, K, seed=0)
    assert r.success, r.message
    t_err, r_err = pose_errors(r.T_c2w, T)
    assert t_err < 0.02 and r_err < 0.5
    assert not r.inliers[behind].any()
    assert r.inliers[~behind].mean() > 0.99


def test_general_intrinsics_with_skew_and_different_focals():
    K2 = np.array([[620.0, 3.0, 300.0], [0.0, 580.0, 250.0], [0.0, 0.0, 1.0]])
    rng = np.random.default_rng(12)
    p2, p3, T, truth = make_scene(rng, 800, 0.4, 1.0, K=K2)
    r = estimate_pose(p2, p3, K2, seed=2)
    assert r.success, r.message
    t_err, r_err = pose_errors(r.T_c2w, T)
    assert t_err < 0.02 and r_err < 0.5
    # Reported errors are pixels of this K: inlier errors near the noise level.
    assert 0.5 < r.reprojection_error_px < 2.0


# ---- determinism, threads, options -------------------------------------------------------------

def test_same_seed_same_result_for_any_thread_count():
    rng = np.random.default_rng(5)
    p2, p3, _, _ = make_scene(rng, 1000, 0.7, 1.0)
    runs = [estimate_pose(p2, p3, K, seed=42, num_threads=n, time_budget_ms=0) for n in (1, 2, 2, 4)]
    for r in runs[1:]:
        assert np.array_equal(r.T_c2w, runs[0].T_c2w)
        assert np.array_equal(r.inliers, runs[0].inliers)
        assert r.iterations == runs[0].iterations
    other = estimate_pose(p2, p3, K, seed=43, num_threads=1, time_budget_ms=0)
    assert other.iterations != runs[0].iterations or not np.array_equal(other.T_c2w, runs[0].T_c2w)


def test_hard_and_soft_scores_mean_what_they_say():
    rng = np.random.default_rng(6)
    p2, p3, T, truth = make_scene(rng, 1000, 0.5, 1.0)
    hard = estimate_pose(p2, p3, K, scoring="hard", seed=0)
    soft = estimate_pose(p2, p3, K, scoring="soft", seed=0)
    assert hard.success and soft.success
    # Hard score = inliers at tau = 10 px, which (1 px noise) are the true inliers plus a few
    # chance outliers; the soft score weighs each of them by at most 1 - sigmoid(-5).
    n_true = int(truth.sum())
    assert n_true <= hard.score <= n_true + 15
    assert 0.95 * n_true < soft.score < hard.score


def test_keyword_overrides_and_validation():
    rng = np.random.default_rng(8)
    p2, p3, _, _ = make_scene(rng, 100)
    with pytest.raises(TypeError, match="RansacOptions fields are"):
        estimate_pose(p2, p3, K, inlier_treshold_px=3.0)
    with pytest.raises(ValueError, match="scoring"):
        estimate_pose(p2, p3, K, scoring="fuzzy")
    with pytest.raises(ValueError, match="inlier_threshold_px"):
        estimate_pose(p2, p3, K, inlier_threshold_px=-1.0)
    with pytest.raises(ValueError, match="confidence"):
        estimate_pose(p2, p3, K, confidence=1.0)
    with pytest.raises(ValueError, match="num_threads"):
        estimate_pose(p2, p3, K, num_threads=0)
    with pytest.raises(ValueError, match="min_iterations"):
        estimate_pose(p2, p3, K, min_iterations=10, max_iterations=5)
    r = estimate_pose(p2, p3, K, RansacOptions(num_threads=1), loss="cauchy", scoring="hard")
    assert r.success


def test_python_defaults_match_the_native_struct():
    from seqace_ros import _native
    native = _native.RansacOptions()
    for name, value in vars(RansacOptions()).items():
        assert getattr(native, name) == value, name
    native.inlier_threshold_px, native.max_iterations = 2.5, 77
    text = repr(native)
    assert "inlier_threshold_px=2.5," in text and "max_iterations=77," in text, text
    # Signatures name the default instead of printing it.
    assert "= RansacOptions()" in _native.estimate_pose.__doc__


def test_min_iterations_and_max_iterations_are_respected():
    rng = np.random.default_rng(9)
    p2, p3, _, _ = make_scene(rng, 300, 0.2, 1.0)
    assert estimate_pose(p2, p3, K, min_iterations=150).iterations >= 150
    r = estimate_pose(p2, p3, K, min_iterations=0, max_iterations=3)
    assert r.iterations <= 3


# ---- covariance -------------------------------------------------------------------------------

def test_covariance_is_symmetric_positive_definite_and_scales_with_noise():
    rng = np.random.default_rng(10)
    p2, p3, T, _ = make_scene(rng, 1000, 0.3, 1.0)
    r1 = estimate_pose(p2, p3, K, seed=0)
    rng = np.random.default_rng(10)
    p2b, p3b, _, _ = make_scene(rng, 1000, 0.3, 0.5)
    r2 = estimate_pose(p2b, p3b, K, seed=0)
    for r in (r1, r2):
        assert r.success
        assert r.covariance.shape == (6, 6)
        assert np.allclose(r.covariance, r.covariance.T)
        assert np.linalg.eigvalsh(r.covariance).min() > 0
    # Half the pixel noise: a quarter of the variance (sigma^2 is estimated from residuals).
    ratio = np.trace(r1.covariance[:3, :3]) / np.trace(r2.covariance[:3, :3])
    assert 2.5 < ratio < 6.0


def _log_so3(R: np.ndarray) -> np.ndarray:
    cos = np.clip((np.trace(R) - 1) / 2, -1, 1)
    theta = np.arccos(cos)
    w = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / 2
    return w if theta < 1e-12 else w * theta / np.sin(theta)


@pytest.mark.parametrize("sigma,threshold,loss,max_ratio,max_d2", [
    (1.0, 6.0, "trivial", 1.6, 7.5),  # least squares, no truncation: the textbook case
    (2.0, 4.0, "huber", 1.7, 8.5),  # defaults, noise half the refine threshold: 14 % cut off
])
def test_covariance_matches_monte_carlo_in_ros_convention(sigma, threshold, loss, max_ratio, max_d2):
    """Camera centre and world-frame rotation errors over noise realisations vs the prediction."""
    rng = np.random.default_rng(20)
    clean, p3, T, _ = make_scene(rng, 150, 0.0, 0.0)
    errors, covs = [], []
    for trial in range(200):
        p2 = clean + rng.normal(scale=sigma, size=clean.shape)
        r = estimate_pose(p2, p3, K, seed=trial, num_threads=1, loss=loss,
                          refine_threshold_px=threshold)
        assert r.success
        dC = r.T_c2w[:3, 3] - T[:3, 3]
        # ROS: rotation about the world axes on the left of R_c2w: R_est = exp(phi) R_true.
        phi = _log_so3(r.T_c2w[:3, :3] @ T[:3, :3].T)
        errors.append(np.r_[dC, phi])
        covs.append(r.covariance)
    errors = np.array(errors)
    predicted = np.mean(covs, axis=0)
    empirical = np.cov(errors.T)
    # Per-parameter variances agree within a reasonable factor ...
    ratio = np.diag(empirical) / np.diag(predicted)
    assert np.all((ratio > 0.6) & (ratio < max_ratio)), ratio
    # ... and so does the full matrix: Mahalanobis distances average the dimension (6).
    inv = np.linalg.inv(predicted)
    d2 = np.einsum("ni,ij,nj->n", errors, inv, errors)
    assert 4.5 < d2.mean() < max_d2, d2.mean()
    # The test can tell conventions apart: the same errors with the rotation expressed in the
    # camera frame, or with the opposite sign, do not fit the prediction.
    R = T[:3, :3]
    for wrong in (np.c_[errors[:, :3], errors[:, 3:] @ R], np.c_[errors[:, :3], -errors[:, 3:]]):
        assert np.einsum("ni,ij,nj->n", wrong, inv, wrong).mean() > 10


# ---- graceful failure -------------------------------------------------------------------------

def test_nan_rows_are_dropped():
    rng = np.random.default_rng(13)
    p2, p3, T, _ = make_scene(rng, 300, 0.2, 1.0)
    p2[5] = np.nan
    p3[17, 2] = np.inf
    r = estimate_pose(p2, p3, K, seed=0)
    assert r.success, r.message
    assert r.num_valid == 298
    assert not r.inliers[5] and not r.inliers[17]
    t_err, r_err = pose_errors(r.T_c2w, T)
    assert t_err < 0.05 and r_err < 0.5


def test_too_few_finite_points():
    rng = np.random.default_rng(14)
    p2, p3, _, _ = make_scene(rng, 10)
    p2[:7] = np.nan
    r = estimate_pose(p2, p3, K)
    assert not r.success
    assert r.message.startswith("too few points") and "NaN" in r.message
    assert r.inliers.shape == (10,) and not r.inliers.any()
    assert np.array_equal(r.T_c2w, np.eye(4))


@pytest.mark.parametrize("n", [0, 1, 3])
def test_fewer_than_four_points(n):
    rng = np.random.default_rng(15)
    p2, p3, _, _ = make_scene(rng, max(n, 1))
    r = estimate_pose(p2[:n], p3[:n], K)
    assert not r.success and r.message.startswith("too few points")


def test_wrong_shapes_raise_value_error():
    rng = np.random.default_rng(16)
    p2, p3, _, _ = make_scene(rng, 20)
    with pytest.raises(ValueError, match=r"points2d must have shape \(N, 2\)"):
        estimate_pose(p3, p3, K)
    with pytest.raises(ValueError, match=r"points3d must have shape \(N, 3\)"):
        estimate_pose(p2, p2, K)
    with pytest.raises(ValueError, match="same number of rows"):
        estimate_pose(p2[:10], p3, K)
    with pytest.raises(ValueError, match="K must have shape"):
        estimate_pose(p2, p3, K[:2])
    with pytest.raises(ValueError, match="numeric"):
        estimate_pose([["a", "b"]], p3[:1], K)


@pytest.mark.parametrize("bad_K,match", [
    (np.diag([0.0, 500.0, 1.0]), "singular"),
    (np.array([[500, 0, 320], [0, 500, 240], [0, 0, 0.0]]), "pinhole"),
    (np.array([[500, 0, 320], [0, 500, 240], [1e-3, 0, 1.0]]), "pinhole"),
    (np.array([[500, 0, np.nan], [0, 500, 240], [0, 0, 1.0]]), "NaN"),
])
def test_bad_intrinsics_raise_value_error(bad_K, match):
    rng = np.random.default_rng(17)
    p2, p3, _, _ = make_scene(rng, 20)
    with pytest.raises(ValueError, match=match):
        estimate_pose(p2, p3, bad_K)


def test_collinear_and_coincident_points_fail_gracefully():
    rng = np.random.default_rng(18)
    p2 = rng.uniform([0, 0], [W, H], (50, 2))
    line = np.outer(rng.uniform(1, 10, 50), [0.3, -0.2, 1.0]) + [1.0, 2.0, 3.0]
    r = estimate_pose(p2, line, K)
    assert not r.success and r.message.startswith("degenerate")
    same = np.tile([1.0, 2.0, 5.0], (50, 1))
    r = estimate_pose(p2, same, K)
    assert not r.success and r.message.startswith("degenerate")


def test_all_outliers_fail_gracefully():
    rng = np.random.default_rng(19)
    p2 = rng.uniform([0, 0], [W, H], (500, 2))
    p3 = rng.uniform(-5, 5, (500, 3))
    t0 = time.perf_counter()
    r = estimate_pose(p2, p3, K, seed=0)
    assert time.perf_counter() - t0 < 5.0  # a hang check, not a timing test
    assert not r.success
    assert r.message.split(":")[0] in ("too few inliers", "time budget", "no hypothesis")


def test_time_budget_stops_an_absurd_search():
    rng = np.random.default_rng(21)
    p2 = rng.uniform([0, 0], [W, H], (1000, 2))
    p3 = rng.uniform(-5, 5, (1000, 3))
    t0 = time.perf_counter()
    r = estimate_pose(p2, p3, K, time_budget_ms=5.0, min_iterations=10**8,
                      max_iterations=10**9, confidence=0.999999)
    assert time.perf_counter() - t0 < 1.0  # a hang check, not a timing test
    assert r.message.startswith("time budget")
    assert 0 < r.iterations < 10**8


def test_min_inliers_gate():
    rng = np.random.default_rng(22)
    p2, p3, _, truth = make_scene(rng, 100, 0.5, 1.0)
    r = estimate_pose(p2, p3, K, min_inliers=int(truth.sum()) + 10)
    assert not r.success and "min_inliers" in r.message
    assert r.num_inliers >= truth.sum() - 3  # the pose itself was found
    assert estimate_pose(p2, p3, K, min_inliers=20).success


def test_missing_extension_gives_build_instructions(monkeypatch):
    monkeypatch.setattr(ransac, "_NATIVE", None)
    monkeypatch.setitem(sys.modules, "seqace_ros._native", None)
    with pytest.raises(ransac.NativeExtensionMissing, match="build_ext --inplace"):
        estimate_pose(np.zeros((4, 2)), np.zeros((4, 3)), K)


# ---- minimal solver ---------------------------------------------------------------------------

def test_p3p_recovers_the_true_pose():
    from seqace_ros import _native
    rng = np.random.default_rng(23)
    for _ in range(200):
        p2, p3, T, _ = make_scene(rng, 3)
        T_w2c = invert_pose(T)
        bearings = np.c_[(p2 - K[:2, 2]) / F, np.ones(3)]
        sols = _native.p3p(bearings, p3)
        assert 1 <= len(sols) <= 4
        best = min(np.abs(R - T_w2c[:3, :3]).max() + np.abs(t - T_w2c[:3, 3]).max() for R, t in sols)
        assert best < 1e-6
        for R, t in sols:  # every solution is a rotation with the points in front
            assert np.allclose(R @ R.T, np.eye(3), atol=1e-6)
            assert np.all((p3 @ R.T + t)[:, 2] > 0)


def test_p3p_rejects_collinear_points():
    from seqace_ros import _native
    pts = np.array([[0, 0, 5.0], [1, 1, 6.0], [2, 2, 7.0]])
    assert _native.p3p(np.eye(3) + 0.1, pts) == []


# ---- multi-frame (generalized camera) ---------------------------------------------------------

def _relative(T_c2w_cur: np.ndarray, T_c2w_i: np.ndarray) -> np.ndarray:
    """T_cur_from_i: camera i coordinates -> current camera coordinates."""
    return invert_pose(T_c2w_cur) @ T_c2w_i


def test_multi_frame_pose_of_the_current_camera():
    rng = np.random.default_rng(24)
    p2, p3, T_cur, _ = make_scene(rng, 40, 0.5, 1.0)  # the current frame alone is weak
    frames = [Frame(p2, p3, K)]
    for _ in range(3):  # earlier frames, a little rotated and moved
        T_i = T_cur.copy()
        T_i[:3, :3] = rotvec_to_matrix(rng.normal(scale=0.1, size=3)) @ T_cur[:3, :3]
        T_i[:3, 3] += rng.normal(scale=0.3, size=3)
        q2, q3, _, _ = make_scene(rng, 300, 0.6, 1.0, T_c2w=T_i)
        frames.append(Frame(q2, q3, K, _relative(T_cur, T_i)))
    r = estimate_pose_multi(frames, seed=0)
    assert r.success, r.message
    t_err, r_err = pose_errors(r.T_c2w, T_cur)
    assert t_err < 0.01 and r_err < 0.2
    assert len(r.inliers_per_frame) == 4
    assert [m.shape[0] for m in r.inliers_per_frame] == [40, 300, 300, 300]
    assert r.inliers is r.inliers_per_frame[0]
    # The same frames with a wrong relative pose for one of them: its points become outliers.
    bad = list(frames)
    T_wrong = frames[1].T_cur_from_frame.copy()
    T_wrong[:3, 3] += [0.5, 0.0, 0.0]
    bad[1] = Frame(frames[1].points2d, frames[1].points3d, K, T_wrong)
    r_bad = estimate_pose_multi(bad, seed=0)
    assert r_bad.success
    assert r_bad.inliers_per_frame[1].sum() < 0.2 * r.inliers_per_frame[1].sum()


def test_multi_frame_with_one_frame_equals_single_frame():
    rng = np.random.default_rng(25)
    p2, p3, _, _ = make_scene(rng, 500, 0.5, 1.0)
    single = estimate_pose(p2, p3, K, seed=4)
    multi = estimate_pose_multi([(p2, p3, K, np.eye(4))], seed=4)
    assert np.array_equal(single.T_c2w, multi.T_c2w)
    assert np.array_equal(single.inliers, multi.inliers)


def test_multi_frame_bad_transform_raises():
    rng = np.random.default_rng(26)
    p2, p3, _, _ = make_scene(rng, 20)
    T = np.eye(4)
    T[:3, :3] *= 2.0
    with pytest.raises(ValueError, match="frame 0: .*not a rotation"):
        estimate_pose_multi([(p2, p3, K, T)])
    with pytest.raises(ValueError, match="at least one frame"):
        estimate_pose_multi([])
