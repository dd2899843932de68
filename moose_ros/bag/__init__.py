"""rosbag2 tools: dataset -> bag (:mod:`.from_dataset`), bag -> frames (:mod:`.reader`), and replay of a bag
into the running node with metrics, latency and drops (:mod:`.evaluate`).

Bags are read and written with ``rosbags`` (pure Python); only the live replay touches rclpy, through
:mod:`moose_ros.ros.replay`.
"""

from __future__ import annotations

from moose_ros.bag.from_dataset import BagSummary, BagTopics, BagWriteOptions, write_bag
from moose_ros.bag.messages import CameraIntrinsics, load_camera_yaml
from moose_ros.bag.reader import BagFrame, BagInfo, inspect_bag, iter_frames

__all__ = [
    "BagFrame",
    "BagInfo",
    "BagSummary",
    "BagTopics",
    "BagWriteOptions",
    "CameraIntrinsics",
    "inspect_bag",
    "iter_frames",
    "load_camera_yaml",
    "write_bag",
]
