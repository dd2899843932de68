"""Pixel-level OoD metrics: hand-worked cases, scikit-learn parity, histogram mode, protocols, edge cases."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from moose_ros.errors import ConfigError
from moose_ros.metrics import (
    OodMetrics,
    ScoreHistogram,
    auroc,
    average_precision,
    best_f1_threshold,
    curve_from_scores,
    fpr_at_tpr,
)


def _fpr95_reference(y: np.ndarray, s: np.ndarray) -> float:
    """FPR at the first ROC point (from high thresholds) with TPR >= 0.95, from sklearn's full ROC."""
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return float(fpr[np.argmax(tpr >= 0.95)])


def test_perfect_separation() -> None:
    ood = np.array([[0, 0, 1, 1]], dtype=np.uint8)
    score = np.array([[0.1, 0.2, 0.8, 0.9]], dtype=np.float32)
    for protocol in ("pooled", "per_image"):
        for mode in ("exact", "hist"):
            r = OodMetrics(protocol=protocol, mode=mode, bins=1024)
            r.update(score, ood)
            out = r.compute()
            assert out["aupr"] == pytest.approx(1.0)
            assert out["auroc"] == pytest.approx(1.0)
            assert out["fpr95"] == pytest.approx(0.0)
            assert out["protocol"] == protocol and out["mode"] == mode and out["valid"]


def test_all_equal_scores() -> None:
    # 3 positives of 10: one threshold holding everything -> precision 0.3 at recall 1 -> AP = 0.3;
    # ROC goes straight from (0, 0) to (1, 1) -> AUROC 0.5; TPR 1 reached only with FPR 1.
    ood = np.zeros((2, 5), dtype=np.uint8)
    ood.flat[[1, 4, 7]] = 1
    score = np.full((2, 5), 3.0)
    m = OodMetrics("pooled", "exact")
    m.update(score, ood)
    out = m.compute()
    assert out["aupr"] == pytest.approx(0.3)
    assert out["auroc"] == pytest.approx(0.5)
    assert out["fpr95"] == pytest.approx(1.0)


def test_ties_hand_case() -> None:
    # scores (label): 0.9(1) 0.5(1) 0.5(0) 0.1(0) 0.1(1)
    # thresholds: 0.9 -> tp1 fp0 (P=1, R=1/3); 0.5 -> tp2 fp1 (P=2/3, R=2/3); 0.1 -> tp3 fp2 (P=3/5, R=1)
    # AP = 1/3*1 + 1/3*2/3 + 1/3*3/5 = 0.7555...
    # ROC points (fpr, tpr): (0,0) (0,1/3) (1/2,2/3) (1,1): area = 0 + 1/2*(1/3+2/3)/2 + 1/2*(2/3+1)/2 = 2/3
    # FPR95: TPR >= .95 first at threshold 0.1 -> FPR 1
    s = np.array([0.9, 0.5, 0.5, 0.1, 0.1])
    y = np.array([1, 1, 0, 0, 1])
    c = curve_from_scores(s, y)
    assert average_precision(c) == pytest.approx(1 / 3 + 2 / 9 + 1 / 5, abs=1e-12)
    assert auroc(c) == pytest.approx(2 / 3, abs=1e-12)
    assert fpr_at_tpr(c, 0.95) == pytest.approx(1.0)
    assert average_precision(c) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    # best pixel F1: thresholds give F1 = 0.5, 2/3, 0.75 -> threshold 0.1
    t, f1 = best_f1_threshold(c)
    assert (t, f1) == (pytest.approx(0.1), pytest.approx(0.75))


@pytest.mark.parametrize("seed", range(12))
def test_sklearn_parity_exact(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 4000))
    y = (rng.random(n) < rng.uniform(0.02, 0.5)).astype(np.uint8)
    y[0], y[1] = 1, 0
    # quantised scores make many ties; half of the cases continuous
    s = rng.normal(size=n) + y * rng.uniform(0, 2)
    if seed % 2:
        s = np.round(s, 1)
    m = OodMetrics("pooled", "exact")
    # feed in a few chunks with some void pixels that must not count
    ood = y.copy()
    void = rng.random(n) < 0.1
    ood[void] = 255
    ood[:2] = y[:2]
    for chunk in np.array_split(np.arange(n), 3):
        m.update(s[chunk].reshape(1, -1), ood[chunk].reshape(1, -1))
    out = m.compute()
    keep = ood != 255
    assert out["num_pixels"] == int(keep.sum())
    assert abs(out["aupr"] - average_precision_score(y[keep], s[keep])) < 1e-9
    assert abs(out["auroc"] - roc_auc_score(y[keep], s[keep])) < 1e-9
    assert abs(out["fpr95"] - _fpr95_reference(y[keep], s[keep])) < 1e-12


def test_void_pixels_never_count() -> None:
    rng = np.random.default_rng(3)
    score = rng.normal(size=(2, 16, 16))
    ood = (rng.random((2, 16, 16)) < 0.2).astype(np.uint8)
    base = OodMetrics("pooled", "exact")
    base.update(score, ood)
    with_void = OodMetrics("pooled", "exact")
    ood_v = np.concatenate([ood, np.full((2, 16, 4), 255, np.uint8)], axis=2)
    # void pixels carry extreme scores that would change every metric if they counted
    score_v = np.concatenate([score, np.full((2, 16, 4), 100.0)], axis=2)
    with_void.update(score_v, ood_v)
    a, b = base.compute(), with_void.compute()
    for k in ("aupr", "fpr95", "auroc", "num_pixels", "num_anomaly_pixels"):
        assert a[k] == b[k]


def test_histogram_equals_exact_on_quantised_scores() -> None:
    # scores that sit at bin centres: the histogram curve is the exact curve, so metrics agree to 1e-12
    rng = np.random.default_rng(7)
    bins = 64
    lo, hi = -4.0, 4.0
    width = (hi - lo) / bins
    idx = rng.integers(0, bins, size=(3, 40, 50))
    ood = (rng.random(idx.shape) < 0.1 + 0.5 * (idx > 40)).astype(np.uint8)
    score = lo + (idx + 0.5) * width
    ex = OodMetrics("pooled", "exact")
    hi_m = OodMetrics("pooled", "hist", bins=bins, score_range=(lo, hi))
    ex.update(score, ood)
    hi_m.update(score, ood)
    a, b = ex.compute(), hi_m.compute()
    for k in ("aupr", "fpr95", "auroc"):
        assert abs(a[k] - b[k]) < 1e-12, k
    assert b["bin_width"] == pytest.approx(width)


def test_histogram_close_to_exact_within_resolution() -> None:
    rng = np.random.default_rng(11)
    ood = (rng.random((4, 64, 64)) < 0.05).astype(np.uint8)
    score = (rng.normal(size=ood.shape) + 1.5 * ood).astype(np.float32)
    ex = OodMetrics("pooled", "exact")
    hs = OodMetrics("pooled", "hist", bins=1 << 16)  # learned range
    coarse = OodMetrics("pooled", "hist", bins=16)
    for m in (ex, hs, coarse):
        for s, o in zip(score, ood, strict=True):
            m.update(s, o)
    a, b, c = ex.compute(), hs.compute(), coarse.compute()
    assert b["bin_width"] < 5e-4  # one doubling of the learned range at most
    for k in ("aupr", "fpr95", "auroc"):
        assert abs(a[k] - b[k]) < 2e-3, k
    # 16 bins are too coarse to agree: the test can tell resolutions apart
    assert max(abs(a[k] - c[k]) for k in ("aupr", "fpr95")) > 5e-3


def test_learned_range_grows_exactly() -> None:
    # a second batch far outside the first batch's range doubles the bin width; counts stay exact
    h = ScoreHistogram(bins=8)
    h.update(np.array([0.0, 1.0]), np.array([False, True]))
    w0 = h.width
    h.update(np.array([-30.0, 40.0]), np.array([True, False]))
    assert h.width > w0 and h.lo <= -30.0 and h.hi > 40.0
    assert int(h.counts.sum()) == 4 and int(h.counts[:, 1].sum()) == 2
    c = h.curve()
    # highest bin holds the negative at 40 -> first threshold: 0 positives, 1 negative
    assert (int(c.tps[0]), int(c.fps[0])) == (0, 1)


def test_fixed_range_clips_and_counts() -> None:
    m = OodMetrics("pooled", "hist", bins=8, score_range=(0.0, 1.0))
    m.update(np.array([[-5.0, 0.5, 2.0]]), np.array([[0, 0, 1]], np.uint8))
    out = m.compute()
    assert out["num_clipped"] == 2 and out["aupr"] == pytest.approx(1.0)


def test_per_image_differs_from_pooled() -> None:
    # image A: anomaly scores 2, normal 1 (perfect). image B: anomaly 0.5, normal 0 (perfect) but B's
    # anomalies score below A's normals. Per image both are perfect: AUPR 1, FPR95 0.
    # Pooled: ranking A+ (2) > A- (1) > B+ (0.5) > B- (0): with 2 anomaly + 2 normal pixels per image,
    # thresholds 2: tp2 fp0 (P1 R.5); 1: tp2 fp2; 0.5: tp4 fp2 (P 4/6, R1); AP = .5*1 + .5*4/6 = 5/6;
    # TPR >= .95 first at 0.5 with FPR 2/4 = 0.5
    img_a = (np.array([[2, 2, 1, 1]], float), np.array([[1, 1, 0, 0]], np.uint8))
    img_b = (np.array([[0.5, 0.5, 0, 0]], float), np.array([[1, 1, 0, 0]], np.uint8))
    per, pooled = OodMetrics("per_image", "exact"), OodMetrics("pooled", "exact")
    for m in (per, pooled):
        m.update(*img_a)
        m.update(*img_b)
    p, q = per.compute(), pooled.compute()
    assert p["aupr"] == pytest.approx(1.0) and p["fpr95"] == pytest.approx(0.0) and p["num_images_used"] == 2
    assert q["aupr"] == pytest.approx(5 / 6) and q["fpr95"] == pytest.approx(0.5)
    # the histogram mode follows the same protocol logic
    per_h = OodMetrics("per-image", "hist", bins=256)
    per_h.update(*img_a)
    per_h.update(*img_b)
    assert per_h.compute()["aupr"] == pytest.approx(1.0)
    assert per_h.per_image().shape == (2, 3)


def test_per_image_skips_images_without_anomaly() -> None:
    m = OodMetrics("per_image", "exact")
    m.update(np.array([[0.3, 0.7]]), np.array([[0, 0]], np.uint8))  # skipped
    m.update(np.array([[0.9, 0.1]]), np.array([[1, 0]], np.uint8))
    out = m.compute()
    assert out["num_images"] == 2 and out["num_images_skipped"] == 1 and out["num_images_used"] == 1
    assert out["aupr"] == pytest.approx(1.0)


def test_empty_positives_is_nan_with_flag() -> None:
    for protocol in ("pooled", "per_image"):
        for mode in ("exact", "hist"):
            m = OodMetrics(protocol, mode, bins=64)
            m.update(np.array([[0.1, 0.2, 0.3]]), np.array([[0, 0, 255]], np.uint8))
            out = m.compute()
            assert np.isnan(out["aupr"]) and np.isnan(out["fpr95"]) and np.isnan(out["auroc"])
            assert out["valid"] is False and "anomaly" in out["note"]
    # nothing at all
    out = OodMetrics().compute()
    assert out["num_pixels"] == 0 and not out["valid"]


def test_only_positives_image() -> None:
    m = OodMetrics("per_image", "exact")
    m.update(np.array([[0.1, 0.2]]), np.array([[1, 1]], np.uint8))
    m.update(np.array([[0.9, 0.1]]), np.array([[1, 0]], np.uint8))
    out = m.compute()
    assert out["aupr"] == pytest.approx(1.0)  # both images
    assert out["auroc"] == pytest.approx(1.0)  # defined on the second image only
    assert out["note"] is not None


def test_bad_inputs_raise() -> None:
    m = OodMetrics()
    with pytest.raises(ConfigError, match="shape"):
        m.update(np.zeros((2, 3)), np.zeros((3, 2), np.uint8))
    with pytest.raises(ConfigError, match="uint8"):
        m.update(np.zeros((2, 3)), np.zeros((2, 3), np.int64))
    with pytest.raises(ConfigError, match="other than 0, 1"):
        m.update(np.zeros((2, 3)), np.full((2, 3), 2, np.uint8))
    with pytest.raises(ConfigError, match="nan"):
        m.update(np.full((2, 3), np.nan), np.zeros((2, 3), np.uint8))
    with pytest.raises(ConfigError, match="protocol"):
        OodMetrics(protocol="mean")
    with pytest.raises(ConfigError, match="bins"):
        OodMetrics(mode="hist", bins=3)


def test_curves_and_reset() -> None:
    rng = np.random.default_rng(5)
    ood = (rng.random((32, 32)) < 0.1).astype(np.uint8)
    score = rng.normal(size=(32, 32)) + ood
    for protocol in ("pooled", "per_image"):
        m = OodMetrics(protocol, "exact", bins=4096)
        m.update(score, ood)
        cv = m.curves()
        assert set(cv) == {"thresholds", "precision", "recall", "fpr", "tpr"}
        assert np.all(np.diff(cv["thresholds"]) < 0) and cv["recall"][-1] == pytest.approx(1.0)
        m.reset()
        assert m.compute()["num_images"] == 0


def test_import_without_torch_and_bench_runs() -> None:
    code = (
        "import sys, moose_ros.metrics as m; "
        "assert 'torch' not in sys.modules and 'rclpy' not in sys.modules; "
        "from moose_ros.bench.metrics import measure_throughput; "
        "r = measure_throughput(256, 512, images=8); print(r['mpx_per_s'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    rate = float(out.stdout.strip())  # speed is measured by `moose bench metrics`, not asserted here
    assert math.isfinite(rate) and rate > 0


def test_per_image_sklearn_parity_and_hist_agreement() -> None:
    rng = np.random.default_rng(21)
    images = []
    for i in range(5):
        ood = (rng.random((24, 40)) < 0.1 * i).astype(np.uint8)  # image 0 has no anomaly -> skipped
        ood[rng.random(ood.shape) < 0.05] = 255
        score = np.round(rng.normal(size=ood.shape) + ood * (ood == 1), 2)  # ties
        images.append((score, ood))
    exact, hist = OodMetrics("per_image", "exact"), OodMetrics("per_image", "hist", bins=1 << 16)
    for score, ood in images:
        exact.update(score, ood)
        hist.update(score, ood)
    ap, roc, fpr = [], [], []
    for score, ood in images:
        keep = ood != 255
        y, s = ood[keep], score[keep]
        if y.any():
            ap.append(average_precision_score(y, s))
            roc.append(roc_auc_score(y, s))
            fpr.append(_fpr95_reference(y, s))
    a, h = exact.compute(), hist.compute()
    assert a["num_images_used"] == 4 and a["num_images_skipped"] == 1
    assert abs(a["aupr"] - np.mean(ap)) < 1e-9 and abs(a["auroc"] - np.mean(roc)) < 1e-9
    assert abs(a["fpr95"] - np.mean(fpr)) < 1e-12 and abs(a["aupr_std"] - np.std(ap)) < 1e-9
    for k in ("aupr", "fpr95", "auroc"):
        assert abs(a[k] - h[k]) < 1e-9, k  # scores on a 0.01 grid: far coarser than the bins


def test_infinite_scores_are_ties_in_exact_mode() -> None:
    s = np.array([np.inf, np.inf, 1.0, -np.inf, -np.inf])
    y = np.array([1, 0, 1, 0, 1])
    c = curve_from_scores(s, y)
    assert c.thresholds.tolist() == [np.inf, 1.0, -np.inf] and c.tps.tolist() == [1, 2, 3]
    assert average_precision(c) == pytest.approx(average_precision_score(y, np.clip(s, -9, 9)))
