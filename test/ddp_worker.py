"""Run by test_trainer.py under torchrun: trains a tiny map on each rank and saves it per rank."""

import sys
from pathlib import Path

import torch

from seqace_ros.data.scene_folder import load_split
from seqace_ros.mapping import MappingConfig, train_map


def main(scene: str, out: str) -> None:
    import torch.distributed as dist
    cfg = MappingConfig(head_width=32, head_blocks=1, buffer_size=3000, samples_per_view=300,
                        iterations=150, batch_size=128, image_height=96, num_threads=1,
                        device="cpu")  # gloo, also on a machine with GPUs
    m = train_map(load_split(scene, "train"), cfg, progress=False)
    rank = dist.get_rank()
    assert dist.get_backend() == "gloo", dist.get_backend()  # CPU training, also where CUDA exists
    m.save(Path(out) / f"rank{rank}.safetensors")
    hist = m.metadata["training"]["loss_history"]
    Path(out, f"rank{rank}.loss").write_text(f"{hist[0][1]} {hist[-1][1]} {dist.get_world_size()}")
    dist.destroy_process_group()


if __name__ == "__main__":
    torch.manual_seed(0)
    main(sys.argv[1], sys.argv[2])
