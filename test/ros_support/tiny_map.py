"""A tiny synthetic scene and a map trained on it, small enough for CI on 2 cores.

Used by the ROS node tests (once per session) and by benchmarks/ros_node_latency.py. Cached
under ``cache_dir`` keyed by the settings, so a second run in the same folder reuses it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class TinySettings:
    kind: str = "room"
    mapping_frames: int = 60
    query_frames: int = 20
    width: int = 256
    height: int = 192
    seed: int = 0
    image_height: int = 192  # encoder input height (a multiple of 32)
    head_width: int = 128
    head_blocks: int = 1
    buffer_size: int = 40_000
    samples_per_view: int = 700
    iterations: int = 400
    batch_size: int = 1024
    threads: int = 2

    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class TinyScene:
    scene_dir: Path
    map_path: Path
    train_seconds: float
    settings: TinySettings


def core_missing() -> str | None:
    """Why the tiny map cannot be built here (a core module is absent), or None."""
    for module in ("seqace_ros.data.synthetic", "seqace_ros.mapping", "seqace_ros.relocalization",
                   "seqace_ros.ransac"):
        try:
            __import__(module)
        except ImportError as exc:
            return f"{module} is not available ({exc})"
    from seqace_ros.data import synthetic

    if not hasattr(synthetic, "generate_scene"):
        return "seqace_ros.data.synthetic.generate_scene is not available"
    return None


def build_tiny_scene(cache_dir: Path, settings: TinySettings = TinySettings()) -> TinyScene:
    from seqace_ros.data.scene_folder import load_split
    from seqace_ros.data.synthetic import generate_scene
    from seqace_ros.mapfile import load_map
    from seqace_ros.mapping import MappingConfig, train_map

    root = Path(cache_dir) / f"tiny_{settings.key()}"
    scene_dir, map_path, meta = root / "scene", root / "tiny.safetensors", root / "meta.json"
    if map_path.is_file() and meta.is_file():
        try:
            load_map(map_path)
            return TinyScene(scene_dir, map_path, json.loads(meta.read_text())["train_seconds"], settings)
        except Exception:
            pass  # stale cache (another map format): rebuild
    root.mkdir(parents=True, exist_ok=True)
    if not (scene_dir / "test").is_dir():
        generate_scene(scene_dir, kind=settings.kind, mapping_frames=settings.mapping_frames,
                       query_frames=settings.query_frames, width=settings.width, height=settings.height,
                       seed=settings.seed, workers=1)
    config = MappingConfig(image_height=settings.image_height, head_width=settings.head_width,
                           head_blocks=settings.head_blocks, buffer_size=settings.buffer_size,
                           samples_per_view=settings.samples_per_view, iterations=settings.iterations,
                           batch_size=settings.batch_size, num_threads=settings.threads, device="cpu")
    t0 = time.perf_counter()
    scene_map = train_map(load_split(scene_dir, "train"), config, progress=False)
    seconds = time.perf_counter() - t0
    scene_map.save(map_path)
    meta.write_text(json.dumps({"train_seconds": seconds, "settings": asdict(settings)}))
    return TinyScene(scene_dir, map_path, seconds, settings)
