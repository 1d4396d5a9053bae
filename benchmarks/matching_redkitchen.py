"""Frame-keyframe matching on a real mapping split: match and keyframe counts, time, accuracy.

Compares XFeat mutual-nearest-neighbour matching with several keyframe overlap thresholds and
XFeat's LighterGlue (on a prefix, it is ~25x slower on CPU). Accuracy is the Sampson distance of
every verified match to the fundamental matrix of the ground-truth poses (7-Scenes poses are
themselves good to ~1 cm, so this is an upper bound on the match error).

    python benchmarks/matching_redkitchen.py ../shared/data/7scenes_redkitchen --json /tmp/m.json

Detection runs once per image and is shared by the variants (timed separately).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from seqace_ros.data.scene_folder import load_split
from seqace_ros.mapping import matching
from seqace_ros.mapping.matching import MatchingConfig, match_sequence, summarize_matches


def skew(v):
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def sampson_to_gt(frames, ms) -> np.ndarray:
    errs = []
    for m in ms:
        if m.num_matches == 0:
            continue
        fa, fb = frames[m.frame_index], frames[m.keyframe_index]
        K = fa.intrinsics(640, 480)
        T = np.linalg.inv(fb.pose_c2w) @ fa.pose_c2w  # frame camera -> keyframe camera
        F = np.linalg.inv(K).T @ skew(T[:3, 3]) @ T[:3, :3] @ np.linalg.inv(K)
        x0 = np.c_[m.xy_frame, np.ones(m.num_matches)]
        x1 = np.c_[m.xy_keyframe, np.ones(m.num_matches)]
        Fx0, Ftx1 = x0 @ F.T, x1 @ F
        num = np.sum(x1 * Fx0, 1) ** 2
        errs.append(np.sqrt(num / (Fx0[:, 0] ** 2 + Fx0[:, 1] ** 2 + Ftx1[:, 0] ** 2 + Ftx1[:, 1] ** 2)))
    return np.concatenate(errs) if errs else np.zeros(0)


class MemoDetect:
    """matching.detect, computed once per (image, detection settings); times the real calls."""

    def __init__(self):
        self.fn, self.memo, self.seconds, self.calls = matching.detect, {}, 0.0, 0

    def __call__(self, image, config, device="cpu"):
        key = (hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest(), config.max_keypoints,
               config.detection_threshold, config.subpixel, config.max_image_side)
        if key not in self.memo:
            t = time.perf_counter()
            self.memo[key] = self.fn(image, config, device)
            self.seconds += time.perf_counter() - t
            self.calls += 1
        return self.memo[key]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scene", type=Path)
    ap.add_argument("--split", default="train")
    ap.add_argument("--limit", type=int, default=0, help="first N frames only (0: all)")
    ap.add_argument("--lighterglue-limit", type=int, default=100,
                    help="frames for the LighterGlue comparison (0: skip)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=Path("matching_redkitchen.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    frames = load_split(args.scene, args.split)
    if args.limit:
        frames = frames[: args.limit]
    memo = MemoDetect()
    matching.detect = memo  # benchmark-only: share detections between variants

    base = MatchingConfig(use_cache=False, device="cpu")
    variants = [("mnn, overlap 0.5 (SeqACE)", replace(base, min_inlier_fraction=0.5), len(frames)),
                ("mnn, overlap 0.4 (default)", base, len(frames)),
                ("mnn, overlap 0.3", replace(base, min_inlier_fraction=0.3), len(frames))]
    if args.lighterglue_limit:
        n = min(args.lighterglue_limit, len(frames))
        variants += [(f"mnn, overlap 0.4, first {n}", base, n),
                     (f"lighterglue, overlap 0.4, first {n}", replace(base, matcher="lighterglue"), n)]

    rows = []
    for name, cfg, n in variants:
        det_before = memo.seconds
        t = time.perf_counter()
        ms = match_sequence(frames[:n], cfg, progress=False)
        wall = time.perf_counter() - t
        det = memo.seconds - det_before
        s = summarize_matches(ms)
        e = sampson_to_gt(frames[:n], ms)
        gaps = [m.frame_index - m.keyframe_index for m in ms if m.num_matches]
        rows.append({"variant": name, "frames": n, **s,
                     "frame_keyframe_gap_median": float(np.median(gaps)) if gaps else 0.0,
                     "sampson_gt_median_px": float(np.median(e)) if len(e) else None,
                     "sampson_gt_p90_px": float(np.percentile(e, 90)) if len(e) else None,
                     "detect_s": det, "match_verify_s": wall - det,
                     "match_verify_ms_per_frame": 1000 * (wall - det) / n})

    # cold run vs cache hit with the default settings
    with tempfile.TemporaryDirectory() as tmp:
        cfg = replace(base, use_cache=True)
        match_sequence(frames, cfg, cache_dir=tmp, progress=False)
        t = time.perf_counter()
        match_sequence(frames, cfg, cache_dir=tmp, progress=False)
        cache_hit_s = time.perf_counter() - t
        cache_mb = sum(p.stat().st_size for p in Path(tmp).glob("*.npz")) / 1e6

    detect_ms = 1000 * memo.seconds / max(memo.calls, 1)
    print(f"{args.scene.name}/{args.split}: {len(frames)} frames, XFeat detection "
          f"{detect_ms:.0f} ms/image ({args.threads} thread(s)); cache hit {cache_hit_s:.2f} s, "
          f"file {cache_mb:.1f} MB")
    hdr = (f"{'variant':34s} {'frames':>6s} {'keyfr':>5s} {'matched':>7s} {'med M':>6s} {'min M':>6s} "
           f"{'gap':>4s} {'samp50':>6s} {'samp90':>6s} {'ms/fr':>6s}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['variant']:34s} {r['frames']:6d} {r['keyframes']:5d} {r['frames_with_matches']:7d} "
              f"{r['matches_median']:6.0f} {r['matches_min']:6d} {r['frame_keyframe_gap_median']:4.0f} "
              f"{r['sampson_gt_median_px']:6.2f} {r['sampson_gt_p90_px']:6.2f} "
              f"{r['match_verify_ms_per_frame']:6.1f}")
    print("ms/fr: matching + RANSAC per frame, detection excluded; samp50/90: Sampson distance to "
          "the ground-truth epipolar geometry (px)")
    out = {"scene": str(args.scene), "split": args.split, "frames": len(frames), "threads": args.threads,
           "detect_ms_per_image": detect_ms, "cache_hit_s": cache_hit_s, "cache_file_mb": cache_mb,
           "variants": rows}
    args.json.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
