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
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .features import LocalFeatures, make_extractor
from .matching import match_descriptors
from .posegeom import epipolar_distance, fundamental_from_poses, select_pairs
from .retrieval import train_vocabulary, vlad
from .triangulation import TriangulationSettings, triangulate_tracks

FORMAT_VERSION = 1


@dataclass
class MapSettings:
    features: str = "sift"
    max_features: int = 4000
    feature_options: dict = field(default_factory=dict)  # extractor keyword arguments
    pairs_per_frame: int = 3
    pair_max_angle_deg: float = 30.0
    pair_max_distance_m: float = 1.0
    pair_min_baseline_m: float = 0.02
    match_ratio: float = 0.8
    match_mutual: bool = True
    match_precision: str = "bfloat16"  # similarity matmul; see matching.similarity
    epipolar_px: float = 3.0
    triangulation: TriangulationSettings = field(default_factory=TriangulationSettings)
    vlad_words: int = 64

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "MapSettings":
        d = json.loads(text)
        d["triangulation"] = TriangulationSettings(**d["triangulation"])
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


def _tracks_from_matches(edges: np.ndarray, node_image: np.ndarray) -> tuple[np.ndarray, int]:
    """Track id per node (-1: in no track) from match edges; connected components = union-find.

    A component holding two keypoints of the same image is partly wrong; those observations are
    dropped (the rest of the track stays), and components left with fewer than 2 are discarded.
    """
    n = len(node_image)
    g = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, label = connected_components(g, directed=False)
    size = np.bincount(label)
    label = np.where(size[label] >= 2, label, -1)
    # drop (track, image) duplicates
    key = np.where(label >= 0, label.astype(np.int64) * (node_image.max() + 1) + node_image, -1)
    uniq, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
    label = np.where((cnt[inv] > 1) | (key < 0), -1, label)
    size = np.bincount(label[label >= 0], minlength=label.max() + 1 if (label >= 0).any() else 0)
    label = np.where((label >= 0) & (size[np.maximum(label, 0)] >= 2), label, -1)
    # renumber to 0..T-1
    used, label_new = np.unique(label[label >= 0], return_inverse=True)
    out = np.full(n, -1, np.int64)
    out[label >= 0] = label_new
    return out, len(used)


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


def verified_matches(feats: list[LocalFeatures], poses: np.ndarray, Ks: np.ndarray,
                     pairs: np.ndarray, settings: MapSettings, progress: bool = True
                     ) -> tuple[np.ndarray, int]:
    """Match edges (global keypoint ids, as offsets into the concatenated features) of all pairs
    that pass the epipolar check with the known poses, and the number of matches before it."""
    from tqdm import tqdm

    offsets = np.concatenate([[0], np.cumsum([len(x) for x in feats])])
    edges, n_raw = [], 0
    for i, j in tqdm(pairs, desc="map: matching", disable=not progress, leave=False):
        ia, ib = match_descriptors(feats[i].descriptors.astype(np.float32),
                                   feats[j].descriptors.astype(np.float32),
                                   settings.match_ratio, settings.match_mutual,
                                   settings.match_precision)
        n_raw += len(ia)
        F = fundamental_from_poses(Ks[i], poses[i], Ks[j], poses[j])
        ok = epipolar_distance(F, feats[i].keypoints[ia].astype(np.float64),
                               feats[j].keypoints[ib].astype(np.float64)) < settings.epipolar_px
        edges.append(np.stack([ia[ok] + offsets[i], ib[ok] + offsets[j]], axis=1))
    return np.concatenate(edges) if edges else np.zeros((0, 2), np.int64), n_raw


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
    t1 = time.perf_counter()
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in feats])])
    node_image = np.repeat(np.arange(len(feats)), np.diff(offsets))
    pairs = select_pairs(poses, settings.pairs_per_frame, settings.pair_max_angle_deg,
                         settings.pair_max_distance_m, settings.pair_min_baseline_m)
    if len(pairs) == 0:
        raise ValueError("no mapping pairs: no two mapping frames look the same way within "
                         f"{settings.pair_max_distance_m} m / {settings.pair_max_angle_deg} deg")
    edges, n_raw = verified_matches(feats, poses, Ks, pairs, settings, progress)
    t_match = time.perf_counter() - t1
    if len(edges) == 0:
        raise ValueError(
            f"no verified matches between the {len(pairs)} mapping pairs ({n_raw} before the "
            "epipolar check, {:.0f} keypoints per image): the images may be textureless or the "
            "poses wrong; check the scene, or loosen epipolar_px / match_ratio".format(
                float(np.mean(np.diff(offsets)))))

    track, num_tracks = _tracks_from_matches(edges, node_image)
    nodes = np.flatnonzero(track >= 0)
    all_xy = np.concatenate([x.keypoints for x in feats])
    tri = triangulate_tracks(track[nodes], node_image[nodes], all_xy[nodes], poses, Ks,
                             num_tracks, settings.triangulation)
    t_tri = time.perf_counter() - t1 - t_match

    keep_obs = tri.obs_inlier
    obs_nodes = nodes[keep_obs]
    old_ids = track[obs_nodes]
    used, obs_point = np.unique(old_ids, return_inverse=True)
    points = tri.points[used]
    if len(points) == 0:
        raise ValueError(f"no 3D point survived triangulation of {num_tracks} tracks: the mapping "
                         "baselines may be too small for the minimum triangulation angle "
                         f"({settings.triangulation.min_angle_deg} deg), or the poses wrong")
    all_desc = np.concatenate([x.descriptors for x in feats])
    desc = np.zeros((len(used), all_desc.shape[1]), np.float32)
    np.add.at(desc, obs_point, all_desc[obs_nodes].astype(np.float32))
    desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)

    centres = train_vocabulary(all_desc.astype(np.float32), settings.vlad_words)
    image_vlad = np.stack([vlad(x.descriptors.astype(np.float32), centres) for x in feats])
    mapping_s = time.perf_counter() - t0
    track_len = np.bincount(obs_point)
    stats = {
        "images": len(feats), "pairs": int(len(pairs)),
        "features_per_image": float(np.mean(np.diff(offsets))),
        "raw_matches": int(n_raw), "verified_matches": int(len(edges)),
        "tracks": int(num_tracks), "points": int(len(points)),
        "observations": int(len(obs_point)),
        "mean_track_length": float(track_len.mean()) if len(track_len) else 0.0,
        "median_obs_error_px": float(np.median(tri.obs_error_px[keep_obs])) if keep_obs.any() else None,
        "seconds": {"features": t_feat, "matching": t_match, "triangulation": t_tri,
                    "total": mapping_s},
    }
    log(f"map: {stats['points']} points from {stats['tracks']} tracks, "
        f"{stats['observations']} observations (mean track {stats['mean_track_length']:.1f}), "
        f"{len(pairs)} pairs, {mapping_s:.0f} s")
    return Reconstruction(settings, list(names), poses, Ks, points, desc,
                          obs_point.astype(np.int64), node_image[obs_nodes].astype(np.int64),
                          all_xy[obs_nodes].astype(np.float32), centres, image_vlad, mapping_s,
                          stats)
