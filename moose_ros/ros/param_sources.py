"""Where the node's parameter values come from: ``--params-file`` files and ``-p`` overrides on the command line.

rcl merges every source into one override table and silently drops a params-file section whose key does not
match the node's fully qualified name (``moose_node:`` does not apply to ``/front/moose_node``). This module reads
the same command line and files again, without rclpy, so the node can say at start-up which file (or ``-p``) set
each non-default value, warn about a file that applies to no parameter of the node, warn about keys in a shared
file that are not ours, and turn a YAML error into one line instead of an ``RCLError`` traceback.

Key matching follows rclcpp/rclpy: a key without a leading ``/`` gets one; ``/*`` matches one namespace token or
the node name, ``/**`` any number of tokens (so ``/**`` and ``/**/moose_node`` apply under any namespace).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from moose_ros.errors import ConfigError

__all__ = [
    "CommandLine",
    "FileReport",
    "key_matches",
    "parse_command_line",
    "read_params_file",
]

#: ``--ros-args`` flags that take one argument (skipped when scanning for params files and ``-p``).
_FLAGS_WITH_VALUE = frozenset({"-r", "--remap", "--log-level", "--log-config-file", "-e", "--enclave",
                               "--log-file-name"})
#: Parameter names every rclpy node accepts without declaring them itself.
ROS_OWN = ("use_sim_time", "start_type_description_service")


@dataclass(frozen=True)
class CommandLine:
    """The parameter sources of one ``--ros-args`` command line, in the order rcl applies them.

    Attributes:
        params_files: ``--params-file`` paths (later files win).
        cli_params: ``-p name:=value`` overrides as raw YAML text (these win over every file).
        remaps: ``-r from:=to`` rules (``__ns`` and ``__node`` set the node's namespace and name).
    """

    params_files: tuple[Path, ...] = ()
    cli_params: Mapping[str, str] = field(default_factory=dict)
    remaps: Mapping[str, str] = field(default_factory=dict)

    def node_fqn(self, name: str) -> str:
        """The fully qualified node name rcl gives a node called ``name`` under these remaps."""
        namespace = self.remaps.get("__ns", "/").rstrip("/")
        node = self.remaps.get("__node", self.remaps.get("__name", name))
        return f"{namespace if namespace.startswith('/') or not namespace else '/' + namespace}/{node}"

    def value(self, name: str, reports: Sequence[FileReport]) -> Any:
        """The value rcl would give parameter ``name``: ``-p`` wins, else the last params file setting it;
        None when neither does."""
        if name in self.cli_params:
            try:
                return yaml.safe_load(self.cli_params[name])
            except yaml.YAMLError as err:
                raise ConfigError(f"-p {name}:={self.cli_params[name]}: not a YAML value ({err})") from err
        found = None
        for report in reports:
            if name in report.values:
                found = report.values[name]
        return found


def parse_command_line(argv: Sequence[str]) -> CommandLine:
    """Scan the ``--ros-args ... [--]`` sections of ``argv`` for ``--params-file`` and ``-p``/``--param``."""
    files: list[Path] = []
    params: dict[str, str] = {}
    remaps: dict[str, str] = {}
    in_ros = False
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--ros-args":
            in_ros = True
        elif arg == "--" and in_ros:
            in_ros = False
        elif in_ros and arg == "--params-file" and i + 1 < len(args):
            files.append(Path(args[i + 1]))
            i += 1
        elif in_ros and arg in ("-p", "--param") and i + 1 < len(args):
            name, sep, value = args[i + 1].partition(":=")
            if sep:
                params[name] = value
            i += 1
        elif in_ros and arg in ("-r", "--remap") and i + 1 < len(args):
            source, sep, target = args[i + 1].partition(":=")
            if sep and ":" not in source:  # node-specific rules (node:from:=to) are not ours to resolve
                remaps[source] = target
            i += 1
        elif in_ros and arg in _FLAGS_WITH_VALUE:
            i += 1
        i += 1
    return CommandLine(tuple(files), params, remaps)


def key_matches(key: str, node_fqn: str) -> bool:
    """Whether a params-file top-level ``key`` applies to the node ``node_fqn`` (e.g. ``/front/moose_node``)."""
    pattern = key if key.startswith("/") else "/" + key
    # rclcpp's rule: "/*" -> one token, hence "/**" -> any number of tokens.
    regex = re.escape(pattern).replace(r"/\*", r"(/\w+)").replace(r"(/\w+)\*", r"(/\w+)*")
    return re.fullmatch(regex, node_fqn) is not None


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested ``ros__parameters`` dicts -> dotted names, as rcl does (``a: {b: 1}`` -> ``a.b``)."""
    flat: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


@dataclass(frozen=True)
class FileReport:
    """What one params file holds for one node.

    Attributes:
        path: the file.
        keys: its top-level (node name) keys, in file order.
        matched: the keys that apply to the node.
        values: parameter name -> value from the matching sections (later sections win).
    """

    path: Path
    keys: tuple[str, ...]
    matched: tuple[str, ...]
    values: Mapping[str, Any]

    def warnings(self, node_fqn: str, known: Sequence[str]) -> list[str]:
        """One-line warnings: the file applies to no parameter of the node, or sets names that are not ours."""
        if not self.matched:
            return [
                f"params file {self.path} applies to no parameter of {node_fqn}: its top-level keys "
                f"{list(self.keys)} do not match this node's name (ROS ignores such sections silently); "
                "key the file '/**:' or '/**/moose_node:' to apply it under any namespace"
            ]
        # qos_overrides.* in a shared '/**' section are meant for nodes that enable QoS overriding (camera
        # drivers, recorders); rclpy ignores them for this node, which exposes none, so they are not a mistake here
        foreign = sorted(n for n in self.values if n not in known and n not in ROS_OWN
                         and not n.startswith("qos_overrides."))
        if not foreign:
            return []
        return [f"params file {self.path}: {', '.join(foreign)} under {list(self.matched)} "
                f"{'is not a parameter' if len(foreign) == 1 else 'are not parameters'} of {node_fqn} (ignored)"]


def read_params_file(path: Path, node_fqn: str) -> FileReport:
    """Read one params file the way rcl does and keep what applies to ``node_fqn``.

    Raises:
        ConfigError: the file cannot be read, is not valid YAML, or is not ``{node: {ros__parameters: {...}}}``;
            one line naming the file and the problem.
    """
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"params file {path}: cannot read it ({err.strerror or err})") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"params file {path}: invalid YAML{where}: {problem}") from err
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise ConfigError(f"params file {path}: expected a mapping of node names to 'ros__parameters', "
                          f"got a {type(document).__name__}")
    values: dict[str, Any] = {}
    matched: list[str] = []
    for key, section in document.items():
        params = section.get("ros__parameters") if isinstance(section, Mapping) else None
        if not isinstance(params, Mapping):
            raise ConfigError(f"params file {path}: key {key!r} must hold a 'ros__parameters' mapping")
        if key_matches(str(key), node_fqn):
            matched.append(str(key))
            values.update(_flatten(params))
    return FileReport(path, tuple(str(k) for k in document), tuple(matched), values)


def sources(command_line: CommandLine, reports: Sequence[FileReport]) -> dict[str, str]:
    """Parameter name -> where its value came from (``"-p (command line)"`` or the last params file setting it)."""
    origin: dict[str, str] = {}
    for report in reports:
        for name in report.values:
            origin[name] = str(report.path)
    for name in command_line.cli_params:
        origin[name] = "-p on the command line"
    return origin


def describe_changes(values: Mapping[str, Any], defaults: Mapping[str, Any], origin: Mapping[str, str]) -> str:
    """One log line: the parameters whose ``values`` differ from ``defaults``, each with its source."""
    changed = []
    for name, value in values.items():
        default = defaults.get(name)
        same = value == default or (isinstance(value, float) and isinstance(default, float)
                                    and value != value and default != default)  # NaN == NaN here
        if not same:
            changed.append(f"{name}={value!r} (from {origin.get(name, 'an override')})")
    if not changed:
        return "parameters: all at their built-in defaults"
    return "parameters differing from the built-in defaults: " + ", ".join(changed)
