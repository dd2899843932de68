"""Device buffers and tensor bindings of one TensorRT execution context, without TensorRT (plain Python).

Rebinding a context to a new input shape is a sequence of steps any of which can fail (the context refuses the
shape, an allocation runs out of memory, an address is refused). :class:`BufferSet` records the new shape only
after every step succeeded; on any failure it forgets the old buffers and shape, so the next call rebinds from
scratch instead of running with the addresses of freed buffers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from moose_ros.backends.base import ModelMeta
from moose_ros.errors import BackendError

__all__ = ["BindOps", "BufferSet", "output_shapes"]

LOG = logging.getLogger(__name__)


def output_shapes(meta: ModelMeta, input_shape: tuple[int, ...]) -> dict[str, tuple[int, int, int]]:
    """Shapes of the graph outputs for an ``image`` input of ``input_shape`` (N, H, W, 3).

    Every output is [N, H', W'] with (H', W') = ``meta.output_size`` or the input's (H, W).
    """
    if len(input_shape) != 4 or input_shape[3] != 3:
        raise BackendError(f"input shape must be (N, H, W, 3), got {tuple(input_shape)}")
    n, h, w = (int(v) for v in input_shape[:3])
    out_h, out_w = meta.output_size if meta.output_size is not None else (h, w)
    shape = (n, int(out_h), int(out_w))
    names = ["labels", "anomaly"] + [f"anomaly_{s}" for s in meta.scores[1:]]
    return {name: shape for name in names}


class BindOps(Protocol):
    """What :class:`BufferSet` needs from an execution context (the TensorRT backend wraps ``IExecutionContext``)."""

    def set_input_shape(self, shape: tuple[int, ...]) -> bool:
        """Set the ``image`` input shape; False when the context refuses it."""
        ...

    def output_shape(self, name: str) -> tuple[int, ...]:
        """The shape the context reports for output ``name`` after :meth:`set_input_shape`."""
        ...

    def scratch_bytes(self) -> int:
        """Bytes of device memory the context needs for the current shapes; 0 when it manages its own."""
        ...

    def set_scratch(self, buffer: Any, size: int) -> None:
        """Hand the context ``size`` bytes of device memory in ``buffer``."""
        ...

    def set_address(self, name: str, buffer: Any) -> bool:
        """Bind tensor ``name`` to ``buffer``; False when the context refuses it."""
        ...


class BufferSet:
    """Device buffers for one execution context, reallocated only when the input shape changes.

    Args:
        meta: the model description (which outputs exist, fixed output size).
        dtypes: tensor name -> dtype name (``"uint8"``, ``"float32"``, ...), for ``image`` and every output.
        allocate: ``allocate(shape, dtype_name) -> buffer`` on the device (torch.empty on CUDA in the backend).

    Attributes:
        input_shape: the (N, H, W, 3) the context is bound to, or None when nothing is bound.
        buffers: tensor name -> buffer of the bound shape (empty when nothing is bound).
        allocations: how many successful rebinds happened.
    """

    def __init__(self, meta: ModelMeta, dtypes: dict[str, str], allocate: Callable[[tuple[int, ...], str], Any]):
        self.meta = meta
        self.dtypes = dict(dtypes)
        self._allocate = allocate
        self.input_shape: tuple[int, ...] | None = None
        self.buffers: dict[str, Any] = {}
        self.scratch: Any = None
        self.allocations = 0

    def invalidate(self) -> None:
        """Forget the bound shape and drop every buffer (the next :meth:`ensure` rebinds from scratch)."""
        self.input_shape = None
        self.buffers = {}
        self.scratch = None

    def ensure(self, input_shape: tuple[int, ...], ops: BindOps) -> tuple[dict[str, Any], bool]:
        """(name -> buffer for ``image`` and every output, rebound?) with ``ops``' context bound to ``input_shape``.

        The shape is recorded only after the context accepted it, every buffer was allocated and every address
        was accepted. Any failure leaves nothing bound and is raised as :class:`BackendError`.
        """
        input_shape = tuple(int(v) for v in input_shape)
        if input_shape == self.input_shape:
            return self.buffers, False
        self.invalidate()  # drop the old buffers before allocating new ones (peak memory), and never reuse them
        try:
            buffers, scratch = self._bind(input_shape, ops)
        except BackendError:
            self.invalidate()
            raise
        except Exception as err:  # an allocator's out-of-memory error, a binding library's own exception types
            self.invalidate()
            raise BackendError(f"binding input shape {input_shape} failed: {type(err).__name__}: {err}") from err
        self.buffers, self.scratch, self.input_shape = buffers, scratch, input_shape
        self.allocations += 1
        return self.buffers, True

    def _shapes(self, input_shape: tuple[int, ...], ops: BindOps) -> dict[str, tuple[int, ...]]:
        expected = output_shapes(self.meta, input_shape)
        missing = sorted(({"image"} | set(expected)) - set(self.dtypes))
        if missing:
            raise BackendError(f"engine has no tensor(s) {missing}; its tensors are {sorted(self.dtypes)}")
        if not ops.set_input_shape(input_shape):
            raise BackendError(f"the engine refused input shape {input_shape}")
        shapes: dict[str, tuple[int, ...]] = {"image": input_shape}
        for name, want in expected.items():
            got = tuple(int(v) for v in ops.output_shape(name))
            if got != want:
                raise BackendError(f"output '{name}' has shape {got} for input {input_shape}, the model says {want}")
            shapes[name] = got
        return shapes

    def _bind(self, input_shape: tuple[int, ...], ops: BindOps) -> tuple[dict[str, Any], Any]:
        shapes = self._shapes(input_shape, ops)
        buffers = {name: self._allocate(shape, self.dtypes[name]) for name, shape in shapes.items()}
        scratch = None
        size = int(ops.scratch_bytes())
        if size > 0:
            scratch = self._allocate((size,), "uint8")
            ops.set_scratch(scratch, size)
        for name, buffer in buffers.items():
            if not ops.set_address(name, buffer):
                raise BackendError(f"the context refused the address of tensor '{name}'")
        LOG.debug("bound input %s: %s, scratch %d bytes", input_shape, {n: s for n, s in shapes.items()}, size)
        return buffers, scratch
