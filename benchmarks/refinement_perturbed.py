#!/usr/bin/env python3
"""The refinement stage alone (issue 11, in progress): how precisely it corrects a perturbed pose.

    python benchmarks/refinement_perturbed.py [--scene ../shared/data/7scenes_redkitchen_sfm]
        [--max-keypoints 2048] [--subpixel 2] [--noise-cm 1.0] [--noise-deg 0.3] [--every 5]
        [--settings '{"radius_px": 16}'] [--json OUT.json]

Builds the refinement map (XFeat keypoints of the mapping frames, matched and triangulated with
their known poses), then for every ``--every``-th query perturbs its ground-truth pose by Gaussian
noise of the size the regressed pose has, refines it, and reports recall at 5/2/1/0.5 cm, the
median error, guided matches, inliers and time. This isolates the refinement from the regressor;
it is not yet part of `seqace evaluate`. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

DEFAULT_SCENE = REPO.parent / "shared" / "data" / "7scenes_redkitchen_sfm"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", type=Path, default=DEFAULT_SCENE)
    ap.add_argument("--max-keypoints", type=int, default=2048)
    ap.add_argument("--subpixel", type=int, default=2, help="corner refinement half-window (0: off)")
    ap.add_argument("--noise-cm", type=float, default=1.0, help="std of the position noise per axis")
    ap.add_argument("--noise-deg", type=float, default=0.3, help="std of the rotation noise per axis")
    ap.add_argument("--detector", default="xfeat", choices=["xfeat", "corners"])
    ap.add_argument("--every", type=int, default=5, help="use every n-th query")
    ap.add_argument("--settings", default="{}", help="JSON overrides of RefineConfig")
    ap.add_argument("--structure", default="{}",
                    help="JSON overrides of StructureSettings (\"triangulation\": a dict of its fields)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "refinement_perturbed.json")
    args = ap.parse_args()

    import cv2
    import numpy as np
    import torch
    from scipy.spatial.transform import Rotation

    from seqace_ros.data.scene_folder import load_split
    from seqace_ros.encoder import XFeatEncoder
    from seqace_ros.evaluation import write_json
    from seqace_ros.refinement.point_map import StructureSettings, build_point_map
    from seqace_ros.refinement.triangulation import TriangulationSettings
    from seqace_ros.refinement.refiner import PoseRefiner, RefineConfig

    torch.set_num_threads(args.threads)
    encoder = XFeatEncoder(device="cpu", image_height=480, threads=args.threads)
    t0 = time.perf_counter()
    over = json.loads(args.structure)
    if "triangulation" in over:
        over["triangulation"] = TriangulationSettings(**{**asdict(StructureSettings().triangulation),
                                                         **over["triangulation"]})
    point_map = build_point_map(load_split(args.scene, "train"), encoder, args.max_keypoints,
                                StructureSettings(**over), subpixel_window=args.subpixel,
                                detector=args.detector)
    build_s = time.perf_counter() - t0
    config = RefineConfig(max_keypoints=args.max_keypoints, subpixel_window=args.subpixel, detector=args.detector,
                          **json.loads(args.settings))
    refiner = PoseRefiner(point_map, config, threads=args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for f in load_split(args.scene, "test")[:: args.every]:
        img = f.load_image()
        K = f.intrinsics(img.shape[1], img.shape[0])
        gt = np.asarray(f.pose_c2w, np.float64)
        start = gt.copy()
        start[:3, 3] += rng.normal(0.0, args.noise_cm / 100.0, 3)
        start[:3, :3] = Rotation.from_rotvec(rng.normal(0.0, np.radians(args.noise_deg), 3)).as_matrix() @ gt[:3, :3]
        r = refiner.refine(encoder.encode(img), K, start, (img.shape[1], img.shape[0]),
                           gray=cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
        out = r.pose_c2w if r.accepted else start
        rows.append({"name": f.name, "accepted": r.accepted, "matches": r.num_matches,
                     "inliers": r.num_inliers, "time_ms": r.time_ms,
                     "start_cm": 100 * float(np.linalg.norm(start[:3, 3] - gt[:3, 3])),
                     "error_cm": 100 * float(np.linalg.norm(out[:3, 3] - gt[:3, 3])),
                     "error_deg": float(np.degrees(np.arccos(np.clip((np.trace(out[:3, :3].T @ gt[:3, :3]) - 1) / 2, -1, 1))))})
    e = np.array([[r["error_cm"], r["error_deg"]] for r in rows])
    s = np.array([r["start_cm"] for r in rows])
    recall = {f"{t}cm": float(100 * np.mean((e[:, 0] < t) & (e[:, 1] < max(t, 0.5)))) for t in (5, 2, 1, 0.5)}
    report = {"scene": str(args.scene), "map_points": len(point_map.points),
              "map_mb": (point_map.points.nbytes + point_map.descriptors.nbytes) / 1e6,
              "build_s": build_s, "build": point_map.info, "config": asdict(config),
              "noise": {"cm": args.noise_cm, "deg": args.noise_deg}, "queries": len(rows),
              "accepted": sum(r["accepted"] for r in rows), "recall": recall,
              "median_start_cm": float(np.median(s)), "median_error_cm": float(np.median(e[:, 0])),
              "median_error_deg": float(np.median(e[:, 1])),
              "median_inliers": float(np.median([r["inliers"] for r in rows])),
              "median_time_ms": float(np.median([r["time_ms"] for r in rows])), "per_query": rows}
    print(f"\nrefinement map: {report['map_points']} points, {report['map_mb']:.1f} MB, built in {build_s:.0f} s")
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
