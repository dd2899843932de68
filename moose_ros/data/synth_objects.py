"""SynthStreet things: in-distribution street objects and the unknown objects of the OoD split.

Each builder takes a ``numpy.random.Generator`` and a world position ``(x, z)`` in metres and returns a
:class:`~moose_ros.data.synth_scene.Thing` made of primitives labelled with Cityscapes labelIds. Unknown
objects are labelled 0 (unlabeled, so 255 in train ids) and carry a LostAndFound obstacle id (2+) per kind.
"""

from __future__ import annotations

import numpy as np

from moose_ros.data.synth_scene import Prim, Thing

__all__ = ["ANOMALY_KINDS", "anomaly", "bus", "car", "cyclist", "person", "pole", "tree", "truck"]

POLE, LIGHT, SIGN, VEGETATION, PERSON, RIDER, CAR, TRUCK, BUS, BICYCLE = 17, 19, 20, 21, 24, 25, 26, 27, 28, 33
UNLABELED = 0

#: unknown object kinds of the OoD split and their LostAndFound obstacle ids
ANOMALY_KINDS: dict[str, int] = {
    "animal": 2, "debris": 3, "crate": 4, "tyre": 5, "cone": 6, "vegetation_block": 7, "building_block": 8,
}

CAR_COLORS = ((0.85, 0.85, 0.85), (0.08, 0.08, 0.09), (0.55, 0.56, 0.58), (0.55, 0.08, 0.07), (0.1, 0.18, 0.45),
              (0.12, 0.25, 0.15), (0.7, 0.6, 0.35), (0.35, 0.3, 0.28))
CLOTHES = ((0.1, 0.1, 0.12), (0.2, 0.25, 0.45), (0.5, 0.1, 0.1), (0.6, 0.6, 0.6), (0.3, 0.35, 0.2),
           (0.7, 0.55, 0.35), (0.15, 0.3, 0.5))
SKIN = ((0.85, 0.65, 0.5), (0.6, 0.42, 0.3), (0.35, 0.24, 0.16), (0.9, 0.75, 0.62))
# cones in colours no in-distribution object of SynthStreet has as a whole
CONE_COLORS = ((0.5, 0.1, 0.65), (0.1, 0.7, 0.75), (0.5, 0.9, 0.1), (0.95, 0.4, 0.75), (0.2, 0.3, 0.95))


def _pick(rng: np.random.Generator, colors: tuple[tuple[float, float, float], ...],
          jitter: float = 0.1) -> tuple[float, float, float]:
    base = np.asarray(colors[int(rng.integers(len(colors)))])
    rgb = np.clip(base * (1.0 + rng.uniform(-jitter, jitter, 3)), 0.01, 1.0)
    return (float(rgb[0]), float(rgb[1]), float(rgb[2]))


def _harmonics(rng: np.random.Generator, n: int, amp: float) -> tuple[float, ...]:
    out: list[float] = []
    for k in range(2, 2 + n):
        out += [float(k), float(rng.uniform(0.3, 1.0) * amp / k ** 0.5), float(rng.uniform(0, 2 * np.pi))]
    return tuple(out)


def _thing(rng: np.random.Generator, x: float, z: float, prims: list[Prim], speed: float = 0.0,
           tag: str = "") -> Thing:
    return Thing(x, z, prims, speed, (float(rng.uniform(0, 256)), float(rng.uniform(0, 256))), (tag,))


def _wheels(w: float, r: float, label: int) -> list[Prim]:
    dark = (0.04, 0.04, 0.045)
    return [Prim("rect", (-w / 2 + 0.05, -w / 2 + 0.33, 0.0, 2 * r), label, dark, 0.1),
            Prim("rect", (w / 2 - 0.33, w / 2 - 0.05, 0.0, 2 * r), label, dark, 0.1)]


def car(rng: np.random.Generator, x: float, z: float, speed: float = 0.0) -> Thing:
    """A car seen from behind or the front: wheels, body, cabin with glass, lights (labelId 26)."""
    w, body, cabin = rng.uniform(1.65, 1.95), rng.uniform(0.55, 0.8), rng.uniform(0.45, 0.65)
    color = _pick(rng, CAR_COLORS)
    y_b = 0.25
    lamp = (0.8, 0.1, 0.08) if rng.random() < 0.6 else (0.95, 0.92, 0.8)
    prims = [Prim("shadow", (-w / 2 - 0.15, w / 2 + 0.15, -0.3, 0.1), CAR), *_wheels(w, 0.3, CAR),
             Prim("rect", (-w / 2, w / 2, y_b, y_b + body), CAR, color, 0.08),
             Prim("trapezoid", (y_b + body, y_b + body + cabin, -w / 2 + 0.08, w / 2 - 0.08, -w / 2 + 0.3,
                                w / 2 - 0.3), CAR, color, 0.08),
             Prim("trapezoid", (y_b + body + 0.05, y_b + body + cabin - 0.07, -w / 2 + 0.18, w / 2 - 0.18,
                                -w / 2 + 0.36, w / 2 - 0.36), CAR, (0.08, 0.1, 0.13), 0.3),
             Prim("rect", (-w / 2 + 0.05, -w / 2 + 0.35, y_b + body - 0.25, y_b + body - 0.1), CAR, lamp, 0.05),
             Prim("rect", (w / 2 - 0.35, w / 2 - 0.05, y_b + body - 0.25, y_b + body - 0.1), CAR, lamp, 0.05),
             Prim("rect", (-0.25, 0.25, y_b + 0.12, y_b + 0.25), CAR, (0.9, 0.9, 0.88), 0.05)]
    return _thing(rng, x, z, prims, speed, "vehicle")


def truck(rng: np.random.Generator, x: float, z: float, speed: float = 0.0) -> Thing:
    """A box truck from behind (labelId 27)."""
    w, h = rng.uniform(2.2, 2.5), rng.uniform(2.6, 3.8)
    color = _pick(rng, ((0.8, 0.8, 0.78), (0.5, 0.15, 0.1), (0.2, 0.3, 0.5), (0.6, 0.6, 0.55)))
    prims = [Prim("shadow", (-w / 2 - 0.2, w / 2 + 0.2, -0.3, 0.1), TRUCK), *_wheels(w, 0.45, TRUCK),
             Prim("rect", (-w / 2, w / 2, 0.6, 0.6 + h), TRUCK, color, 0.12),
             Prim("rect", (-w / 2 + 0.05, w / 2 - 0.05, 0.55, 0.75), TRUCK, (0.1, 0.1, 0.1), 0.1),
             Prim("rect", (-0.02, 0.02, 0.75, 0.6 + h - 0.1), TRUCK, (0.3, 0.3, 0.3), 0.1)]
    return _thing(rng, x, z, prims, speed, "vehicle")


def bus(rng: np.random.Generator, x: float, z: float, speed: float = 0.0) -> Thing:
    """A bus from behind with its window band (labelId 28)."""
    w, h = 2.55, rng.uniform(2.9, 3.3)
    color = _pick(rng, ((0.85, 0.75, 0.1), (0.8, 0.1, 0.1), (0.9, 0.9, 0.9), (0.1, 0.4, 0.3)))
    prims = [Prim("shadow", (-w / 2 - 0.2, w / 2 + 0.2, -0.3, 0.1), BUS), *_wheels(w, 0.45, BUS),
             Prim("rect", (-w / 2, w / 2, 0.35, 0.35 + h), BUS, color, 0.08),
             Prim("rect", (-w / 2 + 0.12, w / 2 - 0.12, 0.35 + 0.55 * h, 0.35 + 0.92 * h), BUS, (0.07, 0.09, 0.12),
                  0.3)]
    return _thing(rng, x, z, prims, speed, "vehicle")


def person(rng: np.random.Generator, x: float, z: float, label: int = PERSON) -> Thing:
    """A standing or walking pedestrian (labelId 24): legs, torso, arms, head."""
    h = rng.uniform(1.5, 1.95)
    top, legs, skin = _pick(rng, CLOTHES, 0.2), _pick(rng, CLOTHES, 0.2), _pick(rng, SKIN)
    stride = rng.uniform(0.0, 0.12)
    hip, shoulder = 0.48 * h, 0.82 * h
    prims = [Prim("trapezoid", (0.0, hip, -0.2 - stride, -0.05 - stride, -0.15, 0.0), label, legs, 0.2),
             Prim("trapezoid", (0.0, hip, 0.05 + stride, 0.2 + stride, 0.0, 0.15), label, legs, 0.2),
             Prim("trapezoid", (hip - 0.02, shoulder, -0.17, 0.17, -0.21, 0.21), label, top, 0.2),
             Prim("rect", (-0.28, -0.19, hip - 0.05, shoulder - 0.02), label, top, 0.2),
             Prim("rect", (0.19, 0.28, hip - 0.05, shoulder - 0.02), label, top, 0.2),
             Prim("rect", (-0.05, 0.05, shoulder - 0.02, shoulder + 0.05), label, skin, 0.1),
             Prim("ellipse", (0.0, 0.91 * h, 0.1, 0.12), label, skin, 0.1),
             Prim("ellipse", (0.0, 0.94 * h, 0.105, 0.08), label, _pick(rng, CLOTHES), 0.2)]
    return _thing(rng, x, z, prims, 0.0, "person")


def cyclist(rng: np.random.Generator, x: float, z: float, speed: float = 0.0) -> Thing:
    """A bicycle seen from the side (labelId 33) with its rider (labelId 25)."""
    d = rng.choice((-1.0, 1.0))
    frame = _pick(rng, CLOTHES)
    bike = [Prim("ring", (-0.55, 0.34, 0.34, 0.34, 0.85), BICYCLE, (0.05, 0.05, 0.05), 0.1),
            Prim("ring", (0.55, 0.34, 0.34, 0.34, 0.85), BICYCLE, (0.05, 0.05, 0.05), 0.1),
            Prim("trapezoid", (0.3, 0.38, -0.55, 0.55, -0.3, 0.45), BICYCLE, frame, 0.1),
            Prim("rect", (-0.05 + 0.35 * d, 0.05 + 0.35 * d, 0.34, 1.0), BICYCLE, frame, 0.1)]
    rider = person(rng, 0.0, 0.0, RIDER).prims
    lifted = [Prim(p.kind, _lift(p, 0.45), RIDER, p.color, p.tex) for p in rider[2:]]
    leg = [Prim("trapezoid", (0.35, 0.95, -0.15, 0.05, -0.15, 0.15), RIDER, rider[0].color, 0.2)]
    return _thing(rng, x, z, bike + leg + lifted, speed, "vehicle")


def _lift(prim: Prim, dy: float) -> tuple[float, ...]:
    g = list(prim.geom)
    if prim.kind in ("rect", "shadow"):
        g[2] += dy
        g[3] += dy
    elif prim.kind == "trapezoid":
        g[0] += dy
        g[1] += dy
    else:
        g[1] += dy
    return tuple(g)


def tree(rng: np.random.Generator, x: float, z: float) -> Thing:
    """A tree (trunk and a lumpy crown, both vegetation, labelId 21)."""
    trunk_h, r = rng.uniform(1.8, 4.0), rng.uniform(1.2, 3.2)
    ry = r * rng.uniform(0.9, 1.5)
    green = _pick(rng, ((0.15, 0.3, 0.08), (0.22, 0.35, 0.1), (0.1, 0.22, 0.08), (0.3, 0.35, 0.12)), 0.2)
    prims = [Prim("rect", (-0.15, 0.15, 0.0, trunk_h + ry * 0.5), VEGETATION, (0.25, 0.18, 0.12), 0.3),
             Prim("blob", (0.0, trunk_h + ry * 0.85, r, ry, *_harmonics(rng, 4, 0.25)), VEGETATION, green, 0.5, 8.0)]
    return _thing(rng, x, z, prims, 0.0, "tree")


def pole(rng: np.random.Generator, x: float, z: float, side: float) -> Thing:
    """A pole (labelId 17), possibly carrying a traffic sign (20) or a traffic light (19)."""
    h = rng.uniform(3.5, 7.5)
    grey = _pick(rng, ((0.45, 0.45, 0.45), (0.3, 0.32, 0.3), (0.55, 0.55, 0.5)))
    prims = [Prim("rect", (-0.08, 0.08, 0.0, h), POLE, grey, 0.1)]
    kind = rng.choice(3, p=(0.35, 0.45, 0.2))
    if kind == 1:  # traffic sign
        y = min(h - 0.4, rng.uniform(2.2, 3.2))
        shape = rng.integers(3)
        if shape == 0:
            prims += [Prim("ellipse", (0.0, y, 0.35, 0.35), SIGN, (0.8, 0.1, 0.1), 0.05),
                      Prim("ellipse", (0.0, y, 0.25, 0.25), SIGN, _pick(rng, ((0.95, 0.95, 0.95), (0.1, 0.25, 0.7))),
                           0.05)]
        elif shape == 1:
            prims.append(Prim("rect", (-0.35, 0.35, y - 0.3, y + 0.3), SIGN,
                              _pick(rng, ((0.1, 0.3, 0.7), (0.9, 0.9, 0.9), (0.1, 0.45, 0.2))), 0.05))
        else:
            prims += [Prim("trapezoid", (y - 0.3, y + 0.35, -0.4, 0.4, -0.01, 0.01), SIGN, (0.8, 0.1, 0.1), 0.05),
                      Prim("trapezoid", (y - 0.22, y + 0.2, -0.28, 0.28, -0.01, 0.01), SIGN, (0.95, 0.95, 0.9),
                           0.05)]
    elif kind == 2:  # traffic light on an arm over the road side
        reach = -side * rng.uniform(0.0, 2.5)
        y = max(h - 1.0, 3.0)
        prims.append(Prim("rect", (min(0.0, reach), max(0.0, reach), y + 0.6, y + 0.72), POLE, grey, 0.1))
        lit = int(rng.integers(3))
        prims.append(Prim("rect", (reach - 0.18, reach + 0.18, y - 0.45, y + 0.55), LIGHT, (0.08, 0.08, 0.07), 0.1))
        for i, col in enumerate(((0.9, 0.1, 0.05), (0.9, 0.7, 0.1), (0.1, 0.85, 0.3))):
            c = col if i == lit else tuple(0.25 * v for v in col)
            prims.append(Prim("ellipse", (reach, y + 0.3 - 0.3 * i, 0.1, 0.1), LIGHT, c, 0.05))
    elif rng.random() < 0.5:  # street lamp head
        reach = -side * rng.uniform(0.5, 1.5)
        prims.append(Prim("rect", (min(0.0, reach), max(0.0, reach), h - 0.12, h), POLE, grey, 0.1))
        prims.append(Prim("rect", (reach - 0.25, reach + 0.25, h - 0.2, h - 0.02), POLE, (0.8, 0.8, 0.75), 0.1))
    return _thing(rng, x, z, prims, 0.0, "pole")


def anomaly(rng: np.random.Generator, kind: str, x: float, z: float) -> Thing:
    """An unknown object of ``kind`` (see :data:`ANOMALY_KINDS`) standing on the ground at ``(x, z)``."""
    ob = ANOMALY_KINDS[kind]

    def p(shape: str, geom: tuple[float, ...], color: tuple[float, float, float], tex: float = 0.2,
          scale: float = 40.0) -> Prim:
        return Prim(shape, geom, UNLABELED, color, tex, scale, ob)

    prims: list[Prim] = []
    if kind == "animal":
        s = rng.uniform(0.4, 1.1)  # size factor: dog .. cow
        coat = _pick(rng, ((0.45, 0.3, 0.15), (0.1, 0.08, 0.07), (0.85, 0.82, 0.75), (0.6, 0.5, 0.4),
                           (0.75, 0.45, 0.2)), 0.15)
        d = float(rng.choice((-1.0, 1.0)))
        leg, bl, bh = 0.7 * s, 0.9 * s, 0.38 * s
        for lx in (-0.7 * bl, -0.5 * bl, 0.5 * bl, 0.7 * bl):
            prims.append(p("rect", (lx - 0.06 * s, lx + 0.06 * s, 0.0, leg + 0.1 * s), coat, 0.3))
        prims.append(p("blob", (0.0, leg + bh * 0.8, bl, bh, *_harmonics(rng, 3, 0.08)), coat, 0.6, 15.0))
        neck_lo, neck_hi = sorted((d * 0.75 * bl, d * 1.0 * bl))
        top_lo, top_hi = sorted((d * 0.95 * bl, d * 1.15 * bl))
        prims.append(p("trapezoid", (leg + bh * 0.5, leg + bh * 1.8, neck_lo, neck_hi, top_lo, top_hi), coat, 0.4))
        prims.append(p("ellipse", (d * 1.2 * bl, leg + bh * 1.9, 0.28 * s, 0.18 * s), coat, 0.4))
        prims.append(p("ellipse", (d * 1.1 * bl, leg + bh * 2.15, 0.06 * s, 0.12 * s), coat, 0.4))
        tail = -d * 1.05 * bl
        prims.append(p("rect", (tail - 0.04 * s, tail + 0.04 * s, leg, leg + bh * 1.1), coat, 0.3))
    elif kind == "debris":
        for _ in range(int(rng.integers(2, 6))):
            col = _pick(rng, ((0.45, 0.35, 0.22), (0.55, 0.55, 0.52), (0.15, 0.3, 0.65), (0.8, 0.8, 0.75),
                              (0.25, 0.22, 0.2)), 0.2)
            rx, ry = rng.uniform(0.1, 0.5), rng.uniform(0.05, 0.25)
            prims.append(p("blob", (rng.uniform(-0.5, 0.5), ry * 0.8, rx, ry, *_harmonics(rng, 4, 0.3)), col, 0.5))
    elif kind == "crate":
        w, h = rng.uniform(0.3, 1.0), rng.uniform(0.25, 0.8)
        col = _pick(rng, ((0.65, 0.5, 0.3), (0.5, 0.38, 0.22), (0.7, 0.62, 0.45)), 0.15)
        prims.append(p("rect", (-w / 2, w / 2, 0.0, h), col, 0.25))
        for i in range(1, 4):
            y = h * i / 4
            prims.append(p("rect", (-w / 2, w / 2, y - 0.015, y + 0.015), tuple(0.6 * c for c in col), 0.2))
        if rng.random() < 0.4:
            w2 = w * rng.uniform(0.5, 0.9)
            prims.append(p("rect", (-w2 / 2, w2 / 2, h, h + w2 * 0.7), _pick(rng, ((0.75, 0.6, 0.4),)), 0.25))
    elif kind == "tyre":
        r = rng.uniform(0.28, 0.42)
        dark = (0.05, 0.05, 0.05)
        if rng.random() < 0.5:
            prims.append(p("ring", (0.0, r, r, r, 0.55), dark, 0.3))
        else:
            prims.append(p("ring", (0.0, 0.12, r, 0.12, 0.55), dark, 0.3))
            prims.append(p("rect", (-r, r, 0.0, 0.12), dark, 0.3))
    elif kind == "cone":
        h, col = rng.uniform(0.45, 0.95), _pick(rng, CONE_COLORS, 0.1)
        prims.append(p("rect", (-0.22 * h, 0.22 * h, 0.0, 0.05), col, 0.1))
        prims.append(p("trapezoid", (0.05, h, -0.16 * h, 0.16 * h, -0.03, 0.03), col, 0.1))
        prims.append(p("trapezoid", (0.45 * h, 0.62 * h, -0.1 * h, 0.1 * h, -0.075 * h, 0.075 * h),
                       (0.95, 0.95, 0.95), 0.05))
    elif kind == "vegetation_block":
        w, h = rng.uniform(0.6, 2.0), rng.uniform(0.5, 1.6)
        green = _pick(rng, ((0.15, 0.3, 0.08), (0.2, 0.33, 0.1)), 0.2)
        prims.append(p("blob", (0.0, h / 2, w / 2, h / 2, *_harmonics(rng, 5, 0.12)), green, 0.6, 8.0))
    else:  # building_block: a slab of facade standing on the road
        w, h = rng.uniform(0.8, 2.2), rng.uniform(0.8, 2.0)
        col = _pick(rng, ((0.55, 0.5, 0.45), (0.7, 0.65, 0.55), (0.6, 0.4, 0.32)), 0.15)
        prims.append(p("rect", (-w / 2, w / 2, 0.0, h), col, 0.2, 25.0))
        for wx in np.arange(-w / 2 + 0.2, w / 2 - 0.3, 0.7):
            for wy in np.arange(0.25, h - 0.35, 0.8):
                prims.append(p("rect", (wx, wx + 0.3, wy, wy + 0.4), (0.12, 0.15, 0.2), 0.3))
    return _thing(rng, x, z, prims, 0.0, "anomaly")
