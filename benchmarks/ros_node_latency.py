#!/usr/bin/env python3
"""Image-to-pose latency, sustained frame rate and memory of relocalization_node under a 30 Hz camera.

The node runs as its own process (as `ros2 run` starts it); this script publishes the query images of
a scene at --rate Hz (sensor_msgs/Image bgr8 + CameraInfo, stamped at publication) and records when
each frame's pose arrives (with --rviz also the inlier marker, which a lost frame answers with, and
the path, as RViz subscribes to them), and the node's RSS once a second. Traffic stays on loopback, in its own ROS domain, with the repository's Fast DDS SHM profile.

    python benchmarks/ros_node_latency.py                     # tiny synthetic scene, 120 s at 30 Hz
    python benchmarks/ros_node_latency.py --duration 20 --json results/ros_node_latency.json
    python benchmarks/ros_node_latency.py --map maps/kitchen.safetensors --scene ../shared/data/7scenes_redkitchen

Latency is measured from publication to reception in the same clock (one machine). With images
faster than processing the node drops all but the newest (queue of one), so the sustained rate is
what the CPU allows and the latency stays bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))
sys.path.insert(0, str(REPO))

from ros_support.harness import NodeProcess, apply_environment, pick_domain_id, rss_mb, write_params  # noqa: E402


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def load_queries(scene: Path, limit: int):
    from seqace_ros.data.scene_folder import load_split

    frames = load_split(scene, "test")[:limit]
    out = []
    for f in frames:
        img = f.load_image()
        out.append((img, f.intrinsics(img.shape[1], img.shape[0])))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc), in seconds."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args) -> dict:
    if args.map:
        map_path, scene = Path(args.map), Path(args.scene)
    else:
        from ros_support.tiny_map import build_tiny_scene, core_missing

        reason = core_missing()
        if reason:
            raise SystemExit(f"cannot build the tiny scene: {reason}")
        tiny = build_tiny_scene(Path(args.cache))
        map_path, scene = tiny.map_path, tiny.scene_dir
    queries = load_queries(scene, args.frames)
    env = apply_environment(pick_domain_id())
    # The test harness caps OpenMP at one thread (tests run side by side); a robot's node has no cap,
    # so threads=0 ("all cores") is measured as a user gets it.
    env.pop("OMP_NUM_THREADS", None)
    import rclpy
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from visualization_msgs.msg import Marker

    out_dir = Path(args.workdir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = write_params(out_dir / "params.yaml", {"map_path": str(map_path), "mode": args.mode, "device": "cpu",
                                                    "num_cells": args.cells, "tf_publish_rate": 20.0,
                                                    "backend": args.backend, "threads": args.threads,
                                                    "head_precision": args.head_precision,
                                                    "encoder_precision": args.encoder_precision,
                                                    "image_height": args.image_height,
                                                    "refine": not args.no_refine,
                                                    "refine_keyframes": args.refine_keyframes})
    proc = NodeProcess(params, env, out_dir / "node.log",
                       ["-r", "image:=/camera/image_raw", "-r", "camera_info:=/camera/camera_info"])
    rclpy.init()
    node = rclpy.create_node("seqace_latency_bench")
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    img_pub = node.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
    info_pub = node.create_publisher(CameraInfo, "/camera/camera_info", qos_profile_sensor_data)
    lock = threading.Lock()
    sent: dict[int, float] = {}
    received: dict[int, tuple[float, bool]] = {}

    def on_output(msg, localized: bool) -> None:
        t = time.perf_counter()
        with lock:
            s = _stamp(msg)
            if s not in received or localized:
                received[s] = (t, localized)

    node.create_subscription(PoseWithCovarianceStamped, "/relocalization_node/pose", lambda m: on_output(m, True), reliable)
    if args.rviz:  # what RViz subscribes to besides the pose; the node builds these only for a subscriber
        from nav_msgs.msg import Path as PathMsg

        node.create_subscription(Marker, "/relocalization_node/inliers", lambda m: on_output(m, False), reliable)
        node.create_subscription(PathMsg, "/relocalization_node/path", lambda m: None, reliable)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinning = True

    def spin():
        while spinning:
            executor.spin_once(timeout_sec=0.02)
    spin_thread = threading.Thread(target=spin, daemon=True)
    spin_thread.start()

    # Prebuilt messages: building an Image costs ~1.5 ms, done outside the timed loop.
    msgs = []
    for img, K in queries:
        m = Image(height=img.shape[0], width=img.shape[1], encoding="bgr8", step=img.shape[1] * 3,
                  data=np.ascontiguousarray(img).tobytes())
        m.header.frame_id = "camera_optical_frame"
        ci = CameraInfo(width=img.shape[1], height=img.shape[0], distortion_model="plumb_bob", d=[0.0] * 5,
                        k=[float(v) for v in K.reshape(-1)], r=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
                        p=[K[0, 0], 0.0, K[0, 2], 0.0, 0.0, K[1, 1], K[1, 2], 0.0, 0.0, 0.0, 1.0, 0.0])
        ci.header.frame_id = "camera_optical_frame"
        msgs.append((m, ci))

    # Wait for the node: map loaded, encoder warmed up (reported on /diagnostics), subscribed.
    from diagnostic_msgs.msg import DiagnosticArray

    warm = threading.Event()

    def on_diag(msg):
        for st in msg.status:
            if any(kv.key == "warmed_up" and kv.value == "yes" for kv in st.values):
                warm.set()
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, reliable)
    if not warm.wait(300):
        proc.stop()
        raise SystemExit(f"the node did not warm up:\n{proc.log()[-3000:]}")
    time.sleep(0.5)
    rss: list[tuple[float, float]] = []
    period = 1.0 / args.rate
    start = time.perf_counter()
    next_t, next_rss, i = start, start, 0
    cpu_start = None
    total = args.warmup + args.duration
    busy = contextlib.ExitStack()
    if args.busy:  # one other process spinning on a core for the whole run, as on a busy robot
        from backends import busy_process

        busy.enter_context(busy_process())
    while True:
        now = time.perf_counter()
        if now - start >= total:
            break
        if cpu_start is None and now - start >= args.warmup:
            cpu_start = cpu_seconds(proc.proc.pid)
        if now >= next_rss:
            rss.append((now - start, rss_mb(proc.proc.pid)))
            next_rss += 1.0
        if now < next_t:
            time.sleep(min(next_t - now, 0.002))
            continue
        m, ci = msgs[i % len(msgs)]
        stamp = node.get_clock().now().nanoseconds
        m.header.stamp.sec, m.header.stamp.nanosec = stamp // 1_000_000_000, stamp % 1_000_000_000
        ci.header.stamp = m.header.stamp
        info_pub.publish(ci)
        t_pub = time.perf_counter()
        img_pub.publish(m)
        if now - start >= args.warmup:
            sent[stamp] = t_pub
        i += 1
        next_t += period
    cpu_used = cpu_seconds(proc.proc.pid) - (cpu_start or 0.0)
    busy.close()
    time.sleep(2.0)
    spinning = False
    spin_thread.join()
    alive = proc.alive
    proc.stop()
    node.destroy_node()
    rclpy.try_shutdown()

    with lock:
        pairs = [(received[s][0] - t, received[s][1]) for s, t in sent.items() if s in received]
    lat = np.array([p[0] for p in pairs]) * 1000.0
    localized = sum(p[1] for p in pairs)
    rss_run = [(t, v) for t, v in rss if t >= args.warmup]
    slope = float(np.polyfit([t for t, _ in rss_run], [v for _, v in rss_run], 1)[0] * 60.0) if len(rss_run) > 2 else None
    return {
        "device": platform.processor() or platform.machine(),
        "map": str(map_path), "scene": str(scene), "image_size": list(queries[0][0].shape[1::-1]),
        "mode": args.mode, "input_rate_hz": args.rate, "duration_s": args.duration,
        "frames_sent": len(sent), "frames_processed": len(pairs), "frames_localized": int(localized),
        "sustained_fps": len(pairs) / args.duration,
        "backend": args.backend, "threads": args.threads, "head_precision": args.head_precision,
        "encoder_precision": args.encoder_precision, "refine": not args.no_refine,
        "refine_keyframes": args.refine_keyframes,
        "num_cells": args.cells, "image_height": args.image_height, "rviz_subscriptions": args.rviz,
        "busy_process": args.busy,
        # The node's CPU time over the measured window per frame it answered (2 cores: up to 2 s/s).
        "cpu_ms_per_frame": 1000.0 * cpu_used / len(pairs) if pairs else None,
        "cpu_cores_busy": cpu_used / args.duration,
        "latency_ms": {"median": float(np.median(lat)) if len(lat) else None,
                       "p95": float(np.percentile(lat, 95)) if len(lat) else None,
                       "max": float(lat.max()) if len(lat) else None},
        "rss_mb": {"start": rss_run[0][1] if rss_run else None, "end": rss_run[-1][1] if rss_run else None,
                   "max": max(v for _, v in rss_run) if rss_run else None,
                   "slope_mb_per_min": slope, "samples": rss_run},
        "node_alive_at_end": alive,
    }


def table(r: dict) -> str:
    rows = [
        ("image size", f"{r['image_size'][0]}x{r['image_size'][1]}"),
        ("input rate", f"{r['input_rate_hz']:.0f} Hz for {r['duration_s']:.0f} s ({r['frames_sent']} frames)"),
        ("subscribed to", "pose, inliers, path (as RViz)" if r.get("rviz_subscriptions") else "pose"),
        ("beside a busy process", "yes" if r.get("busy_process") else "no"),
        ("processed / localized", f"{r['frames_processed']} / {r['frames_localized']}"),
        ("sustained rate", f"{r['sustained_fps']:.1f} fps"),
        ("node CPU per answered frame", f"{r['cpu_ms_per_frame']:.1f} ms ({r['cpu_cores_busy']:.2f} cores busy)"
         if r.get("cpu_ms_per_frame") is not None else "n/a"),
        ("latency median / p95 / max", "{median:.0f} / {p95:.0f} / {max:.0f} ms".format(**r["latency_ms"])
         if r["latency_ms"]["median"] is not None else "n/a"),
        ("RSS start / end / max", "{start:.0f} / {end:.0f} / {max:.0f} MB".format(**r["rss_mb"])
         if r["rss_mb"]["start"] is not None else "n/a"),
        ("RSS slope", f"{r['rss_mb']['slope_mb_per_min']:+.2f} MB/min" if r["rss_mb"]["slope_mb_per_min"] is not None else "n/a"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv=None) -> int:
    from seqace_ros.settings import RelocConfig

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--map", help="map file (default: build the tiny synthetic scene's map)")
    ap.add_argument("--scene", help="DSAC*/ACE scene folder whose test/ images are published (with --map)")
    ap.add_argument("--rate", type=float, default=30.0, help="input image rate in Hz")
    ap.add_argument("--duration", type=float, default=120.0, help="measured seconds")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    ap.add_argument("--frames", type=int, default=100, help="distinct query images to cycle through")
    ap.add_argument("--mode", default="single", choices=["single", "sequence"])
    ap.add_argument("--cells", type=int, default=RelocConfig.num_cells)
    ap.add_argument("--backend", default="auto", choices=["auto", "torch", "openvino"])
    ap.add_argument("--threads", type=int, default=0, help="the node's threads parameter (0: all cores)")
    ap.add_argument("--head-precision", default="auto", help="the node's head_precision parameter")
    ap.add_argument("--encoder-precision", default="auto", help="the node's encoder_precision parameter")
    ap.add_argument("--no-refine", action="store_true", help="the node's refine parameter set to false")
    ap.add_argument("--refine-keyframes", type=int, default=RelocConfig().tracking.keyframes,
                    help="the node's refine_keyframes parameter")
    ap.add_argument("--image-height", type=int, default=0,
                    help="the node's image_height parameter (0: the map's own)")
    ap.add_argument("--rviz", action="store_true",
                    help="also subscribe to ~/inliers and ~/path as RViz does (the node builds them only for a "
                         "subscriber); lost frames answer on ~/inliers, so without it only localized frames count")
    ap.add_argument("--busy", action="store_true",
                    help="one other process spins on a core while the images are published (a busy robot); "
                         "with --rate above what the node sustains, the answered rate is its throughput")
    ap.add_argument("--cache", default=str(REPO / ".cache" / "ros_bench"), help="tiny scene cache folder")
    ap.add_argument("--workdir", default=str(REPO / "results" / "ros_node_latency"))
    ap.add_argument("--json", default=str(REPO / "results" / "ros_node_latency.json"))
    args = ap.parse_args(argv)
    if args.map and not args.scene:
        ap.error("--map needs --scene (the images to publish)")
    result = run(args)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"written to {args.json}")
    return 0 if result["node_alive_at_end"] else 1


if __name__ == "__main__":
    sys.exit(main())
