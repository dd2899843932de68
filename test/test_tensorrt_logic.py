"""TensorRT backend logic without TensorRT or a GPU, on TensorRT 10 and 11 API surfaces.

The ``tensorrt`` module is replaced (through ``sys.modules``) by the explicit fake of the documented API in
``test_tensorrt_fake`` and the CUDA device by its numpy-backed fake; the backend code itself runs unchanged. What
is checked: the precision plan per version (TensorRT 11 never touches the names it removed), profile clamping to
static dims and ``max_pixels``, binding order (a refused shape or failed allocation leaves nothing stale), timing
cache handling, device-index propagation, NaN checks, corrupted cached engines, and that every TensorRT name the
backend touches is declared for the bindings check.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
from test_tensorrt_fake import FakeCuda, FakeDevice, FakeTensorRT, reset_touched, touched_names, write_fake_onnx

from moose_ros.backends.engine_cache import EngineCache, ShapeProfile, pack_cache_file
from moose_ros.backends.tensorrt import TensorRTBackend, check_finite
from moose_ros.backends.tensorrt_build import build_engine
from moose_ros.backends.tensorrt_compat import OPTIONAL_API, TRT_API, Capabilities, make_logger, plan_precision
from moose_ros.errors import BackendError

LOGGER = "moose_ros.backends"


@pytest.fixture(params=[10, 11], ids=["trt10", "trt11"])
def fake(request, monkeypatch):
    cuda = FakeCuda()
    trt = FakeTensorRT(cuda, major=request.param)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    reset_touched()
    return trt, cuda, request.param


def _backend(path, cuda, tmp_path, **kwargs):
    device = kwargs.pop("device_api", None) or FakeDevice(cuda)
    return TensorRTBackend(path, cache_dir=tmp_path / "cache", device_api=device, **kwargs)


def _images(n, h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_precision_plan_per_version(fake, tmp_path):
    _trt, cuda, major = fake
    path = write_fake_onnx(tmp_path / "m.onnx")
    backend = _backend(path, cuda, tmp_path, fp16=True)
    desc = backend._engine._desc
    if major == 10:
        assert backend.precision == "fp16-obey" and not desc["strongly_typed"]
        assert {"FP16", "OBEY_PRECISION_CONSTRAINTS"} <= set(desc["flags"])
        assert "/Identity_1" in desc["pinned"] and "/model/backbone/ReduceMean" not in desc["pinned"]
        assert "/Cast_1" not in desc["pinned"]  # uint8 output: not a float layer
    else:
        assert backend.precision == "typed" and desc["strongly_typed"] and desc["pinned"] == []
        assert desc["flags"] == ["RUNTIME_ACTIVATION_RESIZE_10_10", "TF32"]
    result = backend.infer(_images(1, 40, 56))
    assert result.labels.shape == (1, 40, 56) and result.labels.dtype == np.uint8
    assert set(result.extra_scores) == {"entropy"} and result.anomaly.dtype == np.float32
    fp32 = _backend(path, cuda, tmp_path, fp16=False)
    assert fp32.precision == "fp32" and "TF32" not in fp32._engine._desc["flags"]  # TF32 cleared
    assert "RUNTIME_ACTIVATION_RESIZE_10_10" in fp32._engine._desc["flags"]  # context memory follows the input
    assert fp32._engine._desc["strongly_typed"]  # both fakes offer STRONGLY_TYPED
    assert len(list((tmp_path / "cache").glob("m-*.engine"))) == 2  # one slot per key: fp16 and fp32 coexist


def test_every_touched_name_is_declared_for_the_bindings_check(fake, tmp_path):
    _trt, cuda, major = fake
    path = write_fake_onnx(tmp_path / "m.onnx")
    for fp16 in (True, False):
        backend = _backend(path, cuda, tmp_path, fp16=fp16)
        backend.infer(_images(2, 33, 35))
    touched = touched_names()
    undeclared = touched - set(TRT_API) - set(OPTIONAL_API)
    assert not undeclared, f"declare these in tensorrt_compat.TRT_API: {sorted(undeclared)}"
    removed = {"FP16", "OBEY_PRECISION_CONSTRAINTS", "platform_has_fast_fp16", "set_output_type"}
    if major == 10:
        assert removed <= touched


def test_capabilities_and_plans_without_fp16_or_typing():
    caps = Capabilities("9.9", False, False, False, True, False, False)
    assert plan_precision(caps, True).mode == "fp32" and not plan_precision(caps, True).strongly_typed
    assert "fp16 asked" in plan_precision(caps, True).note


def test_static_batch_profile_is_clamped_and_unclamped_is_rejected(fake, tmp_path, caplog):
    trt, cuda, _ = fake
    path = write_fake_onnx(tmp_path / "static.onnx", batch=1)
    backend = _backend(path, cuda, tmp_path)
    assert backend.profile.min[0] == backend.profile.opt[0] == backend.profile.max[0] == 1
    assert backend.infer(_images(1, 64, 80)).anomaly.shape == (1, 64, 80)
    with pytest.raises(BackendError, match="outside the engine's shape profile"):
        backend.infer(_images(2, 64, 80))
    # build_engine clamps an unclamped profile (max N = 2, which TensorRT rejects for N = 1) on its own too.
    caps = Capabilities.of(trt)
    caplog.set_level(logging.INFO, logger=LOGGER)
    built = build_engine(
        trt,
        make_logger(trt),
        path,
        caps=caps,
        plan=plan_precision(caps, False),
        profile=ShapeProfile(min=(1, 32, 32), opt=(1, 64, 64), max=(2, 256, 256)),
        max_pixels=None,
        timing_cache=None,
    )
    assert built.profile.max == (1, 256, 256) and "clamped to 1x32x32x3:1x64x64x3:1x256x256x3" in caplog.text


def test_profile_follows_max_pixels_and_fixed_output_size(fake, tmp_path):
    _trt, cuda, _ = fake
    path = write_fake_onnx(tmp_path / "m.onnx", out_hw=(24, 32))
    backend = _backend(path, cuda, tmp_path, max_pixels=512 * 512)
    assert backend.profile.max == (2, 512, 512) and backend.profile.opt == (1, 512, 512)
    result = backend.infer(_images(1, 300, 400))
    assert result.anomaly.shape == (1, 24, 32)  # the graph's real output size, not the input's
    assert backend._buffers.buffers["anomaly"].array.shape == (1, 24, 32)
    with pytest.raises(BackendError, match="outside the engine's shape profile"):
        backend.infer(_images(1, 600, 100))  # 60000 px is within budget, but H > the profile's max
    with pytest.raises(BackendError, match="exceeds max_pixels=262144"):
        big = ShapeProfile(opt=(1, 64, 64), max=(1, 1024, 1024))
        _backend(path, cuda, tmp_path, max_pixels=512 * 512, profile=big).infer(_images(1, 520, 520))


def test_shape_profile_clamp_rules():
    default = ShapeProfile(min=(1, 32, 32), opt=(1, 720, 1280), max=(2, 2048, 4096))
    shrunk = default.clamp((-1, -1, -1, 3), max_pixels=2048 * 1024)
    assert shrunk.max == (2, 1024, 2048) and shrunk.max[1] * shrunk.max[2] <= 2048 * 1024
    assert shrunk.opt == (1, 720, 1280)
    static = default.clamp((1, 480, -1, 3))
    assert static.min == (1, 480, 32) and static.opt == (1, 480, 1280) and static.max == (1, 480, 4096)
    assert ShapeProfile().clamp((4, -1, -1, 3)).opt[0] == 4
    odd = ShapeProfile(opt=(1, 64, 64), max=(1, 1000, 999)).clamp((-1, -1, -1, 3), max_pixels=777_777)
    assert odd.max[1] * odd.max[2] <= 777_777 and odd.max[1] >= 880
    with pytest.raises(BackendError, match=r"\(N, H, W, 3\)"):
        default.clamp((1, 3, 64, 64))
    assert ShapeProfile.for_max_pixels(16_777_216).max == (2, 4096, 4096)
    assert ShapeProfile.for_max_pixels(300 * 300).opt == (1, 300, 300)
    with pytest.raises(BackendError, match="max_pixels"):
        ShapeProfile.for_max_pixels(100)


def test_refused_shape_or_failed_allocation_leaves_no_stale_binding(fake, tmp_path):
    trt, cuda, _ = fake
    backend = _backend(write_fake_onnx(tmp_path / "m.onnx"), cuda, tmp_path, self_check=False)
    good, bad = _images(1, 64, 64), _images(1, 96, 64)
    backend.infer(good)
    assert backend._buffers.allocations == 1
    trt.knobs.refuse_shapes.add((1, 96, 64, 3))
    for _ in range(2):  # the second call must not believe the shape is bound and run on freed buffers
        with pytest.raises(BackendError, match="refused input shape"):
            backend.infer(bad)
        assert backend._buffers.input_shape is None and backend._buffers.buffers == {}
    np.testing.assert_array_equal(backend.infer(good).labels, good.astype(np.float32).mean(-1).astype(np.uint8))
    assert backend._buffers.allocations == 2  # rebound from scratch
    cuda.fail_alloc = True
    with pytest.raises(BackendError, match="MemoryError"):
        backend.infer(_images(1, 70, 70))
    assert backend._buffers.input_shape is None
    cuda.fail_alloc = False
    assert backend.infer(_images(1, 70, 70)).anomaly.shape == (1, 70, 70)


def test_timing_cache_stored_reused_or_skipped(fake, tmp_path, caplog):
    trt, cuda, _ = fake
    path = write_fake_onnx(tmp_path / "m.onnx")
    caplog.set_level(logging.INFO, logger=LOGGER)
    _backend(path, cuda, tmp_path, fp16=True)
    timing = list((tmp_path / "cache").glob("timing-*.timing"))
    assert len(timing) == 1 and timing[0].stat().st_mode & 0o777 == 0o644
    assert "cuda_version" in timing[0].read_bytes().decode("latin-1")
    # A stale blob refused by set_timing_cache: an empty cache is attached instead, the build goes on.
    trt.knobs.refuse_nonempty_timing_cache = True
    caplog.clear()
    _backend(path, cuda, tmp_path, fp16=False)
    assert "refused by set_timing_cache" in caplog.text and "building without" not in caplog.text
    # No cache accepted at all, and get_timing_cache() returning None: still builds, nothing stored.
    trt.knobs.set_timing_cache_fails = True
    trt.knobs.get_timing_cache_none = True
    timing[0].unlink()
    caplog.clear()
    backend = _backend(path, cuda, tmp_path, fp16=True, max_pixels=400 * 400)
    assert "building without a timing cache" in caplog.text and "returned no timing cache" in caplog.text
    assert not list((tmp_path / "cache").glob("timing-*")) and backend.infer(_images(1, 40, 40))


def test_device_index_reaches_every_tensorrt_call(fake, tmp_path):
    trt, cuda, _ = fake
    backend = _backend(write_fake_onnx(tmp_path / "m.onnx"), cuda, tmp_path, device_api=FakeDevice(cuda, index=1))
    backend.infer(_images(1, 32, 48))
    assert trt.calls and {device for _, device in trt.calls} == {1}, trt.calls
    assert {what for what, _ in trt.calls} >= {"Builder", "Runtime", "create_execution_context", "execute_async_v3"}
    assert backend._engine._desc["device"] == 1 and cuda.current == 0  # restored after each call


def test_nan_outputs_fail_the_self_check_and_inference(fake, tmp_path):
    trt, cuda, _ = fake
    path = write_fake_onnx(tmp_path / "m.onnx")
    trt.knobs.nan_outputs.add("anomaly_entropy")
    with pytest.raises(BackendError, match=r"'anomaly_entropy' has 1 NaN"):
        _backend(path, cuda, tmp_path, max_pixels=128 * 128)
    backend = _backend(path, cuda, tmp_path, max_pixels=128 * 128, self_check=False)
    with pytest.raises(BackendError, match="fp16=False"):
        backend.infer(_images(1, 32, 32))
    check_finite({"labels": np.zeros(3, np.uint8), "anomaly": np.array([np.inf, 1.0], np.float32)}, source="x")


def test_corrupted_cached_engine_is_rebuilt(fake, tmp_path, caplog):
    _trt, cuda, _ = fake
    path = write_fake_onnx(tmp_path / "m.onnx")
    backend = _backend(path, cuda, tmp_path, max_pixels=256 * 256)
    engine_file = backend.cache.path(backend._slot)
    cache = EngineCache(tmp_path / "cache")
    key, _ = __import__("moose_ros.backends.engine_cache", fromlist=["x"]).unpack_cache_file(engine_file.read_bytes())
    engine_file.write_bytes(pack_cache_file(key, b"engine bytes TensorRT cannot read"))  # valid file, bad engine
    caplog.set_level(logging.INFO, logger=LOGGER)
    again = _backend(path, cuda, tmp_path, max_pixels=256 * 256)
    assert "did not deserialise; rebuilding" in caplog.text and again.infer(_images(1, 32, 32))
    assert cache.load(backend._slot, key).startswith(b"FAKETRT1")
    engine_file.write_bytes(engine_file.read_bytes()[:-5])  # torn file: rejected by the cache, rebuilt
    caplog.clear()
    _backend(path, cuda, tmp_path, max_pixels=256 * 256)
    assert "rebuilding" in caplog.text


def test_every_tensorrt_failure_is_a_backend_error(fake, tmp_path):
    trt, cuda, _ = fake
    path = write_fake_onnx(tmp_path / "m.onnx")
    trt.knobs.builder_raises = RuntimeError("CUDA error 999 in the builder")
    with pytest.raises(BackendError, match="RuntimeError: CUDA error 999"):
        _backend(path, cuda, tmp_path)
    trt.knobs.builder_raises = None
    trt.knobs.parse_fails = True
    with pytest.raises(BackendError, match=r"ONNX parser rejected .*unsupported operator"):
        _backend(path, cuda, tmp_path)
