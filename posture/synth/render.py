"""Turn a :class:`~posture.synth.scene.Scene` into a photo-like JPEG with numpy and PIL.

Each ellipsoid is ray-cast analytically, but only inside the bounding box of its projection, and a
depth buffer keeps the nearest hit: exact occlusion at the cost of a few vector operations per
primitive. Then the camera's flaws (exposure, white balance, vignetting, blur, sensor noise, JPEG)
are applied, all drawn independently of the label.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from posture.synth.scene import Camera, Ellipsoid, Room, Scene


def _bbox(prim: Ellipsoid, cam: Camera) -> tuple[int, int, int, int] | None:
    """Pixel box (x0, y0, x1, y1) that contains the projection of ``prim``; None when off-screen."""
    signs = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], float)
    corners = prim.center + (signs * prim.radii) @ prim.rot.T
    local = (corners - cam.position) @ cam.rot.T
    if np.any(local[:, 2] <= 1.0):
        return 0, 0, cam.width, cam.height
    u = cam.cx + cam.focal * local[:, 0] / local[:, 2]
    v = cam.cy + cam.focal * local[:, 1] / local[:, 2]
    x0, x1 = max(int(math.floor(u.min())), 0), min(int(math.ceil(u.max())) + 1, cam.width)
    y0, y1 = max(int(math.floor(v.min())), 0), min(int(math.ceil(v.max())) + 1, cam.height)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def _ray_dirs(cam: Camera) -> list[np.ndarray]:
    """World-space direction (not normalised) of the ray through each pixel centre: 3 H×W planes.

    Kept as separate float32 planes and combined with explicit products below: tiny 3×3 matrix
    products through BLAS are slow, and oversubscribe threads when several workers run.
    """
    u = ((np.arange(cam.width) + 0.5 - cam.cx) / cam.focal).astype(np.float32)
    v = ((np.arange(cam.height) + 0.5 - cam.cy) / cam.focal).astype(np.float32)
    r = cam.rot.astype(np.float32)  # rows: right, down, forward in world coordinates
    return [u[None, :] * r[0, k] + v[:, None] * r[1, k] + r[2, k] for k in range(3)]


def _combine(parts: list[np.ndarray], matrix: np.ndarray) -> list[np.ndarray]:
    """``out[j] = sum_k parts[k] * matrix[k, j]``: a 3×3 product over planes without BLAS."""
    m = matrix.astype(np.float32)
    return [parts[0] * m[0, j] + parts[1] * m[1, j] + parts[2] * m[2, j] for j in range(3)]


def _lit(n: list[np.ndarray], norm: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Lambert term of unnormalised normals ``n`` (length ``norm``) towards ``direction``."""
    return np.maximum((n[0] * direction[0] + n[1] * direction[1] + n[2] * direction[2]) / norm, 0)


def _hit_ellipsoid(prim: Ellipsoid, d: list[np.ndarray], o: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """Nearest hits of rays ``o + t d`` (unit-sphere frame) with the unit sphere: rows, cols, t, normal."""
    a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    b = 2.0 * (d[0] * np.float32(o[0]) + d[1] * np.float32(o[1]) + d[2] * np.float32(o[2]))
    disc = b * b - 4.0 * a * np.float32(o @ o - 1.0)
    ys, xs = np.nonzero(disc > 0)
    if len(ys) == 0:
        return None
    a, b, disc = a[ys, xs], b[ys, xs], disc[ys, xs]
    t = (-b - np.sqrt(disc)) / (2.0 * a)
    p = [np.float32(o[k]) + t * d[k][ys, xs] for k in range(3)]
    keep = t > 0
    if prim.clip is not None:
        normal_c, offset = prim.clip
        keep &= p[0] * normal_c[0] + p[1] * normal_c[1] + p[2] * normal_c[2] >= offset
    local_normal = [p[k][keep] / np.float32(prim.radii[k]) for k in range(3)]
    return ys[keep], xs[keep], t[keep], *local_normal


def _hit_box(prim: Ellipsoid, d: list[np.ndarray], o: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """Slab test of rays with the cube [-1, 1]^3 (box frame scaled by its half-extents)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        near = [np.minimum((-1.0 - o[k]) / d[k], (1.0 - o[k]) / d[k]) for k in range(3)]
        far = [np.maximum((-1.0 - o[k]) / d[k], (1.0 - o[k]) / d[k]) for k in range(3)]
    t_near = np.maximum(np.maximum(near[0], near[1]), near[2])
    t_far = np.minimum(np.minimum(far[0], far[1]), far[2])
    ys, xs = np.nonzero((t_near < t_far) & (t_near > 0))
    if len(ys) == 0:
        return None
    t = t_near[ys, xs].astype(np.float32)
    face = np.argmax(np.stack([near[k][ys, xs] for k in range(3)]), axis=0)
    local_normal = [
        np.where(face == k, -np.sign(d[k][ys, xs]), 0.0).astype(np.float32) / np.float32(prim.radii[k])
        for k in range(3)
    ]
    return ys, xs, t, *local_normal


def raycast(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Shaded linear-RGB figure (H×W×3 float32) and its coverage mask (H×W bool)."""
    cam = scene.camera
    dirs = _ray_dirs(cam)
    depth = np.full((cam.height, cam.width), np.inf, dtype=np.float32)
    rgb = np.zeros((cam.height, cam.width, 3), dtype=np.float32)
    light = scene.light_dir
    key, ambient, fill = scene.light["key"], scene.light["ambient"], scene.light["fill"]
    fill_dir = -light * np.array([1.0, -0.3, 1.0])
    fill_dir /= np.linalg.norm(fill_dir)
    half = light - cam.rot[2]
    half /= np.linalg.norm(half)
    for prim in scene.primitives:
        box = _bbox(prim, cam)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        # Ray in the primitive's unit frame: the ellipsoid becomes the unit sphere, the box the unit cube.
        d = _combine([c[y0:y1, x0:x1] for c in dirs], prim.rot / prim.radii)
        o = (cam.position - prim.center) @ prim.rot / prim.radii
        hit = (_hit_box if prim.box else _hit_ellipsoid)(prim, d, o)
        if hit is None:
            continue
        ys, xs, t, *local_normal = hit
        keep = t < depth[y0 + ys, x0 + xs]
        if not keep.any():
            continue
        ys, xs, t = ys[keep] + y0, xs[keep] + x0, t[keep]
        n = _combine([c[keep] for c in local_normal], prim.rot.T)
        norm = np.maximum(np.sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]), np.float32(1e-12))

        lam = ambient + key * _lit(n, norm, light) + fill * _lit(n, norm, fill_dir)
        colour = np.broadcast_to(prim.colour.astype(np.float32), (len(t), 3))
        if prim.clothing and scene.pattern != "solid":
            world = [np.float32(cam.position[k]) + t * dirs[k][ys, xs] for k in range(2)]
            colour = _pattern(scene, world, colour)
        shaded = colour * lam[:, None].astype(np.float32)
        if prim.shine:
            shaded = shaded + (prim.shine * key * _lit(n, norm, half) ** 24)[:, None].astype(np.float32)
        depth[ys, xs] = t
        rgb[ys, xs] = shaded
    return rgb, np.isfinite(depth)


def _pattern(scene: Scene, world: list[np.ndarray], colour: np.ndarray) -> np.ndarray:
    """Clothing texture from world x/y, so stripes run on across chest, shoulders and arms."""
    period = scene.pattern_period
    x, y = world[0], world[1]
    if scene.pattern == "stripes":
        alt = np.sin(2 * np.pi * y / period) > 0
    elif scene.pattern == "checks":
        alt = (np.sin(2 * np.pi * y / period) > 0) ^ (np.sin(2 * np.pi * x / period) > 0)
    else:  # two_tone: a different colour below the chest (a shirt under an open jacket, a print)
        alt = y < -18.0 * period / 6.0
    return np.where(alt[:, None], scene.colour2.astype(np.float32), colour)


def draw_room(room: Room, cam: Camera, scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Background in linear RGB: wall gradient and furniture, jittered a little per picture."""
    w, h = cam.width, cam.height
    grad = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    tilt = 1 + np.float32(rng.uniform(-0.03, 0.03)) * np.linspace(-1, 1, w, dtype=np.float32)[None, :, None]
    top, bottom = (np.asarray(c, np.float32) * 255 for c in (room.wall_top, room.wall_bottom))
    img = Image.fromarray(np.clip((top * (1 - grad) + bottom * grad) * tilt, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    dx, dy = rng.uniform(-0.05, 0.05), rng.uniform(-0.05, 0.05)
    for kind, (x0, y0, x1, y1), colour in room.items:
        box = [(x0 + dx) * w, (y0 + dy) * h, (x1 + dx) * w, (y1 + dy) * h]
        fill = tuple(int(c * 255) for c in np.clip(colour, 0, 1))
        if kind == "shelf":
            draw.rectangle(box, fill=tuple(int(c * 0.6) for c in fill))
            n_books = max(int((box[2] - box[0]) / 8), 1)
            bw = (box[2] - box[0]) / n_books
            for i in range(n_books):
                bc = tuple(int(v) for v in rng.integers(30, 230, 3))
                book_top = float(box[1] + rng.uniform(0.05, 0.3) * (box[3] - box[1]))
                draw.rectangle([box[0] + i * bw, book_top, box[0] + (i + 0.85) * bw, box[3]], fill=bc)
        elif kind == "window":
            draw.rectangle(box, fill=fill, outline=(240, 240, 240), width=max(w // 80, 2))
            draw.line(
                [((box[0] + box[2]) / 2, box[1]), ((box[0] + box[2]) / 2, box[3])],
                fill=(235, 235, 235),
                width=max(w // 120, 1),
            )
        elif kind == "curtain":
            step = max(int((box[2] - box[0]) / 6), 2)
            for i, x in enumerate(range(int(box[0]), int(box[2]), step)):
                shade = 0.8 if i % 2 else 1.0
                draw.rectangle([x, box[1], x + step, box[3]], fill=tuple(int(c * shade) for c in fill))
        elif kind == "monitor":
            draw.rectangle(box, fill=(25, 25, 30), outline=(60, 60, 60), width=2)
        elif kind == "lamp":
            cx = (box[0] + box[2]) / 2
            r = (box[2] - box[0]) / 4
            draw.ellipse([cx - r, box[1] - r, cx + r, box[1] + r], fill=(255, 245, 210))
        else:  # door, picture
            draw.rectangle(box, fill=fill, outline=tuple(int(c * 0.5) for c in fill), width=max(w // 100, 2))
    return np.asarray(img, dtype=np.float32) / np.float32(255.0)


def finish(rgb: np.ndarray, rng: np.random.Generator, quality_range: tuple[int, int] = (60, 95)) -> bytes:
    """Camera and codec: exposure, white balance, gamma, vignette, blur, noise, JPEG."""
    h, w, _ = rgb.shape
    gain = rng.uniform(0.75, 1.25) * rng.uniform(0.9, 1.1, 3)
    gamma = rng.uniform(0.85, 1.15)
    vig = rng.uniform(0.0, 0.35)
    yy = ((np.arange(h, dtype=np.float32) - h / 2) / (h / 2)) ** 2
    xx = ((np.arange(w, dtype=np.float32) - w / 2) / (w / 2)) ** 2
    falloff = 1 - vig * np.minimum((yy[:, None] + xx[None, :]) / 2, 1)
    img = Image.fromarray(np.clip(rgb * falloff[..., None] * 255 + 0.5, 0, 255).astype(np.uint8))
    levels = np.arange(256) / 255.0
    lut = [int(v) for g in gain for v in np.clip(np.clip(levels * g, 0, 1) ** gamma * 255 + 0.5, 0, 255)]
    img = img.point(lut).filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.4, 1.6)))
    noise = rng.uniform(0.0, 7.0)
    if noise > 0.5:
        arr = np.asarray(img, dtype=np.float32) + noise * rng.standard_normal((h, w, 3), dtype=np.float32)
        img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(rng.integers(quality_range[0], quality_range[1] + 1)))
    return buf.getvalue()


def render(scene: Scene, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """The JPEG bytes of the scene and the figure's coverage mask (for tests of pixel statistics)."""
    figure, mask = raycast(scene)
    background = draw_room(scene.room, scene.camera, scene, rng) if scene.room is not None else np.zeros_like(figure)
    light = scene.light
    background = background * np.float32(rng.uniform(0.8, 1.1) * (0.7 + 0.6 * (light["key"] + light["ambient"]) / 1.4))
    rgb = np.where(mask[..., None], figure, background)
    return finish(rgb, rng), mask
