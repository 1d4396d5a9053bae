"""The `seqace` command: build maps, localize, evaluate, and run the demo, without ROS."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from .bag_mapping import add_bag_arguments
from .inference import BACKENDS
from .settings import HEAD_PRECISIONS, MATCHERS, PRECISIONS, RelocConfig

log = logging.getLogger("seqace")


def _add_mapping_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("mapping")
    g.add_argument("--profile", default="cpu", choices=["cpu", "fast", "quality", "gpu"],
                   help="preset: cpu (default, ~7 min for 500 frames on 2 cores), fast (~2 min, "
                        "less accurate), quality (3x the cpu training, ~17 min on 2 cores, more accurate), "
                        "gpu (ACE's scale, ~5 min on a GPU)")
    g.add_argument("--iterations", type=int, help="training iterations")
    g.add_argument("--head-width", type=int, help="width of the head's layers")
    g.add_argument("--head-blocks", type=int, help="residual blocks in the head")
    g.add_argument("--buffer-size", type=int, help="training samples in the buffer")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--micro-batches", type=int,
                   help="on a CPU with 2 to N/2 threads, each batch runs as N parts on single-core worker "
                        "threads, which shares busy cores better (default 4; 1: OpenMP splits every matrix "
                        "product)")
    g.add_argument("--no-augment", action="store_true", help="disable scale/rotation/intensity augmentation")
    g.add_argument("--keyframes", action=argparse.BooleanOptionalAction, default=None,
                   help="store refinement keyframes in the map (default: on), which `--refine` uses")
    g.add_argument("--targets", choices=["keypoint", "center"], help="2D target of a cell")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    g.add_argument("--precision", choices=PRECISIONS)
    g.add_argument("--backend", choices=BACKENDS,
                   help="inference backend of the encoder while the buffer is built (training is torch); "
                        "auto: OpenVINO on a CPU where installed")
    g.add_argument("--seed", type=int)
    g.add_argument("--sequence", action=argparse.BooleanOptionalAction, default=False,
                   help="SeqACE's cross-frame loss: match each mapping frame to its keyframe "
                        "(cached under --cache-dir) and also reproject matched samples into "
                        "the keyframe (default: off, the single-frame ACE loss)")
    g.add_argument("--cache-dir", default=None,
                   help="where --sequence caches its matches (default: $SEQACE_CACHE_DIR, else "
                        "$XDG_CACHE_HOME/seqace_ros, else ~/.cache/seqace_ros; never the dataset)")
    g.add_argument("--matcher", choices=list(MATCHERS), default=None,
                   help="frame-keyframe matcher of --sequence (default mnn; lighterglue needs kornia)")
    g.add_argument("--sequence-targets", choices=["keypoint", "transfer"],
                   help="with --sequence: matched samples keep their target and the keyframe match "
                        "is shifted by the same offset (transfer, the default) or get the exact "
                        "keypoint as frame target (keypoint, SeqACE's choice)")


def mapping_config_from_args(args):
    from .mapping import profile

    over = {k: v for k, v in {
        "iterations": args.iterations, "head_width": args.head_width, "head_blocks": args.head_blocks,
        "buffer_size": args.buffer_size, "batch_size": args.batch_size, "targets": args.targets,
        "precision": args.precision, "seed": args.seed, "device": args.device,
        "num_threads": args.threads, "backend": args.backend,
        "micro_batches": getattr(args, "micro_batches", None)}.items() if v is not None}
    if args.no_augment:
        over["augment"] = False
    if getattr(args, "keyframes", None) is not None:
        over["keyframes"] = args.keyframes
    if args.sequence:
        over["sequence"] = True
    if getattr(args, "sequence_targets", None):
        over["sequence_targets"] = args.sequence_targets
    if getattr(args, "matcher", None):
        over["matching"] = replace(profile(args.profile).matching, matcher=args.matcher)
    return profile(args.profile, **over)


def _add_reloc_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("relocalization")
    g.add_argument("--cells", type=int, default=RelocConfig.num_cells, help="salient cells used per image (top-K)")
    g.add_argument("--min-inliers", type=int, default=None)
    g.add_argument("--image-height", type=int, default=None,
                   help="rows images are resized to before the encoder (default: the map's own; "
                        "smaller is faster, e.g. 384 for a 480-row map)")
    g.add_argument("--reloc-device", default="auto")
    g.add_argument("--encoder-precision", default="auto", choices=HEAD_PRECISIONS,
                   help="auto: bf16 on CPUs with bf16 units, fp16 on CUDA, else fp32; int8: OpenVINO + nncf, "
                        "calibrated on the map's keyframe images (faster, see benchmarks/README.md)")
    g.add_argument("--head-precision", default="auto", choices=HEAD_PRECISIONS,
                   help="precision of the head: auto (bf16 where the CPU has it), fp32, bf16, fp16, or int8 "
                        "(OpenVINO backend, needs nncf; faster, see benchmarks/README.md for its accuracy)")
    g.add_argument("--refine", action=argparse.BooleanOptionalAction, default=RelocConfig.refine,
                   help="refine each pose against the map's keyframes (maps made with --keyframes)")
    g.add_argument("--refine-keyframes", type=int, default=RelocConfig().tracking.keyframes,
                   help="nearest keyframes tracked into each image when refining; 1 is faster and a little "
                        "less precise within 1 cm (benchmarks/README.md, \"Session 11\")")
    g.add_argument("--reloc-backend", default="auto", choices=BACKENDS,
                   help="inference backend of the encoder and the head; auto: OpenVINO on a CPU where "
                        "installed, else torch")


def reloc_config_from_args(args):
    cfg = RelocConfig(num_cells=args.cells, precision=getattr(args, "head_precision", "auto"),
                      encoder_precision=getattr(args, "encoder_precision", "auto"),
                      image_height=getattr(args, "image_height", None))
    if args.min_inliers is not None:
        cfg = replace(cfg, min_inliers=args.min_inliers)
    cfg = replace(cfg, backend=getattr(args, "reloc_backend", "auto"), refine=getattr(args, "refine", True))
    if getattr(args, "refine_keyframes", None) is not None:
        cfg = replace(cfg, tracking=replace(cfg.tracking, keyframes=args.refine_keyframes))
    if getattr(args, "threads", None):
        cfg = cfg.with_threads(args.threads)
    return cfg.validate()


def _map_size_estimate(config) -> int:
    """Bytes a map of this configuration needs on disk, generously (fp16 head, points, metadata)."""
    w, blocks = config.head_width, config.head_blocks
    params = 64 * w + w + (3 * blocks + 2) * (w * w + w) + 4 * w + 4
    return 2 * params + 12 * config.map_points + (1 << 20)


def cmd_map(args) -> int:
    from .data.scene_folder import load_split
    from .mapfile import MapFileError, map_output_problem
    from .mapping import train_map

    src = Path(args.source)
    config = mapping_config_from_args(args)
    problem = map_output_problem(args.out, _map_size_estimate(config))
    if problem is not None:  # before training: minutes of work must not end in an unwritable path
        raise MapFileError(f"--out: {problem}")
    if getattr(args, "cache_dir", None):
        os.environ["SEQACE_CACHE_DIR"] = str(Path(args.cache_dir).expanduser().resolve())
    if src.is_dir() and (src / "train").is_dir():
        frames = load_split(src, "train")
        log.info("mapping %d frames of %s", len(frames), src / "train")
        t0 = time.perf_counter()
        scene_map = train_map(frames, config, progress=not args.quiet)
    else:
        from .bag_mapping import build_map_from_bag_args

        t0 = time.perf_counter()
        scene_map = build_map_from_bag_args(args, config)
    out = Path(args.out)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun only rank 0 writes the map
    scene_map.save(out)
    secs = scene_map.metadata["training"]["seconds"]
    matching = f"matching {secs['matching']:.0f} s, " if config.sequence else ""
    print(f"map written to {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.0f} s "
          f"({matching}buffer {secs['buffer']:.0f} s, training {secs['train']:.0f} s)")
    skipped = scene_map.metadata["training"].get("skipped_images") or []
    if skipped:
        print(f"{len(skipped)} unreadable or unusable mapping image(s) skipped, e.g. {skipped[0]}")
    return 0


def make_localizer_from_args(args, scene_map):
    """The Localizer the evaluate/demo arguments ask for."""
    from .relocalization.localizer import make_localizer

    return make_localizer(scene_map, reloc_config_from_args(args), mode=getattr(args, "mode", "single"),
                          device=args.reloc_device)


def cmd_evaluate(args) -> int:
    from .evaluation import evaluate_scene, format_table, per_frame_records, plot_report, write_json
    from .mapfile import load_map

    scene_map = load_map(args.map)
    report, results = evaluate_scene(args.scene, make_localizer_from_args(args, scene_map), args.mode,
                                     args.limit, progress=not args.quiet, scene_map=scene_map)
    print(format_table(report, title=f"{args.scene} ({report['mode']})"))
    unusable = [r for r in results if r.error and r.error.startswith("unusable")]
    if unusable:
        print(f"{len(unusable)} query image(s) unusable, e.g. {unusable[0].name}: {unusable[0].error}")
    if args.json:
        write_json({**report, "per_frame": per_frame_records(results)}, args.json)
        print(f"report written to {args.json}")
    if args.plot:
        plot_report(results, args.plot, title=f"{Path(args.scene).name}: {report['mode']} mode")
        print(f"plot written to {args.plot}")
    return 0


def cmd_info(args) -> int:
    from .mapfile import read_metadata

    meta = read_metadata(args.map)
    meta.get("training", {}).pop("loss_history", None)
    print(json.dumps(meta, indent=2))
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args, mapping_config_from_args(args), reloc_config_from_args(args))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seqace", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch and RANSAC")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("map", help="train a map from SCENE/train (DSAC*/ACE layout) or a ROS 2 bag")
    m.add_argument("source", help="scene folder (with train/) or a ROS 2 bag")
    m.add_argument("--out", required=True, help="map file to write (.safetensors)")
    _add_mapping_args(m)
    add_bag_arguments(m)
    m.set_defaults(func=cmd_map)

    e = sub.add_parser("evaluate", help="localize every image of SCENE/test and report accuracy")
    e.add_argument("scene")
    e.add_argument("--map", required=True)
    e.add_argument("--json", help="write the report (and per-frame results) here")
    e.add_argument("--plot", help="write a trajectory / error plot here (.png)")
    e.add_argument("--mode", default="single", choices=["single", "sequence", "dense"])
    e.add_argument("--limit", type=int, help="only the first N test frames")
    _add_reloc_args(e)
    e.set_defaults(func=cmd_evaluate)

    k = sub.add_parser("keyframes", help="add refinement keyframes to a map made without them (no retraining)")
    k.add_argument("map")
    k.add_argument("source", help="the scene folder (with train/) the map was made from")
    k.add_argument("--out", help="map file to write (default: replace MAP, atomically)")
    k.add_argument("--stride", type=int, default=None, help="every N-th mapping frame is a keyframe "
                   "(default: the mapping default)")
    k.set_defaults(func=cmd_keyframes)

    i = sub.add_parser("info", help="print a map file's metadata")
    i.add_argument("map")
    i.set_defaults(func=cmd_info)

    d = sub.add_parser("demo", help="make a synthetic scene (or use yours), map it, relocalize, report")
    d.add_argument("--scene", default="room",
                   help="synthetic scene kind (room, repetitive, courtyard) or a DSAC*/ACE scene folder")
    d.add_argument("--frames", type=int, default=None, help="mapping frames to render")
    d.add_argument("--out", default="seqace_demo", help="output folder")
    d.add_argument("--json", help="report file (default OUT/report.json)")
    d.add_argument("--mode", default="single", choices=["single", "sequence", "dense"])
    d.add_argument("--limit", type=int)
    _add_mapping_args(d)
    _add_reloc_args(d)
    d.set_defaults(func=cmd_demo)
    return p


def cmd_keyframes(args) -> int:
    from .data.scene_folder import load_split
    from .mapfile import load_map
    from .mapping import MappingConfig
    from .mapping.trainer import add_keyframes

    scene_map = load_map(args.map)
    stride = args.stride or MappingConfig.keyframe_stride
    if stride < 1:
        raise ValueError(f"--stride {stride} < 1")
    add_keyframes(scene_map, load_split(args.source, "train"), stride, progress=not args.quiet)
    if not scene_map.keyframes:
        print("seqace keyframes: no keyframe could be built; the map is unchanged", file=sys.stderr)
        return 1
    out = scene_map.save(args.out or args.map)
    info = scene_map.metadata["keyframes"]
    print(f"{out}: {info['keyframes']} keyframes, {info['points']} points, {info['bytes'] / 1e6:.1f} MB "
          f"of refinement data, built in {info['seconds']:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    from .threads import prefer_passive_waiting

    prefer_passive_waiting()  # before torch loads: OpenMP reads it once
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        from .threads import use_threads
        use_threads(args.threads)
    from .errors import SeqaceError

    try:
        return int(args.func(args) or 0)
    except (SeqaceError, ValueError, OSError) as exc:  # the one edge: a line, not a traceback
        print(f"seqace {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
