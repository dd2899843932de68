"""SynthStreet: a seeded procedural generator of driving scenes with Cityscapes labels and unknown objects.

A scene is a straight street seen by a forward camera: perspective road with lane markings and zebra
crossings, sidewalks with curbs, terrain, buildings with windows, walls, fences, hedges, trees, poles with
signs and traffic lights, cars, trucks, buses, pedestrians, cyclists, a sky with clouds and a distant
skyline/tree line, under varied light, tint, haze and sensor noise. The OoD variant adds unknown objects on or
beside the road (animals, debris, crates, tyres, cones of unseen colours, and context violations: blocks of
vegetation or facade standing on the road).

Frame ``(seed, split, index)`` is a pure function of its arguments: the same seed gives the same bytes.
Writers (:func:`write_synthstreet`) produce these layouts under one root:

- ``cityscapes``: ``leftImg8bit/<split>/synth/synth_<index>_000019_leftImg8bit.png`` and
  ``gtFine/<split>/synth/..._gtFine_labelIds.png`` (Cityscapes labelIds; unknown objects are 0 = unlabeled).
- ``lostandfound``: ``leftImg8bit/<split>/<seq>/<seq>_<index>_<frame>_leftImg8bit.png`` and
  ``gtCoarse/<split>/<seq>/..._gtCoarse_labelIds.png`` with 0 void, 1 road (free space), 2+ obstacle kind.
- ``fishyscapes``: ``images/<name>.png`` and ``labels/<name>.png`` with 0 road, 1 anomaly, 255 void
  (everything off the road, as in Fishyscapes LostAndFound).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from moose_ros.data import synth_objects as so
from moose_ros.data.cityscapes import label_ids_to_train_ids
from moose_ros.data.synth_scene import Camera, Canvas, Thing
from moose_ros.data.synth_street import Street, paint_facades, paint_ground, paint_sky, sample_street
from moose_ros.errors import ConfigError

__all__ = [
    "LAYOUTS",
    "SynthFrame",
    "render_frame",
    "render_sequence",
    "write_synthstreet",
]

LAYOUTS = ("cityscapes", "lostandfound", "fishyscapes")
ROAD_LABEL_ID = 7
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


@dataclass(frozen=True)
class SynthFrame:
    """One rendered frame.

    ``image`` uint8 [H, W, 3] RGB; ``label_ids`` uint8 [H, W] Cityscapes labelIds (unknown objects 0);
    ``obstacle`` uint8 [H, W]: 0 = none, else the LostAndFound obstacle id (2+) of an unknown object.
    """

    image: np.ndarray
    label_ids: np.ndarray
    obstacle: np.ndarray

    @property
    def train_ids(self) -> np.ndarray:
        """uint8 [H, W] Cityscapes train ids (255 ignore, unknown objects included)."""
        return label_ids_to_train_ids(self.label_ids)

    @property
    def laf_labels(self) -> np.ndarray:
        """uint8 [H, W] LostAndFound gtCoarse labelIds: 0 void, 1 road (free space), 2+ obstacle."""
        road = (self.label_ids == ROAD_LABEL_ID).astype(np.uint8)
        return np.where(self.obstacle > 0, self.obstacle, road).astype(np.uint8)

    @property
    def ood(self) -> np.ndarray:
        """uint8 [H, W] Fishyscapes LostAndFound labels: 0 road, 1 anomaly, 255 void (off the road)."""
        out = np.full(self.label_ids.shape, 255, np.uint8)
        out[self.label_ids == ROAD_LABEL_ID] = 0
        out[self.obstacle > 0] = 1
        return out


@dataclass
class _Scene:
    cam: Camera
    street: Street
    things: list[Thing]
    exposure: float
    tint: np.ndarray
    fog_m: float
    noise: float


def _split_code(split: str) -> int:
    code = _SPLIT_CODES.get(split)
    return code if code is not None else 100 + zlib.crc32(split.encode()) % 100_000


def _sample_scene(rng: np.random.Generator, height: int, width: int, *, ood: bool, travel_m: float) -> _Scene:
    """Draw camera, street, things and light for a drive of ``travel_m`` metres (0 for a still frame)."""
    z_to = travel_m + 110.0
    street = sample_street(rng, -5.0, z_to + 60.0)
    lanes = max(round(2 * street.road_half / street.lane_w), 1)
    right_lanes = list(range(lanes // 2, lanes))
    ego = int(rng.choice(right_lanes))
    lane_x = [-street.road_half + (k + 0.5) * street.lane_w for k in range(lanes)]
    cam = Camera(height=height, width=width, f=width * float(rng.uniform(0.85, 1.15)),
                 horizon=height * float(rng.uniform(0.36, 0.5)), vp_x=width * float(0.5 + rng.uniform(-0.08, 0.08)),
                 x=lane_x[ego] + float(rng.uniform(-0.3, 0.3)), h=float(rng.uniform(1.2, 1.7)))
    cam_speed = travel_m
    things: list[Thing] = []
    half, walk = street.road_half, street.sidewalk
    # traffic in every lane; the ego lane keeps its first vehicle at least 10 m ahead
    for k, x in enumerate(lane_x):
        if rng.random() < 0.3:
            continue
        forward = k in right_lanes  # right-hand traffic; the ego lane always flows forward
        z = float(rng.uniform(10.0 if k == ego else 5.0, 35.0))
        while z < z_to:
            low = 1.0 if k == ego else 0.6  # never drive into the ego lane's leader
            speed = float(rng.uniform(low, 1.3) if forward else -rng.uniform(0.5, 1.5)) * cam_speed
            kind = rng.choice(3, p=(0.83, 0.1, 0.07))
            maker = (so.car, so.truck, so.bus)[kind]
            things.append(maker(rng, x + float(rng.uniform(-0.3, 0.3)), z, speed))
            z += float(rng.uniform(9.0, 45.0))
    # parked cars along the curbs
    for side in (-1.0, 1.0):
        if rng.random() < 0.45:
            z = float(rng.uniform(3.0, 15.0))
            while z < min(z_to, 90.0):
                things.append(so.car(rng, side * (half - 1.05), z))
                z += float(rng.uniform(5.0, 20.0))
    # street furniture and trees
    for side, width_m in ((-1.0, walk[0]), (1.0, walk[1])):
        z = float(rng.uniform(2.0, 20.0))
        while z < z_to:
            things.append(so.pole(rng, side * (half + 0.45), z, side))
            z += float(rng.uniform(12.0, 35.0))
        if rng.random() < 0.6:
            behind = width_m < 2.5 or rng.random() < 0.4
            z = float(rng.uniform(2.0, 12.0))
            while z < z_to:
                x = side * (half + width_m + rng.uniform(1.0, 5.0)) if behind else side * (half + width_m - 0.7)
                things.append(so.tree(rng, float(x), z))
                z += float(rng.uniform(6.0, 18.0))
    # pedestrians and cyclists
    for _ in range(int(rng.poisson(3.5))):
        side = float(rng.choice((-1.0, 1.0)))
        w = walk[0] if side < 0 else walk[1]
        things.append(so.person(rng, side * (half + float(rng.uniform(0.3, max(w - 0.3, 0.4)))),
                                float(rng.uniform(4.0, 70.0) + travel_m * rng.random())))
    if rng.random() < 0.12:
        zx = street.crosswalks[0] + 1.5 if street.crosswalks else float(rng.uniform(12.0, 40.0))
        things.append(so.person(rng, float(rng.uniform(-half + 0.5, half - 0.5)), zx))
    if rng.random() < 0.25:
        side = float(rng.choice((-1.0, 1.0)))
        things.append(so.cyclist(rng, side * (half - 0.7), float(rng.uniform(8.0, 60.0)), 0.4 * cam_speed))
    if travel_m > 0:  # a drive: nothing the camera would pass through (speeds are still per whole drive)
        things = [t for t in things if abs(t.x - cam.x) >= 1.9 or t.z + t.speed > travel_m + 5.0]
    if ood:
        things = _place_unknowns(rng, things, street, travel_m)
    dusk = rng.random() < 0.1  # dim, warm light
    exposure = float(rng.uniform(0.45, 0.65) if dusk else rng.uniform(0.75, 1.25))
    tint = (1.0 + rng.uniform(-0.08, 0.08, 3)) * ((1.12, 0.97, 0.8) if dusk else (1.0, 1.0, 1.0))
    return _Scene(cam, street, things, exposure=exposure, tint=tint.astype(np.float32),
                  fog_m=float(rng.uniform(150, 800)),
                  noise=float(rng.uniform(0.004, 0.02)))


def _place_unknowns(rng: np.random.Generator, things: list[Thing], street: Street, travel_m: float) -> list[Thing]:
    """Add 1-3 unknown objects on (80 %) or beside the road and clear the traffic in front of them."""
    half = street.road_half
    kinds = list(so.ANOMALY_KINDS)
    for _ in range(int(rng.integers(1, 4))):
        kind = kinds[int(rng.integers(len(kinds)))]
        if rng.random() < 0.8:
            x = float(rng.uniform(-half + 0.6, half - 0.6))
        else:
            side = float(rng.choice((-1.0, 1.0)))
            x = side * (half + float(rng.uniform(0.3, max((street.sidewalk[0] if side < 0 else
                                                              street.sidewalk[1]) - 0.3, 0.4))))
        z = travel_m + float(rng.uniform(5.0, 20.0) if travel_m > 0 else rng.uniform(6.0, 40.0))
        things = [t for t in things if not (abs(t.x - x) < 2.4 and ("vehicle" in t.tags or abs(t.z - z) < 4.0))]
        things.append(so.anomaly(rng, kind, x, z))
    return things


def _render(scene: _Scene, rng: np.random.Generator, frame: int, cam_z: float) -> SynthFrame:
    cam = Camera(scene.cam.height, scene.cam.width, scene.cam.f, scene.cam.horizon, scene.cam.vp_x,
                 scene.cam.x, scene.cam.h, cam_z)
    canvas = Canvas(cam)
    paint_sky(canvas, scene.street)
    paint_ground(canvas, scene.street)
    paint_facades(canvas, scene.street)
    order = sorted(scene.things, key=lambda t: -(t.z + t.speed * frame))
    for thing in order:
        canvas.paint_thing(thing, frame)
    haze = np.asarray(scene.street.sky_bottom, np.float32)
    image = canvas.finish(rng, exposure=scene.exposure, tint=scene.tint, haze=haze, fog_m=scene.fog_m,
                          noise=scene.noise)
    return SynthFrame(image, canvas.label, canvas.obstacle)


def _check_size(height: int, width: int) -> None:
    if height < 16 or width < 16:
        raise ConfigError(f"SynthStreet image size {height}x{width} (H x W) is too small; need at least 16x16")


def render_frame(seed: int, *, split: str = "train", index: int = 0, height: int = 256, width: int = 512,
                 ood: bool = False) -> SynthFrame:
    """Render frame ``index`` of ``split`` for ``seed`` at ``height`` x ``width`` pixels.

    With ``ood`` the frame holds 1-3 unknown objects, at least one visible (non-empty ``obstacle``).
    """
    _check_size(height, width)
    rng = np.random.default_rng([seed, _split_code(split), int(ood), index])
    frame = _render(_sample_scene(rng, height, width, ood=ood, travel_m=0.0), rng, 0, 0.0)
    for _ in range(3):  # an unknown object hidden behind something or too small: draw the scene again
        if not ood or frame.obstacle.any():
            break
        frame = _render(_sample_scene(rng, height, width, ood=ood, travel_m=0.0), rng, 0, 0.0)
    return frame


def render_sequence(seed: int, frames: int, *, split: str = "test", index: int = 0, height: int = 256,
                    width: int = 512, ood: bool = True, speed_m: float | None = None) -> Iterator[SynthFrame]:
    """Yield ``frames`` consecutive frames of one drive: the camera moves ``speed_m`` metres per frame
    (default 0.4-0.9 m, drawn from the seed) towards the scene's objects; other traffic moves too."""
    _check_size(height, width)
    if frames < 1:
        raise ConfigError(f"sequence length must be >= 1 frame, got {frames}")
    rng = np.random.default_rng([seed, _split_code(split), int(ood), 1_000_000 + index])
    step = float(rng.uniform(0.4, 0.9)) if speed_m is None else float(speed_m)
    scene = _sample_scene(rng, height, width, ood=ood, travel_m=step * (frames - 1))
    # things speeds were drawn per metre of the whole drive; make them per frame
    for thing in scene.things:
        thing.speed = thing.speed / max(frames - 1, 1)
    for t in range(frames):
        frame_rng = np.random.default_rng([seed, _split_code(split), int(ood), 1_000_000 + index, t])
        yield _render(scene, frame_rng, t, step * t)


def _save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG", compress_level=1)  # fast; bytes still deterministic


def _write_frame(root: Path, layouts: Sequence[str], split: str, city: str, seq: int, frame_no: int,
                 frame: SynthFrame) -> list[Path]:
    stem = f"{city}_{seq:06d}_{frame_no:06d}"
    written: list[Path] = []
    for layout in layouts:
        if layout == "cityscapes":
            pairs = ((root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", frame.image),
                     (root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", frame.label_ids))
        elif layout == "lostandfound":
            pairs = ((root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", frame.image),
                     (root / "gtCoarse" / split / city / f"{stem}_gtCoarse_labelIds.png", frame.laf_labels))
        else:
            pairs = ((root / "images" / f"{stem}.png", frame.image), (root / "labels" / f"{stem}.png", frame.ood))
        for path, array in pairs:
            if path not in written:
                _save_png(path, array)
                written.append(path)
    return written


def _parse_layouts(layout: str | Sequence[str]) -> list[str]:
    names = [p.strip() for p in layout.split(",")] if isinstance(layout, str) else list(layout)
    bad = [n for n in names if n not in LAYOUTS]
    if bad or not names:
        raise ConfigError(f"unknown SynthStreet layout {bad or names!r}; choose from {', '.join(LAYOUTS)}")
    if "cityscapes" in names and "lostandfound" in names:
        raise ConfigError("layouts cityscapes and lostandfound share leftImg8bit/; write them to different roots")
    return names


@dataclass(frozen=True)
class _Job:
    root: Path
    layouts: tuple[str, ...]
    split: str
    seed: int
    height: int
    width: int
    ood: bool
    sequence: int


def _write_item(job: _Job, i: int) -> tuple[list[Path], int]:
    """Render and write still frame ``i`` or drive ``i``; return the paths and the number of frames."""
    if job.sequence:
        written: list[Path] = []
        for t, frame in enumerate(render_sequence(job.seed, job.sequence, split=job.split, index=i,
                                                  height=job.height, width=job.width, ood=job.ood)):
            written += _write_frame(job.root, job.layouts, job.split, f"synthseq{i:03d}", i, t, frame)
        return written, job.sequence
    frame = render_frame(job.seed, split=job.split, index=i, height=job.height, width=job.width, ood=job.ood)
    frame_no = 19 if "cityscapes" in job.layouts else 0
    return _write_frame(job.root, job.layouts, job.split, "synth", i, frame_no, frame), 1


def write_synthstreet(root: str | Path, *, split: str = "train", count: int = 100, layout: str | Sequence[str] =
                      "cityscapes", seed: int = 0, height: int = 256, width: int = 512, ood: bool = False,
                      sequence: int = 0, progress: bool = False, workers: int = 1) -> list[Path]:
    """Write ``count`` frames (or ``count`` sequences of ``sequence`` frames) under ``root``; return the paths.

    ``layout``: one of :data:`LAYOUTS` or several joined by commas. Sequences are LostAndFound-style drives
    named ``synthseq<k>``; still frames go to the city ``synth``. A ``synthstreet_<split>.json`` manifest
    records the arguments. ``workers`` > 1 renders in that many processes (the bytes do not depend on it).
    Same arguments -> same bytes.
    """
    layouts = _parse_layouts(layout)
    _check_size(height, width)
    if count < 0:
        raise ConfigError(f"count must be >= 0, got {count}")
    if sequence < 0:
        raise ConfigError(f"sequence length must be >= 0, got {sequence}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    root = Path(root)
    job = _Job(root, tuple(layouts), split, seed, height, width, ood, sequence)
    total = count * sequence if sequence else count
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="frame", desc=f"synth {split}")
    written: list[Path] = []
    try:
        if workers > 1 and count > 1:
            import concurrent.futures
            import functools

            with concurrent.futures.ProcessPoolExecutor(max_workers=min(workers, count)) as pool:
                for paths, frames in pool.map(functools.partial(_write_item, job), range(count), chunksize=4):
                    written += paths
                    if bar is not None:
                        bar.update(frames)
        else:
            for i in range(count):
                paths, frames = _write_item(job, i)
                written += paths
                if bar is not None:
                    bar.update(frames)
    finally:
        if bar is not None:
            bar.close()
    manifest = {"generator": "SynthStreet", "split": split, "count": count, "layouts": layouts, "seed": seed,
                "height": height, "width": width, "ood": ood, "sequence": sequence, "frames": total}
    root.mkdir(parents=True, exist_ok=True)
    (root / f"synthstreet_{split}.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return written
