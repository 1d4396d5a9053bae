"""The mapping trainer: buffer contents, and the multi-process (torchrun / DDP, gloo) path."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import textured_image
from seqace_ros.data.scene_folder import load_split
from seqace_ros.encoder import XFeatEncoder
from seqace_ros.geometry import rotvec_to_matrix
from seqace_ros.mapping import MappingConfig
from seqace_ros.mapping.augmentation import augment, map_points
from seqace_ros.mapping.buffer import build_buffer

REPO = Path(__file__).resolve().parents[1]


def _scene(root: Path, n: int = 6, h: int = 96, w: int = 128) -> Path:
    for sub in ("rgb", "poses", "calibration"):
        (root / "train" / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(root / f"train/rgb/{i:04d}.png"), textured_image(h, w, i))
        T = np.eye(4)
        T[:3, :3] = rotvec_to_matrix([0, 0.05 * i, 0])
        T[:3, 3] = [0.1 * i, 0, 0]
        np.savetxt(root / f"train/poses/{i:04d}.txt", T)
        (root / f"train/calibration/{i:04d}.txt").write_text("100")
    return root


def test_augmentation_maps_positions_back_to_the_original_image():
    img = textured_image(96, 128, 0)[:, :, 0]
    rng = np.random.default_rng(1)
    for _ in range(5):
        v = augment(img, 96, rng, (0.7, 1.4), 15.0)
        assert v.image.shape[0] % 32 == 0 and v.image.shape[1] % 32 == 0
        # A bright dot in the original lands where the inverse map says.
        dot = np.zeros_like(img)
        dot[40:43, 60:63] = 255
        w = augment(dot, 96, None)  # plain rescale: identity here
        assert np.array_equal(w.image, dot)
        A = np.vstack([v.to_original, [0, 0, 1]])
        fwd = np.linalg.inv(A)[:2]
        p = map_points(fwd, np.array([[61.5, 41.5]]))
        back = map_points(v.to_original, p)
        assert np.allclose(back, [[61.5, 41.5]])


def test_buffer_targets_reproject_consistently(tmp_path):
    frames = load_split(_scene(tmp_path), "train")
    enc = XFeatEncoder(device="cpu", image_height=96, optimize=False)
    cfg = MappingConfig(buffer_size=2000, samples_per_view=200, image_height=96)
    buf = build_buffer(frames, enc, cfg, progress=False)
    # Each of the 10 views gives at most 200 samples; small (down-scaled) views have fewer cells.
    assert buf.views == 10 and 1000 <= len(buf) <= 2000 and buf.features.shape[1] == 64
    # Every target lies inside its (nominal) image; image indices cover all frames.
    assert float(buf.targets.min()) >= -0.5 and float(buf.targets[:, 0].max()) < 128
    assert set(buf.image_index.tolist()) == set(range(len(frames)))
    assert torch.allclose(buf.K[0], torch.tensor([[100.0, 0, 64], [0, 100, 48], [0, 0, 1]]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_training_two_processes_gloo(tmp_path):
    scene = _scene(tmp_path / "scene")
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", str(REPO / "test" / "ddp_worker.py"), str(scene), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = load_file(str(out / "rank0.safetensors")), load_file(str(out / "rank1.safetensors"))
    # DDP keeps the replicas identical although each rank trained on its own share of images.
    assert a.keys() == b.keys()
    for k in a:
        if k.startswith("head."):
            assert torch.equal(a[k], b[k]), k
    first, last, world = (out / "rank0.loss").read_text().split()
    assert world == "2" and float(last) < float(first)


def test_each_torchrun_process_gets_its_own_gpu_or_a_clear_error():
    from seqace_ros.mapping.trainer import rank_device
    assert rank_device(torch.device("cuda"), 1, 2, 2) == torch.device("cuda", 1)
    assert rank_device(torch.device("cpu"), 3, 4, 0) == torch.device("cpu")
    # Rank 0 fails too (it has a GPU, but would wait for rank 1 in the process group forever).
    for local_rank in (0, 1):
        with pytest.raises(RuntimeError, match=r"2 processes.*1 GPU.*--nproc_per_node=1.*device=cpu"):
            rank_device(torch.device("cuda"), local_rank, 2, 1)


def test_micro_batch_gradients_equal_the_whole_batch_and_do_not_depend_on_the_workers():
    """The batch in parts on worker threads gives the gradient of the whole batch's mean loss
    (fp32, to rounding), and the same bits however many workers take the parts."""
    from seqace_ros.head import SceneHead
    from seqace_ros.mapping.loss import reprojection_loss
    from seqace_ros.mapping.micro_batches import MicroBatchSteps

    torch.manual_seed(0)
    n = 512
    feats = torch.randn(n, 64)
    K = torch.tensor([[525.0, 0, 320], [0, 525, 240], [0, 0, 1]]).expand(n, 3, 3)
    w2c = torch.eye(4).expand(n, 4, 4).contiguous()
    targets = torch.rand(n, 2) * torch.tensor([640.0, 480.0])
    head = SceneHead(width=64, num_blocks=1, mean=torch.tensor([0.0, 0.0, 2.0]))
    idx = torch.randperm(n)[:300]

    def part_loss(part):
        return reprojection_loss(head(feats[part]), w2c[part], K[part], targets[part], 10.0)

    head.zero_grad(set_to_none=True)
    part_loss(idx)[0].mean().backward()
    whole = [p.grad.clone() for p in head.parameters()]
    results = []
    for workers in (1, 2, 3):
        micro = MicroBatchSteps(list(head.parameters()), workers=workers, parts=4)
        loss, valid = micro.gradients(part_loss, idx)
        micro.close()
        assert loss.shape == (300,) and valid.shape == (300,)
        assert torch.allclose(loss, part_loss(idx)[0].detach())
        results.append([p.grad.clone() for p in head.parameters()])
    for g_whole, g_parts in zip(whole, results[0]):
        assert torch.allclose(g_whole, g_parts, rtol=1e-4, atol=1e-6)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))
    with pytest.raises(ValueError, match="parts"):
        MicroBatchSteps(list(head.parameters()), workers=2, parts=0)
    with pytest.raises(ValueError, match="micro_batches 0"):
        MappingConfig(micro_batches=0).validate()


@pytest.mark.parametrize("threads, used", [(2, True), (8, False)])
def test_training_takes_the_parts_path_with_two_threads_and_openmp_with_many(tmp_path, monkeypatch, threads, used):
    from seqace_ros.mapping import train_map
    from seqace_ros.mapping import micro_batches

    calls = []
    real = micro_batches.MicroBatchSteps.gradients

    def counting(self, loss_of, idx):
        calls.append(len(idx))
        return real(self, loss_of, idx)

    monkeypatch.setattr(micro_batches.MicroBatchSteps, "gradients", counting)
    before = torch.get_num_threads()
    cfg = MappingConfig(buffer_size=2000, samples_per_view=200, image_height=96, head_width=32, head_blocks=1,
                        iterations=5, batch_size=256, num_threads=threads, keyframes=False, precision="fp32")
    try:
        train_map(load_split(_scene(tmp_path), "train"), cfg, progress=False)
        assert (len(calls) == 5) == used and (len(calls) == 0) == (not used), calls
        assert torch.get_num_threads() == threads  # restored after the parts path set 1
    finally:
        torch.set_num_threads(before)
