"""sensor_msgs <-> numpy for the node: decode input images to RGB, build output messages, resize outputs.

Decoders take the message fields (``data``, ``height``, ``width``, ``step``, ``encoding``) or a message and return
uint8 [H, W, 3] RGB; they honour ``step`` row padding and avoid copies where the layout allows (rgb8 without
padding is a zero-copy view of ``msg.data``). Every malformed input raises :class:`MessageError` with a short
machine-readable ``reason`` attribute (``"encoding"``, ``"empty"``, ``"too_large"``, ``"step"``, ``"short_data"``,
``"format"``, ``"corrupt"``) for per-reason log throttling.
"""

from __future__ import annotations

import io
import sys
from typing import Any

import numpy as np

from moose_ros.errors import MessageError

__all__ = [
    "ENCODINGS",
    "compressed_to_rgb",
    "decode_image",
    "image_msg_to_rgb",
    "numpy_to_image_msg",
    "resize_bilinear",
    "resize_nearest",
]

#: Supported raw encodings -> (channels, RGB channel order within a pixel).
ENCODINGS: dict[str, tuple[int, tuple[int, int, int]]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
}

#: numpy dtype -> (ROS encoding of a single-channel image, bytes per pixel).
_OUTPUT_ENCODINGS = {np.dtype(np.uint8): "mono8", np.dtype(np.float32): "32FC1"}


def _error(reason: str, text: str) -> MessageError:
    err = MessageError(text)
    err.reason = reason  # type: ignore[attr-defined]
    return err


def _check_size(height: int, width: int, max_pixels: int | None, what: str) -> None:
    if height <= 0 or width <= 0:
        raise _error("empty", f"{what}: empty image {width}x{height} (width x height must both be > 0)")
    if max_pixels is not None and height * width > max_pixels:
        raise _error("too_large", f"{what}: {width}x{height} = {height * width} pixels exceeds max_pixels={max_pixels}")


def decode_image(
    data: Any,
    height: int,
    width: int,
    step: int,
    encoding: str,
    *,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Raw image bytes -> RGB uint8 [height, width, 3].

    Args:
        data: bytes-like (``bytes``, ``array.array('B')``, numpy uint8), at least ``step * height`` long.
        height, width: image size in pixels.
        step: bytes per row including padding (``>= width * channels``).
        encoding: one of :data:`ENCODINGS`.
        max_pixels: reject images with more pixels than this.

    Returns:
        A read-only zero-copy view for unpadded rgb8 input, otherwise a new C-contiguous array.

    Raises:
        MessageError: unknown encoding, empty or oversized image, ``step`` too small, data too short.
    """
    layout = ENCODINGS.get(encoding)
    if layout is None:
        raise _error("encoding", f"unsupported encoding '{encoding}'; supported: {', '.join(ENCODINGS)}")
    channels, order = layout
    height, width, step = int(height), int(width), int(step)
    _check_size(height, width, max_pixels, encoding)
    row_bytes = width * channels
    if step < row_bytes:
        raise _error("step", f"step {step} is smaller than width*channels = {width}*{channels} = {row_bytes}")
    buf = np.frombuffer(data, dtype=np.uint8)
    needed = step * (height - 1) + row_bytes
    if buf.size < needed:
        raise _error(
            "short_data", f"{encoding} {width}x{height} step {step}: data has {buf.size} bytes, needs {step * height}"
        )
    pixels = np.lib.stride_tricks.as_strided(
        buf, shape=(height, width, channels), strides=(step, channels, 1), writeable=False
    )
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    if order == (0, 1, 2):
        view = pixels if channels == 3 else pixels[:, :, :3]
        return view if view.flags.c_contiguous else np.ascontiguousarray(view)
    return np.ascontiguousarray(pixels[:, :, list(order)])


def image_msg_to_rgb(msg: Any, *, max_pixels: int | None = None) -> np.ndarray:
    """``sensor_msgs/Image`` -> RGB uint8 [H, W, 3] (see :func:`decode_image`)."""
    if msg.is_bigendian and msg.encoding not in ENCODINGS:
        raise _error("encoding", f"unsupported big-endian encoding '{msg.encoding}'")
    return decode_image(msg.data, msg.height, msg.width, msg.step, msg.encoding, max_pixels=max_pixels)


def compressed_to_rgb(msg_or_data: Any, *, max_pixels: int | None = None) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (or its bytes) with a JPEG or PNG payload -> RGB uint8 [H, W, 3].

    The image size is read from the header and checked against ``max_pixels`` before anything is decoded.

    Raises:
        MessageError: empty, corrupt or truncated payload, unsupported format, oversized image.
    """
    from PIL import Image

    data = getattr(msg_or_data, "data", msg_or_data)
    payload = memoryview(data).cast("B") if not isinstance(data, bytes | bytearray) else data
    if len(payload) == 0:
        raise _error("empty", "compressed image has no data")
    try:
        with Image.open(io.BytesIO(payload)) as img:
            if img.format not in ("JPEG", "PNG"):
                raise _error("format", f"compressed format '{img.format}' is not supported (jpeg, png)")
            width, height = img.size
            _check_size(height, width, max_pixels, f"compressed {img.format.lower()}")
            rgb = img.convert("RGB")
            rgb.load()
    except MessageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise _error("corrupt", f"cannot decode compressed image ({len(payload)} bytes): {err}") from err
    return np.asarray(rgb, dtype=np.uint8)


def numpy_to_image_msg(array: np.ndarray, header: Any, msg: Any = None) -> Any:
    """uint8 [H, W] (mono8), float32 [H, W] (32FC1) or uint8 [H, W, 3] (rgb8) -> ``sensor_msgs/Image``.

    ``header`` is copied by reference (stamp and frame_id of the input). ``msg`` may be a reused message.
    """
    from sensor_msgs.msg import Image

    array = np.ascontiguousarray(array)
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8:
        encoding = "rgb8"
    else:
        encoding = _OUTPUT_ENCODINGS.get(array.dtype) if array.ndim == 2 else None
        if encoding is None:
            raise _error("encoding", f"no image encoding for array {array.dtype} {array.shape}")
    out = Image() if msg is None else msg
    out.header = header
    out.height, out.width = int(array.shape[0]), int(array.shape[1])
    out.encoding = encoding
    out.is_bigendian = int(sys.byteorder == "big")
    out.step = int(array.strides[0])
    out.data = array.tobytes()
    return out


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
