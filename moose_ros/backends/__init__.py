"""Inference backends behind one protocol (:class:`~moose_ros.backends.base.Backend`).

``make_backend("auto" | name, model_path, ...)`` picks TensorRT > ONNX Runtime CUDA > ONNX Runtime CPU > torch and
logs why each skipped option was skipped. Heavy dependencies (tensorrt, onnxruntime, torch) are imported only by
the backend that is made: importing this package and making an ONNX Runtime backend never imports torch.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from moose_ros.backends.base import META_KEY, Backend, ModelMeta, Result, validate_images
from moose_ros.errors import BackendError, MooseError

__all__ = ["BACKEND_NAMES", "META_KEY", "Backend", "ModelMeta", "Result", "make_backend", "validate_images"]

LOG = logging.getLogger(__name__)

#: Accepted ``name`` values of :func:`make_backend`.
BACKEND_NAMES = ("auto", "tensorrt", "onnxruntime", "onnxruntime-cuda", "onnxruntime-cpu", "torch")
_AUTO_ORDER = ("tensorrt", "onnxruntime-cuda", "onnxruntime-cpu", "torch")


def _make(
    name: str, path: Path, *, threads: int | None, fp16: bool, cache_dir: str | os.PathLike[str] | None
) -> Backend:
    if name == "tensorrt":
        from moose_ros.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(path, fp16=fp16, cache_dir=cache_dir)
    if name in ("onnxruntime-cpu", "onnxruntime-cuda"):
        from moose_ros.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, device=name.rsplit("-", 1)[1], threads=threads)
    if name == "onnxruntime":
        from moose_ros.backends.onnxruntime import OnnxRuntimeBackend, cuda_provider_available

        return OnnxRuntimeBackend(path, device="cuda" if cuda_provider_available() else "cpu", threads=threads)
    if name == "torch":
        from moose_ros.backends.torch_backend import TorchBackend

        return TorchBackend(path, fp16=fp16, threads=threads)
    raise BackendError(f"backend '{name}' is unknown; allowed values: {', '.join(BACKEND_NAMES)}")


def _skip_reason(name: str, path: Path) -> str | None:
    """Why ``name`` cannot serve ``path`` (cheap checks, no heavy import), or None if it is worth trying."""
    is_onnx = path.suffix == ".onnx"
    if name == "tensorrt":
        if not is_onnx:
            return f"needs an .onnx graph, got '{path.name}'"
        if importlib.util.find_spec("tensorrt") is None:
            return "the tensorrt package is not installed (pip install 'moose_ros[gpu]')"
        return None
    if name.startswith("onnxruntime"):
        if not is_onnx:
            return f"needs an .onnx graph, got '{path.name}'"
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed (pip install 'moose_ros[cpu]')"
        if name == "onnxruntime-cuda":
            from moose_ros.backends.onnxruntime import cuda_provider_available

            if not cuda_provider_available():
                return "ONNX Runtime has no CUDA execution provider (onnxruntime-gpu not installed)"
        return None
    if name == "torch":
        if path.suffix != ".pt":
            return f"needs a checkpoint (.pt), got '{path.name}'"
        if importlib.util.find_spec("torch") is None:
            return "torch is not installed (pip install 'moose_ros[train]')"
        return None
    return f"unknown backend '{name}'"


def make_backend(
    name: str,
    model_path: str | os.PathLike[str],
    *,
    threads: int | None = None,
    fp16: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Backend:
    """Make the inference backend ``name`` for ``model_path``.

    Args:
        name: ``"auto"`` (TensorRT > ONNX Runtime CUDA > ONNX Runtime CPU > torch, first that works), or one of
            ``"tensorrt"``, ``"onnxruntime"`` (CUDA provider if present, else CPU), ``"onnxruntime-cuda"``,
            ``"onnxruntime-cpu"``, ``"torch"``.
        model_path: ``.onnx`` fused graph (TensorRT, ONNX Runtime) or ``.pt`` checkpoint (torch).
        threads: CPU intra-op threads (ONNX Runtime CPU, torch CPU); None = the runtime's default.
        fp16: TensorRT FP16 flag / torch float16 on CUDA.
        cache_dir: TensorRT engine cache folder (default ``~/.cache/moose_ros/tensorrt``).

    Raises:
        BackendError: the named backend is unavailable (says what is missing), or ``auto`` found none.
    """
    path = Path(model_path)
    if not path.is_file():
        raise BackendError(f"model file '{path}' does not exist")
    if name != "auto":
        if name not in BACKEND_NAMES:
            raise BackendError(f"backend '{name}' is unknown; allowed values: {', '.join(BACKEND_NAMES)}")
        backend = _make(name, path, threads=threads, fp16=fp16, cache_dir=cache_dir)
        LOG.info("backend %s for %s (asked for explicitly)", backend.name, path)
        return backend
    skipped: list[str] = []
    tried: list[str] = []
    for candidate in _AUTO_ORDER:
        reason = _skip_reason(candidate, path)
        if reason is None:
            try:
                backend = _make(candidate, path, threads=threads, fp16=fp16, cache_dir=cache_dir)
            except MooseError as err:  # BackendError, or the model file's own (CheckpointError, ConfigError ...)
                tried.append(f"{candidate}: {err}")
                LOG.info("backend auto: skipping %s: %s", candidate, err)
                continue
            except Exception as err:  # a backend bug or a library's own error type must not stop the fallback
                tried.append(f"{candidate}: failed with {type(err).__name__}: {err}")
                LOG.warning("backend auto: %s raised %s", candidate, type(err).__name__, exc_info=True)
                continue
            why = f"; skipped: {'; '.join(skipped + tried)}" if skipped or tried else ""
            LOG.info("backend auto -> %s for %s%s", backend.name, path, why)
            return backend
        skipped.append(f"{candidate}: {reason}")
        LOG.info("backend auto: skipping %s: %s", candidate, reason)
    # one line: the reasons of the backends that tried first (the model's own error), then the skipped ones
    raise BackendError(f"no inference backend can run '{path}': {'; '.join(tried + skipped)}")
