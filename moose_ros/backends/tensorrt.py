"""TensorRT backend: an engine built from the fused ONNX graph, cached on disk, run with TensorRT 10.

- Build: ``OnnxParser`` -> network, ``BuilderConfig`` with the FP16 flag (configurable), a persistent timing
  cache and one optimisation profile for the dynamic ``image`` input (:class:`ShapeProfile`).
- Cache: :class:`~moose_ros.backends.engine_cache.EngineCache`, keyed by ONNX sha256 + TensorRT version + GPU
  name + precision + shape profile; atomic writes; any mismatch rebuilds with a log line naming the field.
- Run: ``Runtime.deserialize_cuda_engine`` -> execution context; ``set_input_shape`` / ``set_tensor_address`` /
  ``execute_async_v3`` on a CUDA stream. Device memory and the stream come from torch (CUDA build), imported
  lazily; buffers are reused between calls and reallocated only when the input shape changes.

Neither TensorRT nor a GPU exists where this was written: the cache/key/buffer logic is tested in plain Python
(``engine_cache``); the engine path is tested by ``@pytest.mark.tensorrt`` tests wherever both exist.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from moose_ros.backends.base import ModelMeta, Result, validate_images
from moose_ros.backends.engine_cache import BufferSet, EngineCache, EngineKey, ShapeProfile
from moose_ros.backends.onnx_meta import file_sha256, read_meta
from moose_ros.errors import BackendError

__all__ = ["TensorRTBackend", "default_cache_dir", "import_tensorrt", "is_head_fusion_layer"]

LOG = logging.getLogger(__name__)

_INSTALL = "pip install 'moose_ros[gpu]' (tensorrt>=10 from NVIDIA's package index) on a machine with an NVIDIA GPU"


def default_cache_dir() -> Path:
    """``$MOOSE_CACHE_DIR/tensorrt``, else ``$XDG_CACHE_HOME/moose_ros/tensorrt``, else ``~/.cache/moose_ros/...``."""
    if os.environ.get("MOOSE_CACHE_DIR"):
        return Path(os.environ["MOOSE_CACHE_DIR"]) / "tensorrt"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "moose_ros" / "tensorrt"


def import_tensorrt() -> Any:
    """Import ``tensorrt`` (>= 10) or raise :class:`BackendError` saying what is missing."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise BackendError(f"tensorrt: the TensorRT Python package is not installed: {_INSTALL} ({err})") from err
    except OSError as err:  # the wheel is there but its CUDA/TensorRT libraries are not
        raise BackendError(f"tensorrt: TensorRT libraries cannot be loaded ({err}); {_INSTALL}") from err
    try:
        major = int(str(trt.__version__).split(".")[0])
    except ValueError as err:
        raise BackendError(f"tensorrt: cannot read the TensorRT version {trt.__version__!r}") from err
    if major < 10:
        raise BackendError(f"tensorrt: TensorRT {trt.__version__} found, this backend needs >= 10; {_INSTALL}")
    return trt


def _import_torch_cuda() -> Any:
    try:
        import torch
    except ImportError as err:
        raise BackendError(
            f"tensorrt: device memory is managed with torch (CUDA build): pip install torch ({err})"
        ) from err
    if not torch.cuda.is_available():
        raise BackendError("tensorrt: no CUDA GPU is visible (torch.cuda.is_available() is False)")
    return torch


class _TrtLogger:
    """Factory for a ``trt.ILogger`` that forwards to :mod:`logging`."""

    @staticmethod
    def make(trt: Any) -> Any:
        class Forward(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: Any, msg: str) -> None:
                if int(severity) <= int(trt.ILogger.Severity.ERROR):  # INTERNAL_ERROR = 0, ERROR = 1
                    LOG.error("TensorRT: %s", msg)
                elif int(severity) == int(trt.ILogger.Severity.WARNING):
                    LOG.warning("TensorRT: %s", msg)
                else:
                    LOG.debug("TensorRT: %s", msg)

        return Forward()


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


def _pin_head_fusion_fp32(trt: Any, network: Any, config: Any) -> int:
    """Ask TensorRT to keep head aggregation and scoring in float32 (as the torch backend does) when building fp16.

    Softmax-based scores take logs of probabilities that underflow in float16. Only layers whose outputs are all
    floating point are pinned; the constraint is a preference (TensorRT warns instead of failing).
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
    if pinned:
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    return pinned


def _build_engine(
    trt: Any, logger: Any, onnx_path: Path, *, fp16: bool, profile: ShapeProfile, timing_cache: bytes | None
) -> tuple[bytes, bytes]:
    """Parse ``onnx_path`` and build a serialised engine; returns (engine bytes, updated timing cache bytes)."""
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"tensorrt: the ONNX parser rejected '{onnx_path}': {errors}")
    config = builder.create_builder_config()
    if fp16:
        if not builder.platform_has_fast_fp16:
            LOG.warning("tensorrt: this GPU has no fast fp16; building fp16 anyway as asked")
        config.set_flag(trt.BuilderFlag.FP16)
        LOG.info("tensorrt: %d head-fusion/scoring layers kept in float32", _pin_head_fusion_fp32(trt, network, config))
    cache = config.create_timing_cache(timing_cache or b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    opt = builder.create_optimization_profile()
    opt.set_shape("image", (*profile.min, 3), (*profile.opt, 3), (*profile.max, 3))
    config.add_optimization_profile(opt)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"tensorrt: building the engine for '{onnx_path}' failed (see the TensorRT log above)")
    LOG.info("tensorrt: built engine for %s in %.1f s", onnx_path, time.perf_counter() - start)
    return bytes(serialized), bytes(config.get_timing_cache().serialize())


class TensorRTBackend:
    """Runs a fused MOoSe ONNX graph as a TensorRT engine.

    Args:
        model_path: the ``.onnx`` file written by ``moose export``.
        fp16: build with the FP16 flag (layers may run in float16; I/O stays uint8/float32).
        cache_dir: engine + timing cache folder (default :func:`default_cache_dir`).
        profile: optimisation profile of the dynamic input (default :class:`ShapeProfile`).
        device: CUDA device index.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        fp16: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        profile: ShapeProfile | None = None,
        device: int = 0,
    ) -> None:
        self.name = "tensorrt"
        self.model_path = Path(model_path)
        if self.model_path.suffix != ".onnx" or not self.model_path.is_file():
            raise BackendError(f"tensorrt: '{self.model_path}' is not an existing .onnx file (run `moose export`)")
        trt = import_tensorrt()
        torch = _import_torch_cuda()
        self.meta: ModelMeta = read_meta(self.model_path)
        self.profile = profile or ShapeProfile()
        self.precision = "fp16" if fp16 else "fp32"
        self._device = torch.device("cuda", device)
        logger = _TrtLogger.make(trt)
        key = EngineKey(
            onnx_sha256=file_sha256(self.model_path),
            tensorrt_version=str(trt.__version__),
            gpu_name=torch.cuda.get_device_name(self._device),
            precision=self.precision,
            profile=self.profile.describe(),
        )
        self.cache = EngineCache(cache_dir if cache_dir is not None else default_cache_dir())
        slot = self.model_path.stem
        timing_key = {"tensorrt_version": key.tensorrt_version, "gpu_name": key.gpu_name}

        def build() -> bytes:
            timing = self.cache.load(slot, timing_key, kind="timing")
            engine, new_timing = _build_engine(
                trt, logger, self.model_path, fp16=fp16, profile=self.profile, timing_cache=timing
            )
            self.cache.store(slot, timing_key, new_timing, kind="timing")
            return engine

        engine_bytes, built = self.cache.load_or_build(slot, key, build)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(engine_bytes)
        if engine is None and not built:
            LOG.warning("tensorrt: cached engine for %s did not deserialise; rebuilding", self.model_path)
            self.cache.invalidate(slot)
            engine_bytes, _ = self.cache.load_or_build(slot, key, build)
            engine = runtime.deserialize_cuda_engine(engine_bytes)
        if engine is None:
            raise BackendError(f"tensorrt: the engine built from '{self.model_path}' cannot be deserialised")
        self._trt, self._torch, self._runtime, self._engine = trt, torch, runtime, engine
        self._context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        dtypes = {name: np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name for name in names}
        self._outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._buffers = BufferSet(self.meta, dtypes, self._allocate)
        self._stream = torch.cuda.Stream(device=self._device)

    def _allocate(self, shape: tuple[int, ...], dtype: str) -> Any:
        torch = self._torch
        return torch.empty(shape, dtype=getattr(torch, dtype if dtype != "bool" else "bool"), device=self._device)

    def infer(self, images: np.ndarray) -> Result:
        """Run the engine on uint8 [N, H, W, 3] RGB images; see :class:`~moose_ros.backends.base.Result`."""
        torch = self._torch
        images = validate_images(images, backend=self.name)
        n, h, w, _ = images.shape
        if not self.profile.contains(n, h, w):
            raise BackendError(
                f"tensorrt: input {n}x{h}x{w} lies outside the engine's shape profile {self.profile.describe()} "
                "(build with a larger ShapeProfile; the engine cache rebuilds automatically)"
            )
        start = time.perf_counter()
        buffers, reallocated = self._buffers.ensure(images.shape)
        if reallocated:
            if not self._context.set_input_shape("image", tuple(images.shape)):
                raise BackendError(f"tensorrt: the engine refused input shape {images.shape}")
            for name, buf in buffers.items():
                self._context.set_tensor_address(name, buf.data_ptr())
            for name in self._outputs:
                got = tuple(self._context.get_tensor_shape(name))
                if got != tuple(buffers[name].shape):
                    raise BackendError(
                        f"tensorrt: output '{name}' has shape {got}, expected {tuple(buffers[name].shape)}"
                    )
        with torch.cuda.stream(self._stream):
            buffers["image"].copy_(torch.from_numpy(images), non_blocking=False)
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise BackendError(f"tensorrt: execute_async_v3 failed on input {images.shape}")
            host = {name: buffers[name].to("cpu") for name in self._outputs}
        self._stream.synchronize()
        elapsed_ms = (time.perf_counter() - start) * 1e3
        extra = {s: host[f"anomaly_{s}"].numpy() for s in self.meta.scores[1:]}
        return Result(
            labels=host["labels"].numpy(),
            anomaly=host["anomaly"].numpy(),
            extra_scores=extra,
            timings_ms={"infer": elapsed_ms},
        )

    def close(self) -> None:
        """Release the context, engine and device buffers."""
        self._buffers.buffers = {}
        self._context = None
        self._engine = None
