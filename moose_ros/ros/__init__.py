"""ROS 2 adapters (the only subpackage that imports rclpy): the ``moose_node`` node and its helpers.

- :mod:`~moose_ros.ros.node`: the node (``main`` is the ``moose_node`` console script).
- :mod:`~moose_ros.ros.params`: parameters and the validated :class:`~moose_ros.ros.params.NodeConfig`.
- :mod:`~moose_ros.ros.conversions`: sensor_msgs <-> numpy (encodings, row padding, jpeg/png, resizing).
- :mod:`~moose_ros.ros.cdr`: serialized Image/CompressedImage without Python message objects (the fast path).
- :mod:`~moose_ros.ros.diagnostics`: counters and ``/diagnostics`` statuses.
- :mod:`~moose_ros.ros.launcher`: start the node as a child process on the loopback DDS profile.
- :mod:`~moose_ros.ros.bench`: ``moose bench node`` (end-to-end latency over DDS).

Importing this package imports nothing heavy; import the submodules you need.
"""

from __future__ import annotations
