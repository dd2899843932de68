"""Real TensorRT engines (skipped unless tensorrt imports and a CUDA GPU exists): build, cache reuse, parity."""

from __future__ import annotations

import importlib.util
import logging

import numpy as np
import pytest


def _tensorrt_and_cuda() -> bool:
    if importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("torch") is None:
        return False
    try:
        import tensorrt  # noqa: F401
        import torch
    except (ImportError, OSError):
        return False
    return bool(torch.cuda.is_available())


requires_trt = pytest.mark.skipif(not _tensorrt_and_cuda(), reason="needs TensorRT >= 10 and a CUDA GPU")


@pytest.mark.tensorrt
@requires_trt
def test_engine_builds_caches_and_matches_onnxruntime(tmp_path, caplog):
    from test_export_fused import random_images, tiny_model

    from moose_ros.backends.onnxruntime import OnnxRuntimeBackend
    from moose_ros.backends.tensorrt import TensorRTBackend
    from moose_ros.export import export_onnx

    path = tmp_path / "tiny.onnx"
    export_onnx(tiny_model(), path, scores=("max_logit", "entropy"))
    caplog.set_level(logging.INFO)
    backend = TensorRTBackend(path, fp16=False, cache_dir=tmp_path / "cache")
    images = random_images(2, 257, 333)
    got = backend.infer(images)
    again = backend.infer(images)  # buffers reused
    assert backend._buffers.allocations == 1
    ref = OnnxRuntimeBackend(path).infer(images)
    assert (got.labels == ref.labels).mean() >= 0.999
    span = float(ref.anomaly.max() - ref.anomaly.min())
    assert np.abs(got.anomaly - ref.anomaly).max() <= 1e-3 * span
    np.testing.assert_array_equal(again.labels, got.labels)
    backend.close()

    caplog.clear()
    TensorRTBackend(path, fp16=False, cache_dir=tmp_path / "cache").close()
    assert "reusing" in caplog.text
    caplog.clear()
    TensorRTBackend(path, fp16=True, cache_dir=tmp_path / "cache").close()
    assert "rebuilding because precision differs" in caplog.text


def test_head_fusion_layers_are_told_apart_from_the_network(tmp_path):
    """The fp16 build pins by layer name: check the split on the node names of real exported graphs."""
    import copy

    import onnx
    import torch
    from test_export_fused import tiny_model

    from moose_ros.backends.tensorrt import is_head_fusion_layer
    from moose_ros.export import FusedEnsemble, export_onnx

    torch.set_num_threads(2)
    model = tiny_model()
    moose, ensemble = tmp_path / "moose.onnx", tmp_path / "ensemble.onnx"
    export_onnx(model, moose, scores=("entropy",), score_resolution="full", verify=False)
    export_onnx(FusedEnsemble([model, copy.deepcopy(model)], scores=("entropy",)), ensemble, verify=False)
    for path in (moose, ensemble):
        nodes = onnx.load(str(path)).graph.node
        head = {n.op_type for n in nodes if is_head_fusion_layer(n.name)}
        network = {n.op_type for n in nodes if not is_head_fusion_layer(n.name)}
        assert not any(n.op_type == "Conv" and is_head_fusion_layer(n.name) for n in nodes), path.name
        assert {"Exp", "Log", "ReduceSum", "Resize", "ArgMax"} <= head, path.name
        assert "Conv" in network
    assert is_head_fusion_layer("[ONNX Layer: /Exp_3]") and not is_head_fusion_layer("/model/probes.0/Conv")
