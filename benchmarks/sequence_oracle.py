#!/usr/bin/env python3
"""How much a window of frames could add to the refined pose, given relative motion of a known quality.

    python benchmarks/sequence_oracle.py --map MAP [--scene ../shared/data/7scenes_redkitchen_sfm]
        [--windows 1,3,5,8] [--noise "0:0,0.5:0.025,1:0.05"] [--threads 2] [--json OUT.json]

Every query is localized and refined once (the relocalizer's defaults). Then each frame's pose is
solved again from the keyframe tracks that agree with the refined poses (within 2 px) of the frame
and of the W-1 frames before it, those carried into the current camera by the ground-truth relative
motion, perturbed by a random walk of ``mm:deg`` per frame (an oracle: no image-based motion is
this good; a robot's odometry may come close). One native multi-frame RANSAC + refinement
(``ransac.estimate_pose_multi``) over them, as sequence mode solves; a frame whose refinement was
not trusted keeps its own pose. W = 1 is that solve on the frame's own tracks alone. The queries
must be consecutive frames (7-Scenes test sequences are). Prints the recall at 2 and 1 cm per
window and noise, and writes JSON. It bounds what sequence mode can add on top of the refinement:
benchmarks/README.md, "Session 11".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(HERE), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)


def perturbation(rng, steps: int, mm: float, deg: float):
    """A rigid motion whose translation and rotation are random walks of ``steps`` steps."""
    import numpy as np

    from seqace_ros.geometry import rotvec_to_matrix

    T = np.eye(4)
    if steps == 0 or (mm == 0 and deg == 0):
        return T
    s = np.sqrt(steps)
    T[:3, :3] = rotvec_to_matrix(np.radians(rng.normal(0.0, deg * s / np.sqrt(3), 3)))
    T[:3, 3] = rng.normal(0.0, mm * 1e-3 * s / np.sqrt(3), 3)
    return T


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--map", type=Path, required=True)
    ap.add_argument("--scene", type=Path, default=REPO.parent / "shared" / "data" / "7scenes_redkitchen_sfm")
    ap.add_argument("--windows", default="1,3,5,8")
    ap.add_argument("--noise", default="0:0,0.5:0.025,1:0.05", help="per-frame motion noise, mm:deg, comma-separated")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "sequence_oracle.json")
    args = ap.parse_args()
    from seqace_ros.threads import prefer_passive_waiting

    prefer_passive_waiting()
    import numpy as np

    from refinement_variants import regressed
    from seqace_ros import ransac
    from seqace_ros.evaluation import write_json
    from seqace_ros.geometry import invert_pose, pose_errors
    from seqace_ros.refinement.keyframe_tracking import KeyframeRefiner, keyframes_from_arrays, normalize_for_tracking
    from seqace_ros.relocalization.pnp import reprojection_errors

    scene_map, frames = regressed(args.scene, args.map, None, args.threads)
    refiner = KeyframeRefiner(keyframes_from_arrays(scene_map.keyframes), threads=args.threads)
    per = []  # (K, ground truth, pose, its tracks' pixels, points, refined?)
    for gray, K, gt, reg, threshold in frames:
        if reg is None:
            per.append((K, gt, None, None, None, False))
            continue
        inl = np.asarray(reg.inliers, bool)
        r = refiner.refine(gray, K, reg.pose_c2w, seed=0, support=(reg.points2d[inl], reg.points3d[inl], threshold))
        pose = r.pose_c2w if r.accepted else reg.pose_c2w
        p2, p3, _, _ = refiner.correspondences(normalize_for_tracking(gray), K, reg.pose_c2w)
        keep = reprojection_errors(p2, p3, K, pose) < 2.0 if len(p2) else np.zeros(0, bool)
        per.append((K, gt, pose, p2[keep], p3[keep], bool(r.accepted)))

    rows = []
    for spec in args.noise.split(","):
        mm, deg = (float(v) for v in spec.split(":"))
        for window in [int(w) for w in args.windows.split(",")]:
            rng = np.random.default_rng(args.seed)
            errors = []
            for t, (K, gt, pose, p2, p3, refined) in enumerate(per):
                if pose is None:
                    errors.append((np.inf, np.inf))
                    continue
                views = []
                for s in range(t, max(-1, t - window), -1):  # the current frame first
                    _, gt_s, _, q2, q3, ok = per[s]
                    if ok and len(q2) >= 10:
                        T = invert_pose(gt) @ gt_s @ perturbation(rng, t - s, mm, deg)
                        views.append((q2, q3, K, T))
                res = None
                if refined and views:
                    res = ransac.estimate_pose_multi(views, inlier_threshold_px=2.0, refine_threshold_px=1.0,
                                                     scoring="hard", min_iterations=300, time_budget_ms=0.0,
                                                     seed=0, loss_scale_px=1.0)
                est = np.asarray(res.T_c2w) if res is not None and res.success else pose
                errors.append(pose_errors(est, gt))
            e = np.array(errors)
            row = {"window": window, "noise_mm": mm, "noise_deg": deg,
                   "recall_2cm": 100.0 * float(np.mean((e[:, 0] < 0.02) & (e[:, 1] < 2))),
                   "recall_1cm": 100.0 * float(np.mean((e[:, 0] < 0.01) & (e[:, 1] < 1))),
                   "median_cm": 100.0 * float(np.median(e[:, 0]))}
            rows.append(row)
            print(f"noise {mm:4.2f} mm / {deg:5.3f} deg per frame, window {window:2d}: "
                  f"{row['recall_2cm']:5.1f} / {row['recall_1cm']:5.1f} within 2 / 1 cm, median {row['median_cm']:.3f} cm",
                  flush=True)
    e = np.array([pose_errors(p[2], p[1]) if p[2] is not None else (np.inf, np.inf) for p in per])
    single = {"recall_2cm": 100.0 * float(np.mean((e[:, 0] < 0.02) & (e[:, 1] < 2))),
              "recall_1cm": 100.0 * float(np.mean((e[:, 0] < 0.01) & (e[:, 1] < 1))),
              "median_cm": 100.0 * float(np.median(e[:, 0]))}
    print(f"the single-frame refined poses: {single['recall_2cm']:.1f} / {single['recall_1cm']:.1f}, "
          f"median {single['median_cm']:.3f} cm")
    write_json({"map": str(args.map), "scene": str(args.scene), "queries": len(per), "single_frame": single,
                "rows": rows}, args.json)
    print(f"JSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
