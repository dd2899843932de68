"""``make_backend("auto")`` falls back to ONNX Runtime on any TensorRT failure and logs the reason.

The broken TensorRT installations are real importable packages written to a temporary folder on ``sys.path``
(a wheel whose libraries are missing, a too old version) or the explicit API fake of ``test_tensorrt_fake``
(importable, but no usable GPU here). No moose_ros code is replaced.
"""

from __future__ import annotations

import logging
import sys

import pytest
from test_tensorrt_fake import FakeCuda, FakeTensorRT, write_fake_onnx

from moose_ros.backends import make_backend
from moose_ros.errors import BackendError

pytest.importorskip("onnxruntime")


def _package(tmp_path, monkeypatch, body: str) -> None:
    folder = tmp_path / "site"
    (folder / "tensorrt").mkdir(parents=True)
    (folder / "tensorrt" / "__init__.py").write_text(body)
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    monkeypatch.syspath_prepend(str(folder))


def _auto(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="moose_ros.backends")
    backend = make_backend("auto", write_fake_onnx(tmp_path / "m.onnx"), threads=1, cache_dir=tmp_path / "cache")
    assert backend.name.startswith("onnxruntime")
    skipped = [r.getMessage() for r in caplog.records if "skipping tensorrt" in r.getMessage()]
    assert len(skipped) == 1, caplog.text
    return backend, skipped[0]


def test_missing_tensorrt_libraries(tmp_path, monkeypatch, caplog):
    _package(tmp_path, monkeypatch, 'raise OSError("libnvinfer.so.10: cannot open shared object file")\n')
    backend, reason = _auto(tmp_path, caplog)
    assert "TensorRT cannot be loaded (OSError: libnvinfer.so.10" in reason
    result = backend.infer(__import__("numpy").zeros((1, 8, 8, 3), "uint8"))
    assert result.anomaly.shape == (1, 8, 8)


def test_tensorrt_import_raising_anything(tmp_path, monkeypatch, caplog):
    _package(tmp_path, monkeypatch, 'raise RuntimeError("CUDA driver version is insufficient")\n')
    _, reason = _auto(tmp_path, caplog)
    assert "RuntimeError: CUDA driver version is insufficient" in reason


def test_unsupported_tensorrt_version(tmp_path, monkeypatch, caplog):
    _package(tmp_path, monkeypatch, '__version__ = "8.6.1"\n')
    _, reason = _auto(tmp_path, caplog)
    assert "TensorRT 8.6.1 found, this backend supports 10.x and 11.x" in reason
    with pytest.raises(BackendError, match=r"supports 10\.x and 11\.x"):
        make_backend("tensorrt", tmp_path / "m.onnx")


@pytest.mark.parametrize("major", [10, 11])
def test_importable_tensorrt_without_a_usable_gpu(tmp_path, monkeypatch, caplog, major):
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT(FakeCuda(), major=major))
    _, reason = _auto(tmp_path, caplog)
    assert reason.startswith("backend auto: skipping tensorrt: tensorrt: ")
    torch = sys.modules.get("torch") or pytest.importorskip("torch")
    if not torch.cuda.is_available():
        assert "no CUDA GPU is visible" in reason
