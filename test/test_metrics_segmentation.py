"""Segmentation metrics (mIoU), ECE and head diversity on hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from moose_ros.errors import ConfigError
from moose_ros.metrics import CalibrationMetrics, HeadDiversity, SegmentationMetrics
from moose_ros.scoring import mutual_information


def test_miou_hand_case() -> None:
    # label / pred over 8 pixels, C = 4 (class 3 never occurs), one ignored pixel:
    # label: 0 0 0 1 1 2 2 255 ; pred: 0 0 1 1 1 2 0 3
    # class 0: TP 2, FP 1 (pixel 6), FN 1 (pixel 2) -> IoU 2/4
    # class 1: TP 2, FP 1 (pixel 2), FN 0          -> IoU 2/3
    # class 2: TP 1, FN 1                           -> IoU 1/2
    # class 3: only predicted on the ignored pixel -> absent -> nan, not counted
    label = np.array([[0, 0, 0, 1, 1, 2, 2, 255]], np.uint8)
    pred = np.array([[0, 0, 1, 1, 1, 2, 0, 3]], np.uint8)
    m = SegmentationMetrics(4)
    m.update(pred, label)
    out = m.compute()
    assert out["iou_per_class"][:3] == pytest.approx([0.5, 2 / 3, 0.5])
    assert np.isnan(out["iou_per_class"][3])
    assert out["miou"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert out["pixel_acc"] == pytest.approx(5 / 7)
    assert out["classes_counted"] == [0, 1, 2]
    # a class that is predicted but never in the GT counts with IoU 0
    m.update(np.array([[3]], np.uint8), np.array([[2]], np.uint8))
    assert m.compute()["iou_per_class"][3] == 0.0 and 3 in m.compute()["classes_counted"]


def test_miou_errors() -> None:
    m = SegmentationMetrics(3)
    with pytest.raises(ConfigError, match="pred values"):
        m.update(np.array([[5]], np.uint8), np.array([[1]], np.uint8))
    with pytest.raises(ConfigError, match="shape"):
        m.update(np.zeros((2, 2), np.uint8), np.zeros((2, 3), np.uint8))
    # ignore_index 0 is a valid choice and is honoured
    z = SegmentationMetrics(3, ignore_index=0)
    z.update(np.array([[2, 1]], np.uint8), np.array([[0, 1]], np.uint8))
    assert z.compute()["num_pixels"] == 1


def test_ece_hand_case() -> None:
    # 4 pixels, 2 classes, one head. confidences 0.9, 0.9, 0.6, 0.6 (bins (0.8667, 0.9333] and (0.5333, 0.6])
    # correct: 0.9-bin: 1 of 2 -> acc .5, conf .9 ; 0.6-bin: 2 of 2 -> acc 1, conf .6
    # ECE = 2/4*|.5-.9| + 2/4*|1-.6| = .2 + .2 = 0.4; one extra pixel is ignored (label 255)
    p1 = np.array([0.9, 0.9, 0.6, 0.4, 0.5])  # probability of class 1
    probs = np.stack([1 - p1, p1])[:, None, :]  # [C=2, H=1, W=5]
    label = np.array([[1, 0, 1, 0, 255]], np.uint8)
    m = CalibrationMetrics(num_bins=15)
    m.update(probs, label)
    out = m.compute()
    assert out["ece"] == pytest.approx(0.4)
    assert out["num_pixels"] == 4 and out["accuracy"] == pytest.approx(0.75)
    # heads are averaged first: two heads whose mean is the distribution above give the same ECE
    d = 0.05
    two = np.stack([np.stack([1 - p1 - d, p1 + d]), np.stack([1 - p1 + d, p1 - d])])[:, :, None, :]
    m2 = CalibrationMetrics()
    m2.update(two, label)
    assert m2.compute()["ece"] == pytest.approx(0.4)


def test_head_diversity() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 5, 6))  # M=3 heads, C=4 classes, 5x6 pixels
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    label = np.zeros((5, 6), np.uint8)
    label[0] = 255
    h = HeadDiversity()
    h.update(probs, label)
    out = h.compute()
    mi = mutual_information([lg[None] for lg in logits])[0]
    var = probs.var(axis=0).mean(axis=0)
    assert out["mutual_information"] == pytest.approx(float(mi[1:].mean()), rel=1e-9)
    assert out["variance"] == pytest.approx(float(var[1:].mean()), rel=1e-9)
    assert out["num_pixels"] == 24 and out["num_heads"] == 3
    # identical heads: no disagreement at all
    same = HeadDiversity()
    same.update(np.stack([probs[0]] * 3))
    assert same.compute()["mutual_information"] == pytest.approx(0.0, abs=1e-9)
    assert same.compute()["variance"] == pytest.approx(0.0, abs=1e-15)
