"""TensorRT backend: an engine built from the fused ONNX graph, cached on disk, run with TensorRT 10.x or 11.x.

- Build (:mod:`~moose_ros.backends.tensorrt_build`): ``OnnxParser`` -> network, precision per
  :func:`~moose_ros.backends.tensorrt_compat.plan_precision` (TensorRT 10 fp16: FP16 flag with the scoring layers
  pinned to float32 and OBEY; TensorRT 11: strongly typed, precisions as exported; fp32: TF32 off), a persistent
  timing cache, one optimisation profile for ``image`` clamped to the graph's static dims and to ``max_pixels``.
- Cache: :class:`~moose_ros.backends.engine_cache.EngineCache`, one slot per :class:`EngineKey` (ONNX sha256,
  TensorRT version, GPU name, compute capability, SM count, precision plan, profile, recipe version); the timing
  cache is keyed by TensorRT version, GPU and CUDA version. Atomic writes, readable files.
- Run: ``Runtime.deserialize_cuda_engine`` -> context (memory sized to the current shapes where TensorRT offers
  ``update_device_memory_size_for_shapes``); ``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``
  on a CUDA stream of the chosen device (:mod:`~moose_ros.backends.tensorrt_device`); bindings change only after
  every step succeeded (:class:`~moose_ros.backends.tensorrt_io.BufferSet`). Outputs are checked for NaN.

Any failure while building or loading is a :class:`BackendError` with the reason, so ``make_backend("auto")``
falls back to ONNX Runtime and logs why.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from moose_ros.backends.base import ModelMeta, Result, check_image_input, validate_images
from moose_ros.backends.engine_cache import (
    RECIPE_VERSION,
    EngineCache,
    EngineKey,
    ShapeProfile,
    timing_cache_key,
    timing_cache_slot,
)
from moose_ros.backends.onnx_meta import file_sha256, read_meta
from moose_ros.backends.tensorrt_build import build_engine, is_head_fusion_layer
from moose_ros.backends.tensorrt_compat import Capabilities, make_logger, plan_precision, supported_version
from moose_ros.backends.tensorrt_device import CudaDevice, TorchCudaDevice
from moose_ros.backends.tensorrt_io import BufferSet
from moose_ros.errors import BackendError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "TensorRTBackend",
    "check_finite",
    "default_cache_dir",
    "import_tensorrt",
    "is_head_fusion_layer",
    "onnx_input_dims",
]

LOG = logging.getLogger(__name__)

#: Pixels per image the default profile admits (the node's ``max_pixels`` default, 4096 x 4096).
DEFAULT_MAX_PIXELS = 16_777_216

_INSTALL = "pip install 'moose_ros[gpu]' (tensorrt>=10,<12) on a machine with an NVIDIA GPU"


def default_cache_dir() -> Path:
    """``$MOOSE_CACHE_DIR/tensorrt``, else ``$XDG_CACHE_HOME/moose_ros/tensorrt``, else ``~/.cache/moose_ros/...``."""
    if os.environ.get("MOOSE_CACHE_DIR"):
        return Path(os.environ["MOOSE_CACHE_DIR"]) / "tensorrt"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "moose_ros" / "tensorrt"


def import_tensorrt() -> Any:
    """Import ``tensorrt`` (10.x or 11.x) or raise :class:`BackendError` saying what is missing or wrong."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise BackendError(f"tensorrt: the TensorRT Python package is not installed: {_INSTALL} ({err})") from err
    except Exception as err:  # the wheel is there but its CUDA/TensorRT libraries are not (OSError, RuntimeError)
        raise BackendError(f"tensorrt: TensorRT cannot be loaded ({type(err).__name__}: {err}); {_INSTALL}") from err
    version = str(getattr(trt, "__version__", "unknown"))
    ok, major = supported_version(version)
    if major < 0:
        raise BackendError(f"tensorrt: cannot read the TensorRT version {version!r}")
    if not ok:
        raise BackendError(f"tensorrt: TensorRT {version} found, this backend supports 10.x and 11.x; {_INSTALL}")
    return trt


def onnx_input_dims(path: Path) -> tuple[int, ...]:
    """Dims of the graph input ``image`` in ``path``: the size of a static axis, -1 for a dynamic one."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inputs = [i for i in graph.input if i.name == "image"]
    if not inputs:
        raise BackendError(f"tensorrt: '{path}' has no input named 'image'")
    tensor = inputs[0].type.tensor_type
    dims = tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor.shape.dim)
    dtype = onnx.TensorProto.DataType.Name(tensor.elem_type).lower()
    check_image_input("image", dtype, dims, backend="tensorrt", source=str(path))
    return dims


def check_finite(outputs: dict[str, np.ndarray], *, source: str) -> None:
    """Raise :class:`BackendError` naming every float output of ``outputs`` that holds NaN (inf is allowed:
    max-logit can be large, NaN is always a precision or engine fault)."""
    bad = []
    for name, value in outputs.items():
        if value.dtype.kind == "f" and value.size and np.isnan(value.max()):  # max propagates NaN: one fast pass
            bad.append(f"'{name}' has {int(np.isnan(value).sum())} NaN of {value.size}")
    if bad:
        raise BackendError(f"tensorrt: {source}: {'; '.join(bad)} (a float16 precision problem? build with fp16=False)")


class _ContextOps:
    """:class:`~moose_ros.backends.tensorrt_io.BindOps` over a TensorRT execution context."""

    def __init__(self, context: Any, device: CudaDevice, user_managed: bool) -> None:
        self.context, self.device, self.user_managed = context, device, user_managed

    def set_input_shape(self, shape: tuple[int, ...]) -> bool:
        return bool(self.context.set_input_shape("image", tuple(shape)))

    def output_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.context.get_tensor_shape(name))

    def scratch_bytes(self) -> int:
        return int(self.context.update_device_memory_size_for_shapes()) if self.user_managed else 0

    def set_scratch(self, buffer: Any, size: int) -> None:
        self.context.set_device_memory(self.device.address(buffer), size)

    def set_address(self, name: str, buffer: Any) -> bool:
        return bool(self.context.set_tensor_address(name, self.device.address(buffer)))


class TensorRTBackend:
    """Runs a fused MOoSe ONNX graph as a TensorRT engine.

    Args:
        model_path: the ``.onnx`` file written by ``moose export``.
        fp16: ask for float16 (see :func:`~moose_ros.backends.tensorrt_compat.plan_precision`; I/O stays
            uint8/float32). False: float32 with TF32 off.
        cache_dir: engine + timing cache folder (default :func:`default_cache_dir`).
        profile: optimisation profile of ``image`` (N, H, W); default :meth:`ShapeProfile.for_max_pixels`.
            Clamped to the graph's static dims and to ``max_pixels``.
        device: CUDA device index; building, loading and running all happen on it.
        max_pixels: most pixels (H x W) per image the engine must accept.
        self_check: run one inference at start-up and fail (BackendError) if any output is NaN.
        device_api: device operations (default :class:`TorchCudaDevice` on ``device``; tests pass their own).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        fp16: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        profile: ShapeProfile | None = None,
        device: int = 0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        self_check: bool = True,
        device_api: CudaDevice | None = None,
    ) -> None:
        self.name = "tensorrt"
        self.model_path = Path(model_path)
        if self.model_path.suffix != ".onnx" or not self.model_path.is_file():
            raise BackendError(f"tensorrt: '{self.model_path}' is not an existing .onnx file (run `moose export`)")
        self._context: Any = None
        self._engine: Any = None
        try:
            self._open(fp16, cache_dir, profile, device, max_pixels, device_api)
            if self_check:
                self._self_check()
        except BackendError:
            self.close()
            raise
        except Exception as err:  # anything TensorRT, CUDA or torch raise: a reason, never a crash of `auto`
            self.close()
            raise BackendError(f"tensorrt: {type(err).__name__}: {err}") from err

    def _open(
        self,
        fp16: bool,
        cache_dir: str | os.PathLike[str] | None,
        profile: ShapeProfile | None,
        device: int,
        max_pixels: int,
        device_api: CudaDevice | None,
    ) -> None:
        trt = import_tensorrt()
        self._device = device_api if device_api is not None else TorchCudaDevice(device)
        self.meta: ModelMeta = read_meta(self.model_path)
        self.max_pixels = int(max_pixels)
        self.caps = Capabilities.of(trt)
        self.plan = plan_precision(self.caps, fp16)
        requested = profile or ShapeProfile.for_max_pixels(self.max_pixels)
        self.profile = requested.clamp(onnx_input_dims(self.model_path), self.max_pixels)
        self.precision = self.plan.label
        props = self._device.properties()
        key = EngineKey(
            onnx_sha256=file_sha256(self.model_path),
            tensorrt_version=self.caps.version,
            gpu_name=props["name"],
            precision=self.plan.label,
            profile=self.profile.describe(),
            compute_capability=props["compute_capability"],
            sm_count=props["sm_count"],
            recipe=f"v{RECIPE_VERSION}:{self.plan.mode}:strongly_typed={self.plan.strongly_typed}",
        )
        timing_key = timing_cache_key(
            tensorrt_version=key.tensorrt_version,
            gpu_name=key.gpu_name,
            compute_capability=key.compute_capability,
            cuda_version=props["cuda_version"],
        )
        self.cache = EngineCache(cache_dir if cache_dir is not None else default_cache_dir())
        self._slot = key.slot(self.model_path.stem)
        logger = make_logger(trt)
        with self._device.activate():
            self._trt, self._runtime = trt, trt.Runtime(logger)
            engine = self._load_engine(trt, logger, key, timing_key)
            self._engine = engine
            self._context = self._create_context(trt, engine)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        dtypes = {name: np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name for name in names}
        self._outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._ops = _ContextOps(self._context, self._device, self.caps.user_managed_memory)
        self._buffers = BufferSet(self.meta, dtypes, self._device.empty)

    def _build(self, trt: Any, logger: Any, timing_key: dict[str, str]) -> bytes:
        timing_slot = timing_cache_slot(timing_key)
        result = build_engine(
            trt,
            logger,
            self.model_path,
            caps=self.caps,
            plan=self.plan,
            profile=self.profile,
            max_pixels=self.max_pixels,
            timing_cache=self.cache.load(timing_slot, timing_key, kind="timing"),
        )
        if result.timing_cache is not None:
            self.cache.store(timing_slot, timing_key, result.timing_cache, kind="timing")
        else:
            LOG.info("tensorrt: TensorRT returned no timing cache; nothing stored")
        return result.engine

    def _deserialize(self, data: bytes) -> Any:
        try:
            return self._runtime.deserialize_cuda_engine(data)
        except Exception as err:  # some versions raise instead of returning None
            LOG.warning("tensorrt: deserialize_cuda_engine raised %s: %s", type(err).__name__, err)
            return None

    def _load_engine(self, trt: Any, logger: Any, key: EngineKey, timing_key: dict[str, str]) -> Any:
        data, built = self.cache.load_or_build(self._slot, key, lambda: self._build(trt, logger, timing_key))
        engine = self._deserialize(data)
        if engine is None and not built:
            LOG.warning("tensorrt: cached engine %s did not deserialise; rebuilding", self.cache.path(self._slot))
            self.cache.invalidate(self._slot)
            data, _ = self.cache.load_or_build(self._slot, key, lambda: self._build(trt, logger, timing_key))
            engine = self._deserialize(data)
        if engine is None:
            raise BackendError(f"tensorrt: the engine built from '{self.model_path}' cannot be deserialised")
        return engine

    def _create_context(self, trt: Any, engine: Any) -> Any:
        if self.caps.user_managed_memory:
            context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        else:
            LOG.info("tensorrt: TensorRT %s sizes context memory for the profile's max shape", self.caps.version)
            context = engine.create_execution_context()
        if context is None:
            raise BackendError("tensorrt: create_execution_context failed (out of device memory?)")
        return context

    def _check_input(self, images: np.ndarray) -> None:
        n, h, w, _ = images.shape
        if h * w > self.max_pixels:
            raise BackendError(f"tensorrt: input {h}x{w} = {h * w} pixels exceeds max_pixels={self.max_pixels}")
        if not self.profile.contains(n, h, w):
            raise BackendError(
                f"tensorrt: input {n}x{h}x{w} lies outside the engine's shape profile {self.profile.describe()} "
                "(build with a larger ShapeProfile or max_pixels; the engine cache rebuilds automatically)"
            )

    def infer(self, images: np.ndarray) -> Result:
        """Run the engine on uint8 [N, H, W, 3] RGB images; see :class:`~moose_ros.backends.base.Result`.

        Raises:
            BackendError: bad input, input outside the profile or above ``max_pixels``, a refused binding, a
                failed enqueue, or NaN in a score output.
        """
        if self._context is None:
            raise BackendError("tensorrt: the backend is closed")
        images = validate_images(images, backend=self.name)
        self._check_input(images)
        start = time.perf_counter()
        device = self._device
        with device.activate():
            buffers, _ = self._buffers.ensure(images.shape, self._ops)
            device.upload(buffers["image"], images)
            if not self._context.execute_async_v3(device.stream_handle()):
                raise BackendError(f"tensorrt: execute_async_v3 failed on input {images.shape}")
            host = {name: device.download(buffers[name]) for name in self._outputs}
            device.synchronize()
        elapsed_ms = (time.perf_counter() - start) * 1e3
        check_finite(host, source=f"input {images.shape}")
        extra = {s: host[f"anomaly_{s}"] for s in self.meta.scores[1:]}
        return Result(
            labels=host["labels"], anomaly=host["anomaly"], extra_scores=extra, timings_ms={"infer": elapsed_ms},
            first_score=self.meta.scores[0],
        )

    def _self_check(self) -> None:
        n, h, w = self.profile.min[0], self.profile.opt[1], self.profile.opt[2]
        ramp = (np.arange(h * w * 3, dtype=np.uint32) * 2654435761 % 251).astype(np.uint8)
        self.infer(np.broadcast_to(ramp.reshape(1, h, w, 3), (n, h, w, 3)).copy())

    def close(self) -> None:
        """Release the context, engine and device buffers (idempotent)."""
        if getattr(self, "_buffers", None) is not None:
            self._buffers.invalidate()
        self._context = None
        self._engine = None
