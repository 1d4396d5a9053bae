"""Baked diffuse lighting: per-face lightmaps with soft shadows, computed once per scene.

Lighting is view-independent (Lambertian), so baking it keeps rendering to one extra bilinear
lookup per pixel while giving what photographs have and flat textures lack: brightness that
differs between the faces of a box, gradients along walls, and contact shadows under furniture.
"""

from __future__ import annotations

import numpy as np

from .raycast import FaceTable, cast
from .scene import Face, Light, Lightmap

LAMP_IRRADIANCE = 1.6  # brightness of emissive faces, on the lightmap's scale
MEDIAN_IRRADIANCE = 0.6  # the median surface's brightness after auto-exposure


def bake_lightmap(faces: list[Face], lights: list[Light], rng: np.random.Generator,
                  samples_per_metre: float = 12.0, light_samples: int = 3,
                  ambient: float = 0.35) -> Lightmap:
    """Irradiance on a grid of ``samples_per_metre`` per face: ambient (a little more on
    upward faces) plus each light's cosine/distance falloff times its visibility, averaged over
    ``light_samples`` points on the light's sphere (soft shadows)."""
    table = FaceTable.from_faces(faces)
    grids, points, normals = [], [], []
    for f in faces:
        o, u, v, w, h = f.frame()
        nx = max(2, int(np.ceil(w * samples_per_metre)) + 1)
        ny = max(2, int(np.ceil(h * samples_per_metre)) + 1)
        gu, gv = np.meshgrid(np.linspace(0, w, nx), np.linspace(0, h, ny))
        p = o + gu[..., None] * u + gv[..., None] * v
        grids.append((nx, ny, (nx - 1) / w, (ny - 1) / h))
        points.append(p.reshape(-1, 3))
        normals.append(np.broadcast_to(f.normal, (nx * ny, 3)))
    counts = [len(p) for p in points]
    P = np.concatenate(points)
    N = np.concatenate(normals)
    E = ambient * (0.85 + 0.15 * N[:, 2])
    start = P + 2e-3 * N  # leave the surface so a ray does not hit its own face
    # The same sample pattern for every light: identical lights in identical surroundings then
    # cast identical shadows (the repetitive scene relies on it).
    pattern = _sphere_points(rng, light_samples)
    for light in lights:
        near = np.repeat(_faces_within(faces, light), counts)
        acc = np.zeros(len(P))
        offsets = pattern * light.radius
        for off in offsets:
            L = np.asarray(light.position) + off
            to_light = L - start
            dist = np.linalg.norm(to_light, axis=1)
            cos = np.einsum("ij,ij->i", N, to_light) / np.maximum(dist, 1e-9)
            lit = (cos > 0) & near & (dist < light.reach)
            if not lit.any():
                continue
            idx = np.nonzero(lit)[0]
            hits = cast(table, [start[idx, k] for k in range(3)],
                        [to_light[idx, k] for k in range(3)], t_min=1e-4, t_max=1.0 - 1e-4,
                        one_sided=False)
            visible = hits.face < 0
            # Inverse-square-like falloff, windowed to zero at the light's reach so that the
            # cut-off leaves no visible edge.
            window = np.clip(1.0 - (dist[idx] / light.reach) ** 2, 0.0, 1.0) ** 2
            acc[idx] += visible * cos[idx] * window * light.intensity / (1.0 + dist[idx] ** 2)
        E += acc / len(offsets)
    # Auto-exposure: scale so the median surface is as bright as in an indoor photograph
    # (redkitchen frames average ~115 of 255; textures average ~190).
    E *= MEDIAN_IRRADIANCE / max(float(np.median(E)), 1e-6)
    return _pack(faces, grids, E.astype(np.float32))


def _faces_within(faces: list[Face], light: Light) -> np.ndarray:
    """Per face: whether any of it comes within the light's reach."""
    pos = np.asarray(light.position)
    flags = []
    for f in faces:
        c = f.corners()
        closest = np.clip(pos, c.min(0), c.max(0))  # nearest point of the (axis-aligned) rectangle
        flags.append(np.linalg.norm(closest - pos) < light.reach)
    return np.array(flags)


def _sphere_points(rng: np.random.Generator, n: int) -> np.ndarray:
    if n <= 1:
        return np.zeros((1, 3))
    x = rng.standard_normal((n, 3))
    return x / np.linalg.norm(x, axis=1, keepdims=True) * rng.uniform(0.3, 1.0, (n, 1))


def _pack(faces: list[Face], grids: list[tuple], E: np.ndarray) -> Lightmap:
    """Pack the per-face grids into one image (rows of at most 2048 samples, 2-sample gaps)."""
    offsets, x, y, row_h, width = [], 0, 0, 0, 0
    for nx, ny, _, _ in grids:
        if x + nx + 2 > 2048:
            x, y, row_h = 0, y + row_h, 0
        offsets.append((x + 1, y + 1))
        x += nx + 2
        row_h = max(row_h, ny + 2)
        width = max(width, x)
    image = np.zeros((y + row_h, width), np.float32)
    start = 0
    for f, (nx, ny, _, _), (ox, oy) in zip(faces, grids, offsets):
        g = E[start:start + nx * ny].reshape(ny, nx)
        start += nx * ny
        if f.emissive:
            g = np.full_like(g, LAMP_IRRADIANCE)
        image[oy - 1:oy + ny + 1, ox - 1:ox + nx + 1] = np.pad(g, 1, mode="edge")
    return Lightmap(image=image, offsets=np.array(offsets, np.float32),
                    scales=np.array([(g[2], g[3]) for g in grids], np.float32),
                    shapes=np.array([(g[0], g[1]) for g in grids], np.float32))
