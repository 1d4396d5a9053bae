"""Tracking patches through the homography of each point's own plane (refinement/patch_warp.py):
on a textured plane seen from two views far apart, with the exact geometry known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from seqace_ros.refinement.keyframe_tracking import track_between_views
from seqace_ros.refinement.patch_warp import facing_normals, point_homographies, track_through_homographies

W, H = 960, 720
K = np.array([[700.0, 0.0, 470.0], [0.0, 710.0, 365.0], [0.0, 0.0, 1.0]])


def _texture(seed: int) -> np.ndarray:
    """Blobs and edges of several sizes: a patch's centre under LK depends on how it is deformed."""
    rng = np.random.default_rng(seed)
    img = np.full((H, W), 128, np.uint8)
    for _ in range(700):
        x, y = rng.integers(0, W), rng.integers(0, H)
        a, b = rng.integers(3, 25, 2)
        cv2.ellipse(img, (int(x), int(y)), (int(a), int(b)), float(rng.uniform(0, 180)), 0, 360,
                    int(rng.integers(0, 255)), -1)
    return cv2.GaussianBlur(img, (0, 0), 1.0)


def _rot_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])


@pytest.fixture(scope="module")
def scene():
    """A plane 6 m away, tilted 25 deg, seen from the origin and from 2.5 m to the side turned
    towards it: a wide baseline whose foreshortening LK's shift model does not describe."""
    src = _texture(1)
    T_src = np.eye(4)
    T_dst = np.eye(4)
    T_dst[:3, :3] = _rot_y(-20.0)
    T_dst[:3, 3] = [2.5, 0.2, 0.4]
    normal = _rot_y(25.0) @ np.array([0.0, 0.0, -1.0])
    dist = normal @ np.array([0.0, 0.0, 6.0])
    xy = cv2.goodFeaturesToTrack(src, 400, 0.01, 10, blockSize=7).reshape(-1, 2).astype(np.float64)
    xy = xy[((xy > 120) & (xy < [W - 120, H - 120])).all(axis=1)]  # corners, as keyframes keep
    rays = np.hstack([xy, np.ones((len(xy), 1))]) @ np.linalg.inv(K).T
    cam = rays * (dist / (rays @ normal))[:, None]
    Hs = point_homographies(K, T_src, K, T_dst, cam, np.tile(normal, (len(xy), 1)))
    dst = cv2.warpPerspective(src, Hs[0], (W, H), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    h = np.hstack([xy, np.ones((len(xy), 1))]) @ Hs[0].T
    truth = h[:, :2] / h[:, 2:]
    inside = ((truth > 40) & (truth < [W - 40, H - 40])).all(axis=1)
    return dict(src=src, dst=dst, T_src=T_src, T_dst=T_dst, xy=xy[inside], cam=cam[inside], Hs=Hs[inside],
                truth=truth[inside], normal=normal)


def test_one_homography_per_point_agrees_with_the_plane(scene):
    # Points on one plane: every per-point homography is the plane's, up to scale.
    Hs = scene["Hs"] / scene["Hs"][:, 2:3, 2:3]
    assert np.abs(Hs - Hs[0]).max() < 1e-9


def test_patches_land_on_the_truth_from_a_pose_a_pixel_off(scene):
    # A pose a pixel off: its homographies are the true ones followed by that pixel's shift.
    shift = np.array([[1.0, 0.0, 0.8], [0.0, 1.0, -0.7], [0.0, 0.0, 1.0]])
    pos, ok = track_through_homographies(scene["src"], scene["dst"], scene["xy"], shift[None] @ scene["Hs"],
                                         15, 3.0)
    assert ok.mean() > 0.95
    err = np.linalg.norm(pos[ok] - scene["truth"][ok], axis=1)
    assert np.median(err) < 0.05 and np.percentile(err, 90) < 0.15
    # LK on the derotated keyframe from the same start: the foreshortening biases its centres.
    start = scene["truth"] + [0.8, -0.7]
    pos2, ok2 = track_between_views(scene["src"], K, scene["T_src"], scene["dst"], K, scene["T_dst"],
                                    scene["xy"].astype(np.float32), start.astype(np.float32), 15, 1, 0.0, True)
    err2 = np.linalg.norm(pos2[ok2] - scene["truth"][ok2], axis=1)
    assert np.median(err2) > 3.0 * np.median(err)
    # The refiner's planes face the keyframe (it does not know the surface's tilt): still nearer
    # the truth than one rotation for the whole image.
    facing = point_homographies(K, scene["T_src"], K, scene["T_dst"], scene["cam"], facing_normals(scene["cam"]))
    pos3, ok3 = track_through_homographies(scene["src"], scene["dst"], scene["xy"], shift[None] @ facing, 15, 3.0)
    err3 = np.linalg.norm(pos3[ok3] - scene["truth"][ok3], axis=1)
    assert ok3.mean() > 0.95 and np.median(err3) < 0.7 * np.median(err2)


def test_a_patch_further_than_the_bound_is_not_trusted(scene):
    far = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    _, ok = track_through_homographies(scene["src"], scene["dst"], scene["xy"], far[None] @ scene["Hs"], 15, 2.0)
    assert ok.mean() < 0.1


def _refine(scene, ratio: float):
    from seqace_ros.refinement.keyframe_tracking import Keyframe, KeyframeRefiner
    from seqace_ros.refinement.tracking_config import TrackingConfig
    from seqace_ros.geometry import pose_errors

    world = scene["cam"]  # the keyframe camera is the world frame
    kf = Keyframe(scene["src"], scene["T_src"], K, scene["xy"].astype(np.float32), world.astype(np.float32))
    refiner = KeyframeRefiner([kf], TrackingConfig(point_warp_ratio=ratio, time_budget_ms=0.0), threads=1)
    start = scene["T_dst"].copy()
    start[:3, 3] += [0.004, -0.003, 0.005]  # a regressed pose a few millimetres off
    out = refiner.refine(scene["dst"], K, start, seed=0)
    return out, pose_errors(out.pose_c2w, scene["T_dst"])[0]


def test_the_refiner_warps_keyframes_far_for_their_depth_and_lands_nearer_the_truth(scene):
    # The query is 2.6 m from the keyframe, 0.43 of the plane's depth: beyond the default 0.25.
    warped, err_warped = _refine(scene, 0.25)
    plain, err_plain = _refine(scene, 0.0)
    assert warped.accepted
    # (the planes face the keyframe; the true one is tilted 25 deg from that, so not all the way)
    assert err_warped < 0.8 * err_plain if plain.accepted else err_warped < 0.002
    # A ratio above this keyframe's distance leaves the plain result.
    same, err_same = _refine(scene, 0.6)
    assert err_same == pytest.approx(err_plain, abs=1e-9)


def test_many_patches_are_resampled_in_chunks_with_the_same_result(scene, monkeypatch):
    import seqace_ros.refinement.patch_warp as pw

    shift = np.array([[1.0, 0.0, 0.8], [0.0, 1.0, -0.7], [0.0, 0.0, 1.0]])
    whole = track_through_homographies(scene["src"], scene["dst"], scene["xy"], shift[None] @ scene["Hs"], 15, 3.0)
    monkeypatch.setattr(pw, "CHUNK", 37)  # several chunks, the last one partial
    parts = pw.track_through_homographies(scene["src"], scene["dst"], scene["xy"], shift[None] @ scene["Hs"], 15, 3.0)
    assert len(scene["xy"]) > 3 * 37
    assert np.array_equal(whole[1], parts[1])
    assert np.allclose(whole[0][whole[1]], parts[0][parts[1]], atol=1e-4)
