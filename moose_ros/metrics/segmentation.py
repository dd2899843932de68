"""Semantic segmentation metrics from a streaming confusion matrix: mIoU, per-class IoU, pixel accuracy.

mIoU convention: the mean of the IoUs of the classes that occur in the ground truth *or* in the predictions of
the evaluated pixels (union > 0). A class absent from both has no IoU (nan in ``iou_per_class``) and does not
count, so a small evaluation set that never shows, say, "train" is not pulled down by it; a class that is only
ever predicted (never in the ground truth) counts with IoU 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moose_ros.errors import ConfigError

__all__ = ["SegmentationMetrics"]


class SegmentationMetrics:
    """Confusion-matrix accumulator.

    Args:
        num_classes: C, number of classes (train ids 0 .. C-1).
        ignore_index: ground-truth value never counted (default 255); None counts everything.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        if int(num_classes) != num_classes or num_classes < 1:
            raise ConfigError(f"SegmentationMetrics: num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        """Zero the confusion matrix."""
        #: int64 [C, C]: rows = ground truth, columns = prediction.
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, label: np.ndarray) -> None:
        """Add predictions and labels, integer arrays of the same shape ([H, W] or [N, H, W]).

        Label pixels equal to ``ignore_index`` are skipped; any other label or prediction outside [0, C) raises.
        """
        pred = np.asarray(pred)
        label = np.asarray(label)
        if pred.shape != label.shape:
            raise ConfigError(f"SegmentationMetrics.update: pred shape {pred.shape} != label shape {label.shape}")
        if not (np.issubdtype(pred.dtype, np.integer) and np.issubdtype(label.dtype, np.integer)):
            raise ConfigError(
                f"SegmentationMetrics.update: pred and label must be integer arrays, got {pred.dtype}, {label.dtype}"
            )
        if self.ignore_index is not None:
            keep = label != self.ignore_index
            pred, label = pred[keep], label[keep]
        else:
            pred, label = pred.reshape(-1), label.reshape(-1)
        if label.size == 0:
            return
        c = self.num_classes
        for name, arr in (("label", label), ("pred", pred)):
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi >= c:
                raise ConfigError(
                    f"SegmentationMetrics.update: {name} values must be in [0, {c - 1}]"
                    f" (or ignore_index={self.ignore_index}), found range [{lo}, {hi}]"
                )
        idx = label.astype(np.int64) * c + pred.astype(np.int64)
        self.confusion += np.bincount(idx, minlength=c * c).reshape(c, c)

    def compute(self) -> dict[str, Any]:
        """``{"miou", "iou_per_class", "pixel_acc", "num_pixels", "classes_counted"}``.

        ``miou``/``pixel_acc``: floats in [0, 1] (nan before any pixel); ``iou_per_class``: list of C floats (nan
        for classes absent from ground truth and predictions); ``classes_counted``: ids that enter the mean.
        """
        cm = self.confusion
        tp = np.diag(cm).astype(np.float64)
        union = cm.sum(0) + cm.sum(1) - np.diag(cm)
        iou = np.divide(tp, union, out=np.full(self.num_classes, np.nan), where=union > 0)
        present = union > 0
        total = int(cm.sum())
        return {
            "miou": float(iou[present].mean()) if present.any() else float("nan"),
            "iou_per_class": [float(v) for v in iou],
            "pixel_acc": float(tp.sum() / total) if total else float("nan"),
            "num_pixels": total,
            "classes_counted": [int(i) for i in np.flatnonzero(present)],
        }
