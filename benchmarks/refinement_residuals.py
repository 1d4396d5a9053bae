#!/usr/bin/env python3
"""How well the refinement's tracks agree with the ground truth, by distance to the keyframe.

    python benchmarks/refinement_residuals.py --map MAP [--scene SCENE] [--every 5] [--keyframes 6]
        [--json OUT.json]

For every ``--every``-th query, the ``--keyframes`` nearest keyframes (as the refinement orders
them, here from the ground-truth pose) have their points tracked into the query exactly as the
refinement tracks them, but starting from where the *ground-truth* pose projects each point.
The distance between the tracked position and that projection is the error a refined pose
inherits from the tracks (LK on the warped keyframe patch, and the keyframe point's
triangulation) with no regression error at all. Reported per query-keyframe distance: the share
of tracks within 0.5 / 1 / 2 px and the median, and the median of the error's two parts: across
the epipolar line of the keyframe pixel (the tracking alone, whatever the point's depth) and
along it (where an error in the point's depth shows too). Also how far each keyframe point
projects from the very pixel that defines it in its own keyframe. Prints tables and writes JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
DEFAULT_SCENE = REPO.parent / "shared" / "data" / "7scenes_redkitchen_sfm"
BINS_M = (0.0, 0.05, 0.10, 0.15, 0.20, 0.30, 0.50)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--map", type=Path, required=True)
    ap.add_argument("--scene", type=Path, default=DEFAULT_SCENE)
    ap.add_argument("--every", type=int, default=5, help="every N-th query")
    ap.add_argument("--keyframes", type=int, default=6, help="nearest keyframes per query")
    ap.add_argument("--json", type=Path, default=REPO / "results" / "refinement_residuals.json")
    args = ap.parse_args()
    import dataclasses

    import numpy as np

    from seqace_ros.data.scene_folder import load_split
    from seqace_ros.encoder import to_gray
    from seqace_ros.evaluation import write_json
    from seqace_ros.mapfile import load_map
    from seqace_ros.refinement import keyframe_tracking as kt
    from seqace_ros.refinement.known_poses import fundamental_from_poses
    from seqace_ros.relocalization.pnp import project

    scene_map = load_map(args.map)
    if not scene_map.keyframes:
        raise SystemExit(f"{args.map} has no refinement keyframes: `seqace keyframes {args.map} {args.scene}`")
    config = dataclasses.replace(kt.TrackingConfig(), keyframes=args.keyframes)
    refiner = kt.KeyframeRefiner(kt.keyframes_from_arrays(scene_map.keyframes), config)
    own = np.concatenate([np.linalg.norm(project(k.points.astype(np.float64), k.K, k.pose_c2w)[0] - k.xy, axis=1)
                          for k in refiner.keyframes])
    rows = []
    for f in load_split(args.scene, "test")[::max(1, args.every)]:
        image = f.load_image()
        K = np.asarray(f.intrinsics(image.shape[1], image.shape[0]), np.float64)
        query = kt.normalize_for_tracking(to_gray(image))
        gt = np.asarray(f.pose_c2w, np.float64)
        h, w = query.shape
        for rank, k in enumerate(refiner.nearest(gt)):
            kf = refiner.keyframes[k]
            start, front = project(kf.points.astype(np.float64), K, gt)
            idx = np.flatnonzero(front & (start[:, 0] >= 0) & (start[:, 1] >= 0) & (start[:, 0] < w) & (start[:, 1] < h))
            pos, ok = kt.track_between_views(refiner.images[k], kf.K, kf.pose_c2w, query, K, gt, kf.xy[idx],
                                             start[idx], config.window_px, config.pyramid_levels,
                                             config.forward_backward_px, config.derotate)
            d = (pos[ok] - start[idx][ok]).astype(np.float64)
            err = np.linalg.norm(d, axis=1)
            if len(err) == 0:
                continue
            F = fundamental_from_poses(kf.K, kf.pose_c2w, K, gt)
            lines = np.hstack([kf.xy[idx][ok], np.ones((len(d), 1))]) @ F.T
            normal = lines[:, :2] / np.linalg.norm(lines[:, :2], axis=1, keepdims=True)
            across = np.abs((d * normal).sum(1))
            along = np.abs(d[:, 0] * normal[:, 1] - d[:, 1] * normal[:, 0])
            rows.append({"frame": f.name, "keyframe": int(k), "rank": rank,
                         "distance_m": float(np.linalg.norm(kf.pose_c2w[:3, 3] - gt[:3, 3])),
                         "tracks": int(len(err)), "within_0_5px": float(np.mean(err < 0.5)),
                         "within_1px": float(np.mean(err < 1.0)), "within_2px": float(np.mean(err < 2.0)),
                         "median_px": float(np.median(err)), "across_px": float(np.median(across)),
                         "along_px": float(np.median(along))})
    table = []
    for lo, hi in zip(BINS_M[:-1], BINS_M[1:]):
        sel = [r for r in rows if lo <= r["distance_m"] < hi]
        if sel:
            table.append({"from_m": lo, "to_m": hi, "pairs": len(sel),
                          **{k: float(np.mean([r[k] for r in sel])) for k in ("within_0_5px", "within_1px", "within_2px")},
                          **{k: float(np.median([r[k] for r in sel])) for k in ("median_px", "across_px", "along_px")}})
    print(f"\n{args.map} on {args.scene}: tracks started at the ground-truth projection")
    print(f"{'query-keyframe distance':>24s} {'pairs':>6s} {'<0.5 px':>8s} {'<1 px':>6s} {'<2 px':>6s} {'median':>7s}"
          f" {'across':>7s} {'along':>7s}")
    for t in table:
        print(f"{t['from_m']:10.2f} - {t['to_m']:.2f} m   {t['pairs']:6d} {100 * t['within_0_5px']:7.1f}% "
              f"{100 * t['within_1px']:5.1f}% {100 * t['within_2px']:5.1f}% {t['median_px']:5.2f} px"
              f" {t['across_px']:5.2f} px {t['along_px']:5.2f} px")
    print(f"keyframe points from their own pixel: median {np.median(own):.3f} px, 90th percentile "
          f"{np.percentile(own, 90):.3f} px ({len(own)} points)")
    write_json({"map": str(args.map), "scene": str(args.scene), "every": args.every, "keyframes": args.keyframes,
                "by_distance": table, "own_pixel_px": {"median": float(np.median(own)),
                "p90": float(np.percentile(own, 90))}, "pairs": rows}, args.json)
    print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
