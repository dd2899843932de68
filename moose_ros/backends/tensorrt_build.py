"""Build a serialised TensorRT engine from the fused ONNX graph (TensorRT 10.x and 11.x, public Python API).

Steps: ``OnnxParser`` -> network (strongly typed where the precision plan says so) -> the optimisation profile
clamped to the network's static input dims and the pixel budget -> precision flags -> timing cache ->
``build_serialized_network``. Every failure is a :class:`BackendError` saying which step failed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moose_ros.backends.engine_cache import ShapeProfile
from moose_ros.backends.tensorrt_compat import Capabilities, PrecisionPlan
from moose_ros.errors import BackendError

__all__ = ["BuildResult", "attach_timing_cache", "build_engine", "is_head_fusion_layer", "serialize_timing_cache"]

LOG = logging.getLogger("moose_ros.backends.tensorrt")


@dataclass(frozen=True)
class BuildResult:
    """A built engine.

    Attributes:
        engine: the serialised engine (``build_serialized_network``'s bytes).
        timing_cache: the updated timing cache, or None when TensorRT offered none.
        profile: the optimisation profile actually used (after clamping).
        seconds: wall-clock build time.
    """

    engine: bytes
    timing_cache: bytes | None
    profile: ShapeProfile
    seconds: float


def is_head_fusion_layer(name: str) -> bool:
    """True for a layer of the fused graph's own pre/post-processing (normalisation, head aggregation, upsampling,
    scores), False for the network's layers.

    The ONNX parser names layers after the exported nodes, whose names carry the torch module scope: the network's
    ops sit below a submodule (``/model/backbone/Conv``, ``/backbone/...``), the fused module's own ops at the root
    (``/Exp``, ``/Resize_1``). Text around the path (e.g. ``[ONNX Layer: /Exp]``) is ignored.
    """
    start = name.find("/")
    if start < 0:
        return False
    path = name[start:].split()[0].rstrip("]")
    return path.count("/") == 1


def pin_head_fusion_fp32(trt: Any, network: Any) -> int:
    """Pin the head aggregation and scoring layers to float32 (TensorRT 10 weakly typed fp16 builds only).

    Softmax-based scores take logs of probabilities that underflow in float16 (entropy turns NaN). Only layers
    whose outputs are all floating point are pinned. Returns how many layers were pinned.
    """
    floats = (trt.float32, trt.float16)
    pinned = 0
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if not is_head_fusion_layer(layer.name) or layer.num_outputs == 0:
            continue
        if any(layer.get_output(j).dtype not in floats for j in range(layer.num_outputs)):
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        pinned += 1
    return pinned


def attach_timing_cache(config: Any, blob: bytes | None) -> bool:
    """Give the builder config a timing cache seeded with ``blob`` (a previous build's), or an empty one.

    A blob TensorRT refuses (other version or GPU, corrupt) is dropped and an empty cache tried instead.
    Returns True when a cache is attached; False (logged) when TensorRT would not take even an empty one.
    """
    for seed in [blob, b""] if blob else [b""]:
        try:
            cache = config.create_timing_cache(seed)
            attached = cache is not None and bool(config.set_timing_cache(cache, ignore_mismatch=False))
        except Exception as err:  # TensorRT raises its own types for a corrupt blob
            LOG.warning("tensorrt: timing cache (%d bytes) refused: %s: %s", len(seed), type(err).__name__, err)
            continue
        if attached:
            return True
        LOG.warning("tensorrt: timing cache (%d bytes) refused by set_timing_cache", len(seed))
    LOG.warning("tensorrt: building without a timing cache")
    return False


def serialize_timing_cache(config: Any) -> bytes | None:
    """The config's timing cache as bytes, or None when ``get_timing_cache()`` gives none or an empty blob."""
    cache = config.get_timing_cache()
    if cache is None:
        return None
    data = cache.serialize()
    if data is None:
        return None
    data = bytes(data)
    return data or None


def _parse(trt: Any, builder: Any, logger: Any, onnx_path: Path, plan: PrecisionPlan) -> Any:
    flags = 0
    if plan.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)) or "no parser message"
        raise BackendError(f"tensorrt: the ONNX parser rejected '{onnx_path}': {errors}")
    return network, parser


def _input_dims(network: Any) -> tuple[int, ...]:
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    if [t.name for t in inputs] != ["image"]:
        raise BackendError(f"tensorrt: the graph must have one input 'image', it has {[t.name for t in inputs]}")
    return tuple(int(v) for v in inputs[0].shape)


def _configure_precision(trt: Any, builder: Any, network: Any, config: Any, caps: Capabilities, plan: PrecisionPlan):
    if plan.mode == "fp16-obey":
        if caps.fast_fp16_query and not builder.platform_has_fast_fp16:
            LOG.warning("tensorrt: this GPU has no fast fp16; building fp16 anyway as asked")
        config.set_flag(trt.BuilderFlag.FP16)
        pinned = pin_head_fusion_fp32(trt, network)
        if pinned:
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        LOG.info("tensorrt: fp16 build, %d head-fusion/scoring layers held in float32 (obeyed)", pinned)
    elif plan.mode == "fp32" and caps.tf32_flag:
        config.clear_flag(trt.BuilderFlag.TF32)
    LOG.info("tensorrt: precision plan %s: %s", plan.mode, plan.note)


def build_engine(
    trt: Any,
    logger: Any,
    onnx_path: Path,
    *,
    caps: Capabilities,
    plan: PrecisionPlan,
    profile: ShapeProfile,
    max_pixels: int | None,
    timing_cache: bytes | None,
) -> BuildResult:
    """Parse ``onnx_path`` and build a serialised engine (call with the target CUDA device current).

    Args:
        trt: the imported ``tensorrt`` module; logger: a ``trt.ILogger``.
        onnx_path: the fused graph.
        caps, plan: what this TensorRT offers and how precision is decided.
        profile: the requested optimisation profile of ``image`` (N, H, W); clamped to the network's static
            dims and to ``max_pixels`` (pixels per image) before use.
        timing_cache: a previous build's timing cache, or None.
    """
    builder = trt.Builder(logger)
    if builder is None:
        raise BackendError("tensorrt: trt.Builder could not be created (no usable CUDA device or driver?)")
    network, _parser = _parse(trt, builder, logger, onnx_path, plan)
    used = profile.clamp(_input_dims(network), max_pixels)
    if used != profile:
        LOG.info("tensorrt: shape profile %s clamped to %s", profile.describe(), used.describe())
    config = builder.create_builder_config()
    _configure_precision(trt, builder, network, config, caps, plan)
    if caps.user_managed_memory and caps.activation_resize:  # context memory follows the input, not the max
        config.set_preview_feature(trt.PreviewFeature.RUNTIME_ACTIVATION_RESIZE_10_10, True)
    attach_timing_cache(config, timing_cache)
    opt = builder.create_optimization_profile()
    opt.set_shape("image", (*used.min, 3), (*used.opt, 3), (*used.max, 3))
    config.add_optimization_profile(opt)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise BackendError(f"tensorrt: building the engine for '{onnx_path}' failed (see the TensorRT log above)")
    engine = bytes(serialized)
    if not engine:
        raise BackendError(f"tensorrt: building the engine for '{onnx_path}' returned an empty engine")
    LOG.info("tensorrt: built engine for %s in %.1f s (%s, profile %s)", onnx_path, seconds, plan.mode, used.describe())
    return BuildResult(engine, serialize_timing_cache(config), used, seconds)
