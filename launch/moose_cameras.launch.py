"""One moose_node per camera, each in its own namespace, from one launch file.

``ros2 launch moose_ros moose_cameras.launch.py cameras:=front,rear image:=image_raw`` starts
``/front/moose_node`` reading ``/front/image_raw`` (and ``/front/camera_info``) and ``/rear/moose_node``
reading ``/rear/image_raw``; outputs land under ``/<camera>/moose_node/...``. Every node gets the same
``params_file`` (default: the installed config/moose.yaml, keyed ``/**`` so it applies in every namespace) and
the ``model`` / ``backend`` overrides.
Each node is a process with its own backend: cameras run in parallel, one slow camera never delays another, at
the cost of one model copy in memory per camera (see the README section "Multiple cameras").
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def _nodes(context, *args, **kwargs):
    overrides = {"use_sim_time": LaunchConfiguration("use_sim_time").perform(context).lower() == "true"}
    for name in ("model", "backend"):
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    params_file = LaunchConfiguration("params_file").perform(context)
    image = LaunchConfiguration("image").perform(context).strip("/")
    cameras = [c.strip() for c in LaunchConfiguration("cameras").perform(context).split(",") if c.strip()]
    return [
        Node(
            package="moose_ros",
            executable="moose_node",
            name="moose_node",
            namespace=camera,
            output="screen",
            emulate_tty=True,
            parameters=[params_file, overrides],
            remappings=[("image", f"/{camera}/{image}"), ("image/compressed", f"/{camera}/{image}/compressed"),
                        ("camera_info", f"/{camera}/camera_info")],
        )
        for camera in cameras
    ]


def generate_launch_description() -> LaunchDescription:
    default_params = os.path.join(get_package_share_directory("moose_ros"), "config", "moose.yaml")
    return LaunchDescription(
        [
            DeclareLaunchArgument("cameras", default_value="front,rear", description="comma-separated namespaces"),
            DeclareLaunchArgument("image", default_value="image_raw", description="input topic inside each namespace"),
            DeclareLaunchArgument("params_file", default_value=default_params, description="parameter YAML file"),
            DeclareLaunchArgument("model", default_value="", description="fused .onnx; empty = params_file's"),
            DeclareLaunchArgument("backend", default_value="", description="auto|onnxruntime|tensorrt|torch|..."),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (bag replay)"),
            OpaqueFunction(function=_nodes),
        ]
    )
