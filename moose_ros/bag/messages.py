"""ROS 2 image messages <-> numpy, without rclpy (``rosbags`` types, numpy, Pillow).

The pixel codec is :mod:`moose_ros.image_codec` (shared with the node).

Used to write bags (:mod:`moose_ros.bag.from_dataset`), to read them back (:mod:`moose_ros.bag.reader`) and
to decode the node's outputs during replay: the CDR bytes ``rosbags`` produces equal rclpy's, so one decoder
serves bags and live topics alike.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from moose_ros.errors import ConfigError, MessageError
from moose_ros.image_codec import decode_compressed, decode_raw, encode_raw

__all__ = [
    "CAMERA_INFO_TYPE",
    "COMPRESSED_TYPE",
    "IMAGE_TYPE",
    "CameraIntrinsics",
    "camera_info_msg",
    "compressed_msg",
    "compressed_to_array",
    "deserialize",
    "header_stamp_ns",
    "image_msg",
    "image_to_array",
    "load_camera_yaml",
    "message_to_array",
    "serialize",
    "typestore",
]

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"

#: image_transport's convention for the CompressedImage ``format`` field of colour images.
_COMPRESSED_FORMATS = {"jpeg": "rgb8; jpeg compressed bgr8", "png": "rgb8; png compressed bgr8"}


@lru_cache(maxsize=1)
def typestore() -> Any:
    """The ``rosbags`` type store of ROS 2 Kilted (message classes, CDR (de)serialisation)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def serialize(msg: Any, msgtype: str) -> bytes:
    """CDR bytes of a ``rosbags`` message (identical to rclpy's serialisation)."""
    return bytes(typestore().serialize_cdr(msg, msgtype))


def deserialize(data: bytes | memoryview, msgtype: str, *, where: str = "message") -> Any:
    """Decode CDR bytes into a ``rosbags`` message; array fields are numpy views over ``data``."""
    try:
        return typestore().deserialize_cdr(data, msgtype)
    except Exception as err:  # rosbags raises assorted struct/index errors on corrupt payloads
        raise MessageError(f"{where}: cannot decode a {msgtype} payload of {len(data)} bytes: {err}") from err


def _header(stamp_ns: int, frame_id: str) -> Any:
    types = typestore().types
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec), frame_id=frame_id
    )


def header_stamp_ns(msg: Any) -> int:
    """``msg.header.stamp`` as integer nanoseconds."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def image_msg(array: np.ndarray, *, stamp_ns: int, frame_id: str, encoding: str | None = None) -> Any:
    """A ``sensor_msgs/Image`` holding ``array`` without row padding.

    Args:
        array: uint8 [H, W, 3] (``rgb8`` default), uint8 [H, W] (``mono8``) or float32 [H, W] (``32FC1``).
        stamp_ns: header stamp, nanoseconds since the epoch.
        frame_id: header frame id.
        encoding: override the encoding guessed from shape and dtype (must agree with them).
    """
    encoding, step, data = encode_raw(array, encoding)
    height, width = array.shape[:2]
    return typestore().types[IMAGE_TYPE](
        header=_header(stamp_ns, frame_id),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=step,
        data=data,
    )


def compressed_msg(
    array: np.ndarray, *, stamp_ns: int, frame_id: str, fmt: str = "jpeg", jpeg_quality: int = 95
) -> Any:
    """A ``sensor_msgs/CompressedImage`` of a uint8 [H, W, 3] RGB image, ``fmt`` = ``"jpeg"`` or ``"png"``."""
    if fmt not in _COMPRESSED_FORMATS:
        raise ConfigError(f"compressed image format '{fmt}' is not supported; expected 'jpeg' or 'png'")
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise MessageError(f"compressed images need uint8 [H, W, 3] RGB, got {array.shape} {array.dtype}")
    buffer = io.BytesIO()
    if fmt == "jpeg":
        PILImage.fromarray(array).save(buffer, format="JPEG", quality=int(jpeg_quality))
    else:
        PILImage.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return typestore().types[COMPRESSED_TYPE](
        header=_header(stamp_ns, frame_id),
        format=_COMPRESSED_FORMATS[fmt],
        data=np.frombuffer(buffer.getvalue(), dtype=np.uint8),
    )


def image_to_array(msg: Any, *, where: str = "image") -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` (honouring ``step`` padding and byte order).

    Returns:
        uint8 [H, W, 3] RGB for rgb8/bgr8 (alpha dropped for rgba8/bgra8), uint8 [H, W] for mono8,
        uint16 [H, W] for mono16, float32 [H, W] for 32FC1. A fresh array, not a view of the message.
    """
    return decode_raw(np.asarray(msg.data, dtype=np.uint8), msg.height, msg.width, msg.step, str(msg.encoding),
                      big_endian=bool(msg.is_bigendian), rgb=False, where=where)


def compressed_to_array(msg: Any, *, where: str = "compressed image") -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (jpeg or png) to uint8 [H, W, 3] RGB or [H, W] for grey."""
    return decode_compressed(np.asarray(msg.data, dtype=np.uint8), rgb=False, where=f"{where} ('{msg.format}')")


def message_to_array(msg: Any, msgtype: str, *, where: str = "message") -> np.ndarray:
    """Decode an Image or CompressedImage message, chosen by ``msgtype``."""
    if msgtype == IMAGE_TYPE:
        return image_to_array(msg, where=where)
    if msgtype == COMPRESSED_TYPE:
        return compressed_to_array(msg, where=where)
    raise MessageError(f"{where}: {msgtype} is not an image type ({IMAGE_TYPE} or {COMPRESSED_TYPE})")


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics for ``sensor_msgs/CameraInfo``; pixel units, (cx, cy) from the top-left corner.

    ``distortion`` holds the coefficients of ``distortion_model`` (plumb_bob: k1 k2 t1 t2 k3).
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str = "plumb_bob"
    distortion: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)

    @classmethod
    def default(cls, width: int, height: int, *, hfov_deg: float = 60.0) -> CameraIntrinsics:
        """A plausible undistorted camera: square pixels, centred principal point, ``hfov_deg`` horizontal FoV."""
        if not 1.0 <= hfov_deg < 179.0:
            raise ConfigError(f"horizontal field of view {hfov_deg} deg is outside [1, 179)")
        focal = width / (2.0 * math.tan(math.radians(hfov_deg) / 2.0))
        return cls(width, height, focal, focal, (width - 1) / 2.0, (height - 1) / 2.0)


def load_camera_yaml(path: str | Path) -> CameraIntrinsics:
    """Read a ``camera_calibration`` YAML (image_width, image_height, camera_matrix, distortion_*)."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        k = [float(v) for v in raw["camera_matrix"]["data"]]
        if len(k) != 9:
            raise ValueError(f"camera_matrix has {len(k)} values, expected 9")
        dist = raw.get("distortion_coefficients", {}).get("data", [0.0] * 5)
        return CameraIntrinsics(
            width=int(raw["image_width"]),
            height=int(raw["image_height"]),
            fx=k[0],
            fy=k[4],
            cx=k[2],
            cy=k[5],
            distortion_model=str(raw.get("distortion_model", "plumb_bob")),
            distortion=tuple(float(v) for v in dist),
        )
    except OSError as err:
        raise ConfigError(f"cannot read camera calibration {path}: {err}") from err
    except (KeyError, TypeError, ValueError, AttributeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: not a camera_calibration YAML (image_width, camera_matrix.data): {err}") from err


def camera_info_msg(camera: CameraIntrinsics, *, stamp_ns: int, frame_id: str) -> Any:
    """``sensor_msgs/CameraInfo`` for ``camera`` (identity rectification, P = [K | 0])."""
    types = typestore().types
    k = np.array([camera.fx, 0.0, camera.cx, 0.0, camera.fy, camera.cy, 0.0, 0.0, 1.0], dtype=np.float64)
    p = np.array(
        [camera.fx, 0.0, camera.cx, 0.0, 0.0, camera.fy, camera.cy, 0.0, 0.0, 0.0, 1.0, 0.0], dtype=np.float64
    )
    return types[CAMERA_INFO_TYPE](
        header=_header(stamp_ns, frame_id),
        height=camera.height,
        width=camera.width,
        distortion_model=camera.distortion_model,
        d=np.asarray(camera.distortion, dtype=np.float64),
        k=k,
        r=np.eye(3, dtype=np.float64).reshape(-1),
        p=p,
        binning_x=0,
        binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )
