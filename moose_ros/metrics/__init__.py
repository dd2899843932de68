"""Evaluation metrics (numpy only; importing this package imports neither torch nor rclpy).

- :class:`OodMetrics`: pixel-level AUPR / FPR95 / AUROC, ``pooled`` or ``per_image`` protocol, ``exact``
  (scikit-learn identical) or ``hist`` (bounded memory) mode; curves for plots.
- :class:`SegmentationMetrics`: confusion-matrix mIoU, per-class IoU, pixel accuracy.
- :class:`ComponentMetrics`: SegmentMeIfYouCan sIoU / PPV / mean F1 over 8-connected components (scipy).
- :class:`CalibrationMetrics` (ECE) and :class:`HeadDiversity` (mutual information, head variance).
- :mod:`moose_ros.metrics.curves`: PR / ROC curve functions.
"""

from __future__ import annotations

from moose_ros.metrics.calibration import CalibrationMetrics, HeadDiversity
from moose_ros.metrics.components import (
    SIOU_THRESHOLDS,
    SMIYC_ANOMALY_TRACK,
    SMIYC_OBSTACLE_TRACK,
    ComponentMetrics,
    image_components,
    scaled_size_filters,
)
from moose_ros.metrics.curves import (
    Curve,
    auroc,
    average_precision,
    best_f1_threshold,
    curve_from_counts,
    curve_from_scores,
    fpr_at_tpr,
)
from moose_ros.metrics.histogram import DEFAULT_BINS, ScoreHistogram
from moose_ros.metrics.ood import OOD_VOID, PROTOCOLS, OodMetrics, summarize_curve
from moose_ros.metrics.segmentation import SegmentationMetrics

__all__ = [
    "DEFAULT_BINS",
    "OOD_VOID",
    "PROTOCOLS",
    "SIOU_THRESHOLDS",
    "SMIYC_ANOMALY_TRACK",
    "SMIYC_OBSTACLE_TRACK",
    "CalibrationMetrics",
    "ComponentMetrics",
    "Curve",
    "HeadDiversity",
    "OodMetrics",
    "ScoreHistogram",
    "SegmentationMetrics",
    "auroc",
    "average_precision",
    "best_f1_threshold",
    "curve_from_counts",
    "curve_from_scores",
    "fpr_at_tpr",
    "image_components",
    "scaled_size_filters",
    "summarize_curve",
]
