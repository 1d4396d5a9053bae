"""The mapping trainer: buffer -> head, ACE's recipe (AdamW, one-cycle, annealed tanh hinge).

Runs on the CPU (bf16 autocast where the CPU supports it), on one GPU (fp16 autocast, buffer on the
device), or on several processes under torchrun (DistributedDataParallel; gloo on CPU, nccl on
GPU), each process filling the buffer from its share of the images.

With ``MappingConfig.sequence`` the mapping frames are first matched to their keyframes
(matching.py, cached next to the data) and the loss gains SeqACE's cross-frame term: each matched
sample's prediction is also reprojected into the keyframe (cross_frame.py, loss.sequence_loss).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..data.scene_folder import SceneFrame
from ..encoder import build_encoder, resolve_device
from ..errors import SeqaceError
from ..head import SceneHead
from ..mapfile import SceneMap
from ..precision import autocast_dtype
from ..threads import use_threads
from .buffer import TrainingBuffer, build_buffer
from .config import MappingConfig
from .cross_frame import frame_links
from .loss import reprojection_loss, sequence_loss, tau_schedule
from .micro_batches import MicroBatchSteps

if TYPE_CHECKING:
    from ..refinement.keyframe_tracking import KeyframeSettings

log = logging.getLogger(__name__)


def _distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size) under torchrun, initialising the process group once: nccl when the
    training runs on CUDA, gloo on a CPU (also on a machine that has a GPU but trains on the CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def rank_device(device: torch.device, local_rank: int, local_world: int, gpus: int) -> torch.device:
    """The CUDA device of one torchrun process: one GPU per process, as in ACE's DDP training.

    Every process checks the node's process count (not only its own rank), so all of them fail
    with the same message instead of some waiting in the process group for the others."""
    if device.type != "cuda":
        return device
    if local_world > gpus:
        raise RuntimeError(
            f"torchrun started {local_world} processes on this node but it has {gpus} GPU(s): "
            f"one GPU per process. Start at most {gpus} per node (--nproc_per_node={gpus}), or "
            "train on the CPU (device=cpu)")
    return torch.device("cuda", local_rank)


def _scene_mean(frames: list[SceneFrame]) -> torch.Tensor:
    # ACE: the mean of the mapping camera centres.
    return torch.tensor(np.mean([f.pose_c2w[:3, 3] for f in frames], axis=0), dtype=torch.float32)


def _sequence_matches(frames: list[SceneFrame], matching_config, progress: bool, rank: int,
                      world: int) -> list:
    """Frame -> keyframe matches of the mapping sequence (matching.match_sequence, cached).

    Under torchrun rank 0 matches first and fills the cache; the other ranks then read it (they
    recompute only where nothing can be cached, e.g. frames from a bag).
    """
    from .matching import match_sequence

    if rank == 0:
        matches = match_sequence(frames, matching_config, progress=progress)
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
    if rank != 0:
        matches = match_sequence(frames, matching_config, progress=False)
    return matches


def train_map(frames: list[SceneFrame], config: MappingConfig | None = None, progress: bool = True,
              encoder=None, matches: Sequence | None = None, matching_config=None) -> SceneMap:
    """Train a map from posed mapping images. Returns the SceneMap (on rank 0 under torchrun; the
    other ranks return the same trained head).

    With ``config.sequence`` the frames must be in recording order; ``matches`` (a list of
    matching.FrameMatches) skips the matcher, ``matching_config`` (MatchingConfig) replaces
    ``config.matching``. Without ``config.sequence`` both are ignored and nothing is matched.
    """
    config = (config or MappingConfig()).validate()
    if not frames:
        raise ValueError("no mapping frames")
    if config.num_threads:
        use_threads(int(config.num_threads))
    device = resolve_device(config.device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and device.type == "cuda":
        # Before the process group: nccl needs each process on its own GPU.
        device = rank_device(device, int(os.environ.get("LOCAL_RANK", "0")),
                             int(os.environ.get("LOCAL_WORLD_SIZE", world)), torch.cuda.device_count())
        torch.cuda.set_device(device)
    rank, world = _distributed(device)
    torch.manual_seed(config.seed)
    t_start = time.perf_counter()
    if encoder is None:
        # Eager mode: augmentation makes many input sizes, and tracing costs seconds per size.
        # fp32 features on a CPU: every map so far was trained on them (bf16 training is unmeasured).
        encoder = build_encoder(config.encoder, device=device, image_height=config.image_height,
                                optimize=False, precision="fp32" if device.type == "cpu" else "auto",
                                backend=config.backend)
    links, match_summary, match_seconds = None, None, 0.0
    if config.sequence:
        t0 = time.perf_counter()
        if matches is None:
            matching = matching_config or config.matching
            if matching.device == "auto":  # the mapping's device
                matching = replace(matching, device=str(device))
            matches = _sequence_matches(frames, matching, progress and rank == 0, rank, world)
        match_seconds = time.perf_counter() - t0
        match_summary = _summarize(matches)
        links = frame_links(matches)
        log.info("matching: %d of %d frames linked to a keyframe in %.1f s", len(links), len(frames),
                 match_seconds)
    buf = build_buffer(frames, encoder, config, progress=progress and rank == 0, rank=rank,
                       world_size=world, frame_links=links)
    buf.to(device)

    head = SceneHead(in_dim=encoder.feature_dim, width=config.head_width,
                     num_blocks=config.head_blocks, mean=_scene_mean(frames)).to(device)
    model: torch.nn.Module = head
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(head, device_ids=[device.index] if device.type == "cuda" else None)
    try:
        history, kf_history = _optimise(model, buf, config, device, progress and rank == 0)
    except NonFiniteLoss as exc:
        names = [frames[i].name + (f" ({frames[i].image_path})" if frames[i].image_path else "")
                 for i in exc.images[:3]]
        raise ValueError(
            f"training loss became {exc.value} at iteration {exc.iteration}"
            + (f"; non-finite samples come from {', '.join(names)}" if names else "")
            + ": check those frames' poses and calibration; no map was written") from None
    t_train = time.perf_counter() - t_start - buf.seconds - match_seconds

    head.eval().requires_grad_(False)
    points = _map_points(head, buf, config, device)
    seconds = time.perf_counter() - t_start
    meta = {
        "encoder": encoder.describe(),
        "scene_mean": head.mean.cpu().tolist(),
        "training": {
            "config": config.to_dict(),
            "frames": len(frames),
            "skipped_images": buf.skipped,
            "buffer_samples": len(buf),
            "buffer_views": buf.views,
            "world_size": world,
            "device": str(device),
            "precision": str(autocast_dtype(config.precision, device) or "fp32"),
            "seconds": {"matching": match_seconds, "buffer": buf.seconds, "train": t_train,
                        "total": seconds},
            "final_loss": history[-1][1] if history else None,
            "loss_history": history,
            "sequence": _sequence_metadata(config, buf, match_summary, match_seconds, kf_history),
        },
        "camera": _camera_summary(buf, config),
        "targets": config.targets,
    }
    head.cpu()
    log.info("map trained in %.1f s (buffer %.1f s, %d samples; training %.1f s)",
             seconds, buf.seconds, len(buf), t_train)
    if kf_history:
        log.info("cross-frame term: loss %.2f over the %.0f%% matched samples (last window); "
                 "matching %.1f s", kf_history[-1][1], 100 * kf_history[-1][2], match_seconds)
    scene_map = SceneMap(head=head, metadata=meta, scene_points=points,
                         calibration=_calibration_features(buf, config))
    if config.keyframes:
        add_keyframes(scene_map, frames, config.keyframe_stride, progress and rank == 0)
        if scene_map.keyframes:  # part of making the map
            meta["training"]["seconds"]["keyframes"] = scene_map.metadata["keyframes"]["seconds"]
            meta["training"]["seconds"]["total"] += scene_map.metadata["keyframes"]["seconds"]
    return scene_map


# Below this share of keyframe corners triangulated (1 px, 3 views; keyframes with near
# neighbours) the mapping poses are likely noisy; measured shares with accurate and with SLAM
# poses: benchmarks/README.md, "The support check".
CONSISTENT_CORNERS_WARNING = 0.2


def add_keyframes(scene_map: SceneMap, frames: Sequence, stride: int = 5, progress: bool = True,
                  settings: KeyframeSettings | None = None) -> SceneMap:
    """Give ``scene_map`` the refinement keyframes of the posed mapping ``frames`` (in place);
    ``settings`` (optional) replace the defaults, ``stride`` included."""
    from ..refinement.keyframe_tracking import KeyframeSettings, build_keyframes, keyframes_to_arrays

    settings = settings or KeyframeSettings(stride=stride)
    relocalizer = None

    def predict(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Built on first use: only scenes with few, distant views need the map's scene coordinates.
        nonlocal relocalizer
        if relocalizer is None:
            from ..relocalization.single import Relocalizer
            from ..settings import RelocConfig
            relocalizer = Relocalizer(scene_map, RelocConfig(refine=False).with_threads(torch.get_num_threads()),
                                      device="cpu")
        return relocalizer.scene_coordinates(image)

    keyframes, stats = build_keyframes(frames, settings, progress, predict)
    if not keyframes:
        log.warning("no refinement keyframes: no corner could be tracked and triangulated "
                    "(%d mapping frames); poses will not be refined", len(frames))
        return scene_map
    scene_map.keyframes = keyframes_to_arrays(keyframes, settings.jpeg_quality)
    stats["bytes"] = int(sum(a.nbytes for a in scene_map.keyframes.values()))
    scene_map.metadata["keyframes"] = stats
    log.info("refinement: %d keyframes, %d points, %.1f MB, %.1f s", stats["keyframes"], stats["points"],
             stats["bytes"] / 1e6, stats["seconds"])
    # Judged on keyframes with near neighbours only: few views far apart keep fewer points anyway.
    share = stats["near_points"] / max(stats["near_corners"], 1)
    if stats["near_corners"] and share < CONSISTENT_CORNERS_WARNING:
        log.warning("only %.0f%% of the keyframe corners triangulated consistently with the mapping poses "
                    "(with accurate poses, about a third or more): the poses probably disagree with the images by "
                    "centimetres (a SLAM or odometry trajectory). The refinement refuses corrections that "
                    "leave the map frame, so it will refine fewer frames; poses refined by structure from "
                    "motion (e.g. COLMAP) give it more to work with.", 100 * share)
    return scene_map


class NonFiniteLoss(SeqaceError, ArithmeticError):
    """The training loss became NaN or inf; ``images``: indices of the frames whose samples did."""

    def __init__(self, iteration: int, value: float, images: list[int]):
        super().__init__(f"loss {value} at iteration {iteration}")
        self.iteration, self.value, self.images = iteration, value, images


def _summarize(matches: Sequence) -> dict:
    from .matching import summarize_matches
    return summarize_matches(matches)


def _sequence_metadata(config: MappingConfig, buf: TrainingBuffer, match_summary: dict | None,
                       match_seconds: float, kf_history: list) -> dict:
    """The map metadata's record of sequence (cross-frame) training."""
    if not config.sequence:
        return {"enabled": False}
    return {"enabled": True, "weight": config.sequence_weight, "mean": config.sequence_mean,
            "matched_samples": buf.matched_samples,
            "matched_share": buf.matched_samples / max(len(buf), 1),
            "matching": match_summary, "matching_seconds": match_seconds,
            # (iteration, keyframe-term loss over matched samples, share of matched samples)
            "keyframe_loss_history": kf_history}


def _keyframe_term(points: torch.Tensor, buf: TrainingBuffer, idx: torch.Tensor, img: torch.Tensor,
                   tau: float, config: MappingConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample reprojection loss into the matched keyframe, and the mask of matched samples.

    Unmatched samples are reprojected into their own frame instead (finite, and masked out by
    sequence_loss), so the batch keeps a fixed shape.
    """
    kf = buf.kf_index[idx]
    tracked = kf >= 0
    cam = torch.where(tracked, kf, img)
    pixels = torch.where(tracked[:, None], buf.kf_targets[idx], buf.targets[idx])
    loss, _ = reprojection_loss(points, buf.w2c[cam], buf.K[cam], pixels, tau, config.depth_min,
                                config.depth_max, config.max_reprojection_error, config.proxy_depth)
    return loss, tracked


def _optimise(model: torch.nn.Module, buf: TrainingBuffer, config: MappingConfig,
              device: torch.device, progress: bool
              ) -> tuple[list[tuple[int, float, float]], list[tuple[int, float, float]]]:
    """Train; return the loss history [(iteration, window mean loss, tau)] and, with keyframe
    targets, the keyframe-term history [(iteration, window mean over matched samples, matched
    share)]."""
    opt = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                            weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.learning_rate,
                                                total_steps=config.iterations, cycle_momentum=False)
    amp = autocast_dtype(config.precision, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16 and device.type == "cuda")
    gen = torch.Generator(device=device).manual_seed(config.seed)
    n = len(buf)
    perm = torch.randperm(n, generator=gen, device=device)
    cursor = 0
    history: list[tuple[int, float, float]] = []
    bar = tqdm(range(config.iterations), desc="training", unit="it", disable=not progress,
               leave=False, mininterval=0.5)
    window_sum, window_n = 0.0, 0
    sequence = buf.kf_index is not None
    kf_history: list[tuple[int, float, float]] = []
    # Tensors, read only when logging (the loss is read every step anyway).
    kf_sum = kf_count = torch.zeros((), device=device)
    window_samples = 0
    log_every = max(config.iterations // 20, 1)
    micro, threads = None, torch.get_num_threads()
    # Two parts or more per worker, so that a slowed worker can leave parts to the others; with more
    # threads than that (a many-core computer) OpenMP's large products stay (measured on 2 cores only).
    if (device.type == "cpu" and 2 <= threads and 2 * threads <= config.micro_batches and not sequence
            and isinstance(model, SceneHead)):
        micro = MicroBatchSteps(list(model.parameters()), workers=threads, parts=config.micro_batches)
        torch.set_num_threads(1)  # the workers are the parallelism

    def part_loss(part: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample loss, validity and predicted points of the samples ``part``."""
        f, im = buf.features[part], buf.image_index[part]
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            points = model(f if amp is not None else f.float())
        loss, valid = reprojection_loss(points.float(), buf.w2c[im], buf.K[im], buf.targets[part], tau,
                                        config.depth_min, config.depth_max, config.max_reprojection_error,
                                        config.proxy_depth)
        return loss, valid, points

    try:
        for it in bar:
            if cursor + config.batch_size > n:
                perm = torch.randperm(n, generator=gen, device=device)
                cursor = 0
            idx = perm[cursor:cursor + config.batch_size]
            cursor += config.batch_size
            img = buf.image_index[idx]
            tau = tau_schedule(it, config.iterations, config.tau_max, config.tau_min)
            if micro is not None:  # forward, backward and gradient in parts on the worker threads
                opt.zero_grad(set_to_none=True)
                loss_per, valid = micro.gradients(lambda part: part_loss(part, tau)[:2], idx)
                loss = loss_per.mean()
                opt.step()
            else:
                loss_per, valid, points = part_loss(idx, tau)
                if sequence:
                    kf_loss, tracked = _keyframe_term(points.float(), buf, idx, img, tau, config)
                    loss = sequence_loss(loss_per, kf_loss, tracked, config.sequence_weight,
                                         config.sequence_mean)
                    kf_sum = kf_sum + torch.where(tracked, kf_loss, torch.zeros_like(kf_loss)).sum().detach()
                    kf_count = kf_count + tracked.sum()
                else:
                    loss = loss_per.mean()
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            sched.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                # Name the frames whose samples went non-finite (a NaN pose or calibration...).
                bad = ~torch.isfinite(loss_per.detach())
                raise NonFiniteLoss(it, value, sorted(set(img[bad].tolist())))
            window_sum += value
            window_n += 1
            window_samples += int(idx.numel())
            if (it + 1) % log_every == 0 or it == config.iterations - 1:
                # Mean loss over the logging window (tau falls during training, so losses of different
                # windows compare only roughly).
                mean = window_sum / window_n
                vfrac = float(valid.float().mean())
                history.append((it, mean, tau))
                post = dict(loss=f"{mean:.2f}", tau=f"{tau:.1f}", valid=f"{vfrac:.2f}")
                if sequence:
                    n_kf = float(kf_count)
                    kf_mean = float(kf_sum) / max(n_kf, 1.0)
                    share = n_kf / max(window_samples, 1)
                    kf_history.append((it, kf_mean, share))
                    post.update(kf_loss=f"{kf_mean:.2f}", matched=f"{share:.2f}")
                    kf_sum = kf_count = torch.zeros((), device=device)
                bar.set_postfix(**post)
                log.debug("it %d %s", it, " ".join(f"{k} {v}" for k, v in post.items()))
                window_sum, window_n, window_samples = 0.0, 0, 0
    finally:
        if micro is not None:
            micro.close()
            torch.set_num_threads(threads)
    bar.close()
    return history, kf_history


def _calibration_features(buf: TrainingBuffer, config: MappingConfig, count: int = 8192) -> np.ndarray:
    """A fixed random sample of the buffer's features (salient cells, as the relocalizer selects):
    what int8 inference calibrates its ranges on."""
    gen = torch.Generator().manual_seed(config.seed)
    idx = torch.randperm(len(buf), generator=gen)[:count].to(buf.features.device)
    return buf.features[idx].to("cpu", torch.float16).numpy()


@torch.no_grad()
def _map_points(head: SceneHead, buf: TrainingBuffer, config: MappingConfig,
                device: torch.device) -> np.ndarray:
    """Scene points for visualisation: the head's predictions for the most salient buffer samples
    whose reprojection under their own camera is good (so the cloud shows the map, not its noise)."""
    n = min(len(buf), max(config.map_points * 4, 1))
    idx = torch.argsort(buf.saliency, descending=True)[:n]
    pts = head(buf.features[idx].float())
    loss, valid = reprojection_loss(pts, buf.w2c[buf.image_index[idx]], buf.K[buf.image_index[idx]],
                                    buf.targets[idx], tau=1.0)
    good = valid & (loss < 0.9)  # tanh(e/1) < 0.9 ~ e < 1.5 px
    pts = pts[good][:config.map_points]
    return pts.cpu().numpy().astype(np.float32)


def _camera_summary(buf: TrainingBuffer, config: MappingConfig) -> dict:
    # Intrinsics of the first mapping image, in pixels of the image rescaled to image_height.
    K = buf.K[0].cpu().numpy()
    return {"model": "pinhole", "nominal_height": config.image_height, "fx": float(K[0, 0]), "fy": float(K[1, 1]),
            "cx": float(K[0, 2]), "cy": float(K[1, 2])}
