"""CDR (the DDS wire format) for sensor_msgs/Image and CompressedImage, without Python message objects.

rclpy converts an Image to and from Python objects through three copies of the pixel data (array.array, C struct,
CDR buffer): ~14 ms for a 2048x1024 float32 image here. The node instead subscribes with ``raw=True`` and
publishes ``bytes``: :func:`parse_image` gives a zero-copy numpy view of the pixels inside the received buffer and
:func:`serialize_image` builds the outgoing buffer with a single copy (~1 ms). Layout (XCDR1, ROS 2 IDL order):
a 4-byte encapsulation header (``00 01`` little endian, ``00 00`` big endian, 2 option bytes), then
``header.stamp.sec`` int32, ``.nanosec`` uint32, ``header.frame_id`` string, and for Image ``height``, ``width``
uint32, ``encoding`` string, ``is_bigendian`` uint8, ``step`` uint32, ``data`` uint8 sequence; for CompressedImage
``format`` string, ``data`` uint8 sequence. Strings are uint32 length (with the NUL) + bytes + NUL; sequences
uint32 count + items; numbers are aligned to their size relative to the end of the encapsulation header.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from moose_ros.errors import MessageError
from moose_ros.image_codec import encode_raw

__all__ = ["CdrCompressed", "CdrImage", "parse_any", "parse_compressed", "parse_image", "serialize_image"]

#: Encapsulation ids (second header byte) read here: CDR (XCDR1) and PLAIN_CDR2 (XCDR2), big / little endian.
#: For Image and CompressedImage (final types, no field wider than 4 bytes) their layouts are identical.
FAST_ENCAPSULATIONS = (0x00, 0x01, 0x06, 0x07)


@dataclass(frozen=True)
class CdrImage:
    """A decoded sensor_msgs/Image; ``data`` is a read-only uint8 view into the received buffer."""

    stamp_sec: int
    stamp_nanosec: int
    frame_id: str
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray

    @property
    def stamp_ns(self) -> int:
        """Header stamp in nanoseconds."""
        return self.stamp_sec * 1_000_000_000 + self.stamp_nanosec


@dataclass(frozen=True)
class CdrCompressed:
    """A decoded sensor_msgs/CompressedImage; ``data`` is a read-only uint8 view into the received buffer."""

    stamp_sec: int
    stamp_nanosec: int
    frame_id: str
    format: str
    data: np.ndarray

    @property
    def stamp_ns(self) -> int:
        """Header stamp in nanoseconds."""
        return self.stamp_sec * 1_000_000_000 + self.stamp_nanosec


class _Reader:
    def __init__(self, raw: bytes | memoryview, what: str) -> None:
        self.raw, self.what = memoryview(raw).cast("B"), what
        if len(self.raw) < 4 or self.raw[0] != 0 or self.raw[1] not in FAST_ENCAPSULATIONS:
            err = self.error(f"encapsulation {bytes(self.raw[:4]).hex() or 'missing'} is not one the fast parser "
                             "reads")
            err.reason = "encapsulation"  # type: ignore[attr-defined]
            raise err
        self.order = "<" if self.raw[1] & 1 else ">"
        self.pos = 4

    def error(self, text: str) -> MessageError:
        err = MessageError(f"{self.what}: {text}")
        err.reason = "cdr"  # type: ignore[attr-defined]
        return err

    def _take(self, size: int, align: int) -> int:
        start = 4 + (((self.pos - 4) + align - 1) & ~(align - 1))
        if start + size > len(self.raw):
            raise self.error(f"truncated buffer ({len(self.raw)} bytes, needs {start + size})")
        self.pos = start + size
        return start

    def u32(self) -> int:
        return int(struct.unpack_from(self.order + "I", self.raw, self._take(4, 4))[0])

    def i32(self) -> int:
        return int(struct.unpack_from(self.order + "i", self.raw, self._take(4, 4))[0])

    def u8(self) -> int:
        return int(self.raw[self._take(1, 1)])

    def string(self) -> str:
        length = self.u32()
        start = self._take(length, 1)
        return bytes(self.raw[start : start + max(0, length - 1)]).decode("utf-8", errors="replace")

    def octets(self) -> np.ndarray:
        count = self.u32()
        start = self._take(count, 1)
        view = np.frombuffer(self.raw, dtype=np.uint8, count=count, offset=start)
        view.flags.writeable = False
        return view


def parse_image(raw: bytes | memoryview) -> CdrImage:
    """Serialized sensor_msgs/Image -> :class:`CdrImage` (pixels not copied). Raises MessageError (reason "cdr")."""
    r = _Reader(raw, "sensor_msgs/Image")
    sec, nanosec, frame_id = r.i32(), r.u32(), r.string()
    height, width, encoding = r.u32(), r.u32(), r.string()
    is_bigendian, step = r.u8(), r.u32()
    return CdrImage(sec, nanosec, frame_id, height, width, encoding, is_bigendian, step, r.octets())


def parse_compressed(raw: bytes | memoryview) -> CdrCompressed:
    """Serialized sensor_msgs/CompressedImage -> :class:`CdrCompressed` (payload not copied)."""
    r = _Reader(raw, "sensor_msgs/CompressedImage")
    sec, nanosec, frame_id = r.i32(), r.u32(), r.string()
    return CdrCompressed(sec, nanosec, frame_id, r.string(), r.octets())


def _pad(buf: bytearray, align: int) -> None:
    buf.extend(b"\x00" * ((-(len(buf) - 4)) % align))


def _string(buf: bytearray, text: str) -> None:
    data = text.encode("utf-8") + b"\x00"
    _pad(buf, 4)
    buf.extend(struct.pack("<I", len(data)))
    buf.extend(data)


def serialize_image(stamp_sec: int, stamp_nanosec: int, frame_id: str, array: np.ndarray) -> bytes:
    """uint8 [H, W] (mono8), float32 [H, W] (32FC1) or uint8 [H, W, 3] (rgb8) -> serialized sensor_msgs/Image.

    Little-endian CDR; pixel data copied once. Publish the result with ``publisher.publish(bytes)``.
    """
    encoding, step, data = encode_raw(array)
    height, width = int(array.shape[0]), int(array.shape[1])
    buf = bytearray(b"\x00\x01\x00\x00")
    buf.extend(struct.pack("<iI", int(stamp_sec), int(stamp_nanosec)))
    _string(buf, frame_id)
    _pad(buf, 4)
    buf.extend(struct.pack("<II", height, width))
    _string(buf, encoding)
    buf.append(0)  # is_bigendian
    _pad(buf, 4)
    buf.extend(struct.pack("<II", step, data.size))
    return b"".join((buf, memoryview(data)))


def parse_any(raw: bytes | memoryview, compressed: bool) -> CdrImage | CdrCompressed:
    """:func:`parse_image` / :func:`parse_compressed`, or, for an encapsulation the fast parser does not read
    (e.g. delimited or parameter-list XCDR2 from another RMW), rclpy's own deserialisation of the same bytes.

    Raises:
        MessageError: the buffer is malformed (``reason`` ``"cdr"``), or rclpy cannot deserialise it either.
    """
    try:
        return parse_compressed(raw) if compressed else parse_image(raw)
    except MessageError as err:
        if getattr(err, "reason", "") != "encapsulation":
            raise
    return _parse_with_rclpy(bytes(raw), compressed)


def _parse_with_rclpy(raw: bytes, compressed: bool) -> CdrImage | CdrCompressed:
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage, Image

    what = "CompressedImage" if compressed else "Image"
    try:
        msg = deserialize_message(raw, CompressedImage if compressed else Image)
    except Exception as err:  # rclpy raises RCLError / RuntimeError / ... for undecodable buffers
        error = MessageError(f"{what}: cannot deserialise (encapsulation {raw[:4].hex()}): {err}")
        error.reason = "cdr"  # type: ignore[attr-defined]
        raise error from err
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    stamp = msg.header.stamp
    if compressed:
        return CdrCompressed(stamp.sec, stamp.nanosec, msg.header.frame_id, msg.format, data)
    return CdrImage(stamp.sec, stamp.nanosec, msg.header.frame_id, msg.height, msg.width, msg.encoding,
                    msg.is_bigendian, msg.step, data)
