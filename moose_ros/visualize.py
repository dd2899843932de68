"""Colour for humans: segmentation palettes, colour maps and anomaly heatmap overlays (numpy only).

Everything here is a pure function of arrays. Shapes: images are uint8 [H, W, 3] RGB, label maps uint8 [H, W]
(train ids, 255 = void), score maps float32 [H, W] (higher = more anomalous).

Colour maps (:data:`COLORMAPS`) are 256-entry uint8 RGB look-up tables built in code by piecewise-linear
interpolation: ``jet`` from its classic ramp definition, ``turbo`` and ``inferno`` from 17 anchor colours sampled
evenly along the published maps (within 3.5 % of the reference tables at every entry).

Score normalisation for display (:func:`normalize_scores`): a raw score (max-logit, entropy, ...) has no fixed
range, so it is mapped to [0, 1] with a display range ``(lo, hi)``. In order of preference the range comes from
the caller (e.g. the node's ``score_range`` parameter), from the model's meta (``meta.extra["score_ranges"]
[<score>]`` = ``[lo, hi]``, written by the exporter from validation data) or, failing both, from robust
per-frame percentiles (1st and 99th, on a strided subsample so the cost stays ~1 ms at 2048x1024). Per-frame
ranges make every frame look "hot" somewhere, so a fixed range is preferable wherever one is known.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from moose_ros.errors import ConfigError

__all__ = [
    "COLORMAPS",
    "colorize_labels",
    "colormap",
    "display_range",
    "normalize_scores",
    "overlay_heatmap",
    "palette_lut",
    "scores_to_rgb",
    "threshold_mask",
]

# Anchor colours (RGB in [0, 1]) at 17 evenly spaced positions along each map.
_TURBO_ANCHORS = (
    (0.19, 0.07, 0.23), (0.25, 0.25, 0.63), (0.28, 0.42, 0.89), (0.26, 0.58, 1.00), (0.16, 0.74, 0.92),
    (0.09, 0.87, 0.76), (0.20, 0.95, 0.60), (0.43, 0.99, 0.39), (0.64, 0.99, 0.23), (0.81, 0.93, 0.21),
    (0.93, 0.81, 0.23), (0.99, 0.67, 0.20), (0.98, 0.49, 0.13), (0.92, 0.32, 0.06), (0.82, 0.19, 0.02),
    (0.66, 0.08, 0.00), (0.48, 0.02, 0.01),
)
_INFERNO_ANCHORS = (
    (0.00, 0.00, 0.01), (0.04, 0.03, 0.14), (0.13, 0.05, 0.29), (0.24, 0.04, 0.40), (0.34, 0.06, 0.43),
    (0.44, 0.10, 0.43), (0.54, 0.14, 0.42), (0.64, 0.17, 0.38), (0.74, 0.22, 0.33), (0.82, 0.28, 0.27),
    (0.89, 0.35, 0.19), (0.95, 0.45, 0.12), (0.98, 0.56, 0.04), (0.99, 0.68, 0.07), (0.98, 0.80, 0.21),
    (0.95, 0.92, 0.41), (0.99, 1.00, 0.65),
)


def _lut_from_anchors(anchors: Sequence[Sequence[float]]) -> np.ndarray:
    """Linear interpolation of K anchor colours to a uint8 [256, 3] table."""
    table = np.asarray(anchors, dtype=np.float64)
    positions = np.linspace(0.0, 1.0, len(table))
    x = np.linspace(0.0, 1.0, 256)
    channels = [np.interp(x, positions, table[:, c]) for c in range(3)]
    return np.clip(np.rint(np.stack(channels, axis=1) * 255.0), 0, 255).astype(np.uint8)


def _jet_lut() -> np.ndarray:
    """Classic jet: each channel a trapezoid ``clip(1.5 - |4x - k|)`` centred at k = 3 (red), 2 (green), 1 (blue)."""
    x = np.linspace(0.0, 1.0, 256)
    rgb = np.stack([np.clip(1.5 - np.abs(4.0 * x - k), 0.0, 1.0) for k in (3.0, 2.0, 1.0)], axis=1)
    return np.rint(rgb * 255.0).astype(np.uint8)


#: name -> uint8 [256, 3] RGB look-up table.
COLORMAPS: dict[str, np.ndarray] = {
    "turbo": _lut_from_anchors(_TURBO_ANCHORS),
    "inferno": _lut_from_anchors(_INFERNO_ANCHORS),
    "jet": _jet_lut(),
}
for _lut in COLORMAPS.values():
    _lut.setflags(write=False)


def colormap(name: str) -> np.ndarray:
    """The uint8 [256, 3] RGB table of colour map ``name`` (one of :data:`COLORMAPS`)."""
    try:
        return COLORMAPS[name]
    except KeyError:
        raise ConfigError(f"colormap '{name}' is unknown; allowed: {', '.join(sorted(COLORMAPS))}") from None


def palette_lut(colors: Sequence[Sequence[int]]) -> np.ndarray:
    """A uint8 [256, 3] table: entry i = ``colors[i]`` for the C classes, black for every other id (255 = void)."""
    if len(colors) > 255:
        raise ConfigError(f"palette has {len(colors)} colours; at most 255 classes fit uint8 labels with void 255")
    lut = np.zeros((256, 3), dtype=np.uint8)
    if len(colors):
        lut[: len(colors)] = np.asarray(colors, dtype=np.int64).reshape(-1, 3).clip(0, 255)
    return lut


def colorize_labels(labels: np.ndarray, colors: Sequence[Sequence[int]] | np.ndarray) -> np.ndarray:
    """Label map uint8 [H, W] -> RGB uint8 [H, W, 3] with the checkpoint palette (ids without colour -> black).

    ``colors`` is a list of C RGB triplets or a prebuilt [256, 3] table from :func:`palette_lut`.
    """
    lut = colors if isinstance(colors, np.ndarray) and colors.shape == (256, 3) else palette_lut(colors)
    return np.take(lut, np.asarray(labels, dtype=np.uint8), axis=0)  # np.take: ~4x faster than lut[labels]


def display_range(
    score_name: str, extra: Mapping[str, Any] | None = None, override: Sequence[float] | None = None
) -> tuple[float, float] | None:
    """The fixed display range for a score, or None when the caller should use per-frame percentiles.

    Args:
        score_name: e.g. ``"max_logit"``.
        extra: ``ModelMeta.extra``; ``extra["score_ranges"][score_name]`` = ``[lo, hi]`` is used when present.
        override: ``(lo, hi)`` from the user; wins when ``hi > lo``.
    """
    if override is not None and len(override) == 2 and float(override[1]) > float(override[0]):
        return float(override[0]), float(override[1])
    ranges = (extra or {}).get("score_ranges") or {}
    pair = ranges.get(score_name) if isinstance(ranges, Mapping) else None
    if pair is not None and len(pair) == 2 and float(pair[1]) > float(pair[0]):
        return float(pair[0]), float(pair[1])
    return None


def normalize_scores(
    scores: np.ndarray,
    value_range: tuple[float, float] | None = None,
    *,
    percentiles: tuple[float, float] = (1.0, 99.0),
    max_samples: int = 65536,
) -> np.ndarray:
    """Raw scores float [H, W] -> float32 [H, W] in [0, 1] for display.

    ``value_range`` = (lo, hi) maps lo -> 0 and hi -> 1 (clipped). Without it, lo/hi are the given percentiles
    of the finite scores of this frame, estimated on a strided subsample of at most ``max_samples`` pixels.
    Non-finite scores map to 0; a constant frame maps to 0 everywhere.
    """
    scores = np.asarray(scores, dtype=np.float32)
    if value_range is None:
        stride = max(1, int(np.sqrt(scores.size / max(1, max_samples))))
        sample = scores[::stride, ::stride] if scores.ndim == 2 else scores.reshape(-1)[::stride]
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            return np.zeros(scores.shape, dtype=np.float32)
        lo, hi = (float(v) for v in np.percentile(sample, percentiles))
    else:
        lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        return np.zeros(scores.shape, dtype=np.float32)
    out = scores - np.float32(lo)
    out *= np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return out


def scores_to_rgb(normalized: np.ndarray, cmap: str | np.ndarray = "turbo") -> np.ndarray:
    """Scores in [0, 1] float [H, W] -> RGB uint8 [H, W, 3] through a colour map (name or [256, 3] table)."""
    lut = colormap(cmap) if isinstance(cmap, str) else cmap
    scaled = np.asarray(normalized, dtype=np.float32) * np.float32(255.0)
    scaled += np.float32(0.5)
    np.clip(scaled, 0.0, 255.0, out=scaled)
    return np.take(lut, scaled.astype(np.uint8), axis=0)


def overlay_heatmap(
    image: np.ndarray,
    normalized: np.ndarray,
    *,
    alpha: float = 0.5,
    cmap: str | np.ndarray = "turbo",
) -> np.ndarray:
    """Blend a heatmap over an image: ``(1 - alpha) * image + alpha * cmap(normalized)``.

    Args:
        image: uint8 [H, W, 3] RGB.
        normalized: float [H, W] in [0, 1] (see :func:`normalize_scores`).
        alpha: heatmap weight in [0, 1]; 0 returns the image, 1 the heatmap.
        cmap: colour map name or uint8 [256, 3] table.

    Returns:
        uint8 [H, W, 3] RGB (integer blend, at most 1 level off the exact float result).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"overlay alpha {alpha} is outside [0, 1]")
    if image.shape[:2] != normalized.shape[:2]:
        raise ConfigError(f"image {image.shape[:2]} and score map {normalized.shape[:2]} differ in size")
    heat = scores_to_rgb(normalized, cmap)
    weight = round(alpha * 256.0)
    if weight == 0:
        return np.array(image, dtype=np.uint8, copy=True)
    if weight == 256:
        return heat
    blended = image.astype(np.uint16)  # in-place integer passes: ~15 ms for 2048x1024 on a slow core
    blended *= np.uint16(256 - weight)
    weighted = heat.astype(np.uint16)
    weighted *= np.uint16(weight)
    blended += weighted
    blended += np.uint16(128)
    blended >>= np.uint16(8)
    return blended.astype(np.uint8)


def threshold_mask(scores: np.ndarray, threshold: float) -> np.ndarray:
    """uint8 [H, W]: 255 where ``scores > threshold`` (anomalous), else 0; compared in the scores' float type."""
    scores = np.asarray(scores)
    mask = scores > scores.dtype.type(threshold)
    return mask.view(np.uint8) * np.uint8(255)
