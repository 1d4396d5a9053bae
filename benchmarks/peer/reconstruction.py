"""The peer's map: 3D points triangulated from the mapping images with their KNOWN poses.

Pairs of mapping frames are chosen by pose proximity, matched (mutual nearest neighbour + ratio
test), verified against the fundamental matrix implied by the two poses, chained into tracks
(connected components of the match graph, i.e. union-find), and triangulated. Each point keeps the
mean of its observations' descriptors. The map is saved as npz, keyed by settings and data.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from seqace_ros.refinement.triangulation import TriangulationSettings

from .features import LocalFeatures, make_extractor
from .structure import StructureSettings, structure_from_known_poses
from .retrieval import train_vocabulary, vlad

FORMAT_VERSION = 1


def _peer_structure() -> StructureSettings:
    # The library's structure step with the peer's own defaults (RootSIFT: fewer, nearer pairs,
    # Lowe's 0.8, smaller triangulation angles; benchmarks/README.md, "Structure-based peer").
    return StructureSettings(pairs_per_frame=3, pair_min_baseline_m=0.02, match_ratio=0.8,
                             triangulation=TriangulationSettings())


@dataclass
class MapSettings:
    features: str = "sift"
    max_features: int = 4000
    feature_options: dict = field(default_factory=dict)  # extractor keyword arguments
    structure: StructureSettings = field(default_factory=_peer_structure)
    vlad_words: int = 64

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "MapSettings":
        d = json.loads(text)
        st = d["structure"]
        st["triangulation"] = TriangulationSettings(**st["triangulation"])
        d["structure"] = StructureSettings(**st)
        return cls(**d)


@dataclass
class Reconstruction:
    settings: MapSettings
    image_names: list[str]
    poses_c2w: np.ndarray  # (I, 4, 4)
    Ks: np.ndarray  # (I, 3, 3)
    points: np.ndarray  # (P, 3)
    point_desc: np.ndarray  # (P, D) float32, unit norm (mean of the observations' descriptors)
    obs_point: np.ndarray  # (M,) point id of each observation
    obs_image: np.ndarray  # (M,) image id
    obs_xy: np.ndarray  # (M, 2) float32 pixels
    vlad_centres: np.ndarray  # (C, D)
    image_vlad: np.ndarray  # (I, C*D) float32
    mapping_s: float
    stats: dict

    def __post_init__(self) -> None:
        # points seen by each image, as CSR, for gathering the candidates of retrieved frames
        order = np.argsort(self.obs_image, kind="stable")
        self._img_points = self.obs_point[order]
        counts = np.bincount(self.obs_image, minlength=len(self.image_names))
        self._img_ptr = np.concatenate([[0], np.cumsum(counts)])

    def points_seen_by(self, images: np.ndarray) -> np.ndarray:
        """Sorted unique ids of the points observed in the given images."""
        parts = [self._img_points[self._img_ptr[i]:self._img_ptr[i + 1]] for i in images]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp, format_version=FORMAT_VERSION, settings=self.settings.to_json(),
            image_names=np.array(self.image_names), poses_c2w=self.poses_c2w, Ks=self.Ks,
            points=self.points, point_desc=self.point_desc.astype(np.float16),
            obs_point=self.obs_point, obs_image=self.obs_image, obs_xy=self.obs_xy,
            vlad_centres=self.vlad_centres, image_vlad=self.image_vlad.astype(np.float16),
            mapping_s=self.mapping_s, stats=json.dumps(self.stats))
        tmp.replace(path)  # atomic: a killed run never leaves a half-written cache entry

    @classmethod
    def load(cls, path: str | Path) -> "Reconstruction":
        with np.load(path, allow_pickle=False) as z:
            if int(z["format_version"]) != FORMAT_VERSION:
                raise ValueError(f"{path}: map format {int(z['format_version'])}, expected "
                                 f"{FORMAT_VERSION}; delete the file to rebuild it")
            desc = z["point_desc"].astype(np.float32)
            desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
            vl = z["image_vlad"].astype(np.float32)
            return cls(settings=MapSettings.from_json(str(z["settings"])),
                       image_names=[str(s) for s in z["image_names"]],
                       poses_c2w=z["poses_c2w"], Ks=z["Ks"], points=z["points"],
                       point_desc=desc, obs_point=z["obs_point"], obs_image=z["obs_image"],
                       obs_xy=z["obs_xy"], vlad_centres=z["vlad_centres"],
                       image_vlad=vl / np.maximum(np.linalg.norm(vl, axis=1, keepdims=True), 1e-12),
                       mapping_s=float(z["mapping_s"]), stats=json.loads(str(z["stats"])))


def data_fingerprint(frames) -> str:
    """Hash of what the map depends on in the data: image names, sizes, poses, calibrations."""
    h = hashlib.sha1()
    for f in frames:
        size = Path(f.image_path).stat().st_size if f.image_path is not None else -1
        h.update(f"{f.name}:{size}:".encode())
        h.update(np.asarray(f.pose_c2w, np.float64).tobytes())
        h.update(np.asarray(f.calibration, np.float64).tobytes())
    return h.hexdigest()[:16]


def cache_key(settings: MapSettings, frames) -> str:
    h = hashlib.sha1((settings.to_json() + data_fingerprint(frames)).encode()).hexdigest()[:16]
    return f"{settings.features}-{h}"


def extract_map_features(frames, settings: MapSettings, progress: bool = True
                         ) -> tuple[list[LocalFeatures], np.ndarray]:
    """Features of every mapping frame (descriptors kept as float16 to halve memory) and the Ks."""
    from tqdm import tqdm

    extractor = make_extractor(settings.features, settings.max_features,
                               **settings.feature_options)
    feats, Ks = [], []
    for f in tqdm(frames, desc="map: features", disable=not progress, leave=False):
        img = f.load_image()
        Ks.append(f.intrinsics(img.shape[1], img.shape[0]))
        lf = extractor(img)
        feats.append(LocalFeatures(lf.keypoints, lf.descriptors.astype(np.float16)))
    return feats, np.stack(Ks)


def build_reconstruction(frames, settings: MapSettings, progress: bool = True,
                         log=print) -> Reconstruction:
    """Map the given posed frames (SceneFrame list) into a Reconstruction."""
    if len(frames) < 2:
        raise ValueError(f"mapping needs at least 2 posed frames, got {len(frames)}")
    t0 = time.perf_counter()
    feats, Ks = extract_map_features(frames, settings, progress)
    t_feat = time.perf_counter() - t0
    poses = np.stack([f.pose_c2w for f in frames]).astype(np.float64)
    return reconstruct_from_features(feats, poses, Ks, [f.name for f in frames], settings,
                                     progress, log, t_start=t0, t_feat=t_feat)


def reconstruct_from_features(feats: list[LocalFeatures], poses: np.ndarray, Ks: np.ndarray,
                              names: list[str], settings: MapSettings, progress: bool = True,
                              log=print, t_start: float | None = None,
                              t_feat: float = 0.0) -> Reconstruction:
    """Pairs, verified matches, tracks, triangulation and retrieval index from mapping features."""
    t0 = time.perf_counter() if t_start is None else t_start
    structure = structure_from_known_poses(feats, poses, Ks, settings.structure, progress)
    points, desc, obs_point = structure.points, structure.point_desc, structure.obs_point
    all_desc = np.concatenate([x.descriptors for x in feats])
    centres = train_vocabulary(all_desc.astype(np.float32), settings.vlad_words)
    image_vlad = np.stack([vlad(x.descriptors.astype(np.float32), centres) for x in feats])
    mapping_s = time.perf_counter() - t0
    stats = dict(structure.stats)
    stats["seconds"] = {"features": t_feat, **stats["seconds"], "total": mapping_s}
    log(f"map: {stats['points']} points from {stats['tracks']} tracks, "
        f"{stats['observations']} observations (mean track {stats['mean_track_length']:.1f}), "
        f"{stats['pairs']} pairs, {mapping_s:.0f} s")
    return Reconstruction(settings, list(names), poses, Ks, points, desc, obs_point,
                          structure.obs_image, structure.obs_xy, centres, image_vlad, mapping_s, stats)
