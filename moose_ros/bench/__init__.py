"""Every benchmark of the project, run by ``moose bench`` (argument parsing lives in :mod:`moose_ros.tools.bench`).

- :mod:`.infer`: latency of the fused graphs (global vs MOoSe vs ensemble, score variants, earlier graphs);
- :mod:`.quality`: the fast post-processing against the exact one on an OoD split;
- :mod:`.memory`: the ONNX Runtime backend's memory after one large frame, arena on vs off;
- :mod:`.metrics`: throughput of the streaming OoD metrics.

The node's end-to-end benchmark needs rclpy and lives in :mod:`moose_ros.ros.bench` (rclpy stays under ``ros/``).
Nothing here is imported by the node; heavy dependencies are imported inside the functions.
"""

from __future__ import annotations
