#!/usr/bin/env python3
"""The OpenVINO encoder compiled for any image size against one compiled per size, per precision.

    python benchmarks/encoder_shapes.py [--heights 480,384] [--calls 150] [--threads 2] [--json OUT.json]

The XFeat encoder as ``XFeatEncoder`` converts it (the cell outputs included), fed a mapping image
of ``../shared/data/7scenes_redkitchen_sfm`` resized to each height; int8 is NNCF-quantized on 40
mapping images as the relocalizer does. The two compilations of each precision take turns call by
call (so a busy moment slows both alike) and each one's time is the median over ``--calls`` calls.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
DEFAULT_SCENE = REPO.parent / "shared" / "data" / "7scenes_redkitchen_sfm"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", type=Path, default=DEFAULT_SCENE)
    ap.add_argument("--heights", default="480,384", help="encoder input heights (the images are 640x480)")
    ap.add_argument("--calls", type=int, default=150)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=REPO / "results" / "encoder_shapes.json")
    args = ap.parse_args()
    from seqace_ros.threads import prefer_passive_waiting

    prefer_passive_waiting()  # before torch loads, as the seqace command does
    import platform

    import numpy as np
    import openvino as ov
    import torch

    from seqace_ros.data.scene_folder import load_split
    from seqace_ros.encoder import XFeatCells, XFeatEncoder, prepare_image, to_gray
    from seqace_ros.evaluation import write_json
    from seqace_ros.inference import compile_model, convert, quantize_model

    torch.set_num_threads(args.threads)
    images = [to_gray(f.load_image()) for f in load_split(args.scene, "train")[:40]]
    net = XFeatEncoder(device="cpu", backend="openvino").net
    rows = []
    for height in (int(h) for h in args.heights.split(",")):
        tensors = [prepare_image(im, height, torch.device("cpu")).tensor for im in images]
        x = tensors[0].numpy()
        any_size = convert(XFeatCells(net), tensors[0].clone(), dynamic_axes=(2, 3))
        int8 = quantize_model(any_size, [t.numpy() for t in tensors])
        for precision, model, hint in (("int8", int8, "bf16"), ("bf16", any_size, "bf16"), ("fp32", any_size, "fp32")):
            fixed = model.clone()
            fixed.reshape({fixed.inputs[0]: ov.PartialShape(list(x.shape))})
            compiled = {"any size": compile_model(model, hint, args.threads),
                        "this size": compile_model(fixed, hint, args.threads)}
            for m in compiled.values():
                for _ in range(10):
                    m(x)
            times = {k: [] for k in compiled}
            for _ in range(args.calls):
                for k, m in compiled.items():
                    t0 = time.perf_counter()
                    m(x)
                    times[k].append((time.perf_counter() - t0) * 1000.0)
            a, b = float(np.median(times["any size"])), float(np.median(times["this size"]))
            rows.append({"height": height, "input": list(x.shape), "precision": precision,
                         "any_size_ms": a, "this_size_ms": b, "speedup": a / b})
            print(f"H={height} {precision}: any size {a:.2f} ms, this size {b:.2f} ms ({a / b:.2f}x)", flush=True)
    print(f"\n{'input':>12s} {'precision':>9s} {'any size':>9s} {'this size':>10s} {'speedup':>8s}")
    for r in rows:
        print(f"{r['input'][3]:>5d}x{r['input'][2]:<6d} {r['precision']:>9s} {r['any_size_ms']:8.2f}  "
              f"{r['this_size_ms']:9.2f} {r['speedup']:8.2f}x")
    write_json({"threads": args.threads, "calls": args.calls, "machine": platform.processor() or platform.machine(),
                "rows": rows}, args.json)
    print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
