#!/usr/bin/env python3
"""A map built from a ROS 2 bag against the map built from the same scene's folder layout.

Writes the scene's mapping split as a bag with rosbags (CompressedImage with the folder's JPEG
bytes as they are, CameraInfo, camera poses on /tf), builds a map from the bag (`build_map`'s
code path: TF chain map -> camera at the image stamps) and one from the folder with the same
mapping settings and seed, then localizes the same query images with both. Prints one table,
the largest difference between the two maps' head weights, and writes JSON.

    python benchmarks/bag_vs_folder.py                                   # redkitchen, cpu profile
    python benchmarks/bag_vs_folder.py --folder-map results/redkitchen_default.safetensors
    python benchmarks/bag_vs_folder.py --iterations 1000 --threads 1     # quicker, both maps

--folder-map reuses a folder-built map (its own settings are then used for the bag map).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_SCENE = REPO.parent / "shared" / "data" / "7scenes_redkitchen"
KEYS = ("10cm_5deg", "5cm_5deg", "2cm_2deg", "1cm_1deg")


def _evaluate(scene_map, scene: Path, threads: int, label: str) -> dict:
    from seqace_ros.data.scene_folder import load_split
    from seqace_ros.evaluation import localize_frames, summarize
    from seqace_ros.relocalization import RelocConfig, Relocalizer

    reloc = Relocalizer(scene_map, RelocConfig().with_threads(threads), device="cpu")
    results = localize_frames(reloc.localize, load_split(scene, "test"), desc=label)
    return summarize(results, method=label)


def max_weight_difference(a, b) -> float:
    sa, sb = a.head.state_dict(), b.head.state_dict()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", type=Path, default=DEFAULT_SCENE)
    ap.add_argument("--folder-map", type=Path, help="reuse this folder-built map")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--iterations", type=int, help="override the profile's training iterations")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "bag_vs_folder.json")
    args = ap.parse_args()
    if not (args.scene / "train").is_dir():
        print(f"no scene at {args.scene}: pass --scene", file=sys.stderr)
        return 2
    import torch

    from seqace_ros.bag_mapping import build_map_from_bag
    from seqace_ros.data.ros_bag.writer import write_scene_bag
    from seqace_ros.data.scene_folder import load_split
    from seqace_ros.evaluation import write_json
    from seqace_ros.mapfile import load_map
    from seqace_ros.mapping import MappingConfig, profile, train_map

    torch.set_num_threads(args.threads)
    mapping = load_split(args.scene, "train")
    if args.folder_map:
        folder_map = load_map(args.folder_map)
        config = MappingConfig.from_dict(folder_map.metadata["training"]["config"])
        folder_s = folder_map.metadata["training"]["seconds"]["total"]
    else:
        over = {"iterations": args.iterations} if args.iterations else {}
        config = profile(args.profile, **over)
        t0 = time.perf_counter()
        folder_map = train_map(mapping, config)
        folder_s = time.perf_counter() - t0
    config.num_threads = args.threads
    with tempfile.TemporaryDirectory(prefix="seqace_bag_") as tmp:
        bag = Path(tmp) / "bag"
        t0 = time.perf_counter()
        write_scene_bag(mapping, bag, storage="mcap", compressed=True, rate_hz=10.0)
        write_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        bag_map = build_map_from_bag(bag, config)
        bag_s = time.perf_counter() - t0
    rows = [dict(_evaluate(folder_map, args.scene, args.threads, "map from folder"), mapping_s=folder_s),
            dict(_evaluate(bag_map, args.scene, args.threads, "map from bag (TF poses)"), mapping_s=bag_s,
                 bag_source=bag_map.metadata.get("source"))]
    diff = max_weight_difference(folder_map, bag_map)
    print()
    print(f"{'map':26s} " + " ".join(f"{k:>10s}" for k in KEYS) + f" {'med cm':>7s} {'med deg':>7s} {'map s':>6s}")
    for r in rows:
        print(f"{r['method']:26s} " + " ".join(f"{r['recall'][k]:9.1f}%" for k in KEYS)
              + f" {r['median_translation_cm']:7.2f} {r['median_rotation_deg']:7.2f} {r['mapping_s']:6.0f}")
    print(f"largest difference between the two heads' weights: {diff:.3g}; bag written in {write_s:.1f} s")
    write_json({"scene": str(args.scene), "threads": args.threads, "cpu_count": os.cpu_count(),
                "mapping_config": config.to_dict(), "max_weight_difference": diff,
                "bag_write_s": write_s, "results": rows}, args.json)
    print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
