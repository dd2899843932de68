"""Binary detection curves (PR / ROC) and their summaries, from raw scores or from score histograms.

Convention: higher score = more anomalous; label 1 (True) = anomaly = positive, 0 = in-distribution.

A :class:`Curve` holds, for each *distinct* threshold t in decreasing order, the cumulative number of positives
(``tps``) and negatives (``fps``) whose score is ``>= t``. Equal scores are one threshold (ties are grouped), so
every summary below equals scikit-learn's on the same data:

- :func:`average_precision` = ``sklearn.metrics.average_precision_score`` (step-wise, no interpolation):
  ``AP = sum_k (R_k - R_{k-1}) * P_k`` over thresholds k, with ``R_0 = 0``.
- :func:`auroc` = ``sklearn.metrics.roc_auc_score`` (trapezoids through (0, 0) and every threshold).
- :func:`fpr_at_tpr` = FPR at the first threshold, scanning from high to low score, whose TPR >= the target
  (no interpolation between thresholds).

Undefined values (no positives; no negatives for ROC quantities) are ``nan``, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moose_ros.errors import ConfigError

__all__ = [
    "Curve",
    "auroc",
    "average_precision",
    "best_f1_threshold",
    "curve_from_counts",
    "curve_from_scores",
    "fpr_at_tpr",
]


@dataclass(frozen=True)
class Curve:
    """Cumulative counts at distinct thresholds, highest threshold first.

    Attributes:
        thresholds: float64 [T], strictly decreasing; a pixel is "predicted anomalous" at t when score >= t.
        tps: int64 [T], non-decreasing, number of positives with score >= thresholds[k].
        fps: int64 [T], non-decreasing, number of negatives with score >= thresholds[k].
    """

    thresholds: np.ndarray
    tps: np.ndarray
    fps: np.ndarray

    @property
    def num_pos(self) -> int:
        """Total number of positives (anomaly pixels)."""
        return int(self.tps[-1]) if self.tps.size else 0

    @property
    def num_neg(self) -> int:
        """Total number of negatives (in-distribution pixels)."""
        return int(self.fps[-1]) if self.fps.size else 0

    def precision(self) -> np.ndarray:
        """float64 [T]: tps / (tps + fps); every threshold holds >= 1 sample, so it is always defined."""
        return self.tps / np.maximum(self.tps + self.fps, 1)

    def recall(self) -> np.ndarray:
        """float64 [T]: tps / num_pos (= TPR); nan when there are no positives."""
        return self.tps / self.num_pos if self.num_pos > 0 else np.full(self.tps.shape, np.nan)

    def fpr(self) -> np.ndarray:
        """float64 [T]: fps / num_neg; nan when there are no negatives."""
        return self.fps / self.num_neg if self.num_neg > 0 else np.full(self.fps.shape, np.nan)


def curve_from_counts(thresholds: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> Curve:
    """Curve from per-threshold counts given in *decreasing* threshold order.

    Args:
        thresholds: float [T] decreasing (e.g. histogram bin lower edges, top bin first).
        pos: int [T] number of positives whose score falls at threshold k (not cumulative).
        neg: int [T] number of negatives likewise.
    Entries with no samples are dropped (they are not distinct thresholds of the data).
    """
    pos = np.asarray(pos, dtype=np.int64)
    neg = np.asarray(neg, dtype=np.int64)
    keep = (pos + neg) > 0
    return Curve(
        thresholds=np.asarray(thresholds, dtype=np.float64)[keep],
        tps=np.cumsum(pos[keep]),
        fps=np.cumsum(neg[keep]),
    )


def curve_from_scores(scores: np.ndarray, labels: np.ndarray) -> Curve:
    """Exact curve from raw scores; equal scores form one threshold.

    Args:
        scores: float [P] (any shape, flattened), finite or +-inf, never nan.
        labels: bool or {0, 1} of the same size, True/1 = positive (anomaly).
    Cost: one sort, O(P log P) time and O(P) extra memory.
    """
    s = np.asarray(scores).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(bool, copy=False)
    if s.shape != y.shape:
        raise ConfigError(f"curve_from_scores: scores has {s.size} values but labels has {y.size}")
    if s.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Curve(np.zeros(0, dtype=np.float64), empty, empty)
    if np.issubdtype(s.dtype, np.floating) and np.isnan(s).any():
        raise ConfigError("curve_from_scores: scores contain nan; every valid pixel needs a real score")
    order = np.argsort(s, kind="stable")[::-1]
    s_sorted = s[order]
    y_sorted = y[order]
    # last index of each group of equal scores (the array is sorted decreasing)
    last = np.flatnonzero(s_sorted[1:] != s_sorted[:-1])  # not np.diff: inf - inf is nan
    last = np.append(last, s_sorted.size - 1)
    tps = np.cumsum(y_sorted, dtype=np.int64)[last]
    fps = (last + 1) - tps
    return Curve(thresholds=s_sorted[last].astype(np.float64), tps=tps, fps=fps.astype(np.int64))


def average_precision(curve: Curve) -> float:
    """Step-wise average precision (area under the PR curve, no interpolation); nan without positives."""
    if curve.num_pos == 0:
        return float("nan")
    recall = curve.recall()
    d_recall = np.diff(recall, prepend=0.0)
    return float(np.sum(d_recall * curve.precision()))


def auroc(curve: Curve) -> float:
    """Area under the ROC curve by trapezoids; nan without positives or without negatives."""
    if curve.num_pos == 0 or curve.num_neg == 0:
        return float("nan")
    tpr = np.concatenate(([0.0], curve.recall()))
    fpr = np.concatenate(([0.0], curve.fpr()))
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0)


def fpr_at_tpr(curve: Curve, tpr: float = 0.95) -> float:
    """FPR at the first threshold (high to low) where TPR >= ``tpr``; nan without positives or negatives."""
    if not 0.0 < tpr <= 1.0:
        raise ConfigError(f"fpr_at_tpr: tpr must be in (0, 1], got {tpr}")
    if curve.num_pos == 0 or curve.num_neg == 0:
        return float("nan")
    reached = curve.recall() >= tpr
    k = int(np.argmax(reached))  # recall ends at 1.0, so some entry is True
    return float(curve.fpr()[k])


def best_f1_threshold(curve: Curve) -> tuple[float, float]:
    """(threshold, F1) maximising pixel-level F1 = 2PR / (P + R); (nan, nan) without positives.

    "Predicted anomalous" means score >= threshold. Used by the SMIYC component metrics.
    """
    if curve.num_pos == 0:
        return float("nan"), float("nan")
    p = curve.precision()
    r = curve.recall()
    denom = p + r
    f1 = np.divide(2.0 * p * r, denom, out=np.zeros_like(denom), where=denom > 0)
    k = int(np.argmax(f1))
    return float(curve.thresholds[k]), float(f1[k])
