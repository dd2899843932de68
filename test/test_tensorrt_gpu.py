"""Real engines on a real GPU: TensorRT (fp32 and fp16) and ONNX Runtime CUDA against ONNX Runtime CPU.

Skipped, with the reason, unless TensorRT 10.x/11.x imports and torch sees a CUDA GPU (``requires_trt``) or
onnxruntime-gpu offers a working CUDA execution provider (``requires_ort_cuda``). Nothing here has run in the
workplace it was written in (no GPU, no TensorRT libraries).

Tolerances: the fp32 engine is built with TF32 off, but TensorRT may still fuse and reorder, so scores are
compared to ONNX Runtime CPU within 1 % of each score's range (TF32 alone would stay within that too); fp16
within 5 %. Labels must agree on >= 99 % (fp32) / >= 95 % (fp16) of pixels (argmax ties flip under rounding).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest

from moose_ros.errors import BackendError


def _trt_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (pip install 'moose_ros[gpu]')"
    try:
        from moose_ros.backends.tensorrt import import_tensorrt

        import_tensorrt()
    except BackendError as err:
        return str(err)
    return _cuda_reason()


def _cuda_reason() -> str | None:
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    import torch

    return None if torch.cuda.is_available() else "no CUDA GPU visible to torch"


def _ort_cuda_reason() -> str | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed"
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return "ONNX Runtime has no CUDA execution provider (onnxruntime-gpu not installed)"
    return _cuda_reason()


_TRT_SKIP, _ORT_SKIP = _trt_reason(), _ort_cuda_reason()
requires_trt = pytest.mark.skipif(_TRT_SKIP is not None, reason=f"needs TensorRT 10/11 and a CUDA GPU: {_TRT_SKIP}")
requires_ort_cuda = pytest.mark.skipif(_ORT_SKIP is not None, reason=f"needs ONNX Runtime CUDA: {_ORT_SKIP}")
pytestmark = [pytest.mark.gpu]

BUNDLED = Path(__file__).resolve().parents[1] / "models" / "moose_synthstreet.onnx"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The tiny test network exported with every score, once with a dynamic and once with a static batch."""
    if _TRT_SKIP is not None and _ORT_SKIP is not None:
        pytest.skip(f"no GPU runtime: {_TRT_SKIP}; {_ORT_SKIP}")
    from test_export_fused import tiny_model

    from moose_ros.export import export_onnx
    from moose_ros.scoring import SCORE_NAMES

    folder = tmp_path_factory.mktemp("gpu_models")
    dynamic, static = folder / "tiny.onnx", folder / "tiny_static.onnx"
    export_onnx(tiny_model(), dynamic, scores=SCORE_NAMES)
    export_onnx(tiny_model(), static, scores=("max_logit", "entropy"), dynamic_batch=False)
    return dynamic, static


def _compare(got, ref, *, rel: float, label_agreement: float) -> dict[str, float]:
    """Max |difference| / range per score; asserts the tolerances and the absence of NaN."""
    assert (got.labels == ref.labels).mean() >= label_agreement
    diffs = {}
    pairs = [("anomaly", got.anomaly, ref.anomaly)]
    pairs += [(name, got.extra_scores[name], ref.extra_scores[name]) for name in ref.extra_scores]
    for name, have, want in pairs:
        assert not np.isnan(have).any(), name
        span = max(float(want.max() - want.min()), 1e-6)
        diffs[name] = float(np.abs(have - want).max()) / span
        assert diffs[name] <= rel, (name, diffs[name])
    return diffs


@pytest.mark.tensorrt
@requires_trt
@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_engine_matches_onnxruntime_cpu_on_two_shapes(exported, tmp_path, caplog, fp16):
    from test_export_fused import random_images

    from moose_ros.backends.onnxruntime import OnnxRuntimeBackend
    from moose_ros.backends.tensorrt import TensorRTBackend

    path = exported[0]
    caplog.set_level(logging.INFO)
    backend = TensorRTBackend(path, fp16=fp16, cache_dir=tmp_path / "cache")
    cpu = OnnxRuntimeBackend(path)
    rel, agree = (0.05, 0.95) if fp16 else (0.01, 0.99)
    bound = backend._buffers.allocations  # the start-up self-check bound one shape already
    for shape in [(2, 257, 333), (1, 190, 250), (2, 257, 333)]:  # rebinding both ways
        images = random_images(*shape)
        _compare(backend.infer(images), cpu.infer(images), rel=rel, label_agreement=agree)
    assert backend._buffers.allocations == bound + 3
    backend.close()
    caplog.clear()
    TensorRTBackend(path, fp16=fp16, cache_dir=tmp_path / "cache").close()
    assert "reusing" in caplog.text


@pytest.mark.tensorrt
@requires_trt
def test_static_batch_export(exported, tmp_path):
    from test_export_fused import random_images

    from moose_ros.backends.tensorrt import TensorRTBackend

    backend = TensorRTBackend(exported[1], fp16=False, cache_dir=tmp_path)
    assert backend.profile.min[0] == backend.profile.max[0] == 1
    assert backend.infer(random_images(1, 97, 131)).anomaly.shape == (1, 97, 131)
    with pytest.raises(BackendError, match="outside the engine's shape profile"):
        backend.infer(random_images(2, 97, 131))


@pytest.mark.tensorrt
@requires_trt
def test_non_zero_device(exported, tmp_path):
    import torch
    from test_export_fused import random_images

    from moose_ros.backends.tensorrt import TensorRTBackend

    if torch.cuda.device_count() < 2:
        pytest.skip("needs a second CUDA device")
    before = torch.cuda.current_device()
    backend = TensorRTBackend(exported[0], fp16=False, cache_dir=tmp_path, device=1)
    assert backend.infer(random_images(1, 64, 64)).anomaly.shape == (1, 64, 64)
    assert backend._buffers.buffers["anomaly"].device.index == 1 and torch.cuda.current_device() == before


@pytest.mark.tensorrt
@requires_trt
def test_corrupted_cached_engine_is_rebuilt(exported, tmp_path, caplog):
    from test_export_fused import random_images

    from moose_ros.backends.engine_cache import pack_cache_file, unpack_cache_file
    from moose_ros.backends.tensorrt import TensorRTBackend

    backend = TensorRTBackend(exported[0], fp16=False, cache_dir=tmp_path)
    engine_file = backend.cache.path(backend._slot)
    key, payload = unpack_cache_file(engine_file.read_bytes())
    broken = bytearray(payload)
    broken[len(broken) // 2 : len(broken) // 2 + 64] = b"\xff" * 64
    engine_file.write_bytes(pack_cache_file(key, bytes(broken[: len(broken) // 2])))  # valid file, broken engine
    caplog.set_level(logging.INFO)
    again = TensorRTBackend(exported[0], fp16=False, cache_dir=tmp_path)
    assert "rebuilding" in caplog.text and again.infer(random_images(1, 64, 64)).labels.shape == (1, 64, 64)


@requires_ort_cuda
def test_onnxruntime_cuda_matches_cpu(exported):
    from test_export_fused import random_images

    from moose_ros.backends import make_backend

    gpu, cpu = make_backend("onnxruntime-cuda", exported[0]), make_backend("onnxruntime-cpu", exported[0])
    assert gpu.name == "onnxruntime-cuda"
    for shape in [(2, 257, 333), (1, 190, 250)]:
        images = random_images(*shape)
        _compare(gpu.infer(images), cpu.infer(images), rel=0.01, label_agreement=0.99)


def _median_ms(backend, images, repeats: int = 20) -> float:
    backend.infer(images)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        backend.infer(images)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


@pytest.mark.tensorrt
@pytest.mark.slow
@requires_trt
@pytest.mark.skipif(not BUNDLED.is_file(), reason="the bundled model is not in this checkout")
def test_bundled_model_latency_and_accuracy(tmp_path):
    """Latency (median ms, 20 runs, input copy to output copy) and accuracy of the bundled graph at 1280x720 and
    2048x1024, fp32 and fp16, against ONNX Runtime CPU; written to ``$MOOSE_GPU_REPORT`` (JSON) when set."""
    from test_export_fused import random_images

    from moose_ros.backends.onnxruntime import OnnxRuntimeBackend
    from moose_ros.backends.tensorrt import TensorRTBackend

    cpu = OnnxRuntimeBackend(BUNDLED)
    report = []
    for fp16 in (False, True):
        backend = TensorRTBackend(BUNDLED, fp16=fp16, cache_dir=tmp_path)
        for h, w in [(720, 1280), (1024, 2048)]:
            images = random_images(1, h, w)
            rel, agree = (0.05, 0.95) if fp16 else (0.01, 0.99)
            diffs = _compare(backend.infer(images), cpu.infer(images), rel=rel, label_agreement=agree)
            row = {"precision": backend.precision, "size": f"{w}x{h}", "median_ms": _median_ms(backend, images)}
            report.append({**row, "max_rel_diff": diffs})
        backend.close()
    print(json.dumps(report, indent=1))
    if os.environ.get("MOOSE_GPU_REPORT"):
        Path(os.environ["MOOSE_GPU_REPORT"]).write_text(json.dumps(report, indent=1))
