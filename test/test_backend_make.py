"""make_backend: the automatic choice and its log, explicit requests that cannot be met, input validation,
metadata reading, the torch reference backend, and that ONNX Runtime use never imports torch."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from test_bad_input_common import Exploit
from test_export_fused import random_images, tiny_model

from moose_ros.backends import make_backend
from moose_ros.backends.onnxruntime import cuda_provider_available
from moose_ros.errors import BackendError
from moose_ros.export import export_onnx

#: TensorRT or ONNX Runtime CUDA installed: ``auto`` may pick a GPU backend, and explicit GPU requests may work.
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAS_ORT_CUDA = cuda_provider_available()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.set_num_threads(2)
    from moose_ros.model import CheckpointMeta, save_checkpoint

    folder = tmp_path_factory.mktemp("models")
    model = tiny_model(seed=3, num_classes=4)
    meta = CheckpointMeta.for_model(
        model, classes=("a", "b", "c", "d"), colors=((1, 2, 3), (4, 5, 6), (7, 8, 9), (10, 11, 12))
    )
    ckpt = save_checkpoint(folder / "tiny.pt", model, meta)
    onnx_path = folder / "tiny.onnx"
    export_onnx(ckpt, onnx_path, scores=("max_logit", "entropy"))
    return ckpt, onnx_path


def test_auto_picks_onnxruntime_cpu_and_says_why(exported, caplog):
    _, onnx_path = exported
    caplog.set_level(logging.INFO, logger="moose_ros.backends")
    backend = make_backend("auto", onnx_path, threads=1)
    text = caplog.text
    assert f"auto -> {backend.name}" in text
    if not HAS_TENSORRT and not HAS_ORT_CUDA:  # on a GPU machine auto may pick a GPU backend
        assert backend.name == "onnxruntime-cpu"
        assert "skipping tensorrt: the tensorrt package is not installed" in text
        assert "skipping onnxruntime-cuda" in text and "CUDA execution provider" in text
    result = backend.infer(random_images(1, 40, 56))
    assert result.labels.shape == (1, 40, 56) and set(result.extra_scores) == {"entropy"}
    assert result.timings_ms["infer"] > 0
    assert backend.meta.classes == ("a", "b", "c", "d") and backend.meta.num_probes == 4
    backend.close()


def test_explicit_unavailable_backends_say_what_is_missing(exported):
    ckpt, onnx_path = exported
    if not HAS_TENSORRT:
        with pytest.raises(BackendError, match=r"tensorrt.*not installed.*pip install 'moose_ros\[gpu\]'"):
            make_backend("tensorrt", onnx_path)
    if not HAS_ORT_CUDA:
        with pytest.raises(BackendError, match=r"CUDA execution provider is missing.*onnxruntime-gpu"):
            make_backend("onnxruntime-cuda", onnx_path)
    with pytest.raises(BackendError, match=r"needs a checkpoint \(\.pt\)"):
        make_backend("torch", onnx_path)
    with pytest.raises(BackendError, match=r"not an \.onnx file"):
        make_backend("onnxruntime-cpu", ckpt)
    with pytest.raises(BackendError, match="unknown; allowed values"):
        make_backend("openvino", onnx_path)
    with pytest.raises(BackendError, match="does not exist"):
        make_backend("auto", onnx_path.with_name("missing.onnx"))


def test_input_validation(exported):
    backend = make_backend("onnxruntime-cpu", exported[1])
    good = random_images(1, 32, 48)
    for bad, pattern in [
        (good[0], r"4 axes.*images\[None\]"),
        (good.astype(np.float32), "uint8"),
        (good[..., :2], "3 RGB channels"),
        (good.tolist(), "numpy.ndarray"),
        (good[:0], "empty axis"),
    ]:
        with pytest.raises(BackendError, match=pattern):
            backend.infer(bad)
    # A non-contiguous view is accepted (copied to a contiguous array).
    assert backend.infer(good[:, ::-1]).labels.shape == (1, 32, 48)


def test_graph_without_meta_is_rejected(exported, tmp_path):
    model = onnx.load(str(exported[1]))
    del model.metadata_props[:]
    path = tmp_path / "nometa.onnx"
    onnx.save(model, str(path))
    with pytest.raises(BackendError, match="no 'moose_meta' entry"):
        make_backend("onnxruntime-cpu", path)
    model.metadata_props.add(key="moose_meta", value=json.dumps({"architecture": "x"}))
    onnx.save(model, str(path))
    with pytest.raises(BackendError, match="not a valid model description"):
        make_backend("onnxruntime-cpu", path)


def test_torch_backend_matches_onnxruntime(exported, caplog):
    ckpt, onnx_path = exported
    caplog.set_level(logging.INFO, logger="moose_ros.backends")
    reference = make_backend("auto", ckpt, threads=2)  # a checkpoint: only torch can run it
    assert reference.name == "torch-cpu" and "auto -> torch-cpu" in caplog.text
    from moose_ros.backends.torch_backend import TorchBackend

    reference = TorchBackend(ckpt, scores=("max_logit", "entropy"), threads=2)
    images = random_images(2, 65, 81, seed=7)
    ref = reference.infer(images)
    got = make_backend("onnxruntime-cpu", onnx_path).infer(images)
    assert (ref.labels == got.labels).mean() >= 0.999
    for name, want, have in [
        ("max_logit", ref.anomaly, got.anomaly),
        ("entropy", ref.extra_scores["entropy"], got.extra_scores["entropy"]),
    ]:
        assert np.abs(want - have).max() <= 1e-3 * float(want.max() - want.min()), name
    exported_meta = make_backend("onnxruntime-cpu", onnx_path).meta
    assert dataclasses.replace(reference.meta, extra={}) == dataclasses.replace(exported_meta, extra={})


def test_onnxruntime_path_never_imports_torch(exported):
    name = "auto" if not (HAS_TENSORRT or HAS_ORT_CUDA) else "onnxruntime-cpu"  # TensorRT's buffers are torch's
    code = (
        "import sys, numpy as np\n"
        "from moose_ros.backends import make_backend\n"
        "assert 'torch' not in sys.modules, 'import moose_ros.backends pulled in torch'\n"
        f"b = make_backend({name!r}, {str(exported[1])!r}, threads=1)\n"
        "r = b.infer(np.zeros((1, 32, 32, 3), np.uint8))\n"
        "print(b.name, r.labels.shape, 'torch' in sys.modules, 'torchvision' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["onnxruntime-cpu", "(1,", "32,", "32)", "False", "False"]


@pytest.mark.parametrize("name", ["auto", "onnxruntime-cpu"])
def test_float_input_graph_is_refused_at_load(tmp_path, name):
    """A graph whose input breaks the uint8 [N, H, W, 3] contract is refused by make_backend itself (one line
    naming the input as found), not at the first frame."""
    from test_bad_input_common import passthrough_graph

    path = passthrough_graph(tmp_path / "float.onnx", float_input=True)
    with pytest.raises(BackendError, match=r"takes input 'image' float \[.*\]; a moose_ros graph takes uint8") as err:
        make_backend(name, path)
    assert "\n" not in str(err.value)
    make_backend(name, passthrough_graph(tmp_path / "uint8.onnx"))  # the same graph with the contract loads


def test_auto_on_pickled_code_is_one_line(tmp_path, caplog, monkeypatch):
    """A .pt holding pickled code: `auto` names the refusal in one line, logs no traceback, runs nothing."""
    monkeypatch.chdir(tmp_path)
    torch.save({"format": "moose_ros.checkpoint", "hook": Exploit()}, tmp_path / "evil.pt")
    caplog.set_level(logging.DEBUG, logger="moose_ros")
    with pytest.raises(BackendError, match=r"torch: .*evil\.pt: refused to load") as err:
        make_backend("auto", tmp_path / "evil.pt")
    assert "\n" not in str(err.value) and not (tmp_path / "PWNED").exists()
    assert not any(record.exc_info for record in caplog.records)
