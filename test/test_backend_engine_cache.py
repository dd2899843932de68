"""TensorRT engine cache (plain Python): reuse, rebuild on any key change with the field named, torn writes.

The builder is a function passed in that returns bytes: this tests the cache, not TensorRT.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from moose_ros.backends.base import ModelMeta
from moose_ros.backends.engine_cache import (
    BufferSet,
    CacheFileError,
    EngineCache,
    EngineKey,
    ShapeProfile,
    atomic_write_bytes,
    output_shapes,
    pack_cache_file,
    unpack_cache_file,
)
from moose_ros.errors import BackendError

KEY = EngineKey(
    onnx_sha256="a" * 64,
    tensorrt_version="10.3.0",
    gpu_name="NVIDIA Jetson Orin",
    precision="fp16",
    profile=ShapeProfile().describe(),
    compute_capability="8.7",
    sm_count="16",
    recipe="v2:fp16-obey",
)


class CountingBuilder:
    """Stands in for the TensorRT build step: returns distinct engine bytes and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return f"engine #{self.calls} ".encode() * 1000


def test_same_key_reuses_engine(tmp_path, caplog):
    cache, build = EngineCache(tmp_path), CountingBuilder()
    first, built = cache.load_or_build("model", KEY, build)
    assert built and build.calls == 1
    caplog.set_level(logging.INFO, logger="moose_ros.backends.engine_cache")
    again, built = EngineCache(tmp_path).load_or_build("model", KEY, build)  # a new process: a new cache object
    assert not built and build.calls == 1 and again == first
    assert "reusing" in caplog.text


@pytest.mark.parametrize(
    "field,value",
    [
        ("onnx_sha256", "b" * 64),
        ("tensorrt_version", "10.4.0"),
        ("gpu_name", "NVIDIA GeForce RTX 4090"),
        ("precision", "fp32"),
        ("profile", ShapeProfile(max=(1, 1024, 2048)).describe()),
        ("compute_capability", "9.0"),
        ("sm_count", "66"),
        ("recipe", "v99"),
    ],
)
def test_changed_key_field_rebuilds_and_names_it(tmp_path, caplog, field, value):
    cache, build = EngineCache(tmp_path), CountingBuilder()
    cache.load_or_build("model", KEY, build)
    changed = EngineKey(**{**KEY.to_dict(), field: value})
    caplog.set_level(logging.INFO, logger="moose_ros.backends.engine_cache")
    payload, built = cache.load_or_build("model", changed, build)
    assert built and build.calls == 2 and payload.startswith(b"engine #2")
    lines = [r.getMessage() for r in caplog.records if "rebuilding because" in r.getMessage()]
    assert len(lines) == 1 and f"rebuilding because {field} differs" in lines[0] and repr(value) in lines[0]
    others = set(KEY.to_dict()) - {field}
    assert not any(f"{name} (cached" in lines[0] for name in others)
    # The new engine replaced the old one: the changed key is now reused.
    assert cache.load_or_build("model", changed, build) == (payload, False)


def test_crash_between_write_and_rename_keeps_old_engine(tmp_path):
    cache, build = EngineCache(tmp_path), CountingBuilder()
    old, _ = cache.load_or_build("model", KEY, build)

    def crash(tmp):
        assert tmp.exists() and tmp.parent == tmp_path  # the full new file exists, not yet renamed
        raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        cache.store("model", KEY, b"new engine that never lands", before_replace=crash)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.engine"]  # no temp file left behind
    assert cache.load("model", KEY) == old


def test_crash_before_first_rename_leaves_nothing_loadable(tmp_path):
    cache = EngineCache(tmp_path)

    def crash(tmp):
        raise OSError("disk vanished")

    with pytest.raises(OSError):
        cache.store("model", KEY, b"x" * 100, before_replace=crash)
    assert not cache.path("model").exists()
    assert cache.load("model", KEY) is None


@pytest.mark.parametrize("cut", [1, 10, 100, -1, -33, -40])
def test_truncated_file_is_never_loaded(tmp_path, caplog, cut):
    cache, build = EngineCache(tmp_path), CountingBuilder()
    cache.load_or_build("model", KEY, build)
    path = cache.path("model")
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    caplog.set_level(logging.WARNING, logger="moose_ros.backends.engine_cache")
    assert cache.load("model", KEY) is None
    assert "rebuilding" in caplog.text
    payload, built = cache.load_or_build("model", KEY, build)
    assert built and build.calls == 2 and unpack_cache_file(path.read_bytes())[1] == payload


def test_corrupt_or_foreign_files_are_rejected(tmp_path):
    good = pack_cache_file(KEY.to_dict(), b"payload bytes" * 50)
    assert unpack_cache_file(good) == (KEY.to_dict(), b"payload bytes" * 50)
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    with pytest.raises(CacheFileError, match="checksum"):
        unpack_cache_file(bytes(flipped))
    with pytest.raises(CacheFileError, match="magic"):
        unpack_cache_file(b"\x00TRT engine from elsewhere" * 10)
    with pytest.raises(CacheFileError, match="size"):
        unpack_cache_file(good + b"trailing garbage")
    assert issubclass(CacheFileError, BackendError)


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two two")
    assert target.read_bytes() == b"two two" and os.listdir(target.parent) == ["f.bin"]


def test_builder_returning_nothing_is_an_error(tmp_path):
    with pytest.raises(BackendError, match="no engine bytes"):
        EngineCache(tmp_path).load_or_build("model", KEY, lambda: b"")


def test_shape_profile_and_binding_shapes():
    profile = ShapeProfile(min=(1, 64, 64), opt=(1, 480, 640), max=(2, 1024, 2048))
    assert profile.describe() == "1x64x64x3:1x480x640x3:2x1024x2048x3"
    assert profile.contains(2, 1024, 2048) and not profile.contains(3, 480, 640) and not profile.contains(1, 32, 64)
    with pytest.raises(BackendError, match="axis H"):
        ShapeProfile(min=(1, 500, 64), opt=(1, 480, 640), max=(1, 1024, 1024))

    meta = ModelMeta(architecture="a", classes=("x", "y"), colors=((0, 0, 0), (1, 1, 1)), scores=("max_logit", "msp"))
    assert output_shapes(meta, (2, 257, 333, 3)) == {
        "labels": (2, 257, 333),
        "anomaly": (2, 257, 333),
        "anomaly_msp": (2, 257, 333),
    }
    fixed = ModelMeta(architecture="a", classes=("x",), colors=((0, 0, 0),), output_size=(120, 160))
    assert output_shapes(fixed, (1, 720, 1280, 3))["anomaly"] == (1, 120, 160)
    with pytest.raises(BackendError, match=r"\(N, H, W, 3\)"):
        output_shapes(meta, (1, 3, 64, 64))


class _Context:
    """Stands in for an execution context (the BindOps protocol): accepts every shape, reports meta's shapes."""

    def __init__(self, meta):
        self.meta, self.shape = meta, None

    def set_input_shape(self, shape):
        self.shape = shape
        return True

    def output_shape(self, name):
        return output_shapes(self.meta, self.shape)[name]

    def scratch_bytes(self):
        return 0

    def set_scratch(self, buffer, size):
        raise AssertionError("no scratch asked for")

    def set_address(self, name, buffer):
        return True


def test_buffers_reallocated_only_on_shape_change():
    meta = ModelMeta(architecture="a", classes=("x",), colors=((0, 0, 0),))
    dtypes = {"image": "uint8", "labels": "uint8", "anomaly": "float32"}
    buffers = BufferSet(meta, dtypes, lambda shape, dtype: np.empty(shape, dtype=dtype))
    ops = _Context(meta)
    first, changed = buffers.ensure((1, 64, 96, 3), ops)
    assert changed and first["labels"].shape == (1, 64, 96) and first["anomaly"].dtype == np.float32
    again, changed = buffers.ensure((1, 64, 96, 3), ops)
    assert not changed and again["anomaly"] is first["anomaly"] and buffers.allocations == 1
    bigger, changed = buffers.ensure((2, 64, 96, 3), ops)
    assert changed and bigger["image"].shape == (2, 64, 96, 3) and buffers.allocations == 2
    broken_meta = ModelMeta(architecture="a", classes=("x",), colors=((0, 0, 0),), scores=("a", "b"))
    broken = BufferSet(broken_meta, dtypes, lambda s, d: np.empty(s, d))
    with pytest.raises(BackendError, match="anomaly_b"):
        broken.ensure((1, 8, 8, 3), _Context(broken_meta))
    assert broken.input_shape is None


def test_cache_files_are_readable_and_one_slot_per_key(tmp_path):
    cache = EngineCache(tmp_path)
    path = cache.store(KEY.slot("model"), KEY, b"engine")
    assert path.stat().st_mode & 0o777 == 0o644
    other = EngineKey(**{**KEY.to_dict(), "onnx_sha256": "c" * 64})  # another model.onnx in another folder
    assert KEY.slot("model") != other.slot("model") and KEY.slot("model").startswith("model-")
    cache.store(other.slot("model"), other, b"other engine")
    assert cache.load(KEY.slot("model"), KEY) == b"engine"  # not evicted by the model with the same stem
    for field in ("compute_capability", "sm_count", "recipe"):
        assert EngineKey(**{**KEY.to_dict(), field: "x"}).slot("model") != KEY.slot("model"), field
