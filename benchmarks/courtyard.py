#!/usr/bin/env python3
"""Building scale: synthetic courtyards of growing size, seqace_ros against the structure peer.

    python benchmarks/courtyard.py [--sizes 20,35,50] [--photos-every 15] [--photo-size 1280x960] [--queries 150]
        [--threads 2] [--peer sift|none] [--json results/courtyard.json] [--work DIR] [--reuse-networks]

For each courtyard length: render the scene (``generate_scene(kind="courtyard")``: 3-storey
facades around a 16 m deep court, a robot camera driving along it at 2 m/s, 15 mapping frames per
metre, 640x480, ``--queries`` query frames), map it with the mapping defaults (what `seqace map`
does, keyframes included), localize the queries with and without the keyframe refinement, and map
and localize the same frames with the peer. With ``--photos-every N`` the same is done for a
sparse mapping set, every N-th mapping frame (a few photos instead of a drive), and with
``--photo-size WxH`` for photos of that size taken at the same places (standing still: no
motion blur). Prints one table,
writes JSON and a plot of the median error against the courtyard's area. ``--reuse-networks``: where
DIR already holds a court's map, keep its network and rebuild only its refinement keyframes with
today's settings (what `seqace keyframes` does; the map time reported is then the keyframes').
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(HERE), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)

KEYS = ("10cm_5deg", "5cm_5deg", "2cm_2deg", "1cm_1deg")
DEPTH_M = 16.0  # the courtyard's depth (layouts.build_courtyard)
FRAMES_PER_M = 15  # 2 m/s at 30 Hz
SPEED = 2.0
FPS = 30.0


def _link_split(src: Path, dst: Path, step: int = 1) -> None:
    """Symlinks in ``dst`` to every ``step``-th frame of the split folder ``src``."""
    names = sorted(p.name.split(".")[0] for p in (src / "rgb").iterdir())[::step]
    for sub in ("rgb", "poses", "calibration"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
        for f in (src / sub).iterdir():
            if f.name.split(".")[0] in names and not (dst / sub / f.name).exists():
                (dst / sub / f.name).symlink_to(f.resolve())


def sparse_copy(scene: Path, out: Path, every: int) -> Path:
    """A scene folder of symlinks: every ``every``-th mapping frame and all the queries."""
    _link_split(scene / "train", out / "train", every)
    _link_split(scene / "test", out / "test")
    return out


def photo_set(drive: Path, size_m: float, every: int, width: int, height: int, seed: int, work: Path) -> Path:
    """A scene folder whose mapping frames are photos of ``width`` x ``height`` taken along the
    drive's path, one where every ``every``-th drive frame was (the same world and path, rendered
    at a lower frame rate), and whose queries are the drive's (the robot's camera)."""
    from seqace_ros.data.synthetic import camera_noise, generate_scene

    render = work / f"courtyard_{size_m:g}m_photos_{width}x{height}_still_render"
    if not (render / "scene.json").is_file():
        n_drive = int(FRAMES_PER_M * size_m)
        # The drive's camera imperfections, except motion blur: a photo is taken standing still (at
        # the photos' frame rate the robot's shutter would smear them over metres).
        still = dict(camera_noise("low").as_dict(), motion_blur=0.0)
        generate_scene(render, kind="courtyard", size_m=size_m, mapping_frames=(n_drive - 1) // every + 1,
                       query_frames=1, speed=SPEED, fps=FPS / every, width=width, height=height, seed=seed,
                       noise=still, overwrite=True)
    out = work / f"courtyard_{size_m:g}m_photos_{width}x{height}_still"
    _link_split(render / "train", out / "train")
    _link_split(drive / "test", out / "test")
    return out


def evaluate(scene: Path, label: str, threads: int, peer: str, work: Path, iterations: int | None = None,
             reuse_network: bool = False) -> list[dict]:
    import torch

    from seqace_ros.data.scene_folder import load_split
    from seqace_ros.evaluation import localize_frames, summarize
    from seqace_ros.mapfile import load_map
    from seqace_ros.mapping import MappingConfig, profile, train_map
    from seqace_ros.mapping.trainer import add_keyframes
    from seqace_ros.relocalization import RelocConfig, Relocalizer

    torch.set_num_threads(threads)
    train = load_split(scene, "train")
    t0 = time.perf_counter()
    over = {"iterations": iterations} if iterations else {}
    path = work / f"{label}.safetensors"
    reused = reuse_network and path.is_file()
    if reused:
        scene_map = add_keyframes(load_map(path), train, MappingConfig.keyframe_stride)
        path = work / f"{label}_keyframes_rebuilt.safetensors"
    else:
        scene_map = train_map(train, profile("cpu", num_threads=threads, device="cpu", **over), progress=True)
    mapping_s = time.perf_counter() - t0
    path = scene_map.save(path)
    rows = []
    test = load_split(scene, "test")
    for refine in (True, False):
        reloc = Relocalizer(scene_map, RelocConfig(refine=refine).with_threads(threads), device="cpu")
        r = summarize(localize_frames(reloc.localize, test, desc=f"{label} refine={refine}"),
                      method=f"seqace_ros{'' if refine else ', --no-refine'}", mapping_s=mapping_s)
        r.update(scene=label, mapping_frames=len(train), map_mb=os.path.getsize(path) / 1e6, network_reused=reused,
                 keyframes=scene_map.metadata.get("keyframes", {}).get("keyframes", 0))
        rows.append(r)
    if peer != "none":
        from peer_structure import run_peer

        p = run_peer(scene, features=peer, threads=threads)
        p.update(method=f"structure peer ({peer})", scene=label, mapping_frames=len(train))
        rows.append(p)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind in sorted({r["set"] for r in rows}):
        for method in dict.fromkeys(r["method"] for r in rows):
            pts = sorted((r["area_m2"], r["median_translation_cm"]) for r in rows
                         if r["method"] == method and r["set"] == kind and r["median_translation_cm"] is not None)
            if pts:
                ax.plot(*zip(*pts), marker="o", ls="-" if kind == "drive" else "--", label=f"{method} ({kind})")
    ax.set_xlabel("courtyard area (m²)")
    ax.set_ylabel("median position error (cm)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="20,35,50", help="courtyard lengths in metres")
    ap.add_argument("--photos-every", type=int, default=15, help="sparse mapping set: every N-th frame (0: none)")
    ap.add_argument("--photo-size", default="",
                    help="WxH, e.g. 1280x960: also map from photos of this size taken where the sparse "
                         "set's frames are (queries stay the drive's 640x480 frames)")
    ap.add_argument("--sets", default="drive,sparse,photos",
                    help="which mapping sets to run: drive, sparse (every N-th frame), photos (--photo-size)")
    ap.add_argument("--queries", type=int, default=150)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peer", default="sift", choices=["sift", "xfeat", "none"])
    ap.add_argument("--iterations", type=int, default=None, help="training iterations (default: the profile's)")
    ap.add_argument("--json", type=Path, default=REPO / "results" / "courtyard.json")
    ap.add_argument("--work", type=Path, default=REPO / "results" / "courtyard", help="scenes and maps")
    ap.add_argument("--reuse-networks", action="store_true",
                    help="keep the networks of maps already in --work; rebuild only their keyframes")
    args = ap.parse_args()
    from seqace_ros.threads import prefer_passive_waiting

    prefer_passive_waiting()  # before torch loads, as the seqace command does
    from seqace_ros.data.synthetic import generate_scene
    from seqace_ros.evaluation import write_json

    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in [float(s) for s in args.sizes.split(",") if s.strip()]:
        scene = args.work / f"courtyard_{size:g}m"
        if not (scene / "scene.json").is_file():
            generate_scene(scene, kind="courtyard", size_m=size, mapping_frames=int(FRAMES_PER_M * size),
                           query_frames=args.queries, speed=SPEED, seed=args.seed, overwrite=True)
        wanted = {x.strip() for x in args.sets.split(",")}
        sets = [("drive", scene)] if "drive" in wanted else []
        if args.photos_every > 1:
            if "sparse" in wanted:
                sets.append((f"every {args.photos_every}th", sparse_copy(scene, args.work / f"{scene.name}_sparse",
                                                                         args.photos_every)))
            if args.photo_size and "photos" in wanted:
                w, h = (int(v) for v in args.photo_size.lower().split("x"))
                sets.append((f"photos {w}x{h}", photo_set(scene, size, args.photos_every, w, h, args.seed,
                                                          args.work)))
        for kind, folder in sets:
            for r in evaluate(folder, folder.name, args.threads, args.peer, args.work, args.iterations,
                              args.reuse_networks):
                r.update(size_m=size, area_m2=size * DEPTH_M, set=kind)
                rows.append(r)
    print()
    print(f"{'scene':28s} {'method':26s} {'frames':>6s} " + " ".join(f"{k:>10s}" for k in KEYS)
          + f" {'med cm':>7s} {'med deg':>7s} {'ms':>6s} {'map s':>6s} {'map MB':>6s}")
    for r in rows:
        print(f"{r['scene']:28s} {r['method']:26s} {r['mapping_frames']:6d} "
              + " ".join(f"{r['recall'][k]:9.1f}%" for k in KEYS)
              + f" {r['median_translation_cm'] or float('nan'):7.2f} {r['median_rotation_deg'] or float('nan'):7.2f}"
              f" {r.get('timing_ms', {}).get('total', float('nan')):6.1f} {r.get('mapping_s', float('nan')):6.0f}"
              f" {r.get('map_mb', float('nan')):6.1f}")
    write_json({"threads": args.threads, "cpu_count": os.cpu_count(), "results": rows}, args.json)
    plot(rows, args.json.with_suffix(".png"))
    print(f"\nJSON written to {args.json}, plot to {args.json.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
