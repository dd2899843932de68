"""ONNX Runtime backend: the CPU execution provider (the embedded default) or the CUDA one when present.

Imports ``onnxruntime`` lazily (inside :class:`OnnxRuntimeBackend`), never torch.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from moose_ros.backends.base import ModelMeta, Result, check_image_input, validate_images
from moose_ros.backends.onnx_meta import meta_from_props
from moose_ros.errors import BackendError

__all__ = ["OnnxRuntimeBackend", "cuda_provider_available", "import_onnxruntime"]

LOG = logging.getLogger(__name__)

_CPU = "CPUExecutionProvider"
_CUDA = "CUDAExecutionProvider"


def import_onnxruntime() -> Any:
    """Import and return the ``onnxruntime`` module, or raise :class:`BackendError` saying what to install."""
    try:
        import onnxruntime
    except ImportError as err:
        raise BackendError(
            "ONNX Runtime is not installed: pip install 'moose_ros[cpu]' (onnxruntime) for CPU or "
            f"'moose_ros[gpu]' (onnxruntime-gpu) for CUDA ({err})"
        ) from err
    return onnxruntime


def cuda_provider_available() -> bool:
    """True when the installed ONNX Runtime offers the CUDA execution provider (onnxruntime-gpu)."""
    try:
        ort = import_onnxruntime()
    except BackendError:
        return False
    return _CUDA in ort.get_available_providers()


class OnnxRuntimeBackend:
    """Runs a fused MOoSe ONNX graph with ONNX Runtime.

    Args:
        model_path: the ``.onnx`` file written by ``moose export`` (carries its :class:`ModelMeta`).
        device: ``"cpu"`` or ``"cuda"`` (CUDA execution provider; fails if onnxruntime-gpu or a GPU is missing).
        threads: intra-op threads (``None``: ONNX Runtime's default, one per physical core).
        arena: keep ONNX Runtime's CPU memory arena (off by default: memory returns to the steady size after a
            large frame instead of staying at its peak).
    """

    def __init__(
        self, model_path: str | Path, *, device: str = "cpu", threads: int | None = None, arena: bool = False
    ) -> None:
        if device not in ("cpu", "cuda"):
            raise BackendError(f"onnxruntime: device '{device}' is unknown; allowed values: cpu, cuda")
        if threads is not None and threads < 1:
            raise BackendError(f"onnxruntime: threads must be >= 1 or None, got {threads}")
        self.name = f"onnxruntime-{device}"
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise BackendError(f"{self.name}: model file '{self.model_path}' does not exist")
        if self.model_path.suffix != ".onnx":
            raise BackendError(
                f"{self.name}: '{self.model_path}' is not an .onnx file; export a checkpoint with `moose export`"
            )
        ort = import_onnxruntime()
        providers = [_CPU]
        if device == "cuda":
            if _CUDA not in ort.get_available_providers():
                raise BackendError(
                    f"{self.name}: the CUDA execution provider is missing (installed onnxruntime offers "
                    f"{ort.get_available_providers()}); pip install 'moose_ros[gpu]' (onnxruntime-gpu, without the "
                    "CPU-only onnxruntime package) on a machine with an NVIDIA GPU"
                )
            providers = [_CUDA, _CPU]
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Without the CPU arena, ORT frees each run's buffers: one large frame does not pin its peak memory for the
        # life of the node (the arena keeps every block it ever grew to).
        options.enable_cpu_mem_arena = bool(arena)
        if threads is not None:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(self.model_path), options, providers=providers)
        except Exception as err:  # ORT raises its own Fail/InvalidGraph/... types
            raise BackendError(f"{self.name}: cannot load '{self.model_path}': {err}") from err
        if device == "cuda" and self._session.get_providers()[0] != _CUDA:
            used = self._session.get_providers()
            raise BackendError(f"{self.name}: ONNX Runtime fell back to {used} (no usable CUDA GPU)")
        first = self._session.get_inputs()[0]
        dtype = str(first.type).removeprefix("tensor(").removesuffix(")")
        check_image_input(first.name, dtype, first.shape, backend=self.name, source=str(self.model_path))
        props = dict(self._session.get_modelmeta().custom_metadata_map)
        self.meta: ModelMeta = meta_from_props(props, source=str(self.model_path))
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs()]
        expected = ["labels", "anomaly"] + [f"anomaly_{s}" for s in self.meta.scores[1:]]
        if sorted(self._outputs) != sorted(expected):
            raise BackendError(f"{self.name}: '{self.model_path}' has outputs {self._outputs}, expected {expected}")
        self.threads = threads
        LOG.debug("%s: loaded %s (providers %s)", self.name, self.model_path, self._session.get_providers())

    def infer(self, images: np.ndarray) -> Result:
        """Run the graph on uint8 [N, H, W, 3] RGB images; see :class:`~moose_ros.backends.base.Result`."""
        images = validate_images(images, backend=self.name)
        start = time.perf_counter()
        try:
            values = self._session.run(self._outputs, {self._input: images})
        except Exception as err:
            raise BackendError(f"{self.name}: inference failed on input {images.shape}: {err}") from err
        elapsed_ms = (time.perf_counter() - start) * 1e3
        out = dict(zip(self._outputs, values, strict=True))
        extra = {s: out[f"anomaly_{s}"] for s in self.meta.scores[1:]}
        return Result(
            labels=out["labels"], anomaly=out["anomaly"], extra_scores=extra, timings_ms={"infer": elapsed_ms},
            first_score=self.meta.scores[0],
        )

    def close(self) -> None:
        """Drop the session (ONNX Runtime frees its memory with it)."""
        self._session = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"OnnxRuntimeBackend({str(self.model_path)!r}, name={self.name!r}, threads={self.threads})"
