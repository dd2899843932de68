"""The one image codec: sensor_msgs/Image and CompressedImage payloads <-> numpy (numpy + Pillow, no rclpy).

The node (:mod:`moose_ros.ros.conversions`, :mod:`moose_ros.ros.cdr`), the bag tools (:mod:`moose_ros.bag.messages`)
and the tests decode and encode images here, so mono8 means the same thing everywhere and the size and
decompression-bomb guards apply to every path.

Decoding a raw image honours ``step`` row padding (the last row may omit it) and the byte order, and comes in two
forms:

- ``rgb=True`` (what the network reads): uint8 [H, W, 3] RGB from rgb8 / bgr8 / rgba8 / bgra8 (alpha dropped) and
  mono8 (grey repeated); unpadded rgb8 is a read-only zero-copy view of the buffer.
- ``rgb=False`` (what a tool reads back, e.g. the node's outputs): the natural array, a fresh copy: uint8
  [H, W, 3] RGB for colour encodings, [H, W] of the encoding's type for single-channel ones (mono8 / 8UC1 uint8,
  mono16 / 16UC1 uint16, 32FC1 float32).

Every malformed input raises :class:`~moose_ros.errors.MessageError` naming the message and what is wrong, with a
machine-readable ``reason`` attribute (``"encoding"``, ``"empty"``, ``"too_large"``, ``"step"``, ``"short_data"``,
``"format"``, ``"corrupt"``) for per-reason log throttling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from moose_ros.errors import DatasetError, MessageError

__all__ = [
    "COMPRESSED_FORMATS",
    "ENCODINGS",
    "RGB_ENCODINGS",
    "Encoding",
    "check_size",
    "decode_compressed",
    "decode_raw",
    "encode_raw",
    "encoding_for",
    "message_error",
]


@dataclass(frozen=True)
class Encoding:
    """A raw image encoding: element type, channels, and where R, G, B sit within a pixel (colour only)."""

    dtype: str
    channels: int
    rgb_order: tuple[int, int, int] | None = None


ENCODINGS: dict[str, Encoding] = {
    "rgb8": Encoding("u1", 3, (0, 1, 2)),
    "bgr8": Encoding("u1", 3, (2, 1, 0)),
    "rgba8": Encoding("u1", 4, (0, 1, 2)),
    "bgra8": Encoding("u1", 4, (2, 1, 0)),
    "mono8": Encoding("u1", 1),
    "8UC1": Encoding("u1", 1),
    "mono16": Encoding("u2", 1),
    "16UC1": Encoding("u2", 1),
    "32FC1": Encoding("f4", 1),
}
#: Encodings the network input accepts (``rgb=True``).
RGB_ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
#: Compressed payload formats decoded.
COMPRESSED_FORMATS: tuple[str, ...] = ("JPEG", "PNG")


def message_error(reason: str, text: str) -> MessageError:
    """A :class:`MessageError` carrying ``reason``."""
    err = MessageError(text)
    err.reason = reason  # type: ignore[attr-defined]
    return err


def check_size(height: int, width: int, max_pixels: int | None, what: str) -> None:
    """Refuse empty images and images with more than ``max_pixels`` pixels (None: no limit)."""
    if height <= 0 or width <= 0:
        raise message_error("empty", f"{what}: empty image {width}x{height} (width x height must both be > 0)")
    if max_pixels is not None and height * width > max_pixels:
        raise message_error(
            "too_large", f"{what}: {width}x{height} = {height * width} pixels exceeds max_pixels={max_pixels}"
        )


def _rows(data: Any, height: int, width: int, step: int, enc: Encoding, what: str) -> np.ndarray:
    """The pixel rows as a strided uint8 view [H, W * channels * itemsize] (no copy)."""
    row_bytes = width * enc.channels * np.dtype(enc.dtype).itemsize
    if step < row_bytes:
        raise message_error("step", f"{what}: step {step} is smaller than the {row_bytes} bytes of a row")
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    if buf.dtype != np.uint8:
        buf = buf.view(np.uint8)
    if buf.size < step * (height - 1) + row_bytes:
        raise message_error("short_data", f"{what} step {step}: data has {buf.size} bytes, needs {step * height}")
    return np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(step, 1), writeable=False)


def decode_raw(
    data: Any,
    height: int,
    width: int,
    step: int,
    encoding: str,
    *,
    big_endian: bool = False,
    rgb: bool = True,
    max_pixels: int | None = None,
    where: str = "image",
) -> np.ndarray:
    """Raw image bytes (``bytes``, ``array.array('B')``, numpy uint8) -> numpy (see the module docstring).

    Raises:
        MessageError: unknown encoding (or not an RGB one with ``rgb=True``), empty or oversized image, ``step``
            too small, data too short.
    """
    allowed = RGB_ENCODINGS if rgb else tuple(ENCODINGS)
    if encoding not in allowed:
        raise message_error("encoding", f"{where}: unsupported encoding '{encoding}'; supported: {', '.join(allowed)}")
    enc = ENCODINGS[encoding]
    height, width, step = int(height), int(width), int(step)
    what = f"{where} {encoding} {width}x{height}"
    check_size(height, width, max_pixels, f"{where} {encoding}")
    rows = _rows(data, height, width, step, enc, what)
    if enc.dtype == "u1":
        pixels = np.lib.stride_tricks.as_strided(
            rows, shape=(height, width, enc.channels), strides=(step, enc.channels, 1), writeable=False
        )
    else:
        dtype = np.dtype(enc.dtype).newbyteorder(">" if big_endian else "<")
        pixels = np.ascontiguousarray(rows).view(dtype).astype(dtype.newbyteorder("="), copy=False)
        pixels = pixels.reshape(height, width, enc.channels)
    if enc.rgb_order is None:
        return np.repeat(pixels, 3, axis=2) if rgb else np.array(pixels[:, :, 0], order="C")
    if enc.rgb_order == (0, 1, 2):
        view = pixels if enc.channels == 3 else pixels[:, :, :3]
        if rgb:
            return view if view.flags.c_contiguous else np.ascontiguousarray(view)
        return np.array(view, order="C")
    return np.ascontiguousarray(pixels[:, :, list(enc.rgb_order)])


def decode_compressed(
    payload: Any, *, rgb: bool = True, max_pixels: int | None = None, where: str = "compressed image"
) -> np.ndarray:
    """A JPEG or PNG payload -> uint8 [H, W, 3] RGB (``rgb=False``: grey images as [H, W]).

    The size is read from the header and checked before anything is decompressed (``max_pixels``, and the
    decoder's own limit of :data:`moose_ros.data.imageio.MAX_IMAGE_PIXELS`).

    Raises:
        MessageError: empty, corrupt or truncated payload, a format other than JPEG / PNG, an oversized image.
    """
    import io

    from PIL import Image

    from moose_ros.data.imageio import DECODE_ERRORS, MAX_IMAGE_PIXELS, decode_image

    data = payload.tobytes() if isinstance(payload, np.ndarray) else bytes(payload)
    if not data:
        raise message_error("empty", f"{where} has no data")
    try:  # the header only: format and size are checked before any pixel is decompressed
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format, img.size
    except DECODE_ERRORS as err:
        raise message_error("corrupt", f"cannot decode {where} ({len(data)} bytes): {err}") from err
    if fmt not in COMPRESSED_FORMATS:
        raise message_error("format", f"{where}: format '{fmt}' is not supported (jpeg, png)")
    check_size(height, width, max_pixels, f"{where} ({str(fmt).lower()})")

    def convert(img: Any) -> np.ndarray:
        grey = not rgb and img.mode in ("L", "I;16", "1")
        return np.asarray(img.convert("L") if grey else img.convert("RGB"), dtype=np.uint8)

    try:
        return decode_image(data, convert, what="compressed image", where=f"{where} ({len(data)} bytes)",
                            max_pixels=MAX_IMAGE_PIXELS)
    except DatasetError as err:
        raise message_error("too_large" if "accepted" in str(err) else "corrupt", str(err)) from err


def encoding_for(array: np.ndarray) -> str:
    """The encoding of an output array: uint8 [H, W, 3] rgb8, uint8 [H, W] mono8, float32 [H, W] 32FC1."""
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8:
        return "rgb8"
    if array.ndim == 2 and array.dtype == np.uint8:
        return "mono8"
    if array.ndim == 2 and array.dtype == np.float32:
        return "32FC1"
    raise message_error("encoding", f"no image encoding for an array of shape {array.shape} and dtype {array.dtype}")


def encode_raw(array: np.ndarray, encoding: str | None = None) -> tuple[str, int, np.ndarray]:
    """``(encoding, step, data)`` of ``array`` without row padding, little endian; ``data`` is flat uint8.

    ``encoding`` defaults to :func:`encoding_for`; when given it must agree with the array's type and channels.
    """
    array = np.asarray(array)
    encoding = encoding or encoding_for(array)
    enc = ENCODINGS.get(encoding)
    if enc is None:
        raise message_error("encoding", f"unsupported image encoding '{encoding}'; expected one of {sorted(ENCODINGS)}")
    channels = array.shape[2] if array.ndim == 3 else 1
    if array.ndim not in (2, 3) or array.dtype.kind != np.dtype(enc.dtype).kind or (
        array.dtype.itemsize != np.dtype(enc.dtype).itemsize or channels != enc.channels
    ):
        raise message_error("encoding", f"encoding '{encoding}' needs {enc.channels}-channel {enc.dtype}, got "
                                        f"{array.shape} {array.dtype}")
    little = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False))
    width = int(array.shape[1])
    return encoding, width * enc.channels * np.dtype(enc.dtype).itemsize, little.view(np.uint8).reshape(-1)
