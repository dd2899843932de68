"""ROS 2 adapters (the only subpackage that imports rclpy): the ``moose_node`` node and its helpers.

- :mod:`~moose_ros.ros.node`: the node (``main`` is the ``moose_node`` console script).
- :mod:`~moose_ros.ros.lifecycle`: the same node as a managed (lifecycle) node (``managed: true``).
- :mod:`~moose_ros.ros.params`: parameters and the validated :class:`~moose_ros.ros.params.NodeConfig`.
- :mod:`~moose_ros.ros.declare`: typed ROS parameter declaration and the start-up parameter report.
- :mod:`~moose_ros.ros.param_sources`: params files and ``-p`` on the command line, matched as rcl does.
- :mod:`~moose_ros.ros.usage`: ``moose_node --help`` (no ROS started).
- :mod:`~moose_ros.ros.model_check`: the fused-graph contract checked before a backend loads the file.
- :mod:`~moose_ros.ros.camera_info`: camera_info matched by stamp and scaled to the output size.
- :mod:`~moose_ros.ros.conversions`: sensor_msgs <-> numpy (encodings, row padding, jpeg/png, resizing).
- :mod:`~moose_ros.ros.cdr`: serialized Image/CompressedImage without Python message objects (the fast path).
- :mod:`~moose_ros.ros.diagnostics`: counters and ``/diagnostics`` statuses.
- :mod:`~moose_ros.ros.launcher`: start the node as a child process on the loopback DDS profile.
- :mod:`~moose_ros.ros.bench`: ``moose bench node`` (end-to-end latency over DDS).

Importing this package imports nothing heavy; import the submodules you need.
"""

from __future__ import annotations
