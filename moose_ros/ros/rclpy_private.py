"""The two private rclpy names the node needs, in one place (no public API exists for them from Humble to Kilted).

- :func:`parameter_overrides`: the node's parameter overrides (``-p``, params files, launch) BEFORE declaration.
  rclpy keeps them in ``Node._parameter_overrides``; there is no public getter. The node reads them to validate every
  value with its own one-line messages before ``declare_parameter`` would fail with rclpy's type error, to accept an
  integer for a float parameter (``-p threshold:=-4``), and to report overrides that are not its parameters.
- :data:`RCLError`: the exception rcl raises when the context is shut down under a waiting executor (a signal during
  ``rclpy.spin``); rclpy exposes it only through its implementation singleton.

``test/test_ros_rclpy_private.py`` checks both on every distribution the suite runs (Kilted and Jazzy); a rename in
a later rclpy fails there, not silently in the node.
"""

from __future__ import annotations

from typing import Any

from rclpy.impl.implementation_singleton import rclpy_implementation as _implementation

__all__ = ["RCLError", "parameter_overrides"]

#: rcl's error type (``rclpy._rclpy_pybind11.RCLError``).
RCLError: type[Exception] = _implementation.RCLError


def parameter_overrides(node: Any) -> dict[str, Any]:
    """The node's parameter overrides, name -> ``rclpy.parameter.Parameter`` (the live dict: changes made to it
    apply to the parameters declared afterwards). Empty for an object without overrides."""
    overrides = getattr(node, "_parameter_overrides", None)
    return overrides if overrides is not None else {}
