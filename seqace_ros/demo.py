"""`seqace demo`: the whole system on a scene it makes itself (or on yours), honestly measured.

Renders a synthetic scene in the DSAC*/ACE layout (unless a scene folder is given), builds a map,
relocalizes every query frame, prints the results table and writes the JSON report, a trajectory /
error plot and a few query images with their inliers drawn.
"""

from __future__ import annotations

import logging
import time
from argparse import Namespace
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .mapping import MappingConfig
    from .relocalization import RelocConfig

log = logging.getLogger(__name__)

# Demo defaults: small enough for a few minutes on a 2-core laptop, large enough to be honest.
DEMO_MAPPING_FRAMES = 300
DEMO_QUERY_FRAMES = 200
DEMO_ITERATIONS = 2500
DEMO_BUFFER = 800_000


def _scene_folder(args: Namespace, out: Path) -> tuple[Path, float, str]:
    """(scene folder, seconds spent generating it, description)."""
    src = Path(args.scene)
    if src.is_dir():
        if not (src / "train").is_dir() or not (src / "test").is_dir():
            raise ValueError(f"{src} is not a DSAC*/ACE scene folder: it needs train/ and test/")
        return src, 0.0, f"scene folder {src}"
    from .data.synthetic import generate_scene

    kind = args.scene
    n_map = args.frames or DEMO_MAPPING_FRAMES
    n_query = max(n_map * DEMO_QUERY_FRAMES // DEMO_MAPPING_FRAMES, 20)
    folder = out / f"scene_{kind}"
    t0 = time.perf_counter()
    generate_scene(folder, kind=kind, mapping_frames=n_map, query_frames=n_query,
                   seed=args.seed if args.seed is not None else 0, progress=not args.quiet)
    secs = time.perf_counter() - t0
    print(f"rendered synthetic scene '{kind}': {n_map} mapping + {n_query} query frames in {secs:.1f} s "
          f"-> {folder}")
    return folder, secs, f"synthetic '{kind}' scene"


def _demo_mapping_config(args: Namespace, cfg: MappingConfig) -> MappingConfig:
    # Unless the user chose otherwise, use the demo's smaller budget for the bundled scene.
    if args.iterations is None and args.profile == "cpu":
        cfg = replace(cfg, iterations=DEMO_ITERATIONS)
    if args.buffer_size is None and args.profile == "cpu":
        cfg = replace(cfg, buffer_size=DEMO_BUFFER)
    return cfg.validate()


def run_demo(args: Namespace, mapping_config: MappingConfig, reloc_config: RelocConfig) -> int:
    """The demo of the ``seqace demo`` arguments, with the settings the CLI derived from them."""
    from .data.scene_folder import load_split
    from .evaluation import evaluate_scene, format_table, per_frame_records, plot_report, write_json
    from .mapping import train_map
    from .relocalization.localizer import make_localizer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    scene, gen_s, what = _scene_folder(args, out)
    config = _demo_mapping_config(args, mapping_config)
    frames = load_split(scene, "train")
    print(f"mapping {len(frames)} frames ({config.iterations} iterations, head width "
          f"{config.head_width}, buffer {config.buffer_size})")
    t0 = time.perf_counter()
    scene_map = train_map(frames, config, progress=not args.quiet)
    map_s = time.perf_counter() - t0
    map_path = scene_map.save(out / "map.safetensors")
    print(f"map written to {map_path} in {map_s:.1f} s")
    t0 = time.perf_counter()
    localizer = make_localizer(scene_map, reloc_config, mode=args.mode, device=args.reloc_device)
    report, results = evaluate_scene(scene, localizer, args.mode, args.limit, progress=not args.quiet,
                                     scene_map=scene_map)
    loc_s = time.perf_counter() - t0
    report.update({"mapping_s": map_s, "generation_s": gen_s, "localization_wall_s": loc_s,
                   "demo_wall_s": time.perf_counter() - t_all, "source": what})
    print()
    print(format_table(report, title=f"seqace demo on {what} ({report['mode']} mode)"))
    print(f"  mapping {map_s:.0f} s, scene generation {gen_s:.0f} s, whole demo "
          f"{report['demo_wall_s']:.0f} s")
    json_path = Path(args.json) if args.json else out / "report.json"
    write_json({**report, "per_frame": per_frame_records(results)}, json_path)
    plot_report(results, out / "trajectory.png", title=f"seqace demo: {what}")
    _plot_inliers(scene, scene_map, reloc_config, args, out / "inliers.png")
    print(f"report {json_path}, plots {out / 'trajectory.png'} and {out / 'inliers.png'}")
    return 0


def _plot_inliers(scene: Path, scene_map, reloc_config: RelocConfig, args: Namespace, path: Path,
                  count: int = 4) -> None:
    """A few query images with their 2D-3D correspondences: inliers green, outliers red."""
    import cv2
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .data.scene_folder import load_split
    from .relocalization import Relocalizer

    frames = load_split(scene, "test")
    picks = np.linspace(0, len(frames) - 1, num=min(count, len(frames))).astype(int)
    reloc = Relocalizer(scene_map, reloc_config, device=args.reloc_device)
    fig, axes = plt.subplots(1, len(picks), figsize=(5 * len(picks), 4.2))
    for ax, i in zip(np.atleast_1d(axes), picks):
        f = frames[i]
        img = f.load_image()
        r = reloc.localize(img, f.intrinsics(img.shape[1], img.shape[0]))
        ax.imshow(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        if len(r.points2d):
            p, inl = r.points2d, r.inliers
            ax.scatter(p[~inl, 0], p[~inl, 1], s=3, c="red", alpha=0.6)
            ax.scatter(p[inl, 0], p[inl, 1], s=3, c="lime")
        status = (f"{r.num_inliers} inliers" if r.localized else f"lost ({r.message})")
        if r.localized:
            from .geometry import pose_errors
            t, a = pose_errors(r.pose_c2w, f.pose_c2w)
            status += f", error {t * 100:.1f} cm / {a:.2f} deg"
        ax.set_title(f"{f.name}: {status}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
