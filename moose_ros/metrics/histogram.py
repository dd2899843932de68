"""Bounded-memory score histogram split by label, for streaming PR / ROC curves.

``bins`` equal-width bins over ``[lo, lo + bins * width)``; each bin holds the number of negatives and positives
whose score falls in it. Memory is ``bins * 2 * 8`` bytes whatever the dataset size (2**17 bins: 2 MiB).

Range: given (``score_range=(lo, hi)``: fixed; scores outside are clipped into the first / last bin and counted
in :attr:`ScoreHistogram.num_clipped`) or learned (``score_range=None``: the first batch sets the range with a
50 % margin; a later score outside it doubles the bin width, merging neighbouring bin pairs, until it fits —
exact, no sample is ever re-binned, and the resolution only coarsens by powers of two).

Resolution: a curve built from the histogram equals the exact curve of the scores *quantised to their bin*; AUPR
/ AUROC / FPR95 therefore differ from the exact values only through pairs of pixels whose scores are less than
one bin width apart (:attr:`ScoreHistogram.width`, reported as ``bin_width``). Binning arithmetic runs in the
scores' own float type (float32 maps values within ~1e-7 * bins of a bin edge to either neighbour).
"""

from __future__ import annotations

import numpy as np

from moose_ros.errors import ConfigError
from moose_ros.metrics.curves import Curve, curve_from_counts

__all__ = ["DEFAULT_BINS", "ScoreHistogram"]

#: Default number of bins (even, so that range doubling can merge pairs).
DEFAULT_BINS = 1 << 17


class ScoreHistogram:
    """Counts of (score bin, label) pairs with a fixed or learned range.

    Args:
        bins: even number of bins, >= 2.
        score_range: (lo, hi) with lo < hi, or None to learn it from the data.
    """

    def __init__(self, bins: int = DEFAULT_BINS, score_range: tuple[float, float] | None = None) -> None:
        if int(bins) != bins or bins < 2 or bins % 2 or bins > 1 << 29:
            raise ConfigError(f"histogram bins must be an even integer in [2, 2**29], got {bins!r}")
        self.bins = int(bins)
        self.fixed = score_range is not None
        self._init_range = score_range
        if score_range is not None:
            lo, hi = (float(v) for v in score_range)
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise ConfigError(f"score_range must be finite (lo, hi) with lo < hi, got {score_range!r}")
        self.reset()

    def reset(self) -> None:
        """Forget all counts (a learned range is forgotten too)."""
        self.counts = np.zeros((self.bins, 2), dtype=np.int64)  # [:, 0] negatives, [:, 1] positives
        self.num_clipped = 0
        if self._init_range is not None:
            lo, hi = (float(v) for v in self._init_range)
            self.lo, self.width = lo, (hi - lo) / self.bins
        else:
            self.lo, self.width = float("nan"), float("nan")

    @property
    def hi(self) -> float:
        """Upper edge of the last bin."""
        return self.lo + self.bins * self.width

    @property
    def initialised(self) -> bool:
        """True once the range is known (given, or learned from a first non-empty batch)."""
        return bool(np.isfinite(self.lo))

    def _learn(self, vmin: float, vmax: float) -> None:
        span = vmax - vmin
        if span <= 0.0:
            span = max(abs(vmin), 1.0) * 1e-3
        self.lo = vmin - 0.25 * span
        self.width = 1.5 * span / self.bins

    def _grow(self, vmin: float, vmax: float) -> None:
        half = self.bins // 2
        while vmin < self.lo or vmax >= self.hi:
            merged = self.counts.reshape(half, 2, 2).sum(axis=1)
            self.counts = np.zeros_like(self.counts)
            if vmin < self.lo:  # extend downwards: the old range becomes the upper half
                self.counts[half:] = merged
                self.lo -= self.bins * self.width
            else:  # extend upwards: the old range becomes the lower half
                self.counts[:half] = merged
            self.width *= 2.0

    def bin_index(self, scores: np.ndarray) -> np.ndarray:
        """int32 [P]: bin of each score (clipped into [0, bins - 1]); float arithmetic in the scores' dtype."""
        dtype = scores.dtype if scores.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        x = np.subtract(scores, dtype.type(self.lo), dtype=dtype)
        x *= dtype.type(1.0 / self.width)
        np.clip(x, 0, self.bins - 1, out=x)
        return x.astype(np.int32)

    def counts_of(self, scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
        """int64 [bins, 2] counts of one batch (without adding them), after updating the range.

        Args:
            scores: float [P] valid-pixel scores (1-D), never nan.
            positive: bool or uint8 {0, 1} [P].
        """
        if scores.size == 0:
            return np.zeros((self.bins, 2), dtype=np.int64)
        vmin, vmax = float(scores.min()), float(scores.max())
        if not (np.isfinite(vmin) and np.isfinite(vmax)):
            raise ConfigError(
                f"scores must be finite for histogram metrics (got min {vmin}, max {vmax}); use mode='exact'"
            )
        if not self.initialised:
            self._learn(vmin, vmax)
        if self.fixed:
            self.num_clipped += int(np.count_nonzero((scores < self.lo) | (scores > self.hi)))
        else:
            self._grow(vmin, vmax)
        idx = self.bin_index(scores)
        idx <<= 1
        idx |= positive.view(np.uint8) if positive.dtype == np.bool_ else positive.astype(np.int32)
        return np.bincount(idx, minlength=2 * self.bins).reshape(self.bins, 2)

    def update(self, scores: np.ndarray, positive: np.ndarray) -> None:
        """Add a batch of valid-pixel scores (float [P]) with labels (bool [P], True = anomaly)."""
        if scores.size == 0:
            return
        batch = self.counts_of(scores, positive)
        self.counts += batch

    def curve(self, counts: np.ndarray | None = None) -> Curve:
        """Curve of the accumulated counts (or of ``counts`` [bins, 2] from :meth:`counts_of`).

        Thresholds are the bins' lower edges, highest first.
        """
        c = self.counts if counts is None else counts
        if not self.initialised:
            empty = np.zeros(0, dtype=np.int64)
            return Curve(np.zeros(0), empty, empty)
        lower_edges = self.lo + self.width * np.arange(self.bins, dtype=np.float64)
        return curve_from_counts(lower_edges[::-1], c[::-1, 1], c[::-1, 0])
