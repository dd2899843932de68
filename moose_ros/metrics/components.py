"""SegmentMeIfYouCan component-level metrics: sIoU, PPV and mean F1 over connected components.

Per image (``ood``: uint8 [H, W], 1 = anomaly, 0 = in-distribution, 255 = void; ``pred``: bool [H, W]):

1. Predicted pixels on void are dropped. Ground-truth components = 8-connected components of ``ood == 1``;
   predicted components = 8-connected components of the remaining predicted pixels (``scipy.ndimage.label``
   with a 3x3 structure).
2. Size filters: predicted components smaller than ``min_pred_area`` pixels are removed; ground-truth components
   smaller than ``min_gt_area`` become void (region of interest = non-void pixels). Everything below counts
   inside the region of interest only.
3. sIoU of ground-truth component k: ``|k ∩ K̂| / |(k ∪ K̂) \\ A|`` with K̂ the union of the predicted components
   touching k and A the pixels of all *other* ground-truth components (so a prediction covering two nearby
   objects is not punished twice). Equivalently ``|k ∩ K̂| / (|k| + |K̂ ∩ in-distribution|)``.
4. PPV of predicted component k̂: the fraction of its pixels that lie on any ground-truth component.

Dataset level: mean sIoU over all ground-truth components, mean PPV over all predicted components, and for each
τ in 0.25, 0.30, ..., 0.75: TP = #{sIoU >= τ}, FN = #{sIoU < τ}, FP = #{PPV < τ}, F1 = 2TP / (2TP + FN + FP);
``f1_mean`` = mean over τ. Component counts are summed over images before the F1.

Pixel threshold: a pixel is predicted anomalous when score >= ``threshold``; the benchmark uses the threshold
that maximises pooled pixel-level F1 (:meth:`moose_ros.metrics.OodMetrics.best_f1_threshold`).

Size filters: the benchmark uses (predicted, ground truth) = (500, 100) pixels on its RoadAnomaly21 track and
(50, 10) on its RoadObstacle21 track, both for ~2 Mpx frames. Our defaults are the obstacle-track values (the
LostAndFound-style anomalies of this package are small obstacles on the road) scaled by image area relative to
2048x1024 and rounded, at least 1 pixel: the filters then remove the same fraction of the frame on smaller
images (256x512 -> 3 and 1 pixels). Pass explicit values to reproduce the benchmark at full resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from moose_ros.errors import ConfigError

__all__ = [
    "SIOU_THRESHOLDS",
    "SMIYC_ANOMALY_TRACK",
    "SMIYC_OBSTACLE_TRACK",
    "ComponentMetrics",
    "ImageComponents",
    "image_components",
    "scaled_size_filters",
]

#: τ values of the mean F1 (0.25 to 0.75, step 0.05).
SIOU_THRESHOLDS: tuple[float, ...] = tuple(round(0.25 + 0.05 * i, 2) for i in range(11))
#: (min_pred_area, min_gt_area) of the benchmark's tracks, pixels at ~2 Mpx.
SMIYC_ANOMALY_TRACK: tuple[int, int] = (500, 100)
SMIYC_OBSTACLE_TRACK: tuple[int, int] = (50, 10)
_REFERENCE_AREA = 2048 * 1024


def scaled_size_filters(shape: tuple[int, int], preset: tuple[int, int] = SMIYC_OBSTACLE_TRACK) -> tuple[int, int]:
    """(min_pred_area, min_gt_area) of ``preset`` scaled by H*W / (2048*1024), rounded, at least 1."""
    ratio = float(shape[0] * shape[1]) / _REFERENCE_AREA
    return max(1, round(preset[0] * ratio)), max(1, round(preset[1] * ratio))


@dataclass(frozen=True)
class ImageComponents:
    """Per-component values of one image.

    Attributes:
        siou: float64 [G], sIoU of each kept ground-truth component.
        gt_area: int64 [G], its pixel count.
        ppv: float64 [P], PPV of each kept predicted component (with >= 1 pixel in the region of interest).
        pred_area: int64 [P], its pixel count inside the region of interest.
    """

    siou: np.ndarray
    gt_area: np.ndarray
    ppv: np.ndarray
    pred_area: np.ndarray


def _label8(mask: np.ndarray) -> tuple[np.ndarray, int]:
    try:
        from scipy.ndimage import label
    except ImportError as err:  # pragma: no cover - scipy is a dependency of the metrics
        raise ConfigError("component metrics need scipy (pip install scipy)") from err
    lab, n = label(mask, structure=np.ones((3, 3), dtype=bool))
    return lab.astype(np.int64, copy=False), int(n)


def _drop_small(lab: np.ndarray, n: int, min_area: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Relabel so that components >= min_area become 1..k; returns (new labels, removed-mask lut, k)."""
    area = np.bincount(lab.reshape(-1), minlength=n + 1)
    keep = area >= min_area
    keep[0] = False
    lut = np.zeros(n + 1, dtype=np.int64)
    lut[keep] = np.arange(1, int(keep.sum()) + 1)
    removed = ~keep
    removed[0] = False
    return lut[lab], removed, int(keep.sum())


def image_components(
    pred: np.ndarray, ood: np.ndarray, min_pred_area: int = 1, min_gt_area: int = 1
) -> ImageComponents:
    """sIoU of every ground-truth component and PPV of every predicted component of one image.

    Args:
        pred: bool [H, W], predicted anomaly pixels.
        ood: uint8 [H, W], 1 = anomaly, 0 = in-distribution, 255 = void.
        min_pred_area, min_gt_area: size filters in pixels (see the module docstring).
    """
    pred = np.asarray(pred, dtype=bool)
    ood = np.asarray(ood)
    if pred.shape != ood.shape or pred.ndim != 2:
        raise ConfigError(f"image_components: pred {pred.shape} and ood {ood.shape} must be equal [H, W] shapes")
    void = ood == 255
    gt_raw, n_gt = _label8(ood == 1)
    pr_lab, n_pr = _label8(pred & ~void)
    pr_lab, _, k_pr = _drop_small(pr_lab, n_pr, min_pred_area)
    gt_lab, gt_small, k_gt = _drop_small(gt_raw, n_gt, min_gt_area)
    roi = ~void
    if gt_small.any():
        roi &= ~gt_small[gt_raw]
    g = gt_lab[roi]
    p = pr_lab[roi]
    cont = np.bincount(g * (k_pr + 1) + p, minlength=(k_gt + 1) * (k_pr + 1)).reshape(k_gt + 1, k_pr + 1)
    inter = cont[1:, 1:]  # [G, P] pixels of gt i covered by pred j
    gt_area = cont[1:].sum(axis=1)
    pred_area = cont[:, 1:].sum(axis=0)
    touching = inter > 0
    covered = inter.sum(axis=1)  # |k ∩ K̂|
    pred_on_background = (touching * cont[0, 1:][None, :]).sum(axis=1)  # |K̂ ∩ in-distribution|
    siou = covered / np.maximum(gt_area + pred_on_background, 1)
    has_pixels = pred_area > 0
    ppv = inter.sum(axis=0)[has_pixels] / pred_area[has_pixels]
    return ImageComponents(
        siou=siou.astype(np.float64),
        gt_area=gt_area.astype(np.int64),
        ppv=ppv.astype(np.float64),
        pred_area=pred_area[has_pixels].astype(np.int64),
    )


class ComponentMetrics:
    """Dataset accumulator of the SMIYC component metrics at one pixel threshold.

    Args:
        threshold: score threshold (score >= threshold = predicted anomaly).
        min_pred_area, min_gt_area: size filters in pixels; None = obstacle-track values scaled to each image's
            area (:func:`scaled_size_filters`).
        thresholds: τ values of the mean F1.
    """

    def __init__(
        self,
        threshold: float,
        min_pred_area: int | None = None,
        min_gt_area: int | None = None,
        thresholds: tuple[float, ...] = SIOU_THRESHOLDS,
    ) -> None:
        if not np.isfinite(threshold):
            raise ConfigError(f"ComponentMetrics: threshold must be a finite score, got {threshold!r}")
        for name, v in (("min_pred_area", min_pred_area), ("min_gt_area", min_gt_area)):
            if v is not None and (int(v) != v or v < 1):
                raise ConfigError(f"ComponentMetrics: {name} must be a positive integer or None, got {v!r}")
        self.threshold = float(threshold)
        self.min_pred_area = min_pred_area
        self.min_gt_area = min_gt_area
        self.thresholds = tuple(float(t) for t in thresholds)
        self.reset()

    def reset(self) -> None:
        """Forget all components."""
        self._siou: list[np.ndarray] = []
        self._ppv: list[np.ndarray] = []
        self.num_images = 0
        self._filters_used: set[tuple[int, int]] = set()

    def update(self, score: np.ndarray, ood: np.ndarray) -> None:
        """Add one image (score float [H, W], ood uint8 [H, W]) or a batch ([N, H, W] both)."""
        score = np.asarray(score)
        ood = np.asarray(ood)
        if score.shape != ood.shape or score.ndim not in (2, 3):
            raise ConfigError(f"ComponentMetrics.update: score {score.shape} and ood {ood.shape} must match, 2-D/3-D")
        if score.ndim == 2:
            score, ood = score[None], ood[None]
        for s, o in zip(score, ood, strict=True):
            auto = scaled_size_filters(s.shape)
            mp = self.min_pred_area if self.min_pred_area is not None else auto[0]
            mg = self.min_gt_area if self.min_gt_area is not None else auto[1]
            self._filters_used.add((int(mp), int(mg)))
            comp = image_components(s >= self.threshold, o, mp, mg)
            self._siou.append(comp.siou)
            self._ppv.append(comp.ppv)
            self.num_images += 1

    def compute(self) -> dict[str, Any]:
        """``{"siou", "ppv", "f1_mean", "f1_25", "f1_50", "f1_75", "f1_per_threshold", "num_gt_components",
        "num_pred_components", "threshold", "size_filters", "num_images"}``; nan where a mean has no term."""
        siou = np.concatenate(self._siou) if self._siou else np.zeros(0)
        ppv = np.concatenate(self._ppv) if self._ppv else np.zeros(0)
        f1s = []
        for t in self.thresholds:
            tp = int(np.count_nonzero(siou >= t))
            fn = siou.size - tp
            fp = int(np.count_nonzero(ppv < t))
            denom = 2 * tp + fn + fp
            f1s.append(2 * tp / denom if denom else float("nan"))
        f1 = np.asarray(f1s)

        def at(t: float) -> float:
            hits = [i for i, v in enumerate(self.thresholds) if abs(v - t) < 1e-9]
            return float(f1[hits[0]]) if hits else float("nan")

        return {
            "siou": float(siou.mean()) if siou.size else float("nan"),
            "ppv": float(ppv.mean()) if ppv.size else float("nan"),
            "f1_mean": float(np.nanmean(f1)) if not np.all(np.isnan(f1)) else float("nan"),
            "f1_25": at(0.25),
            "f1_50": at(0.50),
            "f1_75": at(0.75),
            "f1_per_threshold": {f"{t:.2f}": float(v) for t, v in zip(self.thresholds, f1, strict=True)},
            "num_gt_components": int(siou.size),
            "num_pred_components": int(ppv.size),
            "threshold": self.threshold,
            "size_filters": sorted(self._filters_used),
            "num_images": self.num_images,
        }
