"""Pixel-level OoD detection metrics as a streaming accumulator: AUPR, FPR at 95 % TPR, AUROC.

Protocols (named in every result):

- ``pooled``: one curve over all valid pixels of the dataset (SegmentMeIfYouCan, Fishyscapes).
- ``per_image``: the metrics of each image, then their mean (StreetHazards / CAOS, the MOoSe paper). Images
  without anomaly pixels are skipped (counted in ``num_images_skipped``); an image without in-distribution
  pixels has an AUPR (1.0) but no AUROC / FPR95, so those means run over the images where they are defined.

Modes:

- ``exact``: identical to scikit-learn (ties grouped). ``pooled`` keeps every valid score (float, as given) and
  label (1 byte) in memory until :meth:`OodMetrics.compute` — about 5 bytes per pixel for float32 scores, i.e.
  ~10 MB per 2048x1024 image; ``per_image`` sorts each image on arrival and keeps only its three numbers.
- ``hist``: bounded memory (see :mod:`moose_ros.metrics.histogram`): 2**17 bins by default, values equal to the
  exact metrics of the bin-quantised scores; ``bin_width`` in the result is the resolution.

Labels: ``ood`` uint8, 1 = anomaly (positive), 0 = in-distribution, 255 = void (never counted). Scores: float,
higher = more anomalous. Both protocols also keep a pooled histogram for :meth:`OodMetrics.curves` (plots).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moose_ros.errors import ConfigError
from moose_ros.metrics.curves import (
    Curve,
    auroc,
    average_precision,
    best_f1_threshold,
    curve_from_scores,
    fpr_at_tpr,
)
from moose_ros.metrics.histogram import DEFAULT_BINS, ScoreHistogram

__all__ = ["OOD_VOID", "PROTOCOLS", "OodMetrics", "summarize_curve"]

PROTOCOLS: tuple[str, ...] = ("pooled", "per_image")
MODES: tuple[str, ...] = ("exact", "hist")
#: Label value of void / ignore pixels in ``ood`` maps.
OOD_VOID = 255


def summarize_curve(curve: Curve) -> dict[str, float]:
    """``{"aupr", "fpr95", "auroc"}`` of one curve (fractions in [0, 1]; nan where undefined)."""
    return {"aupr": average_precision(curve), "fpr95": fpr_at_tpr(curve, 0.95), "auroc": auroc(curve)}


def _check_pair(score: np.ndarray, ood: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    score = np.asarray(score)
    ood = np.asarray(ood)
    if score.shape != ood.shape:
        raise ConfigError(f"OodMetrics.update: score shape {score.shape} differs from ood shape {ood.shape}")
    if score.ndim not in (2, 3):
        raise ConfigError(f"OodMetrics.update: expected [H, W] or [N, H, W] maps, got shape {score.shape}")
    if not np.issubdtype(score.dtype, np.floating):
        raise ConfigError(f"OodMetrics.update: score must be a float array, got dtype {score.dtype}")
    if ood.dtype != np.uint8:
        raise ConfigError(f"OodMetrics.update: ood must be uint8 (0, 1, 255 = void), got dtype {ood.dtype}")
    n_bad = int(np.count_nonzero(ood > 1)) - int(np.count_nonzero(ood == OOD_VOID))
    if n_bad:
        raise ConfigError(f"OodMetrics.update: ood holds {n_bad} values other than 0, 1 and {OOD_VOID} (void)")
    if score.ndim == 2:
        return score[None], ood[None]
    return score, ood


class OodMetrics:
    """Streaming AUPR / FPR95 / AUROC accumulator (``update`` / ``compute`` / ``reset`` / ``curves``).

    Args:
        protocol: ``"pooled"`` or ``"per_image"`` (``"per-image"`` accepted).
        mode: ``"exact"`` or ``"hist"``.
        bins: number of histogram bins (even); used by ``hist`` mode and by the plotting curves.
        score_range: fixed (lo, hi) histogram range, or None to learn it (doubling as needed).
    """

    def __init__(
        self,
        protocol: str = "pooled",
        mode: str = "exact",
        bins: int = DEFAULT_BINS,
        score_range: tuple[float, float] | None = None,
    ) -> None:
        protocol = protocol.replace("-", "_")
        if protocol not in PROTOCOLS:
            raise ConfigError(f"OodMetrics: protocol '{protocol}' is unknown; allowed: {', '.join(PROTOCOLS)}")
        if mode not in MODES:
            raise ConfigError(f"OodMetrics: mode '{mode}' is unknown; allowed: {', '.join(MODES)}")
        self.protocol = protocol
        self.mode = mode
        self.hist = ScoreHistogram(bins, score_range)
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self.hist.reset()
        self._scores: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._per_image: list[tuple[float, float, float]] = []
        self.num_images = 0
        self.num_images_skipped = 0
        self.num_pixels = 0
        self.num_anomaly_pixels = 0
        self._curve_cache: Curve | None = None

    def update(self, score: np.ndarray, ood: np.ndarray) -> None:
        """Add one image (float [H, W]) or a batch (float [N, H, W]) with its ``ood`` map (uint8, same shape)."""
        scores, oods = _check_pair(score, ood)
        self._curve_cache = None
        for s, o in zip(scores, oods, strict=True):
            self._update_one(s, o)

    def _update_one(self, score: np.ndarray, ood: np.ndarray) -> None:
        valid = ood != OOD_VOID
        s = score[valid]
        y = ood[valid].view(np.bool_)  # values are 0/1 here
        n_pos = int(np.count_nonzero(y))
        self.num_images += 1
        self.num_pixels += int(s.size)
        self.num_anomaly_pixels += n_pos
        batch = None
        if s.size and (self.mode == "hist" or self.protocol == "per_image"):
            batch = self.hist.counts_of(s, y)  # raises a clear error for non-finite scores
            self.hist.counts += batch
        elif s.size and np.isnan(s).any():
            raise ConfigError("OodMetrics.update: score holds nan on valid pixels")
        if self.protocol == "pooled":
            if self.mode == "exact" and s.size:
                self._scores.append(s)
                self._labels.append(y)
            return
        if n_pos == 0:
            self.num_images_skipped += 1
            return
        curve = curve_from_scores(s, y) if self.mode == "exact" else self.hist.curve(batch)
        m = summarize_curve(curve)
        self._per_image.append((m["aupr"], m["fpr95"], m["auroc"]))

    def _pooled_curve(self) -> Curve:
        if self._curve_cache is None:
            self._curve_cache = self._build_pooled_curve()
        return self._curve_cache

    def _build_pooled_curve(self) -> Curve:
        if self.mode == "exact":
            if not self._scores:
                return curve_from_scores(np.zeros(0), np.zeros(0, bool))
            return curve_from_scores(np.concatenate(self._scores), np.concatenate(self._labels))
        return self.hist.curve()

    def compute(self) -> dict[str, Any]:
        """Result dict with fixed keys.

        ``aupr``, ``fpr95``, ``auroc``: fractions in [0, 1] (nan when undefined, then ``valid`` is False and
        ``note`` says why); ``aupr_std``, ``fpr95_std``, ``auroc_std``: spread over images (``per_image``; nan
        for ``pooled``); ``protocol``, ``mode``, ``num_images``, ``num_images_used`` (scored images),
        ``num_images_skipped`` (per-image: no anomaly pixel), ``num_pixels`` (valid), ``num_anomaly_pixels``,
        ``bin_width`` (hist mode resolution, else nan), ``num_clipped`` (scores outside a fixed range), ``valid``,
        ``note``.
        """
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "mode": self.mode,
            "num_images": self.num_images,
            "num_images_used": 0,
            "num_images_skipped": self.num_images_skipped,
            "num_pixels": self.num_pixels,
            "num_anomaly_pixels": self.num_anomaly_pixels,
            "bin_width": float(self.hist.width) if self.mode == "hist" else float("nan"),
            "num_clipped": int(self.hist.num_clipped),
            "aupr_std": float("nan"),
            "fpr95_std": float("nan"),
            "auroc_std": float("nan"),
            "valid": True,
            "note": None,
        }
        if self.protocol == "pooled":
            out.update(summarize_curve(self._pooled_curve()))
            out["num_images_used"] = self.num_images
            if self.num_anomaly_pixels == 0:
                out["valid"], out["note"] = False, "no anomaly pixels: AUPR, FPR95 and AUROC are undefined"
            elif self.num_pixels == self.num_anomaly_pixels:
                out["valid"], out["note"] = False, "no in-distribution pixels: FPR95 and AUROC are undefined"
            return out
        out["num_images_used"] = len(self._per_image)
        if not self._per_image:
            out.update(aupr=float("nan"), fpr95=float("nan"), auroc=float("nan"))
            out["valid"], out["note"] = False, "no image holds anomaly pixels: per-image metrics are undefined"
            return out
        table = np.asarray(self._per_image, dtype=np.float64)
        for j, key in enumerate(("aupr", "fpr95", "auroc")):
            col = table[:, j][~np.isnan(table[:, j])]
            out[key] = float(col.mean()) if col.size else float("nan")
            out[f"{key}_std"] = float(col.std()) if col.size else float("nan")
        if np.isnan(table).any():
            out["note"] = "some images hold no in-distribution pixel: FPR95/AUROC averaged over the others"
        return out

    def per_image(self) -> np.ndarray:
        """float64 [I, 3]: (aupr, fpr95, auroc) of each scored image (``per_image`` protocol; empty otherwise)."""
        return np.asarray(self._per_image, dtype=np.float64).reshape(-1, 3)

    def curve(self) -> Curve:
        """Pooled curve for plots: exact for pooled/exact, else from the histogram."""
        if self.protocol == "pooled" and self.mode == "exact":
            return self._pooled_curve()
        return self.hist.curve()

    def curves(self) -> dict[str, np.ndarray]:
        """Pooled PR and ROC curve arrays (float64, thresholds decreasing) for plotting.

        Keys: ``thresholds``, ``precision``, ``recall``, ``fpr``, ``tpr`` (all [T]). For the ``per_image``
        protocol these are pooled over the dataset from the histogram (the per-image mean has no single curve).
        """
        c = self.curve()
        return {
            "thresholds": c.thresholds,
            "precision": c.precision(),
            "recall": c.recall(),
            "fpr": c.fpr(),
            "tpr": c.recall(),
        }

    def best_f1_threshold(self) -> tuple[float, float]:
        """(score threshold, F1) maximising pooled pixel F1 (score >= threshold = anomalous)."""
        return best_f1_threshold(self.curve())
