"""Params-file and command-line reading (no ROS): key matching as rcl does it, sources, one-line YAML errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from moose_ros.errors import ConfigError
from moose_ros.ros import param_sources as S


@pytest.mark.parametrize(
    ("key", "fqn", "expected"),
    [
        ("/**", "/front/moose_node", True),
        ("/**", "/moose_node", True),
        ("/**/moose_node", "/front/moose_node", True),
        ("/**/moose_node", "/moose_node", True),
        ("/**/moose_node", "/a/b/moose_node", True),
        ("/**/moose_node", "/front/other_node", False),
        ("moose_node", "/moose_node", True),
        ("moose_node", "/front/moose_node", False),  # the issue: a plain key is dropped under a namespace
        ("/moose_node", "/front/moose_node", False),
        ("/*/moose_node", "/front/moose_node", True),
        ("/*/moose_node", "/a/b/moose_node", False),
        ("/front/*", "/front/moose_node", True),
        ("/front/moose_node", "/front/moose_node", True),
    ],
)
def test_key_matching(key: str, fqn: str, expected: bool) -> None:
    assert S.key_matches(key, fqn) is expected


def test_command_line_sources_and_fqn() -> None:
    argv = ["moose_node", "--help-me", "--ros-args", "-r", "__node:=cam_node", "-r", "__ns:=/front",
            "--params-file", "a.yaml", "-p", "threshold:=-4", "--log-level", "debug", "-r", "image:=/cam/x",
            "--params-file", "b.yaml", "--", "-p", "not:=ros"]
    cl = S.parse_command_line(argv)
    assert cl.params_files == (Path("a.yaml"), Path("b.yaml"))
    assert dict(cl.cli_params) == {"threshold": "-4"}
    assert cl.node_fqn("moose_node") == "/front/cam_node"
    assert S.parse_command_line(["x", "--ros-args", "-r", "__ns:=rear"]).node_fqn("moose_node") == "/rear/moose_node"
    assert S.parse_command_line(["x"]).node_fqn("moose_node") == "/moose_node"
    assert cl.value("threshold", []) == -4


def _write(path: Path, document: object) -> Path:
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_file_reports_values_warnings_and_sources(tmp_path: Path) -> None:
    shared = _write(tmp_path / "shared.yaml", {
        "/**": {"ros__parameters": {"threshold": -2.0, "camera_fps": 30, "qos_overrides": {"/x": {"depth": 1}}}},
        "/**/moose_node": {"ros__parameters": {"colormap": "jet"}},
        "driver": {"ros__parameters": {"rate": 10}},
    })
    old = _write(tmp_path / "old.yaml", {"moose_node": {"ros__parameters": {"threshold": 5.0}}})
    fqn = "/front/moose_node"
    reports = [S.read_params_file(shared, fqn), S.read_params_file(old, fqn)]
    assert reports[0].matched == ("/**", "/**/moose_node") and reports[1].matched == ()
    assert reports[0].values["threshold"] == -2.0 and reports[0].values["colormap"] == "jet"
    known = ["threshold", "colormap"]
    (foreign,) = reports[0].warnings(fqn, known)
    assert "camera_fps" in foreign and "qos_overrides" not in foreign and "rate" not in foreign
    (dropped,) = reports[1].warnings(fqn, known)
    assert str(old) in dropped and "['moose_node']" in dropped and "/**" in dropped
    cl = S.parse_command_line(["x", "--ros-args", "-p", "colormap:=inferno"])
    origin = S.sources(cl, reports)
    assert origin["threshold"] == str(shared) and origin["colormap"] == "-p on the command line"
    assert cl.value("colormap", reports) == "inferno" and cl.value("threshold", reports) == -2.0
    line = S.describe_changes({"threshold": -2.0, "colormap": "turbo"}, {"threshold": float("nan"),
                                                                          "colormap": "turbo"}, origin)
    assert line == f"parameters differing from the built-in defaults: threshold=-2.0 (from {shared})"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("/**:\n  ros__parameters:\n    threshold: [1, 2\n", "invalid YAML at line"),
        ("- a\n- b\n", "expected a mapping"),
        ("/**:\n  threshold: 1\n", "'ros__parameters' mapping"),
    ],
)
def test_broken_files_are_one_line(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        S.read_params_file(path, "/moose_node")
    message = str(info.value)
    assert message.startswith(f"params file {path}: ") and needle in message and "\n" not in message
    with pytest.raises(ConfigError, match="cannot read"):
        S.read_params_file(tmp_path / "missing.yaml", "/moose_node")
