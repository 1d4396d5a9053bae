"""The node's link to the core: a loaded map, its relocalizer (single or sequence mode) and the
rules that keep a pose honest. No rclpy here, so it is tested without ROS.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

import numpy as np

from ..errors import SeqaceError
from ..relocalization.result import LOST, RelocResult
from ..settings import RelocConfig
from .tf_math import covariance_is_well_formed


class EngineError(SeqaceError, RuntimeError):
    """A map or mode that cannot be used; the message says why and what to do."""


@dataclass
class EngineSettings:
    mode: str = "single"
    device: str = "auto"
    num_cells: int = RelocConfig.num_cells
    image_height: int = 0  # 0: the map's own
    backend: str = "auto"
    head_precision: str = RelocConfig.precision
    encoder_precision: str = RelocConfig.encoder_precision
    refine: bool = RelocConfig.refine
    refine_keyframes: int = RelocConfig().tracking.keyframes
    threads: int = 0  # 0: all cores
    max_image_pixels: int | None = None  # None: the relocalizer's defaults
    max_image_aspect_ratio: float | None = None


class LocalizationEngine:
    """Holds the map and the relocalizer; every call is serialised by one lock (the worker and the
    services run on different threads)."""

    def __init__(self, settings: EngineSettings):
        self.settings = settings
        self.scene_map = None
        self.map_path: str | None = None
        self._reloc = None
        self._lock = threading.Lock()
        self.load_seconds: float | None = None
        self.warm = False  # the first image of a size traces the encoder (seconds on a CPU)
        self.warm_up_seconds: float | None = None

    @property
    def ready(self) -> bool:
        return self._reloc is not None

    def _config(self) -> RelocConfig:
        s = self.settings
        cfg = replace(RelocConfig(), num_cells=s.num_cells, image_height=s.image_height or None,
                      backend=s.backend, precision=s.head_precision,
                      encoder_precision=s.encoder_precision, refine=s.refine)
        cfg = replace(cfg, tracking=replace(cfg.tracking, keyframes=s.refine_keyframes))
        if s.threads:
            cfg = cfg.with_threads(s.threads)
        for name in ("max_image_pixels", "max_image_aspect_ratio"):
            if getattr(s, name) is not None:
                cfg = replace(cfg, **{name: getattr(s, name)})
        return cfg

    def _make(self, scene_map, mode: str):
        from ..relocalization.localizer import make_localizer

        if self.settings.threads:
            from ..threads import use_threads

            use_threads(self.settings.threads)
        return make_localizer(scene_map, self._config(), mode=mode, device=self.settings.device)

    def load(self, path: str) -> dict:
        """Load ``path`` and switch to it; on any error the current map stays. Returns its metadata."""
        from ..mapfile import MapFileError, load_map, map_path_problem

        if not path:
            raise EngineError("map_path is empty: set it to a map file written by build_map")
        problem = map_path_problem(path)
        if problem is not None:
            raise EngineError(problem)
        t0 = time.perf_counter()
        try:
            scene_map = load_map(path)
            reloc = self._make(scene_map, self.settings.mode)
        except EngineError:
            raise
        except (MapFileError, ImportError, ValueError, RuntimeError, OSError) as exc:
            raise EngineError(f"cannot load map {path}: {exc}") from exc
        except Exception as exc:  # nothing in a file may take the node down: the old map stays
            raise EngineError(f"cannot load map {path}: {type(exc).__name__}: {exc}") from exc
        with self._lock:
            self.scene_map, self._reloc, self.map_path = scene_map, reloc, path
            self.warm = False
        self.load_seconds = time.perf_counter() - t0
        return dict(scene_map.metadata)

    def warm_up(self) -> bool:
        """Localize one noise image of the map's camera size, so that the first real image is not
        slowed by the encoder's one-off tracing. Returns True when it ran. Call it off the executor."""
        if self.warm or self._reloc is None:
            return False
        cam = (self.scene_map.metadata or {}).get("camera") or {}
        cx, cy = cam.get("cx"), cam.get("cy")
        width, height = (int(round(2 * cx)), int(round(2 * cy))) if cx and cy else (640, 480)
        K = np.array([[cam.get("fx") or width, 0, width / 2], [0, cam.get("fy") or width, height / 2], [0, 0, 1.0]])
        image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
        t0 = time.perf_counter()
        with self._lock:
            if self._reloc is not None:
                self._reloc.localize(image, K)
                self._reloc.reset()
            self.warm = True
        self.warm_up_seconds = time.perf_counter() - t0
        return True

    def set_mode(self, mode: str) -> None:
        if mode == self.settings.mode:
            return
        if self.scene_map is not None:
            reloc = self._make(self.scene_map, mode)
            with self._lock:
                self._reloc, self.warm = reloc, False
        self.settings.mode = mode

    def set_num_cells(self, num_cells: int) -> None:
        self.settings.num_cells = num_cells
        if self.scene_map is not None:
            reloc = self._make(self.scene_map, self.settings.mode)
            with self._lock:
                self._reloc, self.warm = reloc, False

    def reset(self) -> None:
        """Forget the sequence window (a no-op in single mode)."""
        with self._lock:
            if self._reloc is not None:
                self._reloc.reset()

    def scene_points(self) -> np.ndarray:
        if self.scene_map is None:
            return np.zeros((0, 3), np.float32)
        return np.asarray(self.scene_map.scene_points, dtype=np.float32).reshape(-1, 3)

    def localize(self, image: np.ndarray, K: np.ndarray, stamp: float | None = None,
                 relative_motion: np.ndarray | None = None) -> RelocResult:
        with self._lock:
            if self._reloc is None:
                return RelocResult(status=LOST, message="no map loaded")
            result = self._reloc.localize(image, K, stamp=stamp, relative_motion=relative_motion)
        # Never pass on a confident pose without an honest covariance.
        if result.localized and (result.pose_c2w is None or not covariance_is_well_formed(result.covariance)):
            return RelocResult(status=LOST, num_inliers=result.num_inliers, timing_ms=result.timing_ms,
                               message="relocalizer gave a pose without a well-formed covariance")
        return result
