"""Serialized images from other RMWs: XCDR2 headers are read by the fast parser or handed to rclpy, never rejected."""

from __future__ import annotations

import numpy as np
import pytest

from moose_ros.errors import MessageError
from moose_ros.ros import cdr


def _serialized(compressed: bool) -> bytes:
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import CompressedImage, Image

    if compressed:
        msg = CompressedImage(format="jpeg", data=bytes(range(7)))
    else:
        msg = Image(height=2, width=3, encoding="rgb8", step=9, data=bytes(range(18)))
    msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec = "cam", 5, 7
    return bytes(serialize_message(msg))


def _fields(parsed: cdr.CdrImage | cdr.CdrCompressed) -> tuple:
    common = (parsed.stamp_sec, parsed.stamp_nanosec, parsed.frame_id, parsed.data.tobytes())
    if isinstance(parsed, cdr.CdrCompressed):
        return (*common, parsed.format)
    return (*common, parsed.height, parsed.width, parsed.encoding, parsed.step)


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("encapsulation", [b"\x00\x07\x00\x00", b"\x00\x09\x00\x00"])
def test_other_encapsulations_parse_like_xcdr1(compressed: bool, encapsulation: bytes) -> None:
    raw = _serialized(compressed)
    assert raw[:2] == b"\x00\x01"
    reference = _fields(cdr.parse_any(raw, compressed))
    assert reference[2] == "cam" and reference[3][:3] == b"\x00\x01\x02"
    assert _fields(cdr.parse_any(encapsulation + raw[4:], compressed)) == reference


def test_fast_parser_reads_plain_cdr2_and_hands_on_the_rest() -> None:
    raw = _serialized(False)
    image = cdr.parse_image(b"\x00\x07\x00\x00" + raw[4:])  # PLAIN_CDR2 little endian: same layout, fast path
    assert (image.width, image.height) == (3, 2) and np.array_equal(image.data, np.arange(18, dtype=np.uint8))
    with pytest.raises(MessageError) as info:
        cdr.parse_image(b"\x00\x09\x00\x00" + raw[4:])  # delimited XCDR2: rclpy's job (parse_any)
    assert info.value.reason == "encapsulation"  # type: ignore[attr-defined]


def test_garbage_is_still_rejected() -> None:
    with pytest.raises(MessageError) as info:
        cdr.parse_any(b"\x00\x0b\x00\x00\x01", False)
    assert info.value.reason == "cdr"  # type: ignore[attr-defined]
