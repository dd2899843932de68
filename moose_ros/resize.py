"""Resizing of label, score and image arrays (numpy only): the node's pipeline and the tools share it.

Both use pixel-centre sampling, as ``torch.nn.functional.interpolate(..., align_corners=False)`` and ONNX's
``Resize`` (half_pixel) do, so a map resized here lines up with one resized in the fused graph.
"""

from __future__ import annotations

import numpy as np

__all__ = ["resize_bilinear", "resize_nearest"]


def resize_nearest(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of [H, W] or [H, W, C] to [height, width(, C)] (pixel-centre sampling)."""
    src_h, src_w = array.shape[:2]
    if (src_h, src_w) == (height, width):
        return array
    rows = np.minimum(((np.arange(height) + 0.5) * (src_h / height)).astype(np.intp), src_h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * (src_w / width)).astype(np.intp), src_w - 1)
    return array[rows[:, None], cols[None, :]]


def _bilinear_axis(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices i0, i1 and weight of i1 for half-pixel-centre linear interpolation along one axis."""
    pos = np.clip((np.arange(dst) + 0.5) * (src / dst) - 0.5, 0.0, src - 1)
    i0 = np.floor(pos).astype(np.intp)
    i1 = np.minimum(i0 + 1, src - 1)
    return i0, i1, (pos - i0).astype(np.float32)


def resize_bilinear(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize (half-pixel centres, like ``align_corners=False``) of float or uint8 [H, W(, C)].

    Returns float32 for float input and uint8 (rounded) for uint8 input.
    """
    src_h, src_w = array.shape[:2]
    if (src_h, src_w) == (height, width):
        return array
    r0, r1, wr = _bilinear_axis(src_h, height)
    c0, c1, wc = _bilinear_axis(src_w, width)
    data = array.astype(np.float32, copy=False)
    extra = (None,) * (array.ndim - 2)
    wr = wr[(slice(None), None, *extra)]
    wc = wc[(None, slice(None), *extra)]
    top = data[r0][:, c0] * (1.0 - wc) + data[r0][:, c1] * wc
    bottom = data[r1][:, c0] * (1.0 - wc) + data[r1][:, c1] * wc
    out = top * (1.0 - wr) + bottom * wr
    if array.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(np.float32, copy=False)
