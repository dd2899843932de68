"""The multi-camera launch file: one node per namespace, the same params file, remapped inputs.

launch and launch_ros are not installable here, so the file is evaluated against minimal stand-ins of the few
launch classes it uses (they only record arguments); what is checked is the launch file's own logic: which
nodes it creates, in which namespace, with which parameters and remappings.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch" / "moose_cameras.launch.py"


class _Recorded:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


class _Config:
    def __init__(self, name: str) -> None:
        self.name = name

    def perform(self, context: dict[str, str]) -> str:
        return context[self.name]


def _load_with_stand_ins(monkeypatch: pytest.MonkeyPatch, share: Path, launch: Path = LAUNCH) -> types.ModuleType:
    stubs = {
        "ament_index_python": types.ModuleType("ament_index_python"),
        "ament_index_python.packages": types.SimpleNamespace(get_package_share_directory=lambda _: str(share)),
        "launch": types.SimpleNamespace(LaunchDescription=_Recorded),
        "launch.actions": types.SimpleNamespace(DeclareLaunchArgument=_Recorded, OpaqueFunction=_Recorded),
        "launch.substitutions": types.SimpleNamespace(LaunchConfiguration=_Config),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.SimpleNamespace(Node=_Recorded),
    }
    for name, module in stubs.items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location(launch.stem.replace(".", "_"), launch)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_one_node_per_camera_namespace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = _load_with_stand_ins(monkeypatch, tmp_path / "share")
    description = module.generate_launch_description()
    actions = description.args[0]
    defaults = {a.args[0]: a.kwargs["default_value"] for a in actions if a.args and isinstance(a.args[0], str)}
    assert defaults["cameras"] == "front,rear" and defaults["params_file"] == str(tmp_path / "share" / "config" /
                                                                                  "moose.yaml")
    context = dict(defaults, cameras="front, rear,", image="/image_raw", model="/m.onnx")
    (opaque,) = [a for a in actions if "function" in a.kwargs]
    nodes = opaque.kwargs["function"](context)
    assert [n.kwargs["namespace"] for n in nodes] == ["front", "rear"]
    for node, camera in zip(nodes, ("front", "rear"), strict=True):
        kw = node.kwargs
        assert (kw["package"], kw["executable"], kw["name"]) == ("moose_ros", "moose_node", "moose_node")
        assert kw["parameters"] == [defaults["params_file"], {"use_sim_time": False, "model": "/m.onnx"}]
        assert dict(kw["remappings"]) == {"image": f"/{camera}/image_raw",
                                          "image/compressed": f"/{camera}/image_raw/compressed",
                                          "camera_info": f"/{camera}/camera_info"}


@pytest.mark.parametrize(("image", "info"), [("/camera/image_raw", "/camera/camera_info"), ("image", "camera_info"),
                                             ("/image_raw", "camera_info")])
def test_single_node_launch_remaps_camera_info_beside_image(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           image: str, info: str) -> None:
    module = _load_with_stand_ins(monkeypatch, tmp_path / "share", REPO / "launch" / "moose.launch.py")
    actions = module.generate_launch_description().args[0]
    defaults = {a.args[0]: a.kwargs["default_value"] for a in actions if a.args and isinstance(a.args[0], str)}
    (opaque,) = [a for a in actions if "function" in a.kwargs]
    (node,) = opaque.kwargs["function"](dict(defaults, image=image, namespace="front"))
    assert dict(node.kwargs["remappings"]) == {"image": image, "image/compressed": f"{image}/compressed",
                                               "camera_info": info}
    assert node.kwargs["parameters"][0].name == "params_file"  # a substitution launch_ros resolves
    assert defaults["params_file"] == str(tmp_path / "share" / "config" / "moose.yaml")


def test_launch_files_use_only_documented_launch_api() -> None:
    for path in sorted((REPO / "launch").glob("*.launch.py")):
        tree = ast.parse(path.read_text())
        imported = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert imported <= {
            ("__future__", "annotations"), ("ament_index_python.packages", "get_package_share_directory"),
            ("launch.actions", "DeclareLaunchArgument"), ("launch.actions", "OpaqueFunction"),
            ("launch.substitutions", "LaunchConfiguration"), ("launch_ros.actions", "Node"),
            ("launch", "LaunchDescription"),
        }, path.name
