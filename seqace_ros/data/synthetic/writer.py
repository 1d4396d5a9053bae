"""Write a generated scene in the DSAC*/ACE folder layout that ``load_split`` reads.

    <out>/scene.json                                  generator settings, seed, statistics
    <out>/{train,test}/rgb/frame-XXXXXX.color.jpg     (or .png)
    <out>/{train,test}/poses/frame-XXXXXX.pose.txt    4x4 camera-to-world, OpenCV camera axes
    <out>/{train,test}/calibration/frame-XXXXXX.calibration.txt   focal length (pixels)
    <out>/{train,test}/depth/frame-XXXXXX.depth.png   optional, uint16 millimetres (0 = none)

train holds the mapping trajectory, test the query trajectory. Everything written is a
function of the arguments: the same call gives the same bytes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from .layouts import DEFAULT_PPM, make_scene
from .noise import camera_noise
from .scene import Scene
from .sequence import RenderSettings, intrinsics, parallel_map, plan_jobs, render_job
from .trajectory import FPS, Trajectory, coverage, make_trajectories

FORMAT_VERSION = 1
SPLITS = (("train", 1), ("test", 2))  # split name, noise stream


def generate_scene(out_dir: str | Path, kind: str = "room", mapping_frames: int = 300,
                   query_frames: int = 200, width: int = 640, height: int = 480, seed: int = 0,
                   noise: "str | dict | None" = "low", supersample: int = 1,
                   image_format: str = "jpg", jpeg_quality: int = 95, block_length: int = 50,
                   focal: float | None = None, speed: float = 0.25, ppm: float = DEFAULT_PPM,
                   workers: int = 1, size_m: float | None = None, fps: float = FPS,
                   write_depth: bool = False, overwrite: bool = False,
                   progress: bool = True) -> Path:
    """Generate a scene and write it to ``out_dir``; return the folder.

    ``kind``: "room", "repetitive" or "courtyard" (``size_m``: its length). ``noise``: a preset ("none", "low", "medium", "high"),
    a dict of CameraNoise fields, or None. ``workers``: rendering threads; 1 is fastest on the
    2-vCPU machine this was measured on (numpy work on two threads contends for one physical
    core there), more may help where several physical cores are free.
    ``overwrite``: replace a scene previously generated there (other folders are refused).
    ``ppm``: texture texels per metre (lower is faster to build, blurrier up close).
    ``fps``: frames per second along the trajectory; with ``speed`` it sets the frames' spacing (the
    same path at a lower rate: the same ``speed * (mapping_frames - 1) / fps`` metres, fewer frames).
    """
    out = Path(out_dir)
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    if not 1 <= int(jpeg_quality) <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    if int(mapping_frames) < 2 or int(query_frames) < 1:
        raise ValueError(f"need at least 2 mapping frames and 1 query frame, got "
                         f"{mapping_frames} and {query_frames}")
    K = intrinsics(width, height, focal)
    noise_cfg = camera_noise(noise)
    workers = int(workers)
    scene = make_scene(kind, seed, ppm, size_m)  # first: it validates kind before anything is deleted
    _prepare(out, overwrite)
    traj = make_trajectories(scene, int(mapping_frames), int(query_frames), seed=seed,
                             block_length=int(block_length), speed=speed, fps=float(fps))
    items = []
    for (split, stream), tr in zip(SPLITS, (traj.mapping, traj.query)):
        st = RenderSettings(K, int(width), int(height), noise_cfg, int(seed), stream, int(supersample))
        items += _prepare_split(out / split, tr, st, write_depth)
    # One pool for both splits: worker start-up (and shipping them the scene) is paid once.
    cfg = (image_format, int(jpeg_quality), write_depth)
    done = parallel_map(scene, _write_frame, items, cfg, workers)
    if progress:
        from tqdm import tqdm
        done = tqdm(done, total=len(items), desc=f"rendering {kind}", unit="frame")
    for _ in done:
        pass
    info = {
        "generator": "seqace_ros.data.synthetic", "format_version": FORMAT_VERSION,
        "kind": kind, "seed": int(seed), "width": int(width), "height": int(height),
        "focal_px": float(K[0, 0]), "principal_point": [float(K[0, 2]), float(K[1, 2])],
        "noise": noise_cfg.as_dict(), "supersample": int(supersample), "texels_per_metre": float(ppm),
        "image_format": image_format, "jpeg_quality": int(jpeg_quality) if image_format == "jpg" else None,
        "mapping_frames": len(traj.mapping), "query_frames": len(traj.query),
        "query_block_length": int(block_length), "fps": traj.fps, "speed_m_s": float(speed),
        "world": "metres, z up",
        "poses": "4x4 camera-to-world, OpenCV camera axes (x right, y down, z forward)",
        "splits": {"train": "mapping trajectory",
                   "test": "query trajectory (blocks; frame numbers jump between blocks)"},
        "query_coverage": coverage(traj.mapping.poses, traj.query.poses),
        "trajectory_extent_m": np.ptp(traj.mapping.poses[:, :3, 3], axis=0).round(3).tolist(),
        "scene": {k: v for k, v in scene.info.items()},
    }
    (out / "scene.json").write_text(json.dumps(info, indent=2) + "\n")
    return out


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose another output path")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; choose an empty folder or pass overwrite=True "
                                  "(which replaces a scene generated there before)")
        if not (out / "scene.json").is_file():
            raise FileExistsError(f"{out} holds files but no scene.json: it does not look like a "
                                  "generated scene, so it is not overwritten; choose another folder")
        for split, _ in SPLITS:
            shutil.rmtree(out / split, ignore_errors=True)
        (out / "scene.json").unlink()
    out.mkdir(parents=True, exist_ok=True)


def _prepare_split(root: Path, tr: Trajectory, st: RenderSettings, write_depth: bool) -> list:
    """Write a split's pose and calibration files; return its frames' render jobs."""
    for name in ["rgb", "poses", "calibration"] + (["depth"] if write_depth else []):
        (root / name).mkdir(parents=True, exist_ok=True)
    for name, pose in zip(tr.names(), tr.poses):
        np.savetxt(root / "poses" / f"{name}.pose.txt", pose, fmt="%.9f")
        (root / "calibration" / f"{name}.calibration.txt").write_text(f"{st.K[0, 0]:.6f}\n")
    return [(job, st, root, name) for job, name in zip(plan_jobs(tr.poses, tr.frame_ids, st), tr.names())]


def _write_frame(scene: Scene, item, cfg) -> None:
    """Render, encode and write one frame (runs on a worker thread)."""
    job, st, root, name = item
    image_format, quality, write_depth = cfg
    if write_depth:
        image, depth = render_job(scene, job, st, with_depth=True)
    else:
        image, depth = render_job(scene, job, st), None
    if image_format == "jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, data = cv2.imencode(f".{image_format}", image, params)
    if not ok:
        raise IOError(f"OpenCV could not encode {name} as {image_format}")
    data.tofile(str(root / "rgb" / f"{name}.color.{image_format}"))
    if depth is not None:  # 7-Scenes convention: uint16 millimetres, 0 where nothing was hit
        mm = np.where(np.isfinite(depth), np.round(depth * 1000.0), 0).clip(0, 65535)
        cv2.imwrite(str(root / "depth" / f"{name}.depth.png"), mm.astype(np.uint16))
