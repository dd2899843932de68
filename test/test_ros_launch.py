"""Static checks of the shipped launch file, RViz layout and FastDDS profiles (launch_ros is not installable here)."""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from moose_ros.ros.node import OUTPUTS

REPO = Path(__file__).resolve().parents[1]
NS = {"d": "http://www.eprosima.com"}


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        node for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == name
    ]


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def test_launch_file_declares_documented_arguments() -> None:
    tree = ast.parse((REPO / "launch" / "moose.launch.py").read_text())
    declared = {c.args[0].value for c in _calls(tree, "DeclareLaunchArgument")}  # type: ignore[attr-defined]
    assert declared == {"image", "namespace", "params_file", "model", "backend", "use_sim_time"}
    (node,) = _calls(tree, "Node")
    assert ast.literal_eval(_kw(node, "package")) == "moose_ros"
    assert ast.literal_eval(_kw(node, "executable")) == "moose_node"
    assert ast.literal_eval(_kw(node, "name")) == "moose_node"
    assert _kw(node, "remappings") is not None and _kw(node, "parameters") is not None
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert {"moose.yaml", "config", "moose_ros"} <= strings
    assert _calls(tree, "get_package_share_directory")
    assert any(f.name == "generate_launch_description" for f in tree.body if isinstance(f, ast.FunctionDef))


def test_console_script_is_declared() -> None:
    assert "moose_node = moose_ros.ros.node:main" in (REPO / "setup.py").read_text()


def test_rviz_layout_shows_node_outputs() -> None:
    layout = yaml.safe_load((REPO / "config" / "moose.rviz").read_text())
    displays = layout["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"] for d in displays if d["Class"] == "rviz_default_plugins/Image"}
    assert {"/moose_node/anomaly/overlay", "/moose_node/segmentation/color", "/moose_node/anomaly"} <= topics
    suffixes = {suffix for suffix, _ in OUTPUTS.values()}
    assert {t.removeprefix("/moose_node/") for t in topics} <= suffixes


def _transports(path: Path) -> dict[str, ET.Element]:
    root = ET.parse(path).getroot()
    return {t.findtext("d:transport_id", namespaces=NS): t for t in root.iterfind(".//d:transport_descriptor", NS)}


def test_loopback_profile_keeps_dds_on_the_host() -> None:
    path = REPO / "config" / "fastdds_loopback.xml"
    root = ET.parse(path).getroot()
    assert root.findtext(".//d:participant/d:rtps/d:useBuiltinTransports", namespaces=NS) == "false"
    transports = _transports(path)
    shm = [t for t in transports.values() if t.findtext("d:type", namespaces=NS) == "SHM"]
    assert shm and int(shm[0].findtext("d:segment_size", namespaces=NS)) >= 32 * 1024 * 1024
    for udp in (t for t in transports.values() if t.findtext("d:type", namespaces=NS) == "UDPv4"):
        allowed = [a.text for a in udp.iterfind(".//d:address", NS)] + [
            i.get("name") for i in udp.iterfind(".//d:interface", NS)]
        assert allowed == ["127.0.0.1"]
    peers = [a.text for a in root.iterfind(".//d:initialPeersList//d:address", NS)]
    assert peers == ["127.0.0.1"]


def test_large_data_profile() -> None:
    path = REPO / "config" / "fastdds_large_data.xml"
    transports = _transports(path)
    kinds = {t.findtext("d:type", namespaces=NS): t for t in transports.values()}
    frame_bytes = 2048 * 1024 * 3
    assert int(kinds["SHM"].findtext("d:segment_size", namespaces=NS)) >= max(64 << 20, 30 * frame_bytes // 3)
    udp = kinds["UDPv4"]
    assert int(udp.findtext("d:sendBufferSize", namespaces=NS)) >= frame_bytes
    assert udp.find(".//d:interfaceWhiteList", NS) is None and udp.find(".//d:interfaces", NS) is None
    root = ET.parse(path).getroot()
    used = [t.text for t in root.iterfind(".//d:userTransports/d:transport_id", NS)]
    assert set(used) == set(transports)


def test_node_import_path_has_no_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    from test_ros_support import tiny_fused_onnx

    model = tiny_fused_onnx(tmp_path / "tiny.onnx")
    code = (
        "import sys; import moose_ros.ros.node as n; from moose_ros.backends import make_backend; "
        f"b = make_backend('auto', {str(model)!r}, threads=1); print(b.name, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["onnxruntime-cpu", "False"]
