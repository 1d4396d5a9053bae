"""Vectorised nearest-hit ray casting against axis-aligned rectangles (numpy, float32).

Each face costs a handful of array operations over the rays that can reach it: the camera
renderer passes a screen-space region per face (its projected bounding box), so small or
back-facing faces cost next to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .scene import Face


@dataclass
class FaceTable:
    """Per-face numbers the casting loop needs, precomputed once per scene."""

    axis: np.ndarray  # (F,) normal axis
    coord: np.ndarray  # (F,) plane coordinate
    facing: np.ndarray  # (F,) +-1
    u_axis: np.ndarray  # (F,) world axis of texture u
    u_sign: np.ndarray
    v_axis: np.ndarray
    v_sign: np.ndarray
    origin: np.ndarray  # (F, 3) texture origin corner
    size: np.ndarray  # (F, 2) width (u), height (v) in metres
    corners: np.ndarray  # (F, 4, 3)

    @classmethod
    def from_faces(cls, faces: Sequence[Face]) -> "FaceTable":
        if not faces:
            raise ValueError("a scene needs at least one face")
        rows = []
        for f in faces:
            o, u, v, w, h = f.frame()
            ua, va = int(np.argmax(np.abs(u))), int(np.argmax(np.abs(v)))
            rows.append((f.axis, f.coord, f.facing, ua, np.sign(u[ua]), va, np.sign(v[va]), o, (w, h),
                         f.corners()))
        cols = list(zip(*rows))
        return cls(np.array(cols[0]), np.array(cols[1]), np.array(cols[2]), np.array(cols[3]),
                   np.array(cols[4]), np.array(cols[5]), np.array(cols[6]), np.stack(cols[7]),
                   np.array(cols[8], dtype=np.float64), np.stack(cols[9]))

    def __len__(self) -> int:
        return len(self.axis)


@dataclass
class Hits:
    """Nearest hit per ray: ray parameter t (inf: none), face index (-1: none), the hit's face
    coordinates in metres along the face's texture u and v directions, and the ray direction's
    component along the face normal's axis (for the angle of incidence)."""

    t: np.ndarray
    face: np.ndarray
    fu: np.ndarray
    fv: np.ndarray
    dn: np.ndarray


def cast(table: FaceTable, origin: Sequence, dirs: Sequence[np.ndarray], t_min: float = 1e-4,
         t_max: float | np.ndarray = np.inf, regions: Sequence | None = None,
         one_sided: bool = True) -> Hits:
    """Nearest hit of rays ``origin + t * dirs`` (t in units of the direction's length).

    ``origin``: three floats (shared origin, e.g. a camera centre) or three arrays shaped like
    the direction components. ``regions[i]``: an index (e.g. a tuple of slices) selecting the
    rays that can possibly reach face i, or None to skip face i. ``one_sided``: faces are seen
    only from their front (cameras); shadow rays use both sides.
    """
    d = [np.asarray(c, np.float32) for c in dirs]
    shape = d[0].shape
    shared = all(np.ndim(o) == 0 for o in origin)
    o = [float(c) if shared else np.broadcast_to(np.asarray(c, np.float32), shape) for c in origin]
    inv = []
    for c in d:  # 1/d with zeros nudged off zero: a ray parallel to a plane never hits it
        safe = np.where(np.abs(c) < 1e-12, np.float32(1e-12), c)
        inv.append((1.0 / safe).astype(np.float32))
    t_best = np.full(shape, np.inf, np.float32)
    if np.ndim(t_max) or np.isfinite(t_max):
        t_best[...] = t_max
    face = np.full(shape, -1, np.intp)  # intp: np.take is several times faster with it
    fu_best = np.zeros(shape, np.float32)
    fv_best = np.zeros(shape, np.float32)
    dn_best = np.zeros(shape, np.float32)
    everything = (slice(None),) * len(shape)
    for i in range(len(table)):
        a, ua, va = int(table.axis[i]), int(table.u_axis[i]), int(table.v_axis[i])
        coord = float(table.coord[i])
        if shared and one_sided and (o[a] - coord) * table.facing[i] <= 0:
            continue  # the camera is behind this face
        sel = everything if regions is None else regions[i]
        if sel is None:
            continue
        oa = o[a] if shared else o[a][sel]
        t = (coord - oa) * inv[a][sel]
        fu = _face_coord(t, o[ua] if shared else o[ua][sel], d[ua][sel],
                         table.origin[i, ua], table.u_sign[i])
        fv = _face_coord(t, o[va] if shared else o[va][sel], d[va][sel],
                         table.origin[i, va], table.v_sign[i])
        w, h = table.size[i]
        tb = t_best[sel]
        mask = (t > t_min) & (t < tb) & (fu >= 0) & (fu <= w) & (fv >= 0) & (fv <= h)
        if one_sided and not shared:
            mask &= d[a][sel] * table.facing[i] < 0
        if not mask.any():
            continue
        np.copyto(tb, t, where=mask)
        np.copyto(face[sel], i, where=mask)
        np.copyto(fu_best[sel], fu, where=mask)
        np.copyto(fv_best[sel], fv, where=mask)
        np.copyto(dn_best[sel], d[a][sel], where=mask)
    return Hits(t_best, face, fu_best, fv_best, dn_best)


def _face_coord(t: np.ndarray, o, d: np.ndarray, origin: float, sign: float) -> np.ndarray:
    """Distance (metres) from the face's texture origin along one in-plane axis."""
    x = t * d
    x += (o - origin) if np.ndim(o) == 0 else (o - np.float32(origin))
    if sign < 0:
        np.negative(x, out=x)
    return x
