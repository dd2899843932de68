"""The F1-optimal threshold against a brute-force search over every cut of real score arrays."""

from __future__ import annotations

import numpy as np
import pytest

from moose_ros.train.operating_point import best_f1_threshold


def _f1(scores: np.ndarray, anomaly: np.ndarray, threshold: float) -> float:
    flagged = scores > threshold
    tp = float((flagged & anomaly).sum())
    return 2.0 * tp / (flagged.sum() + anomaly.sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_f1_threshold_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    anomaly = rng.random(2000) < 0.05
    # anomalies score higher on average; rounding makes ties that a threshold must never split
    scores = np.round(rng.normal(0.0, 1.0, 2000) + 1.5 * anomaly, 1).astype(np.float32)
    point = best_f1_threshold(scores, anomaly)
    cuts = np.unique(scores)
    brute = max(_f1(scores, anomaly, t) for t in np.r_[cuts - 1e-3, cuts + 1e-3])
    assert point["f1"] == pytest.approx(brute)
    assert _f1(scores, anomaly, point["threshold"]) == pytest.approx(point["f1"])
    assert not np.any(scores == point["threshold"])
    flagged = scores > point["threshold"]
    assert point["precision"] == pytest.approx((flagged & anomaly).sum() / flagged.sum())
    assert point["recall"] == pytest.approx((flagged & anomaly).sum() / anomaly.sum())


def test_best_f1_threshold_needs_an_anomaly() -> None:
    with pytest.raises(ValueError, match="no anomaly"):
        best_f1_threshold(np.zeros(10, np.float32), np.zeros(10, bool))
