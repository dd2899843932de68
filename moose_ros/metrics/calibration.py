"""Calibration (ECE) and head diversity (mutual information, variance) for the paper's Table 4 analysis.

Both accumulators take the per-head class probabilities of one image, float [M, C, H, W] (M heads: the global
head first, then the probes; a single [C, H, W] array means M = 1), and a ground-truth label map uint8 [H, W]
(train ids, ``ignore_index`` = not counted). The predictive distribution is the mean over heads.

ECE (Guo et al. 2017): ``num_bins`` equal-width confidence bins over (0, 1]; confidence = max over classes of the
mean probability, correct = (argmax == label); ``ECE = sum_b (n_b / n) * |acc_b - conf_b|`` over valid pixels.

Diversity: mean over valid pixels of the mutual information between head and prediction (nats, the MOoSe score,
computed by :func:`moose_ros.scoring.mutual_information`), and mean over valid pixels and classes of the
variance across heads of the class probability (population variance, ``1/M``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moose_ros.errors import ConfigError
from moose_ros.scoring import mutual_information

__all__ = ["CalibrationMetrics", "HeadDiversity"]

_EPS = 1e-12


def _heads_and_mask(
    probs: np.ndarray, label: np.ndarray | None, ignore_index: int | None, who: str
) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs)
    if probs.ndim == 3:
        probs = probs[None]
    if probs.ndim != 4:
        raise ConfigError(f"{who}: probs must be [M, C, H, W] or [C, H, W], got shape {probs.shape}")
    if not np.issubdtype(probs.dtype, np.floating):
        raise ConfigError(f"{who}: probs must be floating point, got {probs.dtype}")
    h, w = probs.shape[2:]
    if label is None:
        return probs, np.ones((h, w), dtype=bool)
    label = np.asarray(label)
    if label.shape != (h, w):
        raise ConfigError(f"{who}: label shape {label.shape} does not match probs spatial shape {(h, w)}")
    mask = label != ignore_index if ignore_index is not None else np.ones((h, w), dtype=bool)
    return probs, mask


class CalibrationMetrics:
    """Expected calibration error of the mean-over-heads prediction.

    Args:
        num_bins: confidence bins (default 15).
        ignore_index: label value never counted (default 255).
    """

    def __init__(self, num_bins: int = 15, ignore_index: int | None = 255) -> None:
        if int(num_bins) != num_bins or num_bins < 1:
            raise ConfigError(f"CalibrationMetrics: num_bins must be a positive integer, got {num_bins!r}")
        self.num_bins = int(num_bins)
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        """Zero the bins."""
        self.count = np.zeros(self.num_bins, dtype=np.int64)
        self.sum_conf = np.zeros(self.num_bins, dtype=np.float64)
        self.sum_correct = np.zeros(self.num_bins, dtype=np.float64)

    def update(self, probs: np.ndarray, label: np.ndarray) -> None:
        """Add one image: probs float [M, C, H, W] (or [C, H, W]), label integer [H, W]."""
        probs, mask = _heads_and_mask(probs, label, self.ignore_index, "CalibrationMetrics.update")
        p = probs.mean(axis=0)[:, mask]  # [C, P]
        if p.shape[1] == 0:
            return
        conf = p.max(axis=0).astype(np.float64)
        correct = (p.argmax(axis=0) == np.asarray(label)[mask]).astype(np.float64)
        # bin b holds confidences in (b/B, (b+1)/B]; confidence 0 (impossible for a distribution) goes to bin 0
        edges = np.linspace(0.0, 1.0, self.num_bins + 1)
        b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, self.num_bins - 1)
        self.count += np.bincount(b, minlength=self.num_bins)
        self.sum_conf += np.bincount(b, weights=conf, minlength=self.num_bins)
        self.sum_correct += np.bincount(b, weights=correct, minlength=self.num_bins)

    def compute(self) -> dict[str, Any]:
        """``{"ece", "accuracy", "confidence", "num_pixels", "bins"}``; ``bins``: per-bin count/acc/conf lists."""
        n = int(self.count.sum())
        nz = self.count > 0
        acc = np.divide(self.sum_correct, self.count, out=np.full(self.num_bins, np.nan), where=nz)
        conf = np.divide(self.sum_conf, self.count, out=np.full(self.num_bins, np.nan), where=nz)
        ece = float(np.sum(self.count[nz] / n * np.abs(acc[nz] - conf[nz]))) if n else float("nan")
        return {
            "ece": ece,
            "accuracy": float(self.sum_correct.sum() / n) if n else float("nan"),
            "confidence": float(self.sum_conf.sum() / n) if n else float("nan"),
            "num_pixels": n,
            "bins": {"count": self.count.tolist(), "accuracy": acc.tolist(), "confidence": conf.tolist()},
        }


class HeadDiversity:
    """Mean mutual information and mean per-pixel head variance over valid pixels.

    Args:
        ignore_index: label value never counted (default 255); labels are optional in :meth:`update`.
    """

    def __init__(self, ignore_index: int | None = 255) -> None:
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        """Zero the sums."""
        self.num_pixels = 0
        self.sum_mi = 0.0
        self.sum_var = 0.0
        self.num_heads: int | None = None

    def update(self, probs: np.ndarray, label: np.ndarray | None = None) -> None:
        """Add one image: probs float [M, C, H, W], optional label [H, W] masking ``ignore_index`` pixels."""
        probs, mask = _heads_and_mask(probs, label, self.ignore_index, "HeadDiversity.update")
        self.num_heads = probs.shape[0]
        n = int(np.count_nonzero(mask))
        if n == 0:
            return
        # probabilities as logits (log p): softmax(log p) == p, so the shared scoring code gives the MI
        heads = [np.log(np.maximum(probs[m], _EPS))[None].astype(np.float64) for m in range(probs.shape[0])]
        mi = mutual_information(heads)[0]  # [H, W]
        var = probs.astype(np.float64).var(axis=0).mean(axis=0)  # [H, W]
        self.sum_mi += float(mi[mask].sum())
        self.sum_var += float(var[mask].sum())
        self.num_pixels += n

    def compute(self) -> dict[str, Any]:
        """``{"mutual_information" (nats), "variance", "num_pixels", "num_heads"}``; nan before any pixel."""
        n = self.num_pixels
        return {
            "mutual_information": self.sum_mi / n if n else float("nan"),
            "variance": self.sum_var / n if n else float("nan"),
            "num_pixels": n,
            "num_heads": self.num_heads,
        }
