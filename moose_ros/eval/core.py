"""Offline OoD evaluation core: any score function over an anomaly dataset -> metrics, curves, gallery.

:func:`evaluate_ood` runs a callable ``score_fn(image uint8 [H, W, 3] RGB) -> {key: float [H, W]}`` over a
sequence of :class:`~moose_ros.data.common.OodSample`-like records (``image``, ``ood`` uint8 [H, W] with 0 / 1 /
255 = void, ``name``). Keys are ``"<method>/<score>"`` (e.g. ``"Global/max_logit"``, ``"MOoSe/max_logit"``) so
the report can lay results out as the paper's Table 1 (rows = methods, columns = scores); a key without ``/`` is
its own method with score ``"score"``. Score maps must have the label's size.

Component metrics (SMIYC) need the pixel threshold that maximises pooled pixel F1, known only after the whole
dataset: the score maps of the keys in ``component_keys`` are cached as float16 ``.npy`` files in a temporary
directory (disk, ``2 * H * W`` bytes per image and key, deleted afterwards) and scored in a second pass. float16
moves the threshold decision only for pixels within float16 rounding (~1e-3 relative) of the threshold.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moose_ros.errors import ConfigError, DatasetError
from moose_ros.metrics import DEFAULT_BINS, ComponentMetrics, OodMetrics

__all__ = [
    "REGIONS",
    "GalleryItem",
    "OodEvaluation",
    "ScoreFn",
    "evaluate_ood",
    "gallery_indices",
    "progress_iter",
    "render_gallery_item",
    "split_key",
]

#: Regions an OoD label map is read in: ``layout`` keeps the dataset's void (the Fishyscapes / LostAndFound road
#: protocol: only road and anomaly pixels count); ``image`` counts every non-anomaly pixel as in-distribution (glow
#: on class borders, the horizon or far buildings costs precision).
REGIONS: tuple[str, ...] = ("layout", "image")

#: image uint8 [H, W, 3] RGB -> {"<method>/<score>": float [H, W] score map, higher = anomalous}
ScoreFn = Callable[[np.ndarray], Mapping[str, np.ndarray]]


def region_labels(ood: np.ndarray, region: str) -> np.ndarray:
    """OoD labels uint8 [H, W] (0 in-distribution, 1 anomaly, 255 void) of ``ood`` read in ``region``."""
    if region == "layout":
        return ood
    if region == "image":
        return (ood == 1).astype(np.uint8)
    raise ConfigError(f"region '{region}' is unknown; allowed: {', '.join(REGIONS)}")


def split_key(key: str) -> tuple[str, str]:
    """``"MOoSe/max_logit"`` -> ``("MOoSe", "max_logit")``; a key without ``/`` -> ``(key, "score")``."""
    method, sep, score = key.partition("/")
    return (method, score) if sep else (key, "score")


@dataclass
class GalleryItem:
    """One gallery row: ``panels`` = [(title, RGB uint8 [H, W, 3])], drawn left to right."""

    name: str
    panels: list[tuple[str, np.ndarray]]


@dataclass
class OodEvaluation:
    """What :func:`evaluate_ood` measured.

    Attributes:
        metrics: key -> :meth:`OodMetrics.compute` dict (the first region and protocol).
        views: (region, protocol) -> key -> :meth:`OodMetrics.compute` dict, for every region and protocol asked.
        components: key -> :meth:`ComponentMetrics.compute` dict (keys in ``component_keys`` only).
        curves: key -> :meth:`OodMetrics.curves` arrays (pooled, for plots).
        gallery: rendered gallery rows.
        num_images: images evaluated.
        seconds: wall time in total; ``score_seconds``: inside ``score_fn``.
    """

    metrics: dict[str, dict[str, Any]]
    views: dict[tuple[str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    components: dict[str, dict[str, Any]] = field(default_factory=dict)
    curves: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    gallery: list[GalleryItem] = field(default_factory=list)
    num_images: int = 0
    seconds: float = 0.0
    score_seconds: float = 0.0

    def table(self, what: str = "metrics") -> dict[str, dict[str, dict[str, Any]]]:
        """``{method: {score: result}}`` of ``metrics`` or ``components``, in first-seen order."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for key, value in getattr(self, what).items():
            method, score = split_key(key)
            out.setdefault(method, {})[score] = value
        return out


def gallery_indices(num_images: int, count: int) -> list[int]:
    """``count`` image indices spread evenly over ``range(num_images)`` (first and last included)."""
    if count <= 0 or num_images <= 0:
        return []
    if count >= num_images:
        return list(range(num_images))
    return sorted({int(v) for v in np.linspace(0, num_images - 1, count).round()})


def _first_key_per_method(keys: Sequence[str]) -> list[str]:
    """The first key of every method, in order: [G/a, G/b, M/a, M/b] -> [G/a, M/a]."""
    seen: dict[str, str] = {}
    for k in keys:
        seen.setdefault(split_key(k)[0], k)
    return list(seen.values())


def _ood_rgb(ood: np.ndarray) -> np.ndarray:
    """Ground truth for display: in-distribution grey, anomaly orange-red, void black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[0] = (96, 96, 96)
    lut[1] = (255, 64, 0)
    return lut[ood]


def render_gallery_item(image: np.ndarray, ood: np.ndarray, maps: Mapping[str, np.ndarray], name: str) -> GalleryItem:
    """Gallery panels for one frame: image uint8 [H,W,3], ground truth ood uint8 [H,W] (0/1/255), one overlay per
    score map float [H,W] (each on its own percentile range). Shared by ``moose eval`` and ``moose bag evaluate``."""
    from moose_ros.visualize import normalize_scores, overlay_heatmap

    panels: list[tuple[str, np.ndarray]] = [("image", image), ("ground truth", _ood_rgb(ood))]
    for key, score in maps.items():
        # each map on its own 1st-99th percentile range: Global and MOoSe scores differ in scale (MOoSe averages
        # K + 1 heads), so a shared range would paint one of them uniformly hot or cold
        panels.append((key, overlay_heatmap(image, normalize_scores(score), alpha=0.6)))
    return GalleryItem(name=name, panels=panels)


def progress_iter(items: Iterable[Any], total: int, desc: str, enabled: bool) -> Iterable[Any]:
    """``items`` wrapped in a tqdm progress bar (to stderr) when ``enabled``."""
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, unit="img", leave=False)


class _Accumulators:
    """One :class:`OodMetrics` per (region, protocol, key); the first (region, protocol) is the main view."""

    def __init__(self, keys: list[str], views: list[tuple[str, str]], mode: str, bins: int) -> None:
        self.keys = keys
        self.views = views
        self.by_view = {v: {k: OodMetrics(protocol=v[1], mode=mode, bins=bins) for k in keys} for v in views}

    @property
    def main(self) -> dict[str, OodMetrics]:
        return self.by_view[self.views[0]]

    def update(self, maps: Mapping[str, np.ndarray], ood: np.ndarray, name: str) -> None:
        labels = {region: region_labels(ood, region) for region in dict.fromkeys(r for r, _ in self.views)}
        for k in self.keys:
            m = np.asarray(maps[k])
            if m.shape != ood.shape:
                raise ConfigError(f"evaluate_ood: score '{k}' of image {name} is {m.shape}, its label {ood.shape}")
            m = m.astype(np.float32, copy=False)
            for (region, _), metrics in self.by_view.items():
                metrics[k].update(m, labels[region])


def _check_views(protocol: str, protocols: Sequence[str] | None, regions: Sequence[str]) -> list[tuple[str, str]]:
    chosen = [p.replace("-", "_") for p in (protocols if protocols is not None else (protocol,))]
    if not chosen or not regions:
        raise ConfigError("evaluate_ood: give at least one protocol and one region")
    for region in regions:
        if region not in REGIONS:
            raise ConfigError(f"region '{region}' is unknown; allowed: {', '.join(REGIONS)}")
    return [(r, p) for r in regions for p in chosen]


def evaluate_ood(
    score_fn: ScoreFn,
    dataset: Sequence[Any],
    protocol: str = "pooled",
    *,
    protocols: Sequence[str] | None = None,
    regions: Sequence[str] = ("layout",),
    mode: str = "hist",
    bins: int = DEFAULT_BINS,
    limit: int | None = None,
    gallery: int = 0,
    gallery_keys: Sequence[str] | None = None,
    component_keys: Sequence[str] | None = None,
    component_size_filters: tuple[int, int] | None = None,
    progress: bool = True,
    desc: str = "eval",
) -> OodEvaluation:
    """Score every image of ``dataset`` and measure AUPR / FPR95 / AUROC (+ SMIYC components) per key.

    Args:
        score_fn: image uint8 [H, W, 3] -> {key: float [H, W]}; the same keys for every image.
        dataset: sequence of records with ``image``, ``ood`` (uint8 [H, W]) and ``name``.
        protocol: ``"pooled"`` or ``"per_image"`` / ``"per-image"`` (see :class:`OodMetrics`).
        protocols: several protocols at once (overrides ``protocol``); results in ``views``.
        regions: :data:`REGIONS` to read the labels in (default: the dataset's own layout); results in ``views``.
        mode: ``"hist"`` (bounded memory, default) or ``"exact"``.
        bins: histogram bins (``hist`` mode and plotting curves).
        limit: evaluate only the first ``limit`` images.
        gallery: number of gallery rows, spread evenly over the evaluated images.
        gallery_keys: keys drawn in the gallery (default: every method's first score).
        component_keys: keys that get SMIYC component metrics (default: every method's first score; ``()`` none).
        component_size_filters: (min_pred_area, min_gt_area) pixels, or None for the scaled obstacle-track values.
        progress: show a tqdm progress bar.

    ``metrics``, ``curves`` and the components belong to the first region and protocol.
    """
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be a positive number of images or None, got {limit}")
    if gallery < 0:
        raise ConfigError(f"gallery must be >= 0 images, got {gallery}")
    views = _check_views(protocol, protocols, regions)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise DatasetError("evaluate_ood: the dataset holds no images")
    show = set(gallery_indices(n, gallery))
    t_start = time.perf_counter()
    score_seconds = 0.0
    acc: _Accumulators | None = None
    comp_keys: list[str] = []
    draw: list[str] = []
    gallery_rows: list[GalleryItem] = []
    with tempfile.TemporaryDirectory(prefix="moose_eval_") as tmp:
        cache = Path(tmp)
        for i in progress_iter(range(n), n, desc, progress):
            sample = dataset[i]
            image, ood = np.asarray(sample.image), np.asarray(sample.ood)
            t0 = time.perf_counter()
            maps = dict(score_fn(image))
            score_seconds += time.perf_counter() - t0
            if acc is None:
                acc = _Accumulators(_first_keys(maps), views, mode, bins)
                firsts = _first_key_per_method(acc.keys)
                comp_keys = list(component_keys) if component_keys is not None else firsts
                draw = list(gallery_keys) if gallery_keys is not None else firsts
                for k in (*comp_keys, *draw):
                    if k not in maps:
                        raise ConfigError(f"evaluate_ood: key '{k}' is not among the score keys {acc.keys}")
            elif list(maps) != acc.keys:
                raise ConfigError(f"evaluate_ood: image {sample.name} gave keys {list(maps)}, expected {acc.keys}")
            acc.update(maps, ood, str(sample.name))
            main_ood = region_labels(ood, views[0][0])
            if comp_keys:
                np.save(cache / f"{i:06d}_ood.npy", main_ood)
            for j, k in enumerate(comp_keys):
                np.save(cache / f"{i:06d}_{j}.npy", np.asarray(maps[k], dtype=np.float16))
            if i in show:
                gallery_rows.append(render_gallery_item(image, ood, {k: maps[k] for k in draw}, str(sample.name)))
        assert acc is not None
        components = {k: _components_pass(acc.main[k], cache, j, n, component_size_filters, progress,
                                          f"{desc} components {k}") for j, k in enumerate(comp_keys)}
    return OodEvaluation(
        metrics={k: acc.main[k].compute() for k in acc.keys},
        views={v: {k: m.compute() for k, m in by_key.items()} for v, by_key in acc.by_view.items()},
        components=components,
        curves={k: acc.main[k].curves() for k in acc.keys},
        gallery=gallery_rows,
        num_images=n,
        seconds=time.perf_counter() - t_start,
        score_seconds=score_seconds,
    )


def _first_keys(maps: Mapping[str, np.ndarray]) -> list[str]:
    if not maps:
        raise ConfigError("evaluate_ood: score_fn returned no score map")
    return list(maps)


def _components_pass(
    pixel: OodMetrics,
    cache: Path,
    j: int,
    n: int,
    size_filters: tuple[int, int] | None,
    progress: bool,
    desc: str,
) -> dict[str, Any]:
    """SMIYC component metrics of one key at its best pooled pixel-F1 threshold (second pass over the cache)."""
    threshold, f1 = pixel.best_f1_threshold()
    if not np.isfinite(threshold):
        return {"valid": False, "note": "no anomaly pixels: no F1-optimal threshold", "threshold": None}
    mp, mg = size_filters if size_filters is not None else (None, None)
    comp = ComponentMetrics(float(np.float16(threshold)), min_pred_area=mp, min_gt_area=mg)
    for i in progress_iter(range(n), n, desc, progress):
        comp.update(np.load(cache / f"{i:06d}_{j}.npy"), np.load(cache / f"{i:06d}_ood.npy"))
    out = comp.compute()
    out.update(valid=True, note=None, pixel_f1=f1, threshold=float(threshold))
    return out
