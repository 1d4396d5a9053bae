"""Render image sequences: noise per frame, motion blur from the trajectory, worker threads.

A frame's image depends only on (scene, pose, K, noise, seed, stream, frame id, its
neighbour's pose), never on the thread that rendered it or the order, so any number of
workers gives the same bytes.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np

from .noise import CameraNoise, apply_noise, camera_noise, exposure_gains
from .render import check_camera, render_frame
from .scene import Scene

TYPICAL_DEPTH_M = 2.0  # depth at which motion blur is estimated from the camera motion


class RenderedFrame(NamedTuple):
    image: np.ndarray  # (H, W, 3) uint8 BGR
    pose_c2w: np.ndarray  # (4, 4)
    K: np.ndarray  # (3, 3)


def intrinsics(width: int, height: int, focal: float | None = None) -> np.ndarray:
    """K with the principal point at the image centre (what a DSAC*/ACE calibration file holds)
    and by default f = 525 px at 640 px width (7-Scenes), scaled with the width."""
    if int(width) < 8 or int(height) < 8:
        raise ValueError(f"image size {width}x{height} is too small (need at least 8x8)")
    f = 525.0 * int(width) / 640.0 if focal is None else float(focal)
    if not np.isfinite(f) or f <= 0:
        raise ValueError(f"focal length must be positive, got {focal}")
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class FrameJob:
    """Everything one worker needs to make one noisy frame."""

    pose: np.ndarray
    frame_id: int
    gain: float
    flow_px: np.ndarray | None


@dataclass(frozen=True)
class RenderSettings:
    K: np.ndarray
    width: int
    height: int
    noise: CameraNoise
    seed: int
    stream: int  # separates the noise of different sequences (e.g. mapping vs query)
    supersample: int


def plan_jobs(poses: np.ndarray, frame_ids: Sequence[int], settings: RenderSettings) -> list[FrameJob]:
    """Per-frame exposure gain and motion-blur flow (from the next frame of the same block, or
    the previous one at a block's end)."""
    n = len(poses)
    gains = exposure_gains(settings.noise, n, settings.seed, settings.stream)
    ids = np.asarray(frame_ids)
    jobs = []
    for i in range(n):
        flow = None
        if settings.noise.motion_blur > 0:
            if i + 1 < n and ids[i + 1] == ids[i] + 1:
                flow = _centre_flow(poses[i], poses[i + 1], settings.K)
            elif i > 0 and ids[i - 1] == ids[i] - 1:
                flow = -_centre_flow(poses[i], poses[i - 1], settings.K)
        jobs.append(FrameJob(np.asarray(poses[i], float), int(ids[i]), float(gains[i]), flow))
    return jobs


def _centre_flow(pose_a: np.ndarray, pose_b: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Where the point seen at the centre of frame a (at a typical depth) appears in frame b,
    minus the centre: the image motion over one frame interval."""
    p_world = pose_a[:3, :3] @ np.array([0.0, 0.0, TYPICAL_DEPTH_M]) + pose_a[:3, 3]
    p_b = pose_b[:3, :3].T @ (p_world - pose_b[:3, 3])
    if p_b[2] <= 1e-3:
        return np.zeros(2)
    return np.array([K[0, 0] * p_b[0] / p_b[2], K[1, 1] * p_b[1] / p_b[2]])


def render_job(scene: Scene, job: FrameJob, st: RenderSettings,
               with_depth: bool = False) -> "np.ndarray | tuple[np.ndarray, np.ndarray]":
    """One noisy uint8 BGR frame (and its depth map in metres, if asked)."""
    r = render_frame(scene, job.pose, st.K, st.width, st.height, st.supersample, with_depth)
    rng = np.random.default_rng([st.seed, st.stream, job.frame_id])
    image = apply_noise(r.image, st.noise, rng, job.gain, job.flow_px)
    return (image, r.depth) if with_depth else image


def render_sequence(scene: Scene, poses: np.ndarray, K: np.ndarray, width: int | None = None,
                    height: int | None = None, noise: "str | CameraNoise | dict | None" = None,
                    seed: int = 0, frame_ids: Sequence[int] | None = None, supersample: int = 1,
                    workers: int = 1, stream: int = 0) -> Iterator[RenderedFrame]:
    """Yield ``(image_bgr uint8, pose_c2w, K)`` for each pose, in order.

    The image size defaults to twice the principal point. ``frame_ids`` (default 0..N-1) name
    the frames: consecutive ids are one continuous shot (motion blur uses the neighbour) and
    seed each frame's noise. ``stream`` separates the noise of different sequences of one
    seed (``generate_scene`` uses 1 for train, 2 for test). ``workers`` > 1 renders on that
    many threads.
    """
    poses = np.asarray(poses, float)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"poses must be an (N, 4, 4) array of camera-to-world matrices, "
                         f"got shape {poses.shape}")
    K = np.asarray(K, float)
    width = int(round(2 * K[0, 2])) if width is None else int(width)
    height = int(round(2 * K[1, 2])) if height is None else int(height)
    for p in poses:
        check_camera(p, K, width, height)
    ids = np.arange(len(poses)) if frame_ids is None else np.asarray(frame_ids, int)
    if len(ids) != len(poses):
        raise ValueError(f"{len(ids)} frame ids for {len(poses)} poses")
    st = RenderSettings(K, width, height, camera_noise(noise), int(seed), int(stream),
                        int(supersample))
    jobs = plan_jobs(poses, ids, st)
    for job, image in zip(jobs, parallel_map(scene, render_job, jobs, st, workers)):
        yield RenderedFrame(image, job.pose.copy(), K.copy())


# ---------------------------------------------------------------- worker threads -------------

def parallel_map(scene: Scene, fn: Callable, jobs: Sequence, st, workers: int = 1) -> Iterator:
    """``fn(scene, job, st)`` for each job, results in order, on ``workers`` threads (at most a
    few jobs ahead of the consumer, so memory stays bounded).

    Threads rather than processes: the heavy work is in numpy and OpenCV, which release the
    GIL, and threads need no pickled copy of the scene, no ``__main__`` guard in the caller's
    script, and cannot inherit the locked state that makes a forked OpenCV process hang.
    """
    workers = int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(jobs) < 2:
        for job in jobs:
            yield fn(scene, job, st)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="synthetic") as pool:
        pending: deque = deque()
        it = iter(jobs)
        for job in it:
            pending.append(pool.submit(fn, scene, job, st))
            if len(pending) >= 2 * workers:
                break
        while pending:
            result = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(fn, scene, nxt, st))
            yield result
