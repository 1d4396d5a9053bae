#!/usr/bin/env python3
"""seqace_ros against the structure-based peer on 7-Scenes redkitchen, in one run.

    python benchmarks/redkitchen.py [--scene PATH] [--json OUT.json] [--budgets fast,cpu]
        [--threads 2] [--peer sift|xfeat|none] [--fp32-frames 100] [--cells 700,1000]
        [--image-heights 480,384]   # relocalize at other heights than the map's (encoder cost ~ pixels)
    # a budget may override profile fields: --budgets "cpu,cpu:head_blocks=1,cpu:iterations=3000"
    [--seeds 2089,1,2]   # map each budget once per training seed; the table adds each budget's mean
    [--ransac-seeds 0,1,2]   # localize once per RANSAC seed, ours and the peer's; the table adds the means

For each mapping budget: map the 500 train frames (wall time), localize the 500 test frames
(single-frame mode; per-frame median timing with images already decoded), and, on a subset, the
frame rate with encoder and head in fp32 (CPUs without bf16). Then the peer (benchmarks/peer_structure.py)
on the same data with the same thread count. Which RANSAC hypothesis wins moves a few frames across
the 1 and 2 cm lines, for both methods: ``--ransac-seeds`` localizes once per seed and adds each
setting's mean. Prints one table and writes JSON.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import itertools
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(HERE), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)

DEFAULT_SCENE = REPO.parent / "shared" / "data" / "7scenes_redkitchen"
KEYS = ("10cm_5deg", "5cm_5deg", "2cm_2deg", "1cm_1deg")


def parse_budget(spec: str) -> tuple[str, dict]:
    """'cpu:head_blocks=1;iterations=3000' -> ('cpu', {'head_blocks': 1, 'iterations': 3000})."""
    name, _, rest = spec.partition(":")
    over = {}
    for item in filter(None, rest.split(";")):
        key, _, value = item.partition("=")
        over[key.strip()] = ast.literal_eval(value.strip())
    return name.strip(), over


def with_seed(budget: str, seed: int) -> str:
    """'cpu:head_width=256' + 1 -> 'cpu:head_width=256;seed=1'."""
    name, _, rest = budget.partition(":")
    return f"{name}:{rest + ';' if rest else ''}seed={seed}"


def seed_means(budget: str, rows: list[dict], kind: str = "seeds") -> list[dict]:
    """One row per (cells, height, refinement) setting: the mean over the seeds of ``budget``'s
    rows (recall, medians, frame time, mapping time); ``kind`` names the seeds in the label."""
    import numpy as np

    def mean(xs: list) -> float | None:
        xs = [x for x in xs if x is not None]
        return float(np.mean(xs)) if xs else None

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r.get("num_cells"), r.get("image_height"), ", refined" in r["method"])
        groups.setdefault(key, []).append(r)
    out = []
    for (cells, height, refined), rs in groups.items():
        at = f", H={height}" if height else ""
        setting = "" if cells is None else f", K={cells}{at}, {'refined' if refined else 'no refinement'}"
        out.append({
            "method": f"mean of {len(rs)} {kind} ({budget}{setting})",
            "seeds": len(rs), "recall": {k: mean([r["recall"][k] for r in rs]) for k in KEYS},
            "median_translation_cm": mean([r["median_translation_cm"] for r in rs]),
            "median_rotation_deg": mean([r["median_rotation_deg"] for r in rs]),
            "timing_ms": {"total": mean([r["timing_ms"]["total"] for r in rs])},
            "fps": mean([r.get("fps") for r in rs]), "mapping_s": mean([r.get("mapping_s") for r in rs])})
    return out


def run_seqace(scene: Path, budget: str, threads: int, fp32_frames: int, out_dir: Path,
               cells: list[int], map_path: Path | None = None, device: str = "cpu",
               heights: list[int | None] = (None,), refine: tuple[bool, ...] = (True,),
               ransac_seeds: tuple[int, ...] = (0,)) -> list[dict]:
    import torch

    from seqace_ros.data.scene_folder import load_split
    from seqace_ros.evaluation import localize_frames, summarize
    from seqace_ros.mapping import profile, train_map
    from seqace_ros.relocalization import RelocConfig, Relocalizer

    from seqace_ros.mapfile import load_map

    torch.set_num_threads(threads)
    if map_path is not None:
        # Evaluate a map made earlier (its own metadata says how and how fast it was trained).
        scene_map = load_map(map_path)
        cfg_dict = scene_map.metadata["training"]["config"]
        mapping_s = float("nan")
        budget = f"map {map_path.name}"
    else:
        name, over = parse_budget(budget)
        cfg = profile(name, num_threads=threads, **{"device": device, **over})
        t0 = time.perf_counter()
        scene_map = train_map(load_split(scene, "train"), cfg, progress=True)
        mapping_s = time.perf_counter() - t0
        tag = budget.replace(":", "_").replace(";", "_").replace("=", "")
        scene_map.save(out_dir / f"redkitchen_{tag}.safetensors")
        cfg_dict = cfg.to_dict()
    test = load_split(scene, "test")
    reports = []
    for height, num_cells, ref, seed in itertools.product(heights, cells, refine, ransac_seeds):
        # height None: the map's own image height (what it was trained at)
        at = f", H={height}" if height else ""
        config = RelocConfig(num_cells=num_cells, image_height=height, refine=ref)
        config = dataclasses.replace(config, ransac=dataclasses.replace(config.ransac, seed=seed))
        reloc = Relocalizer(scene_map, config.with_threads(threads), device=device)
        at += ", refined" if reloc.refiner is not None else ", no refinement"
        at += f", RANSAC seed {seed}" if len(ransac_seeds) > 1 else ""
        results = localize_frames(reloc.localize, test, desc=f"seqace {budget} K={num_cells}{at}")
        report = summarize(results, method=f"seqace ({budget}, K={num_cells}{at})", mapping_s=mapping_s,
                           mapping_config=cfg_dict, threads=threads, num_cells=num_cells, image_height=height,
                           head_precision=str(reloc.amp or "fp32"),
                           encoder_precision=reloc.encoder.precision, device=str(reloc.device),
                           refinement=reloc.describe()["refinement"],
                           map_keyframe_bytes=int(sum(a.nbytes for a in scene_map.keyframes.values())))
        report["ransac_seed"] = seed
        if fp32_frames and seed == ransac_seeds[0]:
            # CPUs without bf16 units: encoder and head in fp32.
            r32 = Relocalizer(scene_map, RelocConfig(num_cells=num_cells, precision="fp32",
                                                     encoder_precision="fp32", image_height=height,
                                                     refine=ref).with_threads(threads),
                              device="cpu")
            s32 = summarize(localize_frames(r32.localize, test[:fp32_frames], desc="seqace fp32"))
            report["fp32"] = {"frames": min(fp32_frames, len(test)), "timing_ms": s32["timing_ms"],
                              "fps": s32["fps"], "recall": s32["recall"],
                              "median_translation_cm": s32["median_translation_cm"],
                              "median_rotation_deg": s32["median_rotation_deg"]}
        reports.append(report)
    return reports


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", type=Path, default=DEFAULT_SCENE)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "redkitchen.json")
    ap.add_argument("--budgets", default="cpu", help="comma-separated mapping profiles (fast, cpu, quality, gpu)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu",
                    help="where mapping and relocalization run: cpu (the targets), cuda or auto")
    ap.add_argument("--peer", default="sift", choices=["sift", "xfeat", "none"])
    ap.add_argument("--fp32-frames", type=int, default=100,
                    help="frames localized with encoder and head in fp32 (500: its accuracy too)")
    ap.add_argument("--cells", default="1000", help="comma-separated top-K cell counts to evaluate")
    ap.add_argument("--image-heights", default="",
                    help="comma-separated heights to relocalize at (default: the map's own); the "
                         "encoder's cost grows with the pixel count")
    ap.add_argument("--refine", default="on", help="comma-separated: on, off (keyframe refinement)")
    ap.add_argument("--seeds", default="",
                    help="comma-separated training seeds: each budget is mapped once per seed, and the "
                         "table adds the mean over them")
    ap.add_argument("--ransac-seeds", default="0",
                    help="comma-separated RANSAC seeds (ours and the peer's): each setting is localized "
                         "once per seed, and the table adds the mean over them")
    ap.add_argument("--map", type=Path, action="append", default=[],
                    help="evaluate this existing map instead of training one (repeatable)")
    args = ap.parse_args()
    from seqace_ros.threads import prefer_passive_waiting

    prefer_passive_waiting()  # before torch loads, as the seqace command and the nodes do
    if not (args.scene / "train").is_dir():
        print(f"no scene at {args.scene}: pass --scene", file=sys.stderr)
        return 2
    from seqace_ros.evaluation import write_json

    out_dir = args.json.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = [int(c) for c in args.cells.split(",") if c.strip()]
    heights = [int(h) for h in args.image_heights.split(",") if h.strip()] or [None]
    refine = tuple(x.strip() == "on" for x in args.refine.split(",") if x.strip())
    try:
        ransac_seeds = tuple(int(x) for x in args.ransac_seeds.split(",") if x.strip())
    except ValueError:
        print(f"--ransac-seeds {args.ransac_seeds!r}: expected comma-separated integers", file=sys.stderr)
        return 2
    if not ransac_seeds:
        print("--ransac-seeds: at least one seed", file=sys.stderr)
        return 2
    rows = []
    for m in args.map:
        map_rows = run_seqace(args.scene, "", args.threads, args.fp32_frames, out_dir, cells, m,
                              args.device, heights, refine, ransac_seeds)
        rows += map_rows
        if len(ransac_seeds) > 1:
            rows += seed_means(f"map {m.name}", map_rows, "RANSAC seeds")
    budgets = [] if args.map else [b.strip() for b in args.budgets.split(",") if b.strip()]
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    for budget in budgets:
        runs = [budget] if not seeds else [with_seed(budget, seed) for seed in seeds]
        budget_rows = []
        for run in runs:
            budget_rows += run_seqace(args.scene, run, args.threads, args.fp32_frames, out_dir, cells,
                                      device=args.device, heights=heights, refine=refine,
                                      ransac_seeds=ransac_seeds)
        rows += budget_rows
        if len(runs) > 1:
            rows += seed_means(budget, budget_rows)
    if args.peer != "none":
        from peer_structure import default_localize_settings, run_peer
        peer_rows = []
        for seed in ransac_seeds:
            settings = dataclasses.replace(default_localize_settings(args.peer), ransac_seed=seed)
            peer = run_peer(args.scene, features=args.peer, threads=args.threads, localize_settings=settings)
            peer["method"] = f"structure peer ({args.peer})" + (f", RANSAC seed {seed}" if len(ransac_seeds) > 1 else "")
            peer["ransac_seed"] = seed
            peer_rows.append(peer)
        rows += peer_rows
        if len(ransac_seeds) > 1:
            rows += seed_means(f"structure peer ({args.peer})", peer_rows, "RANSAC seeds")
    print()
    print(f"{'method':40s} " + " ".join(f"{k:>10s}" for k in KEYS) + f" {'med cm':>7s} {'med deg':>7s}"
          f" {'ms/frame':>8s} {'fps':>6s} {'map s':>6s}")
    for r in rows:
        fps = r.get("fps") or 0.0
        ms = r.get("timing_ms", {}).get("total", float("nan"))
        map_s = r.get("mapping_s", float("nan"))
        print(f"{r['method']:40s} " + " ".join(f"{r['recall'][k]:9.1f}%" for k in KEYS)
              + f" {r['median_translation_cm'] or float('nan'):7.2f} {r['median_rotation_deg'] or float('nan'):7.2f}"
              f" {ms:8.1f} {fps:6.1f} {map_s:6.0f}")
        if "fp32" in r:
            f = r["fp32"]
            label = f"  (no bf16: all fp32, {f['frames']} frames)"
            print(f"{label:40s} " + " ".join(f"{f['recall'][k]:9.1f}%" for k in KEYS)
                  + f" {f['median_translation_cm'] or float('nan'):7.2f} {f['median_rotation_deg'] or float('nan'):7.2f}"
                  f" {f['timing_ms'].get('total', 0):8.1f} {f['fps'] or 0:6.1f}")
    write_json({"scene": str(args.scene), "threads": args.threads, "cpu_count": os.cpu_count(),
                "results": rows}, args.json)
    print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
