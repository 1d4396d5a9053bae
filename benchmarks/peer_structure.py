#!/usr/bin/env python3
"""Structure-based relocalization peer (what hloc does) on a DSAC*/ACE scene folder.

    python benchmarks/peer_structure.py SCENE --json OUT.json [--features sift|xfeat]
        [--threads 1] [--limit N] [--cache-dir DIR]

Maps the train/ split from its known poses (cached under .cache/peer/ keyed by settings and data),
localizes the test/ split, prints the results table and writes the report JSON. Per-query timing
excludes image decoding and runs on --threads threads. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from dataclasses import asdict, replace
from pathlib import Path

_HERE = Path(__file__).resolve().parent
REPO_ROOT = _HERE.parent
DEFAULT_CACHE = REPO_ROOT / ".cache" / "peer"


def _set_thread_env(threads: int) -> None:
    # BLAS pools are sized when numpy is first imported: set these before that happens.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


if __name__ == "__main__":  # the CLI controls the BLAS pools; a library caller controls its own
    _pre = argparse.ArgumentParser(add_help=False)
    _pre.add_argument("--threads", type=int, default=1)
    _set_thread_env(max(1, _pre.parse_known_args()[0].threads))

for _p in (str(_HERE), str(REPO_ROOT)):  # run as a script from anywhere, without installing
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402

from peer.localizer import LocalizeSettings, StructureLocalizer  # noqa: E402
from peer.reconstruction import (MapSettings, Reconstruction, build_reconstruction,  # noqa: E402
                                 cache_key)
from peer.features import FEATURE_TYPES  # noqa: E402
from peer.structure import StructureSettings  # noqa: E402
from seqace_ros.refinement.triangulation import TriangulationSettings  # noqa: E402
from seqace_ros.data.scene_folder import ImageReadError, load_split  # noqa: E402
from seqace_ros.evaluation import (FrameResult, format_table, per_frame_records,  # noqa: E402
                                   summarize, write_json)

STAGES = ("features", "retrieval", "matching", "ransac", "total")


def default_map_settings(features: str = "sift") -> MapSettings:
    """The mapping settings tuned for each feature type on redkitchen (see benchmarks/README.md)."""
    tri = TriangulationSettings(max_reproj_px=2.0, min_angle_deg=0.5 if features == "sift" else 1.0)
    if features == "sift":
        return MapSettings(features="sift", max_features=4000, feature_options={"contrast_threshold": 0.01},
                           structure=StructureSettings(pairs_per_frame=3, pair_min_baseline_m=0.02,
                                                       match_ratio=0.8, triangulation=tri))
    if features == "xfeat":
        return MapSettings(features="xfeat", max_features=4096,
                           structure=StructureSettings(pairs_per_frame=5, pair_min_baseline_m=0.03,
                                                       match_ratio=0.8, triangulation=tri))
    raise ValueError(f"unknown feature type {features!r}; choose one of {', '.join(FEATURE_TYPES)}")


def default_localize_settings(features: str = "sift") -> LocalizeSettings:
    """The query settings tuned for each feature type (XFeat descriptors need a looser ratio)."""
    if features == "sift":
        return LocalizeSettings(retrieval_k=10, match_ratio=0.9, ransac_px=12.0, refine_loss_px=4.0)
    if features == "xfeat":
        return LocalizeSettings(retrieval_k=10, match_ratio=0.95, ransac_px=8.0, refine_loss_px=1.0)
    raise ValueError(f"unknown feature type {features!r}; choose one of {', '.join(FEATURE_TYPES)}")


def _subset(n: int, limit: int | None) -> np.ndarray:
    """Evenly spaced query indices: the first N would all come from one 50-frame block."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def load_or_build_map(scene_dir: str | Path, settings: MapSettings,
                      cache_dir: str | Path | None = None, progress: bool = True,
                      log=print) -> tuple[Reconstruction, bool]:
    """The map of ``scene_dir``/train, from the cache when one with the same key exists."""
    frames = load_split(scene_dir, "train")
    cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
    path = cache_dir / f"{Path(scene_dir).resolve().name}-{cache_key(settings, frames)}.npz"
    if path.is_file():
        try:
            rec = Reconstruction.load(path)
            log(f"map: loaded from cache {path}")
            return rec, True
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            log(f"map: cache entry {path} is unreadable ({exc}); rebuilding it")
    rec = build_reconstruction(frames, settings, progress=progress, log=log)
    rec.save(path)
    log(f"map: cached as {path}")
    return rec, False


def run_peer(scene_dir: str | Path, features: str = "sift", threads: int = 1,
             limit: int | None = None, cache_dir: str | Path | None = None,
             map_settings: MapSettings | None = None,
             localize_settings: LocalizeSettings | None = None,
             progress: bool = True, log=print) -> dict:
    """Map ``scene_dir``/train, localize ``scene_dir``/test; the report dict of
    seqace_ros.evaluation.summarize plus mapping time, map statistics and settings."""
    import cv2
    import torch
    from tqdm import tqdm

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    map_settings = map_settings or default_map_settings(features)
    localize_settings = localize_settings or default_localize_settings(map_settings.features)
    rec, cached = load_or_build_map(scene_dir, map_settings, cache_dir, progress, log)
    localizer = StructureLocalizer(rec, localize_settings)

    queries = load_split(scene_dir, "test")
    chosen = _subset(len(queries), limit)
    results: list[FrameResult] = []
    warmed = False
    for qi in tqdm(chosen, desc="localize", disable=not progress, leave=False):
        q = queries[qi]
        try:
            image = q.load_image()  # decoding is not part of the timed work
        except ImageReadError as exc:
            results.append(FrameResult(q.name, q.pose_c2w, None, error=f"unreadable: {exc}"))
            continue
        K = q.intrinsics(image.shape[1], image.shape[0])
        if not warmed:  # first-call allocations are not a per-query cost
            localizer.localize(image, K)
            warmed = True
        out = localizer.localize(image, K)
        results.append(FrameResult(q.name, q.pose_c2w, out.pose_c2w, out.num_inliers,
                                   out.timing_ms,
                                   None if out.pose_c2w is not None else out.message))
    stage_ms = {k: float(np.median([r.timing_ms[k] for r in results if k in r.timing_ms]))
                for k in STAGES if any(k in r.timing_ms for r in results)}
    return summarize(
        results,
        method=f"structure-based peer ({map_settings.features}, retrieval + 2D-3D + PoseLib)",
        scene=str(scene_dir), threads=threads,
        query_subset=None if limit is None else [int(i) for i in chosen],
        mapping_s=rec.mapping_s, map_from_cache=cached, map_stats=rec.stats,
        peer_timing_ms=stage_ms,
        map_settings=asdict(map_settings), localize_settings=asdict(localize_settings),
        per_frame=per_frame_records(results))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scene", help="DSAC*/ACE scene folder with train/ and test/")
    ap.add_argument("--json", required=True, help="where to write the report JSON")
    ap.add_argument("--features", choices=FEATURE_TYPES, default="sift")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (per-query timing)")
    ap.add_argument("--limit", type=int, default=None,
                    help="localize only N evenly spaced queries (quick runs)")
    ap.add_argument("--cache-dir", default=None, help=f"map cache (default {DEFAULT_CACHE})")
    ap.add_argument("--max-features", type=int, default=None)
    ap.add_argument("--retrieval-k", type=int, default=None)
    ap.add_argument("--ratio", type=float, default=None, help="query 2D-3D ratio test")
    ap.add_argument("--ransac-px", type=float, default=None)
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)

    ms = default_map_settings(args.features)
    if args.max_features is not None:
        ms = replace(ms, max_features=args.max_features)
    ls = default_localize_settings(args.features)
    for name, val in (("retrieval_k", args.retrieval_k), ("match_ratio", args.ratio),
                      ("ransac_px", args.ransac_px)):
        if val is not None:
            ls = replace(ls, **{name: val})
    try:
        report = run_peer(args.scene, args.features, args.threads, args.limit, args.cache_dir,
                          ms, ls, progress=not args.quiet)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_json(report, args.json)
    print(format_table(report, title=report["method"]))
    print("  per-stage median ms  " + "  ".join(
        f"{k} {v:.1f}" for k, v in report["peer_timing_ms"].items()))
    print(f"  mapping {report['mapping_s']:.0f} s"
          + (" (from cache)" if report["map_from_cache"] else "")
          + f", {report['map_stats']['points']} points; report: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
