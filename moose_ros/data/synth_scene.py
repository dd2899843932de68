"""SynthStreet rendering core: camera, noise textures, primitives and the canvas they are painted on (numpy).

The world is metric: X lateral (metres, road centre at 0, positive = right), Z forward along the road
(metres), heights above the ground plane. A pinhole camera at ``(x, h, z)`` looks along +Z with the horizon at
image row ``horizon`` and the vanishing point at column ``vp_x``. Objects ("things") are upright planar
billboards made of primitives in local metric coordinates (``lx`` lateral offset, ``ly`` height); they are
painted far to near. Every step is vectorised over pixel blocks; no per-pixel Python loops.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

__all__ = ["Camera", "Canvas", "Prim", "Thing", "ThingTables", "noise_tile", "sample_tile"]

TILE = 256  # side of the tiling noise textures, texels


@functools.lru_cache(maxsize=1)
def _gamma_table() -> list[int]:
    """Pillow ``point`` table (3 x 256 entries): display gamma 1/1.15 of linear 8-bit intensities."""
    x = np.arange(256, dtype=np.float64) / 255.0
    return (np.round(x ** (1.0 / 1.15) * 255.0).astype(int).tolist()) * 3


@functools.lru_cache(maxsize=4)
def noise_tile(kind: str = "smooth") -> np.ndarray:
    """A fixed tiling noise texture, float32 [TILE, TILE] in [0, 1] (``smooth`` or ``fine``), read-only."""
    rng = np.random.default_rng(20260 if kind == "smooth" else 20261)
    octaves = (4, 8, 16, 32) if kind == "smooth" else (16, 32, 64, 128, 256)
    total = np.zeros((TILE, TILE), np.float32)
    weight = 1.0
    for cells in octaves:
        coarse = rng.random((cells, cells), dtype=np.float32)
        # wrap one cell so the bilinear upsampling tiles seamlessly
        wrapped = np.pad(coarse, ((0, 1), (0, 1)), mode="wrap")
        size = TILE + TILE // cells
        up = np.asarray(Image.fromarray(wrapped, mode="F").resize((size, size), Image.BILINEAR))
        off = TILE // (2 * cells)
        total += weight * up[off : off + TILE, off : off + TILE]
        weight *= 0.6
    total -= total.min()
    total /= max(float(total.max()), 1e-6)
    total.setflags(write=False)
    return total


def sample_tile(u: np.ndarray, v: np.ndarray, scale: float, offset: tuple[float, float],
                kind: str = "smooth") -> np.ndarray:
    """Nearest-texel lookup of :func:`noise_tile` at metric coords ``u, v`` (broadcastable), ``scale`` texel/m."""
    tile = noise_tile(kind)
    iu = (u * scale + offset[0]).astype(np.int32) & (TILE - 1)  # TILE is a power of two: wraps negatives too
    iv = (v * scale + offset[1]).astype(np.int32) & (TILE - 1)
    return tile[iv, iu]


@dataclass(frozen=True)
class Camera:
    """Pinhole camera: image size (px), focal length ``f`` (px), horizon row, vanishing column, pose (m)."""

    height: int
    width: int
    f: float
    horizon: float
    vp_x: float
    x: float
    h: float
    z: float = 0.0

    def ground_row(self, zc: float) -> float:
        """Image row of the ground at camera-relative depth ``zc`` (m)."""
        return self.horizon + self.f * self.h / zc


@dataclass(frozen=True)
class Prim:
    """One primitive in a thing's local frame (``lx`` metres right of its anchor, ``ly`` metres above ground).

    kind: ``rect`` (x0, x1, y0, y1); ``ellipse`` (cx, cy, rx, ry); ``blob`` (cx, cy, rx, ry, then harmonics
    as (k, amplitude, phase) triples flattened); ``ring`` (cx, cy, rx, ry, inner fraction); ``trapezoid``
    (y0, y1, bottom x0, bottom x1, top x0, top x1); ``shadow`` (x0, x1, y0, y1: darkens ground only).
    ``label``: Cityscapes labelId painted; ``obstacle``: 0 or the LostAndFound obstacle id (2+) painted;
    ``color``: linear RGB in [0, 1]; ``tex``: texture contrast; ``tex_scale``: texels per metre.
    """

    kind: str
    geom: tuple[float, ...]
    label: int
    color: tuple[float, float, float] = (0.5, 0.5, 0.5)
    tex: float = 0.15
    tex_scale: float = 40.0
    obstacle: int = 0

    def bounds(self) -> tuple[float, float, float, float]:
        """Local bounding box (x0, x1, y0, y1) in metres."""
        g = self.geom
        if self.kind in ("rect", "shadow"):
            return g[0], g[1], g[2], g[3]
        if self.kind == "trapezoid":
            return min(g[2], g[4]), max(g[3], g[5]), g[0], g[1]
        cx, cy, rx, ry = g[:4]
        grow = 1.0 + (sum(abs(a) for a in g[5::3]) if self.kind == "blob" else 0.0)
        return cx - rx * grow, cx + rx * grow, cy - ry * grow, cy + ry * grow

    def mask(self, lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
        """Boolean coverage for local coords ``lx`` [1, w] and ``ly`` [h, 1] -> [h, w]."""
        g = self.geom
        if self.kind in ("rect", "shadow"):
            return (lx >= g[0]) & (lx <= g[1]) & (ly >= g[2]) & (ly <= g[3])
        if self.kind == "trapezoid":
            t = (ly - g[0]) / max(g[1] - g[0], 1e-6)
            left = g[2] + (g[4] - g[2]) * t
            right = g[3] + (g[5] - g[3]) * t
            return (ly >= g[0]) & (ly <= g[1]) & (lx >= left) & (lx <= right)
        dx = (lx - g[0]) / g[2]
        dy = (ly - g[1]) / g[3]
        r2 = dx * dx + dy * dy
        if self.kind == "ellipse":
            return r2 <= 1.0
        if self.kind == "ring":
            return (r2 <= 1.0) & (r2 >= g[4] * g[4])
        theta = np.arctan2(dy, dx)
        radius = np.ones_like(theta)
        for k, amp, phase in zip(g[4::3], g[5::3], g[6::3], strict=True):
            radius = radius + amp * np.sin(k * theta + phase)
        return r2 <= radius * radius


@dataclass(frozen=True)
class ThingTables:
    """Per-primitive lookup arrays of one thing (built once, used for every frame it is painted in)."""

    prims: tuple[Prim, ...]
    shadows: tuple[Prim, ...]
    bounds: tuple[float, float, float, float]
    colors: np.ndarray  # float32 [3, P]
    tex: np.ndarray  # float32 [P]
    tex_scale: np.ndarray  # float32 [P]
    labels: np.ndarray  # uint8 [P]
    obstacles: np.ndarray  # uint8 [P]
    shade_slope: np.float32


@dataclass
class Thing:
    """An upright object at world ``(x, z)`` (m) made of primitives; ``speed`` (m/frame) moves it along Z."""

    x: float
    z: float
    prims: list[Prim]
    speed: float = 0.0
    tex_offset: tuple[float, float] = (0.0, 0.0)
    tags: tuple[str, ...] = field(default_factory=tuple)
    _tables: ThingTables | None = field(default=None, repr=False, compare=False)

    def tables(self) -> ThingTables:
        """The primitives as lookup arrays (cached)."""
        if self._tables is None:
            solid = tuple(p for p in self.prims if p.kind != "shadow")
            boxes = np.asarray([p.bounds() for p in solid], np.float64).reshape(-1, 4)
            bounds = (float(boxes[:, 0].min(initial=0.0)), float(boxes[:, 1].max(initial=0.0)),
                      float(boxes[:, 2].min(initial=0.0)), float(boxes[:, 3].max(initial=0.0)))
            self._tables = ThingTables(
                prims=solid, shadows=tuple(p for p in self.prims if p.kind == "shadow"), bounds=bounds,
                colors=np.asarray([p.color for p in solid], np.float32).reshape(-1, 3).T.copy(),
                tex=np.asarray([p.tex for p in solid], np.float32),
                tex_scale=np.asarray([p.tex_scale for p in solid], np.float32),
                labels=np.asarray([p.label for p in solid], np.uint8),
                obstacles=np.asarray([p.obstacle for p in solid], np.uint8),
                shade_slope=np.float32(0.15 / max(bounds[3], 0.5)),
            )
        return self._tables


class Canvas:
    """Paint buffers: colour float32 planar [3, H, W] (linear), Cityscapes labelIds uint8 [H, W], obstacle ids
    uint8 [H, W] and depth float32 [H, W] (metres, inf = sky)."""

    def __init__(self, cam: Camera) -> None:
        self.cam = cam
        shape = (cam.height, cam.width)
        self.rgb = np.zeros((3, *shape), np.float32)  # planar: per-pixel math broadcasts fast
        self.label = np.zeros(shape, np.uint8)
        self.obstacle = np.zeros(shape, np.uint8)
        self.depth = np.full(shape, np.inf, np.float32)

    def _block(self, x_rel: float, s: float, bounds: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
        """Pixel rows r0:r1 and columns c0:c1 (clipped) covering local ``bounds`` at scale ``s`` px/m."""
        cam = self.cam
        x0, x1, y0, y1 = bounds
        c0 = max(int(np.floor(cam.vp_x + (x_rel + x0) * s)), 0)
        c1 = min(int(np.ceil(cam.vp_x + (x_rel + x1) * s)) + 1, cam.width)
        r0 = max(int(np.floor(cam.horizon + (cam.h - y1) * s)), 0)
        r1 = min(int(np.ceil(cam.horizon + (cam.h - y0) * s)) + 1, cam.height)
        return r0, r1, c0, c1

    def _coords(self, x_rel: float, s: float, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        """Local metric coords of pixel centres: ``lx`` float32 [1, c1-c0], ``ly`` float32 [r1-r0, 1]."""
        cam = self.cam
        lx = (np.arange(c0, c1, dtype=np.float32) + np.float32(0.5 - cam.vp_x)) / np.float32(s) - np.float32(x_rel)
        ly = np.float32(cam.h) - (np.arange(r0, r1, dtype=np.float32) + np.float32(0.5 - cam.horizon)) / np.float32(s)
        return lx[None, :], ly[:, None]

    def paint_thing(self, thing: Thing, frame: int = 0) -> None:
        """Paint ``thing`` as a billboard at its depth, with a per-pixel depth test; later primitives cover
        earlier ones. ``frame`` advances moving things by ``thing.speed`` metres per frame."""
        cam = self.cam
        zc = thing.z + thing.speed * frame - cam.z
        if zc < 0.8:
            return
        s = cam.f / zc
        x_rel = thing.x - cam.x
        tables = thing.tables()
        r0, r1, c0, c1 = self._block(x_rel, s, tables.bounds)
        if c1 <= c0 or r1 <= r0:
            return
        lx, ly = self._coords(x_rel, s, r0, r1, c0, c1)
        block = (slice(r0, r1), slice(c0, c1))
        free = self.depth[block] >= zc
        for prim in tables.shadows:
            pr0, pr1, pc0, pc1 = self._block(x_rel, s, prim.bounds())
            if pc1 <= pc0 or pr1 <= pr0:
                continue
            slx, sly = self._coords(x_rel, s, pr0, pr1, pc0, pc1)
            # ground under the body and just behind the thing (within 0.4 m towards the camera)
            ground = prim.mask(slx, sly) & np.isin(self.label[pr0:pr1, pc0:pc1], (7, 8, 22)) & \
                (self.depth[pr0:pr1, pc0:pc1] >= zc - 0.4)
            self.rgb[:, pr0:pr1, pc0:pc1][:, ground] *= 0.45
        pid = np.full((r1 - r0, c1 - c0), -1, np.int16)
        for j, prim in enumerate(tables.prims):
            pr0, pr1, pc0, pc1 = self._block(x_rel, s, prim.bounds())
            if pc1 <= pc0 or pr1 <= pr0:
                continue
            rs, cs = slice(pr0 - r0, pr1 - r0), slice(pc0 - c0, pc1 - c0)
            pid[rs, cs][prim.mask(lx[:, cs], ly[rs])] = j
        cover = (pid >= 0) & free
        if not cover.any():
            return
        ids = pid[cover]
        u = np.broadcast_to(lx, cover.shape)[cover]
        v = np.broadcast_to(ly, cover.shape)[cover]
        scale = tables.tex_scale[ids]
        tex = sample_tile(u * scale, v * scale, 1.0, thing.tex_offset)
        shade = np.minimum(np.float32(0.85) + tables.shade_slope * np.maximum(v, -1.0), 1.05)
        gain = (1.0 + tables.tex[ids] * (2.0 * tex - 1.0)) * shade
        planes = self.rgb[:, r0:r1, c0:c1]
        for c in range(3):
            planes[c][cover] = gain * tables.colors[c][ids]
        self.label[block][cover] = tables.labels[ids]
        self.obstacle[block][cover] = tables.obstacles[ids]
        self.depth[block][cover] = zc

    def finish(self, rng: np.random.Generator, *, exposure: float, tint: np.ndarray, haze: np.ndarray,
               fog_m: float, noise: float) -> np.ndarray:
        """Apply distance haze, exposure, tint, sensor noise and gamma; return uint8 [H, W, 3] RGB."""
        fog = 1.0 - np.exp(np.minimum(self.depth, 1e4) * np.float32(-1.0 / fog_m))
        fog[self.label == 23] = 0.0
        img = self.rgb * (1.0 - fog) + haze.astype(np.float32)[:, None, None] * fog
        img *= ((exposure * np.asarray(tint, np.float32)) * np.float32(255.0))[:, None, None]
        # uniform sensor noise with standard deviation ``noise`` (cheaper than Gaussian, looks the same)
        grain = rng.random(img.shape[1:], dtype=np.float32) - np.float32(0.5)
        img += grain * np.float32(noise * 12 ** 0.5 * 255.0)
        linear = np.ascontiguousarray(np.clip(img, 0.0, 255.0).astype(np.uint8).transpose(1, 2, 0))
        return np.asarray(Image.fromarray(linear).point(_gamma_table())).copy()
