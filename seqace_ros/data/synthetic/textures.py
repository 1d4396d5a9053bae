"""Procedural textures that look enough like photographs for a learned local feature.

Every generator takes a ``numpy.random.Generator`` and a size in texels and returns a BGR uint8
image; the same generator state gives the same bytes. The content mixes the cues real indoor
photographs have at many scales: 1/f noise, gradients, printed shapes, text-like strokes, wood
grain, book spines, windows with a view. ``tileable=True`` variants wrap seamlessly, for the
repeated tiles and modules of the repetitive scene.
"""

from __future__ import annotations

import string

import cv2
import numpy as np

Rng = np.random.Generator

FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
         cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
         cv2.FONT_HERSHEY_COMPLEX_SMALL)


# ---------------------------------------------------------------- noise and colour -----------

def value_noise(rng: Rng, h: int, w: int, cell: float, octaves: int = 4,
                persistence: float = 0.55) -> np.ndarray:
    """Fractal value noise in [0, 1] (float32): random grids upsampled by bicubic interpolation,
    coarsest cell ``cell`` texels, each octave half the cell size."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        gh, gw = max(2, int(np.ceil(h / cell)) + 1), max(2, int(np.ceil(w / cell)) + 1)
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        big = cv2.resize(grid, (int(round((gw - 1) * cell)) + 1, int(round((gh - 1) * cell)) + 1),
                         interpolation=cv2.INTER_CUBIC)
        out += amp * big[:h, :w]
        total += amp
        amp *= persistence
        cell = max(cell / 2.0, 1.0)
    return _normalize(out)


def spectral_noise(rng: Rng, h: int, w: int, beta: float = 1.0, min_period: float = 2.0) -> np.ndarray:
    """Periodic 1/f^beta noise in [0, 1] via FFT: it tiles seamlessly (used for wrapped tiles)."""
    white = rng.standard_normal((h, w)).astype(np.float32)
    spec = np.fft.rfft2(white)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    gain = f ** (-beta)
    gain[f > 1.0 / min_period] = 0.0
    gain[0, 0] = 0.0
    return _normalize(np.fft.irfft2(spec * gain, s=(h, w)).astype(np.float32))


def _normalize(x: np.ndarray) -> np.ndarray:
    """Zero-mean unit-std field mapped to [0, 1] around 0.5 (about +-2.7 sigma)."""
    x = x - x.mean()
    std = float(x.std()) or 1.0
    return np.clip(0.5 + x / (5.4 * std), 0.0, 1.0).astype(np.float32)


def random_color(rng: Rng, sat: tuple[float, float] = (0.2, 0.8),
                 val: tuple[float, float] = (0.3, 0.95),
                 hue: tuple[int, int] = (0, 180)) -> np.ndarray:
    """A BGR colour in [0, 255] from a random hue (OpenCV's 0-180 scale), saturation and value."""
    hsv = np.uint8([[[rng.integers(*hue), rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def colorize(field: np.ndarray, colors: list[np.ndarray]) -> np.ndarray:
    """Map a [0, 1] field through a piecewise-linear gradient of BGR colours."""
    lut_pos = np.linspace(0.0, 1.0, len(colors))
    ramp = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(ramp, lut_pos, [c[k] for c in colors]) for k in range(3)], axis=-1)
    idx = np.clip(field * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return lut.astype(np.uint8)[idx]


def gradient(h: int, w: int, c0: np.ndarray, c1: np.ndarray, angle: float) -> np.ndarray:
    """Linear colour gradient (float32 BGR) along direction ``angle`` (radians)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    s = xx * np.cos(angle) + yy * np.sin(angle)
    s = (s - s.min()) / max(float(s.max() - s.min()), 1.0)
    return c0[None, None, :] * (1 - s[..., None]) + c1[None, None, :] * s[..., None]


def _u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def grain(rng: Rng, img: np.ndarray, strength: float = 6.0) -> np.ndarray:
    """Fine texel-scale luminance grain (paper, paint, print) so close-ups keep some detail."""
    n = rng.standard_normal(img.shape[:2]).astype(np.float32)
    n = cv2.GaussianBlur(n, (0, 0), 0.7) * strength
    return _u8(img.astype(np.float32) + n[..., None])


# ---------------------------------------------------------------- strokes and shapes ---------

def random_word(rng: Rng, n: int) -> str:
    return "".join(rng.choice(list(string.ascii_letters + string.digits + "  "), size=n))


def draw_text_block(rng: Rng, img: np.ndarray, x0: int, y0: int, x1: int, y1: int,
                    color: tuple, line_px: float) -> None:
    """Lines of random text (text-like strokes) filling the box, height ``line_px`` per line."""
    font = int(rng.choice(FONTS))
    scale = max(line_px / 30.0, 0.2)
    thick = max(1, int(round(scale * rng.uniform(1.0, 2.2))))
    y = y0 + line_px
    while y < y1:
        width_chars = max(1, int((x1 - x0) / (line_px * 0.55)))
        n = int(width_chars * rng.uniform(0.5, 1.0))
        cv2.putText(img, random_word(rng, n), (int(x0), int(y)), font, scale, color, thick,
                    cv2.LINE_AA)
        y += line_px * rng.uniform(1.3, 1.8)


def draw_shapes(rng: Rng, img: np.ndarray, n: int, size: tuple[float, float]) -> None:
    """Random filled and outlined circles, rectangles, polygons and lines (antialiased)."""
    h, w = img.shape[:2]
    for _ in range(n):
        col = tuple(float(c) for c in random_color(rng))
        r = rng.uniform(*size)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        kind = rng.integers(0, 5)
        thick = -1 if rng.random() < 0.6 else int(rng.integers(1, max(2, int(r / 6) + 2)))
        if kind == 0:
            cv2.circle(img, (int(cx), int(cy)), int(r), col, thick, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, (int(cx - r), int(cy - r * rng.uniform(0.3, 1))),
                          (int(cx + r), int(cy + r * rng.uniform(0.3, 1))), col, thick, cv2.LINE_AA)
        elif kind == 2:
            k = int(rng.integers(3, 7))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = r * rng.uniform(0.4, 1.0, k)
            pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)
            if thick < 0:
                cv2.fillPoly(img, [pts], col, cv2.LINE_AA)
            else:
                cv2.polylines(img, [pts], True, col, thick, cv2.LINE_AA)
        elif kind == 3:
            a = rng.uniform(0, np.pi)
            p0 = (int(cx - r * np.cos(a)), int(cy - r * np.sin(a)))
            p1 = (int(cx + r * np.cos(a)), int(cy + r * np.sin(a)))
            cv2.line(img, p0, p1, col, max(1, thick), cv2.LINE_AA)
        else:
            cv2.ellipse(img, (int(cx), int(cy)), (int(r), int(r * rng.uniform(0.3, 1))),
                        rng.uniform(0, 180), 0, 360, col, thick, cv2.LINE_AA)


def draw_scribbles(rng: Rng, img: np.ndarray, n: int, length: float, color: tuple,
                   thickness: int = 2) -> None:
    """Hand-drawn-looking curves: smoothed random walks."""
    h, w = img.shape[:2]
    for _ in range(n):
        steps = rng.normal(0, 1, (24, 2)).cumsum(0)
        steps = cv2.GaussianBlur(steps.astype(np.float32), (1, 0), 2).reshape(-1, 2)
        steps *= length / max(float(np.ptp(steps)), 1e-6)
        pts = steps + [rng.uniform(0, w), rng.uniform(0, h)]
        cv2.polylines(img, [pts.astype(np.int32)], False, color, thickness, cv2.LINE_AA)


# ---------------------------------------------------------------- materials ------------------

def plaster(rng: Rng, h: int, w: int, ppm: float) -> np.ndarray:
    """Painted wall: a tinted base with soft blotches, scuffs and fine grain."""
    base = random_color(rng, sat=(0.05, 0.35), val=(0.65, 0.92))
    field = value_noise(rng, h, w, cell=0.8 * ppm, octaves=6)
    img = base[None, None, :] * (0.8 + 0.4 * field[..., None])
    img = _u8(img)
    draw_scribbles(rng, img, n=int(h * w / ppm ** 2 * 2) + 1, length=0.15 * ppm,
                   color=tuple(float(c) for c in base * 0.6), thickness=max(1, int(ppm / 200)))
    return grain(rng, img, 5.0)


def concrete(rng: Rng, h: int, w: int, ppm: float) -> np.ndarray:
    """Grey concrete with multi-scale blotches and pores (many small distinctive blobs)."""
    field = value_noise(rng, h, w, cell=0.5 * ppm, octaves=7, persistence=0.6)
    tint = random_color(rng, sat=(0.0, 0.15), val=(0.55, 0.8))
    img = tint[None, None, :] * (0.65 + 0.7 * field[..., None])
    img = _u8(img)
    n_pores = int(h * w / ppm ** 2 * 400)
    xs, ys = rng.uniform(0, w, n_pores), rng.uniform(0, h, n_pores)
    rs = rng.gamma(1.5, ppm / 500.0, n_pores) + 0.6
    for x, y, r in zip(xs, ys, rs):
        v = float(rng.uniform(30, 110))
        cv2.circle(img, (int(x), int(y)), int(r), (v, v, v), -1, cv2.LINE_AA)
    return grain(rng, img, 7.0)


def wood(rng: Rng, h: int, w: int, ppm: float, planks: bool = False,
         tileable: bool = False) -> np.ndarray:
    """Wood grain (warped rings); ``planks`` draws a parquet of staggered boards."""
    noise = spectral_noise if tileable else (lambda r, hh, ww: value_noise(r, hh, ww, 0.3 * ppm))
    warp = noise(rng, h, w) - 0.5
    yy = np.arange(h, dtype=np.float32)[:, None]
    freq = rng.uniform(25, 60) / ppm
    if tileable:  # an integer number of grain periods keeps the texture periodic
        freq = max(1, round(freq * h)) / h
    rings = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (yy + 40.0 * warp * ppm / 256.0))
    c0 = random_color(rng, sat=(0.4, 0.75), val=(0.35, 0.6), hue=(5, 22))  # browns
    c1 = np.clip(c0 * rng.uniform(1.3, 1.7), 0, 255)
    fine = noise(rng, h, w)
    img = colorize(np.clip(0.7 * rings + 0.3 * fine, 0, 1), [c0, c1]).astype(np.float32)
    if planks:
        board_h = int(rng.uniform(0.12, 0.2) * ppm)
        for y in range(0, h, board_h):
            shade = rng.uniform(0.8, 1.2)
            img[y:y + board_h] *= shade
            cv2.line(img, (0, y), (w, y), (20, 20, 25), max(1, int(ppm / 150)), cv2.LINE_AA)
            x = int(rng.uniform(0, 1.2 * ppm))
            while x < w:
                cv2.line(img, (x, y), (x, y + board_h), (20, 20, 25), max(1, int(ppm / 150)),
                         cv2.LINE_AA)
                x += int(rng.uniform(0.6, 1.4) * ppm)
    return grain(rng, img, 4.0)


def tile(rng: Rng, size: int, ppm: float) -> np.ndarray:
    """One square marble floor tile with grout on its border; it wraps seamlessly."""
    veins = spectral_noise(rng, size, size, beta=1.6)
    veins = np.abs(veins - 0.5) * 2
    c0, c1 = random_color(rng, sat=(0.0, 0.25), val=(0.75, 0.95)), random_color(rng, val=(0.3, 0.6))
    img = colorize(veins ** 0.6, [c1, c0, c0]).astype(np.float32)
    g = max(2, int(ppm * 0.006))
    grout = random_color(rng, sat=(0, 0.1), val=(0.25, 0.45))
    img[:g // 2 + 1], img[-(g // 2 + 1):], img[:, :g // 2 + 1], img[:, -(g // 2 + 1):] = (grout,) * 4
    return grain(rng, img, 4.0)


def _tiny(rng: Rng, h: int, w: int) -> np.ndarray:
    """Stand-in for an item too small to draw (at low texel densities): a flat colour patch."""
    return np.broadcast_to(_u8(random_color(rng)), (max(h, 1), max(w, 1), 3)).copy()


def poster(rng: Rng, h: int, w: int) -> np.ndarray:
    """A printed poster: gradient background, a picture panel, shapes, a title and text."""
    if h < 16 or w < 16:
        return _tiny(rng, h, w)
    img = gradient(h, w, random_color(rng), random_color(rng), rng.uniform(0, np.pi))
    img = _u8(img)
    ph = int(h * rng.uniform(0.35, 0.6))
    pic = picture(rng, ph, int(w * 0.84))
    y0 = int(h * rng.uniform(0.05, 0.3))
    img[y0:y0 + ph, int(w * 0.08):int(w * 0.08) + pic.shape[1]] = pic
    draw_shapes(rng, img, n=int(rng.integers(3, 12)), size=(w * 0.02, w * 0.12))
    ink = tuple(float(c) for c in random_color(rng, val=(0.0, 0.3)))
    cv2.putText(img, random_word(rng, int(rng.integers(3, 9))).strip() or "X",
                (int(w * 0.06), int(h * 0.12)), int(rng.choice(FONTS)), w / 260.0, ink,
                max(1, int(w / 120)), cv2.LINE_AA)
    draw_text_block(rng, img, int(w * 0.08), y0 + ph + int(h * 0.03), int(w * 0.92), h - 4, ink,
                    line_px=max(6.0, h / rng.uniform(25, 45)))
    return grain(rng, img, 3.0)


def picture(rng: Rng, h: int, w: int) -> np.ndarray:
    """A 'photo': sky gradient, fractal ridges, blobs and a few hard shapes."""
    if h < 8 or w < 8:
        return _tiny(rng, h, w)
    sky = gradient(h, w, random_color(rng, val=(0.6, 1.0)), random_color(rng, val=(0.3, 0.8)),
                   np.pi / 2 + rng.uniform(-0.2, 0.2))
    img = _u8(sky)
    for layer in range(int(rng.integers(2, 5))):
        ridge = value_noise(rng, 1, w, cell=w / rng.uniform(2, 8), octaves=5)[0]
        base = h * (0.3 + 0.15 * layer)
        ys = base + (ridge - 0.5) * h * 0.6
        pts = np.concatenate([np.stack([np.arange(w), ys], 1), [[w - 1, h - 1], [0, h - 1]]])
        cv2.fillPoly(img, [pts.astype(np.int32)], tuple(float(c) for c in random_color(rng)),
                     cv2.LINE_AA)
    tex = value_noise(rng, h, w, cell=max(4.0, w / 16), octaves=5)
    img = _u8(img.astype(np.float32) * (0.7 + 0.6 * tex[..., None]))
    draw_shapes(rng, img, n=int(rng.integers(2, 10)), size=(w * 0.01, w * 0.08))
    return img


def bookshelf(rng: Rng, h: int, w: int, ppm: float) -> np.ndarray:
    """Shelf boards with rows of book spines (colour, height and title strokes vary)."""
    board = wood(rng, h, w, ppm)
    img = board.copy()
    row_h = int(rng.uniform(0.3, 0.4) * ppm)
    for y_bottom in range(row_h, h, row_h):
        x = int(rng.uniform(0, 0.05) * ppm)
        while x < w - 5:
            bw = int(rng.uniform(0.015, 0.05) * ppm) + 2
            bh = int(row_h * rng.uniform(0.6, 0.92))
            col = random_color(rng, val=(0.2, 0.9))
            spine = _u8(gradient(bh, bw, col, col * rng.uniform(0.6, 1.0), 0.0))
            ink = tuple(float(c) for c in random_color(rng, val=(0.0, 1.0)))
            for _ in range(int(rng.integers(1, 4))):  # title strokes
                yy = int(rng.uniform(0.1, 0.8) * bh)
                cv2.line(spine, (bw // 4, yy), (bw // 4, min(bh - 2, yy + int(rng.uniform(5, bh / 3)))),
                         ink, max(1, bw // 4), cv2.LINE_AA)
            y0 = max(0, y_bottom - bh - int(ppm * 0.02))
            hh, ww = min(bh, h - y0), min(bw, w - x)  # clip at the texture's edge
            img[y0:y0 + hh, x:x + ww] = spine[:hh, :ww]
            x += bw + (int(rng.uniform(0.02, 0.25) * ppm) if rng.random() < 0.08 else 0)
    return img


def window(rng: Rng, h: int, w: int, ppm: float) -> np.ndarray:
    """A window: frame, mullions and a view of sky, clouds and a skyline."""
    view = _u8(gradient(h, w, np.float32([235, 200, 150]), np.float32([250, 235, 220]), np.pi / 2))
    clouds = value_noise(rng, h, w, cell=w / 3, octaves=5)
    view = _u8(view.astype(np.float32) + 60 * np.clip(clouds - 0.5, 0, 1)[..., None])
    x = 0
    while x < w:  # skyline of buildings with lit windows
        bw, bh = int(rng.uniform(0.1, 0.3) * w), int(rng.uniform(0.2, 0.6) * h)
        col = tuple(float(c) for c in random_color(rng, sat=(0, 0.3), val=(0.3, 0.7)))
        cv2.rectangle(view, (x, h - bh), (x + bw, h), col, -1)
        step = max(4, int(0.05 * ppm))
        for yy in range(h - bh + step // 2, h - step, step):
            for xx in range(x + step // 2, x + bw - step // 2, step):
                if rng.random() < 0.6:
                    lit = float(rng.uniform(120, 240))
                    cv2.rectangle(view, (xx, yy), (xx + step // 3, yy + step // 2),
                                  (lit * 0.7, lit, lit), -1)
        x += bw + int(rng.uniform(0, 0.05) * w)
    frame = tuple(float(c) for c in random_color(rng, sat=(0, 0.2), val=(0.8, 1.0)))
    t = max(3, int(0.04 * ppm))
    cv2.rectangle(view, (0, 0), (w - 1, h - 1), frame, 2 * t)
    cv2.line(view, (w // 2, 0), (w // 2, h), frame, t)
    cv2.line(view, (0, h // 2), (w, h // 2), frame, t)
    return grain(rng, view, 3.0)


def whiteboard(rng: Rng, h: int, w: int, ppm: float) -> np.ndarray:
    """A whiteboard with handwriting-like strokes, boxes and arrows."""
    img = _u8(gradient(h, w, np.float32([245, 245, 240]), np.float32([225, 228, 230]), 0.3))
    for _ in range(int(rng.integers(2, 5))):
        ink = tuple(float(c) for c in random_color(rng, sat=(0.6, 1.0), val=(0.2, 0.7)))
        x0, y0 = int(rng.uniform(0, 0.6) * w), int(rng.uniform(0, 0.6) * h)
        draw_text_block(rng, img, x0, y0, int(x0 + rng.uniform(0.2, 0.4) * w),
                        int(y0 + rng.uniform(0.2, 0.4) * h), ink, line_px=0.04 * ppm)
        draw_scribbles(rng, img, 3, 0.2 * ppm, ink, max(1, int(ppm / 150)))
    cv2.rectangle(img, (0, 0), (w - 1, h - 1), (160, 160, 165), max(2, int(0.015 * ppm)))
    return grain(rng, img, 2.0)


def cabinet(rng: Rng, h: int, w: int, ppm: float) -> np.ndarray:
    """Cabinet front: laminate or wood, door outlines, handles, a few stickers."""
    img = wood(rng, h, w, ppm) if rng.random() < 0.5 else plaster(rng, h, w, ppm)
    n_doors = max(1, int(round(w / (rng.uniform(0.4, 0.6) * ppm))))
    dw = w / n_doors
    line = max(1, int(ppm / 120))
    for i in range(n_doors):
        x0 = int(i * dw)
        cv2.rectangle(img, (x0 + line, line), (int(x0 + dw) - line, h - line), (40, 40, 40), line,
                      cv2.LINE_AA)
        hx = int(x0 + dw * (0.85 if i % 2 == 0 else 0.15))
        hy = int(h * rng.uniform(0.2, 0.8))
        cv2.line(img, (hx, hy - int(0.05 * ppm)), (hx, hy + int(0.05 * ppm)), (190, 190, 200),
                 max(2, int(ppm / 60)), cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 3))):  # stickers / notes
        sw = int(rng.uniform(0.05, 0.12) * ppm)
        sx, sy = int(rng.uniform(0, max(1, w - sw))), int(rng.uniform(0, max(1, h - sw)))
        note = poster(rng, sw, sw) if sw > 12 else None
        if note is not None:
            img[sy:sy + sw, sx:sx + sw] = note[: h - sy, : w - sx]
    return img


def bulletin(rng: Rng, h: int, w: int, ppm: float) -> np.ndarray:
    """Cork board packed with overlapping notes, photos and printed pages."""
    cork = colorize(value_noise(rng, h, w, cell=0.02 * ppm, octaves=3),
                    [np.float32([60, 100, 150]), np.float32([110, 160, 200])])
    img = cork.copy()
    for _ in range(int(h * w / ppm ** 2 * 40) + 2):
        nh, nw = int(rng.uniform(0.06, 0.2) * ppm), int(rng.uniform(0.06, 0.2) * ppm)
        y, x = int(rng.uniform(0, max(1, h - nh))), int(rng.uniform(0, max(1, w - nw)))
        note = poster(rng, nh, nw) if rng.random() < 0.6 else picture(rng, nh, nw)
        img[y:y + nh, x:x + nw] = note[: h - y, : w - x]
        cv2.circle(img, (x + nw // 2, y + 4), max(2, int(ppm / 100)),
                   tuple(float(c) for c in random_color(rng, sat=(0.7, 1))), -1, cv2.LINE_AA)
    return img


def rug(rng: Rng, h: int, w: int, ppm: float) -> np.ndarray:
    """A patterned rug: border bands, a central medallion and woolly noise."""
    colors = [random_color(rng, sat=(0.4, 0.9), val=(0.25, 0.7)) for _ in range(3)]
    field = value_noise(rng, h, w, cell=0.15 * ppm, octaves=5)
    img = colorize(field, colors)
    for k in range(int(rng.integers(2, 5))):
        m = int((k + 1) * rng.uniform(0.03, 0.08) * ppm)
        cv2.rectangle(img, (m, m), (w - m, h - m), tuple(float(c) for c in random_color(rng)),
                      max(2, int(0.02 * ppm)), cv2.LINE_AA)
    draw_shapes(rng, img, n=int(h * w / ppm ** 2 * 30) + 3, size=(0.02 * ppm, 0.12 * ppm))
    return grain(rng, img, 10.0)


def ceiling(rng: Rng, h: int, w: int, ppm: float, panel_m: float = 0.6,
            tileable: bool = False) -> np.ndarray:
    """Acoustic ceiling panels: speckled, with a grid of metal rails."""
    noise = spectral_noise(rng, h, w, beta=0.8) if tileable else value_noise(rng, h, w, 0.05 * ppm)
    img = colorize(noise, [np.float32([170, 175, 180]), np.float32([235, 238, 240])])
    step = max(4, int(panel_m * ppm))
    for y in range(0, h, step):
        cv2.line(img, (0, y), (w, y), (150, 150, 150), max(1, int(ppm / 60)))
    for x in range(0, w, step):
        cv2.line(img, (x, 0), (x, h), (150, 150, 150), max(1, int(ppm / 60)))
    return img


def decorate_wall(rng: Rng, base: np.ndarray, ppm: float, coverage: float = 0.45) -> np.ndarray:
    """Hang posters, pictures, whiteboards, bulletin boards and shelves on a wall texture,
    without overlaps, until about ``coverage`` of its area is used."""
    img = base.copy()
    h, w = img.shape[:2]
    taken: list[tuple[int, int, int, int]] = []
    area = 0.0
    for _ in range(200):
        if area >= coverage * h * w:
            break
        kind = rng.choice(["poster", "picture", "whiteboard", "bulletin", "bookshelf", "poster"])
        size_m = {"poster": (0.4, 0.9), "picture": (0.3, 0.8), "whiteboard": (0.8, 1.5),
                  "bulletin": (0.5, 1.0), "bookshelf": (0.6, 1.2)}[kind]
        pw = int(rng.uniform(*size_m) * ppm)
        ph = int(pw * rng.uniform(0.6, 1.5))
        if pw >= w - 4 or ph >= h - 4:
            continue
        x = int(rng.uniform(2, w - pw - 2))
        y = int(rng.uniform(0.05 * h, max(0.05 * h + 1, min(h - ph - 2, 0.75 * h))))
        box = (x - 10, y - 10, x + pw + 10, y + ph + 10)
        if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in taken):
            continue
        if kind == "poster":
            item = poster(rng, ph, pw)
        elif kind == "picture":
            item = picture(rng, ph, pw)
            cv2.rectangle(item, (0, 0), (pw - 1, ph - 1), tuple(float(c) for c in random_color(rng)),
                          max(3, int(0.03 * ppm)))
        elif kind == "whiteboard":
            item = whiteboard(rng, ph, pw, ppm)
        elif kind == "bulletin":
            item = bulletin(rng, ph, pw, ppm)
        else:
            item = bookshelf(rng, ph, pw, ppm)
        img[y:y + ph, x:x + pw] = item
        taken.append(box)
        area += pw * ph
    return img
