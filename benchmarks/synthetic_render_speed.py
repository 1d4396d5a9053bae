"""How long the synthetic scene generator takes: scene build, per-frame render stages, and the
demo's data (300 mapping + 200 query frames at 640x480 by default) end to end.

    python benchmarks/synthetic_render_speed.py --repeats 3 --json /tmp/synthetic_render_speed.json

Per-frame numbers are medians over the frames of a mapping trajectory, taken on one thread
(OpenCV limited to one thread too), as wall time and process CPU time; the end-to-end runs use
each of the ``--workers`` thread counts. The machine's load average is recorded: other
processes sharing the cores make wall times longer, CPU times much less so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from seqace_ros.data.synthetic import generate_scene, intrinsics, make_scene, make_trajectories
from seqace_ros.data.synthetic.noise import apply_noise, camera_noise
from seqace_ros.data.synthetic.render import _cast_camera, _shade, render_frame, scene_tables


def timed(fn, *args, **kwargs):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - w0, time.process_time() - c0


def per_frame_stages(kind: str, width: int, height: int, frames: int, seed: int) -> list[dict]:
    scene = make_scene(kind, seed)
    K = intrinsics(width, height)
    poses = make_trajectories(scene, frames, 1, seed=seed).mapping.poses
    tables = scene_tables(scene)
    rng = np.random.default_rng(0)
    rows: dict[str, list[tuple[float, float]]] = {}

    def add(name, wall, cpu):
        rows.setdefault(name, []).append((wall, cpu))

    for pose in poses:
        for ss in (1, 2):
            (norm, hits), w, c = timed(_cast_camera, tables, pose, K, width, height, ss)
            add(f"ray cast (supersample {ss})", w, c)
            img, w, c = timed(_shade, scene, tables, norm, hits, float(K[0, 0]) * ss)
            add(f"texture + lighting (supersample {ss})", w, c)
            r, w, c = timed(render_frame, scene, pose, K, width, height, ss)
            add(f"clean render total (supersample {ss})", w, c)
        for preset in ("low", "medium"):
            noisy, w, c = timed(apply_noise, r.image, camera_noise(preset), rng, 1.05,
                                np.array([3.0, 1.0]))
            add(f"camera noise '{preset}'", w, c)
        _, w, c = timed(cv2.imencode, ".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 95])
        add("JPEG encode (quality 95)", w, c)
        _, w, c = timed(cv2.imencode, ".png", noisy, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        add("PNG encode (level 3)", w, c)
    return [{"stage": k, "kind": kind, "median_wall_ms": 1e3 * float(np.median([v[0] for v in vals])),
             "median_cpu_ms": 1e3 * float(np.median([v[1] for v in vals])), "frames": len(vals)}
            for k, vals in rows.items()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kinds", nargs="+", default=["room", "repetitive"])
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--mapping-frames", type=int, default=300)
    ap.add_argument("--query-frames", type=int, default=200)
    ap.add_argument("--stage-frames", type=int, default=20, help="frames for the per-stage medians")
    ap.add_argument("--repeats", type=int, default=3, help="runs of scene build and end to end")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                    help="worker thread counts to time end to end")
    ap.add_argument("--noise", default="low")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=Path("synthetic_render_speed.json"))
    args = ap.parse_args()

    load_before = os.getloadavg()
    cv2.setNumThreads(1)
    stages = []
    for kind in args.kinds:
        builds = [timed(make_scene, kind, args.seed)[1:] for _ in range(args.repeats)]
        stages.append({"stage": "scene build", "kind": kind,
                       "median_wall_ms": 1e3 * float(np.median([b[0] for b in builds])),
                       "median_cpu_ms": 1e3 * float(np.median([b[1] for b in builds])),
                       "frames": None})
        stages += per_frame_stages(kind, args.width, args.height, args.stage_frames, args.seed)
    cv2.setNumThreads(-1)  # back to OpenCV's default for the end-to-end runs

    runs = []
    for kind, workers in [(k, w) for k in args.kinds for w in args.workers]:
        for rep in range(args.repeats):
            tmp = Path(tempfile.mkdtemp(prefix="synthetic_bench_"))
            try:
                _, wall, cpu = timed(generate_scene, tmp / "scene", kind, args.mapping_frames,
                                     args.query_frames, args.width, args.height, args.seed,
                                     args.noise, workers=workers, progress=False)
                size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            runs.append({"kind": kind, "workers": workers, "repeat": rep, "wall_s": wall,
                         "cpu_s": cpu, "megabytes": size / 2**20})
    end_to_end = []
    for kind, workers in [(k, w) for k in args.kinds for w in args.workers]:
        mine = [r for r in runs if r["kind"] == kind and r["workers"] == workers]
        end_to_end.append({"kind": kind, "workers": workers,
                           "median_wall_s": float(np.median([r["wall_s"] for r in mine])),
                           "median_cpu_s": float(np.median([r["cpu_s"] for r in mine])),
                           "megabytes": mine[0]["megabytes"], "repeats": len(mine)})

    report = {
        "benchmark": "synthetic_render_speed", "width": args.width, "height": args.height,
        "mapping_frames": args.mapping_frames, "query_frames": args.query_frames,
        "workers": args.workers, "noise": args.noise, "seed": args.seed,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "opencv": cv2.__version__,
                    "numpy": np.__version__},
        "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        "stages": stages, "end_to_end": end_to_end, "runs": runs,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\nper-frame stages at {args.width}x{args.height}, one thread (medians)")
    print(f"{'kind':<11} {'stage':<40} {'wall ms':>9} {'cpu ms':>9}")
    for s in stages:
        print(f"{s['kind']:<11} {s['stage']:<40} {s['median_wall_ms']:9.1f} {s['median_cpu_ms']:9.1f}")
    print(f"\nend to end: {args.mapping_frames} mapping + {args.query_frames} query frames, "
          f"noise '{args.noise}' (medians of {args.repeats})")
    print(f"{'kind':<11} {'threads':>7} {'wall s':>8} {'cpu s':>8} {'MB':>7}")
    for e in end_to_end:
        print(f"{e['kind']:<11} {e['workers']:7d} {e['median_wall_s']:8.1f} {e['median_cpu_s']:8.1f} "
              f"{e['megabytes']:7.1f}")
    print(f"\nload average (1 min) before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs; wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
