"""Reader for the DSAC*/ACE scene layout: ``<scene>/{train,test}/{rgb,poses,calibration}``.

As in ACE, the files of the three folders pair up in sorted order whatever their names
(``frame-000000.color.jpg`` / ``frame-000000.pose.txt``, or ``0000.jpg`` / ``0000.txt``).
Poses are 4x4 camera-to-world matrices (OpenCV camera axes); a calibration file holds either one
focal length (principal point at the image centre) or a 3x3 intrinsics matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..errors import SeqaceError
from ..geometry import project_to_so3, rigidity_error
from ..input_bounds import HARD_LIMITS, compressed_size

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm"}
# Rotations that deviate more than this from SO(3) are not poses (7-Scenes is within ~5e-4).
RIGIDITY_TOLERANCE = 2e-2


class SceneError(SeqaceError, ValueError):
    """A scene folder, pose or calibration file that cannot be used; the message names the file."""


class ImageReadError(SeqaceError, IOError):
    """An image file that could not be decoded."""


@dataclass
class SceneFrame:
    """One posed image of a scene split."""

    image_path: Path | None
    pose_c2w: np.ndarray  # 4x4, rotation projected onto SO(3)
    calibration: float | np.ndarray  # focal length in pixels, or a 3x3 K
    name: str  # file stem, used in reports
    # Sources that are not files (ROS bags, synthetic renders) supply the decoded BGR image instead.
    loader: Callable[[], np.ndarray] | None = field(default=None, repr=False)

    def load_image(self) -> np.ndarray:
        """The image as uint8 BGR (H, W, 3); raises ImageReadError when it cannot be decoded."""
        if self.loader is not None:
            return self.loader()
        return read_image(self.image_path)

    def intrinsics(self, width: int, height: int) -> np.ndarray:
        """3x3 K for an image of the given size (the focal-only form centres the principal point)."""
        if isinstance(self.calibration, np.ndarray):
            return self.calibration.copy()
        f = float(self.calibration)
        return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def _sorted_files(folder: Path, suffixes: set[str] | None = None) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    if suffixes is not None:
        files = [p for p in files if p.suffix.lower() in suffixes]
    return sorted(files)


def read_pose(path: Path) -> np.ndarray:
    """Read a 4x4 camera-to-world pose file; refuse anything that is not a rigid transform."""
    try:
        T = np.loadtxt(path, dtype=np.float64)
    except Exception as exc:  # numpy raises several types for malformed text
        raise SceneError(f"{path}: cannot parse pose file ({exc}); expected a 4x4 matrix") from exc
    if T.shape == (3, 4):
        T = np.vstack([T, [0, 0, 0, 1]])
    if T.shape != (4, 4):
        raise SceneError(f"{path}: pose has shape {T.shape}; expected a 4x4 camera-to-world matrix")
    if not np.all(np.isfinite(T)):
        raise SceneError(f"{path}: pose contains NaN or inf")
    if not np.allclose(T[3], [0, 0, 0, 1], atol=1e-6):
        raise SceneError(f"{path}: last row is {T[3].tolist()}, not [0 0 0 1]: not a rigid transform")
    err = rigidity_error(T)
    if err > RIGIDITY_TOLERANCE:
        raise SceneError(
            f"{path}: rotation part is not a rotation (deviation {err:.3g} from orthonormal, "
            f"det {np.linalg.det(T[:3, :3]):.4f}); expected a rigid camera-to-world transform")
    T[:3, :3] = project_to_so3(T[:3, :3])
    return T


def read_calibration(path: Path) -> float | np.ndarray:
    try:
        vals = np.loadtxt(path, dtype=np.float64)
    except Exception as exc:
        raise SceneError(f"{path}: cannot parse calibration file ({exc})") from exc
    if vals.size == 1:
        f = float(vals.reshape(-1)[0])
        if not np.isfinite(f) or f <= 0:
            raise SceneError(f"{path}: focal length {f} is not positive")
        return f
    if vals.shape == (3, 3):
        if not np.all(np.isfinite(vals)):
            raise SceneError(f"{path}: intrinsics matrix contains NaN or inf: {vals.tolist()}")
        if vals[0, 0] <= 0 or vals[1, 1] <= 0 or not np.allclose(vals[2], [0, 0, 1]):
            raise SceneError(f"{path}: not a valid 3x3 intrinsics matrix: {vals.tolist()}")
        return vals
    raise SceneError(f"{path}: expected one focal length or a 3x3 matrix, got shape {vals.shape}")


def load_split(scene: str | Path, split: str) -> list[SceneFrame]:
    """All frames of ``scene/split`` in sorted order, with validated poses and calibrations."""
    root = Path(scene) / split
    if not Path(scene).is_dir():
        what = ("is a file, not a folder" if Path(scene).is_file() else
                "is a broken symbolic link or a link loop" if Path(scene).is_symlink() else "does not exist")
        raise SceneError(f"scene folder {scene} {what}")
    folders = {name: root / name for name in ("rgb", "poses", "calibration")}
    for name, folder in folders.items():
        if not folder.is_dir():
            raise SceneError(
                f"{folder} is missing: a DSAC*/ACE scene needs {split}/rgb, {split}/poses and "
                f"{split}/calibration")
    images = _sorted_files(folders["rgb"], IMAGE_SUFFIXES)
    poses = _sorted_files(folders["poses"])
    calibs = _sorted_files(folders["calibration"])
    if not images:
        raise SceneError(f"{folders['rgb']} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if not (len(images) == len(poses) == len(calibs)):
        raise SceneError(
            f"{root}: {len(images)} images, {len(poses)} pose files and {len(calibs)} calibration "
            "files; the three folders must pair up one to one in sorted order")
    frames = []
    for img, pose, cal in zip(images, poses, calibs):
        frames.append(SceneFrame(image_path=img, pose_c2w=read_pose(pose),
                                 calibration=read_calibration(cal), name=img.stem))
    return frames


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image as uint8 BGR (H, W, 3); raise ImageReadError naming the file otherwise."""
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    if data is None:
        kind = ("a directory" if Path(path).is_dir() else
                "a broken symbolic link or a link loop" if Path(path).is_symlink() else "no such image file")
        raise ImageReadError(f"{path}: {kind}")
    declared = compressed_size(data) if data.size else None
    if declared is not None and declared[0] * declared[1] > HARD_LIMITS.max_pixels:
        # Checked on the header, before decoding: a small PNG can declare gigabytes of pixels.
        raise ImageReadError(f"{path}: its header declares {declared[0]}x{declared[1]} pixels, more than "
                             f"{HARD_LIMITS.max_pixels}; downscale it")
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise ImageReadError(f"{path}: cannot decode image (corrupt or unsupported format)")
    return img
