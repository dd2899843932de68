"""Declare the node's parameters on an rclpy node with typed descriptors (types, ranges, descriptions).

Every parameter of :data:`moose_ros.ros.params.PARAMETERS` is statically typed from its default (``cameras``,
unset by default, is the one dynamically typed parameter), carries its description, a range where it has one
(``ros2 param describe`` and rqt show them; rqt draws sliders) and ``read_only`` unless it may change at run
time. Overrides are validated first by :func:`~moose_ros.ros.params.config_from_values`, so a bad value gives
our one-line message naming the parameter and what is allowed, and an integer given for a float parameter
(``-p threshold:=-4``) is accepted instead of failing rclpy's type check. Uses only rclpy APIs present since Humble.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from moose_ros.errors import ConfigError
from moose_ros.ros import param_sources
from moose_ros.ros.param_sources import ROS_OWN
from moose_ros.ros.params import DYNAMIC, PARAMETERS, ParamSpec, config_from_values, plain_value
from moose_ros.ros.rclpy_private import parameter_overrides

__all__ = ["declare_model_info", "declare_parameters", "foreign_overrides", "report_parameters"]

_SPECS = {spec.name: spec for spec in PARAMETERS}


def _coerce(spec: ParamSpec, value: Any) -> Any:
    """An override in the parameter's declared type (ints for float parameters and float arrays)."""
    if isinstance(spec.default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(spec.default, list) and spec.default and isinstance(spec.default[0], float) and isinstance(
            value, list):
        return [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


def _descriptor(spec: ParamSpec, managed: bool) -> Any:
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    descriptor = ParameterDescriptor(
        name=spec.name,
        description=spec.description,
        # managed: start-up parameters stay settable; the node accepts them only while unconfigured
        read_only=spec.name not in DYNAMIC and not managed,
        dynamic_typing=spec.default is None,
    )
    if spec.low is not None and spec.high is not None:
        if isinstance(spec.default, float):
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high), step=0.0)]
        elif isinstance(spec.default, int) and not isinstance(spec.default, bool):
            descriptor.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
    return descriptor


def foreign_overrides(node: Any) -> list[str]:
    """Names in the node's parameter overrides that are neither ours nor rclpy's own (sorted).

    ``qos_overrides.*`` entries are not counted: a shared '/**' params file sets them for the nodes that enable QoS
    overriding, and rclpy ignores them for this node.
    """
    overrides = parameter_overrides(node)
    return sorted(
        name for name in overrides
        if name not in _SPECS and name not in ROS_OWN and not name.startswith("qos_overrides.")
    )


def declare_parameters(node: Any, *, managed: bool = False) -> dict[str, Any]:
    """Declare every parameter of :data:`PARAMETERS` on ``node``; return their raw values (plain Python).

    ``managed`` (a lifecycle node): start-up parameters are declared writable, so that a failed ``configure``
    can be fixed and retried; the node's set-parameters callback accepts them only while it is unconfigured.

    Raises:
        ConfigError: an override of the wrong type or out of range (names the parameter and the allowed values).
    """
    from rclpy.parameter import Parameter

    overrides = parameter_overrides(node)
    ours = {name: plain_value(p.value) for name, p in overrides.items() if name in _SPECS}
    config_from_values(ours)
    for name, value in ours.items():
        coerced = _coerce(_SPECS[name], value)
        if coerced is not value:
            overrides[name] = Parameter(name, value=coerced)
    values: dict[str, Any] = {}
    for spec in PARAMETERS:
        param = node.declare_parameter(spec.name, spec.default, _descriptor(spec, managed))
        values[spec.name] = plain_value(param.value)
    return values


def declare_model_info(node: Any, classes: Sequence[str], colors: Sequence[Sequence[int]]) -> None:
    """Read-only ``model_classes`` (class names, index = class id) and ``model_colors`` (flat RGB, 3 per class)."""
    from rcl_interfaces.msg import ParameterDescriptor

    node.declare_parameter(
        "model_classes", [str(c) for c in classes] or [""],
        ParameterDescriptor(description="class names of the loaded model, index = class id in ~/segmentation",
                            read_only=True),
        ignore_override=True,
    )
    node.declare_parameter(
        "model_colors", [int(v) for rgb in colors for v in rgb] or [0],
        ParameterDescriptor(description="RGB palette of ~/segmentation/color, 3 integers per class",
                            read_only=True),
        ignore_override=True,
    )


def report_parameters(node: Any, values: dict[str, Any], command_line: param_sources.CommandLine) -> None:
    """Log once which values differ from the defaults and where they came from; warn about params files
    that apply to no parameter of this node and about foreign keys. A foreign ``-p`` name is an error.

    Raises:
        ConfigError: a ``-p name:=...`` on the command line that is not a parameter of this node.
    """
    fqn = node.get_fully_qualified_name()
    known = [spec.name for spec in PARAMETERS]
    reports = [param_sources.read_params_file(path, fqn) for path in command_line.params_files]
    for report in reports:
        for warning in report.warnings(fqn, known):
            node.get_logger().warning(warning)
    foreign = foreign_overrides(node)
    typos = [name for name in foreign if name in command_line.cli_params]
    if typos:
        raise ConfigError(
            f"unknown parameter(s) {', '.join(repr(t) for t in typos)} given with -p; known: {', '.join(known)}"
        )
    from_files = {name for report in reports for name in report.values}
    unexplained = [name for name in foreign if name not in from_files]
    if unexplained:
        node.get_logger().warning(f"parameter override(s) {', '.join(unexplained)} are not parameters of "
                                  f"{fqn} (ignored)")
    defaults = {spec.name: spec.default for spec in PARAMETERS}
    files = ", ".join(str(p) for p in command_line.params_files) or "none"
    node.get_logger().info(
        f"{param_sources.describe_changes(values, defaults, param_sources.sources(command_line, reports))}"
        f" [params files: {files}]"
    )
