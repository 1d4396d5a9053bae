"""Counters and the /diagnostics verdict of the relocalization node (pure Python)."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass

OK, WARN, ERROR = 0, 1, 2


@dataclass
class Verdict:
    level: int
    message: str
    values: dict[str, str]


class NodeStats:
    """Thread-safe counters updated by the image callback (executor) and the worker thread."""

    def __init__(self, window: int = 50):
        self._lock = threading.Lock()
        self._arrivals: collections.deque[float] = collections.deque(maxlen=window)
        self._done: collections.deque[float] = collections.deque(maxlen=window)
        self._proc_ms: collections.deque[float] = collections.deque(maxlen=window)
        self.last_image_time: float | None = None
        self.start_time = time.monotonic()
        self.status = "waiting for images"
        self.inliers = 0
        self.inlier_ratio = 0.0
        self.localized_count = 0
        self.lost_count = 0
        self.bad_images = 0
        self.last_error = ""
        self.odometry_used = 0  # frames whose relative motion (odometry) reached the relocalizer
        self.odometry_refused = 0
        self.last_odometry_refusal = ""

    def image_arrived(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._arrivals.append(now)
            self.last_image_time = now

    def frame_done(self, status: str, inliers: int, inlier_ratio: float, processing_ms: float) -> None:
        with self._lock:
            self._done.append(time.monotonic())
            self._proc_ms.append(processing_ms)
            self.status, self.inliers, self.inlier_ratio = status, inliers, inlier_ratio
            if status == "localized":
                self.localized_count += 1
            else:
                self.lost_count += 1

    def bad_image(self, reason: str) -> None:
        with self._lock:
            self.bad_images += 1
            self.last_error = reason

    def relative_motion_used(self) -> None:
        with self._lock:
            self.odometry_used += 1

    def odometry_message_refused(self, reason: str) -> None:
        with self._lock:
            self.odometry_refused += 1
            self.last_odometry_refusal = reason

    @staticmethod
    def _rate(stamps) -> float:
        if len(stamps) < 2 or stamps[-1] <= stamps[0]:
            return 0.0
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])

    def verdict(self, map_loaded: bool, map_path: str, mode: str, tf_backend: str, replaced: int,
                no_image_timeout: float, now: float | None = None) -> Verdict:
        now = time.monotonic() if now is None else now
        with self._lock:
            since = None if self.last_image_time is None else now - self.last_image_time
            proc = sorted(self._proc_ms)
            values = {
                "state": self.status,
                "inliers": str(self.inliers),
                "inlier_ratio": f"{self.inlier_ratio:.3f}",
                "processing_ms_median": f"{proc[len(proc) // 2]:.1f}" if proc else "n/a",
                "input_rate_hz": f"{self._rate(self._arrivals):.2f}",
                "processed_rate_hz": f"{self._rate(self._done):.2f}",
                "frames_localized": str(self.localized_count),
                "frames_lost": str(self.lost_count),
                "frames_dropped_newer_arrived": str(replaced),
                "bad_images": str(self.bad_images),
                "last_bad_image": self.last_error or "none",
                "seconds_since_last_image": "never" if since is None else f"{since:.2f}",
                "map": map_path or "none",
                "mode": mode,
                "tf": tf_backend,
                "odometry_frames_used": str(self.odometry_used),
                "odometry_refused": str(self.odometry_refused),
                "last_refused_odometry": self.last_odometry_refusal or "none",
            }
            status = self.status
        if not map_loaded:
            return Verdict(ERROR, "no map loaded: set map_path or call ~/load_map", values)
        waited = now - self.start_time if since is None else since
        if waited > no_image_timeout:
            return Verdict(WARN, f"no image for {waited:.1f} s", values)
        if status == "localized":
            return Verdict(OK, "localized", values)
        return Verdict(WARN, status, values)
