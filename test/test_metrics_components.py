"""SegmentMeIfYouCan component metrics on constructed masks with hand-computed sIoU / PPV / F1."""

from __future__ import annotations

import numpy as np
import pytest

from moose_ros.errors import ConfigError
from moose_ros.metrics import SIOU_THRESHOLDS, ComponentMetrics, image_components, scaled_size_filters


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """12x14 ground truth (ood) and prediction.

    GT components (ood == 1):
      k1 rows 1-2, cols 1-4  (8 px)
      k2 rows 6-7, cols 1-2  (4 px)      k3 rows 6-7, cols 4-5 (4 px)   (column 3 between them is background)
      k4 row 4,   cols 9-11  (3 px)      never predicted
    Predicted components:
      p1 rows 1-3, cols 1-3  (9 px): covers 6 px of k1, 3 px (row 3) of background
      p2 rows 6-7, cols 1-5  (10 px): covers k2 and k3 fully, 2 px (column 3) of background
      p3 row 10,  cols 10-12 (3 px): false positive
      p4 row 0,   cols 8-10 lies on void -> dropped before labelling
    Hand values:
      sIoU(k1) = 6 / (8 + 3) = 6/11
      sIoU(k2) = 4 / (4 + 2) = 2/3   (k3's 4 px inside p2 are excluded from the union: the SMIYC adjustment;
                                       without it the union would be 10 and sIoU 0.4)
      sIoU(k3) = 2/3 likewise, sIoU(k4) = 0
      PPV(p1) = 6/9, PPV(p2) = 8/10, PPV(p3) = 0
    """
    ood = np.zeros((12, 14), dtype=np.uint8)
    ood[0, 6:13] = 255
    ood[1:3, 1:5] = 1
    ood[6:8, 1:3] = 1
    ood[6:8, 4:6] = 1
    ood[4, 9:12] = 1
    pred = np.zeros_like(ood, dtype=bool)
    pred[1:4, 1:4] = True
    pred[6:8, 1:6] = True
    pred[10, 10:13] = True
    pred[0, 8:11] = True
    return pred, ood


SIOU = [6 / 11, 2 / 3, 2 / 3, 0.0]
PPV = [6 / 9, 8 / 10, 0.0]


def test_image_components_hand_case() -> None:
    pred, ood = _scene()
    comp = image_components(pred, ood)
    assert sorted(comp.siou) == pytest.approx(sorted(SIOU), abs=1e-12)
    assert sorted(comp.ppv) == pytest.approx(sorted(PPV), abs=1e-12)
    assert sorted(comp.gt_area) == [3, 4, 4, 8]
    assert sorted(comp.pred_area) == [3, 9, 10]


def test_dataset_aggregation_and_f1() -> None:
    pred, ood = _scene()
    score = pred.astype(np.float32)  # threshold 0.5 -> exactly pred
    m = ComponentMetrics(threshold=0.5, min_pred_area=1, min_gt_area=1)
    m.update(score, ood)
    m.update(score, ood)  # the same image twice: means unchanged, counts doubled
    out = m.compute()
    assert out["siou"] == pytest.approx(np.mean(SIOU))
    assert out["ppv"] == pytest.approx(np.mean(PPV))
    assert out["num_gt_components"] == 8 and out["num_pred_components"] == 6
    # per τ: TP = #sIoU >= τ, FN = rest, FP = #PPV < τ, F1 = 2TP / (2TP + FN + FP), e.g.
    #   τ = 0.25 .. 0.50: TP 3 (6/11, 2/3, 2/3), FN 1, FP 1 (p3)          -> F1 = 6/8 = 0.75
    #   τ = 0.55:         TP 2 (6/11 = 0.545 < .55), FN 2, FP 1          -> F1 = 4/7
    #   τ = 0.70, 0.75:   TP 0, FN 4, FP 2 (p3, p1 at 0.667)              -> F1 = 0
    by_tau = out["f1_per_threshold"]
    assert by_tau["0.25"] == pytest.approx(0.75) and by_tau["0.50"] == pytest.approx(0.75)
    assert by_tau["0.55"] == pytest.approx(4 / 7)
    assert by_tau["0.70"] == 0.0 and out["f1_75"] == 0.0
    expected = []
    for t in SIOU_THRESHOLDS:
        tp = sum(v >= t for v in SIOU)
        fp = sum(v < t for v in PPV)
        expected.append(2 * tp / (2 * tp + (4 - tp) + fp))
    assert out["f1_mean"] == pytest.approx(np.mean(expected))


def test_eight_connectivity() -> None:
    # two diagonal pixels are one component (8-connected): one GT component of 2 px, fully predicted
    ood = np.zeros((4, 4), np.uint8)
    ood[1, 1] = ood[2, 2] = 1
    comp = image_components(ood == 1, ood)
    assert comp.siou.tolist() == [1.0] and comp.gt_area.tolist() == [2] and comp.ppv.tolist() == [1.0]


def test_size_filters() -> None:
    ood = np.zeros((8, 8), np.uint8)
    ood[1, 1] = 1  # 1-px GT component: below min_gt_area=2 -> becomes void
    ood[5:7, 5:7] = 1  # 4-px component kept
    pred = np.zeros((8, 8), bool)
    pred[0:3, 0:3] = True  # 9 px, 1 of them on the voided small GT -> 8 px in the region of interest
    pred[5:7, 5:7] = True
    pred[7, 0:2] = True  # 2 px: below min_pred_area=3 -> removed
    comp = image_components(pred, ood, min_pred_area=3, min_gt_area=2)
    assert comp.gt_area.tolist() == [4] and comp.siou.tolist() == [1.0]
    # remaining predicted: the 3x3 block (8 px in ROI, PPV 0) and the exact 2x2 (PPV 1)
    assert sorted(comp.ppv.tolist()) == [0.0, 1.0] and sorted(comp.pred_area.tolist()) == [4, 8]


def test_scaled_filters_and_errors() -> None:
    assert scaled_size_filters((1024, 2048)) == (50, 10)
    assert scaled_size_filters((256, 512)) == (3, 1)
    assert scaled_size_filters((1024, 2048), (500, 100)) == (500, 100)
    with pytest.raises(ConfigError):
        ComponentMetrics(threshold=float("nan"))
    with pytest.raises(ConfigError):
        ComponentMetrics(threshold=0.5, min_gt_area=0)
    empty = ComponentMetrics(threshold=0.5).compute()
    assert np.isnan(empty["siou"]) and np.isnan(empty["f1_mean"]) and empty["num_gt_components"] == 0
