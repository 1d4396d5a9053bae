"""Relocalization metrics, the JSON report shared by `seqace evaluate`, `seqace demo` and the
benchmarks, and the trajectory / error plots.

Errors follow ACE/SeqACE: translation = distance between camera centres, rotation = angle of
R_est R_gt^T; recall uses strict inequalities; a frame without a pose counts as a failure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .geometry import pose_errors

# key -> (metres, degrees)
RECALL_THRESHOLDS: dict[str, tuple[float, float]] = {
    "10cm_5deg": (0.10, 5.0),
    "5cm_5deg": (0.05, 5.0),
    "2cm_2deg": (0.02, 2.0),
    "1cm_1deg": (0.01, 1.0),
}
# sequence_overhead: what sequence mode adds per frame on top of the single-frame work
TIMING_STAGES = ("encoder", "head", "ransac", "refine", "sequence_overhead", "total")


@dataclass
class FrameResult:
    name: str
    pose_gt_c2w: np.ndarray
    pose_est_c2w: np.ndarray | None  # None: lost, or the image could not be read
    num_inliers: int = 0
    timing_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None  # why there is no pose (unreadable image, lost, ...)
    refined: bool | None = None  # keyframe refinement: its pose was used (None: it did not run)

    @property
    def errors(self) -> tuple[float, float]:
        if self.pose_est_c2w is None:
            return float("inf"), float("inf")
        return pose_errors(self.pose_est_c2w, self.pose_gt_c2w)


def _median(values: list[float]) -> float | None:
    # ACE's convention: the sorted value at index n // 2 (inf for failures sorts last).
    if not values:
        return None
    v = sorted(values)
    return float(v[len(v) // 2])


def summarize(results: list[FrameResult], **extra) -> dict:
    """The report dict: frames, recall (percent), median errors, per-stage median timing, fps."""
    t_errs, r_errs = zip(*(r.errors for r in results)) if results else ((), ())
    t_errs, r_errs = np.asarray(t_errs, dtype=np.float64), np.asarray(r_errs, dtype=np.float64)
    n = len(results)
    recall = {key: (100.0 * float(np.mean((t_errs < tm) & (r_errs < td))) if n else 0.0)
              for key, (tm, td) in RECALL_THRESHOLDS.items()}
    timing = {}
    for stage in TIMING_STAGES:
        vals = [r.timing_ms[stage] for r in results if stage in r.timing_ms]
        if vals:
            timing[stage] = float(np.median(vals))
    t_med = _median(list(t_errs))
    r_med = _median(list(r_errs))
    report = {
        "frames": n,
        "localized": int(sum(r.pose_est_c2w is not None for r in results)),
        "failed_to_read": int(sum(r.error is not None and r.error.startswith("unreadable")
                                  for r in results)),
        "unusable": int(sum(r.error is not None and r.error.startswith("unusable") for r in results)),
        "refined": int(sum(bool(r.refined) for r in results)),
        "recall": recall,
        "median_translation_cm": None if t_med is None else t_med * 100.0,
        "median_rotation_deg": r_med,
        "timing_ms": timing,
        "fps": (1000.0 / timing["total"]) if timing.get("total") else None,
    }
    report.update(extra)
    return report


def per_frame_records(results: list[FrameResult]) -> list[dict]:
    out = []
    for r in results:
        t, a = r.errors
        out.append({
            "name": r.name,
            "translation_cm": None if not np.isfinite(t) else t * 100.0,
            "rotation_deg": None if not np.isfinite(a) else a,
            "inliers": r.num_inliers,
            "pose_c2w": None if r.pose_est_c2w is None else np.asarray(r.pose_est_c2w).tolist(),
            "error": r.error,
        })
    return out


def _jsonable(obj):
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    return obj


def write_json(report: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(_jsonable(report), indent=2) + "\n")


def format_table(report: dict, title: str = "relocalization") -> str:
    """A plain-text results table for terminals and logs."""
    lines = [f"{title}: {report['frames']} frames, {report['localized']} localized"]
    lines.append("  recall  " + "  ".join(f"{k:>9}" for k in RECALL_THRESHOLDS))
    lines.append("          " + "  ".join(f"{report['recall'][k]:8.1f}%" for k in RECALL_THRESHOLDS))
    tm, rm = report.get("median_translation_cm"), report.get("median_rotation_deg")
    fmt = (lambda v, u: "lost" if v is None else f"{v:.2f} {u}")
    lines.append(f"  median error  {fmt(tm, 'cm')} / {fmt(rm, 'deg')}")
    if report.get("timing_ms"):
        lines.append("  median ms  " + "  ".join(f"{k} {v:.1f}" for k, v in report["timing_ms"].items())
                     + (f"  ({report['fps']:.1f} frames/s)" if report.get("fps") else ""))
    return "\n".join(lines)


def plot_report(results: list[FrameResult], path: str | Path, title: str = "") -> None:
    """Top view of true vs estimated camera centres, and the cumulative error distributions."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gt = np.array([r.pose_gt_c2w[:3, 3] for r in results])
    est = np.array([r.pose_est_c2w[:3, 3] if r.pose_est_c2w is not None else [np.nan] * 3
                    for r in results])
    t_errs, r_errs = zip(*(r.errors for r in results))
    t_cm = np.asarray(t_errs) * 100.0
    r_deg = np.asarray(r_errs)

    # Plot on the two axes of largest spread of the true trajectory (a top view for most scenes).
    spread = np.nanstd(gt, axis=0)
    a, b = sorted(np.argsort(spread)[-2:])
    names = "xyz"
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    ax = axes[0]
    ax.plot(gt[:, a], gt[:, b], "-", color="0.3", lw=1, label="ground truth")
    ok = np.isfinite(t_cm) & (t_cm < 10.0) & (r_deg < 5.0)
    ax.scatter(est[ok, a], est[ok, b], s=6, c="tab:green", label="estimate (<10 cm, 5 deg)")
    bad = ~ok & np.isfinite(est[:, 0])
    ax.scatter(est[bad, a], est[bad, b], s=10, c="tab:red", marker="x", label="estimate (worse)")
    lost = ~np.isfinite(est[:, 0])
    if lost.any():
        ax.scatter(gt[lost, a], gt[lost, b], s=14, facecolors="none", edgecolors="tab:orange",
                   label=f"lost ({int(lost.sum())})")
    ax.set_xlabel(f"{names[a]} [m]")
    ax.set_ylabel(f"{names[b]} [m]")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="best", fontsize=8)
    ax.set_title("camera centres")
    for ax, vals, unit, marks in ((axes[1], t_cm, "cm", (1, 2, 5, 10)),
                                  (axes[2], r_deg, "deg", (1, 2, 5))):
        finite = np.sort(vals[np.isfinite(vals)])
        if finite.size:
            ax.plot(finite, 100.0 * np.arange(1, finite.size + 1) / len(vals), color="tab:blue")
        for m in marks:
            ax.axvline(m, color="0.8", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel(f"error [{unit}]")
        ax.set_ylabel("frames below error [%]")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.set_title(f"{'translation' if unit == 'cm' else 'rotation'} error (cumulative)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def localize_frames(localize, frames, progress: bool = True, desc: str = "localizing") -> list[FrameResult]:
    """Run ``localize(image, K) -> RelocResult`` over posed frames.

    Image decoding is outside the timed call (as in ACE's protocol). An unreadable image is counted
    as a failed frame, never dropped.
    """
    from tqdm import tqdm

    from .data.scene_folder import ImageReadError

    results = []
    for f in tqdm(frames, desc=desc, unit="frame", disable=not progress, leave=False):
        try:
            img = f.load_image()
        except (ImageReadError, OSError, ValueError) as exc:
            results.append(FrameResult(f.name, f.pose_c2w, None, error=f"unreadable: {exc}"))
            continue
        try:
            r = localize(img, f.intrinsics(img.shape[1], img.shape[0]))
        except ValueError as exc:  # too small, too thin, implausible intrinsics: one failed frame
            source = f.image_path or f.name
            results.append(FrameResult(f.name, f.pose_c2w, None, error=f"unusable: {source}: {exc}"))
            continue
        results.append(FrameResult(f.name, f.pose_c2w, r.pose_c2w if r.localized else None,
                                   r.num_inliers, dict(r.timing_ms),
                                   error=None if r.localized else f"lost: {r.message}",
                                   refined=None if r.refinement is None else bool(r.refinement.accepted)))
    return results


def with_sequence_resets(localizer, frames):
    """``localizer.localize`` that first resets the localizer where a new recording starts, seen
    from a jump in the frame numbering (e.g. redkitchen's blocks of 50): nothing may leak across a
    boundary. Ground-truth poses are not used for this: that would leak the answer."""
    from .sequence_boundaries import sequence_starts

    starts = sequence_starts([f.name for f in frames])
    state = {"i": 0}

    def fn(image, K):
        i = state["i"]
        state["i"] += 1
        if starts[i]:
            localizer.reset()
        return localizer.localize(image, K)

    return fn


def evaluate_scene(scene: str | Path, localizer, mode: str = "single", limit: int | None = None,
                   progress: bool = True, scene_map=None) -> tuple[dict, list[FrameResult]]:
    """Localize every frame of ``scene``/test (the first ``limit``) with ``localizer`` (a
    relocalization.Localizer) and summarize: the report dict and the per-frame results."""
    from .data.scene_folder import load_split

    frames = load_split(scene, "test")
    if limit:
        frames = frames[:limit]
    results = localize_frames(with_sequence_resets(localizer, frames), frames, progress=progress)
    training = (scene_map.metadata.get("training", {}).get("config", {}) if scene_map is not None else {})
    report = summarize(results, mode=mode, scene=str(scene), map=training, relocalizer=localizer.describe())
    return report, results
