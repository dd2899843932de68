"""sensor_msgs <-> numpy for the node: decode input images to RGB, build output messages, resize outputs.

The codec itself is :mod:`moose_ros.image_codec` (shared with the bag tools).

Decoders take the message fields (``data``, ``height``, ``width``, ``step``, ``encoding``) or a message and return
uint8 [H, W, 3] RGB; they honour ``step`` row padding and avoid copies where the layout allows (rgb8 without
padding is a zero-copy view of ``msg.data``). Malformed input raises the codec's :class:`MessageError` with its
``reason`` attribute (per-reason log throttling).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moose_ros.image_codec import RGB_ENCODINGS, decode_compressed, decode_raw, encode_raw
from moose_ros.resize import resize_bilinear, resize_nearest

__all__ = [
    "ENCODINGS",
    "compressed_to_rgb",
    "decode_image",
    "image_msg_to_rgb",
    "numpy_to_image_msg",
    "resize_bilinear",
    "resize_nearest",
]

#: Encodings of the node's image input (decoded to RGB by :mod:`moose_ros.image_codec`).
ENCODINGS: tuple[str, ...] = RGB_ENCODINGS


def decode_image(
    data: Any,
    height: int,
    width: int,
    step: int,
    encoding: str,
    *,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Raw image bytes -> RGB uint8 [height, width, 3] (:func:`moose_ros.image_codec.decode_raw`, ``rgb=True``).

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
    return decode_raw(data, height, width, step, encoding, rgb=True, max_pixels=max_pixels)


def image_msg_to_rgb(msg: Any, *, max_pixels: int | None = None) -> np.ndarray:
    """``sensor_msgs/Image`` -> RGB uint8 [H, W, 3] (see :func:`decode_image`)."""
    return decode_raw(msg.data, msg.height, msg.width, msg.step, msg.encoding, big_endian=bool(msg.is_bigendian),
                      rgb=True, max_pixels=max_pixels)


def compressed_to_rgb(msg_or_data: Any, *, max_pixels: int | None = None) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (or its bytes) with a JPEG or PNG payload -> RGB uint8 [H, W, 3].

    The image size is read from the header and checked against ``max_pixels`` before anything is decoded.

    Raises:
        MessageError: empty, corrupt or truncated payload, unsupported format, oversized image.
    """
    data = getattr(msg_or_data, "data", msg_or_data)
    payload = data if isinstance(data, bytes | bytearray) else memoryview(data).cast("B")
    return decode_compressed(payload, rgb=True, max_pixels=max_pixels)


def numpy_to_image_msg(array: np.ndarray, header: Any, msg: Any = None) -> Any:
    """uint8 [H, W] (mono8), float32 [H, W] (32FC1) or uint8 [H, W, 3] (rgb8) -> ``sensor_msgs/Image``.

    ``header`` is copied by reference (stamp and frame_id of the input). ``msg`` may be a reused message.
    """
    from sensor_msgs.msg import Image

    encoding, step, data = encode_raw(array)
    out = Image() if msg is None else msg
    out.header = header
    out.height, out.width = int(array.shape[0]), int(array.shape[1])
    out.encoding = encoding
    out.is_bigendian = 0
    out.step = step
    out.data = data.tobytes()
    return out
