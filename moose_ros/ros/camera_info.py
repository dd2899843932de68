"""``camera_info`` in, ``~/camera_info`` out: intrinsics matched to a frame by stamp and scaled to the output size.

Downstream nodes project ``~/anomaly/mask`` (e.g. onto a point cloud) with ``~/camera_info``, which carries the
outputs' header and describes the output image: K and P are scaled as image_proc's resize does (fx, cx, Tx by
width_out / width_in; fy, cy, Ty by height_out / height_in); D and R are unchanged; binning is reset and the ROI
scaled. Sizes are in pixels.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["CameraInfoCache", "camera_info_problem", "scale_camera_info"]


def camera_info_problem(info: Any) -> str | None:
    """Why ``info`` (a sensor_msgs/CameraInfo) cannot be scaled to an output, or None when it can.

    Refused: a zero width or height (the scale to the output size is undefined) and non-finite values in K, P, R
    or D. An all-zero K (an uncalibrated camera, by ROS convention) is passed on as it is.
    """
    if info.width <= 0 or info.height <= 0:
        return f"size {info.width}x{info.height} pixels: width and height must be > 0 to scale K and P"
    for name in ("k", "p", "r", "d"):
        values = [float(v) for v in getattr(info, name)]
        bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
        if bad:
            return f"{name.upper()} holds non-finite values at {bad} ({[values[i] for i in bad]})"
    return None


class CameraInfoCache:
    """The last ``capacity`` valid CameraInfo messages of one camera, by header stamp (thread-safe).

    ``on_reject(reason)`` is called for every message :func:`camera_info_problem` refuses (it is not kept).
    """

    def __init__(self, capacity: int = 16, on_reject: Callable[[str], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._by_stamp: OrderedDict[int, Any] = OrderedDict()
        self._capacity = capacity
        self._on_reject = on_reject

    def add(self, msg: Any) -> None:
        """Subscription callback: keep ``msg`` (a sensor_msgs/CameraInfo) unless it is malformed."""
        problem = camera_info_problem(msg)
        if problem is not None:
            if self._on_reject is not None:
                self._on_reject(problem)
            return
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self._lock:
            self._by_stamp.pop(stamp_ns, None)
            self._by_stamp[stamp_ns] = msg
            while len(self._by_stamp) > self._capacity:
                self._by_stamp.popitem(last=False)

    def match(self, stamp_ns: int) -> tuple[Any | None, bool]:
        """``(info, exact)``: the message with this stamp, else the newest one received (intrinsics rarely
        change; the driver may publish it after the image), else ``(None, False)``."""
        with self._lock:
            if stamp_ns in self._by_stamp:
                return self._by_stamp[stamp_ns], True
            if self._by_stamp:
                return next(reversed(self._by_stamp.values())), False
        return None, False


def scale_camera_info(info: Any, height: int, width: int, stamp: tuple[int, int], frame_id: str) -> Any:
    """A new CameraInfo for an output of ``height`` x ``width`` pixels with the output header.

    Args:
        info: the input sensor_msgs/CameraInfo (its ``width``/``height`` > 0 describe the input image).
        height, width: output size in pixels.
        stamp: (sec, nanosec) of the outputs; ``frame_id`` likewise.
    """
    from sensor_msgs.msg import CameraInfo

    sx, sy = width / info.width, height / info.height  # sizes > 0: checked by camera_info_problem on arrival
    out = CameraInfo()
    out.header.stamp.sec, out.header.stamp.nanosec = int(stamp[0]), int(stamp[1])
    out.header.frame_id = frame_id
    out.height, out.width = int(height), int(width)
    out.distortion_model = info.distortion_model
    out.d = list(info.d)
    out.r = list(info.r)
    k = list(info.k)
    k[0], k[2], k[4], k[5] = k[0] * sx, k[2] * sx, k[4] * sy, k[5] * sy
    out.k = k
    p = list(info.p)
    p[0], p[2], p[3], p[5], p[6], p[7] = p[0] * sx, p[2] * sx, p[3] * sx, p[5] * sy, p[6] * sy, p[7] * sy
    out.p = p
    out.binning_x = out.binning_y = 0
    roi = info.roi
    out.roi.x_offset, out.roi.width = round(roi.x_offset * sx), round(roi.width * sx)
    out.roi.y_offset, out.roi.height = round(roi.y_offset * sy), round(roi.height * sy)
    out.roi.do_rectify = roi.do_rectify
    return out
