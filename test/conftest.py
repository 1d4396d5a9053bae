"""Shared fixtures: paths to the real data and small generated images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
REDKITCHEN = Path(os.environ.get("SEQACE_REDKITCHEN", REPO.parent / "shared" / "data" / "7scenes_redkitchen"))


# A small map of a small generated room, for CI: 320x240, a narrow head, a short schedule (the
# full-size figures come from benchmarks/ and `seqace demo`).
SMALL_MAPPING = dict(image_height=240, head_width=128, head_blocks=1, buffer_size=160_000,
                     samples_per_view=800, iterations=900, batch_size=1024)


def small_room(tmp_path_factory, seed: int, query_frames: int) -> Path:
    """A generated room at 320x240: 150 mapping frames and ``query_frames`` queries."""
    synthetic = pytest.importorskip("seqace_ros.data.synthetic")
    root = tmp_path_factory.mktemp("scenes") / "room"
    return synthetic.generate_scene(root, kind="room", mapping_frames=150, query_frames=query_frames,
                                    width=320, height=240, seed=seed, progress=False)


def small_room_map(room: Path, tmp_path_factory) -> Path:
    """The room's map with SMALL_MAPPING, saved."""
    from seqace_ros.data.scene_folder import load_split
    from seqace_ros.mapping import MappingConfig, train_map

    m = train_map(load_split(room, "train"), MappingConfig(**SMALL_MAPPING), progress=False)
    return m.save(tmp_path_factory.mktemp("maps") / "room.safetensors")


@pytest.fixture(scope="session")
def redkitchen() -> Path:
    if not (REDKITCHEN / "train").is_dir():
        pytest.skip(f"real data not found at {REDKITCHEN}")
    return REDKITCHEN


@pytest.fixture(scope="session")
def texture():
    """Factory for random textured test images: texture(h, w, seed)."""
    return textured_image


def textured_image(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """A random multi-scale texture (uint8 BGR) that gives the encoder something to see."""
    import cv2
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w), np.float32)
    for s in (4, 8, 16, 32):
        noise = rng.random((h // s + 2, w // s + 2)).astype(np.float32)
        img += cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC) / s
    img = (255 * (img - img.min()) / (np.ptp(img) + 1e-6)).astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


@pytest.fixture(scope="session")
def workflow_report(request):
    """report(line): a line for the "ROS 2 workflow" section at the end of the run (the CI log)."""
    lines = getattr(request.config, "_seqace_workflow_report", None)
    if lines is None:
        lines = request.config._seqace_workflow_report = []
    return lines.append


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = getattr(config, "_seqace_workflow_report", None)
    if lines:
        terminalreporter.section("ROS 2 workflow: colcon, ros2 launch, tf2_ros, lifecycle")
        for line in lines:
            terminalreporter.write_line(line)
