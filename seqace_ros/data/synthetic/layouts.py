"""The scene kinds: a furnished room with unique textures everywhere, a repetitive room, and a
building-scale courtyard.

All are z-up, in metres, with a region in front of the main wall where trajectories go and a
mean viewing direction towards that wall: in the rooms about the extent of the 7-Scenes redkitchen
trajectory (2 x 0.6 x 1 m), like a person or robot working at a kitchen counter; in the courtyard
most of its length, 4-10 m from the facade, like a robot driving along a building.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from . import textures as tx
from .lighting import bake_lightmap
from .scene import Light, Scene, SceneBuilder, box_faces, rect_face

DEFAULT_PPM = 256.0  # texels per metre: ~4 mm texels, about one pixel at 2 m with f = 525

Material = Callable[[np.random.Generator, int, int, float], np.ndarray]


def _decorated(base: Material, coverage: float = 0.5) -> Material:
    """``base`` with posters, pictures, boards and shelves hung on it."""
    def make(rng, h, w, ppm):
        return tx.decorate_wall(rng, base(rng, h, w, ppm), ppm, coverage)
    return make


def _plain(fn) -> Material:
    """Adapt a (rng, h, w) generator to the material signature."""
    return lambda rng, h, w, ppm: fn(rng, h, w)


def _lamp(rng, h, w, ppm):
    img = np.full((h, w, 3), 250, np.uint8)
    img[:, :, 0] = 235  # slightly warm
    return tx.grain(rng, img, 2.0)


def _add_box(b: SceneBuilder, lo, hi, materials: dict[str, Material] | Material,
             bottom: bool = False, name: str = "box", ppm: float | None = None) -> None:
    for side, face in box_faces(np.array(lo), np.array(hi), bottom=bottom, name=name).items():
        mat = materials.get(side, materials.get("*")) if isinstance(materials, dict) else materials
        b.add(face, material=mat, ppm=ppm)


def build_room(seed: int, ppm: float = DEFAULT_PPM) -> Scene:
    """A 5 x 4 x 2.6 m room: kitchen counter and wall cabinets on the far wall, a bookshelf,
    a table, a sofa, a rug; walls with posters, pictures, boards and shelves. Every texture is
    drawn independently, so no two places look alike. Cameras stay 1-2 m from the counter,
    about redkitchen's distances."""
    rng = np.random.default_rng([seed, 1])
    b = SceneBuilder(rng, ppm)
    lo, hi = np.array([0.0, 0.0, 0.0]), np.array([5.0, 4.0, 2.6])
    walls = box_faces(lo, hi, inward=True, name="room")
    wall_bases = [tx.plaster, tx.concrete, tx.plaster, tx.concrete]
    for i, side in enumerate(("-x", "+x", "-y", "+y")):
        b.add(walls[side], material=_decorated(wall_bases[i], coverage=0.55))
    b.add(walls["-z"], material=lambda r, h, w, p: tx.wood(r, h, w, p, planks=True))
    b.add(walls["+z"], material=tx.ceiling, ppm=ppm / 2)

    # Far wall (y = 4): counter with worktop clutter, wall cabinets, appliances.
    _add_box(b, (0.3, 3.35, 0.0), (3.9, 4.0, 0.9),
             {"-y": tx.cabinet, "+z": tx.concrete, "*": tx.wood}, name="counter")
    _add_box(b, (0.3, 3.65, 1.5), (2.3, 4.0, 2.2), {"-y": tx.cabinet, "*": tx.wood}, bottom=True,
             name="wallcab")
    _add_box(b, (2.6, 3.45, 0.9), (3.15, 3.9, 1.22), {"-y": _plain(tx.poster), "*": tx.concrete},
             name="microwave")
    _add_box(b, (0.9, 3.55, 0.9), (1.15, 3.75, 1.22), _plain(tx.poster), name="cereal")
    _add_box(b, (1.5, 3.5, 0.9), (1.62, 3.62, 1.1), _plain(tx.picture), name="jar")
    # Right wall: a tall bookshelf; left: a sofa; right, nearer: a table; a rug by the counter.
    _add_box(b, (4.55, 1.9, 0.0), (5.0, 3.2, 2.0), {"-x": tx.bookshelf, "*": tx.wood}, name="shelf")
    _add_box(b, (0.0, 1.3, 0.0), (0.85, 2.6, 0.75), tx.rug, name="sofa")
    _add_box(b, (3.75, 0.9, 0.70), (4.45, 1.6, 0.76), tx.wood, bottom=True, name="table")
    for k, (x, y) in enumerate([(3.8, 0.95), (4.35, 0.95), (3.8, 1.5), (4.35, 1.5)]):
        _add_box(b, (x, y, 0.0), (x + 0.05, y + 0.05, 0.70), tx.wood, name=f"leg{k}")
    _add_box(b, (3.95, 1.1, 0.76), (4.2, 1.3, 0.95), _plain(tx.poster), name="box_on_table")
    b.add(rect_face(2, 0.004, 1, (1.2, 2.5), (3.4, 3.3), "rug"), material=tx.rug)
    lights = [Light((1.5, 2.0, 2.45), 1.4, 0.15), Light((3.5, 2.0, 2.45), 1.4, 0.15),
              Light((2.5, 0.8, 2.45), 0.8, 0.15)]
    for i, L in enumerate(lights):
        x, y, _ = L.position
        b.add(rect_face(2, 2.598, -1, (x - 0.3, y - 0.3), (x + 0.3, y + 0.3), f"lamp{i}", True),
              material=_lamp, ppm=ppm / 4)
    return _finish(b, "room", seed, lights, (lo, hi), center=(2.3, 2.0, 1.35), extent=(2.0, 0.8, 0.6))


def build_repetitive(seed: int, ppm: float = DEFAULT_PPM, module_m: float = 1.0) -> Scene:
    """An 8 x 4 x 2.6 m room whose long walls are one module repeated every ``module_m``
    metres (window, poster, shelf underneath), with a tiled floor and panelled ceiling of the
    same period. Only a few small things are unique (two posters, two boxes on shelves, a mat,
    a cabinet, the end walls), so most of any view could have been seen a module to the left
    or right."""
    rng = np.random.default_rng([seed, 2])
    b = SceneBuilder(rng, ppm)
    length = 8.0
    lo, hi = np.array([0.0, 0.0, 0.0]), np.array([length, 4.0, 2.6])
    walls = box_faces(lo, hi, inward=True, name="room")

    def module(window_side: bool) -> Material:
        """One wall module: plaster with a window (far wall) or a poster (back wall)."""
        def make(rng_, h, w, p):
            base = tx.plaster(rng_, h, w, p)
            if window_side:
                ww, wh = int(0.6 * p), int(0.9 * p)
                x0, y0 = (w - ww) // 2, int(0.45 * p)
                base[y0:y0 + wh, x0:x0 + ww] = tx.window(rng_, wh, ww, p)
            else:
                pw, ph = int(0.45 * p), int(0.6 * p)
                x0, y0 = (w - pw) // 2, int(0.6 * p)
                base[y0:y0 + ph, x0:x0 + pw] = tx.poster(rng_, ph, pw)
            return base
        return make

    height = float(hi[2])
    far = b.add_texture(b.draw(module(True), height, module_m, ppm), ppm, wrap=True)
    back = b.add_texture(b.draw(module(False), height, module_m, ppm), ppm, wrap=True)
    b.add(walls["+y"], texture=far)
    b.add(walls["-y"], texture=back)
    for side, base in (("-x", tx.concrete), ("+x", tx.plaster)):
        b.add(walls[side], material=_decorated(base, coverage=0.5))
    tile_m = module_m / 2
    tile = b.draw(lambda r, h, w, p: tx.tile(r, h, p), tile_m, tile_m, ppm)
    b.add(walls["-z"], texture=b.add_texture(tile, ppm, wrap=True))
    panel = b.draw(lambda r, h, w, p: tx.ceiling(r, h, w, p, panel_m=tile_m, tileable=True),
                   tile_m, tile_m, ppm / 2)
    b.add(walls["+z"], texture=b.add_texture(panel, ppm / 2, wrap=True))

    # Identical low shelves under every window: share one texture per side.
    shelf_lo, shelf_hi = np.array([0.2 * module_m, 3.6, 0.0]), np.array([0.8 * module_m, 4.0, 0.8])
    proto = box_faces(shelf_lo, shelf_hi, name="shelf")
    shared = {side: b.texture_for(face, tx.bookshelf if side == "-y" else tx.wood)
              for side, face in proto.items()}
    lights = []
    for k in range(int(length / module_m)):
        x0 = k * module_m
        for side, face in box_faces(shelf_lo + [x0, 0, 0], shelf_hi + [x0, 0, 0],
                                    name=f"shelf{k}").items():
            b.add(face, texture=shared[side])
        lights.append(Light((x0 + module_m / 2, 2.0, 2.45), 0.9, 0.15, reach=4.0))
    lamp = b.texture_for(rect_face(2, 2.598, -1, (0, 0), (0.4, 0.3)), _lamp, ppm / 4)
    for k, L in enumerate(lights):
        x, y, _ = L.position
        b.add(rect_face(2, 2.598, -1, (x - 0.2, y - 0.15), (x + 0.2, y + 0.15), f"lamp{k}", True),
              texture=lamp)
    # The few unique things, spread so that most views along the sweep hold one or two small
    # ones: posters, boxes on two shelves, a doormat, a cabinet on the back wall.
    b.add(rect_face(1, 3.995, -1, (5.05, 1.55), (5.45, 2.15), "unique_poster"),
          material=_plain(tx.poster))
    b.add(rect_face(1, 3.995, -1, (4.3 * module_m, 0.85), (4.7 * module_m, 1.2), "unique_note"),
          material=_plain(tx.poster))
    _add_box(b, (3.35 * module_m, 3.7, 0.8), (3.6 * module_m, 3.9, 1.05), _plain(tx.poster),
             name="unique_box3")
    _add_box(b, (6.3 * module_m, 3.65, 0.8), (6.5 * module_m, 3.85, 1.15), _plain(tx.picture),
             name="unique_box6")
    b.add(rect_face(2, 0.004, 1, (2.6 * module_m, 2.5), (3.3 * module_m, 3.1), "unique_mat"),
          material=tx.rug)
    _add_box(b, (2.3, 0.0, 0.0), (3.0, 0.5, 1.1), {"+y": tx.cabinet, "*": tx.wood}, name="cabinet")
    # A robot driving along the room with a side-looking camera: nearly constant height, pitch
    # and heading, so views a module apart are alike; the sweep spans three modules.
    return _finish(b, "repetitive", seed, lights, (lo, hi), center=(4.0, 1.6, 1.2),
                   extent=(3.0, 0.4, 0.05), yaw_spread=6.0, pitch=(-14.0, -8.0), roll_std=0.5,
                   extra={"module_m": module_m})


def _facade_bay(window_kind: str) -> Material:
    """One bay of a facade: a plaster or concrete wall with a window (or a shop front / door
    with a sign on the ground floor) and some weathering."""
    def make(rng, h, w, ppm):
        img = (tx.plaster if rng.random() < 0.6 else tx.concrete)(rng, h, w, ppm)
        if window_kind == "shop":
            ww, wh = int(0.7 * w), int(0.55 * h)
            x0, y0 = (w - ww) // 2, h - wh - int(0.05 * h)
            img[y0:y0 + wh, x0:x0 + ww] = tx.window(rng, wh, ww, ppm)
            sh = max(8, int(0.18 * h))
            img[max(0, y0 - sh - 4):y0 - 4, x0:x0 + ww] = tx.poster(rng, min(sh, y0 - 4), ww)
        else:
            ww, wh = int(rng.uniform(0.35, 0.55) * w), int(rng.uniform(0.4, 0.55) * h)
            x0, y0 = (w - ww) // 2 + int(rng.uniform(-0.1, 0.1) * w), int(0.25 * h)
            img[y0:y0 + wh, x0:x0 + ww] = tx.window(rng, wh, ww, ppm)
        return tx.decorate_wall(rng, img, ppm, coverage=0.08)
    return make


def _sky(rng, h, w, ppm):
    view = tx._u8(tx.gradient(h, w, np.float32([235, 205, 170]), np.float32([250, 235, 215]), np.pi / 2))
    clouds = tx.value_noise(rng, h, w, cell=w / 4, octaves=4)
    return tx._u8(view.astype(np.float32) + 50 * np.clip(clouds - 0.5, 0, 1)[..., None])


def build_courtyard(seed: int, ppm: float = DEFAULT_PPM, size_m: float = 30.0) -> Scene:
    """Building scale: a courtyard ``size_m`` long and 16 m deep, closed by 3-storey facades
    (3.5 m bays, windows, shop fronts with signs, pillars and balconies that stand out from the
    wall) over a paved ground. A robot camera drives along it 4-10 m from the main facade,
    looking at it. Textures are coarser than indoors (a quarter of ``ppm``: ~1.6 cm texels, about
    a pixel at 8 m)."""
    if not 12.0 <= size_m <= 120.0:
        raise ValueError(f"courtyard size must be in 12..120 m, got {size_m}")
    rng = np.random.default_rng([seed, 4])
    b = SceneBuilder(rng, ppm)
    fp = ppm / 4
    length, depth, storey, bay = float(size_m), 16.0, 3.3, 3.5
    n_bays = max(3, int(round(length / bay)))
    bay = length / n_bays
    for wall, coord, facing in (("main", depth, -1), ("back", 0.0, 1)):
        for i in range(n_bays):
            for k in range(3):
                face = rect_face(1, coord, facing, (i * bay, k * storey), ((i + 1) * bay, (k + 1) * storey),
                                 f"{wall}_{i}_{k}")
                b.add(face, material=_facade_bay("shop" if k == 0 and rng.random() < 0.5 else "window"), ppm=fp)
            if wall == "main" and rng.random() < 0.4:  # a pillar between two bays
                x = i * bay
                _add_box(b, (x - 0.25, depth - 0.45, 0.0), (x + 0.25, depth, 3 * storey), tx.concrete,
                         name=f"pillar{i}", ppm=fp)
            if wall == "main" and rng.random() < 0.5:  # a balcony on an upper storey
                z = storey * int(rng.integers(1, 3))
                _add_box(b, (i * bay + 0.4, depth - 1.1, z), ((i + 1) * bay - 0.4, depth, z + 1.0),
                         {"-y": tx.wood, "*": tx.concrete}, bottom=True, name=f"balcony{i}", ppm=fp)
    for x, facing in ((0.0, 1), (length, -1)):  # the courtyard's end walls
        for j in range(int(np.ceil(depth / 4.0))):
            y0, y1 = j * 4.0, min(depth, (j + 1) * 4.0)
            b.add(rect_face(0, x, facing, (y0, 0.0), (y1, 3 * storey), f"end{x:.0f}_{j}"),
                  material=_facade_bay("window"), ppm=fp)
    for i in range(int(np.ceil(length / 4.0))):  # paving, in 4 m squares of their own
        for j in range(int(np.ceil(depth / 4.0))):
            x1, y1 = min(length, (i + 1) * 4.0), min(depth, (j + 1) * 4.0)
            b.add(rect_face(2, 0.0, 1, (i * 4.0, j * 4.0), (x1, y1), f"ground_{i}_{j}"), material=tx.concrete,
                  ppm=fp)
    b.add(rect_face(2, 3 * storey + 12.0, -1, (-20.0, -20.0), (length + 20.0, depth + 20.0), "sky", True),
          material=_sky, ppm=ppm / 64)
    lights = [Light((x, 0.3 * depth, 25.0), 900.0, 3.0, reach=120.0)
              for x in np.linspace(0.2 * length, 0.8 * length, 3)]
    bounds = (np.array([0.0, 0.0, 0.0]), np.array([length, depth, 3 * storey]))
    return _finish(b, "courtyard", seed, lights, bounds, center=(length / 2, 0.55 * depth, 1.3),
                   extent=(max(2.0, length - 6.0), 0.35 * depth, 0.2), yaw_spread=35.0, pitch=(-2.0, 14.0),
                   roll_std=1.0, extra={"size_m": length})


def _finish(b: SceneBuilder, kind: str, seed: int, lights: list[Light], bounds, center,
            extent=(2.0, 0.9, 0.6), yaw_spread: float = 40.0, pitch=(-28.0, 5.0),
            roll_std: float = 3.0, extra: dict | None = None) -> Scene:
    faces, atlas = b.finish()
    scene = Scene(kind=kind, seed=seed, faces=faces, atlas=atlas, lights=lights,
                  bounds=(np.asarray(bounds[0]), np.asarray(bounds[1])),
                  camera_center=np.array(center, float), camera_extent=np.array(extent, float),
                  view_yaw_deg=90.0, view_yaw_spread_deg=yaw_spread, pitch_range_deg=pitch,
                  roll_std_deg=roll_std, info=dict(extra or {}))
    scene.lightmap = bake_lightmap(faces, lights, np.random.default_rng([seed, 3]))
    scene.info.update(faces=len(faces), textures=len(atlas.rects),
                      atlas_mb=round(atlas.nbytes / 2**20, 1))
    return scene


SCENE_KINDS: dict[str, Callable[..., Scene]] = {"room": build_room, "repetitive": build_repetitive,
                                                "courtyard": build_courtyard}


def make_scene(kind: str = "room", seed: int = 0, ppm: float = DEFAULT_PPM, size_m: float | None = None) -> Scene:
    """Build a scene of the given kind ("room", "repetitive" or "courtyard"); same seed, same
    scene. ``size_m``: the courtyard's length (the other kinds have a fixed size)."""
    if size_m is not None and kind != "courtyard":
        raise ValueError(f"size_m sets the courtyard's length; the {kind!r} scene has a fixed size")
    if kind not in SCENE_KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; choose one of {sorted(SCENE_KINDS)}")
    if not (32 <= ppm <= 1024) or ppm % 16:
        # Multiples of 16 keep every repeated tile (0.25 m at ppm/2) a whole number of texels,
        # so repeats are exact.
        raise ValueError(f"ppm (texels per metre) must be a multiple of 16 in 32..1024, got {ppm}")
    if size_m is not None:
        return SCENE_KINDS[kind](int(seed), float(ppm), float(size_m))
    return SCENE_KINDS[kind](int(seed), float(ppm))
