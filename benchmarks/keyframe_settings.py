#!/usr/bin/env python3
"""A map's refinement keyframes rebuilt with other keyframe settings, to compare with
``refinement_variants.py`` (which varies the query-time settings on the same keyframes).

    python benchmarks/keyframe_settings.py MAP SCENE --out OUT.safetensors
        [--set '{"on_reference_rays": false, "neighbours": 16}'] [--stride 2] [--threads 2]

``--set``: JSON overrides of ``KeyframeSettings`` fields (refinement/keyframe_tracking.py);
``--stride``: every N-th mapping frame a keyframe (default: MappingConfig.keyframe_stride, as
``seqace keyframes``). The network is kept; only the keyframes change. Prints the build's
statistics (keyframes, points, bytes, seconds) and writes them to OUT's metadata.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("map", type=Path)
    ap.add_argument("scene", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--set", default="{}", help="JSON overrides of KeyframeSettings fields")
    ap.add_argument("--stride", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    from seqace_ros.threads import prefer_passive_waiting

    prefer_passive_waiting()  # before torch loads, as the seqace command does
    import dataclasses

    from seqace_ros.data.scene_folder import load_split
    from seqace_ros.mapfile import load_map
    from seqace_ros.mapping.config import MappingConfig
    from seqace_ros.mapping.trainer import add_keyframes
    from seqace_ros.refinement.keyframe_tracking import KeyframeSettings
    from seqace_ros.threads import use_threads

    use_threads(args.threads)
    overrides = json.loads(args.set)
    unknown = set(overrides) - {f.name for f in dataclasses.fields(KeyframeSettings)}
    if unknown:
        raise SystemExit(f"--set: no KeyframeSettings field {sorted(unknown)}")
    settings = KeyframeSettings(stride=args.stride or MappingConfig.keyframe_stride, **overrides)
    scene_map = load_map(args.map)
    add_keyframes(scene_map, load_split(args.scene, "train"), progress=False, settings=settings)
    stats = {k: v for k, v in scene_map.metadata.get("keyframes", {}).items() if k != "settings"}
    print(json.dumps({"out": str(args.out), "overrides": overrides, "stride": settings.stride, **stats}))
    scene_map.save(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
