"""The inference backend protocol and the input check every backend runs.

A backend is built from one ``.onnx`` file that carries everything it needs: the graph and its
:class:`~moose_ros.contract.ModelMeta` (:mod:`moose_ros.contract` defines the graph's inputs, outputs, meta and
:class:`~moose_ros.contract.Result`; they are re-exported here).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from moose_ros.contract import META_KEY, ModelMeta, Result, check_image_input
from moose_ros.errors import BackendError

__all__ = ["META_KEY", "Backend", "ModelMeta", "Result", "check_image_input", "validate_images"]


@runtime_checkable
class Backend(Protocol):
    """An inference backend over one fused graph. Implementations live beside this module."""

    #: e.g. ``"onnxruntime-cpu"``, ``"onnxruntime-cuda"``, ``"tensorrt"``, ``"torch-cpu"``.
    name: str
    meta: ModelMeta

    def infer(self, images: np.ndarray) -> Result:
        """Run the fused graph on uint8 [N, H, W, 3] RGB images (C-contiguous)."""
        ...

    def close(self) -> None:
        """Release sessions, engines and device buffers."""
        ...


def validate_images(images: np.ndarray, *, backend: str) -> np.ndarray:
    """Check a batch handed to :meth:`Backend.infer` and return it C-contiguous.

    Args:
        images: uint8 [N, H, W, 3] RGB, N >= 1, H, W >= 1.
        backend: the backend's name, used in error messages.

    Raises:
        BackendError: wrong type, dtype, number of axes, channel count or an empty axis; the message says what
            came and what was expected.
    """
    if not isinstance(images, np.ndarray):
        raise BackendError(f"{backend}: images must be a numpy.ndarray uint8 [N, H, W, 3], got {type(images).__name__}")
    if images.ndim != 4:
        hint = " (add a batch axis: images[None])" if images.ndim == 3 else ""
        raise BackendError(f"{backend}: images must have 4 axes [N, H, W, 3], got shape {images.shape}{hint}")
    if images.shape[3] != 3:
        raise BackendError(f"{backend}: images must have 3 RGB channels on the last axis, got shape {images.shape}")
    if images.dtype != np.uint8:
        raise BackendError(f"{backend}: images must be uint8 RGB, got dtype {images.dtype}")
    if min(images.shape[:3]) < 1:
        raise BackendError(f"{backend}: images has an empty axis, got shape {images.shape}")
    return np.ascontiguousarray(images)
