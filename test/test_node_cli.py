"""``moose_node`` command line: --help without ROS, one-line errors for broken params files, Humble-era rclpy only."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from moose_ros.ros import launcher
from moose_ros.ros.params import PARAMETERS

REPO = Path(__file__).resolve().parents[1]

#: rclpy APIs newer than Humble that we know of (pattern -> first distro that has it). Humble, Jazzy and Kilted
#: must all run the node, so none of these may appear in the package, its launch files or its tests.
NEWER_THAN_HUMBLE = {
    r"with\s+rclpy\.init\s*\(": "Kilted (rclpy.init as a context manager)",
    r"\badd_pre_set_parameters_callback\b": "Iron",
    r"\badd_post_set_parameters_callback\b": "Iron",
    r"\brclpy\.event_handler\b": "Iron (Humble: rclpy.qos_event)",
    r"\bEventsExecutor\b": "Jazzy",
    r"\bservice_introspection\b": "Iron",
    r"\bget_type_description\b": "Iron",
    r"\bautostart\s*=": "Jazzy (create_timer(autostart=...))",
    r"\brclpy\.wait_for_message\b": "Iron",
    r"\bcall_async\([^)]*timeout": "never",
}


def _sources() -> list[Path]:
    files = sorted((REPO / "moose_ros").rglob("*.py")) + sorted((REPO / "launch").glob("*.py"))
    return files + [p for p in sorted((REPO / "test").glob("*.py")) if p.name != Path(__file__).name]


def test_sources_use_no_rclpy_api_newer_than_humble() -> None:
    found = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        for pattern, since in NEWER_THAN_HUMBLE.items():
            for match in re.finditer(pattern, text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.relative_to(REPO)}:{line}: {match.group(0)!r} needs {since}")
    assert not found, "\n".join(found)


def test_scanner_catches_the_kilted_context_manager() -> None:
    sample = "def main(args=None):\n    with rclpy.init(args=args):\n        pass\n"
    assert any(re.search(p, sample) for p in NEWER_THAN_HUMBLE)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_usage_without_starting_ros(tmp_path: Path, ros_env: dict[str, str], flag: str) -> None:
    env = dict(ros_env, ROS_LOG_DIR=str(tmp_path / "ros_logs"))
    out = subprocess.run([sys.executable, "-m", "moose_ros.ros.node", flag], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: moose_node")
    for spec in PARAMETERS:
        assert re.search(rf"^\s+\*?{spec.name}\s", out.stdout, flags=re.MULTILINE), spec.name
    assert "[0.0, 1.0]" in out.stdout and ".nan" in out.stdout and "__ns:=/front" in out.stdout
    assert "~/anomaly/mask" in out.stdout
    assert not (tmp_path / "ros_logs").exists()  # rclpy.init never ran (it creates the log directory)


def test_params_file_with_yaml_error_is_one_line(tmp_path: Path, ros_env: dict[str, str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("/**:\n  ros__parameters:\n    threshold: [1, 2\n    colormap: jet\n", encoding="utf-8")
    log_path = tmp_path / "node.log"
    proc = launcher.start_node({}, env=ros_env, log_path=log_path, params_file=broken)
    try:
        code = proc.wait(timeout=60)
    finally:
        launcher.stop(proc)
    lines = log_path.read_text().splitlines()[1:]  # the first line is the command
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"moose_node: error: params file {broken}: invalid YAML at line"), lines
