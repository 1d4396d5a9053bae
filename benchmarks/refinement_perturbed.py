#!/usr/bin/env python3
"""The keyframe refinement alone: how precisely it corrects a perturbed ground-truth pose.

    python benchmarks/refinement_perturbed.py [--scene ../shared/data/7scenes_redkitchen_sfm]
        [--noise-cm 0.5] [--noise-deg 0.15] [--every 5] [--build '{"stride": 3}']
        [--settings '{"window_px": 21}'] [--json OUT.json]

Builds the map's refinement keyframes from the mapping frames (KeyframeSettings, overridable with
--build), then for every ``--every``-th query perturbs its ground-truth pose by Gaussian noise of
the size a regressed pose has, refines it (TrackingConfig, overridable with --settings) and reports
recall at 5/2/1/0.5 cm, the median error, tracks, inliers and time. This isolates the refinement
from the regressor (no network runs); `benchmarks/redkitchen.py --refine on,off` measures the two
together. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

DEFAULT_SCENE = REPO.parent / "shared" / "data" / "7scenes_redkitchen_sfm"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", type=Path, default=DEFAULT_SCENE)
    ap.add_argument("--noise-cm", type=float, default=0.5, help="std of the position noise per axis")
    ap.add_argument("--noise-deg", type=float, default=0.15, help="std of the rotation noise per axis")
    ap.add_argument("--every", type=int, default=5, help="use every n-th query")
    ap.add_argument("--build", default="{}", help="JSON overrides of KeyframeSettings")
    ap.add_argument("--settings", default="{}", help="JSON overrides of TrackingConfig")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "refinement_perturbed.json")
    args = ap.parse_args()

    import cv2
    import numpy as np
    from scipy.spatial.transform import Rotation

    from seqace_ros.data.scene_folder import load_split
    from seqace_ros.encoder import to_gray
    from seqace_ros.evaluation import write_json
    from seqace_ros.geometry import pose_errors
    from seqace_ros.refinement.keyframe_tracking import (KeyframeRefiner, KeyframeSettings, TrackingConfig,
                                                         build_keyframes, keyframes_to_arrays)

    cv2.setNumThreads(args.threads)
    build = KeyframeSettings(**json.loads(args.build))
    keyframes, stats = build_keyframes(load_split(args.scene, "train"), build)
    map_mb = sum(a.nbytes for a in keyframes_to_arrays(keyframes, build.jpeg_quality).values()) / 1e6
    config = TrackingConfig(**json.loads(args.settings))
    refiner = KeyframeRefiner(keyframes, config, threads=args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for f in load_split(args.scene, "test")[:: args.every]:
        img = f.load_image()
        K = f.intrinsics(img.shape[1], img.shape[0])
        gt = np.asarray(f.pose_c2w, np.float64)
        start = gt.copy()
        start[:3, 3] += rng.normal(0.0, args.noise_cm / 100.0, 3)
        start[:3, :3] = Rotation.from_rotvec(rng.normal(0.0, np.radians(args.noise_deg), 3)).as_matrix() @ gt[:3, :3]
        r = refiner.refine(to_gray(img), K, start)
        out = r.pose_c2w if r.accepted else start
        t_err, r_err = pose_errors(out, gt)
        rows.append({"name": f.name, "accepted": r.accepted, "tracks": r.num_tracks, "inliers": r.num_inliers,
                     "time_ms": r.time_ms, "start_cm": 100 * pose_errors(start, gt)[0],
                     "error_cm": 100 * t_err, "error_deg": r_err, "message": r.message})
    e = np.array([[r["error_cm"], r["error_deg"]] for r in rows])
    recall = {f"{t}cm": float(100 * np.mean((e[:, 0] < t) & (e[:, 1] < max(t, 0.5)))) for t in (5, 2, 1, 0.5)}
    report = {"scene": str(args.scene), "keyframes": stats, "map_mb": map_mb, "config": asdict(config),
              "noise": {"cm": args.noise_cm, "deg": args.noise_deg}, "queries": len(rows),
              "accepted": sum(r["accepted"] for r in rows), "recall": recall,
              "median_start_cm": float(np.median([r["start_cm"] for r in rows])),
              "median_error_cm": float(np.median(e[:, 0])), "median_error_deg": float(np.median(e[:, 1])),
              "median_inliers": float(np.median([r["inliers"] for r in rows])),
              "median_time_ms": float(np.median([r["time_ms"] for r in rows])), "per_query": rows}
    print(f"\nkeyframes: {stats['keyframes']} with {stats['points']} points, {map_mb:.1f} MB, "
          f"built in {stats['seconds']:.0f} s")
    print(f"{report['queries']} queries, perturbed by {args.noise_cm} cm / {args.noise_deg} deg per axis "
          f"(median start error {report['median_start_cm']:.2f} cm)")
    print("accepted  " + "  ".join(f"{k:>6s}" for k in recall) + "  median cm  median deg  inliers  ms")
    print(f"{report['accepted']:8d}  " + "  ".join(f"{v:6.1f}" for v in recall.values())
          + f"  {report['median_error_cm']:9.2f}  {report['median_error_deg']:10.3f}"
          f"  {report['median_inliers']:7.0f}  {report['median_time_ms']:.1f}")
    write_json(report, args.json)
    print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
