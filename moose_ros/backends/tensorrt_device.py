"""CUDA device access for the TensorRT backend: which GPU, its memory, a stream, copies (torch, imported lazily).

TensorRT builds, deserialises and runs on the *current* CUDA device of the calling thread. The backend wraps
every TensorRT call in :meth:`CudaDevice.activate`, so a backend made for ``device=1`` builds its engine, creates
its context and runs on GPU 1, where its buffers live, instead of on GPU 0.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from moose_ros.errors import BackendError

__all__ = ["CudaDevice", "TorchCudaDevice"]


class CudaDevice(Protocol):
    """The device operations the TensorRT backend needs (:class:`TorchCudaDevice` in production)."""

    index: int

    def activate(self) -> contextlib.AbstractContextManager[None]:
        """Make this device current for the calling thread inside the ``with`` block."""
        ...

    def properties(self) -> dict[str, str]:
        """``name``, ``compute_capability`` ("9.0"), ``sm_count`` and ``cuda_version`` of the device."""
        ...

    def empty(self, shape: tuple[int, ...], dtype: str) -> Any:
        """An uninitialised device buffer of ``shape`` and numpy dtype name ``dtype``."""
        ...

    def address(self, buffer: Any) -> int:
        """The device pointer of ``buffer``."""
        ...

    def stream_handle(self) -> int:
        """The CUDA stream (``cudaStream_t`` as int) TensorRT enqueues on."""
        ...

    def upload(self, buffer: Any, host: np.ndarray) -> None:
        """Copy ``host`` into ``buffer`` on the stream."""
        ...

    def download(self, buffer: Any) -> np.ndarray:
        """Copy ``buffer`` to a host array on the stream (waits for the stream)."""
        ...

    def synchronize(self) -> None:
        """Wait for all work on the stream."""
        ...


class TorchCudaDevice:
    """:class:`CudaDevice` on ``cuda:index`` with torch (CUDA build) memory and a torch CUDA stream.

    Raises:
        BackendError: torch is missing, has no CUDA, or ``index`` names no visible GPU.
    """

    def __init__(self, index: int = 0) -> None:
        try:
            import torch
        except ImportError as err:
            raise BackendError(
                f"tensorrt: device memory is managed with torch (CUDA build): pip install torch ({err})"
            ) from err
        if not torch.cuda.is_available():
            raise BackendError("tensorrt: no CUDA GPU is visible (torch.cuda.is_available() is False)")
        count = torch.cuda.device_count()
        if not 0 <= index < count:
            raise BackendError(f"tensorrt: device {index} does not exist ({count} CUDA device(s) visible)")
        self.index = int(index)
        self._torch = torch
        self._device = torch.device("cuda", self.index)
        with self.activate():
            self._stream = torch.cuda.Stream(device=self._device)

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        with self._torch.cuda.device(self._device):
            yield

    def properties(self) -> dict[str, str]:
        props = self._torch.cuda.get_device_properties(self._device)
        return {
            "name": str(props.name),
            "compute_capability": f"{props.major}.{props.minor}",
            "sm_count": str(props.multi_processor_count),
            "cuda_version": str(self._torch.version.cuda),
        }

    def empty(self, shape: tuple[int, ...], dtype: str) -> Any:
        torch = self._torch
        return torch.empty(shape, dtype=getattr(torch, dtype), device=self._device)

    def address(self, buffer: Any) -> int:
        return int(buffer.data_ptr())

    def stream_handle(self) -> int:
        return int(self._stream.cuda_stream)

    def upload(self, buffer: Any, host: np.ndarray) -> None:
        with self._torch.cuda.stream(self._stream):
            buffer.copy_(self._torch.from_numpy(host), non_blocking=False)

    def download(self, buffer: Any) -> np.ndarray:
        with self._torch.cuda.stream(self._stream):
            return buffer.to("cpu").numpy()

    def synchronize(self) -> None:
        self._stream.synchronize()
