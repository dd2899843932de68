"""Build the package with colcon as a ROS 2 workspace does, then start ``moose_node`` from ``install/``.

colcon (``colcon-common-extensions`` + ``colcon-ros``, the ``dev`` extra) builds a copy of the package in a
temporary workspace; the node is started from ``install/moose_ros/lib/moose_ros/moose_node`` after sourcing
``install/setup.bash`` (loopback DDS profile, own domain) and must find its bundled model and config through the
ament index of that install, not through the source checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from moose_ros.ros import launcher

#: Seconds a node may take to come up (imports and model load take minutes on a starved CPU).
START_S = 240.0

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
PACKAGE_FILES = ("moose_ros", "launch", "config", "models", "resource", "package.xml", "setup.py", "setup.cfg",
                 "README.md")
COLCON = "import sys; from colcon_core.command import main; sys.exit(main())"


def _workspace(tmp_path: Path) -> Path:
    src = tmp_path / "ws" / "src" / "moose_ros"
    src.mkdir(parents=True)
    for name in PACKAGE_FILES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pt"))
        else:
            shutil.copy2(path, src / name)
    return tmp_path / "ws"


def _colcon_build(ws: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", COLCON, "--log-base", str(ws / "log"), "build", "--base-paths", "src",
           "--packages-select", "moose_ros", "--event-handlers", "console_direct-"]
    return subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True, timeout=300)


def test_colcon_build_and_run_from_install(tmp_path: Path, ros_domain: int, ros_env: dict[str, str]) -> None:
    pytest.importorskip("colcon_core", reason="colcon is not installed: pip install -e '.[dev]' brings "
                                              "colcon-common-extensions and colcon-ros")
    pytest.importorskip("colcon_ros", reason="colcon-ros is not installed (pip install -e '.[dev]')")
    ws = _workspace(tmp_path)
    build = _colcon_build(ws, ros_env)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    install = ws / "install" / "moose_ros"
    share = install / "share" / "moose_ros"
    for rel in ("package.xml", "config/moose.yaml", "config/fastdds_loopback.xml", "launch/moose.launch.py",
                "models/moose_synthstreet.onnx"):
        assert (share / rel).is_file(), rel
    assert (ws / "install" / "moose_ros" / "share" / "ament_index" / "resource_index" / "packages"
            / "moose_ros").is_file()
    executable = install / "lib" / "moose_ros" / "moose_node"
    assert executable.is_file()

    sourced = f"source {ws / 'install' / 'setup.bash'} && "
    lookup = subprocess.run(
        ["bash", "-c", sourced + f"{sys.executable} -c 'from ament_index_python.packages import "
         "get_package_share_directory as g; print(g(\"moose_ros\"))'"],
        env=ros_env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert lookup.returncode == 0 and Path(lookup.stdout.strip()) == share, lookup.stdout + lookup.stderr

    log_path = tmp_path / "node.log"
    run = (sourced + f"exec {executable} --ros-args --params-file {share / 'config' / 'moose.yaml'} "
           "-p threads:=1 -p warmup:=false")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["bash", "-c", run], env=ros_env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=tmp_path)
    from test_ros_support import Harness

    tester = Harness(ros_domain)
    try:
        launcher.wait_for_topic(tester.node, "/moose_node/anomaly", proc=proc, log_path=log_path,
                                executor=tester.executor, timeout_s=START_S, settle_s=0.0)
    finally:
        tester.close()
        assert launcher.stop(proc) == 0, launcher.log_tail(log_path)
    log = log_path.read_text(errors="replace")
    assert f"from {share / 'models' / 'moose_synthstreet.onnx'}" in log, log  # the bundled model of install/
    assert f"params files: {share / 'config' / 'moose.yaml'}" in log, log
    assert str(REPO / "models") not in log
