"""Write a synthetic scene (or a DSAC*/ACE scene folder) as ROS 2 bags, to try build_map and the node
without a robot.

    python -m seqace_ros.data.ros_bag.synthetic_bag room_bag                 # room_bag + room_bag_query
    python -m seqace_ros.data.ros_bag.synthetic_bag kitchen_bag --scene ../shared/data/7scenes_redkitchen

The mapping frames go to OUT and the query frames to OUT_query: images, CameraInfo and the TF tree
map -> odom -> base_link -> camera_optical_frame (see writer.py). Then:

    ros2 run seqace_ros build_map room_bag           # or: seqace map room_bag --out maps/room.safetensors
    ros2 bag play room_bag_query                     # while relocalization_node runs
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from ..scene_folder import load_split
from .writer import write_scene_bag


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="bag folder to write (must not exist); the query split goes to OUT_query")
    ap.add_argument("--scene", help="DSAC*/ACE scene folder to convert instead of rendering one")
    ap.add_argument("--kind", default="room", help="synthetic scene kind (room, repetitive)")
    ap.add_argument("--frames", type=int, default=300, help="mapping frames to render")
    ap.add_argument("--query-frames", type=int, default=100, help="query frames to render (0: none)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="rendering threads")
    ap.add_argument("--rate", type=float, default=10.0, help="frame rate of the bag's stamps (Hz)")
    ap.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"])
    ap.add_argument("--compressed", action="store_true",
                    help="write sensor_msgs/CompressedImage (a folder's JPEG/PNG bytes as they are)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    query_out = out.with_name(out.name + "_query")
    for path in (out, query_out):
        if path.exists():
            ap.error(f"{path} already exists: remove it or choose another name")
    with tempfile.TemporaryDirectory(prefix="seqace_scene_") as tmp:
        scene = Path(args.scene) if args.scene else Path(tmp) / "scene"
        if not args.scene:
            from ..synthetic import generate_scene

            generate_scene(scene, kind=args.kind, mapping_frames=args.frames,
                           query_frames=max(args.query_frames, 1), width=args.width, height=args.height,
                           seed=args.seed, workers=args.workers)
        mapping = load_split(scene, "train")
        write_scene_bag(mapping, out, storage=args.storage, compressed=args.compressed, rate_hz=args.rate)
        print(f"{out}: {len(mapping)} mapping frames")
        if args.query_frames > 0 and (scene / "test").is_dir():
            query = load_split(scene, "test")[: args.query_frames]
            # Query stamps start after the mapping ones, as a later recording would.
            write_scene_bag(query, query_out, storage=args.storage, compressed=args.compressed, rate_hz=args.rate,
                            start_time_s=1_700_000_000.0 + len(mapping) / args.rate + 60.0)
            print(f"{query_out}: {len(query)} query frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
