"""On-disk cache of a mapping sequence's frame-keyframe matches (one .npz per sequence).

The file name identifies the sequence (its frame names and image paths); a key stored inside the
file identifies its contents (image bytes, poses, matcher settings). A file whose key differs is
stale: it is recomputed and overwritten, so a changed image or setting never serves old matches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data.scene_folder import SceneFrame

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1


def image_digest(frame: SceneFrame) -> str:
    """Digest of a frame's image: its file bytes, or the decoded pixels for loader-backed frames."""
    h = hashlib.blake2b(digest_size=16)
    if frame.loader is None and frame.image_path is not None and Path(frame.image_path).is_file():
        with open(frame.image_path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    else:
        img = frame.load_image()
        h.update(repr(img.shape).encode())
        h.update(np.ascontiguousarray(img).tobytes())
    return h.hexdigest()


def cache_key(frames: Sequence[SceneFrame], settings: dict[str, Any], use_poses: bool) -> dict:
    """Everything the matches depend on, as a JSON-able dict."""
    key = {"format": CACHE_FORMAT_VERSION, "settings": settings,
           "images": [image_digest(f) for f in frames]}
    if use_poses:
        h = hashlib.blake2b(digest_size=16)
        for f in frames:
            h.update(np.asarray(f.pose_c2w, dtype=np.float64).tobytes() if f.pose_c2w is not None
                     else b"none")
        key["poses"] = h.hexdigest()
    return json.loads(json.dumps(key, sort_keys=True))  # tuples -> lists, as they come back from disk


def cache_file(cache_dir: Path, frames: Sequence[SceneFrame]) -> Path:
    """Per-sequence file name: the same frames always map to the same file."""
    h = hashlib.blake2b(digest_size=10)
    for f in frames:
        h.update(f"{f.name}|{f.image_path}\n".encode())
    return Path(cache_dir) / f"matches-{len(frames)}-{h.hexdigest()}.npz"


def cache_root() -> Path:
    """seqace_ros's per-user cache folder: $SEQACE_CACHE_DIR (``seqace map --cache-dir`` sets it), else
    $XDG_CACHE_HOME/seqace_ros, else ~/.cache/seqace_ros (the XDG base directory default)."""
    chosen = os.environ.get("SEQACE_CACHE_DIR")
    if chosen:
        return Path(chosen).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec: a relative $XDG_CACHE_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "seqace_ros"


def default_cache_dir(frames: Sequence[SceneFrame]) -> Path | None:
    """A folder under cache_root() named after the frames' split, never the dataset itself (users'
    data folders stay as they were). Frames that are not files (bags, renders) get no default: pass
    ``cache_dir``.
    """
    paths = [f.image_path for f in frames if f.image_path is not None and f.loader is None]
    if not paths or len(paths) != len(frames):
        return None
    split_dir = Path(paths[0]).resolve().parent.parent
    tag = hashlib.blake2b(str(split_dir).encode(), digest_size=6).hexdigest()
    return cache_root() / "matching" / f"{split_dir.parent.name}-{split_dir.name}-{tag}"


def load(path: Path, key: dict) -> dict[str, np.ndarray] | None:
    """The cached arrays if ``path`` exists and was written for ``key``; None otherwise."""
    if not path.is_file():
        log.info("match cache: no file %s", path)
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = json.loads(str(z["key"]))
            if stored != key:
                log.info("match cache: %s is stale (%s); recomputing", path, _why_stale(stored, key))
                return None
            return {k: z[k] for k in z.files if k != "key"}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:  # truncated or foreign file: recompute
        log.warning("match cache: cannot read %s (%s); recomputing", path, exc)
        return None


def save(path: Path, key: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically (temp file + rename) so an interrupted run leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, key=np.array(json.dumps(key, sort_keys=True)), **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _why_stale(stored: dict, key: dict) -> str:
    if stored.get("format") != key.get("format"):
        return "cache format changed"
    if stored.get("settings") != key.get("settings"):
        changed = sorted(k for k in set(stored.get("settings", {})) | set(key["settings"])
                         if stored.get("settings", {}).get(k) != key["settings"].get(k))
        return "settings changed: " + ", ".join(changed)
    old, new = stored.get("images", []), key["images"]
    if len(old) != len(new):
        return "number of images changed"
    changed = [i for i, (a, b) in enumerate(zip(old, new)) if a != b]
    if changed:
        return f"{len(changed)} image(s) changed, first at index {changed[0]}"
    if stored.get("poses") != key.get("poses"):
        return "poses changed"
    return "key differs"
