"""``moose_node --help``: usage text built from the parameter table, printed without starting ROS.

Importing this module imports neither rclpy nor the backends, so ``--help`` opens no DDS participant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from moose_ros.ros.params import DYNAMIC, PARAMETERS

__all__ = ["HELP_FLAGS", "usage", "wants_help"]

HELP_FLAGS = ("-h", "--help")

_TOPICS = """\
topics (relative names; remap with -r, prefix <camera>/ with `cameras`):
  in   image                      sensor_msgs/Image rgb8, bgr8, rgba8, bgra8, mono8
  in   image/compressed           sensor_msgs/CompressedImage jpeg/png (input_transport compressed|both)
  out  ~/segmentation             sensor_msgs/Image mono8 class ids
  out  ~/segmentation/color       sensor_msgs/Image rgb8 (model palette)
  out  ~/anomaly                  sensor_msgs/Image 32FC1 raw score, higher = more anomalous
  out  ~/anomaly/overlay          sensor_msgs/Image rgb8 heat map over the input
  out  ~/anomaly/mask             sensor_msgs/Image mono8, 255 where score > threshold
  out  /diagnostics               diagnostic_msgs/DiagnosticArray"""

_EXAMPLES = """\
examples:
  moose_node --ros-args -r image:=/camera/image_raw
  moose_node --ros-args --params-file config/moose.yaml -p threshold:=-4.0 -r image:=/cam/front
  moose_node --ros-args -r __ns:=/front --params-file config/moose.yaml    # outputs /front/moose_node/...
  ros2 param set /moose_node threshold -3.5                                  # run-time change (* below)"""


def _format(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, float) and math.isnan(value):
        return ".nan"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if value == "" else value
    return str(value)


def usage(prog: str = "moose_node") -> str:
    """The full help text: synopsis, every parameter with default and range, topics, examples."""
    lines = [
        f"usage: {prog} [-h] [--ros-args [--params-file FILE] [-p NAME:=VALUE] [-r FROM:=TO] ...]",
        "",
        "MOoSe anomaly segmentation for camera streams: one fused ONNX graph (ONNX Runtime / TensorRT),",
        "segmentation and anomaly heat maps out. Every value is validated at start-up; a bad one stops the node",
        "with the parameter's name and the allowed values. * = changeable at run time.",
        "",
        "parameters (name  default  [range]  meaning):",
    ]
    width = max(len(spec.name) for spec in PARAMETERS) + 2
    for spec in PARAMETERS:
        marker = "*" if spec.name in DYNAMIC else " "
        bounds = f"  [{spec.low}, {spec.high}]" if spec.low is not None and spec.high is not None else ""
        lines.append(f"  {marker}{spec.name:<{width}}{_format(spec.default):<12}{bounds}  {spec.description}")
    lines += ["", _TOPICS, "", _EXAMPLES, "",
              "DDS: processes this package starts use config/fastdds_loopback.xml; set FASTDDS_DEFAULT_PROFILES_FILE",
              "to it (or fastdds_large_data.xml on a robot) when starting the node by hand."]
    return "\n".join(lines)


def wants_help(argv: Sequence[str]) -> bool:
    """``-h``/``--help`` among the program's own arguments (before any ``--ros-args``)."""
    own = list(argv)
    if "--ros-args" in own:
        own = own[: own.index("--ros-args")]
    return any(arg in HELP_FLAGS for arg in own)
