"""The private rclpy names the node relies on exist and behave on this distribution (the suite runs this file on
Kilted and on Jazzy), and nothing outside moose_ros/ros/rclpy_private.py touches private rclpy."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: private rclpy: the implementation singleton, the pybind module, Node/Context attributes with a leading underscore
PRIVATE = re.compile(r"rclpy\.impl\.implementation_singleton|_rclpy_pybind11|\._parameter_overrides\b")


def test_private_rclpy_only_in_its_module() -> None:
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in sorted((REPO / "moose_ros").rglob("*.py"))
                 if p.name != "rclpy_private.py"
                 for i, line in enumerate(p.read_text().splitlines(), start=1) if PRIVATE.search(line)]
    assert offenders == [], f"private rclpy outside moose_ros/ros/rclpy_private.py: {offenders}"


def test_parameter_overrides_before_declaration(ros_domain: int) -> None:
    """`-p` values are visible (and replaceable) before declaration, as the node's validation needs."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter

    from moose_ros.ros.rclpy_private import RCLError, parameter_overrides

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    try:
        node = rclpy.create_node("overrides_probe", context=context,
                                 cli_args=["--ros-args", "-p", "threshold:=-4", "-p", "model:=x.onnx"])
        overrides = parameter_overrides(node)
        assert overrides["threshold"].value == -4 and overrides["model"].value == "x.onnx"
        overrides["threshold"] = Parameter("threshold", value=-4.0)  # the node's int -> float coercion
        assert node.declare_parameter("threshold", 0.0).value == -4.0
        assert parameter_overrides(object()) == {}
        assert issubclass(RCLError, Exception) and RCLError.__name__ == "RCLError"
        node.destroy_node()
    finally:
        context.try_shutdown()
