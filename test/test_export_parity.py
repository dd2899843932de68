"""ONNX Runtime vs eager torch on the same uint8 images at an odd size and batch 2, every score, every resolution."""

from __future__ import annotations

import numpy as np
import pytest
from test_export_fused import SCORES, _torch_outputs, random_images, tiny_model
from torch import nn

from moose_ros.backends.onnxruntime import OnnxRuntimeBackend
from moose_ros.export import FusedMoose, export_onnx

pytestmark = pytest.mark.usefixtures("torch_threads")
TORCH_THREADS = 2


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return tiny_model()


@pytest.mark.parametrize("resolution", ["input", "feature", "full"])
def test_onnxruntime_matches_torch(model, tmp_path, resolution):
    path = tmp_path / f"m_{resolution}.onnx"
    meta = export_onnx(model, path, scores=SCORES, score_resolution=resolution, dynamic_batch=True)
    assert meta.scores == SCORES and meta.num_probes == 4 and meta.score_resolution == resolution
    backend = OnnxRuntimeBackend(path, threads=2)
    images = random_images(2, 257, 333)
    result = backend.infer(images)
    ref = _torch_outputs(FusedMoose(model, scores=SCORES, score_resolution=resolution), images)

    assert result.labels.dtype == np.uint8 and result.labels.shape == (2, 257, 333)
    assert len(np.unique(ref["labels"])) > 1, "test model should predict several classes"
    assert (result.labels == ref["labels"]).mean() >= 0.999
    outputs = {"max_logit": result.anomaly, **result.extra_scores}
    for index, name in enumerate(SCORES):
        key = "anomaly" if index == 0 else f"anomaly_{name}"
        got, want = outputs[name], ref[key]
        assert got.dtype == np.float32 and got.shape == (2, 257, 333), name
        value_range = float(want.max() - want.min())
        assert value_range > 1e-4, f"{name}: degenerate test scores"
        assert np.abs(got - want).max() <= 1e-3 * value_range, name
