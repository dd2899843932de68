"""moose_ros: MOoSe multi-head out-of-distribution segmentation for ROS 2.

Layers (imports only point downwards; import contracts in pyproject.toml): tools > bag > ros > train | bench >
eval | calibrate > pipeline > backends > export > contract > core (model, metrics, data, scoring, visualize, ...).
Importing this package imports neither torch nor rclpy.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
