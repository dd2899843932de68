"""``moose bag evaluate`` end to end: SynthStreet frames -> rosbag2 -> moose_node over real (loopback) DDS.

The key check: replayed at max speed (nothing dropped), the bag evaluation gives exactly the metrics of running
the same ONNX model offline on the same decoded frames.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from test_ros_support import tiny_fused_onnx

from moose_ros.bag import BagWriteOptions, iter_frames, write_bag
from moose_ros.bag.evaluate import ReplayOptions, replay_bag
from moose_ros.data.common import OodSample

pytestmark = pytest.mark.ros

H, W, N = 64, 128, 5


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small hand-built fused graph (no torch) with a max-logit and an entropy output."""
    return tiny_fused_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx", depth=1, scores=("max_logit", "entropy"))


@pytest.fixture(scope="module")
def samples() -> list[OodSample]:
    """A short SynthStreet drive with unknown objects on the road (ood: 0 road, 1 anomaly, 255 void)."""
    from moose_ros.data.synth import render_sequence

    frames = render_sequence(11, N, split="test", height=H, width=W, ood=True)
    return [OodSample(f.image, f.ood, f"drive_{i:03d}") for i, f in enumerate(frames)]


def _offline(model: Path, images: list[np.ndarray], oods: list[np.ndarray], score: str) -> tuple[dict, dict, list]:
    """The same model run directly with ONNX Runtime (1 thread) and the same metric accumulators."""
    from moose_ros.backends import make_backend
    from moose_ros.metrics import OodMetrics

    backend = make_backend("onnxruntime-cpu", model, threads=1)
    pooled, per_image = OodMetrics(protocol="pooled", mode="exact"), OodMetrics(protocol="per_image", mode="exact")
    maps = []
    try:
        for image, ood in zip(images, oods, strict=True):
            result = backend.infer(image[None])
            scores = result.anomaly[0] if score == backend.meta.scores[0] else result.extra_scores[score][0]
            maps.append(scores)
            pooled.update(scores, ood)
            per_image.update(scores, ood)
    finally:
        backend.close()
    return pooled.compute(), per_image.compute(), maps


def test_bag_metrics_equal_offline_metrics(tiny_model: Path, samples, tmp_path: Path, ros_domain: int) -> None:
    bag = tmp_path / "drive.bag"
    write_bag(samples, bag, BagWriteOptions(rate_hz=10.0))
    options = ReplayOptions(max_speed=True, threads=1, domain_id=ros_domain, gallery=N, progress=False,
                            node_params={"score": "entropy"}, metrics_mode="exact")
    result = replay_bag(bag, tiny_model, options, method="MOoSe", log_dir=tmp_path / "logs")

    assert (result.frames_sent, result.frames_answered, result.frames_dropped) == (N, N, 0)
    assert result.frames_with_ground_truth == N and result.unmatched_outputs == 0
    assert result.score == "entropy" and result.mode == "max_speed"
    lat = result.latency_ms
    assert 0 < lat["p50"] <= lat["p95"] <= lat["max"] < 30_000
    assert result.fps > 0
    node = result.node_stats  # the node's own /diagnostics counters agree
    assert (node["received"], node["processed"], node["dropped"], node["rejected"]) == (N, N, 0, 0)
    assert node["backend"] == "onnxruntime-cpu" and node["inference_ms"] > 0

    frames = list(iter_frames(bag))
    pooled, per_image, maps = _offline(tiny_model, [f.image for f in frames], [f.ood for f in frames], "entropy")
    assert pooled["num_anomaly_pixels"] > 0  # the drive has anomalies: the comparison is not vacuous
    for key in ("aupr", "fpr95", "auroc", "num_pixels", "num_anomaly_pixels", "num_images"):
        assert result.pooled[key] == pooled[key], key
        assert result.per_image[key] == per_image[key], key
    # the node's ~/anomaly maps are the offline maps bit for bit; its labels are the global argmax
    assert [g.name for g in result.gallery] == [f.name for f in frames]
    for kept, offline in zip(result.gallery, maps, strict=True):
        np.testing.assert_array_equal(kept.score, offline)
        assert kept.labels is not None and kept.labels.shape == (H, W) and kept.labels.max() < 19


def test_rate_replay_counts_drops_and_report(tiny_model: Path, samples, tmp_path: Path, ros_domain: int) -> None:
    """Compressed (png) input at 1000x the recorded rate (10 frames in ~1 ms): the node must skip frames."""
    from moose_ros.bag.report import write_bag_report

    bag = tmp_path / "fast.bag"
    write_bag(samples * 2, bag, BagWriteOptions(image_format="png", rate_hz=10.0))
    options = ReplayOptions(rate_scale=1000.0, threads=1, domain_id=ros_domain, frame_timeout_s=10.0, progress=False)
    result = replay_bag(bag, tiny_model, options, method="MOoSe", log_dir=tmp_path / "logs")

    assert result.frames_sent == 2 * N
    assert result.frames_answered + result.frames_dropped == result.frames_sent
    assert result.frames_answered >= 1 and result.frames_dropped >= 1, result.to_dict()
    assert result.pooled is not None and result.pooled["num_images"] == result.frames_answered
    assert len(result.dropped_names) == result.frames_dropped
    # our drop count = frames lost in transport + frames the node overwrote before processing them
    node = result.node_stats
    assert node["processed"] == result.frames_answered
    assert result.frames_dropped == (result.frames_sent - node["received"]) + node["dropped"]

    paths = write_bag_report(tmp_path / "report", [result])
    text = paths["markdown"].read_text()
    assert "Latency, drops and throughput" in text and f"| {result.frames_dropped} |" in text
    data = json.loads(paths["json"].read_text())
    assert data["runs"][0]["frames_dropped"] == result.frames_dropped
    assert data["ood"]["MOoSe"]["max_logit"]["aupr"] == pytest.approx(result.pooled["aupr"])
    assert paths["curves"].is_file() and any(paths["gallery"].iterdir())


def test_cli_evaluate_bag_without_ground_truth(tiny_model: Path, samples, tmp_path: Path, ros_domain: int) -> None:
    """A bag with no ground-truth topic still gets the latency report (through `moose bag evaluate`)."""
    from moose_ros.tools import bag as bag_tool

    bag = tmp_path / "nogt.bag"
    write_bag(samples[:3], bag, BagWriteOptions(storage="sqlite3", ground_truth=False))
    parser = argparse.ArgumentParser()
    bag_tool.add_arguments(parser)
    out = tmp_path / "eval"
    args = parser.parse_args(["evaluate", str(bag), "--model", str(tiny_model), "--out", str(out), "--max-speed",
                              "--threads", "1", "--domain-id", str(ros_domain), "--no-progress"])
    assert bag_tool.run(args) == 0
    report = json.loads((out / "report.json").read_text())
    run = report["runs"][0]
    assert (run["frames_sent"], run["frames_answered"], run["frames_dropped"]) == (3, 3, 0)
    assert run["pooled"] is None and "ood" not in report
    assert run["latency_ms"]["p50"] > 0
    assert "latency report only" in (out / "report.md").read_text()
    assert (out / "logs" / "node.log").is_file()
