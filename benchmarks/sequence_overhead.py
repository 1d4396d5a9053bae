"""Extra cost of sequence mode per frame (tracking, motion, multi-frame RANSAC, update) on real
query images.

The single-frame results are computed once and replayed, so every repeat measures only the
sequence work on identical inputs:
- with ``--map``: the real single-frame relocalizer (its accuracy is also reported, single vs
  sequence, on the same frames);
- without: a stand-in that returns the ground-truth pose and 1000 corners back-projected at a
  constant 2 m depth (no depth in the data set): realistic image content, point counts and
  motion, but the 3D points are only roughly right, so landmarks live shorter than with a map.

    python benchmarks/sequence_overhead.py ../shared/data/7scenes_redkitchen --map maps/k.safetensors \\
        --frames 200 --repeats 3 --json /tmp/sequence_overhead.json

Recordings are cut where the frame numbers jump (the redkitchen query blocks of 50 frames).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from seqace_ros.data.scene_folder import load_split
from seqace_ros.evaluation import FrameResult, summarize
from seqace_ros.relocalization.result import LOCALIZED, RelocResult
from seqace_ros.relocalization.sequence import SequenceConfig, SequenceRelocalizer
from seqace_ros.sequence_boundaries import sequence_starts

STAGES = ("tracking", "motion", "multi_frame", "update", "sequence_overhead")
PATHS = ("fused", "tracking only", "single-frame pose rejected", "single-frame only",
         "landmarks dropped", "lost")


def path_of(r: RelocResult) -> str:
    """Which decision produced a result (from its message)."""
    if r.status != LOCALIZED:
        return "lost"
    last = r.message.split("; ")[-1]
    return next((p for p in PATHS if p in last), last)


def stand_in_result(image: np.ndarray, K: np.ndarray, pose_c2w: np.ndarray) -> RelocResult:
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    pts = cv2.goodFeaturesToTrack(gray, 1000, 0.005, 4).reshape(-1, 2).astype(np.float64)
    rays = np.c_[pts, np.ones(len(pts))] @ np.linalg.inv(K).T
    X = (rays * 2.0) @ pose_c2w[:3, :3].T + pose_c2w[:3, 3]
    n = len(pts)
    return RelocResult(LOCALIZED, pose_c2w=pose_c2w.copy(), covariance=np.diag([1e-4] * 3 + [1e-4] * 3),
                       num_inliers=n, inlier_ratio=1.0, reprojection_error_px=0.5,
                       points2d=pts.astype(np.float32), points3d=X.astype(np.float32),
                       inliers=np.ones(n, bool), timing_ms={"total": 0.0})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scene", type=Path)
    ap.add_argument("--map", type=Path, help="map file; without it a ground-truth stand-in is used")
    ap.add_argument("--frames", type=int, default=200, help="first N query frames (0: all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="OpenCV/torch threads")
    ap.add_argument("--json", type=Path, default=Path("sequence_overhead.json"))
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)

    frames = load_split(args.scene, "test")
    if args.frames:
        frames = frames[: args.frames]
    images = [f.load_image() for f in frames]
    Ks = [f.intrinsics(im.shape[1], im.shape[0]) for f, im in zip(frames, images)]
    starts = sequence_starts([f.name for f in frames])  # query time: names only, no poses

    if args.map:
        import torch

        from seqace_ros.relocalization import RelocConfig, Relocalizer
        torch.set_num_threads(args.threads)
        reloc = Relocalizer.from_file(args.map, RelocConfig().with_threads(args.threads), device="cpu")
        source = f"map {args.map.name}"
        singles = []
        for im, K in zip(images, Ks):
            singles.append(reloc.localize(im, K))
    else:
        source = "ground-truth stand-in (constant 2 m depth)"
        singles = [stand_in_result(im, K, f.pose_c2w) for im, K, f in zip(images, Ks, frames)]

    runs, paths, landmark_counts, seq_results = [], {}, [], []
    for rep in range(args.repeats):
        replay = iter(singles)
        seq = SequenceRelocalizer(lambda image, K: next(replay), SequenceConfig())
        per_stage = {s: [] for s in (*STAGES, "sequence_overhead_cpu")}
        for i, (im, K) in enumerate(zip(images, Ks)):
            if starts[i]:
                seq.reset()
            c0 = time.thread_time()
            r = seq.localize(im, K)
            # CPU time of this thread: the replayed single-frame call costs nothing, so this is the
            # sequence work alone, and unlike wall time it does not grow when other jobs share the CPU
            per_stage["sequence_overhead_cpu"].append(1000 * (time.thread_time() - c0))
            for s in STAGES:
                per_stage[s].append(r.timing_ms[s])
            if rep == 0:
                landmark_counts.append(seq.num_landmarks)
                paths[path_of(r)] = paths.get(path_of(r), 0) + 1
                seq_results.append(r)
        oh = per_stage["sequence_overhead"]
        runs.append({s: float(np.median(v)) for s, v in per_stage.items()}
                    | {"sequence_overhead_mean": float(np.mean(oh)),
                       "sequence_overhead_p90": float(np.percentile(oh, 90)),
                       "sequence_overhead_cpu_p90": float(np.percentile(
                           per_stage["sequence_overhead_cpu"], 90))})

    med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
    out = {"scene": str(args.scene), "source": source, "frames": len(frames),
           "recordings": int(starts.sum()), "repeats": args.repeats, "threads": args.threads,
           "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
           "load_average_1min": os.getloadavg()[0],
           "median_over_repeats_ms": med, "runs": runs,
           "landmarks_median": float(np.median(landmark_counts)), "paths": paths}

    print(f"{args.scene.name}/test, {len(frames)} frames in {out['recordings']} recordings, "
          f"single-frame source: {source}; {args.threads} thread(s), load avg {out['load_average_1min']:.1f}")
    print(f"{'stage (wall time unless cpu)':30s} {'ms':>8s}")
    print("-" * 39)
    for k in (*STAGES, "sequence_overhead_mean", "sequence_overhead_p90", "sequence_overhead_cpu",
              "sequence_overhead_cpu_p90"):
        print(f"{k:30s} {med[k]:8.2f}")
    print("(medians over frames, then the median over repeats)")
    print(f"landmarks per frame (median): {out['landmarks_median']:.0f}; paths: {paths}")

    if args.map:
        def report(results):
            return summarize([FrameResult(f.name, f.pose_c2w, r.pose_c2w if r.localized else None,
                                          r.num_inliers, dict(r.timing_ms)) for f, r in zip(frames, results)])
        single_rep, seq_rep = report(singles), report(seq_results)
        out["accuracy"] = {"single": single_rep, "sequence": seq_rep}
        print(f"{'recall %':10s} " + " ".join(f"{k:>9s}" for k in single_rep["recall"]) + "  med cm / deg")
        for name, rep in (("single", single_rep), ("sequence", seq_rep)):
            print(f"{name:10s} " + " ".join(f"{v:9.1f}" for v in rep["recall"].values())
                  + f"  {rep['median_translation_cm']:.2f} / {rep['median_rotation_deg']:.2f}")
        out["single_frame_total_ms_median"] = single_rep["timing_ms"].get("total")

    args.json.write_text(json.dumps(out, indent=2, default=float))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
