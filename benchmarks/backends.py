#!/usr/bin/env python3
"""Inference backends and precisions on one map, with the structure-based peer in the same run.

    python benchmarks/backends.py --map results/sfm_default.safetensors
        [--scene ../shared/data/7scenes_redkitchen_sfm] [--configs torch:bf16,torch:fp32,openvino:bf16,openvino:fp32]
        # a config is backend:head_precision[:encoder_precision][/cells=N][/height=H][/kf=N][/refine=on|off],
        # e.g. openvino:int8:int8 or openvino:bf16/cells=500/height=384
        [--threads 2] [--frames 500] [--contention] [--gemm] [--peer sift|none] [--json OUT.json]

For each backend:precision, localize the test frames (single-frame mode, images decoded before the
clock starts) and report the median encoder / head / RANSAC / other / total ms, frames/s, the CPU
time per frame (all threads) and the recall at the four thresholds. ``--contention``: the same
again while one other process spins on a core (a robot's busy computer), as a share of the alone
rate. ``--gemm``: the head's matrix
products against the peak this machine reaches at the same shapes (torch and OpenVINO, fp32 and
bf16, several row counts), so the head's efficiency is a measured fraction, not a belief. OpenMP
waits PASSIVE, as in the seqace command and the nodes (``--omp-default``: OpenMP's default).
Prints tables and writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(HERE), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)

DEFAULT_SCENE = REPO.parent / "shared" / "data" / "7scenes_redkitchen_sfm"
KEYS = ("10cm_5deg", "5cm_5deg", "2cm_2deg", "1cm_1deg")


@contextlib.contextmanager
def busy_process():
    """One other process spinning on a core for as long as the block runs."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        proc.kill()
        proc.wait()


def add_omp_argument(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--omp-default", action="store_true",
                    help="leave OpenMP's default wait policy (spinning) instead of the PASSIVE one the "
                         "seqace command and the ROS nodes set")


def apply_omp_argument(args: argparse.Namespace) -> None:
    """Before torch loads: PASSIVE, as the seqace command and the nodes set it, unless --omp-default."""
    if not args.omp_default:
        from seqace_ros.threads import prefer_passive_waiting

        prefer_passive_waiting()


def head_flops(scene_map, rows: int) -> float:
    cfg = scene_map.metadata["head"]
    w, d = cfg["width"], cfg["in_dim"]
    layers = 3 * cfg["num_blocks"] + 2  # residual blocks of 3, then fc1 and fc2
    return 2.0 * rows * (d * w + layers * w * w + w * 4)


def parse_config(spec: str, cells: int) -> dict:
    """'openvino:int8:int8/cells=500/height=384/kf=1/refine=off' -> run_config's keyword arguments
    (kf: keyframes the refinement tracks)."""
    base, *extras = spec.split("/")
    backend, _, rest = base.partition(":")
    precision, _, enc = rest.partition(":")
    out = {"backend": backend, "precision": precision or "auto", "encoder_precision": enc or None,
           "cells": cells, "height": None, "refine": True, "keyframes": None}
    for item in extras:
        key, _, value = item.partition("=")
        if key == "cells":
            out["cells"] = int(value)
        elif key == "height":
            out["height"] = int(value)
        elif key == "kf":
            out["keyframes"] = int(value)
        elif key == "refine" and value in ("on", "off"):
            out["refine"] = value == "on"
        else:
            raise SystemExit(f"config {spec!r}: unknown option {item!r} (cells=N, height=H, kf=N, refine=on|off)")
    return out


def run_config(scene_map, frames, backend: str, precision: str, threads: int, cells: int,
               encoder_precision: str | None = None, height: int | None = None, refine: bool = True,
               keyframes: int | None = None) -> dict:
    import numpy as np

    from seqace_ros.evaluation import localize_frames, summarize
    from seqace_ros.relocalization import RelocConfig, Relocalizer

    # A head in int8 leaves the encoder at auto (bf16 where the CPU has it) unless told otherwise.
    if encoder_precision is None:
        encoder_precision = "auto" if precision == "int8" else precision
    cfg = RelocConfig(num_cells=cells, backend=backend, precision=precision, image_height=height,
                      refine=refine, encoder_precision=encoder_precision).with_threads(threads)
    if keyframes is not None:
        cfg = replace(cfg, tracking=replace(cfg.tracking, keyframes=keyframes))
    reloc = Relocalizer(scene_map, cfg, device="cpu")
    cpu = []

    def localize(image, K):
        # CPU time of the whole process (every thread) per frame: what the frame costs the robot.
        c0 = time.process_time()
        result = reloc.localize(image, K)
        cpu.append((time.process_time() - c0) * 1000.0)
        return result

    label = (f"{backend} {precision}" + (f" enc {encoder_precision}" if encoder_precision != precision else "")
             + (f" K={cells}" if cells != RelocConfig.num_cells else "") + (f" H={height}" if height else "")
             + ("" if refine else " unrefined") + (f" kf={keyframes}" if keyframes is not None and refine else ""))
    results = localize_frames(localize, frames, desc=label)
    report = summarize(results, method=f"seqace {label}", backend=backend, encoder_precision=encoder_precision,
                       refinement=reloc.describe()["refinement"],
                       precision=precision, threads=threads, num_cells=cells, image_height=height,
                       refine_keyframes=cfg.tracking.keyframes if refine else None,
                       cpu_ms_per_frame=float(np.median(cpu)))
    t = report["timing_ms"]
    t["other"] = (t["total"] - t.get("encoder", 0.0) - t.get("head", 0.0) - t.get("ransac", 0.0)
                  - t.get("refine", 0.0))
    if t.get("head"):
        report["head_gflops"] = head_flops(scene_map, cells) / (t["head"] * 1e-3) / 1e9
    return report


def calibrate_from_frames(scene_map, scene: Path, frames: int, cells: int, rows: int = 8192) -> None:
    """Give a map made before calibration features existed those of ``frames`` mapping images (the
    top-``cells`` salient cells of each, as the relocalizer selects), sampled to ``rows``."""
    import numpy as np
    import torch

    from seqace_ros.data.scene_folder import load_split
    from seqace_ros.encoder import build_encoder

    train = load_split(scene, "train")
    enc = build_encoder(scene_map.encoder_name, device="cpu",
                        image_height=scene_map.metadata["encoder"].get("image_height", 480))
    feats = []
    for f in train[:: max(1, len(train) // frames)][:frames]:
        e = enc.encode(f.load_image())
        valid = torch.nonzero(e.valid).squeeze(1)
        feats.append(e.features[valid[torch.topk(e.saliency[valid], min(cells, valid.numel())).indices]])
    allf = torch.cat(feats)
    pick = torch.randperm(len(allf), generator=torch.Generator().manual_seed(0))[:rows]
    scene_map.calibration = allf[pick].to(torch.float16).numpy()


def gemm_ceiling(threads: int, width: int, rows=(1000, 2048, 8192), repeats: int = 30) -> list[dict]:
    """GFLOP/s of one (rows x width) @ (width x width) product, torch and OpenVINO, fp32 and bf16."""
    import numpy as np
    import torch

    from seqace_ros.inference import compile_for_cpu, openvino_available

    torch.set_num_threads(threads)
    out = []

    def timed(fn) -> float:
        for _ in range(3):
            fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts))

    for m in rows:
        flops = 2.0 * m * width * width
        a = torch.randn(m, width)
        lin = torch.nn.Linear(width, width, bias=False).eval()
        with torch.no_grad():
            for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                x, w = a.to(dtype), lin.weight.t().contiguous().to(dtype)
                s = timed(lambda: torch.matmul(x, w))
                out.append({"runtime": "torch", "precision": prec, "rows": m, "gflops": flops / s / 1e9})
                if openvino_available():
                    model = compile_for_cpu(lin, a, prec, threads)
                    xn = a.numpy()
                    s = timed(lambda: model(xn))
                    out.append({"runtime": "openvino", "precision": prec, "rows": m, "gflops": flops / s / 1e9})
    return out


def main() -> int:
    from seqace_ros.settings import RelocConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--map", type=Path, required=True, help="map file (seqace map SCENE --out MAP)")
    ap.add_argument("--scene", type=Path, default=DEFAULT_SCENE)
    ap.add_argument("--configs", default="torch:bf16,torch:fp32,openvino:bf16,openvino:fp32",
                    help="comma-separated backend:head_precision[:encoder_precision][/cells=N][/height=H]"
                         "[/refine=on|off]")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cells", type=int, default=RelocConfig.num_cells)
    ap.add_argument("--frames", type=int, default=500, help="test frames localized per configuration")
    ap.add_argument("--contention", action="store_true",
                    help="also run each configuration beside one busy process")
    ap.add_argument("--gemm", action="store_true", help="measure the GEMM ceiling at the head's shapes")
    ap.add_argument("--calibrate-frames", type=int, default=50,
                    help="for int8 with a map that has no calibration features: take them from this many "
                         "mapping frames")
    ap.add_argument("--peer", default="sift", choices=["sift", "xfeat", "none"])
    ap.add_argument("--json", type=Path, default=REPO / "results" / "backends.json")
    add_omp_argument(ap)
    args = ap.parse_args()
    apply_omp_argument(args)

    import torch

    from seqace_ros.data.scene_folder import load_split
    from seqace_ros.evaluation import write_json
    from seqace_ros.mapfile import load_map
    from seqace_ros.precision import cpu_supports_bf16

    torch.set_num_threads(args.threads)
    scene_map = load_map(args.map)
    if ":int8" in args.configs and not len(scene_map.calibration):
        calibrate_from_frames(scene_map, args.scene, args.calibrate_frames, args.cells)
    frames = load_split(args.scene, "test")[: args.frames]
    rows = []
    for spec in [c.strip() for c in args.configs.split(",") if c.strip()]:
        c = parse_config(spec, args.cells)
        run = (scene_map, frames, c["backend"], c["precision"], args.threads, c["cells"], c["encoder_precision"],
               c["height"], c["refine"], c["keyframes"])
        report = run_config(*run)
        if args.contention:
            with busy_process():
                busy = run_config(*run)
            report["contention"] = {"fps": busy["fps"], "timing_ms": busy["timing_ms"],
                                    "share_of_alone": busy["fps"] / report["fps"], "recall": busy["recall"]}
        rows.append(report)
    peer = None
    if args.peer != "none":
        from peer_structure import run_peer

        peer = run_peer(args.scene, features=args.peer, threads=args.threads, limit=args.frames)
        peer["method"] = f"structure peer ({args.peer})"
    gemm = gemm_ceiling(args.threads, scene_map.metadata["head"]["width"]) if args.gemm else []

    print(f"\nOMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(default)')}")
    print(f"map {args.map}, scene {args.scene}, {len(frames)} frames, {args.threads} threads, "
          f"K={args.cells}, bf16 units: {cpu_supports_bf16()}, load average before: {os.getloadavg()[0]:.2f}")
    head = (f"{'method':46s} " + " ".join(f"{k:>9s}" for k in KEYS) + f" {'med cm':>7s} {'enc':>6s} {'head':>6s}"
            f" {'ransac':>6s} {'refine':>6s} {'other':>6s} {'total':>6s} {'fps':>6s} {'x peer':>6s} {'cpu ms':>6s}")
    print(head)
    peer_ms = peer["timing_ms"]["total"] if peer else None
    for r in rows + ([peer] if peer else []):
        t = r["timing_ms"]
        x_peer = f"{peer_ms / t['total']:6.1f}" if peer_ms else "      "
        print(f"{r['method']:46s} " + " ".join(f"{r['recall'][k]:8.1f}%" for k in KEYS)
              + f" {r['median_translation_cm'] or float('nan'):7.2f}"
              + "".join(f" {t.get(s, float('nan')):6.1f}" for s in ("encoder", "head", "ransac", "refine", "other"))
              + f" {t['total']:6.1f} {r['fps'] or 0:6.1f} {x_peer} {r.get('cpu_ms_per_frame', float('nan')):6.1f}")
    if args.contention:
        print("\nbeside one busy process:")
        for r in rows:
            c = r["contention"]
            print(f"{r['method']:46s} {c['fps']:6.1f} frames/s = {100 * c['share_of_alone']:5.1f}% of alone"
                  f" ({r['fps']:.1f}); 5cm recall {c['recall']['5cm_5deg']:.1f}%")
    for r in rows:
        if r.get("head_gflops"):
            print(f"head {r['method']:28s} {r['head_gflops']:7.1f} GFLOP/s")
    if gemm:
        print("\nGEMM (rows x width) @ (width x width):")
        for g in gemm:
            print(f"  {g['runtime']:9s} {g['precision']:5s} rows {g['rows']:5d}: {g['gflops']:7.1f} GFLOP/s")
    write_json({"scene": str(args.scene), "map": str(args.map), "threads": args.threads,
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
                "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                "bf16_units": cpu_supports_bf16(), "results": rows, "peer": peer, "gemm": gemm}, args.json)
    print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
