"""The mask threshold and overlay range a model carries (ModelMeta.extra thresholds / score_ranges), over DDS.

A tiny MOoSe network is exported with ``export_onnx`` carrying an operating point in ``ModelMeta.extra``
(max-logit: threshold at the median score of the test image, and a display range; msp: a display range only).
The node runs with the shipped config/moose.yaml, whose ``threshold`` is ``.nan`` (unset): the mask must use the
model's max-logit threshold, fall back to 0.0 (logged once) after a run-time switch to msp, follow an explicit
``threshold`` and return to the model's value when it is set back to NaN; the overlay range follows ``score``.
The graph also carries road-gated scores (``--road-gate``): with ``roi: road`` the mask thresholds the gated
``max_logit_road`` at its own operating point while ``~/anomaly`` stays the ungated score.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_ros_support import Harness, image_array, raw_image_msg, scene_image

from moose_ros.dds import allocate_domain_id, loopback_env
from moose_ros.ros import launcher
from moose_ros.visualize import colormap, normalize_scores, overlay_heatmap

#: Seconds a node may take to come up (imports and model load take minutes on a starved CPU).
START_S = 240.0

pytestmark = [pytest.mark.ros, pytest.mark.usefixtures("torch_threads")]

SIZE = (40, 56)
MSP_RANGE = [-0.9, -0.3]


#: Classes of the tiny model's drivable area (its road gate), and a frame where they cover part of the image.
ROAD = (0, 1)
ROI_SIZE = (64, 96)


def _export(path: Path, rgb: np.ndarray) -> tuple[float, list[float]]:
    """Export the model with an operating point; returns (max-logit threshold, max-logit display range)."""
    import torch

    from moose_ros.export import export_onnx
    from moose_ros.export.onnx_export import make_fused
    from moose_ros.model import moose_deeplabv3_resnet18

    torch.manual_seed(0)
    model = moose_deeplabv3_resnet18(
        num_classes=7, aspp_channels=16, probe_width=16, atrous_rates=(2, 4), output_stride=8).eval()
    fused, _ = make_fused(model, scores=("max_logit", "msp"), road_classes=ROAD)
    with torch.no_grad():
        scores = fused(torch.from_numpy(rgb[None]))[1][0].numpy()
        gated = fused(torch.from_numpy(scene_image(*ROI_SIZE, seed=3)[None]))[3][0].numpy()
    threshold = float(np.median(scores))
    value_range = [float(scores.min()), float(scores.max())]
    # The ModelMeta.extra contract the node reads (what the exporter writes from a checkpoint's calibration).
    on_road = gated[gated > gated.min()]  # the gate keeps the drivable area's scores, the rest is the minimum
    extra = {"thresholds": {"max_logit": threshold, "max_logit_road": float(np.median(on_road))},
             "score_ranges": {"max_logit": value_range, "msp": MSP_RANGE}}
    export_onnx(fused, path, check_tensorrt=False, extra_meta=extra)
    return threshold, value_range


class Session:
    def __init__(self, tester: Harness, proc: Any, log_path: Path, threshold: float, value_range: list[float],
                 path: Path):
        self.tester, self.proc, self.log_path, self.path = tester, proc, log_path, path
        self.threshold, self.value_range = threshold, value_range
        self.sec = 200

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def frame(self, rgb: np.ndarray) -> dict[str, Any]:
        self.sec += 1
        self.tester.publish("image", raw_image_msg(rgb, "rgb8", frame_id="cam", sec=self.sec))
        return self.tester.wait_outputs(self.sec * 1_000_000_000)

    def set(self, **values: Any) -> None:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        t = self.tester
        client = t.node.create_client(SetParameters, "/moose_node/set_parameters")
        assert t.spin_until(client.service_is_ready, 10.0)
        request = SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        future = client.call_async(request)
        assert t.spin_until(future.done, 10.0)
        t.node.destroy_client(client)
        assert all(r.successful for r in future.result().results), future.result().results


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    pytest.importorskip("torch")
    tmp = tmp_path_factory.mktemp("operating_point")
    threshold, value_range = _export(tmp / "moose.onnx", scene_image(*SIZE, seed=3))
    domain = allocate_domain_id()
    log_path = tmp / "node.log"
    proc = launcher.start_node({"model": str(tmp / "moose.onnx"), "threads": 1, "warmup": False, "roi": "image"},
                               env=loopback_env(domain, log_dir=tmp / "ros_logs"), log_path=log_path)
    tester = Harness(domain)
    try:
        tester.subscribe_outputs()
        launcher.wait_for_topic(tester.node, "/moose_node/anomaly", proc=proc, log_path=log_path,
                                executor=tester.executor, timeout_s=START_S)
        yield Session(tester, proc, log_path, threshold, value_range, tmp / "moose.onnx")
    finally:
        tester.close()
        assert launcher.stop(proc) == 0, launcher.log_tail(log_path)


def _mask_of(outs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    return image_array(outs["anomaly/mask"]), image_array(outs["anomaly"])


def _expected_overlay(rgb: np.ndarray, scores: np.ndarray, value_range: list[float]) -> np.ndarray:
    return overlay_heatmap(rgb, normalize_scores(scores, (value_range[0], value_range[1])), alpha=0.5,
                           cmap=colormap("turbo"))


def test_threshold_and_range_come_from_the_model_and_follow_score(session: Session) -> None:
    rgb = scene_image(*SIZE, seed=3)
    mask, scores = _mask_of(session.frame(rgb))
    np.testing.assert_array_equal(mask, np.where(scores > np.float32(session.threshold), 255, 0))
    assert 0 < (mask == 255).sum() < mask.size  # the model's threshold splits this image ...
    assert not np.array_equal(mask, np.where(scores > 0.0, 255, 0))  # ... unlike the 0.0 fallback
    log = session.log()
    assert re.search(rf"mask threshold {session.threshold:g} for score 'max_logit' \(the model's operating point\)",
                     log), log
    lo, hi = session.value_range
    assert f"overlay range [{lo:g}, {hi:g}] for score 'max_logit' (model)" in log, log

    session.set(score="msp")  # no threshold for msp in the model: 0.0, said once; its own display range
    for _ in range(2):
        outs = session.frame(rgb)
        mask, scores = _mask_of(outs)
        np.testing.assert_array_equal(mask, np.where(scores > 0.0, 255, 0))
        np.testing.assert_array_equal(image_array(outs["anomaly/overlay"]), _expected_overlay(rgb, scores, MSP_RANGE))
    log = session.log()
    assert log.count("mask threshold 0 for score 'msp' (fallback") == 1, log
    assert "overlay range [-0.9, -0.3] for score 'msp' (model)" in log, log

    session.set(score="max_logit", threshold=-1e9)  # an explicit threshold wins
    mask, _ = _mask_of(session.frame(rgb))
    assert (mask == 255).all()
    assert "mask threshold -1e+09 for score 'max_logit' (the 'threshold' parameter)" in session.log()

    session.set(threshold=math.nan)  # back to unset: the model's threshold again
    outs = session.frame(rgb)
    mask, scores = _mask_of(outs)
    np.testing.assert_array_equal(mask, np.where(scores > np.float32(session.threshold), 255, 0))
    np.testing.assert_array_equal(image_array(outs["anomaly/overlay"]),
                                  _expected_overlay(rgb, scores, session.value_range))
    assert session.proc.poll() is None


def test_roi_road_thresholds_the_gated_score_and_keeps_the_raw_map(session: Session) -> None:
    from moose_ros.backends import make_backend

    rgb = scene_image(*ROI_SIZE, seed=3)
    backend = make_backend("onnxruntime-cpu", session.path, threads=1)
    try:
        expected = backend.infer(rgb[None])
        threshold = backend.meta.extra["thresholds"]["max_logit_road"]
    finally:
        backend.close()
    gated, raw = expected.score("max_logit_road")[0], expected.score("max_logit")[0]
    labels = expected.labels[0]
    assert not np.array_equal(gated, raw) and np.isin(labels, ROAD).any()
    # the gate keeps a pixel's score or sets the image's minimum; most off-road pixels get the minimum (those
    # enclosed by road are filled into the drivable area)
    assert np.all((gated == raw) | (gated == gated.min()))
    assert (gated[~np.isin(labels, ROAD)] == gated.min()).mean() > 0.5

    session.set(roi="road")
    outs = session.frame(rgb)
    mask, scores = _mask_of(outs)
    np.testing.assert_allclose(scores, raw, rtol=1e-5, atol=1e-5)  # ~/anomaly stays ungated
    np.testing.assert_array_equal(mask, np.where(gated > np.float32(threshold), 255, 0))
    assert (mask == 255).sum() > 0 and not np.array_equal(mask, np.where(raw > np.float32(session.threshold), 255, 0))
    assert f"mask threshold {threshold:g} for score 'max_logit_road' (the model's operating point)" in session.log()

    session.set(roi="auto")  # the model has the gated score: auto masks the road too
    np.testing.assert_array_equal(_mask_of(session.frame(rgb))[0], mask)
    session.set(roi="image")
    mask, scores = _mask_of(session.frame(rgb))
    np.testing.assert_array_equal(mask, np.where(scores > np.float32(session.threshold), 255, 0))
    assert not np.array_equal(mask, np.where(gated > np.float32(threshold), 255, 0))
    assert session.proc.poll() is None
