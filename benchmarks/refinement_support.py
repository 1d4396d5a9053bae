#!/usr/bin/env python3
"""Does a refined pose stay in the map frame? The support check on maps with accurate and noisy poses.

    python benchmarks/refinement_support.py --pair SCENE:MAP [--pair SCENE:MAP ...] [--threads 2]
        [--min-kept 0.8] [--json OUT.json]

For each (scene folder, map) pair: localize every query with the keyframe refinement and its
support check off (``TrackingConfig.min_support_kept = 0``), and again without refinement (the
regressed pose). For every refinement the tracking accepted, the share of the regressed pose's
scene-coordinate inliers (within the RANSAC inlier threshold) that the refined pose keeps, split by
what the refinement did against the ground truth: moved the pose more than 2 cm or 1 deg further
off, or brought it closer. Then recall for the regressed poses, the refined ones without the check,
and with it at ``--min-kept`` (the default of TrackingConfig). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))


def run_pair(scene: Path, map_path: Path, threads: int, min_kept: float) -> dict:
    import numpy as np

    from seqace_ros.data.scene_folder import load_split
    from seqace_ros.evaluation import RECALL_THRESHOLDS
    from seqace_ros.geometry import pose_errors
    from seqace_ros.mapfile import load_map
    from seqace_ros.refinement.keyframe_tracking import support_kept
    from seqace_ros.relocalization import RelocConfig, Relocalizer

    reloc = Relocalizer(load_map(map_path), RelocConfig().with_threads(threads), device="cpu")
    if reloc.refiner is None:
        raise SystemExit(f"{map_path} has no refinement keyframes: `seqace keyframes {map_path} {scene}`")
    reloc.refiner.config = dataclasses.replace(reloc.refiner.config, min_support_kept=0.0)
    threshold = reloc.config.ransac.inlier_threshold_px
    rows = []
    for f in load_split(scene, "test"):
        image = f.load_image()
        K = f.intrinsics(image.shape[1], image.shape[0])
        gt = np.asarray(f.pose_c2w, np.float64)
        reg = reloc.localize(image, K, refine=False)
        if not reg.localized:
            rows.append({"frame": f.name, "localized": False})
            continue
        row = {"frame": f.name, "localized": True, "regressed": pose_errors(reg.pose_c2w, gt), "kept": None}
        refined = dataclasses.replace(reg)  # refine() replaces its pose, not the regressed one's
        reloc.refine(refined, image, K)
        if refined.refinement is not None and refined.refinement.accepted:
            inl = reg.inliers
            row["kept"] = support_kept(refined.pose_c2w, reg.pose_c2w, K, reg.points2d[inl], reg.points3d[inl],
                                       threshold)
            row["refined"] = pose_errors(refined.pose_c2w, gt)
        rows.append(row)

    def recall(errors: list[tuple[float, float]]) -> dict:
        e = np.array(errors, float).reshape(-1, 2)
        return {k: 100.0 * float(np.mean((e[:, 0] < tm) & (e[:, 1] < td))) for k, (tm, td) in RECALL_THRESHOLDS.items()}

    lost = (np.inf, np.inf)
    regressed = [r["regressed"] if r["localized"] else lost for r in rows]
    unchecked = [r.get("refined", r.get("regressed", lost)) for r in rows]
    checked = [r["refined"] if r.get("kept") is not None and r["kept"] >= min_kept else r.get("regressed", lost)
               for r in rows]
    accepted = [r for r in rows if r.get("kept") is not None]
    worse = [r for r in accepted if r["refined"][0] > r["regressed"][0] + 0.02 or r["refined"][1] > r["regressed"][1] + 1.0]
    closer = [r for r in accepted if r not in worse and r["refined"][0] < r["regressed"][0]]

    def spread(group: list[dict]) -> dict | None:
        if not group:
            return None
        k = np.array([r["kept"] for r in group])
        return {"n": len(group), "min": float(k.min()), "p10": float(np.percentile(k, 10)),
                "median": float(np.median(k)), "max": float(k.max())}

    return {"scene": str(scene), "map": str(map_path), "queries": len(rows), "min_kept": min_kept,
            "kept_all_accepted": spread(accepted), "kept_worse": spread(worse), "kept_closer": spread(closer),
            "recall_regressed": recall(regressed), "recall_refined_unchecked": recall(unchecked),
            "recall_refined_checked": recall(checked), "per_frame": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", action="append", required=True, help="SCENE:MAP (repeatable)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-kept", type=float, default=None, help="default: TrackingConfig.min_support_kept")
    ap.add_argument("--json", type=Path, default=REPO / "results" / "refinement_support.json")
    args = ap.parse_args()
    from seqace_ros.threads import prefer_passive_waiting

    prefer_passive_waiting()  # before torch loads, as the seqace command does
    import torch

    from seqace_ros.evaluation import RECALL_THRESHOLDS, write_json
    from seqace_ros.refinement.keyframe_tracking import TrackingConfig

    torch.set_num_threads(args.threads)
    min_kept = TrackingConfig.min_support_kept if args.min_kept is None else args.min_kept
    out = []
    for pair in args.pair:
        scene, sep, map_path = pair.partition(":")
        if not sep:
            raise SystemExit(f"--pair {pair!r}: expected SCENE:MAP")
        out.append(run_pair(Path(scene), Path(map_path), args.threads, min_kept))
    print("\nshare of the regressed pose's scene-coordinate inliers a refined pose keeps (min / p10 / median, n)")
    for r in out:
        print(f"\n{r['map']} on {r['scene']} ({r['queries']} queries)")
        for name in ("all_accepted", "worse", "closer"):
            s = r[f"kept_{name}"]
            label = {"all_accepted": "every accepted refinement", "worse": "moved > 2 cm / 1 deg further off",
                     "closer": "brought closer"}[name]
            print(f"  {label:34s} " + (f"{s['min']:.2f} / {s['p10']:.2f} / {s['median']:.2f}  (n={s['n']})" if s else "none"))
        for name in ("regressed", "refined_unchecked", "refined_checked"):
            rec = r[f"recall_{name}"]
            label = name.replace("_", ", ") + (f" >= {min_kept:.2f}" if name == "refined_checked" else "")
            print(f"  recall {label:30s} " + " ".join(f"{rec[k]:6.1f}" for k in RECALL_THRESHOLDS))
    write_json({"min_kept": min_kept, "results": out}, args.json)
    print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
