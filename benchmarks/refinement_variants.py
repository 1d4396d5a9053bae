#!/usr/bin/env python3
"""Keyframe-refinement settings compared on the same regressed poses: recall and time per frame.

    python benchmarks/refinement_variants.py --pair SCENE:MAP[@CONFIG] [--pair ...]
        [--variant NAME=JSON ...] [--rounds 3] [--seeds 0,1,2] [--threads 2] [--json OUT.json]

For each (scene folder, map) pair every query is localized once without refinement (CONFIG as in
backends.py, e.g. ``openvino:int8:int8/cells=500/height=384``; default: the relocalizer's defaults).
Each variant then refines those same poses: JSON overrides of ``TrackingConfig`` fields, plus
``"normalize": "full"`` for the full-resolution local-contrast normalization that
``normalize_for_tracking`` replaced (the reference kept here). The refinement's RANSAC runs
without its time budget so that accuracy does not depend on the machine's load; the variants
take turns over ``--rounds`` rounds and each one's time is the median of its round means (wall
and process CPU time per frame). The refinement's RANSAC draws its samples from a seed, and which
hypothesis wins moves a few frames across the 1 cm line: with ``--seeds`` each round uses the
next seed and the recall is the mean over the seeds (each seed's in the JSON). The support check
uses the regressed inliers, as the relocalizer passes them. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

DEFAULT_VARIANTS = {
    "default": {},
    "before (full-res normalization, 2 levels)": {"normalize": "full", "pyramid_levels": 2},
    "full-res normalization": {"normalize": "full"},
    "2 pyramid levels": {"pyramid_levels": 2},
    "0 pyramid levels": {"pyramid_levels": 0},
}


def full_resolution_normalization(gray, sigma: float = 4.0):
    """The normalization as it was before session 9: local mean and deviation at full resolution."""
    import cv2
    import numpy as np

    g = gray.astype(np.float32)
    k = 2 * int(np.ceil(3.0 * sigma)) + 1
    mean = cv2.GaussianBlur(g, (k, k), sigma)
    dev = cv2.sqrt(cv2.max(cv2.GaussianBlur(g * g, (k, k), sigma) - mean * mean, 0.0)) + 4.0
    return np.clip(128.0 + 40.0 * (g - mean) / dev, 0, 255).astype(np.uint8)


def regressed(scene: Path, map_path: Path, config: str | None, threads: int):
    """The map, and per query: image (gray), K, ground truth, the regressed result (or None)."""
    import numpy as np

    from seqace_ros.data.scene_folder import load_split
    from seqace_ros.encoder import to_gray
    from seqace_ros.mapfile import load_map
    from seqace_ros.relocalization import RelocConfig, Relocalizer

    scene_map = load_map(map_path)
    if not scene_map.keyframes:
        raise SystemExit(f"{map_path} has no refinement keyframes: `seqace keyframes {map_path} {scene}`")
    if config:
        from backends import parse_config

        c = parse_config(config, 1000)
        enc = c["encoder_precision"] or ("auto" if c["precision"] == "int8" else c["precision"])
        cfg = RelocConfig(num_cells=c["cells"], backend=c["backend"], precision=c["precision"],
                          encoder_precision=enc, image_height=c["height"], refine=False)
    else:
        cfg = RelocConfig(refine=False)
    reloc = Relocalizer(scene_map, cfg.with_threads(threads), device="cpu")
    frames = []
    for f in load_split(scene, "test"):
        image = f.load_image()
        K = f.intrinsics(image.shape[1], image.shape[0])
        r = reloc.localize(image, K)
        frames.append((to_gray(image), K, np.asarray(f.pose_c2w, np.float64), r if r.localized else None,
                       reloc.config.ransac.inlier_threshold_px))
    return scene_map, frames


def run_variants(scene_map, frames, variants: dict[str, dict], rounds: int, threads: int,
                 seeds: tuple[int, ...] = (0,)) -> list[dict]:
    import dataclasses

    import numpy as np

    from seqace_ros.evaluation import RECALL_THRESHOLDS
    from seqace_ros.geometry import pose_errors
    from seqace_ros.refinement import keyframe_tracking as kt

    product_normalization = kt.normalize_for_tracking
    keyframes = kt.keyframes_from_arrays(scene_map.keyframes)
    refiners, out = {}, {}
    for name, spec in variants.items():
        spec = dict(spec)
        full = spec.pop("normalize", None) == "full"
        kt.normalize_for_tracking = full_resolution_normalization if full else product_normalization
        try:
            cfg = dataclasses.replace(kt.TrackingConfig(), time_budget_ms=0.0, **spec)
        except TypeError as e:
            raise SystemExit(f"variant {name!r}: {e}") from None
        refiners[name] = (kt.KeyframeRefiner(keyframes, cfg, threads=threads), full)
        out[name] = {"variant": name, "overrides": variants[name], "wall_ms": [], "cpu_ms": [], "seeds": [],
                     "recall_per_seed": [], "median_per_seed": [], "accepted_per_seed": []}
    try:
        for refiner, full in refiners.values():  # untimed: first calls allocate and warm caches
            kt.normalize_for_tracking = full_resolution_normalization if full else product_normalization
            for gray, K, gt, reg, threshold in [f for f in frames if f[3] is not None][:5]:
                refiner.refine(gray, K, reg.pose_c2w, seed=0)
        for round_ in range(max(rounds, len(seeds))):
            seed = seeds[round_ % len(seeds)]
            for name, (refiner, full) in refiners.items():
                kt.normalize_for_tracking = full_resolution_normalization if full else product_normalization
                errors, accepted = [], 0
                c0, t0 = time.process_time(), time.perf_counter()
                for gray, K, gt, reg, threshold in frames:
                    if reg is None:
                        errors.append((np.inf, np.inf))
                        continue
                    inl = np.asarray(reg.inliers, bool)
                    support = (reg.points2d[inl], reg.points3d[inl], threshold) if inl.any() else None
                    r = refiner.refine(gray, K, reg.pose_c2w, seed=seed, support=support)
                    accepted += bool(r.accepted)
                    errors.append(pose_errors(r.pose_c2w if r.accepted else reg.pose_c2w, gt))
                n = max(1, sum(f[3] is not None for f in frames))
                out[name]["wall_ms"].append((time.perf_counter() - t0) * 1000.0 / n)
                out[name]["cpu_ms"].append((time.process_time() - c0) * 1000.0 / n)
                if round_ < len(seeds):  # accuracy depends on the seed only (no time budget)
                    e = np.array(errors, float)
                    out[name]["seeds"].append(seed)
                    out[name]["recall_per_seed"].append(
                        {k: 100.0 * float(np.mean((e[:, 0] < tm) & (e[:, 1] < td)))
                         for k, (tm, td) in RECALL_THRESHOLDS.items()})
                    out[name]["median_per_seed"].append(100.0 * float(np.median(e[:, 0])))
                    out[name]["accepted_per_seed"].append(accepted)
    finally:
        kt.normalize_for_tracking = product_normalization
    for r in out.values():
        r["recall"] = {k: float(np.mean([s[k] for s in r["recall_per_seed"]])) for k in RECALL_THRESHOLDS}
        r["median_translation_cm"] = float(np.mean(r["median_per_seed"]))
        r["accepted"] = float(np.mean(r["accepted_per_seed"]))
        r["refine_wall_ms"] = float(np.median(r["wall_ms"]))
        r["refine_cpu_ms"] = float(np.median(r["cpu_ms"]))
    return list(out.values())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", action="append", required=True, help="SCENE:MAP[@CONFIG] (repeatable)")
    ap.add_argument("--variant", action="append", default=[], help="NAME=JSON overrides (repeatable; "
                    "default: the built-in set against the previous settings)")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds per variant (median of their means)")
    ap.add_argument("--seeds", default="0", help="comma-separated RANSAC seeds; recall is their mean")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "refinement_variants.json")
    args = ap.parse_args()
    try:
        seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    except ValueError:
        raise SystemExit(f"--seeds {args.seeds!r}: expected comma-separated integers") from None
    if not seeds:
        raise SystemExit("--seeds: at least one seed")
    from seqace_ros.threads import prefer_passive_waiting

    prefer_passive_waiting()  # before torch loads, as the seqace command does
    import platform

    import cv2
    import torch

    from seqace_ros.evaluation import RECALL_THRESHOLDS, write_json

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    variants = DEFAULT_VARIANTS
    if args.variant:
        variants = {}
        for item in args.variant:
            name, sep, spec = item.partition("=")
            if not sep:
                raise SystemExit(f"--variant {item!r}: expected NAME=JSON")
            try:
                variants[name] = json.loads(spec)
            except json.JSONDecodeError as e:
                raise SystemExit(f"--variant {item!r}: {e}") from None
    results = []
    for pair in args.pair:
        scene, sep, rest = pair.partition(":")
        map_path, _, config = rest.partition("@")
        if not sep or not map_path:
            raise SystemExit(f"--pair {pair!r}: expected SCENE:MAP[@CONFIG]")
        scene_map, frames = regressed(Path(scene), Path(map_path), config or None, args.threads)
        rows = run_variants(scene_map, frames, variants, args.rounds, args.threads, seeds)
        results.append({"scene": scene, "map": map_path, "config": config or "default", "queries": len(frames),
                        "variants": rows})
        print(f"\n{map_path} ({config or 'default'}) on {scene}, {len(frames)} queries; recall: mean of "
              f"{len(seeds)} seed(s); refine time: median of {max(args.rounds, len(seeds))} rounds")
        print(f"  {'variant':44s} " + " ".join(f"{k:>9s}" for k in RECALL_THRESHOLDS)
              + "   median  accepted  wall ms  CPU ms")
        for r in rows:
            print(f"  {r['variant']:44s} " + " ".join(f"{r['recall'][k]:9.1f}" for k in RECALL_THRESHOLDS)
                  + f" {r['median_translation_cm']:6.3f} cm {r['accepted']:6.0f} {r['refine_wall_ms']:8.2f}"
                  f" {r['refine_cpu_ms']:7.2f}", flush=True)
    write_json({"threads": args.threads, "rounds": args.rounds, "seeds": list(seeds), "machine": platform.processor() or platform.machine(),
                "cpu_count": __import__("os").cpu_count(), "results": results}, args.json)
    print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
