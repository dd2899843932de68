"""SynthStreet environment: the street layout (road, lanes, sidewalks, facades, walls, fences, hedges) and its
sampling and painting (sky, distant skyline/tree line, ground plane, facade planes), vectorised in numpy.

Cityscapes labelIds painted: road 7 (lane markings included, as in Cityscapes), sidewalk 8, building 11,
wall 12, fence 13, vegetation 21, terrain 22, sky 23.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moose_ros.data.synth_scene import Canvas, sample_tile

__all__ = ["Facade", "Street", "paint_facades", "paint_ground", "paint_sky", "sample_street"]

ROAD, SIDEWALK, BUILDING, WALL, FENCE, VEGETATION, TERRAIN, SKY = 7, 8, 11, 12, 13, 21, 22, 23


@dataclass(frozen=True)
class Facade:
    """A vertical plane parallel to the road at lateral ``x`` (m) spanning ``z0..z1`` (m), ``height`` (m).

    ``kind``: building (windows), wall (solid), fence (see-through bars and rails) or hedge (vegetation).
    """

    kind: str
    x: float
    z0: float
    z1: float
    height: float
    color: tuple[float, float, float]
    window: tuple[float, float] = (3.0, 3.2)  # window spacing along the street, floor height (m)
    lit: float = 0.1  # fraction-like threshold of bright windows


@dataclass(frozen=True)
class Street:
    """Everything static about one street (metres; colours linear RGB in [0, 1])."""

    road_half: float
    lane_w: float
    sidewalk: tuple[float, float]  # left, right widths
    dashed_centre: bool
    edge_lines: bool
    crosswalks: tuple[float, ...]  # world Z of zebra crossings
    road_color: tuple[float, float, float]
    walk_color: tuple[float, float, float]
    terrain_color: tuple[float, float, float]
    sky_top: tuple[float, float, float]
    sky_bottom: tuple[float, float, float]
    clouds: float
    treeline: float  # height of the distant tree line (m at 300 m; 0 = none)
    skyline: float  # height of distant building silhouettes (m at 500 m; 0 = none)
    facades: tuple[Facade, ...]
    sun_side: float  # -1 left facades lit, +1 right facades lit
    shadow_len: float  # cast shadow length per metre of building height (0 = overcast, no shadows)
    patches: float  # fraction-like amount of darker repaired/wet road patches (0 = none)
    tex_offset: tuple[float, float]


def _col(rgb: tuple[float, float, float]) -> np.ndarray:
    """A colour as float32 [3, 1, 1] for planar broadcasting."""
    return np.asarray(rgb, np.float32)[:, None, None]


def _jitter(rng: np.random.Generator, base: tuple[float, float, float], amount: float,
            chroma: float | None = None) -> tuple[float, float, float]:
    """``base`` scaled by one brightness factor (+-amount) and per-channel factors (+-chroma, default amount)."""
    spread = amount if chroma is None else chroma
    gain = (1.0 + rng.uniform(-amount, amount)) * (1.0 + rng.uniform(-spread, spread, 3))
    rgb = np.clip(np.asarray(base) * gain, 0.02, 1.0)
    return (float(rgb[0]), float(rgb[1]), float(rgb[2]))


BUILDING_COLORS = ((0.55, 0.5, 0.45), (0.7, 0.65, 0.55), (0.45, 0.42, 0.42), (0.75, 0.72, 0.7),
                   (0.6, 0.4, 0.32), (0.5, 0.52, 0.55), (0.8, 0.75, 0.6))


def _side_facades(rng: np.random.Generator, side: int, inner: float, z_from: float, z_to: float,
                  urban: bool) -> list[Facade]:
    """Facades of one side (``side`` -1 left, +1 right); ``inner`` = |X| of the sidewalk's outer edge."""
    out: list[Facade] = []
    z = z_from
    while z < z_to:
        if urban:
            length = rng.uniform(8.0, 35.0)
            if rng.random() < 0.2:  # gap
                z += rng.uniform(3.0, 12.0)
                continue
            setback = rng.uniform(0.0, 1.5) if rng.random() < 0.7 else rng.uniform(2.0, 6.0)
            out.append(Facade("building", side * (inner + setback), z, z + length, rng.uniform(7.0, 28.0),
                              _jitter(rng, BUILDING_COLORS[rng.integers(len(BUILDING_COLORS))], 0.15),
                              (rng.uniform(2.2, 4.0), rng.uniform(2.9, 3.6)), rng.uniform(0.0, 0.25)))
        else:
            length = rng.uniform(10.0, 40.0)
            kind = ("fence", "wall", "hedge", "none", "building")[rng.choice(5, p=(0.3, 0.2, 0.2, 0.15, 0.15))]
            if kind == "building":
                setback = rng.uniform(5.0, 12.0)
                out.append(Facade("building", side * (inner + setback), z, z + length, rng.uniform(5.0, 12.0),
                                  _jitter(rng, BUILDING_COLORS[rng.integers(len(BUILDING_COLORS))], 0.15),
                                  (rng.uniform(2.5, 4.0), rng.uniform(2.8, 3.3)), rng.uniform(0.0, 0.2)))
            elif kind != "none":
                color = {"fence": (0.45, 0.4, 0.35), "wall": (0.6, 0.58, 0.55), "hedge": (0.16, 0.3, 0.1)}[kind]
                height = {"fence": rng.uniform(0.9, 2.0), "wall": rng.uniform(0.7, 2.6),
                          "hedge": rng.uniform(0.8, 2.2)}[kind]
                out.append(Facade(kind, side * (inner + rng.uniform(0.0, 0.6)), z, z + length, height,
                                  _jitter(rng, color, 0.25), (rng.uniform(0.12, 0.35), 0.0)))
        z += length
    return out


def sample_street(rng: np.random.Generator, z_from: float, z_to: float) -> Street:
    """Draw one street covering world Z in ``[z_from, z_to]`` (m)."""
    lanes = int(rng.choice((2, 2, 3, 4)))
    lane_w = rng.uniform(2.9, 3.6)
    walk = (rng.uniform(1.5, 4.5), rng.uniform(1.5, 4.5))
    urban = (rng.random() < 0.65, rng.random() < 0.65)
    facades: list[Facade] = []
    for side, width, is_urban in ((-1, walk[0], urban[0]), (1, walk[1], urban[1])):
        facades += _side_facades(rng, side, lanes * lane_w / 2 + width, z_from, z_to, is_urban)
    overcast = rng.random() < 0.35
    sky_top = (0.55, 0.58, 0.62) if overcast else (0.2, 0.4, 0.75)
    sky_bottom = (0.75, 0.77, 0.8) if overcast else (0.65, 0.75, 0.88)
    crossings = tuple(float(z) for z in rng.uniform(z_from + 8.0, z_from + 60.0, rng.integers(0, 2)))
    return Street(
        road_half=lanes * lane_w / 2, lane_w=lane_w, sidewalk=walk, dashed_centre=bool(rng.random() < 0.7),
        edge_lines=bool(rng.random() < 0.6), crosswalks=crossings,
        road_color=_jitter(rng, (0.3, 0.3, 0.32), 0.25, 0.04), walk_color=_jitter(rng, (0.62, 0.58, 0.56), 0.2, 0.1),
        terrain_color=_jitter(rng, (0.35, 0.42, 0.2), 0.3), sky_top=_jitter(rng, sky_top, 0.1),
        sky_bottom=_jitter(rng, sky_bottom, 0.08), clouds=float(rng.uniform(0.0, 0.5)),
        treeline=float(rng.uniform(4.0, 25.0)) if rng.random() < 0.7 else 0.0,
        skyline=float(rng.uniform(20.0, 60.0)) if rng.random() < 0.4 else 0.0,
        facades=tuple(facades), sun_side=float(rng.choice((-1.0, 1.0))),
        shadow_len=0.0 if overcast else float(rng.uniform(0.15, 0.8)),
        patches=float(rng.uniform(0.05, 0.3)) if rng.random() < 0.5 else 0.0,
        tex_offset=(float(rng.uniform(0, 256)), float(rng.uniform(0, 256))),
    )


def paint_sky(canvas: Canvas, street: Street) -> None:
    """Sky gradient with clouds over the whole canvas, then the distant skyline and tree line."""
    cam = canvas.cam
    r1 = min(int(np.ceil(cam.horizon)) + 2, cam.height)  # the ground covers the rest
    rows = np.arange(r1, dtype=np.float32)[:, None]
    cols = np.arange(cam.width, dtype=np.float32)[None, :]
    t = np.clip((cam.horizon - rows) / max(cam.horizon, 1.0), 0.0, 1.0)[None]
    base = _col(street.sky_bottom) * (1 - t) + _col(street.sky_top) * t
    cloud = sample_tile(cols * 300.0 / cam.width, rows * 150.0 / cam.height, 1.0, street.tex_offset)
    cloud = np.clip((cloud - (0.75 - street.clouds)) * 3.0, 0.0, 1.0)[None]
    canvas.rgb[:, :r1] = base * (1 - cloud) + 0.92 * cloud
    canvas.label[:] = SKY
    for height, dist, label, color, scale in (
        (street.skyline, 500.0, BUILDING, (0.5, 0.52, 0.56), 0.02),
        (street.treeline, 300.0, VEGETATION, (0.18, 0.28, 0.14), 0.3),
    ):
        if height <= 0:
            continue
        world_x = (cols[0] - cam.vp_x) * dist / cam.f
        prof = sample_tile(world_x, np.zeros_like(world_x), scale, street.tex_offset, "smooth")
        if label == BUILDING:
            prof = np.round(prof * 4) / 4
        top = cam.horizon - cam.f * (height * (0.3 + prof) - cam.h) / dist
        mask = (rows >= top[None, :]) & (rows < cam.horizon + 1)
        tex = sample_tile(cols, rows, 1.0, (17.0, 3.0), "fine")[None]
        canvas.rgb[:, :r1][:, mask] = (_col(color) * (0.8 + 0.4 * tex))[:, mask]
        canvas.label[:r1][mask] = label
        canvas.depth[:r1][mask] = dist


def paint_ground(canvas: Canvas, street: Street) -> None:
    """Road (with lane and edge markings, zebra crossings), sidewalks with curbs, terrain beyond."""
    cam = canvas.cam
    r0 = int(np.floor(cam.horizon)) + 1
    if r0 >= cam.height:
        return
    rows = np.arange(r0, cam.height, dtype=np.float32)[:, None] + 0.5
    cols = np.arange(cam.width, dtype=np.float32)[None, :] + 0.5
    zc = cam.f * cam.h / (rows - cam.horizon)  # [h, 1]
    x = (cols - cam.vp_x) * zc / cam.f + cam.x  # [h, W]
    zw = np.broadcast_to(zc + cam.z, x.shape)
    ax = np.abs(x)
    walk_w = np.where(x < 0, street.sidewalk[0], street.sidewalk[1])
    road = ax < street.road_half
    walk = ~road & (ax < street.road_half + walk_w)
    label = np.where(road, ROAD, np.where(walk, SIDEWALK, TERRAIN)).astype(np.uint8)
    smooth = sample_tile(x, zw, 6.0, street.tex_offset)
    fine = sample_tile(x, zw, 60.0, street.tex_offset, "fine")
    far = np.clip(12.0 / zc, 0.0, 1.0)  # texture contrast fades with distance
    gain = 1.0 + (0.25 * (smooth - 0.5) + 0.3 * (fine - 0.5) * far)
    table = np.zeros((3, 256), np.float32)
    for label_id, color in ((ROAD, street.road_color), (SIDEWALK, street.walk_color),
                            (TERRAIN, street.terrain_color)):
        table[:, label_id] = color
    rgb = table[:, label]  # [3, h, W]
    terrain = label == TERRAIN
    gain = np.where(terrain, gain + 0.35 * (fine - 0.5), gain)
    if street.patches > 0:  # asphalt repairs and wet patches: in-distribution road variation
        patch = road & (sample_tile(x, zw, 1.5, (street.tex_offset[1], street.tex_offset[0])) > 1.0 - street.patches)
        gain = np.where(patch, gain * 0.78, gain)
    # paving joints and curb stones
    joints = walk & ((np.mod(zw, 1.2) < 0.06) | (np.mod(ax - street.road_half, 1.2) < 0.05))
    gain = np.where(joints, gain * 0.8, gain)
    curb = walk & (ax - street.road_half < 0.2)
    gain = np.where(curb, gain * 1.15, gain)
    # lane markings: centre (dashed or solid), lane separators (dashed), edge lines (solid)
    half_line = 0.075
    marks = np.zeros(x.shape, bool)
    lanes = max(round(2 * street.road_half / street.lane_w), 1)
    for k in range(1, lanes):
        pos = -street.road_half + k * street.lane_w
        is_centre = abs(pos) < 1e-3
        dashed = (not is_centre) or street.dashed_centre
        line = np.abs(x - pos) < half_line
        marks |= line & (np.mod(zw, 9.0) < 3.0) if dashed else line
    if street.edge_lines:
        marks |= np.abs(ax - (street.road_half - 0.3)) < half_line
    for zx in street.crosswalks:
        marks |= road & (zw > zx) & (zw < zx + 3.5) & (np.mod(x, 1.0) < 0.5)
    marks &= road
    rgb[:, marks] = 0.85
    gain = np.where(marks, 1.0 + 0.1 * (fine - 0.5), gain)
    if street.shadow_len > 0:
        gain = np.where(_in_building_shadow(street, x, zw), gain * 0.55, gain)
    rgb *= gain[None]
    canvas.rgb[:, r0:] = rgb
    canvas.label[r0:] = label
    canvas.depth[r0:] = np.broadcast_to(zc, x.shape)


def _in_building_shadow(street: Street, x: np.ndarray, zw: np.ndarray) -> np.ndarray:
    """Ground points (x, zw) [h, W] inside the shadow the unlit side's buildings cast across the street."""
    side = -street.sun_side
    cell = 0.5  # metres per lookup cell along the street
    z_min = min((f.z0 for f in street.facades), default=0.0)
    z_max = max((f.z1 for f in street.facades), default=0.0)
    n = int((z_max - z_min) / cell) + 2
    edge = np.full(n, np.inf, np.float32)  # shadow reaches side * x > edge
    for fac in street.facades:
        if fac.kind != "building" or np.sign(fac.x) != side:
            continue
        i0, i1 = int((fac.z0 - z_min) / cell), int((fac.z1 - z_min) / cell) + 1
        edge[i0:i1] = np.minimum(edge[i0:i1], abs(fac.x) - fac.height * street.shadow_len)
    idx = np.clip(((zw - z_min) / cell).astype(np.int32), 0, n - 1)
    return side * x > edge[idx]


def paint_facades(canvas: Canvas, street: Street) -> None:
    """Paint every facade plane with a per-pixel depth test (buildings with windows, walls, fences, hedges)."""
    cam = canvas.cam
    for fac in street.facades:
        dx = fac.x - cam.x
        zc0, zc1 = max(fac.z0 - cam.z, 0.8), fac.z1 - cam.z
        if zc1 <= zc0 or abs(dx) < 0.3:
            continue
        xa, xb = cam.vp_x + cam.f * dx / zc0, cam.vp_x + cam.f * dx / zc1
        c0, c1 = max(int(np.floor(min(xa, xb))), 0), min(int(np.ceil(max(xa, xb))) + 1, cam.width)
        if c1 <= c0:
            continue
        cols = np.arange(c0, c1, dtype=np.float32) + 0.5
        with np.errstate(divide="ignore"):
            zc = cam.f * dx / (cols - cam.vp_x)
        valid_col = (zc >= zc0) & (zc <= zc1)
        if not valid_col.any():
            continue
        zc = np.where(valid_col, zc, zc1).astype(np.float32)
        zc_near = float(zc[valid_col].min())
        r0 = max(int(np.floor(cam.horizon - cam.f * (fac.height * 1.3 - cam.h) / zc_near)), 0)
        r1 = min(int(np.ceil(cam.horizon + cam.f * cam.h / zc_near)) + 1, cam.height)
        if r1 <= r0:
            continue
        rows = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5
        zc2 = zc[None, :]
        v = cam.h - (rows - cam.horizon) * zc2 / cam.f  # height above ground (m)
        u = zc2 + cam.z  # along-street coordinate (m)
        if fac.kind == "hedge":
            height = fac.height * (0.85 + 0.3 * sample_tile(u, np.zeros_like(u), 3.0, street.tex_offset))
        else:
            height = fac.height
        mask = valid_col[None, :] & (v >= 0.0) & (v <= height)
        if fac.kind == "fence":
            spacing, bar = fac.window[0], 0.05
            mask &= (np.mod(u - fac.z0, spacing) < bar + 0.02) | (np.abs(v - height + 0.05) < 0.05) | \
                (np.abs(v - 0.3) < 0.04)
        block = (slice(r0, r1), slice(c0, c1))
        mask &= canvas.depth[block] > zc2
        if not mask.any():
            continue
        label = {"building": BUILDING, "wall": WALL, "fence": FENCE, "hedge": VEGETATION}[fac.kind]
        tex = sample_tile(u, v, 25.0 if fac.kind != "hedge" else 50.0, street.tex_offset,
                          "fine" if fac.kind == "hedge" else "smooth")
        lit = 1.0 if np.sign(fac.x) == street.sun_side else 0.7
        gain = lit * (1.0 + (0.6 if fac.kind == "hedge" else 0.25) * (tex - 0.5))
        rgb = _col(fac.color) * gain[None]
        if fac.kind == "building":
            sx, fh = fac.window
            wu = np.mod(u - fac.z0, sx) / sx
            wv = np.mod(v, fh) / fh
            win = (wu > 0.25) & (wu < 0.75) & (wv > 0.3) & (wv < 0.8) & (v > 1.2) & (v < fac.height - 0.8)
            glass = np.where((tex > 1.0 - fac.lit)[None], _col((0.85, 0.8, 0.55)),
                             _col((0.12, 0.15, 0.2)) * (0.7 + 0.6 * tex[None]))
            rgb = np.where(win[None], glass, rgb)
            ledge = np.mod(v, fh) < 0.15
            rgb = np.where(ledge[None], rgb * 0.8, rgb)
        mask_b = np.broadcast_to(mask, rgb.shape[1:])
        canvas.rgb[:, r0:r1, c0:c1][:, mask_b] = rgb[:, mask_b]
        canvas.label[block][mask_b] = label
        canvas.depth[block][mask_b] = np.broadcast_to(zc2, mask_b.shape)[mask_b]
