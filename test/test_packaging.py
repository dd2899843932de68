"""The built wheel is what colcon / pip users get: share/moose_ros data files and both console scripts."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                         text=True, check=True)
    return [line for line in out.stdout.splitlines() if line and (REPO / line).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    src = tmp_path_factory.mktemp("src")
    for rel in _tracked_files():
        if rel.startswith(("test/", "docs/")):
            continue
        dst = src / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(out), str(src)], check=True, capture_output=True)
    (path,) = out.glob("moose_ros-*.whl")
    return zipfile.ZipFile(path)


def _share_files(wheel: zipfile.ZipFile) -> set[str]:
    marker = "/data/share/moose_ros/"
    return {name.split(marker, 1)[1] for name in wheel.namelist() if marker in name}


def test_wheel_installs_launch_config_models_and_package_xml(wheel: zipfile.ZipFile) -> None:
    share = _share_files(wheel)
    expected = {"package.xml", "launch/moose.launch.py", "config/moose.yaml", "config/fastdds_loopback.xml",
                "config/fastdds_large_data.xml", "config/moose.rviz", "models/moose_synthstreet.onnx"}
    assert expected <= share, f"missing from share/moose_ros: {sorted(expected - share)}"
    names = wheel.namelist()
    assert any(n.endswith("/data/share/ament_index/resource_index/packages/moose_ros") for n in names)


def test_wheel_declares_both_console_scripts(wheel: zipfile.ZipFile) -> None:
    (ep_name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser()
    parser.read_string(wheel.read(ep_name).decode())
    scripts = dict(parser["console_scripts"])
    assert scripts["moose"] == "moose_ros.cli:main"
    assert scripts["moose_node"] == "moose_ros.ros.node:main"


def test_package_xml_is_format_3_ament_python() -> None:
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "moose_ros"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.iter("exec_depend")}
    assert {"rclpy", "sensor_msgs", "diagnostic_msgs", "launch_ros"} <= deps


def test_setup_cfg_puts_executables_where_ros2_run_finds_them() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert cfg["develop"]["script_dir"] == "$base/lib/moose_ros"
    assert cfg["install"]["install_scripts"] == "$base/lib/moose_ros"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in readme
    assert [line for line in ci.splitlines() if line and not line.startswith(("#", "set ", "cd "))] == ["make test"]
