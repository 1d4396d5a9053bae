"""SeqACE's cross-frame mapping loss: keyframe targets in the buffer, the combined loss, the
single-frame recipe left untouched when it is off, and a sequence-trained map that localizes."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
import torch

from seqace_ros.cli import build_parser, mapping_config_from_args
from seqace_ros.data.scene_folder import load_split
from seqace_ros.encoder import XFeatEncoder
from seqace_ros.mapping import MappingConfig, matching, train_map, trainer
from seqace_ros.mapping.buffer import TrainingBuffer, build_buffer
from seqace_ros.mapping.cross_frame import (FrameLink, ViewCells, attach_keyframe_targets,
                                            frame_links, match_per_cell)
from seqace_ros.mapping.loss import sequence_loss
from seqace_ros.mapping.matching import FrameMatches, MatchingConfig, match_sequence

torch.set_num_threads(1)
NOMINAL_HEIGHT = 192  # != the rendered 240: targets and K are rescaled (0.8)
TINY = dict(image_height=NOMINAL_HEIGHT, head_width=64, head_blocks=1, buffer_size=6000,
            samples_per_view=300, iterations=40, batch_size=512, num_threads=1)


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    """40 mapping frames (320x240) with depth, and 20 query frames."""
    synthetic = pytest.importorskip("seqace_ros.data.synthetic")
    root = tmp_path_factory.mktemp("scenes") / "room"
    return synthetic.generate_scene(root, kind="room", mapping_frames=40, query_frames=20,
                                    width=320, height=240, seed=1, write_depth=True, progress=False)


@pytest.fixture(scope="module")
def room_matches(room):
    return match_sequence(load_split(room, "train"), MatchingConfig(use_cache=False), progress=False)


def _depth(root, frame) -> np.ndarray:
    stem = frame.name.removesuffix(".color")
    mm = cv2.imread(str(root / "train" / "depth" / f"{stem}.depth.png"), cv2.IMREAD_UNCHANGED)
    return mm.astype(np.float32) / 1000.0


# --- placing matches in cells ------------------------------------------------------------------

def test_matches_are_placed_in_cells_with_the_pixel_centre_offset():
    # Identity view, 8 px cells. OpenCV pixel 7.6 is continuous 8.1: the second cell, not the first.
    cells = ViewCells(np.array([[1.0, 0, 0], [0, 1.0, 0]]), (1.0, 1.0), (2, 3))
    xy = np.array([[7.6, 3.0], [12.0, 11.0], [11.6, 11.6], [40.0, 3.0], [-0.6, 2.0]])
    lut = match_per_cell(xy, cells)
    # match 0 -> cell (0, 1); matches 1 and 2 share cell (1, 1): 2 (12.1, 12.1) is nearer its
    # centre (12, 12) than 1 (12.5, 11.5); 3 and 4 fall outside the grid.
    assert lut.tolist() == [-1, 0, -1, -1, 2, -1]


def test_matches_follow_the_augmentation_warp_and_the_encoder_scale():
    # The view is the original at half size (view -> original: x2); the encoder sees the view at
    # 2x, so a cell spans 4 view pixels = 8 original pixels again.
    cells = ViewCells(np.array([[2.0, 0, 0], [0, 2.0, 0]]), (2.0, 2.0), (4, 4))
    lut = match_per_cell(np.array([[20.0, 4.0]]), cells)  # continuous (20.5, 4.5) -> cell (0, 2)
    assert np.flatnonzero(lut >= 0).tolist() == [2]
    # With a 16 px original cell (no encoder upscaling) the same point is in cell (0, 1).
    lut = match_per_cell(np.array([[20.0, 4.0]]), ViewCells(cells.to_original, (1.0, 1.0), (4, 4)))
    assert np.flatnonzero(lut >= 0).tolist() == [1]


def test_attached_targets_are_the_exact_match_positions_in_nominal_pixels():
    link = FrameLink(keyframe=3, xy_frame=np.array([[13.25, 4.75]]), xy_keyframe=np.array([[20.5, 9.0]]))
    cells = ViewCells(np.array([[1.0, 0, 0], [0, 1.0, 0]]), (1.0, 1.0), (2, 3))
    targets = np.array([[3.5, 3.5], [11.5, 3.5]]) * 0.5  # cell centres of cells 0 and 1
    kf_t, kf_i = attach_keyframe_targets(link, np.array([0, 1]), cells, 0.5, 0.25, targets)
    assert kf_i.tolist() == [-1, 3]
    assert np.allclose(targets, [[1.75, 1.75], [6.625, 2.375]])  # cell 1: the keypoint, not the centre
    assert np.allclose(kf_t[1], [5.125, 2.25])  # keyframe's own nominal scale
    assert np.allclose(kf_t[0], 0.0)


def test_transfer_mode_keeps_the_frame_target_and_shifts_the_keyframe_match_by_its_offset():
    link = FrameLink(keyframe=3, xy_frame=np.array([[13.25, 4.75]]), xy_keyframe=np.array([[20.5, 9.0]]))
    cells = ViewCells(np.array([[1.0, 0, 0], [0, 1.0, 0]]), (1.0, 1.0), (2, 3))
    centres = np.array([[3.5, 3.5], [11.5, 3.5]]) * 0.5
    targets = centres.copy()
    kf_t, kf_i = attach_keyframe_targets(link, np.array([0, 1]), cells, 0.5, 0.25, targets,
                                         mode="transfer")
    assert kf_i.tolist() == [-1, 3]
    assert np.array_equal(targets, centres)  # the relocalizer pairs cells with their centres
    # centre (11.5, 3.5) is (-1.75, -1.25) from the keypoint: the keyframe target moves the same way
    assert np.allclose(kf_t[1], np.array([20.5 - 1.75, 9.0 - 1.25]) * 0.25)
    with pytest.raises(ValueError, match="transfer"):
        attach_keyframe_targets(link, np.array([1]), cells, 0.5, 0.25, centres.copy(), mode="snap")


def test_frame_links_skip_frames_without_matches():
    e = np.zeros((0, 2), np.float32)
    xy = np.ones((5, 2), np.float32)
    ms = [FrameMatches(0, 0, e, e, True, e, "first"), FrameMatches(1, 0, xy, xy * 2, False, e),
          FrameMatches(2, 2, e, e, True, e, "failed"), FrameMatches(3, 2, xy, xy, True, e, "motion")]
    links = frame_links(ms)
    assert sorted(links) == [1, 3] and links[1].keyframe == 0 and links[3].keyframe == 2


# --- the buffer on a rendered scene ------------------------------------------------------------

@pytest.mark.parametrize("mode", ["keypoint", "transfer"])
def test_keyframe_targets_see_the_same_point_as_the_frame_targets(room, room_matches, mode):
    frames = load_split(room, "train")
    enc = XFeatEncoder(device="cpu", image_height=NOMINAL_HEIGHT, optimize=False)
    cfg = MappingConfig(image_height=NOMINAL_HEIGHT, buffer_size=40 * 300, samples_per_view=300,
                        sequence=True, sequence_targets=mode)
    buf = build_buffer(frames, enc, cfg, progress=False, frame_links=frame_links(room_matches))
    matched = torch.nonzero(buf.kf_index >= 0).ravel().numpy()
    assert buf.kf_targets.shape == (len(buf), 2) and len(matched) == buf.matched_samples
    assert len(matched) > 0.2 * len(buf)
    i = buf.image_index[matched].numpy()
    k = buf.kf_index[matched].numpy()
    t = buf.targets[matched].double().numpy()
    q = buf.kf_targets[matched].double().numpy()
    assert all(room_matches[f].keyframe_index == kf for f, kf in zip(i, k))
    s = NOMINAL_HEIGHT / 240
    # keypoint: both targets are the match's exact keypoints (sub-pixel, not cell centres);
    # transfer: the frame target stays the cell centre, the keyframe target moves with it.
    for f in np.unique(i) if mode == "keypoint" else []:
        pairs = np.c_[room_matches[f].xy_frame, room_matches[f].xy_keyframe].astype(np.float64)
        got = np.c_[t[i == f], q[i == f]] / s
        assert np.abs(got[:, None] - pairs[None]).max(axis=2).min(axis=1).max() < 1e-3
    # Geometry: lift each frame target with the rendered depth and reproject it into the keyframe
    # with the buffer's own nominal K and poses.
    depth = np.array([_depth(room, frames[f]) for f in range(len(frames))])
    u, v = t[:, 0] / s, t[:, 1] / s  # rendered-image pixels (OpenCV: integer = pixel centre)
    d = np.array([cv2.getRectSubPix(depth[f], (1, 1), (float(x), float(y)))[0, 0]
                  for f, x, y in zip(i, u, v)])
    K, w2c = buf.K.double().numpy(), buf.w2c.double().numpy()
    X_cam = np.einsum("nij,nj->ni", np.linalg.inv(K[i]), np.c_[t, np.ones(len(t))]) * d[:, None]
    X_world = np.einsum("nij,nj->ni", np.linalg.inv(w2c[i]), np.c_[X_cam, np.ones(len(t))])
    X_kf = np.einsum("nij,nj->ni", w2c[k], X_world)[:, :3]
    proj = np.einsum("nij,nj->ni", K[k], X_kf / X_kf[:, 2:])[:, :2]
    errors = np.linalg.norm(proj - q, axis=1)
    # XFeat matches on the rendered room are good to about a pixel; depth edges make a few outliers.
    assert np.median(errors) < 1.5 and np.percentile(errors, 75) < 2.5, np.percentile(errors, [50, 75, 90])


# --- the loss ----------------------------------------------------------------------------------

def test_sequence_loss_adds_the_keyframe_term_with_its_weight():
    frame = torch.tensor([1.0, 2.0, 3.0, 4.0])
    kf = torch.tensor([10.0, 20.0, 30.0, 40.0])
    tracked = torch.tensor([True, False, True, False])
    assert float(sequence_loss(frame, kf, tracked, 0.5)) == pytest.approx(2.5 + 0.5 * 20.0)  # SeqACE
    assert float(sequence_loss(frame, kf, tracked, 0.5, "batch")) == pytest.approx(2.5 + 0.5 * 10.0)
    none = torch.zeros(4, dtype=torch.bool)
    kf_nan = torch.full((4,), float("nan"))
    assert float(sequence_loss(frame, kf_nan, none, 0.5)) == 2.5  # no tracked samples: no NaN


def _two_camera_buffer() -> TrainingBuffer:
    """Two cameras 0.5 m apart looking along +z at points 2 m away; sample 0 is matched."""
    K = torch.tensor([[100.0, 0, 64], [0, 100, 48], [0, 0, 1]]).repeat(2, 1, 1)
    w2c = torch.eye(4).repeat(2, 1, 1)
    w2c[1, 0, 3] = -0.5  # camera 1 centre at x = +0.5
    return TrainingBuffer(features=torch.zeros(2, 4, dtype=torch.float16),
                          targets=torch.tensor([[64.0, 48.0], [89.0, 48.0]]),
                          image_index=torch.tensor([0, 0]), saliency=torch.zeros(2), w2c=w2c, K=K,
                          views=1, skipped=[], seconds=0.0,
                          kf_targets=torch.tensor([[39.0, 48.0], [0.0, 0.0]]),
                          kf_index=torch.tensor([1, -1]))


def test_keyframe_term_reprojects_with_the_keyframes_pose_and_intrinsics():
    buf = _two_camera_buffer()
    points = torch.tensor([[0.0, 0.0, 2.0], [0.5, 0.0, 2.0]])
    cfg = MappingConfig()
    idx, img = torch.arange(2), buf.image_index
    kf_loss, tracked = trainer._keyframe_term(points, buf, idx, img, 1000.0, cfg)
    assert tracked.tolist() == [True, False]
    assert float(kf_loss[0]) == pytest.approx(0.0, abs=1e-4)  # x = 100 * (0 - 0.5) / 2 + 64 = 39
    buf.kf_targets[0] += torch.tensor([3.0, 4.0])
    kf_loss, tracked = trainer._keyframe_term(points, buf, idx, img, 1000.0, cfg)
    total = sequence_loss(torch.zeros(2), kf_loss, tracked, 0.5)
    assert float(total) == pytest.approx(0.5 * 7.0, rel=1e-3)  # L1 error 7 px, one tracked sample


# --- sequence off: the single-frame recipe -----------------------------------------------------

def _weights_digest(scene_map) -> str:
    h = hashlib.sha256()
    for k, v in sorted(scene_map.head.state_dict().items()):
        h.update(k.encode())
        h.update(v.cpu().numpy().tobytes())
    return h.hexdigest()


def test_sequence_off_never_matches_and_buffer_has_no_second_targets(room, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the matcher ran with sequence=False")

    monkeypatch.setattr(matching, "match_sequence", refuse)
    buffers = []
    real = trainer.build_buffer

    def spy(*a, **k):
        buffers.append(real(*a, **k))
        return buffers[-1]

    monkeypatch.setattr(trainer, "build_buffer", spy)
    frames = load_split(room, "train")[:6]
    m = train_map(frames, MappingConfig(**TINY), progress=False)
    assert buffers[0].kf_targets is None and buffers[0].kf_index is None
    assert buffers[0].matched_samples == 0
    assert m.metadata["training"]["sequence"] == {"enabled": False}
    assert m.metadata["training"]["seconds"]["matching"] == 0.0


def test_sequence_without_matches_trains_exactly_the_single_frame_map(room):
    # The cross-frame machinery draws no random numbers and adds exactly zero without matches: the
    # map is bit-for-bit the single-frame one trained the same way (the sequence loss runs the
    # whole batch at once, so the single-frame map here does too: micro_batches=1).
    frames = load_split(room, "train")[:6]
    e = np.zeros((0, 2), np.float32)
    no_matches = [FrameMatches(i, i, e, e, True, e, "failed") for i in range(len(frames))]
    plain = train_map(frames, MappingConfig(**TINY, precision="fp32", micro_batches=1), progress=False)
    seq = train_map(frames, MappingConfig(**TINY, precision="fp32", sequence=True),
                    matches=no_matches, progress=False)
    assert _weights_digest(plain) == _weights_digest(seq)
    assert plain.metadata["training"]["loss_history"] == seq.metadata["training"]["loss_history"]
    assert seq.metadata["training"]["sequence"]["matched_samples"] == 0


# --- sequence on: the whole path ---------------------------------------------------------------

def test_sequence_map_records_matching_and_localizes_its_queries(room, tmp_path, monkeypatch):
    from seqace_ros.evaluation import localize_frames, summarize
    from seqace_ros.relocalization import RelocConfig, Relocalizer

    monkeypatch.setenv("SEQACE_CACHE_DIR", str(tmp_path / "cache"))
    cfg = MappingConfig(image_height=240, head_width=128, head_blocks=1, buffer_size=40_000,
                        samples_per_view=800, iterations=600, batch_size=1024, num_threads=1,
                        sequence=True)
    m = train_map(load_split(room, "train"), cfg, progress=False)
    seq = m.metadata["training"]["sequence"]
    assert seq["enabled"] and seq["weight"] == 0.5 and seq["mean"] == "tracked"
    assert seq["matched_samples"] > 0.2 * m.metadata["training"]["buffer_samples"]
    assert seq["matching"]["frames_with_matches"] > 30 and seq["matching_seconds"] > 0
    first, last = seq["keyframe_loss_history"][0], seq["keyframe_loss_history"][-1]
    assert last[0] == cfg.iterations - 1 and 0.2 < last[2] < 1.0 and last[1] < 0.5 * first[1]
    # Cached in the user's cache folder, never in the dataset.
    assert list((tmp_path / "cache").rglob("matches-*.npz"))
    assert not (room / "train" / "matching").exists()
    reloc = Relocalizer(m, RelocConfig(num_cells=500, min_inliers=30), device="cpu")
    report = summarize(localize_frames(reloc.localize, load_split(room, "test"), progress=False))
    assert report["recall"]["10cm_5deg"] >= 80.0, report


# --- command line ------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, expected", [([], False), (["--sequence"], True),
                                            (["--no-sequence"], False)])
def test_cli_sequence_flag(argv, expected):
    for cmd in (["map", "scene", "--out", "m.safetensors"], ["demo"]):
        args = build_parser().parse_args(cmd + argv)
        assert mapping_config_from_args(args).sequence is expected
