"""Params files under a namespace, started exactly as launch_ros starts ``Node(name=..., namespace="front")``.

launch_ros runs ``moose_node --ros-args -r __node:=moose_node -r __ns:=/front --params-file <file>...`` and writes
dict parameters to a temporary file keyed with the node's full name. The installed config/moose.yaml must reach
``/front/moose_node`` (checked over DDS with the parameter service), a user file with non-default values too, and
a file keyed for another node (the old ``moose_node:`` shape) or a foreign key in a shared file is a warning.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from test_ros_support import CLASSES, COLORS, Harness, image_array, raw_image_msg, scene_image, tiny_fused_onnx

from moose_ros.resources import config_path
from moose_ros.ros import launcher

#: Seconds a node may take to come up (imports and model load take minutes on a starved CPU).
START_S = 240.0

pytestmark = pytest.mark.ros

NODE = "/front/moose_node"


def _write(path: Path, document: dict) -> Path:
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def _launch_ros_args(*params_files: Path) -> list[str]:
    args = ["-r", "__node:=moose_node", "-r", "__ns:=/front"]
    for path in params_files:
        args += ["--params-file", str(path)]
    return [*args, "-r", "image:=/camera/image_raw"]


def _get_parameters(t: Harness, names: list[str]) -> dict[str, Any]:
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    client = t.node.create_client(GetParameters, f"{NODE}/get_parameters")
    assert t.spin_until(client.service_is_ready, 10.0)
    future = client.call_async(GetParameters.Request(names=names))
    assert t.spin_until(future.done, 10.0)
    t.node.destroy_client(client)
    values = [parameter_value_to_python(v) for v in future.result().values]
    plain = [list(v) if isinstance(v, list | tuple) or hasattr(v, "typecode") else v for v in values]
    return dict(zip(names, plain, strict=True))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _run(tmp_path: Path, domain: int, env: dict[str, str], params_files: list[Path], names: list[str],
         suffixes: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Start the node with ``params_files`` under /front, read ``names`` over DDS, answer one frame."""
    log_path = tmp_path / "node.log"
    proc = launcher.start_node({}, env=env, log_path=log_path, params_file=params_files[0],
                               extra_args=_launch_ros_args(*params_files[1:]))
    tester = Harness(domain)
    try:
        tester.subscribe_outputs(f"{NODE}/", suffixes)
        launcher.wait_for_topic(tester.node, f"{NODE}/anomaly", proc=proc, log_path=log_path,
                                executor=tester.executor, timeout_s=START_S)
        values = _get_parameters(tester, names)
        tester.publish("/camera/image_raw", raw_image_msg(scene_image(36, 48, seed=2), "rgb8", frame_id="f", sec=7))
        outs = tester.wait_outputs(7_000_000_000, prefix=f"{NODE}/", suffixes=suffixes)
        overlay_publishers = tester.node.count_publishers(f"{NODE}/anomaly/overlay")
    finally:
        tester.close()
        assert launcher.stop(proc) == 0, launcher.log_tail(log_path)
    return values, outs | {"_overlay_publishers": overlay_publishers}, log_path.read_text(errors="replace")


def test_installed_params_file_applies_under_a_namespace(tmp_path: Path, ros_domain: int,
                                                         ros_env: dict[str, str]) -> None:
    installed = config_path("moose.yaml")
    shipped = yaml.safe_load(installed.read_text())
    (section,) = shipped.values()
    model = tiny_fused_onnx(tmp_path / "tiny.onnx")
    # launch_ros writes `parameters=[..., {"model": ...}]` to a temporary file keyed with the node's full name
    launch_dict = _write(tmp_path / "launch_params_x", {NODE: {"ros__parameters": {
        "model": str(model), "threads": 1, "use_sim_time": False}}})
    launched = {"model", "threads"}
    file_values = {k: v for k, v in section["ros__parameters"].items() if k not in launched}
    values, outs, log = _run(tmp_path, ros_domain, ros_env, [installed, launch_dict], [*file_values, *launched],
                             ("anomaly", "anomaly/mask"))
    assert (values["model"], values["threads"]) == (str(model), 1)
    for name, value in file_values.items():
        assert _same(values[name], value), (name, values[name], value)
    assert outs["anomaly"].header.frame_id == "f" and (outs["anomaly"].height, outs["anomaly"].width) == (36, 48)
    assert "applies to no parameter" not in log and "not a parameter" not in log, log
    assert f"model='{model}' (from {launch_dict})" in log and f"params files: {installed}, {launch_dict}" in log, log


def test_user_file_values_arrive_and_misfits_are_warned(tmp_path: Path, ros_domain: int,
                                                        ros_env: dict[str, str]) -> None:
    model = tiny_fused_onnx(tmp_path / "tiny.onnx")
    user = _write(tmp_path / "front.yaml", {
        "/**/moose_node": {"ros__parameters": {
            "model": str(model), "threads": 1, "score": "msp", "threshold": -0.5, "colormap": "jet",
            "output_size": [24, 30], "publish_overlay": False, "score_range": [-1.0, -0.2]}},
        "/**": {"ros__parameters": {"camera_fps": 30}},  # a shared file: another node's key
    })
    old_shape = _write(tmp_path / "old.yaml", {"moose_node": {"ros__parameters": {"threshold": 5.0}}})
    names = ["score", "threshold", "colormap", "output_size", "publish_overlay", "score_range", "threads",
             "model_classes", "model_colors"]
    values, outs, log = _run(tmp_path, ros_domain, ros_env, [config_path("moose.yaml"), user, old_shape], names,
                             ("anomaly", "anomaly/mask", "segmentation"))
    assert values == {"score": "msp", "threshold": -0.5, "colormap": "jet", "output_size": [24, 30],
                      "publish_overlay": False, "score_range": [-1.0, -0.2], "threads": 1,
                      "model_classes": list(CLASSES), "model_colors": [v for rgb in COLORS for v in rgb]}
    assert outs["_overlay_publishers"] == 0
    scores = image_array(outs["anomaly"])
    assert scores.shape == (24, 30) and scores.max() < 0  # msp: -max softmax
    np.testing.assert_array_equal(image_array(outs["anomaly/mask"]), np.where(scores > -0.5, 255, 0))
    assert f"params file {old_shape} applies to no parameter of {NODE}: its top-level keys ['moose_node']" in log
    assert f"params file {user}: camera_fps under" in log and "is not a parameter of" in log, log
    assert f"threshold=-0.5 (from {user})" in log and f"score='msp' (from {user})" in log, log
