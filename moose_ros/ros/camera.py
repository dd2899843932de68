"""One input stream of the node: its subscriptions, publishers, counters and pending frame; the output topics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moose_ros.ros.camera_info import CameraInfoCache
from moose_ros.ros.diagnostics import CameraStats

__all__ = ["OUTPUTS", "Camera"]

#: output key -> (topic suffix, NodeConfig switch)
OUTPUTS = {
    "anomaly": ("anomaly", "publish_anomaly"),
    "segmentation": ("segmentation", "publish_segmentation"),
    "mask": ("anomaly/mask", "publish_mask"),
    "color": ("segmentation/color", "publish_segmentation_color"),
    "overlay": ("anomaly/overlay", "publish_overlay"),
}


class Camera:
    """One input stream: its subscriptions, publishers, counters and the pending (latest) message."""

    def __init__(self, name: str, on_info_reject: Callable[[str], None] | None = None) -> None:
        """``on_info_reject(reason)``: called for each malformed camera_info (see :class:`CameraInfoCache`)."""
        self.name = name
        self.prefix = f"{name}/" if name else ""
        self.stats = CameraStats()
        self.publishers: dict[str, Any] = {}
        self.subscriptions: list[Any] = []
        self.pending: tuple[bytes, bool] | None = None  # (serialized message, compressed)
        self.infos = CameraInfoCache(on_reject=on_info_reject)
        self.info_publisher: Any = None
