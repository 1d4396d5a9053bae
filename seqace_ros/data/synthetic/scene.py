"""Scene geometry and its texture atlas: one-sided axis-aligned rectangles ("faces").

A room is six inward faces, a piece of furniture five or six outward faces of a box, a poster
or rug a thin "decal" face just in front of a wall or floor. World frame: metres, z up.
Every face maps a texture (metres along its u and v directions times the texture's texels per
metre); textures live in one atlas with a mip pyramid so that the renderer needs a single
``cv2.remap`` per level. Faces that share a texture id look identical: the repetitive scene is
built that way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

# Atlas padding and alignment in level-0 texels: pyrDown bleeds about 2 texels per level, so 32
# keeps MIP_LEVELS levels clean, and 32-aligned offsets stay integral down to level 5.
PAD = 32
MIP_LEVELS = 4
ATLAS_MAX_WIDTH = 8192  # cv2.remap needs source coordinates below 32767
MIN_DRAW_PPM = 128.0  # texel density below which materials are drawn larger and shrunk


@dataclass(frozen=True)
class Face:
    """A one-sided rectangle on the plane ``x[axis] == coord``, seen from the side ``facing``
    (+1: from larger ``x[axis]``). ``lo``/``hi`` bound the two other axes (in increasing axis
    order). Texture u runs to the viewer's right and v downwards (walls upright)."""

    axis: int
    coord: float
    facing: int
    lo: tuple[float, float]
    hi: tuple[float, float]
    texture: int = -1
    name: str = ""
    emissive: bool = False  # a lamp: its brightness does not depend on the lighting

    def __post_init__(self) -> None:
        if self.axis not in (0, 1, 2) or self.facing not in (-1, 1):
            raise ValueError(f"face {self.name!r}: axis must be 0/1/2 and facing +-1")
        if not all(h > l for l, h in zip(self.lo, self.hi)):
            raise ValueError(f"face {self.name!r}: empty rectangle lo={self.lo} hi={self.hi}")

    @property
    def normal(self) -> np.ndarray:
        n = np.zeros(3)
        n[self.axis] = self.facing
        return n

    def frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
        """(origin, u_dir, v_dir, width_m, height_m): origin is the texture's top-left corner."""
        n = self.normal
        v = np.array([0.0, 0.0, -1.0]) if self.axis != 2 else np.array([0.0, -1.0, 0.0])
        u = np.cross(n, v)  # a viewer looking along -n sees u to the right, v down: no mirroring
        others = [a for a in range(3) if a != self.axis]
        origin = np.zeros(3)
        origin[self.axis] = self.coord
        size = {}
        for k, a in enumerate(others):
            d = u if abs(u[a]) > 0.5 else v
            origin[a] = self.lo[k] if d[a] > 0 else self.hi[k]
            size["u" if d is u else "v"] = self.hi[k] - self.lo[k]
        return origin, u, v, size["u"], size["v"]

    def corners(self) -> np.ndarray:
        """The four corners (4, 3) in order around the rectangle."""
        o, u, v, w, h = self.frame()
        return np.stack([o, o + w * u, o + w * u + h * v, o + h * v])


@dataclass(frozen=True)
class Light:
    """A spherical point light; ``radius`` > 0 gives soft shadows. ``reach``: beyond this
    distance its contribution is ignored (a speed cut; the falloff is small there)."""

    position: tuple[float, float, float]
    intensity: float
    radius: float = 0.1
    reach: float = 6.0


@dataclass
class TextureAtlas:
    """All textures packed into one padded image, with its mip pyramid in the same image:
    level 0 on top, levels 1, 2, ... side by side below it. One image means the renderer reads
    any pixel's two mip levels with two ``cv2.remap`` calls, whatever levels they are."""

    image: np.ndarray  # uint8 BGR
    level_offsets: np.ndarray  # (L, 2) int x, y of each mip level's top-left corner in ``image``
    level_sizes: np.ndarray  # (L, 2) int width, height of each mip level
    rects: np.ndarray  # (T, 4) int: x, y, width, height of each texture at level 0
    ppm: np.ndarray  # (T,) texels per metre
    wrap: np.ndarray  # (T,) bool: the texture repeats over its face

    @property
    def nbytes(self) -> int:
        return int(self.image.nbytes)

    def level(self, k: int) -> np.ndarray:
        """Mip level ``k`` as a view (for inspection and tests)."""
        (x, y), (w, h) = self.level_offsets[k], self.level_sizes[k]
        return self.image[y:y + h, x:x + w]


@dataclass
class Scene:
    """Faces, their textures and baked lighting, and where a camera may plausibly go."""

    kind: str
    seed: int
    faces: list[Face]
    atlas: TextureAtlas
    lights: list[Light]
    bounds: tuple[np.ndarray, np.ndarray]  # room box (lo, hi)
    camera_center: np.ndarray  # centre of the region the trajectories cover
    camera_extent: np.ndarray  # full widths of that region along x, y, z (metres)
    view_yaw_deg: float  # mean viewing direction: yaw around +z, 0 = looking along +x
    view_yaw_spread_deg: float
    pitch_range_deg: tuple[float, float]
    roll_std_deg: float = 3.0  # hand-held cameras roll a little; a robot's hardly
    lightmap: "Lightmap | None" = None
    info: dict = field(default_factory=dict)


@dataclass
class Lightmap:
    """Per-face irradiance on a coarse grid, packed in one float32 image."""

    image: np.ndarray  # (H, W) float32
    offsets: np.ndarray  # (F, 2) x, y of each face's grid
    scales: np.ndarray  # (F, 2) grid samples per metre along u and v
    shapes: np.ndarray  # (F, 2) grid size nx, ny


class SceneBuilder:
    """Collects textures and faces; ``finish`` packs the atlas.

    Materials are callables ``(rng, height_px, width_px, ppm) -> BGR uint8`` so each face gets
    a texture of exactly its size, drawn from the builder's random generator in call order
    (which keeps a scene deterministic for its seed).
    """

    def __init__(self, rng: np.random.Generator, ppm: float) -> None:
        self.rng = rng
        self.ppm = float(ppm)
        self.faces: list[Face] = []
        self.textures: list[tuple[np.ndarray, float, bool]] = []

    def add_texture(self, image: np.ndarray, ppm: float, wrap: bool = False) -> int:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"textures must be BGR uint8 (H, W, 3), got {image.dtype} {image.shape}")
        if min(image.shape[:2]) < 1:
            raise ValueError(f"empty texture {image.shape}")
        self.textures.append((image, float(ppm), bool(wrap)))
        return len(self.textures) - 1

    def draw(self, material: Callable, height_m: float, width_m: float, ppm: float) -> np.ndarray:
        """``material`` drawn over height_m x width_m metres at ``ppm`` texels per metre.

        Materials are drawn at MIN_DRAW_PPM or more and then shrunk, so a low-resolution scene
        (for fast tests) shows the same content as the full one, only blurrier.
        """
        draw_ppm = max(ppm, MIN_DRAW_PPM)
        img = material(self.rng, max(8, int(np.ceil(height_m * draw_ppm))),
                       max(8, int(np.ceil(width_m * draw_ppm))), draw_ppm)
        size = (max(1, int(np.ceil(width_m * ppm))), max(1, int(np.ceil(height_m * ppm))))
        if img.shape[1::-1] != size:
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        return img

    def texture_for(self, face: Face, material: Callable, ppm: float | None = None) -> int:
        """Make a texture sized for ``face`` with ``material`` and register it."""
        ppm = self.ppm if ppm is None else ppm
        _, _, _, w, h = face.frame()
        return self.add_texture(self.draw(material, h, w, ppm), ppm)

    def add(self, face: Face, material: Callable | None = None, texture: int | None = None,
            ppm: float | None = None) -> Face:
        """Add a face with either a new texture from ``material`` or an existing ``texture``."""
        if (material is None) == (texture is None):
            raise ValueError("give exactly one of material= or texture=")
        tex = self.texture_for(face, material, ppm) if material is not None else texture
        f = Face(face.axis, face.coord, face.facing, face.lo, face.hi, tex, face.name, face.emissive)
        self.faces.append(f)
        return f

    def finish(self) -> tuple[list[Face], TextureAtlas]:
        return self.faces, pack_atlas(self.textures)


def rect_face(axis: int, coord: float, facing: int, lo: tuple[float, float],
              hi: tuple[float, float], name: str = "", emissive: bool = False) -> Face:
    return Face(axis, float(coord), facing, tuple(map(float, lo)), tuple(map(float, hi)), name=name,
                emissive=emissive)


def box_faces(lo: np.ndarray, hi: np.ndarray, inward: bool = False, bottom: bool = False,
              name: str = "box") -> dict[str, Face]:
    """Faces of the axis-aligned box [lo, hi], keyed by side ('-x', '+x', ..., '+z').

    Outward faces for furniture (bottom omitted: it rests on something); ``inward`` for a room.
    """
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    faces = {}
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        blo, bhi = (lo[others[0]], lo[others[1]]), (hi[others[0]], hi[others[1]])
        for side, coord in (("-", lo[axis]), ("+", hi[axis])):
            key = f"{side}{'xyz'[axis]}"
            if key == "-z" and not (bottom or inward):
                continue
            outward = 1 if side == "+" else -1
            faces[key] = rect_face(axis, coord, -outward if inward else outward, blo, bhi,
                                   f"{name}{key}")
    return faces


def pack_atlas(textures: list[tuple[np.ndarray, float, bool]]) -> TextureAtlas:
    """Shelf-pack padded textures (tallest first) into one image and build its mip pyramid."""
    if not textures:
        raise ValueError("a scene needs at least one texture")
    order = sorted(range(len(textures)), key=lambda i: -textures[i][0].shape[0])
    rects = np.zeros((len(textures), 4), np.int64)
    x = y = shelf_h = 0
    width = 0
    for i in order:
        h, w = textures[i][0].shape[:2]
        pw, ph = _align(w + 2 * PAD), _align(h + 2 * PAD)
        if pw > ATLAS_MAX_WIDTH:
            raise ValueError(f"texture {i} is {w} texels wide; the atlas allows {ATLAS_MAX_WIDTH - 2 * PAD}")
        if x + pw > ATLAS_MAX_WIDTH:
            x, y, shelf_h = 0, y + shelf_h, 0
        rects[i] = (x + PAD, y + PAD, w, h)
        x += pw
        shelf_h = max(shelf_h, ph)
        width = max(width, x)
    height = y + shelf_h
    if height * 1.5 >= 32767:
        raise ValueError(f"texture atlas would be {height} texels tall; lower the texels per metre")
    atlas = np.zeros((height, width, 3), np.uint8)
    for i, (img, _, wrap) in enumerate(textures):
        x0, y0, w, h = rects[i]
        border = cv2.BORDER_WRAP if wrap else cv2.BORDER_REPLICATE
        atlas[y0 - PAD:y0 + h + PAD, x0 - PAD:x0 + w + PAD] = cv2.copyMakeBorder(
            img, PAD, PAD, PAD, PAD, border)
    levels = [atlas]
    for _ in range(MIP_LEVELS - 1):
        levels.append(cv2.pyrDown(levels[-1]))
    image = np.zeros((height + levels[1].shape[0], width, 3), np.uint8)
    offsets, x = [(0, 0)], 0
    image[:height] = atlas
    for lev in levels[1:]:
        image[height:height + lev.shape[0], x:x + lev.shape[1]] = lev
        offsets.append((x, height))
        x += lev.shape[1]
    return TextureAtlas(image=image, level_offsets=np.array(offsets, np.int64),
                        level_sizes=np.array([lev.shape[1::-1] for lev in levels], np.int64),
                        rects=rects,
                        ppm=np.array([t[1] for t in textures], np.float32),
                        wrap=np.array([t[2] for t in textures], bool))


def _align(n: int, a: int = PAD) -> int:
    return (n + a - 1) // a * a
