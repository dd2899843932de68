"""Launch moose_node: ``ros2 launch moose_ros moose.launch.py image:=/camera/image_raw model:=/path/model.onnx``.

Arguments: ``image`` (input topic; ``<image>/compressed`` is the compressed one, ``camera_info`` beside it is the
camera info), ``namespace``, ``params_file``
(default: the installed config/moose.yaml), ``model`` and ``backend`` (override the file when not empty),
``use_sim_time`` (true when replaying bags with ``--clock``).
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def _camera_info_beside(image: str) -> str:
    """``/camera/image_raw`` -> ``/camera/camera_info`` (drivers publish both in one namespace)."""
    return f"{image.rsplit('/', 1)[0]}/camera_info" if "/" in image.strip("/") else "camera_info"


def _node(context, *args, **kwargs):
    overrides = {"use_sim_time": LaunchConfiguration("use_sim_time").perform(context).lower() == "true"}
    for name in ("model", "backend"):
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    image = LaunchConfiguration("image").perform(context)
    return [
        Node(
            package="moose_ros",
            executable="moose_node",
            name="moose_node",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            emulate_tty=True,
            parameters=[LaunchConfiguration("params_file"), overrides],
            remappings=[("image", image), ("image/compressed", f"{image}/compressed"),
                        ("camera_info", _camera_info_beside(image))],
        )
    ]


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory("moose_ros"), "config", "moose.yaml")
    return LaunchDescription(
        [
            DeclareLaunchArgument("image", default_value="image", description="input sensor_msgs/Image topic"),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
            DeclareLaunchArgument("params_file", default_value=default_params, description="parameter YAML file"),
            DeclareLaunchArgument("model", default_value="", description="fused .onnx; empty = params_file's"),
            DeclareLaunchArgument("backend", default_value="", description="auto|onnxruntime|tensorrt|torch|..."),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
            OpaqueFunction(function=_node),
        ]
    )
