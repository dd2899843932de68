"""sensor_msgs <-> numpy conversions: every encoding, row padding, compressed payloads, malformed input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage
from test_ros_support import raw_image_msg, scene_image

from moose_ros.errors import MessageError
from moose_ros.ros import conversions as conv

ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"]


def _expected(rgb: np.ndarray, encoding: str) -> np.ndarray:
    return np.repeat(rgb[:, :, :1], 3, axis=2) if encoding == "mono8" else rgb


@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_encoding_decodes_to_rgb(encoding: str, pad: int) -> None:
    rgb = scene_image(24, 40, seed=3)
    msg = raw_image_msg(rgb, encoding, frame_id="cam", sec=1, pad=pad)
    out = conv.image_msg_to_rgb(msg)
    assert out.shape == (24, 40, 3) and out.dtype == np.uint8
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, _expected(rgb, encoding))


def test_unpadded_rgb8_is_zero_copy() -> None:
    rgb = scene_image(8, 12)
    msg = raw_image_msg(rgb, "rgb8", frame_id="cam", sec=1)
    out = conv.image_msg_to_rgb(msg)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    assert not out.flags.writeable


def test_last_row_without_trailing_padding_is_accepted() -> None:
    rgb = scene_image(4, 6)
    rows = np.zeros((4, 6 * 3 + 2), np.uint8)
    rows[:, :18] = rgb.reshape(4, -1)
    data = rows.tobytes()[:-2]  # some drivers omit the padding after the last row
    np.testing.assert_array_equal(conv.decode_image(data, 4, 6, 20, "rgb8"), rgb)


@pytest.mark.parametrize(
    ("kwargs", "reason", "needle"),
    [
        ({"encoding": "yuv422"}, "encoding", "yuv422"),
        ({"width": 0}, "empty", "empty"),
        ({"step": 10}, "step", "step"),
        ({"data": bytes(30)}, "short_data", "30 bytes"),
        ({"height": 5000, "width": 5000, "step": 15000}, "too_large", "max_pixels"),
    ],
)
def test_malformed_raw_images_raise_message_error(kwargs: dict, reason: str, needle: str) -> None:
    fields = {"data": bytes(4 * 6 * 3), "height": 4, "width": 6, "step": 18, "encoding": "rgb8"} | kwargs
    with pytest.raises(MessageError, match=needle) as info:
        conv.decode_image(fields.pop("data"), **fields, max_pixels=1_000_000)
    assert info.value.reason == reason


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_compressed_decodes_like_pillow(fmt: str) -> None:
    rgb = scene_image(32, 48, seed=1)
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format=fmt)
    out = conv.compressed_to_rgb(buf.getvalue())
    expected = np.asarray(PILImage.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    np.testing.assert_array_equal(out, expected)
    if fmt == "PNG":
        np.testing.assert_array_equal(out, rgb)


def test_compressed_malformed() -> None:
    buf = io.BytesIO()
    PILImage.fromarray(scene_image(32, 48)).save(buf, format="JPEG")
    with pytest.raises(MessageError, match="cannot decode"):
        conv.compressed_to_rgb(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(MessageError, match="cannot decode"):
        conv.compressed_to_rgb(b"not an image at all")
    with pytest.raises(MessageError, match="no data"):
        conv.compressed_to_rgb(b"")
    with pytest.raises(MessageError, match="max_pixels"):
        conv.compressed_to_rgb(buf.getvalue(), max_pixels=100)
    gif = io.BytesIO()
    PILImage.fromarray(scene_image(8, 8)).save(gif, format="GIF")
    with pytest.raises(MessageError, match="GIF"):
        conv.compressed_to_rgb(gif.getvalue())


def test_output_messages_round_trip() -> None:
    from std_msgs.msg import Header

    header = Header(frame_id="cam")
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    scores = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    rgb = scene_image(3, 4)
    for array, encoding in ((labels, "mono8"), (scores, "32FC1"), (rgb, "rgb8")):
        msg = conv.numpy_to_image_msg(array, header)
        assert (msg.encoding, msg.height, msg.width, msg.header.frame_id) == (encoding, 3, 4, "cam")
        assert msg.step == 4 * array.itemsize * (3 if array.ndim == 3 else 1)
        back = np.frombuffer(msg.data, array.dtype).reshape(array.shape)
        np.testing.assert_array_equal(back, array)
    with pytest.raises(MessageError):
        conv.numpy_to_image_msg(np.zeros((2, 2), np.int64), header)


def test_resize_nearest_and_bilinear() -> None:
    labels = np.array([[0, 1], [2, 3]], np.uint8)
    np.testing.assert_array_equal(
        conv.resize_nearest(labels, 4, 4), np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    )
    grid = np.arange(16, dtype=np.uint8).reshape(4, 4)
    np.testing.assert_array_equal(conv.resize_nearest(grid, 2, 2), [[5, 7], [13, 15]])  # pixel-centre sampling
    ramp = np.array([[0.0, 4.0]], np.float32)
    # half-pixel centres: output x = (i + 0.5) * 2/4 - 0.5 -> -0.25 (clamped 0), 0.25, 0.75, 1.25 (clamped 1)
    np.testing.assert_allclose(conv.resize_bilinear(ramp, 1, 4), [[0.0, 1.0, 3.0, 4.0]])
    big = np.random.default_rng(0).random((6, 10)).astype(np.float32)
    assert conv.resize_bilinear(big, 6, 10) is big
    down = conv.resize_bilinear(np.repeat(np.repeat(big, 2, 0), 2, 1), 6, 10)
    np.testing.assert_allclose(down, big, atol=1e-6)  # 2x box-upsampled then halved = exact
    rgb = scene_image(8, 8)
    assert conv.resize_bilinear(rgb, 4, 16).dtype == np.uint8


@pytest.mark.parametrize("frame_id", ["", "c", "cam", "camera_optical_frame"])
def test_cdr_matches_rclpy_serialization(frame_id: str) -> None:
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header

    from moose_ros.ros import cdr

    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = 1_700_000_123, 456_789
    arrays = [np.random.default_rng(0).random((3, 5)).astype(np.float32), np.arange(15, dtype=np.uint8).reshape(3, 5),
              scene_image(2, 3)]
    for array in arrays:
        reference = conv.numpy_to_image_msg(array, header)
        mine = cdr.serialize_image(1_700_000_123, 456_789, frame_id, array)
        assert deserialize_message(mine, Image) == reference
        parsed = cdr.parse_image(serialize_message(reference))
        assert (parsed.stamp_ns, parsed.frame_id, parsed.encoding) == (1_700_000_123_000_456_789, frame_id,
                                                                       reference.encoding)
        assert (parsed.height, parsed.width, parsed.step) == (reference.height, reference.width, reference.step)
        assert parsed.data.tobytes() == array.tobytes() and not parsed.data.flags.writeable
    padded = raw_image_msg(scene_image(5, 7), "bgra8", frame_id=frame_id, sec=3, pad=3)
    parsed = cdr.parse_image(serialize_message(padded))
    np.testing.assert_array_equal(
        conv.decode_image(parsed.data, parsed.height, parsed.width, parsed.step, parsed.encoding),
        conv.image_msg_to_rgb(padded))
    compressed = CompressedImage(format="png", data=b"\x89PNG....")
    compressed.header = header
    got = cdr.parse_compressed(serialize_message(compressed))
    assert (got.frame_id, got.format, got.data.tobytes()) == (frame_id, "png", b"\x89PNG....")


def test_cdr_rejects_garbage() -> None:
    from rclpy.serialization import serialize_message

    from moose_ros.ros import cdr

    raw = serialize_message(raw_image_msg(scene_image(4, 4), "rgb8", frame_id="cam", sec=1))
    for bad in (raw[:40], raw[:-1]):
        with pytest.raises(MessageError) as info:
            cdr.parse_image(bad)
        assert info.value.reason == "cdr"
    for bad in (b"", b"\x07\x07\x00\x00abcd"):  # no CDR encapsulation rclpy could read either
        with pytest.raises(MessageError) as info:
            cdr.parse_image(bad)
        assert info.value.reason == "encapsulation"
    with pytest.raises(MessageError):
        cdr.serialize_image(0, 0, "x", np.zeros((2, 2), np.int16))
